//! The engine: from a trigger to tasks in the queue, and from task results to
//! the next jobs.
//!
//! - [`Engine::trigger`]: a push, a tag, an API call or a schedule makes a
//!   pipeline (numbered per project), whose config is read from the repository
//!   at the revision and compiled with the pipeline's values and parameters.
//!   An invalid config gives an `errored` pipeline with the compiler's
//!   messages. A setup config runs its setup workflow and waits for
//!   [`Engine::continue_pipeline`].
//! - Each workflow becomes a [`WorkflowRun`] (persisted with the workflow);
//!   ready jobs get one task per parallel node, routed by resource class.
//! - Runners claim tasks ([`Engine::claim`], long-polling), keep them with
//!   heartbeats, and report results ([`Engine::complete`]); the run moves on.
//! - Approvals, cancel (workflow and job), reruns (from start, from failed,
//!   chosen jobs), lost leases (retried once), and legacy scheduled workflows.
//!
//! Every workflow change is a read-modify-write with an optimistic version
//! check, retried on conflict, so concurrent results never lose an update.

pub mod git;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use orrery_config::{
    CompileOptions, GitRef, InputValue, OrbSource, PipelineValues, Plan, compile, print,
};
use orrery_core::protocol::{Assignment, CheckoutSpec, HeartbeatReply, RunnerEvent};
use orrery_core::{JobKind, JobStatus, StepOutcome, WorkflowRun, WorkflowStatus};
use orrery_store::{
    Job, JobUpdate, NewPipeline, Pipeline, Project, Store, StoreError, Task, Workflow, new_id,
    now_ms,
};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::sync::{Notify, broadcast};

/// The resource class of jobs that do not name a runner class.
pub const DEFAULT_CLASS: &str = "orrery/default";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// Decrypts values the server stored encrypted (project variables).
pub trait Secrets: Send + Sync + 'static {
    fn open(&self, sealed: &[u8]) -> Option<String>;
    /// Encrypts a value the engine keeps (a setup pipeline's continuation
    /// key, which its jobs need in clear).
    fn seal(&self, plain: &str) -> Vec<u8>;
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// The server's URL, for `CIRCLE_BUILD_URL` and links.
    pub base_url: String,
    pub lease: Duration,
    pub heartbeat: Duration,
    pub max_run_time: Duration,
    /// Attempts a task gets when its runner disappears.
    pub max_attempts: i64,
}

/// Something that changed, for live views.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EngineEvent {
    Pipeline {
        pipeline_id: String,
        project_id: String,
    },
    Workflow {
        workflow_id: String,
        pipeline_id: String,
        status: String,
    },
    Job {
        job_id: String,
        workflow_id: String,
        status: String,
    },
    Step {
        task_id: String,
        job_id: String,
        index: u32,
    },
    Output {
        task_id: String,
        job_id: String,
        index: u32,
        seq: u64,
    },
}

/// What kind of trigger made a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerKind {
    Webhook,
    Api,
    Schedule,
}

impl TriggerKind {
    fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Webhook => "webhook",
            TriggerKind::Api => "api",
            TriggerKind::Schedule => "scheduled_pipeline",
        }
    }
}

#[derive(Clone, Debug)]
pub struct TriggerRequest {
    pub kind: TriggerKind,
    pub actor: String,
    pub branch: Option<String>,
    pub tag: Option<String>,
    /// Known for pushes; resolved from the branch or tag otherwise.
    pub revision: Option<String>,
    pub parameters: IndexMap<String, InputValue>,
    pub review_id: Option<String>,
    pub review_url: Option<String>,
    /// For schedules: run only this workflow.
    pub only_workflow: Option<String>,
}

/// The persisted state of a workflow run: the DAG, its flags, and the job
/// ids by run index. The jobs' statuses in it are those of when it was last
/// written in full (at the start and on cancel): each change writes the job
/// rows it changed and the workflow's version, not the whole run (a big
/// workflow's run is 100 KB); [`Engine::load_run`] lays the job rows'
/// statuses over it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunState {
    run: WorkflowRun,
    /// Job ids by run index.
    job_ids: Vec<String>,
}

/// A workflow's run as of `version`, as this process last read or wrote it.
struct CachedRun {
    version: i64,
    status: String,
    stopped_at: Option<i64>,
    pipeline_id: String,
    state: RunState,
    /// When it was last used, for eviction.
    used: u64,
}

/// Runs kept by [`Engine::update_run`] between changes.
const CACHED_RUNS: usize = 64;

/// What completing a task needs of its job; it never changes.
#[derive(Clone)]
struct JobFacts {
    workflow_id: String,
    parallelism: i64,
}

/// Jobs whose facts are kept between a claim and the completion.
const CACHED_JOBS: usize = 4096;

/// What changes the run (see [`Engine::update_run`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum RunChange {
    /// Only jobs' statuses: the changed job rows are written.
    Statuses,
    /// More (the run's flags, as a cancel sets): the whole run is written.
    Whole,
}

pub struct Engine {
    store: Store,
    config: EngineConfig,
    orbs: Arc<dyn OrbSource + Send + Sync>,
    secrets: Arc<dyn Secrets>,
    repos: git::Repos,
    events: broadcast::Sender<EngineEvent>,
    queued: Notify,
    /// One trigger at a time per project (they share the repository mirror).
    project_locks: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Changes to a workflow's run go one at a time in this process (by a
    /// stripe of the workflow id): concurrent results of one workflow would
    /// otherwise mostly fail the version check and redo their work. The
    /// version check still guards against other processes.
    run_locks: Vec<tokio::sync::Mutex<()>>,
    /// The runs of recently changed workflows, by id, each as of the version
    /// this process last read or wrote: a change to a cached run skips
    /// reading it, and the version check of its write tells when another
    /// process came first (then it is read again). Only `update_run` uses it,
    /// under the workflow's run lock.
    runs: std::sync::Mutex<(HashMap<String, CachedRun>, u64)>,
    /// Claimed jobs' facts, for their completion (without reading the job).
    jobs: std::sync::Mutex<HashMap<String, JobFacts>>,
}

fn errors_json(kind: &str, messages: &[String]) -> String {
    let list: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| serde_json::json!({"type": kind, "message": m}))
        .collect();
    serde_json::Value::Array(list).to_string()
}

fn hash_key(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

fn job_status(s: &str) -> JobStatus {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .unwrap_or(JobStatus::TerminatedUnknown)
}

impl Engine {
    pub fn new(
        store: Store,
        config: EngineConfig,
        orbs: Arc<dyn OrbSource + Send + Sync>,
        secrets: Arc<dyn Secrets>,
    ) -> Arc<Engine> {
        let (events, _) = broadcast::channel(4096);
        Arc::new(Engine {
            repos: git::Repos::new(config.data_dir.join("repos")),
            store,
            config,
            orbs,
            secrets,
            events,
            queued: Notify::new(),
            project_locks: tokio::sync::Mutex::new(HashMap::new()),
            run_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            runs: std::sync::Mutex::new((HashMap::new(), 0)),
            jobs: std::sync::Mutex::new(HashMap::new()),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.events.subscribe()
    }

    fn emit(&self, event: EngineEvent) {
        let _ = self.events.send(event);
    }

    fn run_lock(&self, workflow_id: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        workflow_id.hash(&mut h);
        &self.run_locks[h.finish() as usize % self.run_locks.len()]
    }

    async fn project_lock(&self, project_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.project_locks.lock().await;
        locks.entry(project_id.to_string()).or_default().clone()
    }

    // ---- triggers ----

    /// Makes a pipeline and everything it starts.
    pub async fn trigger(&self, project: &Project, req: TriggerRequest) -> Result<Pipeline> {
        if req.branch.is_some() && req.tag.is_some() {
            return Err(EngineError::BadRequest(
                "a pipeline builds a branch or a tag, not both".into(),
            ));
        }
        if req.parameters.len() > 100 {
            return Err(EngineError::BadRequest(
                "at most 100 pipeline parameters".into(),
            ));
        }
        for (k, v) in &req.parameters {
            if k.len() > 128 {
                return Err(EngineError::BadRequest(format!(
                    "pipeline parameter name {k} is longer than 128 characters"
                )));
            }
            if let InputValue::String(s) = v
                && s.len() > 512
            {
                return Err(EngineError::BadRequest(format!(
                    "pipeline parameter {k} is longer than 512 characters"
                )));
            }
        }
        let lock = self.project_lock(&project.id).await;
        let _guard = lock.lock().await;
        self.repos
            .fetch(&project.id, &project.repo_url)
            .await
            .map_err(|e| {
                EngineError::BadRequest(format!(
                    "cannot read the repository {}: {e}",
                    project.repo_url
                ))
            })?;
        let branch = match (&req.branch, &req.tag) {
            (None, None) => Some(project.default_branch.clone()),
            (b, _) => b.clone(),
        };
        let (revision, commit) = match &req.revision {
            Some(r) => (
                r.clone(),
                self.repos
                    .commit_info(&project.id, r)
                    .await
                    .unwrap_or_default(),
            ),
            None => self
                .repos
                .resolve_commit(&project.id, branch.as_deref(), req.tag.as_deref())
                .await
                .map_err(|e| EngineError::BadRequest(e.to_string()))?,
        };
        let parameters = serde_json::to_string(&req.parameters).unwrap_or_else(|_| "{}".into());
        let pipeline = self
            .store
            .create_pipeline(
                &project.id,
                NewPipeline {
                    state: "pending".into(),
                    trigger_type: req.kind.as_str().into(),
                    trigger_actor: req.actor.clone(),
                    received_at: now_ms(),
                    branch: if req.tag.is_some() {
                        None
                    } else {
                        branch.clone()
                    },
                    tag: req.tag.clone(),
                    revision: revision.clone(),
                    commit_subject: Some(commit.subject.clone()),
                    commit_body: Some(commit.body.clone()),
                    origin_repo_url: project.repo_url.clone(),
                    review_id: req.review_id.clone(),
                    review_url: req.review_url.clone(),
                    parameters,
                },
            )
            .await?;
        self.emit(EngineEvent::Pipeline {
            pipeline_id: pipeline.id.clone(),
            project_id: project.id.clone(),
        });
        let config = match self
            .repos
            .read_file(&project.id, &revision, ".circleci/config.yml")
            .await
        {
            Ok(Some(text)) => text,
            Ok(None) => {
                let message = "No configuration was found in your project. Please refer to https://circleci.com/docs/ to get started with your configuration (looked for .circleci/config.yml).".to_string();
                self.store
                    .set_pipeline_config(
                        &pipeline.id,
                        "errored",
                        None,
                        None,
                        &errors_json("config-fetch", &[message]),
                        false,
                    )
                    .await?;
                return self.pipeline(&pipeline.id).await;
            }
            Err(e) => {
                self.store
                    .set_pipeline_config(
                        &pipeline.id,
                        "errored",
                        None,
                        None,
                        &errors_json("config-fetch", &[e.to_string()]),
                        false,
                    )
                    .await?;
                return self.pipeline(&pipeline.id).await;
            }
        };
        let values = self.pipeline_values(project, &pipeline, req.kind);
        let mut options = CompileOptions::new(".circleci/config.yml");
        options.pipeline_values = values;
        options.pipeline_parameters = req.parameters.clone();
        let compiled = compile(&config, &options, self.orbs.as_ref());
        let Some(plan) = compiled.plan else {
            let messages: Vec<String> = compiled.errors().map(|d| d.to_string()).collect();
            self.store
                .set_pipeline_config(
                    &pipeline.id,
                    "errored",
                    Some(&config),
                    None,
                    &errors_json("config", &messages),
                    false,
                )
                .await?;
            return self.pipeline(&pipeline.id).await;
        };
        let rendered = print::render(&plan, &config);
        let git_ref = match (&req.tag, &branch) {
            (Some(t), _) => GitRef::Tag(t),
            (None, Some(b)) => GitRef::Branch(b),
            (None, None) => GitRef::Branch(""),
        };
        if plan.setup {
            self.store
                .set_pipeline_config(
                    &pipeline.id,
                    "setup",
                    Some(&config),
                    Some(&rendered),
                    "[]",
                    true,
                )
                .await?;
            let key = format!("{}{}", new_id().replace('-', ""), new_id().replace('-', ""));
            let expires = now_ms() + 6 * 3600 * 1000;
            self.store
                .set_continuation(&pipeline.id, Some(&hash_key(&key)), Some(expires))
                .await?;
            self.materialize(
                project,
                &pipeline,
                &plan,
                git_ref,
                &req,
                Some(&key),
                Some("setup"),
            )
            .await?;
        } else {
            self.store
                .set_pipeline_config(
                    &pipeline.id,
                    "created",
                    Some(&config),
                    Some(&rendered),
                    "[]",
                    false,
                )
                .await?;
            self.materialize(project, &pipeline, &plan, git_ref, &req, None, None)
                .await?;
        }
        if req.kind != TriggerKind::Schedule
            && let Some(b) = &branch
            && req.tag.is_none()
        {
            self.register_schedules(project, b, &revision, &plan)
                .await?;
        }
        self.pipeline(&pipeline.id).await
    }

    pub async fn pipeline(&self, id: &str) -> Result<Pipeline> {
        self.store
            .pipeline(id)
            .await?
            .ok_or_else(|| EngineError::NotFound("Pipeline not found".into()))
    }

    fn pipeline_values(
        &self,
        project: &Project,
        pipeline: &Pipeline,
        kind: TriggerKind,
    ) -> PipelineValues {
        let mut v = PipelineValues::default();
        v.set("pipeline.id", pipeline.id.clone());
        v.set("pipeline.number", pipeline.number);
        v.set("pipeline.project.git_url", project.repo_url.clone());
        v.set("pipeline.project.type", project.vcs_provider.clone());
        v.set("pipeline.project.slug", project.slug.clone());
        v.set(
            "pipeline.git.branch",
            pipeline.branch.clone().unwrap_or_default(),
        );
        v.set("pipeline.git.tag", pipeline.tag.clone().unwrap_or_default());
        v.set("pipeline.git.revision", pipeline.revision.clone());
        v.set(
            "pipeline.git.branch.is_default",
            pipeline.branch.as_deref() == Some(project.default_branch.as_str()),
        );
        v.set(
            "pipeline.git.commit.subject",
            pipeline.commit_subject.clone().unwrap_or_default(),
        );
        v.set(
            "pipeline.git.commit.body",
            pipeline.commit_body.clone().unwrap_or_default(),
        );
        v.set("pipeline.git.repo_url", project.repo_url.clone());
        v.set("pipeline.trigger_source", kind.as_str());
        v.set("pipeline.trigger.type", kind.as_str());
        v.set(
            "pipeline.trigger.received_at",
            pipeline.received_at.to_string(),
        );
        v.set("pipeline.integration_source", project.vcs_provider.clone());
        v
    }

    /// Creates the pipeline's workflows, their jobs and first tasks.
    #[allow(clippy::too_many_arguments)]
    async fn materialize(
        &self,
        project: &Project,
        pipeline: &Pipeline,
        plan: &Plan,
        git_ref: GitRef<'_>,
        req: &TriggerRequest,
        continuation_key: Option<&str>,
        tag: Option<&str>,
    ) -> Result<()> {
        for (name, wf) in &plan.workflows {
            if !wf.enabled {
                continue;
            }
            if wf.is_scheduled() != (req.kind == TriggerKind::Schedule) {
                continue;
            }
            if req.only_workflow.as_ref().is_some_and(|only| only != name) {
                continue;
            }
            let run = WorkflowRun::new(name, wf, git_ref);
            if run.jobs.is_empty() {
                continue;
            }
            let workflow = Workflow {
                id: new_id(),
                pipeline_id: pipeline.id.clone(),
                project_id: project.id.clone(),
                name: name.clone(),
                status: "running".into(),
                tag: tag.map(str::to_string),
                created_at: now_ms(),
                stopped_at: None,
                started_by: req.actor.clone(),
                canceled_by: None,
                workspace_id: new_id(),
                rerun_of: None,
                // The continuation key is kept sealed: only its hash is
                // searchable, and the database never holds it in clear.
                plan: serde_json::to_string(&(
                    wf,
                    &plan.jobs_of(wf),
                    continuation_key.map(|k| hex::encode(self.secrets.seal(k))),
                ))
                .map_err(|e| EngineError::Internal(e.to_string()))?,
                run_state: String::new(),
                version: 0,
            };
            self.start_workflow(workflow, run, HashMap::new()).await?;
        }
        Ok(())
    }

    /// Persists a new workflow run: jobs, and tasks for the ready ones.
    /// `carried` gives jobs of a rerun that keep their earlier status.
    async fn start_workflow(
        &self,
        mut workflow: Workflow,
        mut run: WorkflowRun,
        carried: HashMap<String, JobStatus>,
    ) -> Result<()> {
        let stored: StoredPlan = serde_json::from_str(&workflow.plan)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        for (name, status) in &carried {
            if let Some((i, _)) = run.job(name) {
                run.set_status(i, *status);
            }
        }
        let now = now_ms();
        let job_ids: Vec<String> = run.jobs.iter().map(|_| new_id()).collect();
        let mut tasks = Vec::new();
        for i in run.ready() {
            let job = stored.1.get(&run.jobs[i].name);
            let total = job.map_or(1, |j| j.task_count());
            let class = job
                .and_then(|j| j.resource_class.clone())
                .filter(|c| c.contains('/'))
                .unwrap_or_else(|| DEFAULT_CLASS.to_string());
            for node in 0..total {
                tasks.push(new_task(&job_ids[i], node, &class, now));
            }
            run.set_status(i, JobStatus::Queued);
        }
        let mut jobs: Vec<Job> = run
            .jobs
            .iter()
            .enumerate()
            .map(|(i, rj)| {
                let compiled = stored.1.get(&rj.name);
                let wf_job = stored.0.job(&rj.name);
                Job {
                    id: job_ids[i].clone(),
                    workflow_id: workflow.id.clone(),
                    pipeline_id: workflow.pipeline_id.clone(),
                    project_id: workflow.project_id.clone(),
                    name: rj.name.clone(),
                    number: None,
                    job_type: if rj.kind == JobKind::Approval {
                        "approval".into()
                    } else {
                        "build".into()
                    },
                    status: rj.status.as_str().into(),
                    parallelism: compiled.map_or(1, |j| j.task_count() as i64),
                    job: compiled.map_or_else(
                        || "null".into(),
                        |j| serde_json::to_string(j).unwrap_or_else(|_| "null".into()),
                    ),
                    contexts: serde_json::to_string(
                        &wf_job.map(|j| j.context.clone()).unwrap_or_default(),
                    )
                    .unwrap_or_else(|_| "[]".into()),
                    dependencies: serde_json::to_string(
                        &rj.requires
                            .iter()
                            .map(|(d, _)| job_ids[*d].clone())
                            .collect::<Vec<_>>(),
                    )
                    .unwrap_or_else(|_| "[]".into()),
                    created_at: now,
                    queued_at: (rj.status == JobStatus::Queued).then_some(now),
                    started_at: None,
                    stopped_at: rj.status.is_terminal().then_some(now),
                    approved_by: None,
                    approval_request_id: (rj.kind == JobKind::Approval).then(|| job_ids[i].clone()),
                    canceled_by: None,
                    position: i as i64,
                }
            })
            .collect();
        workflow.status = run.status().as_str().into();
        if run.is_finished() {
            workflow.stopped_at = Some(now);
        }
        let state = RunState { run, job_ids };
        workflow.run_state =
            serde_json::to_string(&state).map_err(|e| EngineError::Internal(e.to_string()))?;
        self.store
            .insert_workflow(&workflow, &mut jobs, &tasks)
            .await?;
        // Its first change need not read it back. (A change may have come
        // first, from a runner quick to claim: then that one's is kept.)
        if workflow.stopped_at.is_none() {
            self.keep_run(
                &workflow.id,
                CachedRun {
                    version: workflow.version,
                    status: workflow.status.clone(),
                    stopped_at: workflow.stopped_at,
                    pipeline_id: workflow.pipeline_id.clone(),
                    state,
                    used: 0,
                },
                true,
            );
        }
        self.emit(EngineEvent::Workflow {
            workflow_id: workflow.id.clone(),
            pipeline_id: workflow.pipeline_id.clone(),
            status: workflow.status.clone(),
        });
        if !tasks.is_empty() {
            self.queued.notify_waiters();
        }
        Ok(())
    }

    async fn register_schedules(
        &self,
        project: &Project,
        branch: &str,
        revision: &str,
        plan: &Plan,
    ) -> Result<()> {
        let mut keep = Vec::new();
        for (name, wf) in &plan.workflows {
            for trigger in &wf.triggers {
                let admitted = trigger
                    .filters
                    .branches
                    .as_ref()
                    .is_none_or(|b| b.admits(branch));
                if admitted {
                    self.store
                        .register_schedule(&orrery_store::ScheduledWorkflow {
                            project_id: project.id.clone(),
                            branch: branch.to_string(),
                            workflow: name.clone(),
                            cron: trigger.cron.clone(),
                            revision: revision.to_string(),
                            registered_at: now_ms(),
                        })
                        .await?;
                    keep.push(name.clone());
                }
            }
        }
        self.store
            .unregister_schedules(&project.id, branch, &keep)
            .await?;
        Ok(())
    }

    /// `POST /api/v2/pipeline/continue`: compiles the continuation config of a
    /// setup pipeline and starts its workflows. The key works once, for 6 hours.
    pub async fn continue_pipeline(
        &self,
        key: &str,
        configuration: &str,
        parameters: IndexMap<String, InputValue>,
    ) -> Result<Pipeline> {
        let Some(pipeline) = self
            .store
            .take_continuation(&hash_key(key), now_ms())
            .await?
        else {
            return Err(EngineError::BadRequest(
                "the continuation key is not valid, was already used, or expired (6 hours)".into(),
            ));
        };
        let project = self
            .store
            .project(&pipeline.project_id)
            .await?
            .ok_or_else(|| EngineError::NotFound("Project not found".into()))?;
        let values = self.pipeline_values(&project, &pipeline, TriggerKind::Api);
        let mut options = CompileOptions::new("continuation config");
        options.pipeline_values = values;
        options.pipeline_parameters = parameters.clone();
        let compiled = compile(configuration, &options, self.orbs.as_ref());
        let Some(plan) = compiled.plan else {
            let messages: Vec<String> = compiled.errors().map(|d| d.to_string()).collect();
            self.store
                .set_pipeline_config(
                    &pipeline.id,
                    "errored",
                    Some(configuration),
                    None,
                    &errors_json("config", &messages),
                    false,
                )
                .await?;
            return Err(EngineError::BadRequest(format!(
                "the continuation config is not valid: {}",
                messages.join("; ")
            )));
        };
        if plan.setup {
            return Err(EngineError::BadRequest(
                "a continuation config cannot itself be a setup config".into(),
            ));
        }
        let rendered = print::render(&plan, configuration);
        self.store
            .set_pipeline_config(
                &pipeline.id,
                "created",
                Some(configuration),
                Some(&rendered),
                "[]",
                false,
            )
            .await?;
        let req = TriggerRequest {
            kind: TriggerKind::Api,
            actor: "continuation".into(),
            branch: pipeline.branch.clone(),
            tag: pipeline.tag.clone(),
            revision: Some(pipeline.revision.clone()),
            parameters,
            review_id: None,
            review_url: None,
            only_workflow: None,
        };
        let git_ref = match (&pipeline.tag, &pipeline.branch) {
            (Some(t), _) => GitRef::Tag(t),
            (None, Some(b)) => GitRef::Branch(b),
            (None, None) => GitRef::Branch(""),
        };
        self.materialize(&project, &pipeline, &plan, git_ref, &req, None, None)
            .await?;
        self.pipeline(&pipeline.id).await
    }

    // ---- changes to a running workflow ----

    /// A workflow's cached run, taken out of the cache (the caller holds the
    /// workflow's run lock, and puts it back with [`Engine::keep_run`]).
    fn take_run(&self, workflow_id: &str) -> Option<CachedRun> {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.0.remove(workflow_id)
    }

    /// Keeps a run for the next change of its workflow (unless `only_new`
    /// and one is kept already); the least recently used goes when the cache
    /// is full.
    fn keep_run(&self, workflow_id: &str, mut run: CachedRun, only_new: bool) {
        let mut guard = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let (runs, clock) = &mut *guard;
        if only_new && runs.contains_key(workflow_id) {
            return;
        }
        *clock += 1;
        run.used = *clock;
        if runs.len() >= CACHED_RUNS
            && !runs.contains_key(workflow_id)
            && let Some(oldest) = runs
                .iter()
                .min_by_key(|(_, r)| r.used)
                .map(|(id, _)| id.clone())
        {
            runs.remove(&oldest);
        }
        runs.insert(workflow_id.to_string(), run);
    }

    /// The upstream job names of job `name` from a cached run, if there is
    /// one (a run's DAG never changes, whatever its version).
    fn cached_upstream(&self, workflow_id: &str, name: &str) -> Option<Vec<String>> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let run = &runs.0.get(workflow_id)?.state.run;
        Some(
            run.job(name)
                .map(|(i, _)| upstream_names(run, i))
                .unwrap_or_default(),
        )
    }

    /// Reads a workflow's run from the store: its run state, with the job
    /// rows' statuses laid over it.
    async fn load_run(&self, workflow_id: &str) -> Result<CachedRun> {
        let workflow = self
            .store
            .workflow_head(workflow_id)
            .await?
            .ok_or_else(|| EngineError::NotFound("Workflow not found".into()))?;
        // Read after the workflow's row: a change in between bumped the
        // version, and the write this read leads to fails its check.
        let statuses = self.store.job_statuses(workflow_id).await?;
        let mut state: RunState = serde_json::from_str(&workflow.run_state)
            .map_err(|e| EngineError::Internal(format!("workflow state: {e}")))?;
        overlay_statuses(&mut state, &statuses);
        Ok(CachedRun {
            version: workflow.version,
            status: workflow.status,
            stopped_at: workflow.stopped_at,
            pipeline_id: workflow.pipeline_id,
            state,
            used: 0,
        })
    }

    /// Applies `change` to a workflow's run and writes the result with the
    /// jobs whose status changed and tasks for newly ready jobs; retried when
    /// another change came first. The run comes from the cache when this
    /// process made the last change (the version check of the write tells
    /// when another process came first), else from the store. Only the
    /// changed job rows and the workflow's status and version are written,
    /// and the whole run only for a [`RunChange::Whole`].
    async fn update_run<R>(
        &self,
        workflow_id: &str,
        actor: Option<&str>,
        kind: RunChange,
        mut change: impl FnMut(&mut WorkflowRun, &[String]) -> Result<R>,
    ) -> Result<R> {
        let _one_at_a_time = self.run_lock(workflow_id).lock().await;
        let mut cached = self.take_run(workflow_id);
        for _ in 0..100 {
            // Whatever fails below drops the run: the next change reads it.
            let mut current = match cached.take() {
                Some(run) => run,
                None => self.load_run(workflow_id).await?,
            };
            let state = &mut current.state;
            let before: Vec<JobStatus> = state.run.jobs.iter().map(|j| j.status).collect();
            let out = change(&mut state.run, &state.job_ids)?;
            let now = now_ms();
            let mut tasks = Vec::new();
            let ready = state.run.ready();
            // The plan (every job's compiled config) is only needed to queue
            // jobs that became ready; most changes queue none.
            let stored: Option<StoredPlan> = if ready.is_empty() {
                None
            } else {
                let plan = self
                    .store
                    .workflow_plan(workflow_id)
                    .await?
                    .ok_or_else(|| EngineError::NotFound("Workflow not found".into()))?;
                Some(
                    serde_json::from_str(&plan)
                        .map_err(|e| EngineError::Internal(e.to_string()))?,
                )
            };
            for i in ready {
                let job = stored
                    .as_ref()
                    .and_then(|s| s.1.get(&state.run.jobs[i].name));
                let total = job.map_or(1, |j| j.task_count());
                let class = job
                    .and_then(|j| j.resource_class.clone())
                    .filter(|c| c.contains('/'))
                    .unwrap_or_else(|| DEFAULT_CLASS.to_string());
                for node in 0..total {
                    tasks.push(new_task(&state.job_ids[i], node, &class, now));
                }
                state.run.set_status(i, JobStatus::Queued);
            }
            let mut updates = Vec::new();
            for (i, job) in state.run.jobs.iter().enumerate() {
                if job.status == before[i] {
                    continue;
                }
                updates.push(JobUpdate {
                    id: state.job_ids[i].clone(),
                    status: job.status.as_str().into(),
                    queued_at: (job.status == JobStatus::Queued).then_some(now),
                    started_at: (job.status == JobStatus::Running).then_some(now),
                    stopped_at: job.status.is_terminal().then_some(now),
                    approved_by: None,
                    canceled_by: (job.status == JobStatus::Canceled)
                        .then(|| actor.map(str::to_string))
                        .flatten(),
                });
            }
            let status = state.run.status();
            let stopped_at = status
                .is_terminal()
                .then_some(current.stopped_at.unwrap_or(now));
            let run_state = match kind {
                RunChange::Statuses => None,
                RunChange::Whole => Some(
                    serde_json::to_string(&*state)
                        .map_err(|e| EngineError::Internal(e.to_string()))?,
                ),
            };
            let canceled_by = (status == WorkflowStatus::Canceled)
                .then_some(actor)
                .flatten();
            if self
                .store
                .update_workflow(
                    workflow_id,
                    current.version,
                    status.as_str(),
                    run_state.as_deref(),
                    stopped_at,
                    canceled_by,
                    &updates,
                    &tasks,
                )
                .await?
            {
                for u in &updates {
                    self.emit(EngineEvent::Job {
                        job_id: u.id.clone(),
                        workflow_id: workflow_id.to_string(),
                        status: u.status.clone(),
                    });
                }
                if status.as_str() != current.status {
                    self.emit(EngineEvent::Workflow {
                        workflow_id: workflow_id.to_string(),
                        pipeline_id: current.pipeline_id.clone(),
                        status: status.as_str().into(),
                    });
                }
                if !tasks.is_empty() {
                    self.queued.notify_waiters();
                }
                // An ended workflow hardly changes any more.
                if !status.is_terminal() {
                    current.version += 1;
                    current.status = status.as_str().into();
                    current.stopped_at = stopped_at;
                    self.keep_run(workflow_id, current, false);
                }
                return Ok(out);
            }
        }
        Err(EngineError::Conflict(
            "the workflow is changing too often; try again".into(),
        ))
    }

    /// Approves a job waiting for approval.
    pub async fn approve(
        &self,
        workflow_id: &str,
        approval_request_id: &str,
        user: &str,
    ) -> Result<()> {
        self.update_run(workflow_id, Some(user), RunChange::Statuses, |run, ids| {
            let idx = ids
                .iter()
                .position(|id| id == approval_request_id)
                .ok_or_else(|| EngineError::NotFound("Approval request not found".into()))?;
            let name = run.jobs[idx].name.clone();
            run.approve(&name)
                .map_err(|e| EngineError::BadRequest(e.to_string()))
        })
        .await?;
        self.store
            .update_workflow_job_approver(approval_request_id, user)
            .await
            .map_err(EngineError::from)
    }

    /// Cancels a workflow: running jobs are stopped, pending ones never run.
    pub async fn cancel_workflow(&self, workflow_id: &str, user: &str) -> Result<()> {
        let to_stop = self
            // `cancel` sets the run's flag: the whole run is written.
            .update_run(workflow_id, Some(user), RunChange::Whole, |run, ids| {
                if run.is_finished() {
                    return Err(EngineError::BadRequest(
                        "the workflow has already ended".into(),
                    ));
                }
                Ok(run
                    .cancel()
                    .into_iter()
                    .map(|i| ids[i].clone())
                    .collect::<Vec<_>>())
            })
            .await?;
        for job_id in to_stop {
            self.store.request_cancel(&job_id, now_ms()).await?;
        }
        Ok(())
    }

    /// Cancels one job; what requires it does not run.
    pub async fn cancel_job(&self, job_id: &str, user: &str) -> Result<()> {
        let job = self
            .store
            .job(job_id)
            .await?
            .ok_or_else(|| EngineError::NotFound("Job not found".into()))?;
        self.update_run(
            &job.workflow_id,
            Some(user),
            RunChange::Statuses,
            |run, ids| {
                let idx = ids
                    .iter()
                    .position(|id| id == job_id)
                    .ok_or_else(|| EngineError::NotFound("Job not found".into()))?;
                if run.jobs[idx].status.is_terminal() {
                    return Err(EngineError::BadRequest("the job has already ended".into()));
                }
                run.set_status(idx, JobStatus::Canceled);
                Ok(())
            },
        )
        .await?;
        self.store.request_cancel(job_id, now_ms()).await?;
        Ok(())
    }

    /// Reruns a finished workflow as a new workflow of the same pipeline:
    /// from the start, from its failed jobs, or only the chosen jobs. The new
    /// run shares the original's workspace.
    pub async fn rerun(
        &self,
        workflow_id: &str,
        from_failed: bool,
        jobs: Option<Vec<String>>,
        user: &str,
    ) -> Result<String> {
        let old = self
            .store
            .workflow(workflow_id)
            .await?
            .ok_or_else(|| EngineError::NotFound("Workflow not found".into()))?;
        if old.stopped_at.is_none() {
            return Err(EngineError::BadRequest(
                "only a workflow that has ended can be rerun".into(),
            ));
        }
        if from_failed && jobs.is_some() {
            return Err(EngineError::BadRequest(
                "from_failed and jobs cannot be combined".into(),
            ));
        }
        let mut state: RunState = serde_json::from_str(&old.run_state)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        overlay_statuses(&mut state, &self.store.job_statuses(&old.id).await?);
        let pipeline = self.pipeline(&old.pipeline_id).await?;
        let stored: StoredPlan =
            serde_json::from_str(&old.plan).map_err(|e| EngineError::Internal(e.to_string()))?;
        let git_ref = match (&pipeline.tag, &pipeline.branch) {
            (Some(t), _) => GitRef::Tag(t),
            (None, Some(b)) => GitRef::Branch(b),
            (None, None) => GitRef::Branch(""),
        };
        let run = WorkflowRun::new(&old.name, &stored.0, git_ref);
        let mut carried = HashMap::new();
        if from_failed {
            for j in &state.run.jobs {
                if j.status == JobStatus::Success {
                    carried.insert(j.name.clone(), JobStatus::Success);
                }
            }
        } else if let Some(chosen) = &jobs {
            let chosen_names: Vec<String> = chosen
                .iter()
                .filter_map(|id| {
                    state
                        .job_ids
                        .iter()
                        .position(|j| j == id)
                        .map(|i| state.run.jobs[i].name.clone())
                })
                .collect();
            if chosen_names.len() != chosen.len() {
                return Err(EngineError::BadRequest(
                    "a job to rerun is not part of this workflow".into(),
                ));
            }
            for j in &state.run.jobs {
                if !chosen_names.contains(&j.name) && j.status.is_terminal() {
                    carried.insert(
                        j.name.clone(),
                        if j.status == JobStatus::Success {
                            JobStatus::Success
                        } else {
                            j.status
                        },
                    );
                }
            }
        }
        let workflow = Workflow {
            id: new_id(),
            pipeline_id: old.pipeline_id.clone(),
            project_id: old.project_id.clone(),
            name: old.name.clone(),
            status: "running".into(),
            tag: old.tag.clone(),
            created_at: now_ms(),
            stopped_at: None,
            started_by: user.to_string(),
            canceled_by: None,
            workspace_id: old.workspace_id.clone(),
            rerun_of: Some(old.id.clone()),
            plan: old.plan.clone(),
            run_state: String::new(),
            version: 0,
        };
        let id = workflow.id.clone();
        self.start_workflow(workflow, run, carried).await?;
        Ok(id)
    }

    // ---- the runner protocol ----

    /// Claims a task for a runner, waiting up to `wait` for one to be queued.
    pub async fn claim(
        &self,
        runner_id: &str,
        classes: &[String],
        wait: Duration,
    ) -> Result<Option<Assignment>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.queued.notified();
            let now = now_ms();
            if let Some(task) = self
                .store
                .claim_next_task(
                    runner_id,
                    classes,
                    now + self.config.lease.as_millis() as i64,
                    now,
                )
                .await?
            {
                return self.assignment(task).await.map(Some);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn assignment(&self, task: Task) -> Result<Assignment> {
        // The job runs once its first task is claimed. Only the job's row
        // records it (a no-op when it already runs): to the workflow run,
        // queued and running are both active, and going through `update_run`
        // would write the workflow on every claim. What the assignment needs
        // is read meanwhile: the job with its workflow, pipeline and project
        // in one read, and the project's variables.
        let (started, context, env) = tokio::try_join!(
            self.store.start_job(&task.job_id, now_ms()),
            self.store.task_context(&task.job_id, false),
            self.store.env_of_job(&task.job_id),
        )?;
        let orrery_store::TaskContext {
            job,
            workflow,
            pipeline,
            project,
        } = context.ok_or_else(|| EngineError::NotFound("job".into()))?;
        if started {
            self.emit(EngineEvent::Job {
                job_id: job.id.clone(),
                workflow_id: job.workflow_id.clone(),
                status: JobStatus::Running.as_str().into(),
            });
        }
        self.remember_job(&job);
        let compiled: orrery_config::Job = serde_json::from_str(&job.job)
            .map_err(|e| EngineError::Internal(format!("job: {e}")))?;
        // Of the stored plan (all the workflow's jobs), only the
        // continuation key is needed here, which only setup workflows have.
        let continuation_key = if workflow.tag.as_deref() == Some("setup") {
            let plan = self
                .store
                .workflow_plan(&workflow.id)
                .await?
                .ok_or_else(|| EngineError::NotFound("workflow".into()))?;
            let (_, _, sealed): (IgnoredAny, IgnoredAny, Option<String>) =
                serde_json::from_str(&plan).map_err(|e| EngineError::Internal(e.to_string()))?;
            sealed
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| self.secrets.open(&b))
        } else {
            None
        };
        let mut project_env = Vec::new();
        for var in env {
            match self.secrets.open(&var.value) {
                Some(v) => project_env.push((var.name, v)),
                None => {
                    tracing::warn!(project = %project.slug, var = %var.name, "cannot decrypt a project variable")
                }
            }
        }
        // The jobs upstream, from the run's DAG (a job without dependencies
        // has none): the cached run's, or the stored one's.
        let upstream = if job.dependencies == "[]" {
            Vec::new()
        } else if let Some(names) = self.cached_upstream(&workflow.id, &job.name) {
            names
        } else {
            let head = self
                .store
                .workflow_head(&workflow.id)
                .await?
                .ok_or_else(|| EngineError::NotFound("workflow".into()))?;
            let state: RunState = serde_json::from_str(&head.run_state)
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            state
                .run
                .job(&job.name)
                .map(|(i, _)| upstream_names(&state.run, i))
                .unwrap_or_default()
        };
        let org = project
            .slug
            .split('/')
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let mut env = IndexMap::new();
        if let Some(b) = &pipeline.branch {
            env.insert("CIRCLE_BRANCH".to_string(), b.clone());
        }
        if let Some(t) = &pipeline.tag {
            env.insert("CIRCLE_TAG".to_string(), t.clone());
        }
        env.insert("CIRCLE_SHA1".into(), pipeline.revision.clone());
        if let Some(n) = job.number {
            env.insert("CIRCLE_BUILD_NUM".into(), n.to_string());
            env.insert(
                "CIRCLE_BUILD_URL".into(),
                format!(
                    "{}/pipelines/{}/{}/workflows/{}/jobs/{n}",
                    self.config.base_url.trim_end_matches('/'),
                    project.slug,
                    pipeline.number,
                    workflow.id
                ),
            );
        }
        env.insert("CIRCLE_PIPELINE_ID".into(), pipeline.id.clone());
        env.insert("CIRCLE_WORKFLOW_ID".into(), workflow.id.clone());
        env.insert(
            "CIRCLE_WORKFLOW_WORKSPACE_ID".into(),
            workflow.workspace_id.clone(),
        );
        env.insert("CIRCLE_WORKFLOW_JOB_ID".into(), job.id.clone());
        env.insert("CIRCLE_PROJECT_ID".into(), project.id.clone());
        env.insert("CIRCLE_ORGANIZATION_ID".into(), project.org_id.clone());
        env.insert("CIRCLE_PROJECT_USERNAME".into(), org);
        env.insert("CIRCLE_PROJECT_REPONAME".into(), project.name.clone());
        env.insert("CIRCLE_REPOSITORY_URL".into(), project.repo_url.clone());
        env.insert("CIRCLE_USERNAME".into(), pipeline.trigger_actor.clone());
        if let Some(url) = &pipeline.review_url {
            env.insert("CIRCLE_PULL_REQUEST".into(), url.clone());
            env.insert("CIRCLE_PULL_REQUESTS".into(), url.clone());
        }
        if let Some(key) = continuation_key.as_ref() {
            env.insert("CIRCLE_CONTINUATION_KEY".into(), key.clone());
        }
        Ok(Assignment {
            task_id: task.id,
            job_id: job.id.clone(),
            job_name: job.name.clone(),
            job_number: job.number,
            job: compiled,
            node_index: task.node_index as u32,
            node_total: job.parallelism.max(1) as u32,
            attempt: task.attempt,
            project_slug: project.slug.clone(),
            workflow_id: workflow.id.clone(),
            workspace_id: workflow.workspace_id.clone(),
            builtin_env: env,
            project_env,
            context_env: Vec::new(),
            checkout: CheckoutSpec {
                url: project.repo_url.clone(),
                revision: pipeline.revision.clone(),
                branch: pipeline.branch.clone(),
                tag: pipeline.tag.clone(),
            },
            workspace_upstream: upstream,
            max_run_time_secs: self.config.max_run_time.as_secs(),
            heartbeat_secs: self.config.heartbeat.as_secs().max(1),
        })
    }

    /// Extends a task's lease, and tells the runner whether to stop.
    pub async fn heartbeat(&self, task_id: &str, runner_id: &str) -> Result<HeartbeatReply> {
        let until = now_ms() + self.config.lease.as_millis() as i64;
        match self.store.heartbeat(task_id, runner_id, until).await? {
            Some(task) => Ok(HeartbeatReply {
                cancel: task.cancel_requested,
                lost: false,
            }),
            None => Ok(HeartbeatReply {
                cancel: true,
                lost: true,
            }),
        }
    }

    /// Stores a runner's events: step records and output chunks.
    pub async fn record_events(
        &self,
        task_id: &str,
        runner_id: &str,
        events: Vec<RunnerEvent>,
    ) -> Result<()> {
        let task = self
            .store
            .task(task_id)
            .await?
            .ok_or_else(|| EngineError::NotFound("Task not found".into()))?;
        if task.runner_id.as_deref() != Some(runner_id) {
            return Err(EngineError::Conflict(
                "this runner does not hold the task".into(),
            ));
        }
        for event in events {
            match event {
                RunnerEvent::StepStarted {
                    index,
                    name,
                    background,
                    at,
                } => {
                    self.store
                        .upsert_step(&orrery_store::Step {
                            task_id: task_id.to_string(),
                            step_index: i64::from(index),
                            name,
                            background,
                            status: "running".into(),
                            outcome: None,
                            started_at: at,
                            stopped_at: None,
                        })
                        .await?;
                    self.emit(EngineEvent::Step {
                        task_id: task_id.to_string(),
                        job_id: task.job_id.clone(),
                        index,
                    });
                }
                RunnerEvent::Output { index, seq, data } => {
                    self.store
                        .append_output(task_id, i64::from(index), seq as i64, &data)
                        .await?;
                    self.emit(EngineEvent::Output {
                        task_id: task_id.to_string(),
                        job_id: task.job_id.clone(),
                        index,
                        seq,
                    });
                }
                RunnerEvent::StepFinished { index, outcome, at } => {
                    // A step that never started is not recorded.
                    if !self
                        .store
                        .finish_step(
                            task_id,
                            i64::from(index),
                            outcome.action_status(),
                            Some(&serde_json::to_string(&outcome).unwrap_or_default()),
                            Some(at),
                        )
                        .await?
                    {
                        continue;
                    }
                    self.emit(EngineEvent::Step {
                        task_id: task_id.to_string(),
                        job_id: task.job_id.clone(),
                        index,
                    });
                }
            }
        }
        Ok(())
    }

    /// A runner's result for a task it holds.
    pub async fn complete(&self, task_id: &str, runner_id: &str, status: JobStatus) -> Result<()> {
        let Some(task) = self
            .store
            .finish_task(task_id, Some(runner_id), status.as_str(), now_ms())
            .await?
        else {
            // Already ended (canceled, or the lease was lost and retried).
            return Ok(());
        };
        self.after_task(&task).await
    }

    /// Keeps what completing a claimed job's tasks needs.
    fn remember_job(&self, job: &Job) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.len() >= CACHED_JOBS {
            jobs.clear();
        }
        jobs.insert(
            job.id.clone(),
            JobFacts {
                workflow_id: job.workflow_id.clone(),
                parallelism: job.parallelism,
            },
        );
    }

    /// What completing a task of `job_id` needs: kept since its claim, or
    /// read.
    async fn job_facts(&self, job_id: &str) -> Result<JobFacts> {
        let kept = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(job_id)
            .cloned();
        match kept {
            Some(facts) => Ok(facts),
            None => {
                let job = self
                    .store
                    .job(job_id)
                    .await?
                    .ok_or_else(|| EngineError::NotFound("Job not found".into()))?;
                Ok(JobFacts {
                    workflow_id: job.workflow_id,
                    parallelism: job.parallelism,
                })
            }
        }
    }

    /// Moves the job (and workflow) on once all nodes of a job have ended.
    async fn after_task(&self, task: &Task) -> Result<()> {
        let job = self.job_facts(&task.job_id).await?;
        let status = if job.parallelism <= 1 {
            // One node: the task that just ended is its latest attempt (a
            // retry is queued only after the attempt before it ended).
            job_status(task.result.as_deref().unwrap_or("failed"))
        } else {
            let tasks = self.store.tasks_of_job(&task.job_id).await?;
            let mut latest: HashMap<i64, &Task> = HashMap::new();
            for t in &tasks {
                if latest
                    .get(&t.node_index)
                    .is_none_or(|l| t.attempt > l.attempt)
                {
                    latest.insert(t.node_index, t);
                }
            }
            if latest.values().any(|t| t.state != "finished") {
                return Ok(());
            }
            JobStatus::combine(
                latest
                    .values()
                    .map(|t| job_status(t.result.as_deref().unwrap_or("failed"))),
            )
        };
        let job_id = task.job_id.clone();
        self.update_run(&job.workflow_id, None, RunChange::Statuses, |run, ids| {
            if let Some(i) = ids.iter().position(|id| *id == job_id)
                && !run.jobs[i].status.is_terminal()
            {
                run.set_status(i, status);
            }
            Ok(())
        })
        .await?;
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&task.job_id);
        Ok(())
    }

    /// Ends tasks whose runner stopped sending heartbeats: the attempt is an
    /// infrastructure failure, retried once.
    pub async fn sweep_expired(&self) -> Result<usize> {
        let expired = self.store.expired_tasks(now_ms()).await?;
        let n = expired.len();
        for task in expired {
            self.fail_task(&task, "the runner stopped responding (its lease expired)")
                .await?;
        }
        Ok(n)
    }

    /// Ends the running tasks a runner held before it restarted.
    pub async fn abandon_runner_tasks(&self, runner_id: &str) -> Result<usize> {
        let tasks = self.store.running_tasks_of(runner_id).await?;
        let n = tasks.len();
        for task in tasks {
            self.fail_task(&task, "the runner restarted while the task was running")
                .await?;
        }
        Ok(n)
    }

    async fn fail_task(&self, task: &Task, why: &str) -> Result<()> {
        let Some(ended) = self
            .store
            .finish_task(
                &task.id,
                None,
                JobStatus::InfrastructureFail.as_str(),
                now_ms(),
            )
            .await?
        else {
            return Ok(());
        };
        tracing::warn!(task = %task.id, attempt = task.attempt, "{why}");
        // A step of its own tells the story in the job's output.
        let now = now_ms();
        let _ = self
            .store
            .upsert_step(&orrery_store::Step {
                task_id: task.id.clone(),
                step_index: 9999,
                name: "Infrastructure failure".into(),
                background: false,
                status: "infrastructure_fail".into(),
                outcome: Some(
                    serde_json::to_string(&StepOutcome::InfrastructureFailure {
                        reason: why.to_string(),
                    })
                    .unwrap_or_default(),
                ),
                started_at: now,
                stopped_at: Some(now),
            })
            .await;
        let note = format!(
            "Infrastructure failure: {why}; attempt {} of {}.\n",
            task.attempt, self.config.max_attempts
        );
        let _ = self
            .store
            .append_output(&task.id, 9999, 0, note.as_bytes())
            .await;
        if ended.attempt < self.config.max_attempts && !ended.cancel_requested {
            self.store.requeue(&ended).await?;
            self.queued.notify_waiters();
            Ok(())
        } else {
            self.after_task(&ended).await
        }
    }

    // ---- schedules ----

    /// Fires the scheduled workflows whose time came in `(since, now]`.
    pub async fn fire_schedules(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize> {
        let mut fired = 0;
        for s in self.store.schedules().await? {
            let Ok(schedule) = cron::Schedule::from_str(&format!("0 {}", s.cron)) else {
                tracing::warn!(cron = %s.cron, "cannot parse a schedule");
                continue;
            };
            for at in schedule.after(&since).take_while(|t| *t <= now) {
                let slot = at.timestamp() / 60;
                if !self
                    .store
                    .claim_schedule_fire(&s.project_id, &s.workflow, &s.branch, slot)
                    .await?
                {
                    continue;
                }
                let Some(project) = self.store.project(&s.project_id).await? else {
                    continue;
                };
                let req = TriggerRequest {
                    kind: TriggerKind::Schedule,
                    actor: "scheduler".into(),
                    branch: Some(s.branch.clone()),
                    tag: None,
                    revision: None,
                    parameters: IndexMap::new(),
                    review_id: None,
                    review_url: None,
                    only_workflow: Some(s.workflow.clone()),
                };
                match self.trigger(&project, req).await {
                    Ok(_) => fired += 1,
                    Err(e) => tracing::warn!(error = %e, "a scheduled workflow could not start"),
                }
            }
        }
        Ok(fired)
    }

    /// Runs the background duties until `shutdown`: expired leases every few
    /// seconds, schedules every 20 seconds (catching up 15 minutes after a
    /// restart, never firing twice).
    pub async fn run_background(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut shutdown = shutdown;
        let mut since = chrono::Utc::now() - chrono::Duration::minutes(15);
        // Leases of remote runners survive a server restart: wait one lease
        // before declaring anything lost.
        let first_sweep = tokio::time::Instant::now() + self.config.lease;
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut last_schedule = tokio::time::Instant::now() - Duration::from_secs(60);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if tokio::time::Instant::now() >= first_sweep
                && let Err(e) = self.sweep_expired().await
            {
                tracing::warn!(error = %e, "sweeping expired leases failed");
            }
            if last_schedule.elapsed() >= Duration::from_secs(20) {
                last_schedule = tokio::time::Instant::now();
                let now = chrono::Utc::now();
                if let Err(e) = self.fire_schedules(since, now).await {
                    tracing::warn!(error = %e, "firing schedules failed");
                }
                since = now;
            }
        }
    }
}

use std::str::FromStr;

/// What a workflow row's `plan` holds: the workflow, its compiled jobs, and
/// the continuation key of a setup pipeline.
type StoredPlan = (
    orrery_config::Workflow,
    IndexMap<String, orrery_config::Job>,
    Option<String>,
);

trait PlanExt {
    fn jobs_of(&self, wf: &orrery_config::Workflow) -> IndexMap<String, orrery_config::Job>;
}

impl PlanExt for Plan {
    fn jobs_of(&self, wf: &orrery_config::Workflow) -> IndexMap<String, orrery_config::Job> {
        wf.jobs
            .iter()
            .filter_map(|j| {
                self.jobs
                    .get(&j.name)
                    .map(|job| (j.name.clone(), job.clone()))
            })
            .collect()
    }
}

fn new_task(job_id: &str, node: u32, class: &str, now: i64) -> Task {
    Task {
        id: new_id(),
        job_id: job_id.to_string(),
        node_index: i64::from(node),
        attempt: 1,
        state: "queued".into(),
        result: None,
        resource_class: class.to_string(),
        runner_id: None,
        lease_until: None,
        cancel_requested: false,
        created_at: now,
        claimed_at: None,
        finished_at: None,
    }
}

/// Lays the job rows' statuses (job id, status) over a run state (see
/// [`RunState`]). A row says `running` where the run said `queued` (a claim
/// marks only the row): to the run both are active, alike.
fn overlay_statuses(state: &mut RunState, statuses: &[(String, String)]) {
    let index: HashMap<&str, usize> = state
        .job_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    for (id, status) in statuses {
        if let Some(&i) = index.get(id.as_str()) {
            state.run.jobs[i].status = job_status(status);
        }
    }
}

/// The names of the jobs upstream of job `i`, in the order their workspace
/// layers apply.
fn upstream_names(run: &WorkflowRun, i: usize) -> Vec<String> {
    fn visit(run: &WorkflowRun, i: usize, seen: &mut Vec<bool>, out: &mut Vec<String>) {
        for (d, _) in &run.jobs[i].requires {
            if !seen[*d] {
                seen[*d] = true;
                visit(run, *d, seen, out);
                out.push(run.jobs[*d].name.clone());
            }
        }
    }
    let mut seen = vec![false; run.jobs.len()];
    let mut out = Vec::new();
    visit(run, i, &mut seen, &mut out);
    out
}

/// The outcome of a step as stored, for API views.
pub fn step_outcome(json: Option<&str>) -> Option<StepOutcome> {
    json.and_then(|j| serde_json::from_str(j).ok())
}
