//! `orrery server` and `orrery runner` end to end: real processes, real git
//! repositories that notify the server through the shipped `post-receive`
//! hook (a signed generic webhook), the HTTP API as clients see it, and
//! crashes (`kill -9`) of the server and of a runner.
//!
//! Needs git, curl, openssl, and for the Docker test a Docker Engine with
//! `orrery-test/busybox:1` (`scripts/test-images.sh`).

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
    assert_eq!(slug, format!("git/local/{name}"));
    let project_id = server.get(&format!("/api/v2/project/{slug}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(url, format!("{}/hooks/generic/{project_id}", server.url()));
    // The API gives the same webhook settings.
    let hook = server.get(&format!("/api/v2/project/{slug}/webhook"));
    assert_eq!(hook["url"], url.as_str());
    assert_eq!(hook["secret"], secret.as_str());
    repo.install_hook(server, &url, &secret);
    (repo, slug)
}

/// Asserts that `seen` follows `order` (values may be skipped, not reordered).
fn assert_in_order(what: &str, seen: &[&str], order: &[&str]) {
    let mut at = 0;
    for s in seen {
        match order[at..].iter().position(|o| o == s) {
            Some(i) => at += i + 1,
            None => panic!("{what}: saw {seen:?}, which does not follow {order:?}"),
        }
    }
}

fn job_named<'a>(jobs: &'a [Value], name: &str) -> &'a Value {
    jobs.iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {jobs:#?}"))
}

/// HMAC-SHA256 in hex, by `openssl` as the shipped hook computes it.
fn hmac_sha256(secret: &str, body: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_string()
}

const KNOWN_BYTES_SCRIPT: &str = r#"printf 'out one\nout two\n'
            printf 'err one\n' >&2
            printf 'out three \377 end\n'
            printf 'err two\n' >&2
            printf '\tlast line, no newline'"#;

const KNOWN_BYTES: &[u8] =
    b"out one\nout two\nerr one\nout three \xff end\nerr two\n\tlast line, no newline";

fn webhook_runner_approval_output_and_rerun_from_failed(storage: Storage) {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let blobs = BlobStore::new(storage, root);
    let server = Server::start(root, &[], &blobs);
    let (repo, slug) = project(&server, root, "app");
    let token = server.runner_token();

    let counter = root.join("counter");
    let marker = root.join("marker");
    let (counter_s, marker_s) = (counter.display(), marker.display());
    let config = format!(
        r#"version: 2.1
jobs:
  build:
    machine: true
    steps:
      - checkout
      - run:
          name: Known bytes
          command: |
            echo build >> {counter_s}
            test -f README.md
            {KNOWN_BYTES_SCRIPT}
  deploy:
    machine: true
    steps:
      - run: echo deploy >> {counter_s} && sleep 0.3
  prepare:
    machine: true
    steps:
      - run: echo prepare >> {counter_s}
  side:
    machine: true
    steps:
      - run: echo side >> {counter_s}
  flaky:
    machine: true
    steps:
      - run: echo flaky >> {counter_s} && test -f {marker_s}
  after:
    machine: true
    steps:
      - run: echo after >> {counter_s}
workflows:
  main:
    jobs:
      - build
      - hold:
          type: approval
          requires: [build]
      - deploy:
          requires: [hold]
  flaky:
    jobs:
      - prepare
      - side
      - flaky:
          requires: [prepare]
      - after:
          requires: [flaky]
"#
    );
    let sha = repo.push(
        &[(".circleci/config.yml", &config), ("README.md", "hello\n")],
        "Add the pipeline\n\nWith a body.",
    );
    let pipeline = server.pipeline_of(&slug, &sha);
    assert_eq!(pipeline["trigger"]["type"], "webhook");
    assert_eq!(pipeline["vcs"]["branch"], "main");
    assert_eq!(pipeline["vcs"]["commit"]["subject"], "Add the pipeline");
    let pipeline_id = pipeline["id"].as_str().unwrap().to_string();
    let workflows = server.workflows(&pipeline_id, 2);
    let wf_id = |name: &str| {
        workflows
            .iter()
            .find(|w| w["name"] == name)
            .and_then(|w| w["id"].as_str())
            .unwrap_or_else(|| panic!("no workflow {name}"))
            .to_string()
    };
    let (main_id, flaky_id) = (wf_id("main"), wf_id("flaky"));

    // Every state change, as a client polling the API sees it. The runner
    // starts once the first jobs were seen queued.
    let mut history = History::default();
    let mut approved_after = None;
    let started = Instant::now();
    let mut poll = |history: &mut History| {
        let p = server.get(&format!("/api/v2/pipeline/{pipeline_id}"));
        history.record("pipeline", p["state"].as_str().unwrap());
        let mut done = true;
        for (name, id) in [("main", &main_id), ("flaky", &flaky_id)] {
            let w = server.get(&format!("/api/v2/workflow/{id}"));
            let status = w["status"].as_str().unwrap().to_string();
            history.record(&format!("workflow {name}"), &status);
            let jobs = server.jobs(id);
            for j in &jobs {
                history.record(
                    &format!("{name}/{}", j["name"].as_str().unwrap()),
                    j["status"].as_str().unwrap(),
                );
            }
            if name == "main" && approved_after.is_none() {
                let hold = job_named(&jobs, "hold");
                if hold["status"] == "on_hold" && status == "on_hold" {
                    assert_eq!(hold["type"], "approval");
                    let request = hold["approval_request_id"].as_str().unwrap();
                    let r = server.request(
                        "POST",
                        &format!("/api/v2/workflow/{id}/approve/{request}"),
                        None,
                    );
                    assert_eq!(r.status, 202, "approve: {}", r.text());
                    approved_after = Some(started.elapsed());
                }
            }
            done &= matches!(status.as_str(), "success" | "failed");
        }
        done
    };
    poll(&mut history);
    let _runner = server.runner(
        &token,
        "r1",
        &root.join("runner"),
        4,
        &root.join("runner.log"),
    );
    wait_for("both workflows to end", Duration::from_secs(60), || {
        poll(&mut history).then_some(())
    });
    eprintln!("state changes: {history:#?}; approved after {approved_after:?}");

    assert_eq!(history.of("pipeline").last(), Some(&"created"));
    let hold_job = server.jobs(&main_id);
    assert_eq!(job_named(&hold_job, "hold")["approved_by"], "admin");
    assert_eq!(
        history.of("main/build"),
        ["queued", "running", "success"],
        "{history:#?}"
    );
    let hold = history.of("main/hold");
    assert_in_order("main/hold", &hold, &["blocked", "on_hold", "success"]);
    assert!(hold.ends_with(&["on_hold", "success"]), "{hold:?}");
    let deploy = history.of("main/deploy");
    assert_in_order(
        "main/deploy",
        &deploy,
        &["blocked", "queued", "running", "success"],
    );
    assert_eq!(deploy.first(), Some(&"blocked"));
    assert_eq!(deploy.last(), Some(&"success"));
    let main = history.of("workflow main");
    assert_in_order(
        "workflow main",
        &main,
        &["running", "on_hold", "running", "success"],
    );
    assert!(
        main.contains(&"on_hold") && main.last() == Some(&"success"),
        "{main:?}"
    );
    let flaky = history.of("workflow flaky");
    assert_in_order("workflow flaky", &flaky, &["running", "failing", "failed"]);
    assert_eq!(flaky.last(), Some(&"failed"));
    assert_eq!(history.of("flaky/flaky").last(), Some(&"failed"));
    let after = history.of("flaky/after");
    assert_in_order("flaky/after", &after, &["blocked", "not_run"]);

    // The output of a step: exactly the bytes it wrote, stderr in place.
    let jobs = server.jobs(&main_id);
    let build_number = job_named(&jobs, "build")["job_number"].as_i64().unwrap();
    let step = server.step_index(&slug, build_number, "Known bytes");
    let out = server.output(&slug, build_number, step);
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(KNOWN_BYTES)
    );
    assert_eq!(out, KNOWN_BYTES);

    // Rerun from failed: only the failed job and what requires it run again.
    std::fs::write(&marker, "").unwrap();
    let before = std::fs::read_to_string(&counter).unwrap();
    let mut ran: Vec<&str> = before.lines().collect();
    ran.sort();
    assert_eq!(ran, ["build", "deploy", "flaky", "prepare", "side"]);
    let rerun = server.post(
        &format!("/api/v2/workflow/{flaky_id}/rerun"),
        &json!({"from_failed": true}),
    );
    let rerun_id = rerun["workflow_id"].as_str().unwrap().to_string();
    assert_ne!(rerun_id, flaky_id);
    let mut rerun_history = History::default();
    wait_for("the rerun to end", Duration::from_secs(60), || {
        let w = server.get(&format!("/api/v2/workflow/{rerun_id}"));
        let status = w["status"].as_str().unwrap().to_string();
        rerun_history.record("workflow", &status);
        for j in server.jobs(&rerun_id) {
            rerun_history.record(j["name"].as_str().unwrap(), j["status"].as_str().unwrap());
        }
        matches!(status.as_str(), "success" | "failed").then_some(())
    });
    eprintln!("rerun state changes: {rerun_history:#?}");
    let w = server.get(&format!("/api/v2/workflow/{rerun_id}"));
    assert_eq!(w["status"], "success");
    assert_eq!(w["rerun_of"], flaky_id.as_str());
    assert_eq!(w["pipeline_id"], pipeline_id.as_str());
    assert_eq!(rerun_history.of("prepare"), ["success"]);
    assert_eq!(rerun_history.of("side"), ["success"]);
    assert_eq!(rerun_history.of("flaky").last(), Some(&"success"));
    assert_eq!(rerun_history.of("after").last(), Some(&"success"));
    let after = std::fs::read_to_string(&counter).unwrap();
    let mut again: Vec<&str> = after.lines().skip(before.lines().count()).collect();
    again.sort();
    assert_eq!(again, ["after", "flaky"], "jobs run by the rerun");
    // The pipeline lists both runs of the workflow.
    let workflows = server.workflows(&pipeline_id, 3);
    assert_eq!(workflows.len(), 3);
    blobs.check_at_end();
}

fn invalid_config_pushed_gives_an_errored_pipeline_with_the_compiler_messages(storage: Storage) {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let blobs = BlobStore::new(storage, root);
    let server = Server::start(root, &[], &blobs);
    let (repo, slug) = project(&server, root, "broken");
    let config = "version: 2.1
jobs:
  build:
    machine: true
    steps:
      - run: echo hi
  deploy:
    machine: true
    steps:
      - run: echo deploy
workflows:
  main:
    jobs:
      - build
      - deploy:
          requires: [biuld]
      - test
";
    let sha = repo.push(&[(".circleci/config.yml", config)], "Broken config");
    let listed = server.pipeline_of(&slug, &sha);
    let p = server.get(&format!(
        "/api/v2/pipeline/{}",
        listed["id"].as_str().unwrap()
    ));
    assert_eq!(p["state"], "errored", "{p:#}");
    let messages: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "config", "{e}");
            e["message"].as_str().unwrap()
        })
        .collect();
    // Every error, each with its file, line and column.
    assert!(
        messages.iter().any(|m| m.starts_with(
            r#".circleci/config.yml:16:22: error: deploy: requires job "biuld" but "biuld" is not part of this workflow."#
        ) && m.contains("did you mean `build`?")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with(
            ".circleci/config.yml:17:9: error: Cannot find a definition for job named test"
        )),
        "{messages:#?}"
    );
    assert_eq!(messages.len(), 2, "{messages:#?}");
    // Deliveries by hand: only a body signed with the project's secret counts.
    let hook = server.get(&format!("/api/v2/project/{slug}/webhook"));
    let path = hook["url"]
        .as_str()
        .unwrap()
        .strip_prefix(&server.url())
        .unwrap()
        .to_string();
    let body = json!({
        "ref": "refs/heads/main",
        "after": sha,
        "repository": repo.bare.display().to_string(),
        "message": "Delivered by hand",
    })
    .to_string();
    let good = format!(
        "sha256={}",
        hmac_sha256(hook["secret"].as_str().unwrap(), &body)
    );
    let bad = format!("sha256={}", hmac_sha256("not-the-secret", &body));
    for signature in [None, Some(bad.as_str())] {
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend(signature.map(|s| ("X-Orrery-Signature", s)));
        let r = http(server.port, "POST", &path, &headers, Some(body.as_bytes())).unwrap();
        assert_eq!(r.status, 401, "{signature:?}: {}", r.text());
    }
    let r = http(
        server.port,
        "POST",
        &path,
        &[
            ("Content-Type", "application/json"),
            ("X-Orrery-Signature", &good),
        ],
        Some(body.as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let again = server.get(&format!(
        "/api/v2/pipeline/{}",
        r.json()["id"].as_str().unwrap()
    ));
    assert_eq!(again["state"], "errored");
    assert_eq!(again["number"], 2);
    // The commit is described as the repository has it.
    assert_eq!(again["vcs"]["commit"]["subject"], "Broken config");
    let listed = server.get(&format!("/api/v2/project/{slug}/pipeline"));
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);

    // Nothing runs for an errored pipeline.
    let workflows = server.get(&format!(
        "/api/v2/pipeline/{}/workflow",
        p["id"].as_str().unwrap()
    ));
    assert_eq!(workflows["items"], json!([]));
    blobs.check_at_end();
}

fn server_killed_during_twenty_jobs_restarts_and_loses_nothing(storage: Storage) {
    const JOBS: usize = 20;
    const LINES: usize = 50;
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let blobs = BlobStore::new(storage, root);
    let mut server = Server::start(root, &[], &blobs);
    let (repo, slug) = project(&server, root, "many");
    let token = server.runner_token();
    let _runner = server.runner(
        &token,
        "r1",
        &root.join("runner"),
        JOBS,
        &root.join("runner.log"),
    );
    let mut config = String::from("version: 2.1\njobs:\n");
    for k in 1..=JOBS {
        config.push_str(&format!(
            "  c{k:02}:\n    machine: true\n    steps:\n      - run:\n          name: Count\n          command: i=1; while [ $i -le {LINES} ]; do echo \"c{k:02} line $i\"; i=$((i+1)); sleep 0.1; done\n"
        ));
    }
    config.push_str("workflows:\n  main:\n    jobs:\n");
    for k in 1..=JOBS {
        config.push_str(&format!("      - c{k:02}\n"));
    }
    let sha = repo.push(&[(".circleci/config.yml", &config)], "Twenty jobs");
    let pipeline = server.pipeline_of(&slug, &sha);
    let wf = server.workflows(pipeline["id"].as_str().unwrap(), 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // All twenty running, and printing.
    let started = Instant::now();
    wait_for("20 running jobs", Duration::from_secs(60), || {
        let jobs = server.jobs(&wf);
        if let Some(ended) = jobs
            .iter()
            .find(|j| !matches!(j["status"].as_str(), Some("running" | "queued")))
        {
            let n = ended["job_number"].as_i64().unwrap();
            let details = server.get(&format!("/api/v1.1/project/{slug}/{n}"));
            let out = server.request(
                "GET",
                &format!("/api/v2/project/{slug}/job/{n}/output"),
                None,
            );
            panic!(
                "a job ended before the kill: {ended:#}\n{details:#}\n{}",
                out.text()
            );
        }
        (jobs.len() == JOBS && jobs.iter().all(|j| j["status"] == "running")).then_some(())
    });
    // Output flows while the jobs run: kill the server in the middle of it.
    let first = &server.jobs(&wf)[0];
    let (first_name, first_number) = (
        first["name"].as_str().unwrap().to_string(),
        first["job_number"].as_i64().unwrap(),
    );
    let step = wait_for("a step of a running job", Duration::from_secs(30), || {
        let v = server.get(&format!("/api/v1.1/project/{slug}/{first_number}"));
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "Count" && s["actions"][0]["has_output"] == true)
            .and_then(|s| s["actions"][0]["step"].as_i64())
    });
    let partial = wait_for("10 lines of output", Duration::from_secs(30), || {
        let out = server.output(&slug, first_number, step);
        (out.iter().filter(|b| **b == b'\n').count() >= 10).then_some(out)
    });
    let all_running = started.elapsed();
    let runner_log = root.join("runner.log");
    let failed_calls = || {
        std::fs::read_to_string(&runner_log)
            .unwrap_or_default()
            .matches("failed; retrying")
            .count()
    };
    let failed_before = failed_calls();
    server.kill9();
    let killed = Instant::now();
    let partial_lines = partial.iter().filter(|b| **b == b'\n').count();
    // The server comes back once the runner has had calls fail.
    wait_for("the runner to notice", Duration::from_secs(20), || {
        (failed_calls() > failed_before).then_some(())
    });
    let down = killed.elapsed();
    server.restart();
    eprintln!(
        "all running after {all_running:?}, {first_name} had printed {partial_lines} of {LINES} lines; \
         the server was down for {down:?} and back {:?} after the kill",
        killed.elapsed()
    );
    assert!(
        (1..LINES).contains(&partial_lines),
        "the kill came in the middle of the output: {}",
        String::from_utf8_lossy(&partial)
    );

    let jobs = wait_for("20 finished jobs", Duration::from_secs(90), || {
        let jobs = server.jobs(&wf);
        jobs.iter()
            .all(|j| !matches!(j["status"].as_str(), Some("running" | "queued")))
            .then_some(jobs)
    });
    eprintln!(
        "all finished {:?} after the kill; the runner retried {} calls",
        killed.elapsed(),
        failed_calls() - failed_before
    );
    // The runner's calls failed only while the server was away, never
    // because the server refused them.
    let log = std::fs::read_to_string(&runner_log).unwrap();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("the server answered"))
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
    let statuses: Vec<(&str, &str)> = jobs
        .iter()
        .map(|j| (j["name"].as_str().unwrap(), j["status"].as_str().unwrap()))
        .collect();
    assert!(
        statuses.iter().all(|(_, s)| *s == "success"),
        "{statuses:?}"
    );
    assert_eq!(
        server.get(&format!("/api/v2/workflow/{wf}"))["status"],
        "success"
    );
    for j in &jobs {
        let name = j["name"].as_str().unwrap();
        let number = j["job_number"].as_i64().unwrap();
        // One attempt only: the runner kept its tasks through the restart.
        let details = server.get(&format!("/api/v1.1/project/{slug}/{number}"));
        for s in details["steps"].as_array().unwrap() {
            for a in s["actions"].as_array().unwrap() {
                assert_eq!(a["attempt"], 1, "{name}: {s:#}");
            }
        }
        let step = server.step_index(&slug, number, "Count");
        let out = server.output(&slug, number, step);
        let expected: String = (1..=LINES).map(|i| format!("{name} line {i}\n")).collect();
        assert_eq!(
            String::from_utf8_lossy(&out),
            expected,
            "the output of {name}"
        );
    }
    blobs.check_at_end();
}

fn runner_killed_mid_job_is_an_infrastructure_failure_retried_on_a_new_runner(storage: Storage) {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let blobs = BlobStore::new(storage, root);
    let server = Server::start(root, &["--lease-secs", "10"], &blobs);
    let (repo, slug) = project(&server, root, "docker");
    let token = server.runner_token();
    let work = root.join("runner");
    let label = format!("orrery.work-root={}", work.join("work").display());
    let _sweep = ContainerSweep(label.clone());
    let mut runner = server.runner(&token, "r1", &work, 1, &root.join("runner.log"));
    let config = format!(
        "version: 2.1
jobs:
  slow:
    docker:
      - image: {BUSYBOX}
    steps:
      - run:
          name: Sleep
          command: echo started; sleep 6; echo done
workflows:
  main:
    jobs: [slow]
"
    );
    let sha = repo.push(&[(".circleci/config.yml", &config)], "A slow Docker job");
    let pipeline = server.pipeline_of(&slug, &sha);
    let wf = server.workflows(pipeline["id"].as_str().unwrap(), 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let number = wait_for("the job", Duration::from_secs(10), || {
        server.jobs(&wf).first()?["job_number"].as_i64()
    });
    let details = format!("/api/v1.1/project/{slug}/{number}");
    let action = |v: &Value, step: &str| -> Option<Value> {
        v["steps"].as_array()?.iter().find(|s| s["name"] == step)?["actions"]
            .as_array()?
            .first()
            .cloned()
    };
    wait_for("the Sleep step to run", Duration::from_secs(60), || {
        let v = server.get(&details);
        action(&v, "Sleep").filter(|a| a["status"] == "running")
    });
    let before = containers_with_label(&label);
    assert!(!before.is_empty(), "the job's container carries {label}");

    runner.kill9();
    let killed = Instant::now();
    // The lease runs out: the attempt is an infrastructure failure.
    let seen = wait_for("infrastructure_fail", Duration::from_secs(30), || {
        let v = server.get(&details);
        let v1 = v["steps"].as_array().unwrap().iter().any(|s| {
            s["actions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["status"] == "infrastructure_fail")
        });
        let v2 = server.get(&format!("/api/v2/project/{slug}/job/{number}"));
        let runs = v2["parallel_runs"].as_array().unwrap().clone();
        (v1 || runs.iter().any(|r| r["status"] == "infrastructure_fail")).then_some((v, runs))
    });
    let to_fail = killed.elapsed();
    eprintln!(
        "infrastructure_fail visible {to_fail:?} after the kill: {:#}",
        seen.0
    );
    assert!(to_fail < Duration::from_secs(30));
    // Nothing finishes it while no runner runs: the retry waits in the queue.
    let job = server.get(&format!("/api/v2/project/{slug}/job/{number}"));
    assert!(
        matches!(job["status"].as_str(), Some("running" | "queued")),
        "{job:#}"
    );

    // A new runner process with the same work directory removes what its
    // predecessor left and runs the retry.
    let _runner2 = server.runner(&token, "r1", &work, 1, &root.join("runner2.log"));
    let old_ids: Vec<String> = before
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    wait_for("the old container to go", Duration::from_secs(30), || {
        let now = containers_with_label(&label);
        (!now
            .iter()
            .any(|l| old_ids.iter().any(|id| l.starts_with(id))))
        .then_some(())
    });
    let log2 = std::fs::read_to_string(root.join("runner2.log")).unwrap();
    assert!(
        log2.contains("removed containers a previous run of this runner left"),
        "{log2}"
    );
    let job = wait_for("the retry to finish", Duration::from_secs(60), || {
        let j = server.get(&format!("/api/v2/project/{slug}/job/{number}"));
        (!matches!(j["status"].as_str(), Some("running" | "queued"))).then_some(j)
    });
    eprintln!("finished {:?} after the kill: {job:#}", killed.elapsed());
    assert_eq!(job["status"], "success", "{job:#}");
    assert_eq!(
        job["parallel_runs"],
        json!([{"index": 0, "status": "success"}])
    );
    let v = server.get(&details);
    let sleep = action(&v, "Sleep").unwrap();
    assert_eq!(sleep["status"], "success", "{v:#}");
    assert_eq!(sleep["attempt"], 2, "{v:#}");
    assert_eq!(
        server.get(&format!("/api/v2/workflow/{wf}"))["status"],
        "success"
    );
    let step = sleep["step"].as_i64().unwrap();
    assert_eq!(server.output(&slug, number, step), b"started\ndone\n");
    // The first attempt's failure stays in the job's details, with its story.
    let failure = action(&v, "Infrastructure failure").expect("the failed attempt");
    assert_eq!(failure["status"], "infrastructure_fail", "{v:#}");
    assert_eq!(failure["attempt"], 1, "{v:#}");
    let url = failure["output_url"].as_str().unwrap();
    let path = url.strip_prefix(&server.url()).unwrap();
    let story = server.get(path);
    let message = story[0]["message"].as_str().unwrap();
    assert!(
        message.contains("the runner stopped responding (its lease expired); attempt 1 of 2"),
        "{message}"
    );
    wait_for("no container left", Duration::from_secs(10), || {
        containers_with_label(&label).is_empty().then_some(())
    });
    blobs.check_at_end();
}

on_both_storages!(
    webhook_runner_approval_output_and_rerun_from_failed,
    invalid_config_pushed_gives_an_errored_pipeline_with_the_compiler_messages,
    server_killed_during_twenty_jobs_restarts_and_loses_nothing,
    runner_killed_mid_job_is_an_infrastructure_failure_retried_on_a_new_runner,
);
