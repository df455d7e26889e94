//! The server: the real `orrery server` (the release binary next to the
//! bench) on a temporary data directory, driven through its HTTP API, and the
//! engine's dispatcher in-process.
//!
//! - Trigger → no-op host job finished: `POST .../pipeline`, then the job's
//!   live output stream until its `end` event; p50 and p99. The baseline is
//!   what such a job fundamentally costs, timed in the same run: a `git clone`
//!   of the same repository into a fresh directory plus `sh -c true`.
//!   Laminar's 10 ms (DESIGN.md) is the target.
//! - 1,000 queued no-op host jobs (one workflow of 1,000 independent machine
//!   jobs), from the trigger until the workflow ended: on the embedded runner
//!   (a slot per core) and on a remote `orrery runner` with many slots.
//!   Target: twice Laminar's 100 jobs in 1.1 s.
//! - The dispatcher alone: claim and complete of 2,000 queued tasks, no
//!   execution, in-process on `orrery_engine::Engine` over SQLite, 4 claimers
//!   at a time, in workflows of 1,000 jobs and of 20; against a bare SQLite
//!   queue (`UPDATE ... RETURNING` on a table of 2,000 rows, then marked done,
//!   4 claimers) through sqlx on the same kind of database file.
//! - The server's RSS, idle, a few seconds after start, embedded runner on.
//! - `GET .../pipeline` p99 at 500 requests/s, open loop: requests leave at
//!   fixed times and each is timed from when it was due.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use orrery_core::JobStatus;
use orrery_engine::{DEFAULT_CLASS, Engine, EngineConfig, Secrets, TriggerKind, TriggerRequest};
use orrery_store::{NewProject, Store};
use reqwest::Method;
use serde_json::{Value, json};

use crate::exec::tempfile_lite::Dir;
use crate::exec::{git, orrery_binary};
use crate::{ms, report_memory, report_noted, report_rate};

pub(crate) const TOKEN: &str = "orrery-bench-admin-token-0123456789";
/// Timed triggers of the no-op job (after two untimed ones).
const TRIGGERS: usize = 50;
/// Jobs of the queued-jobs workflow.
const QUEUED: usize = 1000;
/// Tasks the dispatcher claims and completes: in workflows of `QUEUED` jobs
/// (the largest a run state gets here), and of `SMALL_WORKFLOW` jobs.
const DISPATCHED: usize = 2000;
const SMALL_WORKFLOW: usize = 20;
/// Concurrent claimers of the dispatcher benchmarks (a runner's slots).
const CLAIMERS: usize = 4;
/// Slots of the remote runner.
const REMOTE_SLOTS: usize = 16;
const LOAD_RATE: u64 = 500;
const LOAD_SECS: u64 = 3;
/// How long after start the idle RSS is read.
const IDLE_AFTER: Duration = Duration::from_secs(3);
/// Laminar finishes 100 queued no-op jobs in 1.1 s (DESIGN.md).
const LAMINAR_JOBS_PER_SEC: f64 = 100.0 / 1.1;

const REMOTE_CLASS: &str = "bench/host";

/// A child process, killed when dropped.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of its log, for failures.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Starts `orrery server` on a free port; returns it and its URL.
pub(crate) fn start_server(bin: &Path, dir: &Path) -> (Proc, String) {
    start_server_with(bin, dir, cores(), |_| {})
}

/// Starts `orrery server` with `slots` embedded runner slots on a free
/// port, `configure` adding to its command; returns it and its URL.
pub(crate) fn start_server_with(
    bin: &Path,
    dir: &Path,
    slots: usize,
    configure: impl FnOnce(&mut Command),
) -> (Proc, String) {
    let log = dir.join("server.log");
    let mut cmd = Command::new(bin);
    cmd.args(["server", "--listen", "127.0.0.1:0", "--runner-slots"])
        .arg(slots.to_string())
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--orb-dir")
        .arg(dir.join("orbs"))
        .env("ORRERY_ADMIN_TOKEN", TOKEN)
        .env_remove("ORRERY_CONFIG")
        .env_remove("ORRERY_DATABASE_URL")
        .env_remove("ORRERY_BLOB_URL")
        .env_remove("ORRERY_URL");
    configure(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("server log"))
        .spawn()
        .expect("start orrery server");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep reading: the server prints a few more lines, and a closed pipe
    // would fail them.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some((_, url)) = line.split_once(" is listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let proc = Proc { child, log };
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => (proc, url),
        Err(_) => panic!("orrery server did not start:\n{}", proc.log_tail()),
    }
}

pub(crate) fn start_runner(bin: &Path, dir: &Path, url: &str, token: &str, slots: usize) -> Proc {
    let log = dir.join("runner.log");
    let child = Command::new(bin)
        .args(["runner", "--url", url, "--name", "bench"])
        .env("ORRERY_RUNNER_TOKEN", token)
        .arg("--slots")
        .arg(slots.to_string())
        .arg("--work-dir")
        .arg(dir.join("runner"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("runner log"))
        .spawn()
        .expect("start orrery runner");
    Proc { child, log }
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A repository whose config is `config`.
pub(crate) fn repo(config: &str) -> Dir {
    let dir = Dir::new("orrery-bench-server-repo");
    std::fs::create_dir_all(dir.path().join(".circleci")).unwrap();
    std::fs::write(dir.path().join(".circleci/config.yml"), config).unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "bench"]);
    dir
}

const NOOP_CONFIG: &str = "version: 2.1\njobs:\n  noop:\n    machine: true\n    steps:\n      - run: \"true\"\nworkflows:\n  w:\n    jobs: [noop]\n";

/// A workflow of `n` independent no-op machine jobs.
fn queued_config(n: usize, resource_class: Option<&str>) -> String {
    let class = resource_class.map_or(String::new(), |c| format!(", resource_class: {c}"));
    let mut text = String::from("version: 2.1\njobs:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  j{i}: {{machine: true{class}, steps: [run: \"true\"]}}\n"
        ));
    }
    text.push_str("workflows:\n  w:\n    jobs:\n");
    for i in 0..n {
        text.push_str(&format!("      - j{i}\n"));
    }
    text
}

/// The `q` quantile of sorted `times`.
pub(crate) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[derive(Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub(crate) fn new(base: &str) -> Api {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("HTTP client");
        Api {
            http,
            base: base.to_string(),
        }
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("Circle-Token", TOKEN)
    }

    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates resource class `class`; a runner token for it.
    pub(crate) async fn runner_token(&self, class: &str) -> String {
        self.call(
            Method::POST,
            "/api/v3/runner/resource",
            Some(json!({"resource_class": class})),
        )
        .await;
        let token = self
            .call(
                Method::POST,
                "/api/v3/runner/token",
                Some(json!({"resource_class": class, "nickname": "bench"})),
            )
            .await;
        token["token"].as_str().expect("runner token").to_string()
    }

    pub(crate) async fn add_project(&self, name: &str, repo: &Path) -> String {
        let slug = format!("gh/bench/{name}");
        self.call(
            Method::POST,
            &format!("/api/v2/project/{slug}"),
            Some(json!({"repo_url": repo.display().to_string()})),
        )
        .await;
        slug
    }

    /// Triggers a pipeline; its id and number.
    async fn trigger(&self, slug: &str) -> (String, i64) {
        let p = self
            .call(
                Method::POST,
                &format!("/api/v2/project/{slug}/pipeline"),
                None,
            )
            .await;
        (
            p["id"].as_str().expect("pipeline id").to_string(),
            p["number"].as_i64().expect("pipeline number"),
        )
    }

    /// Follows a job's live output until its `end` event; the job's status.
    async fn follow_job(&self, slug: &str, number: i64) -> String {
        let path = format!("/api/v2/project/{slug}/job/{number}/output/stream");
        let mut resp = self
            .request(Method::GET, &path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        let mut text = String::new();
        while let Some(chunk) = resp.chunk().await.unwrap_or_else(|e| panic!("{path}: {e}")) {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(at) = text.find("event: end\n")
                && let Some(data) = text[at..].split("data: ").nth(1)
                && let Some((line, _)) = data.split_once('\n')
            {
                let end: Value = serde_json::from_str(line).expect("end event");
                return end["status"].as_str().unwrap_or_default().to_string();
            }
        }
        panic!("{path}: the stream ended without an `end` event");
    }

    /// Waits (polling every 10 ms) until the pipeline's workflow has ended;
    /// its id and status.
    async fn wait_workflow(&self, pipeline_id: &str) -> (String, String) {
        let path = format!("/api/v2/pipeline/{pipeline_id}/workflow");
        loop {
            let w = self.call(Method::GET, &path, None).await;
            let status = w["items"][0]["status"].as_str().unwrap_or("").to_string();
            if !matches!(status.as_str(), "" | "running" | "on_hold" | "failing") {
                let id = w["items"][0]["id"].as_str().unwrap_or("").to_string();
                return (id, status);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// What went wrong in a workflow: its jobs that did not succeed, and the
    /// output of the first.
    async fn failures(&self, slug: &str, workflow_id: &str) -> String {
        let jobs = self
            .call(
                Method::GET,
                &format!("/api/v2/workflow/{workflow_id}/job"),
                None,
            )
            .await;
        let failed: Vec<&Value> = jobs["items"]
            .as_array()
            .map(|items| items.iter().filter(|j| j["status"] != "success").collect())
            .unwrap_or_default();
        let mut text = format!("{} jobs did not succeed", failed.len());
        if let Some(first) = failed.first() {
            text.push_str(&format!("; the first: {first}"));
            if let Some(n) = first["job_number"].as_i64() {
                let output = self
                    .request(
                        Method::GET,
                        &format!("/api/v2/project/{slug}/job/{n}/output"),
                    )
                    .send()
                    .await;
                if let Ok(o) = output {
                    text.push_str(&format!(
                        "\noutput:\n{}",
                        o.text().await.unwrap_or_default()
                    ));
                }
            }
        }
        text
    }
}

/// Trigger → no-op job finished, `n` times, each followed by the baseline
/// (so load on the machine weighs on both alike): ours and the baseline's.
async fn trigger_latencies(
    api: &Api,
    slug: &str,
    repo: &Path,
    n: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let scratch = Dir::new("orrery-bench-server-checkout");
    let mut times = Vec::with_capacity(n);
    let mut baseline = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let (id, number) = api.trigger(slug).await;
        // One job per pipeline in this project: job numbers follow
        // pipeline numbers (checked below, untimed).
        let status = api.follow_job(slug, number).await;
        times.push(started.elapsed());
        assert_eq!(status, "success", "no-op job {number}");
        let job = api
            .call(
                Method::GET,
                &format!("/api/v2/project/{slug}/job/{number}"),
                None,
            )
            .await;
        assert_eq!(
            job["pipeline"]["id"],
            id.as_str(),
            "job {number}'s pipeline"
        );
        let (repo, into) = (repo.to_path_buf(), scratch.path().join(i.to_string()));
        let base = tokio::task::spawn_blocking(move || checkout_and_true(&repo, &into))
            .await
            .expect("baseline");
        baseline.push(base);
    }
    times.sort();
    baseline.sort();
    (times, baseline)
}

/// What a no-op job fundamentally costs: a checkout into a fresh directory,
/// and a process.
fn checkout_and_true(repo: &Path, into: &Path) -> Duration {
    let started = Instant::now();
    let clone = Command::new("git")
        .args(["clone", "--quiet"])
        .arg(repo)
        .arg(into)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("git clone");
    let sh = Command::new("sh")
        .args(["-c", "true"])
        .current_dir(into)
        .status()
        .expect("sh");
    let took = started.elapsed();
    assert!(clone.success() && sh.success(), "git clone + sh -c true");
    took
}

/// Trigger → the workflow of `QUEUED` jobs ended.
async fn queued_run(api: &Api, slug: &str) -> Duration {
    let started = Instant::now();
    let (id, _) = api.trigger(slug).await;
    let (workflow, status) = api.wait_workflow(&id).await;
    let took = started.elapsed();
    if status != "success" {
        panic!(
            "the {QUEUED}-job workflow of {slug} ended {status}: {}",
            api.failures(slug, &workflow).await
        );
    }
    took
}

/// Open loop: `rate` requests/s of `path` for `secs`; each request's latency
/// from when it was due.
async fn load(api: &Api, path: &str, rate: u64, secs: u64) -> Vec<Duration> {
    // Warm up: connections, caches.
    for _ in 0..20 {
        api.call(Method::GET, path, None).await;
    }
    let every = Duration::from_nanos(1_000_000_000 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..rate * secs {
        let due = start + every * i as u32;
        tokio::time::sleep_until(due).await;
        let req = api.request(Method::GET, path);
        requests.spawn(async move {
            let resp = req.send().await.expect("request");
            assert!(resp.status().is_success(), "{}", resp.status());
            resp.bytes().await.expect("body");
            due.elapsed()
        });
    }
    let mut times = requests.join_all().await;
    times.sort();
    times
}

struct NoSecrets;

impl Secrets for NoSecrets {
    fn open(&self, _sealed: &[u8]) -> Option<String> {
        None
    }

    fn seal(&self, _plain: &str) -> Vec<u8> {
        Vec::new()
    }
}

/// The engine's claim and complete of `DISPATCHED` queued tasks (pipelines
/// of `per_workflow` independent jobs from `repo`), `CLAIMERS` at a time, on
/// SQLite in `dir`; the triggers are not timed.
async fn dispatcher(repo: &Path, per_workflow: usize, dir: &Path) -> Duration {
    let store = Store::connect(&format!("sqlite://{}", dir.join("orrery.db").display()))
        .await
        .expect("store");
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
        .expect("project");
    let mut pipelines = Vec::new();
    for _ in 0..DISPATCHED / per_workflow {
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
            .expect("trigger");
        pipelines.push(p.id);
    }
    let started = Instant::now();
    let mut claimers = tokio::task::JoinSet::new();
    for c in 0..CLAIMERS {
        let engine = Arc::clone(&engine);
        claimers.spawn(async move {
            let runner = format!("{DEFAULT_CLASS}/claimer-{c}");
            let classes = [DEFAULT_CLASS.to_string()];
            let mut done = 0;
            while let Some(a) = engine
                .claim(&runner, &classes, Duration::ZERO)
                .await
                .expect("claim")
            {
                engine
                    .complete(&a.task_id, &runner, JobStatus::Success)
                    .await
                    .expect("complete");
                done += 1;
            }
            done
        });
    }
    let done: usize = claimers.join_all().await.into_iter().sum();
    let took = started.elapsed();
    assert_eq!(done, DISPATCHED, "tasks claimed and completed");
    for p in pipelines {
        for w in store.workflows_of_pipeline(&p).await.expect("workflows") {
            assert_eq!(w.status, "success", "dispatched workflow");
        }
    }
    took
}

/// A bare SQLite queue: `DISPATCHED` rows, each claimed with
/// `UPDATE ... RETURNING` and marked done, `CLAIMERS` at a time, through sqlx
/// (the same driver and settings as the store) on a file in `dir`.
async fn bare_queue(dir: &Path) -> Duration {
    use sqlx::Executor;
    use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
    use std::str::FromStr;

    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=rwc", dir.join("queue.db").display());
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000;")
                    .await?;
                Ok(())
            })
        })
        .connect_with(AnyConnectOptions::from_str(&url).expect("url"))
        .await
        .expect("queue database");
    pool.execute("CREATE TABLE queue (id TEXT PRIMARY KEY, state TEXT NOT NULL, class TEXT NOT NULL, runner TEXT, created_at BIGINT NOT NULL, claimed_at BIGINT, finished_at BIGINT)")
        .await
        .expect("create");
    pool.execute("CREATE INDEX queue_ready ON queue (state, class, created_at)")
        .await
        .expect("index");
    let mut tx = pool.begin().await.expect("begin");
    for i in 0..DISPATCHED {
        sqlx::query(
            "INSERT INTO queue (id, state, class, created_at) VALUES ($1, 'queued', $2, $3)",
        )
        .bind(format!("{i:08}"))
        .bind(DEFAULT_CLASS)
        .bind(i as i64)
        .execute(&mut *tx)
        .await
        .expect("insert");
    }
    tx.commit().await.expect("commit");
    let started = Instant::now();
    let mut claimers = tokio::task::JoinSet::new();
    for c in 0..CLAIMERS {
        let pool = pool.clone();
        claimers.spawn(async move {
            let runner = format!("claimer-{c}");
            let mut done = 0;
            loop {
                let row = sqlx::query("UPDATE queue SET state = 'running', runner = $1, claimed_at = $2 WHERE id = (SELECT id FROM queue WHERE state = 'queued' AND class = $3 ORDER BY created_at, id LIMIT 1) AND state = 'queued' RETURNING id")
                    .bind(&runner)
                    .bind(orrery_store::now_ms())
                    .bind(DEFAULT_CLASS)
                    .fetch_optional(&pool)
                    .await
                    .expect("claim");
                let Some(row) = row else { break };
                let id: String = sqlx::Row::get(&row, "id");
                sqlx::query("UPDATE queue SET state = 'finished', finished_at = $1 WHERE id = $2 AND runner = $3 AND state = 'running'")
                    .bind(orrery_store::now_ms())
                    .bind(&id)
                    .bind(&runner)
                    .execute(&pool)
                    .await
                    .expect("finish");
                done += 1;
            }
            done
        });
    }
    let done: usize = claimers.join_all().await.into_iter().sum();
    let took = started.elapsed();
    assert_eq!(done, DISPATCHED, "rows claimed and finished");
    took
}

pub fn run() {
    let Some(bin) = orrery_binary() else {
        println!(
            "== server: skipped: build the CLI next to the bench first (`cargo build --release -p orrery -p orrery-bench`)"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let slots = cores();
    println!(
        "== server (orrery server, embedded runner with {slots} slots; {TRIGGERS} triggers, {QUEUED} queued jobs, {DISPATCHED} dispatched)"
    );

    let noop = repo(NOOP_CONFIG);
    let queued = repo(&queued_config(QUEUED, None));
    let remote = repo(&queued_config(QUEUED, Some(REMOTE_CLASS)));
    let dir = Dir::new("orrery-bench-server");
    let (server, base) = start_server(&bin, dir.path());
    let started = Instant::now();
    let api = Api::new(&base);

    // While the server idles: the dispatcher in-process, and its baseline.
    let engine_dir = Dir::new("orrery-bench-dispatch");
    let queue_dir = Dir::new("orrery-bench-queue");
    let small = repo(&queued_config(SMALL_WORKFLOW, None));
    let small_dir = Dir::new("orrery-bench-dispatch-small");
    let (dispatch_big, dispatch_small, bare) = rt.block_on(async {
        let bare = bare_queue(queue_dir.path()).await;
        let big = dispatcher(queued.path(), QUEUED, engine_dir.path()).await;
        let small = dispatcher(small.path(), SMALL_WORKFLOW, small_dir.path()).await;
        (big, small, bare)
    });

    std::thread::sleep(IDLE_AFTER.saturating_sub(started.elapsed()));
    let idle = rss_kib(server.pid());

    let (latencies, queued_embedded, queued_remote, api_load, runner) = rt.block_on(async {
        let noop_slug = api.add_project("noop", noop.path()).await;
        let queued_slug = api.add_project("queued", queued.path()).await;
        let remote_slug = api.add_project("remote", remote.path()).await;

        // Untimed: the first trigger clones the repository.
        trigger_latencies(&api, &noop_slug, noop.path(), 2).await;
        let latencies = trigger_latencies(&api, &noop_slug, noop.path(), TRIGGERS).await;

        let queued_embedded = queued_run(&api, &queued_slug).await;

        let token = api.runner_token(REMOTE_CLASS).await;
        let runner = start_runner(&bin, dir.path(), &base, &token, REMOTE_SLOTS);
        // Wait until it has registered.
        let registered = Instant::now();
        loop {
            let runners = api.call(Method::GET, "/api/v3/runner", None).await;
            let listed = runners["items"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["resource_class"] == REMOTE_CLASS));
            if listed {
                break;
            }
            assert!(
                registered.elapsed() < Duration::from_secs(30),
                "the runner did not register:\n{}",
                runner.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let queued_remote = queued_run(&api, &remote_slug).await;

        let api_load = load(
            &api,
            &format!("/api/v2/project/{noop_slug}/pipeline"),
            LOAD_RATE,
            LOAD_SECS,
        )
        .await;
        (latencies, queued_embedded, queued_remote, api_load, runner)
    });
    drop(runner);
    drop(server);

    let (latencies, baseline) = latencies;
    let base50 = quantile(&baseline, 0.5);
    let base99 = quantile(&baseline, 0.99);
    report_noted(
        "trigger → no-op host job done (API), p50",
        quantile(&latencies, 0.5),
        Some(("git clone + sh -c true", base50)),
        Duration::from_millis(10),
        " (Laminar)",
    );
    report_noted(
        "trigger → no-op host job done (API), p99",
        quantile(&latencies, 0.99),
        Some(("git clone + sh -c true", base99)),
        Duration::from_millis(10),
        " (Laminar's p50)",
    );
    let target = 2.0 * LAMINAR_JOBS_PER_SEC;
    report_rate(
        &format!("{QUEUED} queued no-op jobs, embedded ({slots} slots)"),
        QUEUED as f64 / queued_embedded.as_secs_f64(),
        "jobs/s",
        None,
        target,
        " (2x Laminar)",
    );
    report_rate(
        &format!("{QUEUED} queued no-op jobs, remote ({REMOTE_SLOTS} slots)"),
        QUEUED as f64 / queued_remote.as_secs_f64(),
        "jobs/s",
        None,
        target,
        " (2x Laminar)",
    );
    let bare_rate = DISPATCHED as f64 / bare.as_secs_f64();
    report_rate(
        &format!("dispatcher, {DISPATCHED} jobs in {QUEUED}-job workflows"),
        DISPATCHED as f64 / dispatch_big.as_secs_f64(),
        "jobs/s",
        Some(("bare SQLite queue", bare_rate)),
        2000.0,
        "",
    );
    report_rate(
        &format!("dispatcher, {DISPATCHED} jobs in {SMALL_WORKFLOW}-job workflows"),
        DISPATCHED as f64 / dispatch_small.as_secs_f64(),
        "jobs/s",
        Some(("bare SQLite queue", bare_rate)),
        2000.0,
        "",
    );
    report_memory("server idle RSS, embedded runner on", idle, 20.0);
    report_noted(
        &format!("GET pipeline list at {LOAD_RATE}/s, p99"),
        quantile(&api_load, 0.99),
        None,
        Duration::from_millis(25),
        "",
    );
    println!(
        "   (pipeline list at {LOAD_RATE}/s: p50 {}, max {}; {} requests)",
        ms(quantile(&api_load, 0.5)),
        ms(quantile(&api_load, 1.0)),
        api_load.len()
    );
}
