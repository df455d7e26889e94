//! The job page of the web app over HTTP: steps with their output (ANSI
//! colours as spans, text escaped), the raw output route (exact bytes), the
//! live output for a session (no gap, nothing twice with the raw output up
//! to its `marks`), parallel runs as tabs, test results (failures first,
//! with their messages) and artifacts (downloaded through the session),
//! cancel by role, bad input, and a page that stays small whatever the
//! output's size.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, TestServer};
use futures_util::StreamExt;
use orrery_store::Role;
use serde_json::{Value, json};

const SLUG: &str = "git/acme/app";

use common::browser::{Browser, form_post};

/// The admin and a viewer, signed in.
async fn two_browsers(s: &TestServer) -> (Browser, Browser) {
    let mut admin = Browser::new(s);
    assert_eq!(admin.sign_in("admin", ADMIN_TOKEN).await.status, 303);
    let token = s.user_token("vera", Role::Viewer).await;
    let mut viewer = Browser::new(s);
    assert_eq!(viewer.sign_in("vera", &token).await.status, 303);
    (admin, viewer)
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// A job's page path.
fn job_path(slug: &str, pipeline: &Value, wf: &Value, job: &Value) -> String {
    format!(
        "/pipelines/{slug}/{}/workflows/{}/jobs/{}",
        pipeline["number"],
        id(wf),
        job["job_number"]
    )
}

/// The `data-index` of the step named `name` on a page.
fn step_index(body: &str, name: &str) -> i64 {
    let at = body
        .find(&format!("data-name=\"{name}\""))
        .unwrap_or_else(|| panic!("step {name} in {body}"));
    let rest = &body[at..];
    let at = rest.find("data-index=\"").unwrap() + 12;
    let end = rest[at..].find('"').unwrap();
    rest[at..at + end].parse().unwrap()
}

fn count(body: &str, part: &str) -> usize {
    body.matches(part).count()
}

const COLOURS: &str = r#"version: 2.1
jobs:
  build:
    machine: true
    steps:
      - run:
          name: colours
          command: |
            printf '\033[31mred\033[0m <script>alert(1)</script> & \033[1;44mbold on blue\033[0m\n'
            printf 'no newline at the end'
workflows:
  main:
    jobs: [build]
"#;

const COLOUR_BYTES: &[u8] = b"\x1b[31mred\x1b[0m <script>alert(1)</script> & \x1b[1;44mbold on blue\x1b[0m\nno newline at the end";

#[tokio::test(flavor = "multi_thread")]
async fn steps_output_colours_and_raw_bytes() {
    let s = TestServer::start().await;
    let (mut admin, mut viewer) = two_browsers(&s).await;
    let repo = s.repo("app", COLOURS);
    s.create_project(SLUG, &repo, json!({})).await;
    let (p, wf) = s.run(SLUG, json!({})).await;
    assert_eq!(wf["status"], "success", "{wf}");
    let job = s.job(&id(&wf), "build").await;
    let path = job_path(SLUG, &p, &wf, &job);

    let page = admin.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let b = &page.body;
    for part in [
        "data-testid=\"step\"",
        "data-name=\"colours\"",
        "data-status=\"success\"",
        "data-testid=\"tab-steps\" aria-current=\"page\"",
        "data-testid=\"tab-tests\"",
        "data-testid=\"tab-artifacts\"",
        "data-testid=\"raw-log\"",
        "data-testid=\"step-output\"",
        "<span class=\"f31\">red</span>",
        "<span class=\"a-b b44\">bold on blue</span>",
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; ",
        "no newline at the end",
        "Executor <code>machine</code>",
        "Attempt 1",
    ] {
        assert!(b.contains(part), "{part} in {b}");
    }
    assert!(!b.contains("<script>alert"), "escaped: {b}");
    assert!(!b.contains("data-testid=\"node-tab\""), "one node, no tabs");
    // Ended: no cancel button, for anyone.
    assert!(!b.contains("data-testid=\"cancel-job\""));
    // Links back to the workflow and the pipeline.
    assert!(b.contains(&format!("href=\"/pipelines/{SLUG}/{}#wf-", p["number"])));

    // The raw output: the exact bytes, as text, for a session only.
    let job_id = id(&job);
    let step = step_index(b, "colours");
    let raw = format!("/app/jobs/{job_id}/output?node=0&step={step}");
    assert!(b.contains(&raw.replace('&', "&amp;")), "{b}");
    let r = viewer.get(&raw).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes, COLOUR_BYTES);
    assert!(
        r.content_type.starts_with("text/plain"),
        "{}",
        r.content_type
    );
    let r = viewer.get(&format!("{raw}&until=0")).await;
    assert_eq!((r.status, r.bytes.len()), (200, 0));
    // All steps of the node, the colours among them.
    let r = viewer.get(&format!("/app/jobs/{job_id}/output")).await;
    assert!(
        r.bytes
            .windows(COLOUR_BYTES.len())
            .any(|w| w == COLOUR_BYTES),
        "{}",
        r.body
    );
    let r = Browser::new(&s).get(&raw).await;
    assert_eq!(r.status, 303, "signed out");
    assert_eq!(r.location.as_deref(), Some("/signin"));
    // Bad values.
    for (bad, status) in [
        (format!("/app/jobs/{job_id}/output?node=x"), 400),
        (format!("/app/jobs/{job_id}/output?node=-1"), 400),
        (format!("/app/jobs/{job_id}/output?step=x"), 400),
        (format!("/app/jobs/{job_id}/output?step=99"), 404),
        (format!("/app/jobs/{job_id}/output?node=3"), 404),
        (format!("/app/jobs/{job_id}/output?until=no"), 400),
        ("/app/jobs/nope/output".to_string(), 404),
        (
            "/app/jobs/00000000-0000-0000-0000-000000000000/output".to_string(),
            404,
        ),
    ] {
        let r = admin.get(&bad).await;
        assert_eq!(r.status, status, "{bad}: {}", r.body);
        assert!(r.body.contains("<html"), "{bad}: an error page");
    }

    // The tabs work as links; bad tabs and nodes are refused.
    let page = admin.get(&format!("{path}?tab=tests")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("data-testid=\"no-tests\""));
    assert!(
        page.body
            .contains("data-testid=\"tab-tests\" aria-current=\"page\"")
    );
    let page = admin.get(&format!("{path}?tab=artifacts")).await;
    assert!(page.body.contains("data-testid=\"no-artifacts\""));
    for (q, status) in [
        ("?tab=sideways", 400),
        ("?node=x", 400),
        ("?node=1", 404),
        ("?node=-1", 400),
        ("?tab=steps&node=%%", 400),
    ] {
        let r = admin.get(&format!("{path}{q}")).await;
        assert_eq!(r.status, status, "{q}: {}", r.body);
    }
    s.stop().await;
}

const SLOW: &str = r#"version: 2.1
jobs:
  build:
    machine: true
    steps:
      - run:
          name: before
          command: printf 'stored before\n'
      - run:
          name: slow
          command: |
            for i in 1 2 3 4 5 6; do printf 'line %s\n' "$i"; sleep 0.3; done
workflows:
  main:
    jobs: [build]
"#;

struct Sse {
    event: String,
    data: Value,
}

async fn read_sse(resp: reqwest::Response) -> Vec<Sse> {
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    loop {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the stream ends in time")
            .expect("the stream goes on until its end event")
            .unwrap();
        buf.extend_from_slice(&chunk);
        while let Some(at) = buf.windows(2).position(|w| w == b"\n\n") {
            let block = String::from_utf8(buf[..at].to_vec()).unwrap();
            buf.drain(..at + 2);
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            let Some(event) = event else { continue };
            let end = event == "end";
            events.push(Sse {
                event,
                data: serde_json::from_str(&data).unwrap(),
            });
            if end {
                return events;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn live_output_for_a_session_continues_the_raw_output() {
    let s = TestServer::start().await;
    let (mut admin, mut viewer) = two_browsers(&s).await;
    let repo = s.repo("app", SLOW);
    s.create_project(SLUG, &repo, json!({})).await;
    let p = s.trigger(SLUG, json!({})).await;
    let wf = s.workflows(&id(&p), 1).await.remove(0);
    s.wait_job(&id(&wf), "build", &["running"]).await;
    let job = s.job(&id(&wf), "build").await;
    let job_id = id(&job);
    // Wait until some output is stored, so the marks are not all zero.
    common::poll("some output is stored", || {
        let url = s.url(&format!(
            "/api/v2/project/{SLUG}/job/{}/output",
            job["job_number"]
        ));
        let http = s.http.clone();
        async move {
            let r = http
                .get(url)
                .header("Circle-Token", ADMIN_TOKEN)
                .send()
                .await
                .ok()?;
            let text = r.text().await.ok()?;
            text.contains("line 1").then_some(())
        }
    })
    .await;

    // While it runs, the page says so, and the admin may cancel.
    let page = admin.get(&job_path(SLUG, &p, &wf, &job)).await;
    assert!(page.body.contains("data-live=\"1\""), "{}", page.body);
    assert!(page.body.contains("data-testid=\"cancel-job\""));
    let vpage = viewer.get(&job_path(SLUG, &p, &wf, &job)).await;
    assert!(!vpage.body.contains("data-testid=\"cancel-job\""));

    let live = format!("/app/jobs/{job_id}/live");
    let r = admin
        .http
        .get(format!("{}{live}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303, "signed out");
    let r = admin
        .http
        .get(format!("{}/app/jobs/nope/live", s.base))
        .header("cookie", viewer.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = admin
        .http
        .get(format!("{}{live}", s.base))
        .header("cookie", viewer.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = read_sse(r).await;
    assert_eq!(events[0].event, "marks");
    assert_eq!(events.last().unwrap().data, json!({"status": "success"}));
    let marks: BTreeMap<i64, i64> = events[0].data["marks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["node"], 0);
            (m["step"].as_i64().unwrap(), m["next"].as_i64().unwrap())
        })
        .collect();
    assert!(!marks.is_empty(), "output was stored before: {marks:?}");
    let mut live_bytes: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    let mut next: BTreeMap<i64, i64> = marks.clone();
    let mut statuses: BTreeMap<i64, String> = BTreeMap::new();
    for e in &events[1..] {
        match e.event.as_str() {
            "output" => {
                let step = e.data["step"].as_i64().unwrap();
                let seq = e.data["seq"].as_i64().unwrap();
                let want = next.entry(step).or_insert(0);
                assert_eq!(seq, *want, "in order, from the mark");
                *want += 1;
                let data =
                    orrery_core::protocol::b64::decode(e.data["data"].as_str().unwrap()).unwrap();
                live_bytes.entry(step).or_default().extend(data);
            }
            "step" => {
                statuses.insert(
                    e.data["index"].as_i64().unwrap(),
                    e.data["status"].as_str().unwrap().to_string(),
                );
            }
            "end" => {}
            other => panic!("unexpected event {other}"),
        }
    }
    assert!(statuses.values().all(|s| s == "success"), "{statuses:?}");
    // The raw output up to each mark, then the live output: the whole.
    let mut seen_slow = false;
    for step in statuses.keys() {
        let whole = viewer
            .get(&format!("/app/jobs/{job_id}/output?step={step}"))
            .await
            .bytes;
        let until = marks.get(step).copied().unwrap_or(0);
        let mut joined = viewer
            .get(&format!(
                "/app/jobs/{job_id}/output?step={step}&until={until}"
            ))
            .await
            .bytes;
        joined.extend(live_bytes.get(step).cloned().unwrap_or_default());
        assert_eq!(
            String::from_utf8_lossy(&joined),
            String::from_utf8_lossy(&whole),
            "step {step}"
        );
        if String::from_utf8_lossy(&whole).contains("line 6") {
            seen_slow = true;
            assert!(
                live_bytes.get(step).is_some_and(|b| !b.is_empty()),
                "some of the slow step came live"
            );
        }
    }
    assert!(seen_slow);

    // Ended: the page is no longer live.
    let page = admin.get(&job_path(SLUG, &p, &wf, &job)).await;
    assert!(!page.body.contains("data-live=\"1\""));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_runs_are_tabs() {
    let s = TestServer::start().await;
    let (mut admin, _) = two_browsers(&s).await;
    let config = "version: 2.1\njobs:\n  build:\n    machine: true\n    parallelism: 2\n    steps:\n      - run:\n          name: say\n          command: echo \"node $CIRCLE_NODE_INDEX\"\nworkflows:\n  main:\n    jobs: [build]\n";
    let repo = s.repo("app", config);
    s.create_project(SLUG, &repo, json!({})).await;
    let (p, wf) = s.run(SLUG, json!({})).await;
    assert_eq!(wf["status"], "success", "{wf}");
    let job = s.job(&id(&wf), "build").await;
    let path = job_path(SLUG, &p, &wf, &job);

    let page = admin.get(&path).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        count(&page.body, "data-testid=\"node-tab\""),
        2,
        "{}",
        page.body
    );
    assert!(page.body.contains("data-node=\"0\" aria-current=\"page\""));
    assert!(page.body.contains("node 0\n"), "{}", page.body);
    let page = admin.get(&format!("{path}?node=1")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("data-node=\"1\" aria-current=\"page\""));
    assert!(page.body.contains("node 1\n"), "{}", page.body);
    // The other tabs keep the node.
    assert!(page.body.contains("?tab=tests&amp;node=1"), "{}", page.body);
    let r = admin.get(&format!("{path}?node=2")).await;
    assert_eq!(r.status, 404);
    // The raw output of each node.
    let r = admin
        .get(&format!("/app/jobs/{}/output?node=1", id(&job)))
        .await;
    assert!(r.body.contains("node 1\n") && !r.body.contains("node 0\n"));
    s.stop().await;
}

const REPORTS: &str = r#"version: 2.1
jobs:
  build:
    machine: true
    steps:
      - run:
          name: make files
          command: |
            mkdir -p out results
            printf 'alpha\n' > out/a.txt
            printf '\000\001\002\377binary' > 'out/b c.bin'
            cat > results/junit.xml <<'EOF'
            <?xml version="1.0" encoding="UTF-8"?>
            <testsuites>
              <testsuite name="unit" tests="3" failures="1" skipped="1">
                <testcase classname="app.math" name="adds" file="tests/math.py" time="0.25"/>
                <testcase classname="app.math" name="divides" file="tests/math.py" time="1.5">
                  <failure message="ZeroDivisionError">division by &lt;zero&gt;</failure>
                </testcase>
                <testcase classname="app.io" name="reads" file="tests/io.py" time="0">
                  <skipped/>
                </testcase>
              </testsuite>
            </testsuites>
            EOF
      - store_artifacts:
          path: out
      - store_test_results:
          path: results
workflows:
  main:
    jobs: [build]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn tests_and_artifacts_tabs() {
    let s = TestServer::start().await;
    let (_, mut viewer) = two_browsers(&s).await;
    let repo = s.repo("app", REPORTS);
    s.create_project(SLUG, &repo, json!({})).await;
    let (p, wf) = s.run(SLUG, json!({})).await;
    assert_eq!(wf["status"], "success", "{wf}");
    let job = s.job(&id(&wf), "build").await;
    let path = job_path(SLUG, &p, &wf, &job);

    let page = viewer.get(&format!("{path}?tab=tests")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let b = &page.body;
    assert!(b.contains("Tests (3)"), "{b}");
    assert_eq!(count(b, "data-testid=\"test-failure\""), 1, "{b}");
    let failure = b.find("data-testid=\"test-failure\"").unwrap();
    let other = b.find("data-testid=\"test\"").expect("the other tests");
    assert!(failure < other, "failures first");
    let item = &b[failure..other];
    assert!(item.contains("divides"), "{item}");
    assert!(item.contains("ZeroDivisionError"), "{item}");
    assert!(item.contains("division by &lt;zero&gt;"), "escaped: {item}");
    assert!(item.contains("<pre"), "{item}");
    assert_eq!(count(b, "data-testid=\"test\""), 2);

    let page = viewer.get(&format!("{path}?tab=artifacts")).await;
    assert_eq!(page.status, 200);
    let b = &page.body;
    assert_eq!(count(b, "data-testid=\"artifact\""), 2, "{b}");
    let job_id = id(&job);
    let a = format!("/app/jobs/{job_id}/artifacts/0/out/a.txt");
    let bc = format!("/app/jobs/{job_id}/artifacts/0/out/b%20c.bin");
    assert!(b.contains(&format!("href=\"{a}\"")), "{b}");
    assert!(b.contains(&format!("href=\"{bc}\"")), "{b}");
    assert!(b.contains("6 B"), "sizes: {b}");

    let r = viewer.get(&a).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes, b"alpha\n");
    assert_eq!(r.content_type, "text/plain; charset=utf-8");
    let r = viewer.get(&bc).await;
    assert_eq!(r.bytes, [&[0u8, 1, 2, 255][..], b"binary"].concat());
    // Signed out, other paths, other nodes, bad nodes.
    let r = Browser::new(&s).get(&a).await;
    assert_eq!(r.status, 303);
    for (bad, status) in [
        (
            format!("/app/jobs/{job_id}/artifacts/0/out%2F..%2Fout/a.txt"),
            404,
        ),
        (
            format!("/app/jobs/{job_id}/artifacts/0/out/%2E%2E%2Fa.txt"),
            404,
        ),
        (format!("/app/jobs/{job_id}/artifacts/0/%2Fout/a.txt"), 404),
        (format!("/app/jobs/{job_id}/artifacts/0/out"), 404),
        (format!("/app/jobs/{job_id}/artifacts/1/out/a.txt"), 404),
        (format!("/app/jobs/{job_id}/artifacts/x/out/a.txt"), 400),
        ("/app/jobs/nope/artifacts/0/out/a.txt".to_string(), 404),
    ] {
        let r = viewer.get(&bad).await;
        assert_eq!(r.status, status, "{bad}: {}", r.body);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_roles_and_cancel() {
    let s = TestServer::start().await;
    let (mut admin, mut viewer) = two_browsers(&s).await;
    let config = "version: 2.1\njobs:\n  build:\n    machine: true\n    steps:\n      - run: sleep 30\nworkflows:\n  main:\n    jobs: [build]\n";
    let repo = s.repo("app", config);
    s.create_project(SLUG, &repo, json!({})).await;
    let other = s.repo("other", COLOURS);
    s.create_project("git/acme/other", &other, json!({})).await;
    let (op, owf) = s.run("git/acme/other", json!({})).await;

    let p = s.trigger(SLUG, json!({})).await;
    let wf = s.workflows(&id(&p), 1).await.remove(0);
    s.wait_job(&id(&wf), "build", &["running"]).await;
    let job = s.job(&id(&wf), "build").await;
    let path = job_path(SLUG, &p, &wf, &job);

    // Unknown jobs, another project's or workflow's job.
    let n = job["job_number"].as_i64().unwrap();
    for bad in [
        format!(
            "/pipelines/{SLUG}/{}/workflows/{}/jobs/999",
            p["number"],
            id(&wf)
        ),
        format!(
            "/pipelines/{SLUG}/{}/workflows/{}/jobs/{n}",
            p["number"],
            id(&owf)
        ),
        format!(
            "/pipelines/git/acme/other/{}/workflows/{}/jobs/{n}",
            op["number"],
            id(&wf)
        ),
        format!("/pipelines/{SLUG}/{}/workflows/nope/jobs/{n}", p["number"]),
        format!("/pipelines/git/acme/none/1/workflows/{}/jobs/{n}", id(&wf)),
    ] {
        let r = admin.get(&bad).await;
        assert_eq!(r.status, 404, "{bad}: {}", r.body);
        assert!(
            r.body.contains("not found") || r.body.contains("Not found"),
            "{bad}"
        );
    }
    let r = admin
        .get(&format!(
            "/pipelines/{SLUG}/{}/workflows/{}/jobs/x",
            p["number"],
            id(&wf)
        ))
        .await;
    assert_eq!(r.status, 400);

    // The viewer sees no cancel button and is refused.
    let vpage = viewer.get(&path).await;
    assert_eq!(vpage.status, 200);
    assert!(!vpage.body.contains("data-testid=\"cancel-job\""));
    let cancel = format!("/app/jobs/{}/cancel", id(&job));
    let vcsrf = Browser::csrf(&vpage);
    let r = viewer.post(&cancel, &[("_csrf", &vcsrf)]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    // Forged posts.
    let page = admin.get(&path).await;
    assert!(page.body.contains("data-testid=\"cancel-job\""));
    let csrf = Browser::csrf(&page);
    assert_eq!(admin.post(&cancel, &[]).await.status, 403);
    assert_eq!(admin.post(&cancel, &[("_csrf", &vcsrf)]).await.status, 403);
    let req = form_post(
        admin
            .http
            .post(format!("{}{cancel}", s.base))
            .header("origin", "https://evil.example"),
        &[("_csrf", &csrf)],
    );
    assert_eq!(admin.send(req).await.status, 403);
    assert_eq!(s.job(&id(&wf), "build").await["status"], "running");
    let r = admin
        .post("/app/jobs/nope/cancel", &[("_csrf", &csrf)])
        .await;
    assert_eq!(r.status, 404);

    // The admin cancels: back to the page, and the job ends.
    let r = admin.post(&cancel, &[("_csrf", &csrf)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some(path.as_str()));
    s.wait_job(&id(&wf), "build", &["canceled"]).await;
    let page = admin.get(&path).await;
    assert!(!page.body.contains("data-testid=\"cancel-job\""));
    assert!(page.body.contains("Canceled by admin"), "{}", page.body);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_output_keeps_the_page_small() {
    let s = TestServer::start().await;
    let (mut admin, _) = two_browsers(&s).await;
    let config = "version: 2.1\njobs:\n  build:\n    machine: true\n    steps:\n      - run:\n          name: lots\n          command: yes 'a line of output, long enough <to> count' | head -c 20000000 || true\nworkflows:\n  main:\n    jobs: [build]\n";
    let repo = s.repo("app", config);
    s.create_project(SLUG, &repo, json!({})).await;
    let (p, wf) = s.run(SLUG, json!({})).await;
    assert_eq!(wf["status"], "success", "{wf}");
    let job = s.job(&id(&wf), "build").await;
    let path = job_path(SLUG, &p, &wf, &job);

    let started = Instant::now();
    let page = admin.get(&path).await;
    let took = started.elapsed();
    assert_eq!(page.status, 200);
    assert!(
        page.bytes.len() < 200 * 1024,
        "the page is {} bytes",
        page.bytes.len()
    );
    assert!(took < Duration::from_secs(2), "the page took {took:?}");
    assert!(page.body.contains("data-testid=\"output-cut\""));
    assert!(page.body.contains("long enough &lt;to&gt; count\n"));

    // The raw output is all there, streamed.
    let step = step_index(&page.body, "lots");
    let r = admin
        .http
        .get(format!(
            "{}/app/jobs/{}/output?step={step}",
            s.base,
            id(&job)
        ))
        .header("cookie", admin.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let (mut total, mut pieces) = (0usize, 0usize);
    while let Some(chunk) = body.next().await {
        total += chunk.unwrap().len();
        pieces += 1;
    }
    assert_eq!(total, 20_000_000);
    assert!(pieces > 1, "streamed in pieces");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_output_keeps_when_each_chunk_arrived() {
    let s = TestServer::start().await;
    let (mut admin, _) = two_browsers(&s).await;
    let config = "version: 2.1\njobs:\n  build:\n    machine: true\n    steps:\n      - run:\n          name: slowly\n          command: |\n            echo one\n            sleep 1\n            echo two\nworkflows:\n  main:\n    jobs: [build]\n";
    let repo = s.repo("app", config);
    s.create_project(SLUG, &repo, json!({})).await;
    let before = orrery_store::now_ms();
    let (p, wf) = s.run(SLUG, json!({})).await;
    let after = orrery_store::now_ms();
    assert_eq!(wf["status"], "success", "{wf}");
    let job = s.job(&id(&wf), "build").await;
    let page = admin.get(&job_path(SLUG, &p, &wf, &job)).await;
    let step = step_index(&page.body, "slowly");
    let job_id = id(&job);

    let raw = admin
        .get(&format!("/app/jobs/{job_id}/output?node=0&step={step}"))
        .await;
    assert_eq!(raw.bytes, b"one\ntwo\n");
    let r = admin
        .get(&format!(
            "/app/jobs/{job_id}/output/times?node=0&step={step}"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let chunks: Value = serde_json::from_str(&r.body).unwrap();
    let chunks = chunks["chunks"].as_array().unwrap().clone();
    assert!(!chunks.is_empty(), "{chunks:?}");
    // Offsets start at 0 and rise within the output; times are when the
    // job ran, in order.
    assert_eq!(chunks[0][0], 0);
    let mut last = (-1i64, 0i64);
    for c in &chunks {
        let (offset, at) = (c[0].as_i64().unwrap(), c[1].as_i64().unwrap());
        assert!(
            offset > last.0 && offset < raw.bytes.len() as i64,
            "{chunks:?}"
        );
        assert!(at >= before && at <= after && at >= last.1, "{chunks:?}");
        last = (offset, at);
    }
    // Two lines a second apart arrive in two chunks (output is sent every
    // 200 ms).
    assert!(chunks.len() >= 2, "{chunks:?}");
    let (first, second) = (
        chunks[0][1].as_i64().unwrap(),
        chunks[1][1].as_i64().unwrap(),
    );
    assert!(second - first >= 600, "{chunks:?}");

    // Bad input.
    for (q, status) in [
        ("node=0", 400),
        ("node=0&step=x", 400),
        ("node=9&step=0", 404),
        ("node=-1&step=0", 400),
    ] {
        let r = admin
            .get(&format!("/app/jobs/{job_id}/output/times?{q}"))
            .await;
        assert_eq!(r.status, status, "{q}: {}", r.body);
    }
    let r = admin.get("/app/jobs/nope/output/times?step=0").await;
    assert_eq!(r.status, 404);
    let mut signed_out = Browser::new(&s);
    let r = signed_out
        .get(&format!("/app/jobs/{job_id}/output/times?step={step}"))
        .await;
    assert_eq!(r.status, 303);
    s.stop().await;
}
