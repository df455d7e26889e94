//! What the server's integration tests share: a server on a free port with an
//! embedded runner, git repositories in a temporary directory, an HTTP client
//! with the admin token, and polling with a deadline.

#![allow(dead_code)]

pub mod browser;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use orrery_server::{Server, ServerConfig};
use orrery_store::Role;
use serde_json::{Value, json};

/// The admin's API token on first start.
pub const ADMIN_TOKEN: &str = "a-test-admin-token-123";

/// How long any state change may take before a test gives up.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `git` in `dir` with a fixed identity; its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A git repository with a `.circleci/config.yml` on `main`.
pub struct Repo {
    pub path: PathBuf,
}

impl Repo {
    pub fn new(path: PathBuf, config: &str) -> Repo {
        std::fs::create_dir_all(path.join(".circleci")).unwrap();
        git(&path, &["init", "-q", "-b", "main"]);
        let repo = Repo { path };
        repo.commit(
            &[(".circleci/config.yml", config)],
            "first commit\n\nwith a body",
        );
        repo
    }

    /// Writes files and commits them; the new commit's SHA.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (name, text) in files {
            let full = self.path.join(name);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        git(&self.path, &["add", "-A"]);
        git(
            &self.path,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.path, &["rev-parse", "HEAD"])
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(&self.path, args)
    }

    pub fn url(&self) -> String {
        self.path.display().to_string()
    }
}

/// A response: status, body bytes and the body as JSON (`Null` when not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub bytes: Vec<u8>,
    pub json: Value,
    pub content_type: String,
}

impl Resp {
    /// The `message` of an error body, asserting the body has that shape.
    pub fn message(&self) -> String {
        let m = self.json.get("message").and_then(Value::as_str);
        assert!(
            m.is_some_and(|m| !m.is_empty()),
            "expected {{\"message\": ...}}, got {} {}",
            self.status,
            String::from_utf8_lossy(&self.bytes)
        );
        assert!(
            self.content_type.starts_with("application/json"),
            "error bodies are JSON, got content-type {:?}",
            self.content_type
        );
        m.unwrap().to_string()
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Resp {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.bytes)
        );
        self
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// A running server with its own data directory.
pub struct TestServer {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub base: String,
}

/// Who calls: the admin, another token, or nobody.
#[derive(Clone, Copy, Debug)]
pub enum Who<'a> {
    Admin,
    Token(&'a str),
    Anonymous,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    pub async fn start_with(change: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            ServerConfig::new(dir.path().join("data"), Arc::new(orrery_config::NoOrbs));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.admin_token = Some(ADMIN_TOKEN.into());
        config.lease = Duration::from_secs(10);
        config.heartbeat = Duration::from_secs(1);
        config.kill_grace = Duration::from_secs(2);
        config.embedded_slots = 2;
        change(&mut config);
        let server = Server::start(config).await.expect("the server starts");
        let base = format!("http://{}", server.addr);
        let http = orrery_server::client::http_client(Duration::from_secs(60)).unwrap();
        TestServer {
            server,
            dir,
            http,
            base,
        }
    }

    pub async fn stop(self) {
        self.server.shutdown_token().cancel();
        tokio::time::timeout(DEADLINE, self.server.wait())
            .await
            .expect("the server stops in time");
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request builder with the caller's credentials.
    pub fn request(&self, method: &str, path: &str, who: Who<'_>) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let req = self.http.request(method, self.url(path));
        match who {
            Who::Admin => req.header("Circle-Token", ADMIN_TOKEN),
            Who::Token(t) => req.header("Circle-Token", t),
            Who::Anonymous => req,
        }
    }

    pub async fn send(req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.expect("the server answers");
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = r.bytes().await.expect("a body").to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            bytes,
            json,
            content_type,
        }
    }

    pub async fn call(&self, method: &str, path: &str, who: Who<'_>, body: Option<&Value>) -> Resp {
        let mut req = self.request(method, path, who);
        if let Some(b) = body {
            req = req.json(b);
        }
        TestServer::send(req).await
    }

    /// `GET` as the admin.
    pub async fn get(&self, path: &str) -> Resp {
        self.call("get", path, Who::Admin, None).await
    }

    /// `POST` with a JSON body as the admin.
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.call("post", path, Who::Admin, Some(body)).await
    }

    /// A git repository in the test's directory.
    pub fn repo(&self, name: &str, config: &str) -> Repo {
        Repo::new(self.dir.path().join("repos").join(name), config)
    }

    /// Creates a project (201 asserted); its JSON.
    pub async fn create_project(&self, slug: &str, repo: &Repo, extra: Value) -> Value {
        let mut body = json!({"repo_url": repo.url()});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                body[k] = v;
            }
        }
        let r = self.post(&format!("/api/v2/project/{slug}"), &body).await;
        r.expect(201);
        r.json.clone()
    }

    /// Triggers a pipeline (201 asserted); the answer.
    pub async fn trigger(&self, slug: &str, body: Value) -> Value {
        let r = self
            .post(&format!("/api/v2/project/{slug}/pipeline"), &body)
            .await;
        r.expect(201);
        r.json.clone()
    }

    /// A pipeline's workflows once it has `n` of them.
    pub async fn workflows(&self, pipeline_id: &str, n: usize) -> Vec<Value> {
        poll(
            &format!("pipeline {pipeline_id} has {n} workflows"),
            || async move {
                let r = self
                    .get(&format!("/api/v2/pipeline/{pipeline_id}/workflow"))
                    .await;
                r.expect(200);
                let items = r.json["items"].as_array().cloned().unwrap_or_default();
                (items.len() >= n).then_some(items)
            },
        )
        .await
    }

    /// Waits until the workflow's status is one of `statuses`; its JSON.
    pub async fn wait_workflow(&self, workflow_id: &str, statuses: &[&str]) -> Value {
        let mut ticker = Ticker::new();
        loop {
            let r = self.get(&format!("/api/v2/workflow/{workflow_id}")).await;
            r.expect(200);
            circleci_status(WORKFLOW_STATUSES, &r.json["status"]);
            if statuses.contains(&r.json["status"].as_str().unwrap_or_default()) {
                return r.json;
            }
            ticker
                .tick(|| {
                    format!(
                        "workflow {workflow_id} reaches {statuses:?}; last: {}",
                        r.json
                    )
                })
                .await;
        }
    }

    /// A workflow's jobs by name.
    pub async fn jobs(&self, workflow_id: &str) -> Vec<Value> {
        let r = self
            .get(&format!("/api/v2/workflow/{workflow_id}/job"))
            .await;
        r.expect(200);
        let items = r.json["items"].as_array().cloned().unwrap_or_default();
        for j in &items {
            circleci_status(JOB_STATUSES, &j["status"]);
        }
        items
    }

    pub async fn job(&self, workflow_id: &str, name: &str) -> Value {
        self.jobs(workflow_id)
            .await
            .into_iter()
            .find(|j| j["name"] == name)
            .unwrap_or_else(|| panic!("no job {name} in workflow {workflow_id}"))
    }

    /// Waits until the named job of a workflow has one of `statuses`.
    pub async fn wait_job(&self, workflow_id: &str, name: &str, statuses: &[&str]) -> Value {
        let mut ticker = Ticker::new();
        loop {
            let j = self.job(workflow_id, name).await;
            if statuses.contains(&j["status"].as_str().unwrap_or_default()) {
                return j;
            }
            ticker
                .tick(|| format!("job {name} reaches {statuses:?}; last: {j}"))
                .await;
        }
    }

    /// Triggers a pipeline and waits for its only workflow to end.
    pub async fn run(&self, slug: &str, body: Value) -> (Value, Value) {
        let p = self.trigger(slug, body).await;
        let id = p["id"].as_str().unwrap().to_string();
        let wf = self.workflows(&id, 1).await.remove(0);
        let wf = self
            .wait_workflow(
                wf["id"].as_str().unwrap(),
                &[
                    "success",
                    "failed",
                    "error",
                    "canceled",
                    "not_run",
                    "unauthorized",
                ],
            )
            .await;
        (p, wf)
    }

    /// A new user with `role` and an API token for them.
    pub async fn user_token(&self, login: &str, role: Role) -> String {
        let store = &self.server.state.store;
        let user = store.create_user(login, login, role).await.unwrap();
        let token = format!("{login}-token-{}", orrery_server::secrets::new_token());
        store
            .create_token(
                &user.id,
                &orrery_server::secrets::hash_token(&token),
                "test",
            )
            .await
            .unwrap();
        token
    }
}

/// The pause between polls, growing to 100 ms, and the [`DEADLINE`].
pub struct Ticker {
    until: tokio::time::Instant,
    wait: Duration,
}

impl Ticker {
    pub fn new() -> Ticker {
        Ticker {
            until: tokio::time::Instant::now() + DEADLINE,
            wait: Duration::from_millis(10),
        }
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        tokio::time::Instant::now() >= self.until
    }

    /// Pauses before the next poll; panics saying what never happened once
    /// the deadline has passed.
    pub async fn tick(&mut self, what: impl FnOnce() -> String) {
        if self.expired() {
            panic!("timed out waiting until {}", what());
        }
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(Duration::from_millis(100));
    }
}

impl Default for Ticker {
    fn default() -> Self {
        Ticker::new()
    }
}

/// Calls `f` until it gives a value, at most [`DEADLINE`]; panics with `what`
/// when it never does.
pub async fn poll<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let mut ticker = Ticker::new();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        ticker.tick(|| what.to_string()).await;
    }
}

/// A machine job config with one workflow of the given jobs (`name: steps`).
pub fn machine_config(jobs: &[(&str, &str)], workflow: &str) -> String {
    let mut out = String::from("version: 2.1\njobs:\n");
    for (name, run) in jobs {
        out.push_str(&format!(
            "  {name}:\n    machine: true\n    steps:\n      - run: {run}\n"
        ));
    }
    out.push_str("workflows:\n  main:\n    jobs:\n");
    out.push_str(workflow);
    out
}

/// CircleCI's workflow statuses (API v2).
pub const WORKFLOW_STATUSES: &[&str] = &[
    "success",
    "running",
    "not_run",
    "failed",
    "error",
    "failing",
    "on_hold",
    "canceled",
    "unauthorized",
];

/// CircleCI's job statuses (API v2).
pub const JOB_STATUSES: &[&str] = &[
    "success",
    "running",
    "not_run",
    "failed",
    "retried",
    "queued",
    "not_running",
    "infrastructure_fail",
    "timedout",
    "on_hold",
    "terminated-unknown",
    "blocked",
    "canceled",
    "unauthorized",
];

/// CircleCI's pipeline states (API v2).
pub const PIPELINE_STATES: &[&str] = &["created", "errored", "setup-pending", "setup", "pending"];

/// Asserts a status is one of CircleCI's words.
#[track_caller]
pub fn circleci_status(set: &[&str], v: &Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("a status string, got {v}"));
    assert!(set.contains(&s), "`{s}` is not one of CircleCI's {set:?}");
}

/// Every byte of the SQLite database: the file, its WAL and shared memory.
pub fn database_bytes(s: &TestServer) -> Vec<u8> {
    let mut out = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(s.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("orrery.db") {
            out.extend(std::fs::read(&path).unwrap());
            files += 1;
        }
    }
    assert!(files >= 1, "the database is in the data directory");
    out
}

/// A job whose test `flaky` fails on the first run of a revision and passes
/// after (a marker file on the host), `broken` always fails, `slow` is slow.
/// The job fails when `flaky` did.
pub fn flaky_config(marker: &str) -> String {
    r#"version: 2.1
jobs:
  test:
    machine: true
    steps:
      - run:
          name: run the tests
          command: |
            mkdir -p results
            if [ -f MARKER ]; then
              flaky='<testcase classname="suite" name="flaky" file="t/flaky.sh" time="0.1"/>'
            else
              touch MARKER failed
              flaky='<testcase classname="suite" name="flaky" file="t/flaky.sh" time="0.1"><failure message="flaked">boom</failure></testcase>'
            fi
            cat > results/junit.xml <<EOF
            <testsuite name="suite">
              <testcase classname="suite" name="stable" file="t/stable.sh" time="0.01"/>
              <testcase classname="suite" name="slow" file="t/slow.sh" time="2.5"/>
              <testcase classname="suite" name="broken" file="t/broken.sh" time="0.2"><failure message="always">nope</failure></testcase>
              $flaky
            </testsuite>
            EOF
      - store_test_results:
          path: results
      - run:
          name: fail when the flaky test failed
          command: test ! -f failed
workflows:
  main:
    jobs: [test]
"#
    .replace("MARKER", marker)
}
