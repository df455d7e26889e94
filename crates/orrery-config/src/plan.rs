//! The compiled plan: what a config means once orbs, commands, executors,
//! parameters, matrices and conditions are resolved.
//!
//! This is the contract between the compiler and everything that runs jobs. It is
//! plain data (serde-serialisable, so the server can store it), it holds no YAML
//! nodes, and `process` output is only a view of it ([`crate::print`]).

use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::filters::Filters;

/// The `version` a config was written in. Compiled output is always version 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigVersion {
    /// `version: 2` or `2.0`.
    V2_0,
    /// `version: 2.1`.
    V2_1,
}

/// A whole compiled config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub version: ConfigVersion,
    /// `setup: true`: this config only runs a setup workflow that continues the
    /// pipeline with another config.
    pub setup: bool,
    /// Every registry orb the config imported, in import order.
    pub orbs: Vec<ResolvedOrb>,
    /// Fully expanded jobs by their final names (matrix cells and renamed
    /// invocations included, orb jobs as `alias/job`).
    pub jobs: IndexMap<String, Job>,
    pub workflows: IndexMap<String, Workflow>,
    /// The config had no `workflows` and runs its `build` job in an implicit
    /// workflow, named `workflow` as CircleCI names it.
    pub implicit_workflow: bool,
    /// Position of `version: 2` among the workflows when the source wrote it
    /// (printing keeps it there); `None` prints it last.
    #[serde(default)]
    pub workflows_version_index: Option<usize>,
}

/// An orb reference and what it resolved to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedOrb {
    /// How the config refers to it: `node`, or `tools/node` for an orb imported by
    /// the orb `tools`.
    pub alias: String,
    /// As written: `circleci/node@5`.
    pub requested: String,
    /// The exact version used: `circleci/node@5.1.0`.
    pub resolved: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobType {
    Build,
    /// `type: no-op`: needs no executor and runs no steps.
    NoOp,
}

/// One compiled job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub job_type: JobType,
    pub executor: Option<Executor>,
    pub resource_class: Option<String>,
    pub parallelism: Option<u32>,
    pub working_directory: Option<String>,
    pub shell: Option<String>,
    pub environment: IndexMap<String, String>,
    pub steps: Vec<Step>,
    pub circleci_ip_ranges: Option<bool>,
    /// `retention.caches`, e.g. `7d`.
    pub retention_caches: Option<String>,
}

impl Job {
    /// The number of parallel tasks (`parallelism`, default 1).
    pub fn task_count(&self) -> u32 {
        self.parallelism.unwrap_or(1).max(1)
    }

    /// The working directory the steps start in (CircleCI's default `~/project`).
    pub fn effective_working_directory(&self) -> &str {
        self.working_directory.as_deref().unwrap_or("~/project")
    }
}

/// Where a job's steps run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Executor {
    /// The first image is the primary container; the others are services sharing
    /// its network.
    Docker(Vec<DockerImage>),
    Machine(Machine),
    Macos(Macos),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DockerImage {
    pub image: String,
    pub name: Option<String>,
    pub entrypoint: Option<CommandLine>,
    pub command: Option<CommandLine>,
    pub user: Option<String>,
    pub environment: IndexMap<String, String>,
    pub auth: Option<DockerAuth>,
    pub aws_auth: Option<AwsAuth>,
}

/// `entrypoint`/`command`: a string (split by the shell rules of Docker) or a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandLine {
    String(String),
    List(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerAuth {
    pub username: String,
    pub password: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AwsAuth {
    Keys {
        aws_access_key_id: String,
        aws_secret_access_key: String,
    },
    Oidc {
        oidc_role_arn: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// `machine: true` was written (printed back the same way).
    pub shorthand: bool,
    pub image: Option<String>,
    pub docker_layer_caching: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Macos {
    pub xcode: String,
}

/// When a step runs, relative to the job's outcome so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepWhen {
    OnSuccess,
    Always,
    OnFail,
}

impl StepWhen {
    pub fn as_str(self) -> &'static str {
        match self {
            StepWhen::OnSuccess => "on_success",
            StepWhen::Always => "always",
            StepWhen::OnFail => "on_fail",
        }
    }
}

/// One step of a compiled job. `when`/`unless` steps and commands are already
/// resolved away.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    Run(Run),
    Checkout(Checkout),
    SetupRemoteDocker(SetupRemoteDocker),
    SaveCache(SaveCache),
    RestoreCache(RestoreCache),
    StoreArtifacts(StoreArtifacts),
    StoreTestResults(StoreTestResults),
    PersistToWorkspace(PersistToWorkspace),
    AttachWorkspace(AttachWorkspace),
    AddSshKeys(AddSshKeys),
}

impl Step {
    /// The name shown for the step (CircleCI's defaults where none was given).
    pub fn display_name(&self) -> String {
        match self {
            Step::Run(r) => r.name.clone().unwrap_or_else(|| r.command.clone()),
            Step::Checkout(s) => s.name.clone().unwrap_or_else(|| "Checkout code".into()),
            Step::SetupRemoteDocker(s) => s
                .name
                .clone()
                .unwrap_or_else(|| "Setup a remote Docker engine".into()),
            Step::SaveCache(s) => s.name.clone().unwrap_or_else(|| "Saving Cache".into()),
            Step::RestoreCache(s) => s.name.clone().unwrap_or_else(|| "Restoring Cache".into()),
            Step::StoreArtifacts(s) => s
                .name
                .clone()
                .unwrap_or_else(|| "Uploading artifacts".into()),
            Step::StoreTestResults(s) => s
                .name
                .clone()
                .unwrap_or_else(|| "Uploading test results".into()),
            Step::PersistToWorkspace(s) => s
                .name
                .clone()
                .unwrap_or_else(|| "Persisting to Workspace".into()),
            Step::AttachWorkspace(s) => s
                .name
                .clone()
                .unwrap_or_else(|| "Attaching Workspace".into()),
            Step::AddSshKeys(s) => s.name.clone().unwrap_or_else(|| "Add SSH keys".into()),
        }
    }

    /// When the step runs; only `run` and `save_cache` can change it, the upload
    /// steps always run as CircleCI runs them after a failure too.
    pub fn when(&self) -> StepWhen {
        match self {
            Step::Run(r) => r.when.unwrap_or(StepWhen::OnSuccess),
            Step::SaveCache(s) => s.when.unwrap_or(StepWhen::OnSuccess),
            Step::StoreArtifacts(_) | Step::StoreTestResults(_) => StepWhen::Always,
            _ => StepWhen::OnSuccess,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub command: String,
    pub name: Option<String>,
    pub shell: Option<String>,
    pub environment: IndexMap<String, String>,
    pub background: Option<bool>,
    pub working_directory: Option<String>,
    /// As written (`20m`, `1.5h`); see [`Run::no_output_timeout_duration`].
    pub no_output_timeout: Option<String>,
    pub when: Option<StepWhen>,
    pub max_auto_reruns: Option<u32>,
    pub auto_rerun_delay: Option<String>,
    /// Written as the deprecated `deploy` step.
    pub deploy: bool,
}

impl Run {
    /// The no-output timeout, CircleCI's default 10 minutes when unset.
    pub fn no_output_timeout_duration(&self) -> Duration {
        self.no_output_timeout
            .as_deref()
            .and_then(parse_duration)
            .unwrap_or(Duration::from_secs(600))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    pub name: Option<String>,
    pub path: Option<String>,
    pub method: Option<String>,
    pub depth: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupRemoteDocker {
    pub name: Option<String>,
    pub version: Option<String>,
    pub docker_layer_caching: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveCache {
    pub name: Option<String>,
    pub key: String,
    pub paths: Vec<String>,
    pub when: Option<StepWhen>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreCache {
    pub name: Option<String>,
    /// `key` then `keys`, in the order they are tried.
    pub keys: Vec<String>,
    /// Whether the single `key` form was written (printing keeps the form).
    pub single_key: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreArtifacts {
    pub name: Option<String>,
    pub path: String,
    pub destination: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreTestResults {
    pub name: Option<String>,
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistToWorkspace {
    pub name: Option<String>,
    pub root: String,
    pub paths: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachWorkspace {
    pub name: Option<String>,
    pub at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddSshKeys {
    pub name: Option<String>,
    pub fingerprints: Vec<String>,
}

/// A workflow: a DAG of job invocations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    /// `false` when `when`/`unless` ruled the workflow out for this pipeline.
    pub enabled: bool,
    pub jobs: Vec<WorkflowJob>,
    pub triggers: Vec<ScheduleTrigger>,
    pub max_auto_reruns: Option<u32>,
}

impl Workflow {
    /// A workflow with schedule triggers runs only on its schedule, not on pushes.
    pub fn is_scheduled(&self) -> bool {
        !self.triggers.is_empty()
    }

    pub fn job(&self, name: &str) -> Option<&WorkflowJob> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkflowJobType {
    /// Runs the job of the same name in [`Plan::jobs`].
    Build,
    /// `type: approval`: waits for a person; has no job definition.
    Approval,
}

/// One node of a workflow's DAG.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowJob {
    /// Unique within the workflow; for build jobs also the key in [`Plan::jobs`].
    pub name: String,
    pub job_type: WorkflowJobType,
    pub requires: Vec<Requirement>,
    pub context: Vec<String>,
    pub filters: Option<Filters>,
    pub serial_group: Option<String>,
}

/// A job status a requirement may accept (CircleCI Server 4.8 flexible requires).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequiredStatus {
    Success,
    Failed,
    Canceled,
    Unauthorized,
    NotRun,
}

impl RequiredStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequiredStatus::Success => "success",
            RequiredStatus::Failed => "failed",
            RequiredStatus::Canceled => "canceled",
            RequiredStatus::Unauthorized => "unauthorized",
            RequiredStatus::NotRun => "not_run",
        }
    }

    pub const TERMINAL: [RequiredStatus; 5] = [
        RequiredStatus::Success,
        RequiredStatus::Failed,
        RequiredStatus::Canceled,
        RequiredStatus::Unauthorized,
        RequiredStatus::NotRun,
    ];
}

/// `requires` entry: the job and the statuses that satisfy it (`[success]` unless
/// written otherwise).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub job: String,
    pub statuses: Vec<RequiredStatus>,
}

/// A legacy scheduled-workflow trigger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleTrigger {
    pub cron: String,
    pub filters: Filters,
}

/// Parses CircleCI durations: `10m`, `1.5h`, `30s`, and Go-style `1h30m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1.0e9 {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("10x"), None);
    }
}
