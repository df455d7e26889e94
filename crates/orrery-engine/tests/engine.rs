//! The engine on a real SQLite store and real git repositories: triggers,
//! the DAG moving with task results, approvals, cancel, reruns, lost leases,
//! setup pipelines and schedules. Runners are played by the test.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use orrery_config::{InputValue, NoOrbs};
use orrery_core::JobStatus;
use orrery_engine::{Engine, EngineConfig, Secrets, TriggerKind, TriggerRequest};
use orrery_store::{NewProject, Project, Store};

struct Plain;

impl Secrets for Plain {
    fn open(&self, sealed: &[u8]) -> Option<String> {
        String::from_utf8(sealed.to_vec()).ok()
    }

    fn seal(&self, plain: &str) -> Vec<u8> {
        plain.as_bytes().to_vec()
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct World {
    _dir: tempfile::TempDir,
    repo: std::path::PathBuf,
    engine: Arc<Engine>,
    project: Project,
}

async fn world(config: &str, lease: Duration) -> World {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join(".circleci")).unwrap();
    std::fs::write(repo.join(".circleci/config.yml"), config).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(
        &repo,
        &["commit", "-q", "-m", "first commit\n\nwith a body"],
    );
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("db.sqlite").display()
    ))
    .await
    .unwrap();
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            data_dir: dir.path().join("data"),
            base_url: "http://orrery.test".into(),
            lease,
            heartbeat: Duration::from_secs(1),
            max_run_time: Duration::from_secs(3600),
            max_attempts: 2,
        },
        Arc::new(NoOrbs),
        Arc::new(Plain),
    );
    let project = store
        .create_project(NewProject {
            org_name: "acme".into(),
            vcs_type: "github".into(),
            name: "app".into(),
            slug: "gh/acme/app".into(),
            vcs_provider: "git".into(),
            repo_url: format!("file://{}", repo.display()),
            default_branch: "main".into(),
            webhook_secret: b"s".to_vec(),
            vcs_token: None,
        })
        .await
        .unwrap();
    store
        .set_env(&project.id, "DEPLOY_TOKEN", b"token-value")
        .await
        .unwrap();
    World {
        _dir: dir,
        repo,
        engine,
        project,
    }
}

fn api(branch: &str) -> TriggerRequest {
    TriggerRequest {
        kind: TriggerKind::Api,
        actor: "admin".into(),
        branch: Some(branch.into()),
        tag: None,
        revision: None,
        parameters: IndexMap::new(),
        review_id: None,
        review_url: None,
        only_workflow: None,
    }
}

const THREE_JOBS: &str = "version: 2.1\njobs:\n  build:\n    docker: [{image: x}]\n    parallelism: 2\n    steps: [checkout]\n  deploy:\n    docker: [{image: x}]\n    steps: [checkout]\nworkflows:\n  main:\n    jobs:\n      - build\n      - hold: {type: approval, requires: [build]}\n      - deploy: {requires: [hold]}\n";

async fn statuses(w: &World, pipeline_id: &str) -> Vec<(String, String)> {
    let wf = &w
        .engine
        .store()
        .workflows_of_pipeline(pipeline_id)
        .await
        .unwrap()[0];
    let mut out = vec![("(workflow)".to_string(), wf.status.clone())];
    for j in w.engine.store().jobs_of_workflow(&wf.id).await.unwrap() {
        out.push((j.name, j.status));
    }
    out
}

fn s(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn run_all(w: &World, runner: &str, status: JobStatus) -> usize {
    let mut n = 0;
    while let Some(a) = w
        .engine
        .claim(
            runner,
            &["orrery/default".into()],
            Duration::from_millis(10),
        )
        .await
        .unwrap()
    {
        w.engine.complete(&a.task_id, runner, status).await.unwrap();
        n += 1;
    }
    n
}

#[tokio::test]
async fn a_workflow_runs_through_approval() {
    let w = world(THREE_JOBS, Duration::from_secs(60)).await;
    let p = w.engine.trigger(&w.project, api("main")).await.unwrap();
    assert_eq!((p.number, p.state.as_str()), (1, "created"));
    assert_eq!(p.commit_subject.as_deref(), Some("first commit"));
    assert_eq!(p.revision, git(&w.repo, &["rev-parse", "HEAD"]));
    assert_eq!(
        statuses(&w, &p.id).await,
        s(&[
            ("(workflow)", "running"),
            ("build", "queued"),
            ("hold", "blocked"),
            ("deploy", "blocked")
        ])
    );

    // Two nodes: the job runs with the first claim and ends with the last.
    let a = w
        .engine
        .claim("r1", &["orrery/default".into()], Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.job_name.as_str(), a.node_total), ("build", 2));
    assert_eq!(
        a.project_env,
        [("DEPLOY_TOKEN".to_string(), "token-value".to_string())]
    );
    assert_eq!(a.builtin_env["CIRCLE_BRANCH"], "main");
    assert_eq!(a.builtin_env["CIRCLE_BUILD_NUM"], "1");
    assert_eq!(
        statuses(&w, &p.id).await[1],
        ("build".into(), "running".into())
    );
    let b = w
        .engine
        .claim("r1", &["orrery/default".into()], Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        {
            let mut n = [a.node_index, b.node_index];
            n.sort();
            n
        },
        [0, 1]
    );
    w.engine
        .complete(&a.task_id, "r1", JobStatus::Success)
        .await
        .unwrap();
    assert_eq!(
        statuses(&w, &p.id).await[1],
        ("build".into(), "running".into()),
        "one node still runs"
    );
    w.engine
        .complete(&b.task_id, "r1", JobStatus::Success)
        .await
        .unwrap();
    assert_eq!(
        statuses(&w, &p.id).await,
        s(&[
            ("(workflow)", "on_hold"),
            ("build", "success"),
            ("hold", "on_hold"),
            ("deploy", "blocked")
        ])
    );

    let wf = &w.engine.store().workflows_of_pipeline(&p.id).await.unwrap()[0];
    let hold = w
        .engine
        .store()
        .jobs_of_workflow(&wf.id)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.name == "hold")
        .unwrap();
    assert!(
        w.engine
            .approve(&wf.id, "not-an-id", "admin")
            .await
            .is_err()
    );
    w.engine
        .approve(
            &wf.id,
            hold.approval_request_id.as_deref().unwrap(),
            "admin",
        )
        .await
        .unwrap();
    assert_eq!(run_all(&w, "r1", JobStatus::Success).await, 1);
    assert_eq!(
        statuses(&w, &p.id).await,
        s(&[
            ("(workflow)", "success"),
            ("build", "success"),
            ("hold", "success"),
            ("deploy", "success")
        ])
    );
    let hold = w.engine.store().job(&hold.id).await.unwrap().unwrap();
    assert_eq!(hold.approved_by.as_deref(), Some("admin"));
}

#[tokio::test]
async fn an_invalid_config_gives_an_errored_pipeline() {
    let w = world(
        "version: 2.1\njobs:\n  build:\n    docker: [{image: x}]\n    steps: [chekout]\n",
        Duration::from_secs(60),
    )
    .await;
    let p = w.engine.trigger(&w.project, api("main")).await.unwrap();
    assert_eq!(p.state, "errored");
    let errors: serde_json::Value = serde_json::from_str(&p.errors).unwrap();
    assert_eq!(errors[0]["type"], "config");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("Cannot find a definition for command named chekout"),
        "{errors}"
    );
    assert!(
        w.engine
            .store()
            .workflows_of_pipeline(&p.id)
            .await
            .unwrap()
            .is_empty()
    );
    // An unknown branch is refused before a pipeline exists.
    assert!(w.engine.trigger(&w.project, api("nope")).await.is_err());
    // Undeclared parameters error the pipeline, as CircleCI does.
    let mut req = api("main");
    req.parameters.insert("nope".into(), InputValue::Bool(true));
    let p = w.engine.trigger(&w.project, req).await.unwrap();
    assert_eq!(p.state, "errored");
    assert!(
        p.errors.contains("Unexpected argument(s): nope"),
        "{}",
        p.errors
    );
}

#[tokio::test]
async fn cancel_and_rerun_from_failed() {
    let config = "version: 2.1\njobs:\n  a:\n    docker: [{image: x}]\n    steps: [checkout]\n  b:\n    docker: [{image: x}]\n    steps: [checkout]\n  c:\n    docker: [{image: x}]\n    steps: [checkout]\nworkflows:\n  main:\n    jobs: [a, {b: {requires: [a]}}, {c: {requires: [b]}}]\n";
    let w = world(config, Duration::from_secs(60)).await;
    let p = w.engine.trigger(&w.project, api("main")).await.unwrap();
    let a = w
        .engine
        .claim("r", &["orrery/default".into()], Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    w.engine
        .complete(&a.task_id, "r", JobStatus::Success)
        .await
        .unwrap();
    let b = w
        .engine
        .claim("r", &["orrery/default".into()], Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    w.engine
        .complete(&b.task_id, "r", JobStatus::Failed)
        .await
        .unwrap();
    assert_eq!(
        statuses(&w, &p.id).await,
        s(&[
            ("(workflow)", "failed"),
            ("a", "success"),
            ("b", "failed"),
            ("c", "not_run")
        ])
    );
    let wf = w
        .engine
        .store()
        .workflows_of_pipeline(&p.id)
        .await
        .unwrap()
        .remove(0);

    let rerun_id = w.engine.rerun(&wf.id, true, None, "admin").await.unwrap();
    let rerun = w.engine.store().workflow(&rerun_id).await.unwrap().unwrap();
    assert_eq!(rerun.rerun_of.as_deref(), Some(wf.id.as_str()));
    assert_eq!(
        rerun.workspace_id, wf.workspace_id,
        "a rerun shares the workspace"
    );
    let jobs = w.engine.store().jobs_of_workflow(&rerun_id).await.unwrap();
    let st: Vec<(&str, &str)> = jobs
        .iter()
        .map(|j| (j.name.as_str(), j.status.as_str()))
        .collect();
    assert_eq!(
        st,
        [("a", "success"), ("b", "queued"), ("c", "blocked")],
        "only the failed part reruns"
    );
    assert_eq!(run_all(&w, "r", JobStatus::Success).await, 2);
    assert_eq!(
        w.engine
            .store()
            .workflow(&rerun_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        "success"
    );

    // Cancel a running workflow: the running job is asked to stop, the rest never run.
    let p2 = w.engine.trigger(&w.project, api("main")).await.unwrap();
    let a = w
        .engine
        .claim("r", &["orrery/default".into()], Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let wf2 = w
        .engine
        .store()
        .workflows_of_pipeline(&p2.id)
        .await
        .unwrap()
        .remove(0);
    w.engine.cancel_workflow(&wf2.id, "admin").await.unwrap();
    assert!(w.engine.heartbeat(&a.task_id, "r").await.unwrap().cancel);
    w.engine
        .complete(&a.task_id, "r", JobStatus::Canceled)
        .await
        .unwrap();
    assert_eq!(
        statuses(&w, &p2.id).await,
        s(&[
            ("(workflow)", "canceled"),
            ("a", "canceled"),
            ("b", "not_run"),
            ("c", "not_run")
        ])
    );
    assert!(
        w.engine.cancel_workflow(&wf2.id, "admin").await.is_err(),
        "already ended"
    );
    assert!(
        w.engine
            .rerun(&wf2.id, true, Some(vec![]), "admin")
            .await
            .is_err(),
        "from_failed and jobs exclude each other"
    );
}

#[tokio::test]
async fn a_lost_lease_is_retried_once() {
    let w = world("version: 2.1\njobs:\n  a:\n    docker: [{image: x}]\n    steps: [checkout]\nworkflows:\n  main:\n    jobs: [a]\n", Duration::from_millis(1)).await;
    let p = w.engine.trigger(&w.project, api("main")).await.unwrap();
    let first = w
        .engine
        .claim("gone", &["orrery/default".into()], Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(w.engine.sweep_expired().await.unwrap(), 1);
    assert!(
        w.engine
            .heartbeat(&first.task_id, "gone")
            .await
            .unwrap()
            .lost
    );
    assert_eq!(
        statuses(&w, &p.id).await[1],
        ("a".into(), "running".into()),
        "the job waits for its retry"
    );
    let second = w
        .engine
        .claim("other", &["orrery/default".into()], Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (second.job_id.as_str(), second.attempt),
        (first.job_id.as_str(), 2)
    );
    // The late result of the lost attempt changes nothing.
    w.engine
        .complete(&first.task_id, "gone", JobStatus::Success)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(w.engine.sweep_expired().await.unwrap(), 1);
    assert_eq!(
        statuses(&w, &p.id).await,
        s(&[("(workflow)", "failed"), ("a", "infrastructure_fail")])
    );
}

#[tokio::test]
async fn setup_pipelines_continue_once() {
    let setup = "version: 2.1\nsetup: true\njobs:\n  generate:\n    docker: [{image: x}]\n    steps: [checkout]\nworkflows:\n  setup:\n    jobs: [generate]\n";
    let w = world(setup, Duration::from_secs(60)).await;
    let p = w.engine.trigger(&w.project, api("main")).await.unwrap();
    assert_eq!(p.state, "setup");
    let wf = w
        .engine
        .store()
        .workflows_of_pipeline(&p.id)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(wf.tag.as_deref(), Some("setup"));
    let a = w
        .engine
        .claim("r", &["orrery/default".into()], Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let key = a.builtin_env["CIRCLE_CONTINUATION_KEY"].clone();
    w.engine
        .complete(&a.task_id, "r", JobStatus::Success)
        .await
        .unwrap();
    let next = "version: 2.1\nparameters:\n  run-it: {type: boolean, default: false}\njobs:\n  real:\n    docker: [{image: x}]\n    steps: [checkout]\nworkflows:\n  main:\n    when: << pipeline.parameters.run-it >>\n    jobs: [real]\n";
    let mut params = IndexMap::new();
    params.insert("run-it".to_string(), InputValue::Bool(true));
    assert!(
        w.engine
            .continue_pipeline("wrong-key", next, params.clone())
            .await
            .is_err()
    );
    let p = w
        .engine
        .continue_pipeline(&key, next, params.clone())
        .await
        .unwrap();
    assert_eq!(p.state, "created");
    let names: Vec<String> = w
        .engine
        .store()
        .workflows_of_pipeline(&p.id)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, ["setup", "main"]);
    assert!(
        w.engine
            .continue_pipeline(&key, next, params)
            .await
            .is_err(),
        "a key works once"
    );
}

#[tokio::test]
async fn scheduled_workflows_fire_on_time_once() {
    let config = "version: 2.1\njobs:\n  nightly:\n    docker: [{image: x}]\n    steps: [checkout]\n  build:\n    docker: [{image: x}]\n    steps: [checkout]\nworkflows:\n  commit:\n    jobs: [build]\n  nightly:\n    triggers:\n      - schedule: {cron: \"30 2 * * *\", filters: {branches: {only: [main]}}}\n    jobs: [nightly]\n";
    let w = world(config, Duration::from_secs(60)).await;
    let p = w.engine.trigger(&w.project, api("main")).await.unwrap();
    let names: Vec<String> = w
        .engine
        .store()
        .workflows_of_pipeline(&p.id)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(
        names,
        ["commit"],
        "a scheduled workflow does not run on push"
    );
    let schedules = w.engine.store().schedules().await.unwrap();
    assert_eq!(schedules.len(), 1);
    let day = chrono::DateTime::parse_from_rfc3339("2026-11-28T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let before = day + chrono::Duration::hours(2);
    let after = day + chrono::Duration::hours(3);
    assert_eq!(w.engine.fire_schedules(day, before).await.unwrap(), 0);
    assert_eq!(w.engine.fire_schedules(before, after).await.unwrap(), 1);
    // The same window again (a restart): nothing fires twice.
    assert_eq!(w.engine.fire_schedules(day, after).await.unwrap(), 0);
    let latest = w
        .engine
        .store()
        .pipelines(Some(&w.project.id), None, None, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(latest.trigger_type, "scheduled_pipeline");
    let names: Vec<String> = w
        .engine
        .store()
        .workflows_of_pipeline(&latest.id)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, ["nightly"]);
}
