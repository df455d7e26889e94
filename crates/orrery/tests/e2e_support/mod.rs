//! What the server end-to-end tests share: real `orrery server` and `orrery
//! runner` processes (killed when their guard drops), a small blocking HTTP
//! client, git repositories that notify the server through the shipped
//! `post-receive` hook, and polling with deadlines.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";
pub const BUSYBOX: &str = "orrery-test/busybox:1";

/// Polls `f` every 50 ms until it gives a value; panics with `what` after
/// `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A child process, killed (SIGKILL) and reaped when dropped. When the test
/// is failing, the end of its log is printed.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Starts the `orrery` binary with `args`, its output appended to `log`.
    pub fn orrery(name: &str, args: &[&str], env: &[(&str, &str)], log: &Path) -> Proc {
        let out = File::options().create(true).append(true).open(log).unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orrery"));
        // Object storage credentials reach only the processes given them
        // (the server); runners never hold any.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(args)
            .env_remove("ORRERY_URL")
            .env_remove("ORRERY_DATA_DIR")
            .env_remove("ORRERY_ORB_DIR")
            .env_remove("ORRERY_RUNNER_SLOTS")
            .env_remove("ORRERY_LEASE_SECS")
            .env_remove("ORRERY_CONFIG")
            .env("ORRERY_LOG", "info,sqlx=warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().expect("cannot start orrery");
        Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `kill -9`, and waits until the process is gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let was_running = self.is_running();
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- {} (pid {}, {}) log tail:\n{}\n---",
                self.name,
                if was_running { "running" } else { "exited" },
                self.log.display(),
                tail(&self.log, 60)
            );
        }
    }
}

/// An HTTP answer.
pub struct Resp {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `message` of a `{"message": ...}` answer.
    pub fn message(&self) -> String {
        let v = self.json();
        assert_eq!(
            v.as_object().map(|o| o.len()),
            Some(1),
            "an answer of the form {{\"message\": ...}}: {v}"
        );
        v["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message in {v}"))
            .to_string()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// HTTP/1.1 with `Connection: close`: enough for tests.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Resp> {
    let body = body.unwrap_or_default();
    let length = (!body.is_empty() || matches!(method, "POST" | "PUT")).then_some(body.len());
    let mut s = send_head(port, method, path, headers, length)?;
    s.write_all(body)?;
    read_response(s)
}

/// Connects and sends a request's head, with `Content-Length: length`.
pub fn send_head(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    length: Option<usize>,
) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(5),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(n) = length {
        req.push_str(&format!("Content-Length: {n}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    Ok(s)
}

/// Reads a whole response (the server closes the connection after it).
pub fn read_response(mut s: TcpStream) -> std::io::Result<Resp> {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let eol = rest[at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| std::io::Error::other("bad chunk"))?;
            let size_text = String::from_utf8_lossy(&rest[at..at + eol]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            at += eol + 2;
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
        rest = out;
    }
    Ok(Resp {
        status,
        headers,
        body: rest,
    })
}

/// A GET of an absolute `http://127.0.0.1:<port>/...` URL (a signed URL of
/// the object store), without credentials.
pub fn get_url(url: &str) -> Resp {
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("not a loopback URL: {url}"));
    let (port, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    http(port.parse().unwrap(), "GET", path, &[], None).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Follows a redirect (to a signed URL of the object store) once.
pub fn follow(r: Resp) -> Resp {
    if r.status == 307 {
        get_url(r.header("location").expect("a redirect has a Location"))
    } else {
        r
    }
}

/// A running `orrery server` and how to talk to it.
pub struct Server {
    pub proc: Proc,
    pub port: u16,
    pub data_dir: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Server {
    /// Starts `orrery server` with no embedded runner on a free port, its
    /// task storage on `blobs`, and waits until `/healthz` answers.
    pub fn start(root: &Path, extra: &[&str], blobs: &BlobStore) -> Server {
        let data_dir = root.join("server-data");
        let port = free_port();
        let mut args: Vec<String> = vec![
            "server".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--runner-slots".into(),
            "0".into(),
            "--orb-dir".into(),
            root.join("orbs").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(blobs.server_args());
        let env = blobs.server_env();
        let proc = Self::spawn(root, &args, &env);
        let mut server = Server {
            proc,
            port,
            data_dir,
            args,
            env,
        };
        server.wait_healthy();
        server
    }

    fn spawn(root: &Path, args: &[String], env: &[(String, String)]) -> Proc {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut env: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.push(("ORRERY_ADMIN_TOKEN", ADMIN_TOKEN));
        Proc::orrery("orrery server", &args, &env, &root.join("server.log"))
    }

    /// Waits until `/healthz` answers 200; returns how long that took.
    pub fn wait_healthy(&mut self) -> Duration {
        let started = Instant::now();
        let port = self.port;
        let proc = &mut self.proc;
        wait_for("the server's /healthz", Duration::from_secs(30), || {
            assert!(proc.is_running(), "the server exited");
            http(port, "GET", "/healthz", &[], None)
                .ok()
                .filter(|r| r.status == 200)
        });
        started.elapsed()
    }

    /// `kill -9` the server.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Starts the server again with the same arguments (data dir, port).
    pub fn restart(&mut self) -> Duration {
        let root = self.data_dir.parent().unwrap().to_path_buf();
        self.proc = Self::spawn(&root, &self.args, &self.env);
        self.wait_healthy()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        let body = body.map(|b| serde_json::to_vec(b).unwrap());
        let mut headers = vec![("Circle-Token", ADMIN_TOKEN)];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        http(self.port, method, path, &headers, body.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A GET that must succeed, as JSON.
    pub fn get(&self, path: &str) -> Value {
        let r = self.request("GET", path, None);
        assert!(
            (200..300).contains(&r.status),
            "GET {path}: {} {}",
            r.status,
            r.text()
        );
        r.json()
    }

    /// A POST that must succeed, as JSON.
    pub fn post(&self, path: &str, body: &Value) -> Value {
        let r = self.request("POST", path, Some(body));
        assert!(
            (200..300).contains(&r.status),
            "POST {path}: {} {}",
            r.status,
            r.text()
        );
        r.json()
    }

    /// A new runner token for `orrery/default`.
    pub fn runner_token(&self) -> String {
        self.runner_token_for("orrery/default")
    }

    /// Creates the runner resource class `class` (`namespace/name`).
    pub fn resource_class(&self, class: &str) {
        let v = self.post(
            "/api/v3/runner/resource",
            &json!({"resource_class": class, "desc": "e2e"}),
        );
        assert_eq!(v["resource_class"], class);
    }

    /// A new runner token for `class`.
    pub fn runner_token_for(&self, class: &str) -> String {
        let v = self.post(
            "/api/v3/runner/token",
            &json!({"resource_class": class, "nickname": "e2e"}),
        );
        assert_eq!(v["resource_class"], class);
        v["token"].as_str().unwrap().to_string()
    }

    /// The server's database, queried read-only by the `sqlite3` shell: the
    /// rows as JSON objects.
    pub fn sql(&self, query: &str) -> Vec<Value> {
        let out = Command::new("sqlite3")
            .arg("-readonly")
            .arg("-json")
            .arg(self.data_dir.join("orrery.db"))
            .arg(query)
            .output()
            .expect("sqlite3 must be installed (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "sqlite3 {query}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Vec::new();
        }
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
    }

    /// Starts `orrery runner` against this server.
    pub fn runner(
        &self,
        token: &str,
        name: &str,
        work_dir: &Path,
        slots: usize,
        log: &Path,
    ) -> Proc {
        Proc::orrery(
            &format!("orrery runner {name}"),
            &[
                "runner",
                "--url",
                &self.url(),
                "--token",
                token,
                "--name",
                name,
                "--work-dir",
                &work_dir.display().to_string(),
                "--slots",
                &slots.to_string(),
            ],
            &[],
            log,
        )
    }

    /// The pipeline built for `revision`, once the webhook made it.
    pub fn pipeline_of(&self, slug: &str, revision: &str) -> Value {
        wait_for(
            &format!("a pipeline for {revision}"),
            Duration::from_secs(30),
            || {
                self.get(&format!("/api/v2/project/{slug}/pipeline"))["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["vcs"]["revision"] == revision)
                    .cloned()
            },
        )
    }

    /// The workflows of a pipeline, once it has `n`.
    pub fn workflows(&self, pipeline_id: &str, n: usize) -> Vec<Value> {
        wait_for("the workflows", Duration::from_secs(30), || {
            let items = self.get(&format!("/api/v2/pipeline/{pipeline_id}/workflow"))["items"]
                .as_array()
                .unwrap()
                .clone();
            (items.len() >= n).then_some(items)
        })
    }

    pub fn jobs(&self, workflow_id: &str) -> Vec<Value> {
        self.get(&format!("/api/v2/workflow/{workflow_id}/job"))["items"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// A job's output of one step, raw.
    pub fn output(&self, slug: &str, number: i64, step: i64) -> Vec<u8> {
        self.node_output(slug, number, step, 0)
    }

    /// The output of one step of one parallel node, raw.
    pub fn node_output(&self, slug: &str, number: i64, step: i64, node: i64) -> Vec<u8> {
        let r = self.request(
            "GET",
            &format!("/api/v2/project/{slug}/job/{number}/output?step={step}&node={node}"),
            None,
        );
        assert_eq!(r.status, 200, "output: {}", r.text());
        r.body
    }

    /// The output of a job's step named `name`, as text.
    pub fn step_output(&self, slug: &str, number: i64, name: &str) -> String {
        let step = self.step_index(slug, number, name);
        String::from_utf8_lossy(&self.output(slug, number, step)).into_owned()
    }

    /// The index of a job's step named `name` (v1.1 job details).
    pub fn step_index(&self, slug: &str, number: i64, name: &str) -> i64 {
        let v = self.get(&format!("/api/v1.1/project/{slug}/{number}"));
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["actions"][0]["step"].as_i64())
            .unwrap_or_else(|| panic!("no step {name} in {v:#}"))
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("ORRERY_WEBHOOK_URL")
        .env_remove("ORRERY_WEBHOOK_SECRET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The hook's messages arrive on stderr; keep them for the caller.
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A bare repository (what the server clones, with the shipped
/// `post-receive` hook) and a clone to commit in and push from.
pub struct GitRepo {
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl GitRepo {
    pub fn new(root: &Path, name: &str) -> GitRepo {
        let bare = root.join(format!("{name}.git"));
        let work = root.join(format!("{name}-work"));
        std::fs::create_dir_all(&bare).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        git(&work, &["init", "-q", "-b", "main"]);
        git(
            &work,
            &["remote", "add", "origin", &bare.display().to_string()],
        );
        GitRepo { bare, work }
    }

    /// Installs the server's `post-receive` hook with the webhook settings.
    pub fn install_hook(&self, server: &Server, url: &str, secret: &str) {
        let r = server.request("GET", "/hooks/post-receive", None);
        assert_eq!(r.status, 200);
        let hook = self.bare.join("hooks/post-receive");
        std::fs::write(&hook, &r.body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        git(&self.bare, &["config", "orrery.webhookUrl", url]);
        git(&self.bare, &["config", "orrery.webhookSecret", secret]);
    }

    /// Commits `files` and pushes `main`; returns the commit's SHA.
    pub fn push(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, text) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        let sha = git(&self.work, &["rev-parse", "HEAD"]).trim().to_string();
        let pushed = git(&self.work, &["push", "origin", "main"]);
        assert!(
            !pushed.contains("orrery:"),
            "the post-receive hook complained:\n{pushed}"
        );
        sha
    }
}

/// `orrery project add <bare repo>`: the slug, webhook URL and secret.
pub fn project_add(server: &Server, repo: &Path) -> (String, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .args(["project", "add"])
        .arg(repo)
        .args(["--server", &server.url(), "--token", ADMIN_TOKEN])
        .env_remove("ORRERY_URL")
        .env_remove("ORRERY_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "project add: {stdout}{stderr}");
    let field = |name: &str| {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in:\n{stderr}"))
    };
    (
        stdout.trim().to_string(),
        field("webhook URL:"),
        field("webhook secret:"),
    )
}

/// Containers (all states) carrying `label`.
pub fn containers_with_label(label: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label={label}"),
            "--format",
            "{{.ID}} {{.Names}} {{.Status}}",
        ])
        .output()
        .expect("docker");
    assert!(
        out.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Removes containers carrying `label` when dropped (cleanup after a failed
/// test; a passing test asserts there are none).
pub struct ContainerSweep(pub String);

impl Drop for ContainerSweep {
    fn drop(&mut self) {
        for line in containers_with_label(&self.0) {
            if let Some(id) = line.split_whitespace().next() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
    }
}

/// Records each change of a value: `(key, [values in the order seen])`.
#[derive(Default, Debug)]
pub struct History {
    pub seen: Vec<(String, Vec<String>)>,
}

impl History {
    pub fn record(&mut self, key: &str, value: &str) {
        match self.seen.iter_mut().find(|(k, _)| k == key) {
            Some((_, values)) => {
                if values.last().map(String::as_str) != Some(value) {
                    values.push(value.to_string());
                }
            }
            None => self.seen.push((key.to_string(), vec![value.to_string()])),
        }
    }

    pub fn of(&self, key: &str) -> Vec<&str> {
        self.seen
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }
}

/// Where the server under test keeps task storage (caches, workspaces,
/// artifacts): every scenario runs on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// The default: `blobs` in the server's data directory.
    Local,
    /// A bucket on a real S3-compatible server (moto), `--blob-url s3://...`
    /// with the `AWS_*` variables in the server's environment only.
    S3,
}

pub const BUCKET: &str = "orrery-e2e";
pub const BLOB_PREFIX: &str = "ci/blobs";

/// Runs a future to its end on a small runtime of its own.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Every regular file under `dir` (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                todo.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The task storage of one test's server, and ways to look into it that do
/// not go through the server.
pub struct BlobStore {
    pub kind: Storage,
    /// The server's data directory (where local blobs go).
    data_dir: PathBuf,
    s3: Option<orrery_blob::testing::S3Server>,
}

impl BlobStore {
    /// For a server started with `root` (its data directory is
    /// `root/server-data`). On S3, starts moto and creates the bucket.
    pub fn new(kind: Storage, root: &Path) -> BlobStore {
        let s3 = (kind == Storage::S3).then(|| {
            let s3 = orrery_blob::testing::S3Server::start();
            s3.create_bucket(BUCKET);
            s3
        });
        BlobStore {
            kind,
            data_dir: root.join("server-data"),
            s3,
        }
    }

    fn s3(&self) -> &orrery_blob::testing::S3Server {
        self.s3.as_ref().expect("an S3 store")
    }

    fn local_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }

    pub fn server_args(&self) -> Vec<String> {
        match self.kind {
            Storage::Local => Vec::new(),
            Storage::S3 => vec!["--blob-url".into(), format!("s3://{BUCKET}/{BLOB_PREFIX}")],
        }
    }

    pub fn server_env(&self) -> Vec<(String, String)> {
        match self.kind {
            Storage::Local => Vec::new(),
            Storage::S3 => self
                .s3()
                .options()
                .into_iter()
                .map(|(k, v)| (k.to_ascii_uppercase(), v))
                .collect(),
        }
    }

    /// The same objects the server sees, opened by the test.
    pub fn blobs(&self) -> orrery_blob::Blobs {
        match self.kind {
            Storage::Local => {
                orrery_blob::Blobs::open(&self.local_dir().display().to_string(), &[])
            }
            Storage::S3 => orrery_blob::Blobs::open(
                &format!("s3://{BUCKET}/{BLOB_PREFIX}"),
                &self.s3().options(),
            ),
        }
        .unwrap()
    }

    /// The objects under `prefix` (`caches`, `workspaces`, `artifacts`).
    pub fn list(&self, prefix: &str) -> Vec<orrery_blob::Listed> {
        let blobs = self.blobs();
        block_on(blobs.list(prefix)).unwrap()
    }

    pub fn read(&self, key: &str) -> Vec<u8> {
        let blobs = self.blobs();
        block_on(async {
            use tokio::io::AsyncReadExt;
            let (mut reader, _) = blobs.get(key).await.unwrap();
            let mut out = Vec::new();
            reader.read_to_end(&mut out).await.unwrap();
            out
        })
    }

    fn curl(&self, method: &str, path: &str) -> String {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-X",
                method,
                &format!("{}{path}", self.s3().endpoint),
            ])
            .output()
            .expect("curl");
        assert!(out.status.success(), "curl {method} {path}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The keys in the bucket, listed by moto itself (S3 only).
    pub fn bucket_keys(&self) -> Vec<String> {
        let xml = self.curl("GET", &format!("/{BUCKET}?list-type=2&max-keys=1000"));
        assert!(!xml.contains("<IsTruncated>true"), "{xml}");
        xml.split("<Key>")
            .skip(1)
            .map(|k| k.split("</Key>").next().unwrap().to_string())
            .collect()
    }

    /// Uploads begun and neither finished nor aborted: multipart uploads in
    /// the bucket, or staging files (`name#n`) in the directory.
    pub fn pending_uploads(&self) -> Vec<String> {
        match self.kind {
            Storage::Local => files_under(&self.local_dir())
                .into_iter()
                .filter(|p| p.file_name().unwrap().to_string_lossy().contains('#'))
                .map(|p| p.display().to_string())
                .collect(),
            Storage::S3 => self
                .curl("GET", &format!("/{BUCKET}?uploads"))
                .split("<Upload>")
                .skip(1)
                .map(str::to_string)
                .collect(),
        }
    }

    /// What holds for every scenario at its end: no upload left half done,
    /// and on S3 nothing written in the server's data directory instead.
    pub fn check_at_end(&self) {
        assert_eq!(self.pending_uploads(), Vec::<String>::new());
        if self.kind == Storage::S3 {
            assert_eq!(
                files_under(&self.local_dir()),
                Vec::<PathBuf>::new(),
                "on S3, nothing is stored in the data directory"
            );
        }
    }

    /// Makes every write fail: the bucket disappears (moto's reset), or the
    /// directory is replaced by a file.
    pub fn break_writes(&self) {
        match self.kind {
            Storage::Local => {
                std::fs::remove_dir_all(self.local_dir()).unwrap();
                std::fs::write(self.local_dir(), b"not a directory").unwrap();
            }
            Storage::S3 => {
                let answer = self.curl("POST", "/moto-api/reset");
                assert!(answer.contains("ok"), "{answer}");
            }
        }
    }

    /// Undoes [`BlobStore::break_writes`] (with an empty store).
    pub fn repair(&self) {
        match self.kind {
            Storage::Local => {
                std::fs::remove_file(self.local_dir()).unwrap();
                std::fs::create_dir(self.local_dir()).unwrap();
            }
            Storage::S3 => self.s3().create_bucket(BUCKET),
        }
    }
}

/// Generates one `#[test]` per storage for each scenario `fn name(Storage)`:
/// `name::local` and `name::s3` (`#[macro_use] mod e2e_support;`).
macro_rules! on_both_storages {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn local() {
                super::$name($crate::e2e_support::Storage::Local)
            }
            #[test]
            fn s3() {
                super::$name($crate::e2e_support::Storage::S3)
            }
        }
    )*};
}

/// Bytes that do not compress, the same for a given seed (xorshift).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
