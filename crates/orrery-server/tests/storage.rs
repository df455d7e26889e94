//! Task storage through the API, with jobs on the embedded runner: artifacts
//! (a file and a directory) listed in v2 and v1.1 and downloaded byte-exact,
//! JUnit test results, flaky tests and test metrics from a rerun, workflow
//! and job insights, storage usage, the retention sweeper (what expires goes,
//! a running workflow's workspace and a recently used cache stay), and the
//! same artifacts on S3 (moto), streamed from the bucket.

mod common;

use std::time::Duration;

use common::{TestServer, Who};
use orrery_server::retention::{self, Retention};
use orrery_store::now_ms;
use serde_json::{Value, json};

const SLUG: &str = "git/acme/app";
const DAY_MS: i64 = 24 * 3600 * 1000;

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

/// A job that stores a file and a directory as artifacts, and JUnit results.
const ARTIFACTS_CONFIG: &str = r#"version: 2.1
jobs:
  build:
    machine: true
    steps:
      - run:
          name: make files
          command: |
            mkdir -p out dist/sub results
            printf '<html><body>report</body></html>\n' > out/report.html
            printf 'alpha\n' > dist/a.txt
            printf '\000\001\002\377binary' > dist/sub/b.bin
            printf 'spaced\n' > 'dist/with space.txt'
            cat > results/junit.xml <<'EOF'
            <?xml version="1.0" encoding="UTF-8"?>
            <testsuites>
              <testsuite name="unit" tests="3" failures="1" skipped="1">
                <testcase classname="app.math" name="adds" file="tests/math.py" time="0.25"/>
                <testcase classname="app.math" name="divides" file="tests/math.py" time="1.5">
                  <failure message="ZeroDivisionError">division by zero</failure>
                </testcase>
                <testcase classname="app.io" name="reads" file="tests/io.py" time="0">
                  <skipped/>
                </testcase>
              </testsuite>
            </testsuites>
            EOF
      - store_artifacts:
          path: out/report.html
      - store_artifacts:
          path: dist
          destination: bundle
      - store_test_results:
          path: results
workflows:
  main:
    jobs: [build]
"#;

/// The artifacts the job above stores: path, bytes, content type.
fn expected_artifacts() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "bundle/a.txt",
            b"alpha\n".to_vec(),
            "text/plain; charset=utf-8",
        ),
        (
            "bundle/sub/b.bin",
            [&[0u8, 1, 2, 255][..], b"binary"].concat(),
            "application/octet-stream",
        ),
        (
            "bundle/with space.txt",
            b"spaced\n".to_vec(),
            "text/plain; charset=utf-8",
        ),
        (
            "out/report.html",
            b"<html><body>report</body></html>\n".to_vec(),
            "text/html; charset=utf-8",
        ),
    ]
}

/// Runs the artifacts job to success; its job number.
async fn run_artifacts_job(s: &TestServer) -> i64 {
    let repo = s.repo("app", ARTIFACTS_CONFIG);
    s.create_project(SLUG, &repo, json!({})).await;
    let (_, wf) = s.run(SLUG, json!({})).await;
    assert_eq!(wf["status"], "success", "{wf}");
    s.job(&id(&wf), "build").await["job_number"]
        .as_i64()
        .unwrap()
}

/// Checks the v2 and v1.1 test results of the artifacts job.
async fn check_test_results(s: &TestServer, number: i64) {
    let r = s
        .get(&format!("/api/v2/project/{SLUG}/{number}/tests"))
        .await;
    r.expect(200);
    assert_eq!(r.json["next_page_token"], Value::Null);
    let items = r.json["items"].as_array().unwrap();
    let brief: Vec<(&str, &str, &str, f64)> = items
        .iter()
        .map(|t| {
            (
                t["classname"].as_str().unwrap(),
                t["name"].as_str().unwrap(),
                t["result"].as_str().unwrap(),
                t["run_time"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        brief,
        [
            ("app.math", "adds", "success", 0.25),
            ("app.math", "divides", "failure", 1.5),
            ("app.io", "reads", "skipped", 0.0),
        ]
    );
    for t in items {
        for field in ["message", "source", "file", "result", "name", "classname"] {
            assert!(t[field].is_string(), "{field} of {t}");
        }
        assert_eq!(t["source"], "junit.xml");
    }
    assert_eq!(items[0]["file"], "tests/math.py");
    assert_eq!(items[0]["message"], "");
    assert!(
        items[1]["message"]
            .as_str()
            .unwrap()
            .contains("ZeroDivisionError"),
        "{}",
        items[1]
    );
    let r = s
        .get(&format!("/api/v1.1/project/{SLUG}/{number}/tests"))
        .await;
    r.expect(200);
    assert_eq!(r.json["exceptions"], json!([]));
    let tests = r.json["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 3);
    assert_eq!(tests[1]["name"], "divides");
    assert_eq!(tests[1]["result"], "failure");
    assert_eq!(tests[1]["file"], "tests/math.py");
    assert_eq!(tests[0]["message"], Value::Null);
    assert_eq!(tests[0]["source_type"], "junit");
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_and_test_results() {
    let s = TestServer::start().await;
    let number = run_artifacts_job(&s).await;

    // v2: every file, in path order, each downloading byte-exact.
    let r = s
        .get(&format!("/api/v2/project/{SLUG}/{number}/artifacts"))
        .await;
    r.expect(200);
    assert_eq!(r.json["next_page_token"], Value::Null);
    let items = r.json["items"].as_array().unwrap().clone();
    let expected = expected_artifacts();
    let paths: Vec<&str> = items.iter().map(|i| i["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        expected.iter().map(|(p, _, _)| *p).collect::<Vec<_>>()
    );
    let mut total = 0;
    for (item, (path, bytes, content_type)) in items.iter().zip(&expected) {
        assert_eq!(item["node_index"], 0);
        let url = item["url"].as_str().unwrap();
        assert!(url.starts_with(&s.base), "{url}");
        let r = TestServer::send(s.http.get(url).header("Circle-Token", common::ADMIN_TOKEN)).await;
        r.expect(200);
        assert_eq!(&r.bytes, bytes, "{path}");
        assert_eq!(r.content_type, *content_type, "{path}");
        total += bytes.len() as i64;
        // The query form of the token works too; no token is refused.
        let r = TestServer::send(
            s.http
                .get(url)
                .query(&[("circle-token", common::ADMIN_TOKEN)]),
        )
        .await;
        assert_eq!(&r.bytes, bytes, "{path} with the token in the query");
        let r = TestServer::send(s.http.get(url)).await;
        r.expect(401);
        r.message();
    }
    assert!(
        items[2]["url"]
            .as_str()
            .unwrap()
            .ends_with("/artifacts/0/bundle/with%20space.txt"),
        "{}",
        items[2]
    );
    // Served HTML cannot act for the API's origin.
    let resp = s
        .http
        .get(items[3]["url"].as_str().unwrap())
        .header("Circle-Token", common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-security-policy"], "sandbox");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    // Unknown artifacts and nodes.
    for path in [
        format!("/api/v2/project/{SLUG}/{number}/artifacts/0/bundle/nope.txt"),
        format!("/api/v2/project/{SLUG}/{number}/artifacts/1/bundle/a.txt"),
        format!("/api/v2/project/{SLUG}/{number}/artifacts/0/bundle"),
    ] {
        let r = s.get(&path).await;
        r.expect(404);
        r.message();
    }

    // v1.1, by number and as the latest job of the branch.
    let r = s
        .get(&format!("/api/v1.1/project/{SLUG}/{number}/artifacts"))
        .await;
    r.expect(200);
    let v1 = r.json.as_array().unwrap().clone();
    assert_eq!(v1.len(), expected.len());
    for (a, item) in v1.iter().zip(&items) {
        assert_eq!(a["path"], item["path"]);
        assert_eq!(a["pretty_path"], item["path"]);
        assert_eq!(a["node_index"], 0);
        assert_eq!(a["url"], item["url"]);
    }
    for query in [
        "",
        "?branch=main",
        "?branch=main&filter=successful",
        "?filter=completed",
    ] {
        let r = s
            .get(&format!("/api/v1.1/project/{SLUG}/latest/artifacts{query}"))
            .await;
        r.expect(200);
        assert_eq!(r.json, Value::Array(v1.clone()), "{query}");
    }
    for query in ["?filter=failed", "?branch=other", "?filter=running"] {
        let r = s
            .get(&format!("/api/v1.1/project/{SLUG}/latest/artifacts{query}"))
            .await;
        r.expect(404);
        r.message();
    }

    check_test_results(&s, number).await;

    // Usage: the artifacts' bytes, and some step output.
    let r = s.get(&format!("/api/v2/project/{SLUG}/storage")).await;
    r.expect(200);
    assert_eq!(r.json["project_slug"], SLUG);
    assert_eq!(r.json["bytes"]["artifacts"], total);
    assert_eq!(r.json["bytes"]["caches"], 0);
    assert_eq!(r.json["bytes"]["workspaces"], 0);
    assert!(
        r.json["bytes"]["output"].as_i64().unwrap() > 0,
        "{}",
        r.json
    );
    assert_eq!(
        r.json["bytes"]["total"],
        total + r.json["bytes"]["output"].as_i64().unwrap()
    );
    assert_eq!(r.json["retention_days"]["artifacts"], 30.0);
    assert_eq!(r.json["retention_days"]["output"], Value::Null);
    let r = s
        .call(
            "get",
            &format!("/api/v2/project/{SLUG}/storage"),
            Who::Anonymous,
            None,
        )
        .await;
    r.expect(401);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn flaky_tests_and_insights() {
    let s = TestServer::start().await;
    let marker = s.dir.path().join("flaky-marker");
    let repo = s.repo("app", &common::flaky_config(&marker.display().to_string()));
    s.create_project(SLUG, &repo, json!({})).await;
    // Nothing is flaky before anything ran.
    let r = s.get(&format!("/api/v2/insights/{SLUG}/flaky-tests")).await;
    r.expect(200);
    assert_eq!(r.json, json!({"flaky_tests": [], "total_flaky_tests": 0}));

    let (p, first) = s.run(SLUG, json!({})).await;
    assert_eq!(first["status"], "failed", "{first}");
    let first_id = id(&first);
    let first_job = s.job(&first_id, "test").await["job_number"]
        .as_i64()
        .unwrap();
    // One failure alone is not flakiness.
    let r = s.get(&format!("/api/v2/insights/{SLUG}/flaky-tests")).await;
    assert_eq!(r.json["total_flaky_tests"], 0, "{}", r.json);

    // The same revision again: `flaky` passes now.
    let r = s
        .post(
            &format!("/api/v2/workflow/{first_id}/rerun"),
            &json!({"from_failed": true}),
        )
        .await;
    r.expect(202);
    let second_id = r.json["workflow_id"].as_str().unwrap().to_string();
    let second = s.wait_workflow(&second_id, &["success", "failed"]).await;
    assert_eq!(second["status"], "success", "{second}");

    let r = s.get(&format!("/api/v2/insights/{SLUG}/flaky-tests")).await;
    r.expect(200);
    assert_eq!(r.json["total_flaky_tests"], 1, "{}", r.json);
    let f = &r.json["flaky_tests"][0];
    assert_eq!(f["test_name"], "flaky");
    assert_eq!(f["classname"], "suite");
    assert_eq!(f["file"], "t/flaky.sh");
    assert_eq!(f["source"], "junit.xml");
    assert_eq!(f["job_name"], "test");
    assert_eq!(f["job_number"], first_job);
    assert_eq!(f["workflow_name"], "main");
    assert_eq!(f["workflow_id"], first_id.as_str());
    assert_eq!(f["pipeline_number"], p["number"]);
    assert_eq!(f["workflow_created_at"], first["created_at"]);
    assert_eq!(f["times_flaked"], 1);
    assert!(f["time_wasted"].as_i64().unwrap() >= 0, "{f}");

    // Test metrics over both runs: `broken` failed most, `slow` is slowest.
    let r = s
        .get(&format!(
            "/api/v2/insights/{SLUG}/workflows/main/test-metrics"
        ))
        .await;
    r.expect(200);
    let m = &r.json;
    assert_eq!(m["total_test_runs"], 2, "{m}");
    assert_eq!(m["average_test_count"], 4);
    let failed: Vec<(&str, i64, i64, bool)> = m["most_failed_tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["test_name"].as_str().unwrap(),
                t["failed_runs"].as_i64().unwrap(),
                t["total_runs"].as_i64().unwrap(),
                t["flaky"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(failed, [("broken", 2, 2, false), ("flaky", 1, 2, true)]);
    assert_eq!(m["most_failed_tests_extra"], 0);
    let slowest = &m["slowest_tests"][0];
    assert_eq!(slowest["test_name"], "slow");
    assert_eq!(slowest["p95_duration"], 2.5);
    assert_eq!(slowest["job_name"], "test");
    assert_eq!(slowest["classname"], "suite");
    assert_eq!(slowest["file"], "t/slow.sh");
    assert_eq!(m["slowest_tests"].as_array().unwrap().len(), 4);
    assert_eq!(m["slowest_tests_extra"], 0);
    let runs = m["test_runs"].as_array().unwrap();
    assert_eq!(runs[0]["workflow_id"], second_id.as_str());
    assert_eq!(runs[0]["pipeline_number"], p["number"]);
    assert_eq!(
        runs[0]["test_counts"],
        json!({"error": 0, "failure": 1, "skipped": 0, "success": 3, "total": 4})
    );
    assert_eq!(runs[0]["success_rate"], 0.75);
    assert_eq!(runs[1]["workflow_id"], first_id.as_str());
    assert_eq!(runs[1]["test_counts"]["failure"], 2);
    assert_eq!(runs[1]["success_rate"], 0.5);
    // Another branch has no runs.
    let r = s
        .get(&format!(
            "/api/v2/insights/{SLUG}/workflows/main/test-metrics?branch=other"
        ))
        .await;
    assert_eq!(r.json["total_test_runs"], 0, "{}", r.json);
    assert_eq!(r.json["most_failed_tests"], json!([]));

    // Workflow and job summaries: one failure, then a recovery.
    let r = s.get(&format!("/api/v2/insights/{SLUG}/workflows")).await;
    r.expect(200);
    let items = r.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", r.json);
    assert_eq!(items[0]["name"], "main");
    let wm = &items[0]["metrics"];
    assert_eq!(wm["total_runs"], 2);
    assert_eq!(wm["successful_runs"], 1);
    assert_eq!(wm["failed_runs"], 1);
    assert_eq!(wm["success_rate"], 0.5);
    assert_eq!(wm["total_recoveries"], 1);
    assert_eq!(wm["total_credits_used"], 0);
    assert_eq!(wm["throughput"], 2.0);
    assert!(wm["mttr"].as_i64().unwrap() >= 0);
    let d = &wm["duration_metrics"];
    assert!(
        d["min"].as_i64().unwrap() <= d["max"].as_i64().unwrap(),
        "{d}"
    );
    assert!(items[0]["window_start"].as_str().unwrap() <= items[0]["window_end"].as_str().unwrap());
    let r = s
        .get(&format!("/api/v2/insights/{SLUG}/workflows?branch=other"))
        .await;
    assert_eq!(r.json["items"], json!([]));
    let r = s
        .get(&format!(
            "/api/v2/insights/{SLUG}/workflows?all-branches=true&reporting-window=last-7-days"
        ))
        .await;
    assert_eq!(r.json["items"][0]["metrics"]["total_runs"], 2);

    let r = s
        .get(&format!("/api/v2/insights/{SLUG}/workflows/main/jobs"))
        .await;
    r.expect(200);
    let jm = &r.json["items"][0];
    assert_eq!(jm["name"], "test");
    assert_eq!(jm["metrics"]["total_runs"], 2);
    assert_eq!(jm["metrics"]["successful_runs"], 1);
    assert_eq!(jm["metrics"]["failed_runs"], 1);
    assert!(jm["metrics"].get("mttr").is_none());

    // Recent runs, newest first.
    let r = s
        .get(&format!("/api/v2/insights/{SLUG}/workflows/main"))
        .await;
    r.expect(200);
    let statuses: Vec<&str> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["success", "failed"]);
    assert_eq!(r.json["items"][0]["id"], second_id.as_str());
    assert_eq!(r.json["items"][0]["branch"], "main");
    let r = s
        .get(&format!("/api/v2/insights/{SLUG}/workflows/main/jobs/test"))
        .await;
    r.expect(200);
    let numbers: Vec<i64> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["job_number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers.len(), 2);
    assert_eq!(numbers[1], first_job);
    // Unknown names.
    for path in [
        format!("/api/v2/insights/{SLUG}/workflows/nope/test-metrics"),
        format!("/api/v2/insights/{SLUG}/workflows/nope/jobs"),
        format!("/api/v2/insights/{SLUG}/workflows/main/jobs/nope"),
    ] {
        let r = s.get(&path).await;
        r.expect(404);
        r.message();
    }
    s.stop().await;
}

/// `save` stores a cache, an artifact, a workspace layer and a test result;
/// `use`, after an approval, attaches the workspace.
const RETENTION_CONFIG: &str = r#"version: 2.1
jobs:
  save:
    machine: true
    steps:
      - run: |
          mkdir -p deps ws results
          echo cached > deps/lib.txt
          echo shared > ws/data.txt
          echo report > report.txt
          echo '<testsuite><testcase classname="c" name="n"/></testsuite>' > results/r.xml
      - save_cache:
          key: deps-v1
          paths: [deps]
      - store_artifacts:
          path: report.txt
      - persist_to_workspace:
          root: ws
          paths: [data.txt]
      - store_test_results:
          path: results
  use:
    machine: true
    steps:
      - attach_workspace:
          at: got
      - run: test "$(cat got/data.txt)" = shared
workflows:
  main:
    jobs:
      - save
      - hold: {type: approval, requires: [save]}
      - use: {requires: [hold]}
"#;

fn zero_days() -> Retention {
    Retention {
        artifacts: Some(Duration::ZERO),
        workspaces: Some(Duration::ZERO),
        caches: Some(Duration::ZERO),
        test_results: Some(Duration::ZERO),
        output: Some(Duration::ZERO),
        ..Retention::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_removes_what_expired_and_keeps_what_runs_use() {
    let s = TestServer::start_with(|c| {
        c.retention.artifacts = Some(retention::days(7.0));
        // The tests sweep; the background sweeper stays out of the way.
        c.retention.sweep_every = Duration::from_secs(3600);
    })
    .await;
    let state = &s.server.state;
    let repo = s.repo("app", RETENTION_CONFIG);
    let project = s.create_project(SLUG, &repo, json!({})).await;
    let project_id = project["id"].as_str().unwrap();
    let p = s.trigger(SLUG, json!({})).await;
    let wf = s.workflows(&id(&p), 1).await.remove(0);
    let wf_id = id(&wf);
    s.wait_workflow(&wf_id, &["on_hold", "failed"]).await;
    let save = s.job(&wf_id, "save").await;
    assert_eq!(save["status"], "success", "{save}");
    let number = save["job_number"].as_i64().unwrap();

    let usage = s.get(&format!("/api/v2/project/{SLUG}/storage")).await;
    let bytes = &usage.json["bytes"];
    for kind in ["artifacts", "caches", "workspaces", "output"] {
        assert!(bytes[kind].as_i64().unwrap() > 0, "{kind}: {bytes}");
    }
    assert_eq!(usage.json["retention_days"]["artifacts"], 7.0);
    let cache = state
        .store
        .cache(project_id, "deps-v1")
        .await
        .unwrap()
        .expect("the cache was saved");
    let workspace = state
        .store
        .workflow(&wf_id)
        .await
        .unwrap()
        .unwrap()
        .workspace_id;
    let layers = state.store.layers_of_workspace(&workspace).await.unwrap();
    assert_eq!(layers.len(), 1);
    let artifact_url = s
        .get(&format!("/api/v2/project/{SLUG}/{number}/artifacts"))
        .await
        .json["items"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();

    // Nothing has expired yet under CircleCI's periods.
    let swept = retention::sweep(state, &Retention::default(), now_ms())
        .await
        .unwrap();
    assert!(swept.is_empty(), "{swept:?}");

    // With every period at 0 days: artifacts, test results and output go;
    // the cache just saved stays (a job may be restoring it), and so does
    // the workspace of the workflow on hold.
    let swept = retention::sweep(state, &zero_days(), now_ms())
        .await
        .unwrap();
    assert_eq!(swept.artifacts, 1, "{swept:?}");
    assert_eq!(swept.test_results, 1, "{swept:?}");
    assert_eq!(swept.output_tasks, 1, "{swept:?}");
    assert_eq!((swept.caches, swept.workspaces), (0, 0), "{swept:?}");
    let r = s
        .get(&format!("/api/v2/project/{SLUG}/{number}/artifacts"))
        .await;
    assert_eq!(r.json["items"], json!([]));
    s.get(&artifact_url.replace(&s.base, "")).await.expect(404);
    let r = s
        .get(&format!("/api/v2/project/{SLUG}/{number}/tests"))
        .await;
    assert_eq!(r.json["items"], json!([]));
    let usage = s.get(&format!("/api/v2/project/{SLUG}/storage")).await;
    assert_eq!(usage.json["bytes"]["artifacts"], 0);
    assert_eq!(usage.json["bytes"]["output"], 0);
    assert!(usage.json["bytes"]["caches"].as_i64().unwrap() > 0);

    // Sixteen days later: the cache is unused past its 15 days and goes,
    // object and row; the workflow is still on hold, so its workspace stays.
    let later = now_ms() + 16 * DAY_MS;
    let swept = retention::sweep(state, &Retention::default(), later)
        .await
        .unwrap();
    assert_eq!(swept.caches, 1, "{swept:?}");
    assert_eq!(swept.cache_bytes, cache.size as u64);
    assert_eq!(swept.workspaces, 0, "{swept:?}");
    assert_eq!(
        state.store.cache(project_id, "deps-v1").await.unwrap(),
        None
    );
    assert_eq!(state.blobs.size(&cache.object).await.unwrap(), None);
    assert_eq!(
        state.store.layers_of_workspace(&workspace).await.unwrap(),
        layers
    );
    assert!(state.blobs.size(&layers[0].object).await.unwrap().is_some());

    // The workflow goes on and attaches the workspace it kept.
    let hold = s.job(&wf_id, "hold").await;
    s.post(
        &format!(
            "/api/v2/workflow/{wf_id}/approve/{}",
            hold["approval_request_id"].as_str().unwrap()
        ),
        &json!({}),
    )
    .await
    .expect(202);
    let done = s.wait_workflow(&wf_id, &["success", "failed"]).await;
    assert_eq!(done["status"], "success", "{done}");

    // Ended now, its workspace expires 15 days later.
    let swept = retention::sweep(state, &Retention::default(), now_ms())
        .await
        .unwrap();
    assert_eq!(swept.workspaces, 0, "{swept:?}");
    let swept = retention::sweep(state, &Retention::default(), later)
        .await
        .unwrap();
    assert_eq!(swept.workspaces, 1, "{swept:?}");
    assert_eq!(swept.workspace_layers, 1, "{swept:?}");
    assert!(
        state
            .store
            .layers_of_workspace(&workspace)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(state.blobs.size(&layers[0].object).await.unwrap(), None);
    let usage = s.get(&format!("/api/v2/project/{SLUG}/storage")).await;
    for kind in ["artifacts", "caches", "workspaces"] {
        assert_eq!(usage.json["bytes"][kind], 0, "{kind}: {}", usage.json);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_on_s3_are_served_from_the_bucket() {
    let s3 = orrery_blob::testing::S3Server::start();
    s3.create_bucket("orrery");
    let options = s3.options();
    let s = TestServer::start_with(move |c| {
        c.blob_url = Some("s3://orrery/ci".into());
        c.blob_options = options;
    })
    .await;
    assert!(s.server.state.blobs.can_sign());
    let number = run_artifacts_job(&s).await;
    let r = s
        .get(&format!("/api/v2/project/{SLUG}/{number}/artifacts"))
        .await;
    r.expect(200);
    let items = r.json["items"].as_array().unwrap().clone();
    let expected = expected_artifacts();
    assert_eq!(items.len(), expected.len());
    let direct = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (item, (path, bytes, _)) in items.iter().zip(&expected) {
        assert_eq!(item["path"], *path);
        // Streamed through the server (no redirect: the token header would
        // follow it to the object store), from the bucket.
        let resp = direct
            .get(item["url"].as_str().unwrap())
            .header("Circle-Token", common::ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        assert_eq!(
            resp.bytes().await.unwrap().as_ref(),
            bytes.as_slice(),
            "{path}"
        );
        // Without a token there is nothing.
        let r = TestServer::send(s.http.get(item["url"].as_str().unwrap())).await;
        r.expect(401);
    }
    check_test_results(&s, number).await;
    let r = s.get(&format!("/api/v2/project/{SLUG}/storage")).await;
    let total: usize = expected.iter().map(|(_, b, _)| b.len()).sum();
    assert_eq!(r.json["bytes"]["artifacts"], total as i64);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_no_row_names_are_removed_once_a_day_old() {
    let s = TestServer::start_with(|c| c.retention.sweep_every = Duration::from_secs(3600)).await;
    let state = &s.server.state;
    let repo = s.repo("app", RETENTION_CONFIG);
    s.create_project(SLUG, &repo, json!({})).await;
    let p = s.trigger(SLUG, json!({})).await;
    let wf = s.workflows(&id(&p), 1).await.remove(0);
    s.wait_workflow(&id(&wf), &["on_hold", "failed"]).await;
    let named = state.store.referenced_objects().await.unwrap();
    assert!(
        named.len() >= 3,
        "a cache, a workspace layer, artifacts: {named:?}"
    );

    // Uploads whose rows were never written (the server stopped between).
    let strays = [
        "caches/p/stray",
        "workspaces/w/job/stray",
        "artifacts/j/0/stray",
    ];
    for key in strays {
        state
            .blobs
            .put_bytes(key, b"left over".to_vec())
            .await
            .unwrap();
    }
    // Young: kept (an upload may be about to write its row).
    assert_eq!(retention::sweep_orphans(state, now_ms()).await.unwrap(), 0);
    for key in strays {
        assert_eq!(state.blobs.size(key).await.unwrap(), Some(9), "{key}");
    }
    // A day and more later: the strays go, every named object stays.
    let later = now_ms() + 2 * 24 * 3600 * 1000;
    assert_eq!(retention::sweep_orphans(state, later).await.unwrap(), 3);
    for key in strays {
        assert_eq!(state.blobs.size(key).await.unwrap(), None, "{key}");
    }
    for object in &named {
        assert!(
            state.blobs.size(object).await.unwrap().is_some(),
            "{object} was kept"
        );
    }
    assert_eq!(retention::sweep_orphans(state, later).await.unwrap(), 0);
    s.stop().await;
}
