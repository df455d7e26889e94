//! Task storage through the server, end to end, on a local directory and on
//! a real S3-compatible server (moto): caches, workspaces, artifacts, test
//! results and timings between runners on separate "hosts", uploads that
//! arrive corrupt or cut off, and `circleci tests split --split-by=timings`.
//!
//! Needs git, curl, sqlite3, moto (`moto_server`), and a Docker Engine with
//! `orrery-test/busybox:1` (`scripts/test.sh` installs and builds them).

#[macro_use]
mod e2e_support;

use std::path::Path;
use std::time::{Duration, Instant};

use e2e_support::*;
use serde_json::{Value, json};

/// A project on `server` whose bare repository notifies it on every push.
fn project(server: &Server, root: &Path, name: &str) -> (GitRepo, String) {
    let repo = GitRepo::new(root, name);
    let (slug, url, secret) = project_add(server, &repo.bare);
    repo.install_hook(server, &url, &secret);
    (repo, slug)
}

/// The one workflow of the pipeline built for `sha`.
fn workflow_of(server: &Server, slug: &str, sha: &str) -> String {
    let pipeline = server.pipeline_of(slug, sha);
    server.workflows(pipeline["id"].as_str().unwrap(), 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits until a workflow ended; its jobs.
fn finished_jobs(server: &Server, wf: &str, timeout: Duration) -> Vec<Value> {
    wait_for("the workflow to end", timeout, || {
        let w = server.get(&format!("/api/v2/workflow/{wf}"));
        matches!(w["status"].as_str(), Some("success" | "failed" | "error"))
            .then(|| server.jobs(wf))
    })
}

fn job_named<'a>(jobs: &'a [Value], name: &str) -> &'a Value {
    jobs.iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {jobs:#?}"))
}

fn number(job: &Value) -> i64 {
    job["job_number"].as_i64().unwrap()
}

/// Every step's output of a job (node 0), for failure messages.
fn all_output(server: &Server, slug: &str, number: i64) -> String {
    let r = server.request(
        "GET",
        &format!("/api/v2/project/{slug}/job/{number}/output"),
        None,
    );
    r.text()
}

/// Asserts that every job succeeded, showing the output of those that did not.
fn assert_all_succeeded(server: &Server, slug: &str, jobs: &[Value]) {
    for j in jobs {
        assert_eq!(
            j["status"],
            "success",
            "{} failed:\n{}",
            j["name"],
            all_output(server, slug, number(j))
        );
    }
}

// ---------------------------------------------------------------------------
// Two runners on two "hosts"
// ---------------------------------------------------------------------------

const ONE: &str = "acme/one";
const TWO: &str = "acme/two";

/// A job on runner one saves a cache and persists to the workspace; jobs on
/// runner two (a machine job and a Docker job) restore the cache by a key
/// prefix and attach the workspace, check every byte, and store artifacts and
/// test results. Nothing is kept on the runners' disks.
fn two_runners_share_caches_workspaces_and_artifacts(storage: Storage) {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let blobs = BlobStore::new(storage, root);
    let server = Server::start(root, &[], &blobs);
    let (repo, slug) = project(&server, root, "shared");
    server.resource_class(ONE);
    server.resource_class(TWO);
    let (token_one, token_two) = (server.runner_token_for(ONE), server.runner_token_for(TWO));
    let (host_one, host_two) = (root.join("host-one"), root.join("host-two"));
    let _sweep = ContainerSweep(format!(
        "orrery.work-root={}",
        host_two.join("work").display()
    ));
    let _one = server.runner(&token_one, "one", &host_one, 2, &root.join("one.log"));
    let _two = server.runner(&token_two, "two", &host_two, 2, &root.join("two.log"));

    // What job one makes: incompressible bytes over several zstd frames and
    // 8 MiB parts of nothing, every byte value, an empty file, a name with a
    // space, text in UTF-8.
    let fixtures = root.join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    let blob = noise(3 * 1024 * 1024 + 17, 7);
    let all_bytes: Vec<u8> = (0..4).flat_map(|_| 0..=255u8).collect();
    let report = "Résumé: ✓ all good\n".repeat(100);
    std::fs::write(fixtures.join("blob.bin"), &blob).unwrap();
    std::fs::write(fixtures.join("all-bytes.bin"), &all_bytes).unwrap();
    std::fs::write(fixtures.join("report.txt"), &report).unwrap();
    let fx = fixtures.display();
    let (sha_report, sha_all) = (sha256_hex(report.as_bytes()), sha256_hex(&all_bytes));
    let config = format!(
        r#"version: 2.1
jobs:
  produce:
    machine: true
    resource_class: {ONE}
    steps:
      - checkout
      - run:
          name: Make the data
          command: |
            mkdir -p "deps/nested dir" out
            cp {fx}/blob.bin deps/blob.bin
            cp {fx}/all-bytes.bin "deps/nested dir/all-bytes.bin"
            : > deps/empty
            cp {fx}/report.txt {fx}/all-bytes.bin out/
      - save_cache:
          key: deps-v1-{{{{ checksum "lock.txt" }}}}
          paths: [deps]
      - persist_to_workspace:
          root: out
          paths: [report.txt, all-bytes.bin]
  consume:
    machine: true
    resource_class: {TWO}
    steps:
      - checkout
      - restore_cache:
          keys:
            - deps-v2-{{{{ checksum "lock.txt" }}}}
            - deps-v1-
      - attach_workspace:
          at: ws
      - run:
          name: Check the bytes
          command: |
            cmp deps/blob.bin {fx}/blob.bin
            cmp "deps/nested dir/all-bytes.bin" {fx}/all-bytes.bin
            test -f deps/empty && ! test -s deps/empty
            cmp ws/report.txt {fx}/report.txt
            cmp ws/all-bytes.bin {fx}/all-bytes.bin
            mkdir -p results
            cat > results/junit.xml <<'XML'
            <testsuite name="shared">
              <testcase classname="shared.bytes" name="blob" file="deps/blob.bin" time="1.5"/>
              <testcase classname="shared.bytes" name="all bytes" file="ws/all-bytes.bin" time="0.25">
                <failure message="expected">not really</failure>
              </testcase>
              <testcase classname="shared.bytes" name="empty" time="0.125"><skipped/></testcase>
            </testsuite>
            XML
      - store_artifacts:
          path: deps
          destination: deps
      - store_artifacts:
          path: ws/report.txt
      - store_test_results:
          path: results
  in-docker:
    docker:
      - image: {BUSYBOX}
    resource_class: {TWO}
    steps:
      - attach_workspace:
          at: /tmp/ws
      - run:
          name: Check the bytes in a container
          command: |
            echo "{sha_report}  /tmp/ws/report.txt" | sha256sum -c -
            echo "{sha_all}  /tmp/ws/all-bytes.bin" | sha256sum -c -
            mkdir -p /tmp/results
            echo '<testsuite><testcase classname="docker" name="sums" time="2"/></testsuite>' > /tmp/results/docker.xml
      - store_artifacts:
          path: /tmp/ws
          destination: from-docker
      - store_test_results:
          path: /tmp/results
  many-failures:
    machine: true
    resource_class: {ONE}
    steps:
      - run:
          name: A suite that fails with long messages
          command: |
            mkdir -p results
            awk 'BEGIN {{
              for (j = 0; j < 1000; j++) trace = trace "at x.y(Z.java:1) "
              print "<testsuite name=\"big\">"
              for (i = 0; i < 600; i++)
                printf "<testcase classname=\"big\" name=\"case %d\" time=\"0.01\"><failure message=\"boom\">%s</failure></testcase>\n", i, trace
              print "</testsuite>"
            }}' > results/big.xml
      - store_test_results:
          path: results
workflows:
  main:
    jobs:
      - produce
      - consume:
          requires: [produce]
      - in-docker:
          requires: [produce]
      - many-failures
"#
    );
    let started = Instant::now();
    let sha = repo.push(
        &[(".circleci/config.yml", &config), ("lock.txt", "v1\n")],
        "Two runners",
    );
    let wf = workflow_of(&server, &slug, &sha);
    let jobs = finished_jobs(&server, &wf, Duration::from_secs(120));
    let took = started.elapsed();
    assert_all_succeeded(&server, &slug, &jobs);
    eprintln!("[{storage:?}] push to four finished jobs on two runners: {took:?}");

    // Each job ran on the runner of its class.
    for (name, runner) in [
        ("produce", "acme/one/one"),
        ("consume", "acme/two/two"),
        ("in-docker", "acme/two/two"),
    ] {
        let id = job_named(&jobs, name)["id"].as_str().unwrap().to_string();
        let tasks = server.sql(&format!(
            "SELECT runner_id, state FROM tasks WHERE job_id = '{id}'"
        ));
        assert_eq!(
            tasks,
            [json!({"runner_id": runner, "state": "finished"})],
            "{name}"
        );
    }

    // The index in the database points at objects that hold exactly the bytes.
    let project_id = server.get(&format!("/api/v2/project/{slug}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let caches = server.sql(&format!(
        "SELECT key, object, state, size FROM caches WHERE project_id = '{project_id}'"
    ));
    assert_eq!(caches.len(), 1, "{caches:#?}");
    let key = caches[0]["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("deps-v1-") && key.len() > 20, "{key}");
    assert_eq!(caches[0]["state"], "ready");

    // What the steps said.
    let produce = number(job_named(&jobs, "produce"));
    let consume = number(job_named(&jobs, "consume"));
    let docker = number(job_named(&jobs, "in-docker"));
    let out = server.step_output(&slug, produce, "Saving Cache");
    assert!(out.contains(&format!("Stored Cache to {key}")), "{out}");
    let out = server.step_output(&slug, consume, "Restoring Cache");
    assert!(out.contains(&format!("Found a cache at {key}")), "{out}");
    assert!(out.contains(&format!("Restored the cache {key}")), "{out}");
    let out = server.step_output(&slug, consume, "Attaching Workspace");
    assert!(out.contains("Attached 1 workspace layer(s)"), "{out}");
    let out = server.step_output(&slug, docker, "Attaching Workspace");
    assert!(
        out.contains("Attached 1 workspace layer(s) at /tmp/ws"),
        "{out}"
    );

    let cache_object = caches[0]["object"].as_str().unwrap().to_string();
    let cache_bytes = blobs.read(&cache_object);
    assert_eq!(
        cache_bytes.len() as i64,
        caches[0]["size"].as_i64().unwrap()
    );
    let artifacts_of = |job: &Value| -> Vec<(String, Vec<u8>)> {
        server
            .sql(&format!(
                "SELECT path, object, size FROM artifacts WHERE job_id = '{}' ORDER BY path",
                job["id"].as_str().unwrap()
            ))
            .iter()
            .map(|a| {
                let bytes = blobs.read(a["object"].as_str().unwrap());
                assert_eq!(bytes.len() as i64, a["size"].as_i64().unwrap(), "{a}");
                (a["path"].as_str().unwrap().to_string(), bytes)
            })
            .collect()
    };
    let stored = artifacts_of(job_named(&jobs, "consume"));
    let expected: Vec<(String, Vec<u8>)> = vec![
        ("deps/blob.bin".into(), blob.clone()),
        ("deps/empty".into(), Vec::new()),
        ("deps/nested dir/all-bytes.bin".into(), all_bytes.clone()),
        ("ws/report.txt".into(), report.as_bytes().to_vec()),
    ];
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(names(&stored), names(&expected));
    for ((path, got), (_, want)) in stored.iter().zip(&expected) {
        assert!(
            got == want,
            "{path}: {} bytes, not the {} expected",
            got.len(),
            want.len()
        );
    }
    let stored = artifacts_of(job_named(&jobs, "in-docker"));
    let expected: Vec<(String, Vec<u8>)> = vec![
        ("from-docker/all-bytes.bin".into(), all_bytes.clone()),
        ("from-docker/report.txt".into(), report.as_bytes().to_vec()),
    ];
    assert_eq!(names(&stored), names(&expected));
    for ((path, got), (_, want)) in stored.iter().zip(&expected) {
        assert!(got == want, "{path}");
    }

    // Test results, as the JUnit files said.
    let cases = server.sql(&format!(
        "SELECT job_name, classname, name, file, result, run_time FROM test_cases \
         WHERE project_id = '{project_id}' AND job_name <> 'many-failures' ORDER BY job_name, seq"
    ));
    assert_eq!(
        cases,
        [
            json!({"job_name": "consume", "classname": "shared.bytes", "name": "blob", "file": "deps/blob.bin", "result": "success", "run_time": 1.5}),
            json!({"job_name": "consume", "classname": "shared.bytes", "name": "all bytes", "file": "ws/all-bytes.bin", "result": "failure", "run_time": 0.25}),
            json!({"job_name": "consume", "classname": "shared.bytes", "name": "empty", "file": null, "result": "skipped", "run_time": 0.125}),
            json!({"job_name": "in-docker", "classname": "docker", "name": "sums", "file": null, "result": "success", "run_time": 2.0}),
        ]
    );

    // Long failure messages (about 10 MB of them) are stored whole.
    let big = server.sql(&format!(
        "SELECT COUNT(*) AS cases, MIN(length(message)) AS shortest, SUM(result = 'failure') AS failed \
         FROM test_cases WHERE job_id = '{}'",
        job_named(&jobs, "many-failures")["id"].as_str().unwrap()
    ));
    assert_eq!(big.len(), 1);
    assert_eq!(big[0]["cases"], 600, "{big:?}");
    assert_eq!(big[0]["failed"], 600, "{big:?}");
    assert!(big[0]["shortest"].as_i64().unwrap() > 16_000, "{big:?}");

    // The objects are where the server was told to put them.
    let count = |prefix: &str| blobs.list(prefix).len();
    assert_eq!(count("caches"), 1);
    assert_eq!(count("workspaces"), 1);
    assert_eq!(count("artifacts"), 6);
    if storage == Storage::S3 {
        let keys = blobs.bucket_keys();
        assert_eq!(keys.len(), 8, "{keys:#?}");
        assert!(
            keys.iter()
                .all(|k| k.starts_with(&format!("{BLOB_PREFIX}/"))),
            "{keys:#?}"
        );
        assert!(keys.contains(&format!("{BLOB_PREFIX}/{cache_object}")));
    }
    // Nothing stays on the runners' disks: no caches, no spooled uploads.
    for host in [&host_one, &host_two] {
        let left: Vec<_> = files_under(host)
            .into_iter()
            .filter(|p| !p.starts_with(host.join("work/bin")))
            .collect();
        assert!(left.is_empty(), "left on {}: {left:#?}", host.display());
    }
    blobs.check_at_end();
}

// ---------------------------------------------------------------------------
// Corrupt and cut-off uploads
// ---------------------------------------------------------------------------

/// The test as a runner of `acme/fake` holding a task: calls the runner
/// storage endpoints of that task directly.
struct FakeRunner<'a> {
    server: &'a Server,
    token: String,
    task: String,
}

const FAKE_NAME: &str = "fake";

impl FakeRunner<'_> {
    fn headers<'h>(&'h self, more: &[(&'h str, &'h str)]) -> Vec<(&'h str, &'h str)> {
        let mut h = vec![("Orrery-Runner-Name", FAKE_NAME)];
        h.extend_from_slice(more);
        h
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn call(&self, method: &str, path: &str, more: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
        let auth = self.auth();
        let mut headers = self.headers(more);
        headers.push(("Authorization", &auth));
        let path = format!("/runner/v1/tasks/{}{path}", self.task);
        http(self.server.port, method, &path, &headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Keeps the lease.
    fn heartbeat(&self) {
        let r = self.call(
            "POST",
            "/heartbeat",
            &[("Content-Type", "application/json")],
            Some(b"{}"),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["lost"], false);
    }

    /// An upload with the digest and size announced for `data`, and `body`
    /// sent (`Content-Length` of `body`).
    fn put(&self, path: &str, sha256: &str, size: usize, body: &[u8]) -> Resp {
        let size = size.to_string();
        self.call(
            "PUT",
            path,
            &[("X-Orrery-Sha256", sha256), ("X-Orrery-Size", &size)],
            Some(body),
        )
    }

    fn put_ok(&self, path: &str, data: &[u8]) -> Resp {
        self.put(path, &sha256_hex(data), data.len(), data)
    }

    /// Announces `data` (digest, size, `Content-Length`), sends the first
    /// `sent` bytes, then stops sending. With `wait_answer` the connection
    /// is half-closed and the answer read (`None`: the server closed the
    /// connection without one); else it is dropped at once.
    fn cut(&self, path: &str, data: &[u8], sent: usize, wait_answer: bool) -> Option<Resp> {
        use std::io::Write;
        let auth = self.auth();
        let sha = sha256_hex(data);
        let size = data.len().to_string();
        let mut headers = self.headers(&[("X-Orrery-Sha256", &sha), ("X-Orrery-Size", &size)]);
        headers.push(("Authorization", &auth));
        let path = format!("/runner/v1/tasks/{}{path}", self.task);
        let mut s = send_head(self.server.port, "PUT", &path, &headers, Some(data.len())).unwrap();
        // The server may answer (and close) before it has read everything.
        let _ = s.write_all(&data[..sent]).and_then(|()| s.flush());
        if !wait_answer {
            drop(s);
            return None;
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        read_response(s).ok()
    }
}

/// A tar of files named as the agent names collected artifacts.
fn artifacts_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, format!("artifact/{name}"), *data)
            .unwrap();
    }
    b.into_inner().unwrap()
}

/// Asserts a refused upload: 400 with a `{"message"}` containing `what`.
fn assert_refused(r: &Resp, what: &str) {
    assert_eq!(r.status, 400, "{}", r.text());
    let m = r.message();
    assert!(m.contains(what), "{m:?} does not say {what:?}");
}

/// Uploads with a wrong digest, shorter or longer than announced, or cut off
/// mid-stream (half-closed, or dropped) are refused with a message and leave
/// nothing: no cache, workspace layer or artifact appears, no object or
/// half-done upload is left in storage, and a later save of the same key
/// succeeds. Then, with the storage failing, a job's uploads fail their steps
/// with the server's message, and the same key saves once it works again.
fn corrupt_and_cut_off_uploads_leave_nothing(storage: Storage) {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let blobs = BlobStore::new(storage, root);
    let server = Server::start(root, &[], &blobs);
    let (repo, slug) = project(&server, root, "uploads");
    server.resource_class("acme/fake");
    let fake_token = server.runner_token_for("acme/fake");
    let config = "version: 2.1
jobs:
  held:
    machine: true
    resource_class: acme/fake
    steps:
      - run: echo never runs
workflows:
  main:
    jobs: [held]
";
    let sha = repo.push(&[(".circleci/config.yml", config)], "A held task");
    let wf = workflow_of(&server, &slug, &sha);

    // The test is the runner: register, claim the task.
    let auth = format!("Bearer {fake_token}");
    let runner_headers = [
        ("Authorization", auth.as_str()),
        ("Orrery-Runner-Name", FAKE_NAME),
        ("Content-Type", "application/json"),
    ];
    let r = http(
        server.port,
        "POST",
        "/runner/v1/register",
        &runner_headers,
        Some(br#"{"hostname": "fake-host", "version": "e2e"}"#),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let assignment = wait_for("a task to claim", Duration::from_secs(30), || {
        let r = http(
            server.port,
            "POST",
            "/runner/v1/claim",
            &runner_headers,
            Some(br#"{"wait_secs": 5}"#),
        )
        .unwrap();
        (r.status == 200).then(|| r.json())
    });
    assert_eq!(assignment["job_name"], "held");
    let fake = FakeRunner {
        server: &server,
        token: fake_token.clone(),
        task: assignment["task_id"].as_str().unwrap().to_string(),
    };
    let started = Instant::now();

    // Caches.
    let data = noise(256 * 1024 + 3, 11);
    let sha = sha256_hex(&data);
    let other_sha = sha256_hex(b"something else");
    let key_path = "/caches/object?key=deps-cut-1";
    let r = fake.put(key_path, &other_sha, data.len(), &data);
    assert_refused(&r, "does not match its checksum");
    let r = fake.put(key_path, &sha, data.len(), &data[..1000]);
    assert_refused(
        &r,
        &format!(
            "the body ended after 1000 of the {} bytes announced",
            data.len()
        ),
    );
    let mut longer = data.clone();
    longer.extend_from_slice(b"tail");
    let r = fake.put(key_path, &sha, data.len(), &longer);
    assert_refused(
        &r,
        &format!("the body is longer than the {} bytes announced", data.len()),
    );
    let r = fake.call("PUT", key_path, &[("X-Orrery-Size", "3")], Some(b"abc"));
    assert_refused(&r, "x-orrery-sha256 header is missing");
    let r = fake.put(key_path, "not-hex", data.len(), &data);
    assert_refused(&r, "64 hex digits");
    // Streamed with the digest and size in a footer (what runners send):
    // the same checks.
    let footed = |body: &[u8], digest_of: &[u8], size: usize| {
        let mut v = body.to_vec();
        v.extend_from_slice(&hex::decode(sha256_hex(digest_of)).unwrap());
        v.extend_from_slice(&(size as u64).to_be_bytes());
        v
    };
    let digest = [("X-Orrery-Digest", "footer")];
    let mut flipped = footed(&data, &data, data.len());
    flipped[77] ^= 0x20;
    let r = fake.call("PUT", key_path, &digest, Some(&flipped));
    assert_refused(&r, "does not match its checksum");
    let r = fake.call("PUT", key_path, &digest, Some(&footed(&data, &data, 5)));
    assert_refused(&r, &format!("expected 5 bytes, got {}", data.len()));
    let r = fake.call("PUT", key_path, &digest, Some(&data[..30]));
    assert_refused(&r, "ends before its footer");
    let r = fake.call(
        "PUT",
        key_path,
        &[("X-Orrery-Digest", "trailer")],
        Some(&data),
    );
    assert_refused(&r, "must be `footer`");
    let r = fake.call(
        "PUT",
        key_path,
        &[("X-Orrery-Digest", "footer"), ("X-Orrery-Sha256", &sha)],
        Some(&footed(&data, &data, data.len())),
    );
    assert_refused(&r, "are not sent");
    let r = fake.call(
        "PUT",
        "/artifacts?prefix=out",
        &digest,
        Some(&footed(&data, &data, data.len())),
    );
    assert_refused(&r, "artifacts announce their digest");
    fake.heartbeat();
    // Cut off mid-stream: the server answers, if it still can.
    let cut = fake.cut(key_path, &data, data.len() / 2, true);
    eprintln!(
        "[{storage:?}] a cache upload cut off (half-closed): {:?}",
        cut.as_ref().map(|r| (r.status, r.text()))
    );
    if let Some(r) = &cut {
        assert_refused(r, "the upload failed");
    }
    // A large one (multipart on S3) dropped at 12 of 20 MiB.
    let big = noise(20 * 1024 * 1024, 13);
    fake.cut(key_path, &big, 12 * 1024 * 1024, false);
    fake.heartbeat();
    let dropped_at = Instant::now();
    // None of it is a cache.
    let r = fake.call("GET", "/caches?prefix=deps-cut", &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"hit": null}));
    let r = fake.call("GET", key_path, &[], None);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.message(), "no cache for key deps-cut-1");
    // A whole upload of the key is saved: at once, or as soon as the server
    // has given up the one cut off (a save in progress holds the key).
    let mut tries = 0;
    let saved_after = wait_for("the key to be saved", Duration::from_secs(20), || {
        tries += 1;
        let r = fake.put_ok(key_path, &data);
        assert!(matches!(r.status, 200 | 201), "{}", r.text());
        (r.json()["saved"] == true).then(|| dropped_at.elapsed())
    });
    assert_eq!(fake.put_ok(key_path, &data).json(), json!({"saved": false}));
    let r = fake.call("GET", "/caches?prefix=deps-cut", &[], None);
    assert_eq!(
        r.json(),
        json!({"hit": {"key": "deps-cut-1", "size": data.len()}})
    );
    let r = fake.call("GET", key_path, &[], None);
    if storage == Storage::S3 {
        assert_eq!(r.status, 307, "S3 downloads go to a signed URL");
    }
    let r = follow(r);
    assert_eq!(r.status, 200);
    assert!(r.body == data, "the cache's bytes");
    fake.heartbeat();

    // Workspaces.
    let layer = noise(64 * 1024, 17);
    let r = fake.put("/workspace", &other_sha, layer.len(), &layer);
    assert_refused(&r, "does not match its checksum");
    let r = fake.put("/workspace", &sha256_hex(&layer), layer.len(), &layer[..10]);
    assert_refused(
        &r,
        &format!(
            "the body ended after 10 of the {} bytes announced",
            layer.len()
        ),
    );
    if let Some(r) = fake.cut("/workspace", &layer, 1000, true) {
        assert_refused(&r, "the upload failed");
    }
    fake.cut("/workspace", &big, 9 * 1024 * 1024, false);
    let r = fake.call("GET", "/workspaces/held", &[], None);
    assert_eq!(r.json(), json!({"layers": []}));
    let r = fake.put_ok("/workspace", &layer);
    assert_eq!(r.status, 201, "{}", r.text());
    let r = fake.call("GET", "/workspaces/held", &[], None);
    assert_eq!(
        r.json(),
        json!({"layers": [{"index": 0, "size": layer.len()}]})
    );
    let r = follow(fake.call("GET", "/workspaces/held/0", &[], None));
    assert!(r.status == 200 && r.body == layer, "the layer's bytes");
    fake.heartbeat();

    // Artifacts.
    let tar = artifacts_tar(&[("a.txt", b"alpha\n"), ("sub/b.bin", &data)]);
    let path = "/artifacts?prefix=out";
    let r = fake.put(path, &other_sha, tar.len(), &tar);
    assert_refused(&r, "does not match its checksum");
    let r = fake.put(path, &sha256_hex(&tar), tar.len(), &tar[..2000]);
    assert_refused(
        &r,
        &format!(
            "the body ended after 2000 of the {} bytes announced",
            tar.len()
        ),
    );
    if let Some(r) = fake.cut(path, &tar, tar.len() - 100, true) {
        assert_refused(&r, "the upload failed");
    }
    fake.cut(path, &tar, 1024, false);
    // An archive cut inside its second file, sent as announced: the first
    // file is not kept either (nor the start of the second).
    let cut_tar = &tar[..tar.len() - 2048];
    let r = fake.put_ok(path, cut_tar);
    eprintln!(
        "[{storage:?}] an artifacts archive cut inside a file: {} {}",
        r.status,
        r.text()
    );
    assert_refused(&r, "the archive ends inside out/sub/b.bin");
    let job_id = assignment["job_id"].as_str().unwrap().to_string();
    let artifacts_sql = format!("SELECT path FROM artifacts WHERE job_id = '{job_id}'");
    // The dropped one may still be read by the server: wait until its spool
    // file is gone, then nothing may have been stored.
    let spool = server.data_dir.join("tmp");
    wait_for(
        "the server to drop the cut-off upload",
        Duration::from_secs(20),
        || files_under(&spool).is_empty().then_some(()),
    );
    assert_eq!(server.sql(&artifacts_sql), Vec::<Value>::new());
    assert_eq!(blobs.list("artifacts").len(), 0);
    let r = fake.put_ok(path, &tar);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json(), json!({"paths": ["out/a.txt", "out/sub/b.bin"]}));
    assert_eq!(
        server.sql(&format!("{artifacts_sql} ORDER BY path")),
        [
            json!({"path": "out/a.txt"}),
            json!({"path": "out/sub/b.bin"})
        ]
    );

    // What storage holds: the good uploads only, nothing half done.
    let checked = started.elapsed();
    wait_for("no upload left pending", Duration::from_secs(20), || {
        blobs.pending_uploads().is_empty().then_some(())
    });
    let count = |prefix: &str| blobs.list(prefix).len();
    assert_eq!(
        (count("caches"), count("workspaces"), count("artifacts")),
        (1, 1, 2)
    );
    wait_for("no spooled upload left", Duration::from_secs(20), || {
        files_under(&spool).is_empty().then_some(())
    });
    eprintln!(
        "[{storage:?}] refused uploads checked in {checked:?}; the key of the dropped upload \
         saved {saved_after:?} after the drop, at try {tries}"
    );
    let r = fake.call(
        "POST",
        "/complete",
        &[("Content-Type", "application/json")],
        Some(br#"{"status": "success"}"#),
    );
    assert!(r.status < 300, "{}", r.text());
    finished_jobs(&server, &wf, Duration::from_secs(10));

    // A job whose uploads the server cannot store: each step fails, saying why.
    blobs.break_writes();
    let token = server.runner_token();
    let _runner = server.runner(
        &token,
        "real",
        &root.join("runner"),
        3,
        &root.join("runner.log"),
    );
    let config = "version: 2.1
jobs:
  cache:
    machine: true
    steps:
      - run: mkdir -p data && echo hello > data/file
      - save_cache:
          key: broken-v1
          paths: [data]
  workspace:
    machine: true
    steps:
      - run: mkdir -p data && echo hello > data/file
      - persist_to_workspace:
          root: .
          paths: [data]
  artifacts:
    machine: true
    steps:
      - run: mkdir -p data && echo hello > data/file
      - store_artifacts:
          path: data
workflows:
  main:
    jobs: [cache, workspace, artifacts]
";
    let sha = repo.push(&[(".circleci/config.yml", config)], "Uploads that fail");
    let wf = workflow_of(&server, &slug, &sha);
    let jobs = finished_jobs(&server, &wf, Duration::from_secs(60));
    for (job, step, says) in [
        ("cache", "Saving Cache", "cannot save the cache broken-v1: "),
        (
            "workspace",
            "Persisting to Workspace",
            "cannot persist to the workspace: ",
        ),
        (
            "artifacts",
            "Uploading artifacts",
            "cannot upload artifacts: ",
        ),
    ] {
        let j = job_named(&jobs, job);
        assert_eq!(j["status"], "failed", "{job}");
        let out = server.step_output(&slug, number(j), step);
        eprintln!("[{storage:?}] {job}: {}", out.trim());
        assert!(out.contains(says), "{job}: {out}");
        // The storage's failure, not the job's: the details are in the
        // server's log, and the runner tried again.
        assert!(
            out.contains(
                "the server answered 500 Internal Server Error: An internal error occurred; \
                 the server log has the details."
            ),
            "{job}: {out}"
        );
    }
    let server_log = std::fs::read_to_string(&server.proc.log).unwrap();
    let why = match storage {
        Storage::Local => "Not a directory",
        Storage::S3 => "404 Not Found",
    };
    assert!(
        server_log
            .lines()
            .filter(|l| l.contains("task storage") && l.contains(why))
            .count()
            >= 3,
        "{server_log}"
    );
    let runner_log = std::fs::read_to_string(root.join("runner.log")).unwrap();
    assert!(
        runner_log.contains("an upload failed; sending it again"),
        "{runner_log}"
    );
    // With storage back, the rerun saves the same key: the failure left no claim.
    blobs.repair();
    let rerun = server.post(
        &format!("/api/v2/workflow/{wf}/rerun"),
        &json!({"from_failed": true}),
    );
    let rerun = rerun["workflow_id"].as_str().unwrap().to_string();
    let jobs = finished_jobs(&server, &rerun, Duration::from_secs(60));
    assert_all_succeeded(&server, &slug, &jobs);
    let out = server.step_output(&slug, number(job_named(&jobs, "cache")), "Saving Cache");
    assert!(out.contains("Stored Cache to broken-v1"), "{out}");
    blobs.check_at_end();
}

// ---------------------------------------------------------------------------
// Splitting tests by timings
// ---------------------------------------------------------------------------

/// The suite: test files and the times of their test cases (seconds).
const SUITE: &[(&str, &[f64])] = &[
    ("tests/test_01.py", &[4.5, 4.5]),
    ("tests/test_02.py", &[1.0]),
    ("tests/test_03.py", &[0.5, 1.0]),
    ("tests/test_04.py", &[8.0]),
    ("tests/test_05.py", &[2.0]),
    ("tests/test_06.py", &[0.5]),
    ("tests/test_07.py", &[7.0]),
    ("tests/test_08.py", &[1.5, 1.0, 0.5]),
    ("tests/test_09.py", &[2.5]),
    ("tests/test_10.py", &[3.25, 3.25]),
];
const NODES: usize = 3;

fn weight(file: &str) -> f64 {
    SUITE
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, t)| t.iter().sum())
        .unwrap_or_else(|| panic!("{file} is not in the suite"))
}

/// The smallest possible largest node total, by trying every assignment.
fn best_split() -> f64 {
    let weights: Vec<f64> = SUITE.iter().map(|(f, _)| weight(f)).collect();
    let mut best = f64::INFINITY;
    for mut code in 0..NODES.pow(weights.len() as u32) {
        let mut sums = [0.0; NODES];
        for w in &weights {
            sums[code % NODES] += w;
            code /= NODES;
        }
        best = best.min(sums.iter().copied().fold(0.0, f64::max));
    }
    best
}

/// The files each node of a finished parallel job got, from its output.
fn splits(server: &Server, slug: &str, number: i64) -> Vec<Vec<String>> {
    let step = server.step_index(slug, number, "Split");
    (0..NODES as i64)
        .map(|node| {
            let out =
                String::from_utf8_lossy(&server.node_output(slug, number, step, node)).into_owned();
            let line = out
                .lines()
                .find_map(|l| l.strip_prefix("SPLIT:"))
                .unwrap_or_else(|| panic!("node {node}: no SPLIT line in {out}"));
            line.split_whitespace().map(str::to_string).collect()
        })
        .collect()
}

/// Each node's summed known time; checks that the nodes share out the
/// whole suite, each file once.
fn node_sums(splits: &[Vec<String>]) -> Vec<f64> {
    let mut all: Vec<&str> = splits.iter().flatten().map(String::as_str).collect();
    all.sort();
    let suite: Vec<&str> = SUITE.iter().map(|(f, _)| *f).collect();
    assert_eq!(all, suite, "every file on exactly one node: {splits:?}");
    splits
        .iter()
        .map(|files| files.iter().map(|f| weight(f)).sum())
        .collect()
}

fn largest(sums: &[f64]) -> f64 {
    sums.iter().copied().fold(0.0, f64::max)
}

/// A job with `parallelism: 3` splits a suite by timings and stores its
/// JUnit results (with known `time`s) through the server. The first run has
/// no timings (the split falls back to names); the second splits by what the
/// first stored, within 10% of the best split possible.
fn tests_split_by_timings_balances_the_second_run(storage: Storage) {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let blobs = BlobStore::new(storage, root);
    let server = Server::start(root, &[], &blobs);
    let (repo, slug) = project(&server, root, "split");
    let token = server.runner_token();
    let _runner = server.runner(
        &token,
        "r1",
        &root.join("runner"),
        NODES,
        &root.join("runner.log"),
    );
    let config = r#"version: 2.1
jobs:
  test:
    machine: true
    parallelism: 3
    steps:
      - checkout
      - run:
          name: Split
          command: |
            circleci tests glob "tests/*.py" | circleci tests split --split-by=timings --show-counts > mine.txt
            echo "SPLIT: $(tr '\n' ' ' < mine.txt)"
      - run:
          name: Run the tests
          command: |
            mkdir -p results
            {
              echo "<testsuite name=\"node $CIRCLE_NODE_INDEX\">"
              while read -r f; do
                i=0
                for t in $(cat "$f"); do
                  i=$((i+1))
                  echo "  <testcase classname=\"suite\" name=\"$f case $i\" file=\"$f\" time=\"$t\"/>"
                done
              done < mine.txt
              echo "</testsuite>"
            } > results/junit.xml
      - store_test_results:
          path: results
workflows:
  main:
    jobs: [test]
"#;
    let mut files: Vec<(String, String)> = vec![(".circleci/config.yml".into(), config.into())];
    for (file, times) in SUITE {
        let times: Vec<String> = times.iter().map(f64::to_string).collect();
        files.push((file.to_string(), times.join(" ") + "\n"));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let started = Instant::now();
    let sha = repo.push(&files, "A suite to split");
    let wf = workflow_of(&server, &slug, &sha);
    let jobs = finished_jobs(&server, &wf, Duration::from_secs(60));
    assert_all_succeeded(&server, &slug, &jobs);
    let first_took = started.elapsed();
    let first = number(job_named(&jobs, "test"));
    let split_step = server.step_index(&slug, first, "Split");
    let out =
        String::from_utf8_lossy(&server.node_output(&slug, first, split_step, 0)).into_owned();
    assert!(
        out.contains("falling back to weighting by name"),
        "no timings on the first run: {out}"
    );
    let first_sums = node_sums(&splits(&server, &slug, first));

    // The second run, triggered through the API on the same branch.
    let started = Instant::now();
    let p = server.post(
        &format!("/api/v2/project/{slug}/pipeline"),
        &json!({"branch": "main"}),
    );
    let wf = server.workflows(p["id"].as_str().unwrap(), 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let jobs = finished_jobs(&server, &wf, Duration::from_secs(60));
    assert_all_succeeded(&server, &slug, &jobs);
    let second_took = started.elapsed();
    let second = number(job_named(&jobs, "test"));
    let out =
        String::from_utf8_lossy(&server.node_output(&slug, second, split_step, 0)).into_owned();
    assert!(!out.contains("falling back"), "{out}");
    let second_splits = splits(&server, &slug, second);
    let second_sums = node_sums(&second_splits);
    let best = best_split();
    let total: f64 = SUITE.iter().map(|(f, _)| weight(f)).sum();
    eprintln!(
        "[{storage:?}] suite of {} files, {total}s; best largest node {best}s\n\
         first run (by name, {first_took:?}): nodes {first_sums:?}, largest {}s ({:+.1}%)\n\
         second run (by timings, {second_took:?}): nodes {second_sums:?}, largest {}s ({:+.1}%): {second_splits:?}",
        SUITE.len(),
        largest(&first_sums),
        (largest(&first_sums) / best - 1.0) * 100.0,
        largest(&second_sums),
        (largest(&second_sums) / best - 1.0) * 100.0,
    );
    assert!(
        largest(&second_sums) <= best * 1.10,
        "the split by timings {second_sums:?} is not within 10% of the best ({best}s)"
    );
    // The stored timings are what the JUnit files said.
    let stored = server.sql(&format!(
        "SELECT SUM(run_time) AS total, COUNT(*) AS cases FROM test_cases WHERE job_id = '{}'",
        job_named(&jobs, "test")["id"].as_str().unwrap()
    ));
    let cases: usize = SUITE.iter().map(|(_, t)| t.len()).sum();
    assert_eq!(stored, [json!({"total": total, "cases": cases})]);

    // A new branch has no history of its own: it splits by the default
    // branch's.
    git(
        &repo.work,
        &["push", "-q", "origin", "HEAD:refs/heads/feature"],
    );
    let p = wait_for(
        "the feature branch's pipeline",
        Duration::from_secs(30),
        || {
            server.get(&format!("/api/v2/project/{slug}/pipeline"))["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["vcs"]["branch"] == "feature")
                .cloned()
        },
    );
    let wf = server.workflows(p["id"].as_str().unwrap(), 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let jobs = finished_jobs(&server, &wf, Duration::from_secs(60));
    assert_all_succeeded(&server, &slug, &jobs);
    let third = number(job_named(&jobs, "test"));
    let out =
        String::from_utf8_lossy(&server.node_output(&slug, third, split_step, 0)).into_owned();
    assert!(!out.contains("falling back"), "{out}");
    let third_sums = node_sums(&splits(&server, &slug, third));
    eprintln!("[{storage:?}] on a new branch: nodes {third_sums:?}");
    assert!(largest(&third_sums) <= best * 1.10, "{third_sums:?}");
    blobs.check_at_end();
}

on_both_storages!(
    two_runners_share_caches_workspaces_and_artifacts,
    corrupt_and_cut_off_uploads_leave_nothing,
    tests_split_by_timings_balances_the_second_run,
);
