//! The CircleCI API flow against a running server with its embedded runner:
//! projects, pipelines with parameters, workflows and jobs, output (raw,
//! v1.1 and live), pagination, approvals, cancel, reruns, environment
//! variables, config compilation, setup pipelines, errored configs and roles.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::{
    JOB_STATUSES, PIPELINE_STATES, Resp, TestServer, Ticker, WORKFLOW_STATUSES, Who,
    circleci_status, database_bytes, machine_config, poll,
};
use futures_util::StreamExt;
use orrery_store::Role;
use serde_json::{Value, json};

const SLUG: &str = "git/acme/app";

/// A server with one project `git/acme/app` on a repository with `config`.
async fn with_project(config: &str) -> (TestServer, common::Repo) {
    let s = TestServer::start().await;
    let repo = s.repo("app", config);
    s.create_project(SLUG, &repo, json!({})).await;
    (s, repo)
}

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

#[track_caller]
fn forbidden(r: &Resp, what: &str) {
    assert_eq!(r.status, 403, "{what}: {}", r.text());
    r.message();
}

#[tokio::test(flavor = "multi_thread")]
async fn me_and_projects() {
    let s = TestServer::start().await;
    let r = s.get("/api/v2/me").await;
    r.expect(200);
    assert_eq!(r.json["login"], "admin");
    assert!(r.json["id"].as_str().is_some_and(|i| !i.is_empty()));
    let r = s.get("/api/v2/me/collaborations").await;
    r.expect(200);
    assert_eq!(r.json, json!([]));

    let repo = s.repo(
        "app",
        &machine_config(&[("build", "true")], "      - build\n"),
    );
    let r = s
        .post(
            "/api/v2/project/gh/acme/app",
            &json!({"repo_url": repo.url()}),
        )
        .await;
    r.expect(201);
    let p = r.json.clone();
    assert_eq!(p["slug"], "gh/acme/app");
    assert_eq!(p["name"], "app");
    assert_eq!(p["organization_name"], "acme");
    assert_eq!(p["organization_slug"], "gh/acme");
    assert_eq!(p["vcs_info"]["vcs_url"], repo.url());
    assert_eq!(p["vcs_info"]["provider"], "GitHub");
    assert_eq!(p["vcs_info"]["default_branch"], "main");
    let project_id = id(&p);
    let hook = &p["webhook"];
    assert_eq!(
        hook["url"],
        format!("{}/hooks/github/{project_id}", s.base),
        "a GitHub project's webhook is GitHub's"
    );
    let secret = hook["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32, "a long random secret: {secret}");
    for provider in ["github", "gitlab", "gitea", "generic"] {
        assert_eq!(
            hook["urls"][provider],
            format!("{}/hooks/{provider}/{project_id}", s.base)
        );
    }

    // Reading it back, by either spelling of the VCS; the secret is not in
    // the project, only behind the webhook endpoint.
    for path in [
        "/api/v2/project/gh/acme/app",
        "/api/v2/project/github/acme/app",
    ] {
        let r = s.get(path).await;
        r.expect(200);
        assert_eq!(id(&r.json), project_id);
        assert!(r.json.get("webhook").is_none(), "{}", r.json);
        assert!(!r.text().contains(&secret));
    }
    let r = s.get("/api/v2/project/gh/acme/app/webhook").await;
    r.expect(200);
    assert_eq!(r.json["secret"], secret.as_str());
    assert_eq!(r.json["url"], hook["url"]);
    let r = s.get("/api/v2/me/collaborations").await;
    assert_eq!(r.json[0]["name"], "acme");
    assert_eq!(r.json[0]["slug"], "gh/acme");

    // A second create of the same slug (by either spelling) is a conflict.
    for path in [
        "/api/v2/project/gh/acme/app",
        "/api/v2/project/github/acme/app",
    ] {
        let r = s.post(path, &json!({"repo_url": repo.url()})).await;
        r.expect(409);
        assert!(r.message().contains("already exists"), "{}", r.text());
    }

    // Bad names, URLs and options.
    let bad: &[(&str, Value)] = &[
        (
            "/api/v2/project/svn/acme/x",
            json!({"repo_url": repo.url()}),
        ),
        (
            "/api/v2/project/git/ac%20me/x",
            json!({"repo_url": repo.url()}),
        ),
        (
            "/api/v2/project/git/acme/.hidden",
            json!({"repo_url": repo.url()}),
        ),
        (
            "/api/v2/project/git/acme/a$b",
            json!({"repo_url": repo.url()}),
        ),
        (
            "/api/v2/project/git/acme/x",
            json!({"repo_url": "ftp://example.com/x.git"}),
        ),
        (
            "/api/v2/project/git/acme/x",
            json!({"repo_url": "relative/path"}),
        ),
        (
            "/api/v2/project/git/acme/x",
            json!({"repo_url": "-oProxyCommand=evil"}),
        ),
        (
            "/api/v2/project/git/acme/x",
            json!({"repo_url": "/srv/with space"}),
        ),
        (
            "/api/v2/project/git/acme/x",
            json!({"repo_url": "/srv/a\nb"}),
        ),
        ("/api/v2/project/git/acme/x", json!({"repo_url": ""})),
        ("/api/v2/project/git/acme/x", json!({})),
        (
            "/api/v2/project/git/acme/x",
            json!({"repo_url": "/srv/x", "vcs_provider": "svn"}),
        ),
        (
            "/api/v2/project/git/acme/x",
            json!({"repo_url": "/srv/x", "vcs_api_url": "file:///etc"}),
        ),
        (
            "/api/v2/project/git/acme/x",
            json!({"repo_url": "/srv/x", "default_branch": "-x"}),
        ),
        (
            "/api/v2/project/git/acme/x",
            json!({"repo_url": "/srv/x", "default_branch": "a..b"}),
        ),
        (
            "/api/v2/project/git/acme/x",
            json!({"repo_url": "/srv/x", "unknown_field": true}),
        ),
    ];
    for (path, body) in bad {
        let r = s.post(path, body).await;
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
        r.message();
    }
    let r = s.get("/api/v2/project/git/acme/x").await;
    r.expect(404);
    r.message();

    // Viewers read but do not create, and do not see the webhook secret.
    let viewer = s.user_token("vera", Role::Viewer).await;
    let r = s
        .call(
            "get",
            "/api/v2/project/gh/acme/app",
            Who::Token(&viewer),
            None,
        )
        .await;
    r.expect(200);
    let r = s
        .call(
            "get",
            "/api/v2/project/gh/acme/app/webhook",
            Who::Token(&viewer),
            None,
        )
        .await;
    forbidden(&r, "a viewer reading the webhook secret");
    assert!(!r.text().contains(&secret));
    let r = s
        .call(
            "post",
            "/api/v2/project/git/acme/viewers",
            Who::Token(&viewer),
            Some(&json!({"repo_url": repo.url()})),
        )
        .await;
    forbidden(&r, "a viewer creating a project");
    let r = s.call("get", "/api/v2/me", Who::Token(&viewer), None).await;
    assert_eq!(r.json["login"], "vera");
    s.stop().await;
}

const PARAMS_CONFIG: &str = r#"version: 2.1
parameters:
  greeting:
    type: string
    default: hello
  loud:
    type: boolean
    default: false
  times:
    type: integer
    default: 1
jobs:
  build:
    machine: true
    steps:
      - checkout
      - run:
          name: Say
          command: echo "<< pipeline.parameters.greeting >> x<< pipeline.parameters.times >> loud=<< pipeline.parameters.loud >> on << pipeline.git.branch >>"
workflows:
  main:
    jobs: [build]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_with_parameters() {
    let (s, repo) = with_project(PARAMS_CONFIG).await;
    let sha = repo.head();
    let r = s
        .post(
            &format!("/api/v2/project/{SLUG}/pipeline"),
            &json!({"branch": "main", "parameters": {"greeting": "bonjour", "loud": true, "times": 3}}),
        )
        .await;
    r.expect(201);
    let created = r.json.clone();
    assert_eq!(created["number"], 1);
    circleci_status(PIPELINE_STATES, &created["state"]);
    let pipeline_id = id(&created);
    let wf = s.workflows(&pipeline_id, 1).await.remove(0);
    let wf = s.wait_workflow(&id(&wf), &["success", "failed"]).await;
    assert_eq!(wf["status"], "success", "{wf}");
    assert_eq!(wf["name"], "main");
    assert_eq!(wf["pipeline_id"], pipeline_id.as_str());
    assert_eq!(wf["pipeline_number"], 1);
    assert_eq!(wf["project_slug"], SLUG);
    assert_eq!(wf["started_by"], "admin");
    assert!(wf["stopped_at"].is_string());

    // The pipeline, by id and by number.
    let r = s.get(&format!("/api/v2/pipeline/{pipeline_id}")).await;
    r.expect(200);
    let p = r.json.clone();
    assert_eq!(p["state"], "created");
    assert_eq!(p["number"], 1);
    assert_eq!(p["project_slug"], SLUG);
    assert_eq!(p["errors"], json!([]));
    assert_eq!(
        p["trigger_parameters"],
        json!({"greeting": "bonjour", "loud": true, "times": 3})
    );
    assert_eq!(p["trigger"]["type"], "api");
    assert_eq!(p["trigger"]["actor"]["login"], "admin");
    assert_eq!(p["vcs"]["branch"], "main");
    assert_eq!(p["vcs"]["revision"], sha.as_str());
    assert_eq!(p["vcs"]["commit"]["subject"], "first commit");
    assert_eq!(p["vcs"]["commit"]["body"], "with a body");
    assert_eq!(p["vcs"]["target_repository_url"], repo.url());
    let r = s.get(&format!("/api/v2/project/{SLUG}/pipeline/1")).await;
    r.expect(200);
    assert_eq!(r.json, p);
    s.get(&format!("/api/v2/project/{SLUG}/pipeline/2"))
        .await
        .expect(404);

    // Its config: the source as committed, compiled with the parameters.
    let r = s
        .get(&format!("/api/v2/pipeline/{pipeline_id}/config"))
        .await;
    r.expect(200);
    assert_eq!(r.json["source"], PARAMS_CONFIG);
    let compiled = r.json["compiled"].as_str().unwrap();
    assert!(
        compiled.contains("bonjour x3 loud=true on main"),
        "{compiled}"
    );
    let processed = compiled
        .split("# Original config.yml file:")
        .next()
        .unwrap();
    assert!(!processed.contains("<< pipeline"), "{compiled}");

    // The workflow's jobs and the job's details.
    let jobs = s.jobs(&id(&wf)).await;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job["name"], "build");
    assert_eq!(job["job_number"], 1);
    assert_eq!(job["status"], "success");
    assert_eq!(job["type"], "build");
    assert_eq!(job["project_slug"], SLUG);
    assert_eq!(job["dependencies"], json!([]));
    assert!(job["started_at"].is_string() && job["stopped_at"].is_string());
    let r = s.get(&format!("/api/v2/project/{SLUG}/job/1")).await;
    r.expect(200);
    let d = &r.json;
    assert_eq!(d["name"], "build");
    assert_eq!(d["number"], 1);
    assert_eq!(d["status"], "success");
    assert_eq!(d["project"]["slug"], SLUG);
    assert_eq!(d["pipeline"]["id"], pipeline_id.as_str());
    assert_eq!(d["latest_workflow"]["id"], wf["id"]);
    assert_eq!(d["latest_workflow"]["name"], "main");
    assert_eq!(d["executor"]["type"], "machine");
    assert_eq!(d["parallelism"], 1);
    assert_eq!(
        d["parallel_runs"],
        json!([{"index": 0, "status": "success"}])
    );
    assert_eq!(d["organization"]["name"], "acme");
    assert!(d["duration"].as_i64().is_some_and(|n| n >= 0), "{d}");
    assert!(
        d["web_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/workflows/{}/jobs/1", id(&wf))),
        "{d}"
    );

    // The parameters reached the job.
    let out = s.get(&format!("/api/v2/project/{SLUG}/job/1/output")).await;
    out.expect(200);
    assert!(
        out.text().contains("bonjour x3 loud=true on main\n"),
        "{}",
        out.text()
    );

    // Parameters must be declared and of the declared type.
    let r = s
        .post(
            &format!("/api/v2/project/{SLUG}/pipeline"),
            &json!({"parameters": {"greeting": 1.5}}),
        )
        .await;
    r.expect(400);
    r.message();
    let r = s
        .post(
            &format!("/api/v2/project/{SLUG}/pipeline"),
            &json!({"parameters": ["greeting"]}),
        )
        .await;
    r.expect(400);
    let r = s
        .post(
            &format!("/api/v2/project/{SLUG}/pipeline"),
            &json!({"branch": "main", "tag": "v1"}),
        )
        .await;
    r.expect(400);
    r.message();
    let r = s
        .post(
            &format!("/api/v2/project/{SLUG}/pipeline"),
            &json!({"branch": "no-such-branch"}),
        )
        .await;
    r.expect(400);
    r.message();
    let undeclared = s.trigger(SLUG, json!({"parameters": {"nope": "x"}})).await;
    let r = s
        .get(&format!("/api/v2/pipeline/{}", id(&undeclared)))
        .await;
    assert_eq!(r.json["state"], "errored", "{}", r.json);
    assert!(
        r.json["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nope")),
        "{}",
        r.json
    );
    let mistyped = s
        .trigger(SLUG, json!({"parameters": {"times": "three"}}))
        .await;
    let r = s.get(&format!("/api/v2/pipeline/{}", id(&mistyped))).await;
    assert_eq!(r.json["state"], "errored", "{}", r.json);

    // A tag builds the tag.
    repo.git(&["tag", "v1.0.0"]);
    let tagged = s.trigger(SLUG, json!({"tag": "v1.0.0"})).await;
    let r = s.get(&format!("/api/v2/pipeline/{}", id(&tagged))).await;
    assert_eq!(r.json["vcs"]["tag"], "v1.0.0");
    assert_eq!(r.json["vcs"]["branch"], Value::Null);
    assert_eq!(r.json["vcs"]["revision"], sha.as_str());

    // A body is optional: the default branch.
    let r = TestServer::send(s.request(
        "post",
        &format!("/api/v2/project/{SLUG}/pipeline"),
        Who::Admin,
    ))
    .await;
    r.expect(201);
    let r = s.get(&format!("/api/v2/pipeline/{}", id(&r.json))).await;
    assert_eq!(r.json["vcs"]["branch"], "main");
    assert_eq!(r.json["trigger_parameters"], json!({}));
    s.stop().await;
}

/// One Server-Sent Event.
#[derive(Debug)]
struct Sse {
    event: String,
    data: String,
}

/// Reads a Server-Sent Events stream until its `end` event.
async fn read_sse(resp: reqwest::Response) -> Vec<Sse> {
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    loop {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the stream ends in time");
        let Some(chunk) = chunk else {
            panic!("the stream closed before its end event: {events:?}");
        };
        buf.extend_from_slice(&chunk.expect("stream bytes"));
        while let Some(at) = find(&buf, b"\n\n") {
            let block = String::from_utf8(buf[..at].to_vec()).expect("SSE is UTF-8");
            buf.drain(..at + 2);
            let mut ev = Sse {
                event: "message".into(),
                data: String::new(),
            };
            let mut any = false;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    ev.event = v.trim_start().to_string();
                    any = true;
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !ev.data.is_empty() {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    any = true;
                }
            }
            if !any {
                continue; // a keep-alive comment
            }
            let end = ev.event == "end";
            events.push(ev);
            if end {
                return events;
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

const OUTPUT_CONFIG: &str = r#"version: 2.1
jobs:
  build:
    machine: true
    steps:
      - run:
          name: Bytes
          command: |
            printf 'first line\nbyte \377 here\n'
            printf 'no newline at the end'
      - run:
          name: More
          command: |
            for i in 1 2 3; do printf 'line %s\n' "$i"; sleep 0.2; done
            printf 'last\n' >&2
workflows:
  main:
    jobs: [build]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn output_raw_v1_and_live() {
    let (s, _repo) = with_project(OUTPUT_CONFIG).await;
    let p = s.trigger(SLUG, json!({})).await;
    // Watch live from the start.
    let live = s
        .request(
            "get",
            &format!("/api/v2/project/{SLUG}/job/1/output/stream"),
            Who::Admin,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert!(
        live.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = read_sse(live).await;
    let wf = s.workflows(&id(&p), 1).await.remove(0);
    let wf = s.wait_workflow(&id(&wf), &["success", "failed"]).await;
    assert_eq!(wf["status"], "success");

    // The raw output.
    let raw = s.get(&format!("/api/v2/project/{SLUG}/job/1/output")).await;
    raw.expect(200);
    assert_eq!(raw.content_type, "application/octet-stream");
    let raw = raw.bytes;
    assert!(
        find(&raw, b"first line\nbyte \xff here\nno newline at the end").is_some(),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(find(&raw, b"line 1\nline 2\nline 3\nlast\n").is_some());

    // The stream: step events, output that adds up to the raw bytes, the end.
    let last = events.last().unwrap();
    assert_eq!(last.event, "end");
    assert_eq!(
        serde_json::from_str::<Value>(&last.data).unwrap(),
        json!({"status": "success"})
    );
    let mut by_step: BTreeMap<i64, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
    let mut step_names = BTreeMap::new();
    for ev in &events {
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        match ev.event.as_str() {
            "output" => {
                assert_eq!(v["node"], 0);
                let data = orrery_core::protocol::b64::decode(v["data"].as_str().unwrap())
                    .expect("base64");
                by_step
                    .entry(v["step"].as_i64().unwrap())
                    .or_default()
                    .push((v["seq"].as_i64().unwrap(), data));
            }
            "step" => {
                step_names.insert(v["index"].as_i64().unwrap(), v["name"].clone());
                assert!(
                    ["running", "success"].contains(&v["status"].as_str().unwrap()),
                    "{v}"
                );
            }
            "end" => {}
            other => panic!("unexpected event {other}: {}", ev.data),
        }
    }
    let mut streamed = Vec::new();
    for chunks in by_step.values() {
        let seqs: Vec<i64> = chunks.iter().map(|c| c.0).collect();
        let expected: Vec<i64> = (0..chunks.len() as i64).collect();
        assert_eq!(seqs, expected, "each step's chunks once, in order");
        for (_, data) in chunks {
            streamed.extend_from_slice(data);
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&streamed),
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(streamed, raw, "the stream adds up to the raw output");
    assert!(step_names.values().any(|n| n == "Bytes"), "{step_names:?}");

    // A stream opened after the end replays everything, then ends.
    let again = s
        .request(
            "get",
            &format!("/api/v2/project/{SLUG}/job/1/output/stream"),
            Who::Admin,
        )
        .send()
        .await
        .unwrap();
    let replay = read_sse(again).await;
    let replayed: Vec<u8> = replay
        .iter()
        .filter(|e| e.event == "output")
        .flat_map(|e| {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            orrery_core::protocol::b64::decode(v["data"].as_str().unwrap()).unwrap()
        })
        .collect();
    assert_eq!(replayed, raw);

    // v1.1: steps with actions, and each action's output as CircleCI's JSON.
    let r = s.get(&format!("/api/v1.1/project/{SLUG}/1")).await;
    r.expect(200);
    let v1 = r.json.clone();
    assert_eq!(v1["build_num"], 1);
    assert_eq!(v1["status"], "success");
    assert_eq!(v1["lifecycle"], "finished");
    assert_eq!(v1["outcome"], "success");
    assert_eq!(v1["username"], "acme");
    assert_eq!(v1["reponame"], "app");
    assert_eq!(v1["branch"], "main");
    assert_eq!(v1["workflows"]["job_name"], "build");
    assert_eq!(v1["workflows"]["workflow_id"], wf["id"]);
    let steps = v1["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert!(names.ends_with(&["Bytes", "More"]), "{names:?}");
    let bytes_step = steps.iter().find(|s| s["name"] == "Bytes").unwrap();
    let action = &bytes_step["actions"][0];
    assert_eq!(action["status"], "success");
    assert_eq!(action["exit_code"], 0);
    assert_eq!(action["index"], 0);
    assert_eq!(action["has_output"], true);
    let step_index = action["step"].as_i64().unwrap();
    let url = action["output_url"].as_str().unwrap();
    assert!(url.starts_with(&s.base), "{url}");
    let r = TestServer::send(s.http.get(url).header("Circle-Token", common::ADMIN_TOKEN)).await;
    r.expect(200);
    let messages = r.json.as_array().unwrap();
    assert_eq!(messages.len(), 1, "{}", r.json);
    assert_eq!(messages[0]["type"], "out");
    assert!(messages[0]["time"].is_string());
    assert_eq!(
        messages[0]["message"],
        "first line\nbyte \u{fffd} here\nno newline at the end"
    );
    // The same step, raw.
    let r = s
        .get(&format!(
            "/api/v2/project/{SLUG}/job/1/output?step={step_index}"
        ))
        .await;
    assert_eq!(
        r.bytes,
        b"first line\nbyte \xff here\nno newline at the end"
    );
    s.get(&format!("/api/v2/project/{SLUG}/job/1/output?node=3"))
        .await
        .expect(404);

    // v1.1 recent builds.
    let r = s.get(&format!("/api/v1.1/project/{SLUG}?limit=5")).await;
    r.expect(200);
    assert_eq!(r.json[0]["build_num"], 1);
    let r = s.get("/api/v1.1/recent-builds?limit=1&offset=0").await;
    r.expect(200);
    assert_eq!(r.json.as_array().unwrap().len(), 1);
    let r = s.get("/api/v1.1/recent-builds?limit=0").await;
    r.expect(400);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelines_are_paginated_newest_first() {
    // No workflow runs on main: pipelines only.
    let config = "version: 2.1\njobs:\n  build:\n    machine: true\n    steps: [{run: 'true'}]\nworkflows:\n  main:\n    jobs:\n      - build:\n          filters: {branches: {only: elsewhere}}\n";
    let s = TestServer::start().await;
    let repo = s.repo("app", config);
    let other = s.repo("lib", config);
    s.create_project(SLUG, &repo, json!({})).await;
    s.create_project("git/other/lib", &other, json!({})).await;
    // Two full pages: the second has no next page.
    const N: i64 = 40;
    for _ in 0..N {
        s.trigger(SLUG, json!({})).await;
    }
    s.trigger("git/other/lib", json!({})).await;

    let walk = |path: String| {
        let s = &s;
        async move {
            let mut numbers = Vec::new();
            let mut ids = HashSet::new();
            let mut token: Option<String> = None;
            let mut pages = 0;
            loop {
                // Tokens are used as a client pastes them, unencoded.
                let sep = if path.contains('?') { '&' } else { '?' };
                let url = match &token {
                    Some(t) => format!("{path}{sep}page-token={t}"),
                    None => path.clone(),
                };
                let r = s.get(&url).await;
                r.expect(200);
                pages += 1;
                let items = r.json["items"].as_array().unwrap().clone();
                assert!(items.len() <= 20);
                for p in &items {
                    assert!(ids.insert(id(p)), "pipeline {} twice", id(p));
                    numbers.push((
                        p["project_slug"].as_str().unwrap().to_string(),
                        p["number"].as_i64().unwrap(),
                    ));
                }
                match r.json["next_page_token"].as_str() {
                    Some(t) => token = Some(t.to_string()),
                    None => break,
                }
                assert!(pages < 10, "pagination ends");
            }
            (numbers, pages)
        }
    };
    let (numbers, pages) = walk(format!("/api/v2/project/{SLUG}/pipeline")).await;
    assert_eq!(pages, 2);
    let expected: Vec<(String, i64)> = (1..=N).rev().map(|n| (SLUG.to_string(), n)).collect();
    assert_eq!(numbers, expected, "all of them, newest first");
    let (numbers, _) = walk(format!("/api/v2/project/{SLUG}/pipeline?branch=main")).await;
    assert_eq!(numbers.len() as i64, N);
    let (numbers, pages) = walk(format!("/api/v2/project/{SLUG}/pipeline?branch=nope")).await;
    assert_eq!((numbers.len(), pages), (0, 1));

    // The organization's pipelines.
    let (numbers, _) = walk("/api/v2/pipeline?org-slug=git/acme".to_string()).await;
    assert_eq!(numbers, expected);
    let (numbers, _) = walk("/api/v2/pipeline?org-slug=git/other".to_string()).await;
    assert_eq!(numbers, [("git/other/lib".to_string(), 1)]);
    let (numbers, _) = walk("/api/v2/pipeline".to_string()).await;
    assert_eq!(numbers.len() as i64, N + 1);
    assert_eq!(numbers[0], ("git/other/lib".to_string(), 1));
    let (numbers, _) = walk("/api/v2/pipeline?org-slug=git/acme&mine=true".to_string()).await;
    assert_eq!(numbers.len() as i64, N);
    let viewer = s.user_token("vic", Role::Viewer).await;
    let r = s
        .call(
            "get",
            "/api/v2/pipeline?org-slug=git/acme&mine=true",
            Who::Token(&viewer),
            None,
        )
        .await;
    r.expect(200);
    assert_eq!(r.json["items"], json!([]));
    assert_eq!(r.json["next_page_token"], Value::Null);
    let r = s
        .get(&format!("/api/v2/project/{SLUG}/pipeline?page-token=%%%"))
        .await;
    r.expect(400);
    r.message();
    s.stop().await;
}

const APPROVAL_CONFIG: &str = "\
version: 2.1
jobs:
  build:
    machine: true
    steps: [{run: echo build}]
  deploy:
    machine: true
    steps: [{run: echo deploy}]
workflows:
  main:
    jobs:
      - build
      - hold: {type: approval, requires: [build]}
      - deploy: {requires: [hold]}
";

#[tokio::test(flavor = "multi_thread")]
async fn approval() {
    let (s, _repo) = with_project(APPROVAL_CONFIG).await;
    let p = s.trigger(SLUG, json!({})).await;
    let wf = s.workflows(&id(&p), 1).await.remove(0);
    let wf_id = id(&wf);
    s.wait_workflow(&wf_id, &["on_hold"]).await;
    let jobs = s.jobs(&wf_id).await;
    let status = |name: &str| {
        jobs.iter()
            .find(|j| j["name"] == name)
            .map(|j| j["status"].clone())
            .unwrap()
    };
    assert_eq!(status("build"), "success");
    assert_eq!(status("hold"), "on_hold");
    assert_eq!(status("deploy"), "blocked");
    let hold = jobs.iter().find(|j| j["name"] == "hold").unwrap();
    assert_eq!(hold["type"], "approval");
    assert_eq!(hold["job_number"], Value::Null, "approvals have no number");
    let build = jobs.iter().find(|j| j["name"] == "build").unwrap();
    assert_eq!(hold["dependencies"], json!([build["id"]]));
    let request = hold["approval_request_id"].as_str().unwrap().to_string();

    let viewer = s.user_token("vik", Role::Viewer).await;
    let path = format!("/api/v2/workflow/{wf_id}/approve/{request}");
    forbidden(
        &s.call("post", &path, Who::Token(&viewer), None).await,
        "a viewer approving",
    );
    assert_eq!(s.job(&wf_id, "hold").await["status"], "on_hold");
    let r = s.call("post", &path, Who::Admin, None).await;
    r.expect(202);
    assert_eq!(r.message(), "Accepted.");
    let wf = s.wait_workflow(&wf_id, &["success", "failed"]).await;
    assert_eq!(wf["status"], "success");
    let hold = s.job(&wf_id, "hold").await;
    assert_eq!(hold["status"], "success");
    assert_eq!(hold["approved_by"], "admin");
    assert_eq!(s.job(&wf_id, "deploy").await["status"], "success");
    // Twice is an error.
    let r = s.call("post", &path, Who::Admin, None).await;
    assert!(
        matches!(r.status, 400 | 409),
        "approving twice: {} {}",
        r.status,
        r.text()
    );
    r.message();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_workflow_and_job() {
    let config = machine_config(
        &[("slow", "sleep 60"), ("after", "echo after")],
        "      - slow\n      - after: {requires: [slow]}\n",
    );
    let (s, _repo) = with_project(&config).await;
    let started = std::time::Instant::now();

    // A workflow.
    let p = s.trigger(SLUG, json!({})).await;
    let wf_id = id(&s.workflows(&id(&p), 1).await[0]);
    s.wait_job(&wf_id, "slow", &["running"]).await;
    let r = s
        .post(&format!("/api/v2/workflow/{wf_id}/rerun"), &json!({}))
        .await;
    r.expect(400);
    r.message();
    let viewer = s.user_token("vlad", Role::Viewer).await;
    let path = format!("/api/v2/workflow/{wf_id}/cancel");
    forbidden(
        &s.call("post", &path, Who::Token(&viewer), None).await,
        "a viewer canceling",
    );
    let r = s.call("post", &path, Who::Admin, None).await;
    r.expect(202);
    let wf = s.wait_workflow(&wf_id, &["canceled"]).await;
    assert_eq!(wf["canceled_by"], "admin");
    assert!(wf["stopped_at"].is_string());
    let slow = s.job(&wf_id, "slow").await;
    assert_eq!(slow["status"], "canceled");
    assert_eq!(slow["canceled_by"], "admin");
    assert_eq!(s.job(&wf_id, "after").await["status"], "not_run");
    // The step was stopped: the task ended, with its output recorded.
    let task_ended = |n: i64| {
        let s = &s;
        async move {
            let r = s.get(&format!("/api/v2/project/{SLUG}/job/{n}")).await;
            let runs = r.json["parallel_runs"].clone();
            (runs[0]["status"] != "running" && runs[0]["status"] != "queued").then_some(runs)
        }
    };
    let runs = poll("the canceled task ends", || task_ended(1)).await;
    assert_eq!(runs[0]["status"], "canceled", "{runs}");
    let r = s.call("post", &path, Who::Admin, None).await;
    r.expect(400);
    r.message();

    // One job.
    let p = s.trigger(SLUG, json!({})).await;
    let wf_id = id(&s.workflows(&id(&p), 1).await[0]);
    let slow = s.wait_job(&wf_id, "slow", &["running"]).await;
    let n = slow["job_number"].as_i64().unwrap();
    let path = format!("/api/v2/project/{SLUG}/job/{n}/cancel");
    forbidden(
        &s.call("post", &path, Who::Token(&viewer), None).await,
        "a viewer canceling a job",
    );
    s.call("post", &path, Who::Admin, None).await.expect(202);
    let wf = s
        .wait_workflow(&wf_id, &["canceled", "failed", "not_run", "success"])
        .await;
    circleci_status(WORKFLOW_STATUSES, &wf["status"]);
    let slow = s.job(&wf_id, "slow").await;
    assert_eq!(slow["status"], "canceled");
    assert_eq!(slow["canceled_by"], "admin");
    let after = s.job(&wf_id, "after").await;
    assert_eq!(after["status"], "not_run", "what requires it does not run");
    poll("the canceled job's task ends", || task_ended(n)).await;
    s.call("post", &path, Who::Admin, None).await.expect(400);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(40),
        "cancel stops `sleep 60`"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rerun_from_failed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // b fails the first time and passes the second; every run is counted.
    let config = format!(
        "version: 2.1
jobs:
  a:
    machine: true
    steps: [{{run: 'echo a >> {d}/runs'}}]
  b:
    machine: true
    steps:
      - run: |
          echo b >> {d}/runs
          if [ -f {d}/fixed ]; then exit 0; fi
          touch {d}/fixed
          echo failing on purpose
          exit 3
  c:
    machine: true
    steps: [{{run: 'echo c >> {d}/runs'}}]
workflows:
  main:
    jobs:
      - a
      - b: {{requires: [a]}}
      - c: {{requires: [b]}}
"
    );
    let (s, _repo) = with_project(&config).await;
    let p = s.trigger(SLUG, json!({})).await;
    let wf = s.workflows(&id(&p), 1).await.remove(0);
    let wf_id = id(&wf);
    let wf = s.wait_workflow(&wf_id, &["failed", "success"]).await;
    assert_eq!(wf["status"], "failed");
    let jobs = s.jobs(&wf_id).await;
    let by: BTreeMap<String, Value> = jobs
        .iter()
        .map(|j| (j["name"].as_str().unwrap().to_string(), j.clone()))
        .collect();
    assert_eq!(by["a"]["status"], "success");
    assert_eq!(by["b"]["status"], "failed");
    assert!(
        ["not_run", "blocked"].contains(&by["c"]["status"].as_str().unwrap()),
        "{}",
        by["c"]
    );
    let b_number = by["b"]["job_number"].as_i64().unwrap();
    // The failed step in v1.1.
    let r = s.get(&format!("/api/v1.1/project/{SLUG}/{b_number}")).await;
    assert_eq!(r.json["status"], "failed");
    assert_eq!(r.json["outcome"], "failed");
    let last = r.json["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actions"][0]["exit_code"], 3);
    assert_eq!(last["actions"][0]["status"], "failed");
    assert_eq!(last["actions"][0]["failed"], true);
    let r = s
        .get(&format!("/api/v2/project/{SLUG}/job/{b_number}"))
        .await;
    assert_eq!(r.json["status"], "failed");
    assert_eq!(r.json["parallel_runs"][0]["status"], "failed");

    // Refusals first.
    let path = format!("/api/v2/workflow/{wf_id}/rerun");
    let viewer = s.user_token("vi", Role::Viewer).await;
    forbidden(
        &s.call(
            "post",
            &path,
            Who::Token(&viewer),
            Some(&json!({"from_failed": true})),
        )
        .await,
        "a viewer rerunning",
    );
    for body in [
        json!({"enable_ssh": true}),
        json!({"from_failed": true, "jobs": [by["b"]["id"]]}),
        json!({"jobs": ["0f0f0f0f-1111-4222-8333-444444444444"]}),
    ] {
        let r = s.post(&path, &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        r.message();
    }

    let r = s.post(&path, &json!({"from_failed": true})).await;
    r.expect(202);
    let new_id = r.json["workflow_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, wf_id);
    let new = s.wait_workflow(&new_id, &["success", "failed"]).await;
    assert_eq!(new["status"], "success", "{new}");
    assert_eq!(new["rerun_of"], wf_id.as_str());
    assert_eq!(new["pipeline_id"], id(&p).as_str());
    assert_eq!(new["name"], "main");
    // a was not run again; b and c ran.
    let runs = std::fs::read_to_string(dir.path().join("runs")).unwrap();
    assert_eq!(runs, "a\nb\nb\nc\n");
    let jobs = s.jobs(&new_id).await;
    let status: BTreeMap<&str, &str> = jobs
        .iter()
        .map(|j| (j["name"].as_str().unwrap(), j["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        status,
        BTreeMap::from([("a", "success"), ("b", "success"), ("c", "success")])
    );
    // The pipeline shows both workflows; the first keeps its result.
    let wfs = s.workflows(&id(&p), 2).await;
    assert_eq!(wfs.len(), 2);
    let r = s.get(&format!("/api/v2/workflow/{wf_id}")).await;
    assert_eq!(r.json["status"], "failed");

    // A finished workflow reruns from the start too.
    let r = s
        .post(&format!("/api/v2/workflow/{new_id}/rerun"), &json!({}))
        .await;
    r.expect(202);
    let third = r.json["workflow_id"].as_str().unwrap().to_string();
    let wf = s.wait_workflow(&third, &["success", "failed"]).await;
    assert_eq!(wf["status"], "success");
    assert_eq!(wf["rerun_of"], new_id.as_str());
    let runs = std::fs::read_to_string(dir.path().join("runs")).unwrap();
    assert_eq!(runs, "a\nb\nb\nc\na\nb\nc\n");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let config = format!(
        "version: 2.1
jobs:
  build:
    machine: true
    steps:
      - run: printf '%s' \"$DEPLOY_KEY\" > {d}/seen
      - run: echo \"the key is $DEPLOY_KEY\"
workflows:
  main:
    jobs: [build]
"
    );
    let (s, _repo) = with_project(&config).await;
    let clear = "s3cr3t-d3pl0y-value-9876";
    let mut seen: Vec<Resp> = Vec::new();

    let path = format!("/api/v2/project/{SLUG}/envvar");
    let r = s
        .post(&path, &json!({"name": "DEPLOY_KEY", "value": clear}))
        .await;
    r.expect(201);
    assert_eq!(r.json["name"], "DEPLOY_KEY");
    assert_eq!(r.json["value"], "xxxx9876");
    seen.push(r);
    let r = s
        .post(&path, &json!({"name": "SHORT", "value": "abc"}))
        .await;
    r.expect(201);
    assert_eq!(
        r.json["value"], "xxxx",
        "short values show nothing of themselves"
    );
    seen.push(r);
    let r = s.get(&path).await;
    r.expect(200);
    let mut names: Vec<(&str, &str)> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["value"].as_str().unwrap()))
        .collect();
    names.sort();
    assert_eq!(names, [("DEPLOY_KEY", "xxxx9876"), ("SHORT", "xxxx")]);
    seen.push(r);
    let r = s.get(&format!("{path}/DEPLOY_KEY")).await;
    r.expect(200);
    assert_eq!(r.json["value"], "xxxx9876");
    assert!(r.json["created_at"].is_string());
    seen.push(r);

    // Bad names and values.
    for body in [
        json!({"name": "1ABC", "value": "x"}),
        json!({"name": "A-B", "value": "x"}),
        json!({"name": "", "value": "x"}),
        json!({"name": "A B", "value": "x"}),
        json!({"name": "A", "value": "x".repeat(200 * 1024)}),
        json!({"name": "A"}),
    ] {
        let r = s.post(&path, &body).await;
        assert_eq!(r.status, 400, "{}", r.text());
        r.message();
    }

    // The value reaches the job, and is masked in its output.
    let (p, wf) = s.run(SLUG, json!({})).await;
    assert_eq!(wf["status"], "success");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("seen")).unwrap(),
        clear
    );
    for path in [
        format!("/api/v2/project/{SLUG}/job/1/output"),
        format!("/api/v2/project/{SLUG}/job/1"),
        format!("/api/v1.1/project/{SLUG}/1"),
        format!("/api/v2/pipeline/{}", id(&p)),
        format!("/api/v2/pipeline/{}/config", id(&p)),
        format!("/api/v2/workflow/{}/job", id(&wf)),
        "/api/v1.1/recent-builds".to_string(),
    ] {
        let r = s.get(&path).await;
        r.expect(200);
        seen.push(r);
    }
    let output = s.get(&format!("/api/v2/project/{SLUG}/job/1/output")).await;
    assert!(
        output.text().contains("the key is ********\n"),
        "masked in the output: {}",
        output.text()
    );
    let live = s
        .request(
            "get",
            &format!("/api/v2/project/{SLUG}/job/1/output/stream"),
            Who::Admin,
        )
        .send()
        .await
        .unwrap();
    let events = read_sse(live).await;
    let streamed: Vec<u8> = events
        .iter()
        .filter(|e| e.event == "output")
        .flat_map(|e| {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            orrery_core::protocol::b64::decode(v["data"].as_str().unwrap()).unwrap()
        })
        .collect();
    assert!(find(&streamed, clear.as_bytes()).is_none());

    // Viewers read masked values but change nothing.
    let viewer = s.user_token("vee", Role::Viewer).await;
    let r = s.call("get", &path, Who::Token(&viewer), None).await;
    r.expect(200);
    seen.push(r);
    forbidden(
        &s.call(
            "post",
            &path,
            Who::Token(&viewer),
            Some(&json!({"name": "X", "value": "y"})),
        )
        .await,
        "a viewer creating a variable",
    );
    forbidden(
        &s.call(
            "delete",
            &format!("{path}/SHORT"),
            Who::Token(&viewer),
            None,
        )
        .await,
        "a viewer deleting a variable",
    );

    // Replace, delete.
    let r = s
        .post(
            &path,
            &json!({"name": "SHORT", "value": "replaced-value-4321"}),
        )
        .await;
    r.expect(201);
    assert_eq!(r.json["value"], "xxxx4321");
    let r = s
        .call("delete", &format!("{path}/SHORT"), Who::Admin, None)
        .await;
    r.expect(200);
    r.message();
    s.get(&format!("{path}/SHORT")).await.expect(404);
    s.call("delete", &format!("{path}/SHORT"), Who::Admin, None)
        .await
        .expect(404);

    for r in &seen {
        assert!(
            find(&r.bytes, clear.as_bytes()).is_none(),
            "the clear value in an answer: {}",
            r.text()
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn compile_config_with_defaults() {
    let s = TestServer::start().await;
    let path = "/api/v2/compile-config-with-defaults";
    let r = s
        .post(
            path,
            &json!({
                "config_yaml": PARAMS_CONFIG,
                "pipeline_parameters": {"greeting": "hej"},
                "pipeline_values": {"pipeline.git.branch": "feature"},
            }),
        )
        .await;
    r.expect(200);
    assert_eq!(r.json["valid"], true, "{}", r.json);
    assert_eq!(r.json["errors"], json!([]));
    assert_eq!(r.json["source_yaml"], PARAMS_CONFIG);
    let out = r.json["output_yaml"].as_str().unwrap();
    assert!(out.contains("hej x1 loud=false on feature"), "{out}");
    assert!(out.contains("build"), "{out}");

    let invalid = "version: 2.1\njobs:\n  build:\n    machine: true\n    steps: [checkout]\nworkflows:\n  main:\n    jobs: [build, missing]\n";
    let r = s.post(path, &json!({"config_yaml": invalid})).await;
    r.expect(200);
    assert_eq!(r.json["valid"], false);
    assert_eq!(r.json["output_yaml"], "");
    let errors = r.json["errors"].as_array().unwrap();
    assert!(!errors.is_empty());
    assert!(
        errors
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("missing")),
        "{errors:?}"
    );
    let r = s.post(path, &json!({"config_yaml": "{{{ not yaml"})).await;
    r.expect(200);
    assert_eq!(r.json["valid"], false);
    let r = s
        .post(
            path,
            &json!({"config_yaml": PARAMS_CONFIG, "pipeline_parameters": {"nope": 1}}),
        )
        .await;
    r.expect(200);
    assert_eq!(r.json["valid"], false);
    for body in [
        json!({}),
        json!({"config_yaml": PARAMS_CONFIG, "pipeline_parameters": [1]}),
        json!({"config_yaml": PARAMS_CONFIG, "pipeline_parameters": {"x": 1.5}}),
    ] {
        let r = s.post(path, &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        r.message();
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_and_continue() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let setup = format!(
        "version: 2.1
setup: true
jobs:
  generate:
    machine: true
    steps:
      - run: printf '%s' \"$CIRCLE_CONTINUATION_KEY\" > {d}/key
workflows:
  setup:
    jobs: [generate]
"
    );
    let continuation = "version: 2.1
parameters:
  who:
    type: string
    default: nobody
jobs:
  continued:
    machine: true
    steps:
      - run: echo \"continued for << pipeline.parameters.who >>\"
workflows:
  next:
    jobs: [continued]
";
    let (s, _repo) = with_project(&setup).await;
    let p = s.trigger(SLUG, json!({})).await;
    let pid = id(&p);
    let r = s.get(&format!("/api/v2/pipeline/{pid}")).await;
    assert_eq!(r.json["state"], "setup");
    let setup_wf = s.workflows(&pid, 1).await.remove(0);
    let setup_wf = s
        .wait_workflow(&id(&setup_wf), &["success", "failed"])
        .await;
    assert_eq!(setup_wf["status"], "success");
    assert_eq!(setup_wf["tag"], "setup");
    let key = std::fs::read_to_string(dir.path().join("key")).unwrap();
    assert!(key.len() >= 32, "a continuation key: {key:?}");
    // The key is not shown by the API.
    for path in [
        format!("/api/v2/pipeline/{pid}"),
        format!("/api/v2/project/{SLUG}/job/1"),
        format!("/api/v2/project/{SLUG}/job/1/output"),
        format!("/api/v1.1/project/{SLUG}/1"),
        format!("/api/v1.1/project/{SLUG}/1/output/1/0"),
    ] {
        assert!(!s.get(&path).await.text().contains(&key), "{path}");
    }
    // Nor is it in the database in clear (only its hash, and sealed).
    let db = database_bytes(&s);
    assert!(
        !db.windows(key.len()).any(|w| w == key.as_bytes()),
        "the continuation key is in the database in clear"
    );

    // Continue, without an API token. CircleCI answers 200, which the
    // continuation orb checks for (`[ "$(curl -w '%{http_code}' ...)" -eq 200 ]`).
    let r = TestServer::send(s.request("post", "/api/v2/pipeline/continue", Who::Anonymous).json(
        &json!({"continuation-key": key, "configuration": continuation, "parameters": {"who": "you"}}),
    ))
    .await;
    r.expect(200);
    r.message();
    // Once only.
    let r = TestServer::send(
        s.request("post", "/api/v2/pipeline/continue", Who::Anonymous)
            .json(&json!({"continuation-key": key, "configuration": continuation})),
    )
    .await;
    r.expect(400);
    r.message();

    let wfs = s.workflows(&pid, 2).await;
    let next = wfs.iter().find(|w| w["name"] == "next").unwrap();
    let next = s.wait_workflow(&id(next), &["success", "failed"]).await;
    assert_eq!(next["status"], "success");
    let job = s.job(&id(&next), "continued").await;
    let n = job["job_number"].as_i64().unwrap();
    let out = s
        .get(&format!("/api/v2/project/{SLUG}/job/{n}/output"))
        .await;
    assert!(out.text().contains("continued for you\n"), "{}", out.text());
    let r = s.get(&format!("/api/v2/pipeline/{pid}")).await;
    assert_eq!(r.json["state"], "created");
    let r = s.get(&format!("/api/v2/pipeline/{pid}/config")).await;
    assert_eq!(r.json["source"], continuation);
    assert_eq!(r.json["setup-config"], setup.as_str());
    assert!(
        r.json["compiled"]
            .as_str()
            .unwrap()
            .contains("continued for you"),
        "{}",
        r.json
    );

    // The orb's `finish` command ends a setup pipeline with an empty config.
    let p = s.trigger(SLUG, json!({})).await;
    let pid = id(&p);
    let wf = s.workflows(&pid, 1).await.remove(0);
    s.wait_workflow(&id(&wf), &["success"]).await;
    let key = std::fs::read_to_string(dir.path().join("key")).unwrap();
    let r = TestServer::send(s.request("post", "/api/v2/pipeline/continue", Who::Anonymous).json(
        &json!({"continuation-key": key, "configuration": "{version: 2, jobs: {}, workflows: {version: 2}}", "parameters": {}}),
    ))
    .await;
    r.expect(200);
    let r = s.get(&format!("/api/v2/pipeline/{pid}")).await;
    assert_eq!(r.json["state"], "created");
    assert_eq!(r.json["errors"], json!([]));
    let r = s.get(&format!("/api/v2/pipeline/{pid}/workflow")).await;
    assert_eq!(
        r.json["items"].as_array().unwrap().len(),
        1,
        "only the setup workflow"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_config_errors_the_pipeline() {
    let invalid = "version: 2.1\njobs:\n  build:\n    machine: true\n    steps: [checkout]\nworkflows:\n  main:\n    jobs: [build, missing]\n";
    let (s, repo) = with_project(invalid).await;
    let p = s.trigger(SLUG, json!({})).await;
    let r = s.get(&format!("/api/v2/pipeline/{}", id(&p))).await;
    r.expect(200);
    assert_eq!(r.json["state"], "errored");
    let errors = r.json["errors"].as_array().unwrap();
    assert!(!errors.is_empty());
    assert_eq!(errors[0]["type"], "config");
    assert!(
        errors
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("missing")),
        "{errors:?}"
    );
    let r = s
        .get(&format!("/api/v2/pipeline/{}/workflow", id(&p)))
        .await;
    assert_eq!(r.json["items"], json!([]));
    let r = s.get(&format!("/api/v2/pipeline/{}/config", id(&p))).await;
    assert_eq!(r.json["source"], invalid);

    // Without a config at all.
    repo.git(&["rm", "-q", ".circleci/config.yml"]);
    repo.commit(&[], "no config");
    let p = s.trigger(SLUG, json!({})).await;
    let r = s.get(&format!("/api/v2/pipeline/{}", id(&p))).await;
    assert_eq!(r.json["state"], "errored");
    assert_eq!(r.json["errors"][0]["type"], "config-fetch");
    r.json["errors"][0]["message"].as_str().unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn viewers_read_but_do_not_write() {
    let (s, _repo) = with_project(APPROVAL_CONFIG).await;
    let p = s.trigger(SLUG, json!({})).await;
    let pid = id(&p);
    let wf_id = id(&s.workflows(&pid, 1).await[0]);
    s.wait_workflow(&wf_id, &["on_hold"]).await;
    let hold = s.job(&wf_id, "hold").await;
    s.post(
        &format!("/api/v2/project/{SLUG}/envvar"),
        &json!({"name": "V", "value": "value"}),
    )
    .await
    .expect(201);
    let viewer = s.user_token("viola", Role::Viewer).await;
    let v = Who::Token(&viewer);
    for path in [
        "/api/v2/me".to_string(),
        "/api/v2/me/collaborations".to_string(),
        format!("/api/v2/project/{SLUG}"),
        format!("/api/v2/project/{SLUG}/pipeline"),
        format!("/api/v2/project/{SLUG}/pipeline/1"),
        format!("/api/v2/project/{SLUG}/job/1"),
        format!("/api/v2/project/{SLUG}/job/1/output"),
        format!("/api/v2/project/{SLUG}/envvar"),
        format!("/api/v2/project/{SLUG}/envvar/V"),
        "/api/v2/pipeline".to_string(),
        format!("/api/v2/pipeline/{pid}"),
        format!("/api/v2/pipeline/{pid}/config"),
        format!("/api/v2/pipeline/{pid}/workflow"),
        format!("/api/v2/workflow/{wf_id}"),
        format!("/api/v2/workflow/{wf_id}/job"),
        "/api/v1.1/recent-builds".to_string(),
        format!("/api/v1.1/project/{SLUG}"),
        format!("/api/v1.1/project/{SLUG}/1"),
        "/api/v3/runner".to_string(),
        "/api/v3/runner/resource".to_string(),
    ] {
        let r = s.call("get", &path, v, None).await;
        assert_eq!(r.status, 200, "a viewer reading {path}: {}", r.text());
    }
    let r = s
        .call(
            "post",
            "/api/v2/compile-config-with-defaults",
            v,
            Some(&json!({"config_yaml": APPROVAL_CONFIG})),
        )
        .await;
    r.expect(200);
    let writes: Vec<(&str, String, Option<Value>)> = vec![
        (
            "post",
            format!("/api/v2/project/{SLUG}/pipeline"),
            Some(json!({})),
        ),
        ("post", format!("/api/v2/project/{SLUG}/job/1/cancel"), None),
        (
            "post",
            format!("/api/v2/project/{SLUG}/envvar"),
            Some(json!({"name": "W", "value": "w"})),
        ),
        ("delete", format!("/api/v2/project/{SLUG}/envvar/V"), None),
        (
            "post",
            "/api/v2/project/git/acme/new".to_string(),
            Some(json!({"repo_url": "/srv/x"})),
        ),
        ("get", format!("/api/v2/project/{SLUG}/webhook"), None),
        ("post", format!("/api/v2/workflow/{wf_id}/cancel"), None),
        (
            "post",
            format!("/api/v2/workflow/{wf_id}/rerun"),
            Some(json!({})),
        ),
        (
            "post",
            format!(
                "/api/v2/workflow/{wf_id}/approve/{}",
                hold["approval_request_id"].as_str().unwrap()
            ),
            None,
        ),
        (
            "post",
            "/api/v3/runner/resource".to_string(),
            Some(json!({"resource_class": "acme/x"})),
        ),
    ];
    for (method, path, body) in &writes {
        let r = s.call(method, path, v, body.as_ref()).await;
        forbidden(&r, &format!("a viewer: {method} {path}"));
    }
    // Nothing changed.
    assert_eq!(s.job(&wf_id, "hold").await["status"], "on_hold");
    let r = s.get(&format!("/api/v2/project/{SLUG}/pipeline")).await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 1);
    s.get(&format!("/api/v2/project/{SLUG}/envvar/V"))
        .await
        .expect(200);
    // A member may.
    let member = s.user_token("max", Role::Member).await;
    let r = s
        .call(
            "post",
            &format!("/api/v2/project/{SLUG}/pipeline"),
            Who::Token(&member),
            Some(&json!({})),
        )
        .await;
    r.expect(201);
    let r = s.get(&format!("/api/v2/pipeline/{}", id(&r.json))).await;
    assert_eq!(r.json["trigger"]["actor"]["login"], "max");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn statuses_are_circleci_words() {
    // A failing job, one that needs it, an approval and a canceled run: every
    // status the API shows along the way is one of CircleCI's.
    let config = machine_config(
        &[("ok", "true"), ("bad", "exit 1"), ("next", "true")],
        "      - ok\n      - bad\n      - next: {requires: [bad]}\n      - hold: {type: approval, requires: [ok]}\n",
    );
    let (s, _repo) = with_project(&config).await;
    let p = s.trigger(SLUG, json!({})).await;
    let wf_id = id(&s.workflows(&id(&p), 1).await[0]);
    let mut ticker = Ticker::new();
    let mut seen_wf = HashSet::new();
    let mut seen_jobs = HashSet::new();
    loop {
        let r = s.get(&format!("/api/v2/workflow/{wf_id}")).await;
        let status = r.json["status"].as_str().unwrap().to_string();
        seen_wf.insert(status.clone());
        for j in s.jobs(&wf_id).await {
            seen_jobs.insert(j["status"].as_str().unwrap().to_string());
        }
        if s.job(&wf_id, "bad").await["status"] == "failed"
            && s.job(&wf_id, "hold").await["status"] == "on_hold"
        {
            break;
        }
        ticker
            .tick(|| format!("bad fails and hold waits: {seen_wf:?}"))
            .await;
    }
    s.call(
        "post",
        &format!("/api/v2/workflow/{wf_id}/cancel"),
        Who::Admin,
        None,
    )
    .await
    .expect(202);
    let wf = s.wait_workflow(&wf_id, &["canceled", "failed"]).await;
    seen_wf.insert(wf["status"].as_str().unwrap().to_string());
    for j in s.jobs(&wf_id).await {
        seen_jobs.insert(j["status"].as_str().unwrap().to_string());
    }
    for st in &seen_wf {
        circleci_status(WORKFLOW_STATUSES, &json!(st));
    }
    for st in &seen_jobs {
        circleci_status(JOB_STATUSES, &json!(st));
    }
    assert!(seen_jobs.contains("failed") && seen_jobs.contains("success"));
    let r = s.get(&format!("/api/v2/pipeline/{}", id(&p))).await;
    circleci_status(PIPELINE_STATES, &r.json["state"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_runner_protocol() {
    let config = "version: 2.1
setup: true
jobs:
  generate:
    machine: true
    resource_class: acme/remote
    steps: [{run: echo remote}]
workflows:
  setup:
    jobs: [generate]
";
    let (s, repo) = with_project(config).await;
    s.post(
        "/api/v3/runner/resource",
        &json!({"resource_class": "acme/remote", "desc": "far"}),
    )
    .await
    .expect(201);
    let r = s
        .post(
            "/api/v3/runner/token",
            &json!({"resource_class": "acme/remote"}),
        )
        .await;
    r.expect(201);
    let token = r.json["token"].as_str().unwrap().to_string();
    let r = s.get("/api/v3/runner/resource").await;
    assert!(
        r.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["resource_class"] == "acme/remote" && i["desc"] == "far"),
        "{}",
        r.json
    );
    let call = |name: &'static str, path: String, body: Value| {
        let req = s
            .request("post", &path, Who::Anonymous)
            .bearer_auth(&token)
            .header("Orrery-Runner-Name", name)
            .json(&body);
        TestServer::send(req)
    };

    let p = s.trigger(SLUG, json!({})).await;
    let wf_id = id(&s.workflows(&id(&p), 1).await[0]);
    // The embedded runner does not serve this class.
    assert_eq!(s.job(&wf_id, "generate").await["status"], "queued");
    let r = call(
        "far-1",
        "/runner/v1/register".into(),
        json!({"hostname": "far", "version": "9"}),
    )
    .await;
    r.expect(200);
    assert_eq!(r.json["runner_id"], "acme/remote/far-1");
    let r = call("far-1", "/runner/v1/claim".into(), json!({"wait_secs": 5})).await;
    r.expect(200);
    let a = r.json.clone();
    assert_eq!(a["job_name"], "generate");
    assert_eq!(a["node_index"], 0);
    assert_eq!(a["attempt"], 1);
    assert_eq!(a["project_slug"], SLUG);
    assert_eq!(a["checkout"]["url"], repo.url());
    assert_eq!(a["checkout"]["revision"], repo.head());
    assert_eq!(a["builtin_env"]["CIRCLE_BRANCH"], "main");
    // The continuation key is a secret: not among the values printed in clear.
    assert!(
        a["builtin_env"].get("CIRCLE_CONTINUATION_KEY").is_none(),
        "{a}"
    );
    let secret = a["context_env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kv| kv[0] == "CIRCLE_CONTINUATION_KEY")
        .map(|kv| kv[1].as_str().unwrap().to_string())
        .expect("the key is passed as a secret");
    assert!(secret.len() >= 32);
    s.wait_job(&wf_id, "generate", &["running"]).await;
    let task = a["task_id"].as_str().unwrap().to_string();
    let r = s.get("/api/v3/runner?resource-class=acme/remote").await;
    assert_eq!(r.json["items"][0]["hostname"], "far");

    let r = call(
        "far-1",
        format!("/runner/v1/tasks/{task}/heartbeat"),
        json!({}),
    )
    .await;
    r.expect(200);
    assert_eq!(r.json, json!({"cancel": false, "lost": false}));
    // Another runner of the class does not hold it.
    let r = call(
        "far-2",
        format!("/runner/v1/tasks/{task}/heartbeat"),
        json!({}),
    )
    .await;
    assert_eq!(r.json["lost"], true);
    let r = call(
        "far-2",
        format!("/runner/v1/tasks/{task}/events"),
        json!([]),
    )
    .await;
    r.expect(409);
    r.message();

    let b64 = orrery_core::protocol::b64::encode;
    let now = 1_700_000_000_000i64;
    let events = json!([
        {"type": "step_started", "index": 0, "name": "Spin up environment", "background": false, "at": now},
        {"type": "output", "index": 0, "seq": 0, "data": b64(b"far \xff away\n")},
        {"type": "output", "index": 0, "seq": 1, "data": b64(b"second\n")},
        {"type": "output", "index": 0, "seq": 0, "data": b64(b"far \xff away\n")},
        {"type": "step_finished", "index": 0, "outcome": {"outcome": "success"}, "at": now + 5},
        {"type": "step_started", "index": 2, "name": "echo remote", "background": false, "at": now + 6},
        {"type": "step_finished", "index": 2, "outcome": {"outcome": "exit_code", "code": 0}, "at": now + 9},
    ]);
    let r = call("far-1", format!("/runner/v1/tasks/{task}/events"), events).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let n = s.job(&wf_id, "generate").await["job_number"]
        .as_i64()
        .unwrap();
    let out = s
        .get(&format!("/api/v2/project/{SLUG}/job/{n}/output"))
        .await;
    assert_eq!(
        out.bytes, b"far \xff away\nsecond\n",
        "a resent chunk is kept once"
    );
    let r = call(
        "far-1",
        format!("/runner/v1/tasks/{task}/complete"),
        json!({"status": "success"}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let wf = s.wait_workflow(&wf_id, &["success", "failed"]).await;
    assert_eq!(wf["status"], "success");
    let r = s.get(&format!("/api/v1.1/project/{SLUG}/{n}")).await;
    let steps = r.json["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["actions"][0]["run_time_millis"], 3);
    // After the end: completing again changes nothing; the lease is gone.
    let r = call(
        "far-1",
        format!("/runner/v1/tasks/{task}/complete"),
        json!({"status": "failed"}),
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(s.job(&wf_id, "generate").await["status"], "success");
    let r = call(
        "far-1",
        format!("/runner/v1/tasks/{task}/heartbeat"),
        json!({}),
    )
    .await;
    assert_eq!(r.json["lost"], true);
    // The key works once.
    let r = TestServer::send(s.request("post", "/api/v2/pipeline/continue", Who::Anonymous).json(
        &json!({"continuation-key": secret, "configuration": machine_config(&[("x", "true")], "      - x\n")}),
    ))
    .await;
    r.expect(200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_does_not_keep_the_server_from_stopping() {
    // No runner: the job stays queued and its stream stays open.
    let s = TestServer::start_with(|c| c.embedded_slots = 0).await;
    let repo = s.repo(
        "app",
        &machine_config(&[("build", "true")], "      - build\n"),
    );
    s.create_project(SLUG, &repo, json!({})).await;
    s.trigger(SLUG, json!({})).await;
    let live = s
        .request(
            "get",
            &format!("/api/v2/project/{SLUG}/job/1/output/stream"),
            Who::Admin,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let mut body = live.bytes_stream();
    let started = std::time::Instant::now();
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), s.stop()).await;
    assert!(stopped.is_ok(), "the server stops with a stream open");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // The watcher sees its stream end.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends when the server stops");
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_nodes() {
    let config = "version: 2.1
jobs:
  build:
    machine: true
    parallelism: 2
    steps:
      - run:
          name: Which
          command: printf 'node %s of %s\\n' \"$CIRCLE_NODE_INDEX\" \"$CIRCLE_NODE_TOTAL\"
workflows:
  main:
    jobs: [build]
";
    let (s, _repo) = with_project(config).await;
    let (_, wf) = s.run(SLUG, json!({})).await;
    assert_eq!(wf["status"], "success");
    let r = s.get(&format!("/api/v2/project/{SLUG}/job/1")).await;
    assert_eq!(r.json["parallelism"], 2);
    assert_eq!(
        r.json["parallel_runs"],
        json!([{"index": 0, "status": "success"}, {"index": 1, "status": "success"}])
    );
    for node in 0..2 {
        let out = s
            .get(&format!("/api/v2/project/{SLUG}/job/1/output?node={node}"))
            .await;
        out.expect(200);
        assert!(
            out.text().contains(&format!("node {node} of 2\n")),
            "{}",
            out.text()
        );
        assert!(!out.text().contains(&format!("node {} of 2", 1 - node)));
    }
    let r = s.get(&format!("/api/v1.1/project/{SLUG}/1")).await;
    assert_eq!(r.json["parallel"], 2);
    let which = r.json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["name"] == "Which")
        .unwrap()
        .clone();
    let actions = which["actions"].as_array().unwrap();
    let mut nodes: Vec<i64> = actions
        .iter()
        .map(|a| a["index"].as_i64().unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, [0, 1]);
    for a in actions {
        let node = a["index"].as_i64().unwrap();
        let r = TestServer::send(
            s.http
                .get(a["output_url"].as_str().unwrap())
                .header("Circle-Token", common::ADMIN_TOKEN),
        )
        .await;
        assert_eq!(r.json[0]["message"], format!("node {node} of 2\n"));
    }
    // The stream carries both nodes.
    let live = s
        .request(
            "get",
            &format!("/api/v2/project/{SLUG}/job/1/output/stream"),
            Who::Admin,
        )
        .send()
        .await
        .unwrap();
    let events = read_sse(live).await;
    let mut per_node: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.event == "output") {
        let v: Value = serde_json::from_str(&e.data).unwrap();
        per_node
            .entry(v["node"].as_i64().unwrap())
            .or_default()
            .extend(orrery_core::protocol::b64::decode(v["data"].as_str().unwrap()).unwrap());
    }
    for node in 0..2 {
        let raw = s
            .get(&format!("/api/v2/project/{SLUG}/job/1/output?node={node}"))
            .await;
        assert_eq!(per_node[&node], raw.bytes, "node {node}");
    }
    s.stop().await;
}
