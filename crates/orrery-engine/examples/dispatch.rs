//! Temporary profiling harness (copy of the bench's dispatcher).
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use orrery_core::JobStatus;
use orrery_engine::{DEFAULT_CLASS, Engine, EngineConfig, Secrets, TriggerKind, TriggerRequest};
use orrery_store::{NewProject, Store};

struct NoSecrets;
impl Secrets for NoSecrets {
    fn open(&self, _sealed: &[u8]) -> Option<String> {
        None
    }
    fn seal(&self, _plain: &str) -> Vec<u8> {
        Vec::new()
    }
}

fn git(dir: &Path, args: &[&str]) {
    assert!(
        Command::new("git")
            .current_dir(dir)
            .args(args)
            .status()
            .unwrap()
            .success()
    );
}

fn queued_config(n: usize) -> String {
    let mut text = String::from("version: 2.1\njobs:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  j{i}: {{machine: true, steps: [run: \"true\"]}}\n"
        ));
    }
    text.push_str("workflows:\n  w:\n    jobs:\n");
    for i in 0..n {
        text.push_str(&format!("      - j{i}\n"));
    }
    text
}

async fn dispatcher(repo: &Path, per_workflow: usize, dir: &Path, total: usize) -> Duration {
    let store = Store::connect(&format!("sqlite://{}", dir.join("orrery.db").display()))
        .await
        .unwrap();
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            data_dir: dir.to_path_buf(),
            base_url: "http://127.0.0.1:8080".into(),
            lease: Duration::from_secs(60),
            heartbeat: Duration::from_secs(5),
            max_run_time: Duration::from_secs(3600),
            max_attempts: 2,
        },
        Arc::new(orrery_config::NoOrbs),
        Arc::new(NoSecrets),
    );
    let project = store
        .create_project(NewProject {
            org_name: "bench".into(),
            vcs_type: "git".into(),
            name: "dispatch".into(),
            slug: "gh/bench/dispatch".into(),
            vcs_provider: "git".into(),
            repo_url: repo.display().to_string(),
            default_branch: "main".into(),
            webhook_secret: Vec::new(),
            vcs_token: None,
        })
        .await
        .unwrap();
    let mut pipelines = Vec::new();
    for _ in 0..total / per_workflow {
        let p = engine
            .trigger(
                &project,
                TriggerRequest {
                    kind: TriggerKind::Api,
                    actor: "bench".into(),
                    branch: Some("main".into()),
                    tag: None,
                    revision: None,
                    parameters: IndexMap::new(),
                    review_id: None,
                    review_url: None,
                    only_workflow: None,
                },
            )
            .await
            .unwrap();
        pipelines.push(p.id);
    }
    let started = Instant::now();
    let mut claimers = tokio::task::JoinSet::new();
    for c in 0..4 {
        let engine = Arc::clone(&engine);
        claimers.spawn(async move {
            let runner = format!("{DEFAULT_CLASS}/claimer-{c}");
            let classes = [DEFAULT_CLASS.to_string()];
            let mut done = 0;
            let (mut tc, mut tf) = (Duration::ZERO, Duration::ZERO);
            loop {
                let t = Instant::now();
                let Some(a) = engine
                    .claim(&runner, &classes, Duration::ZERO)
                    .await
                    .unwrap()
                else {
                    break;
                };
                tc += t.elapsed();
                let t = Instant::now();
                engine
                    .complete(&a.task_id, &runner, JobStatus::Success)
                    .await
                    .unwrap();
                tf += t.elapsed();
                done += 1;
            }
            if c == 0 {
                println!(
                    "claimer 0: claim {:?}/job, complete {:?}/job",
                    tc / done as u32,
                    tf / done as u32
                );
            }
            done
        });
    }
    let done: usize = claimers.join_all().await.into_iter().sum();
    let took = started.elapsed();
    assert_eq!(done, total);
    for p in pipelines {
        for w in store.workflows_of_pipeline(&p).await.unwrap() {
            assert_eq!(w.status, "success");
        }
    }
    took
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let which = std::env::args().nth(1).unwrap_or_else(|| "both".into());
    let total = 2000;
    for (n, name) in [(1000usize, "big"), (20, "small")] {
        if which != "both" && which != name {
            continue;
        }
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(repo.path().join(".circleci")).unwrap();
        std::fs::write(repo.path().join(".circleci/config.yml"), queued_config(n)).unwrap();
        git(repo.path(), &["init", "-q", "-b", "main"]);
        git(repo.path(), &["add", "-A"]);
        git(repo.path(), &["commit", "-q", "-m", "bench"]);
        let dir = tempfile::tempdir().unwrap();
        let took = rt.block_on(dispatcher(repo.path(), n, dir.path(), total));
        println!("{name}: {:.0} jobs/s", total as f64 / took.as_secs_f64());
    }
}
