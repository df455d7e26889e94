//! The web app's pages: the real `orrery server` on a data directory seeded
//! with 10,000 pipelines (each with a workflow of two jobs) and one job with
//! 1 GB of output, signed in as a browser is, pages fetched over HTTP.
//!
//! - The dashboard's HTML (`/pipelines`, the newest 25): p50 and p99 against
//!   the API's list of the same pipelines in the same run. Target: 50 ms.
//! - A job page's HTML for the job with 1 GB of output against the same page
//!   of a job with 1 MB of output (both past the page's 64 KiB cap of output
//!   per step; the rest is fetched afterwards by the script): the page is what
//!   a browser paints first, so the target is that it does not depend on the
//!   output's size (ratio ≤ 1.5×). A job with 1 KB is printed for reference.

use std::time::{Duration, Instant};

use orrery_store::{Job, NewPipeline, Step, Store, Task, Workflow, new_id, now_ms};
use reqwest::Method;

use crate::exec::orrery_binary;
use crate::exec::tempfile_lite::Dir;
use crate::server::{Api, TOKEN, quantile, repo, start_server};
use crate::{ms, report_noted};

const PIPELINES: usize = 10_000;
const REQUESTS: usize = 40;
const BIG_OUTPUT: usize = 1024 * 1024 * 1024;
/// What a runner sends at most in one output chunk.
const CHUNK: usize = 64 * 1024;
const DASHBOARD_TARGET: Duration = Duration::from_millis(50);

fn job(w: &Workflow, name: &str, deps: &[&str], position: i64) -> Job {
    Job {
        id: new_id(),
        workflow_id: w.id.clone(),
        pipeline_id: w.pipeline_id.clone(),
        project_id: w.project_id.clone(),
        name: name.to_string(),
        number: None,
        job_type: "build".into(),
        status: "success".into(),
        parallelism: 1,
        job: "{}".into(),
        contexts: "[]".into(),
        dependencies: serde_json::to_string(deps).unwrap(),
        created_at: w.created_at,
        queued_at: Some(w.created_at),
        started_at: Some(w.created_at),
        stopped_at: Some(w.created_at + 61_000),
        approved_by: None,
        approval_request_id: None,
        canceled_by: None,
        position,
    }
}

fn task(j: &Job) -> Task {
    Task {
        id: new_id(),
        job_id: j.id.clone(),
        node_index: 0,
        attempt: 1,
        state: "finished".into(),
        result: Some("success".into()),
        resource_class: "default".into(),
        runner_id: None,
        lease_until: None,
        cancel_requested: false,
        created_at: j.created_at,
        claimed_at: j.started_at,
        finished_at: j.stopped_at,
    }
}

/// Seeds `n` pipelines of `project_id`; the last one's workflow and its
/// tasks (build, test).
async fn seed(store: &Store, project_id: &str, n: usize) -> (Workflow, Vec<Job>, Vec<Task>) {
    let mut last = None;
    for i in 0..n {
        let p = store
            .create_pipeline(
                project_id,
                NewPipeline {
                    state: "created".into(),
                    trigger_type: "webhook".into(),
                    trigger_actor: "bench".into(),
                    received_at: now_ms(),
                    branch: Some(if i % 3 == 0 { "main" } else { "feature" }.into()),
                    revision: format!("{:040x}", i),
                    commit_subject: Some(format!("Commit number {i}")),
                    origin_repo_url: "/dev/null".into(),
                    parameters: "{}".into(),
                    ..NewPipeline::default()
                },
            )
            .await
            .expect("a pipeline");
        let w = Workflow {
            id: new_id(),
            pipeline_id: p.id.clone(),
            project_id: project_id.to_string(),
            name: "main".into(),
            status: if i % 7 == 0 { "failed" } else { "success" }.into(),
            tag: None,
            created_at: p.created_at,
            stopped_at: Some(p.created_at + 125_000),
            started_by: "bench".into(),
            canceled_by: None,
            workspace_id: new_id(),
            rerun_of: None,
            plan: "{}".into(),
            run_state: "{}".into(),
            version: 1,
        };
        let build = job(&w, "build", &[], 0);
        let test = job(&w, "test", &[build.id.as_str()], 1);
        let mut jobs = vec![build, test];
        let tasks: Vec<Task> = jobs.iter().map(task).collect();
        store
            .insert_workflow(&w, &mut jobs, &tasks)
            .await
            .expect("a workflow");
        last = Some((w, jobs, tasks));
    }
    last.expect("at least one pipeline")
}

/// Gives `task` one step with `bytes` of output.
async fn output(store: &Store, task: &Task, bytes: usize) {
    store
        .upsert_step(&Step {
            task_id: task.id.clone(),
            step_index: 0,
            name: "Print a lot".into(),
            background: false,
            status: "success".into(),
            outcome: Some("success".into()),
            started_at: task.created_at,
            stopped_at: task.finished_at,
        })
        .await
        .expect("a step");
    let line = b"\x1b[32mok\x1b[0m a line of output from a long build, with some words in it\n";
    let mut chunk = Vec::with_capacity(CHUNK);
    while chunk.len() + line.len() <= CHUNK.min(bytes) {
        chunk.extend_from_slice(line);
    }
    let mut written = 0;
    let mut seq = 0;
    while written < bytes {
        let take = chunk.len().min(bytes - written);
        store
            .append_output(&task.id, 0, seq, &chunk[..take])
            .await
            .expect("output");
        written += take;
        seq += 1;
    }
}

/// Times `REQUESTS` GETs of `path` (after two untimed ones); sorted.
async fn time_gets(http: &reqwest::Client, url: &str, cookie: Option<&str>) -> Vec<Duration> {
    let mut times = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS + 2 {
        let mut req = http.get(url);
        req = match cookie {
            Some(c) => req.header("cookie", c),
            None => req.header("Circle-Token", TOKEN),
        };
        let t = Instant::now();
        let r = req.send().await.expect("an answer");
        let status = r.status();
        let body = r.bytes().await.expect("a body");
        let took = t.elapsed();
        assert!(status.is_success(), "{url}: {status}");
        assert!(!body.is_empty());
        if i >= 2 {
            times.push(took);
        }
    }
    times.sort();
    times
}

pub fn run() {
    let Some(bin) = orrery_binary() else {
        println!(
            "== web: skipped: build the CLI next to the bench first (`cargo build --release -p orrery -p orrery-bench`)"
        );
        return;
    };
    println!(
        "== web (orrery server; {PIPELINES} pipelines, a job with {} MB of output; {REQUESTS} requests each)",
        BIG_OUTPUT / 1024 / 1024
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = Dir::new("orrery-bench-web");
    let config = "version: 2.1\njobs:\n  build:\n    machine: true\n    steps:\n      - run: true\nworkflows:\n  main:\n    jobs: [build]\n";
    let repo = repo(config);
    let (server, base) = start_server(&bin, dir.path());
    let api = Api::new(&base);
    rt.block_on(async {
        let slug = api.add_project("web", repo.path()).await;
        let project = api
            .call(Method::GET, &format!("/api/v2/project/{slug}"), None)
            .await;
        let project_id = project["id"].as_str().expect("a project id").to_string();
        let url = format!("sqlite://{}", dir.path().join("data/orrery.db").display());
        let store = Store::connect(&url).await.expect("the server's database");

        let seeding = Instant::now();
        let (w_small, small_jobs, small_tasks) = seed(&store, &project_id, 1).await;
        output(&store, &small_tasks[0], 1024).await;
        let (w_mid, mid_jobs, mid_tasks) = seed(&store, &project_id, 1).await;
        output(&store, &mid_tasks[0], 1024 * 1024).await;
        seed(&store, &project_id, PIPELINES - 3).await;
        let (w_big, big_jobs, big_tasks) = seed(&store, &project_id, 1).await;
        output(&store, &big_tasks[0], BIG_OUTPUT).await;
        println!("  (seeded in {:.1} s)", seeding.elapsed().as_secs_f64());

        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(120))
            .build()
            .expect("HTTP client");
        let signin = http
            .post(format!("{base}/signin"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("login=admin&password={TOKEN}"))
            .send()
            .await
            .expect("sign in");
        let cookie = signin
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|c| c.split(';').next())
            .unwrap_or_else(|| panic!("no session: {}", signin.status()))
            .to_string();

        let dashboard = time_gets(&http, &format!("{base}/pipelines"), Some(&cookie)).await;
        let api_list = time_gets(
            &http,
            &format!("{base}/api/v2/project/{slug}/pipeline"),
            None,
        )
        .await;
        report_noted(
            "dashboard HTML, 10k pipelines (p50)",
            quantile(&dashboard, 0.5),
            Some(("API list", quantile(&api_list, 0.5))),
            DASHBOARD_TARGET,
            "",
        );
        report_noted(
            "dashboard HTML, 10k pipelines (p99)",
            quantile(&dashboard, 0.99),
            Some(("API list", quantile(&api_list, 0.99))),
            DASHBOARD_TARGET,
            "",
        );

        // The first pipeline seeded is number 1, the last `PIPELINES`.
        let page = |number: usize, w: &Workflow, j: &Job| {
            format!(
                "{base}/pipelines/{slug}/{number}/workflows/{}/jobs/{}",
                w.id,
                j.number.expect("a job number")
            )
        };
        let small_url = page(1, &w_small, &small_jobs[0]);
        let mid_url = page(2, &w_mid, &mid_jobs[0]);
        let big_url = page(PIPELINES, &w_big, &big_jobs[0]);
        let small = time_gets(&http, &small_url, Some(&cookie)).await;
        let mid = time_gets(&http, &mid_url, Some(&cookie)).await;
        let big = time_gets(&http, &big_url, Some(&cookie)).await;
        let mid_p50 = quantile(&mid, 0.5);
        // Past the page's cap (64 KiB a step), more output must cost nothing.
        report_noted(
            "job page HTML, 1 GB of output (p50)",
            quantile(&big, 0.5),
            Some(("1 MB of output", mid_p50)),
            mid_p50.mul_f64(1.5),
            " (1.5x the 1 MB job's page)",
        );
        println!(
            "  (job page with 1 KB of output: p50 {}; the page holds at most 64 KiB of a step's output)",
            ms(quantile(&small, 0.5))
        );
        let rss = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default();
        println!(
            "  server peak RSS while serving: {rss}; p99 job page 1 GB: {}",
            ms(quantile(&big, 0.99))
        );
    });
    drop(server);
}
