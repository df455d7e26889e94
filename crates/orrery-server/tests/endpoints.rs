//! A walk over every endpoint the OpenAPI list names: each is routed (never
//! the "no such endpoint" fallback), its authorization holds (no or a wrong
//! credential is 401), unknown ids are 404, and bad bodies (malformed JSON,
//! wrong field types, too large) are 4xx, all with CircleCI's
//! `{"message": ...}` and never a 500. The list, the OpenAPI document and the
//! router's source cannot drift apart.

mod common;

use std::collections::BTreeSet;

use common::{Resp, TestServer, Who};
use orrery_server::api::MAX_BODY;
use orrery_server::api::openapi::{Access, ENDPOINTS, openapi_path};
use serde_json::{Value, json};

const FALLBACK: &str = "Not found: no such endpoint.";

const CONFIG: &str = "\
version: 2.1
jobs:
  build:
    machine: true
    steps:
      - run: echo built
  deploy:
    machine: true
    steps:
      - run: echo deployed
workflows:
  main:
    jobs:
      - build
      - hold: {type: approval, requires: [build]}
      - deploy: {requires: [hold]}
";

/// Real values for a path's parameters.
struct Known {
    project_id: String,
    pipeline_id: String,
    workflow_id: String,
    approval_id: String,
}

/// The path with its `{params}` replaced: `unknown` names the one parameter
/// to replace with a value that names nothing.
fn fill(template: &str, known: &Known, unknown: Option<&str>) -> String {
    let random = "0f0f0f0f-1111-4222-8333-444444444444";
    template
        .split('/')
        .map(|seg| {
            let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
                return seg.to_string();
            };
            let missing = unknown == Some(name);
            match name {
                "vcs" => "git".into(),
                "org" => "acme".into(),
                "repo" if missing => "no-such-repo".into(),
                "repo" => "app".into(),
                "number" if missing => "4242".into(),
                "number" => "1".into(),
                "name" if missing => "NO_SUCH_VAR".into(),
                "name" => "FOO".into(),
                "step" if missing => "77".into(),
                "step" => "0".into(),
                "node" if missing => "9".into(),
                "node" => "0".into(),
                "job" if missing => "no-such-job".into(),
                "job" => "build".into(),
                "index" if missing => "99".into(),
                "index" => "0".into(),
                "*path" if missing => "no/such/file.txt".into(),
                "*path" => "reports/index.html".into(),
                "workflow_name" if missing => "no-such-workflow".into(),
                "workflow_name" => "main".into(),
                "job_name" if missing => "no-such-job".into(),
                "job_name" => "build".into(),
                "provider" if missing => "svn".into(),
                "provider" => "github".into(),
                "request_id" if missing => random.into(),
                "request_id" => known.approval_id.clone(),
                "project_id" if missing => random.into(),
                "project_id" => known.project_id.clone(),
                "id" if missing => random.into(),
                "id" if template.starts_with("/api/v2/pipeline/") => known.pipeline_id.clone(),
                "id" if template.starts_with("/api/v2/workflow/") => known.workflow_id.clone(),
                "id" => random.into(),
                other => panic!("no value for path parameter {other} of {template}"),
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn params(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// A valid body for the endpoints that take one (so only the thing under
/// test is wrong), and a body with a field of the wrong type.
fn bodies(method: &str, template: &str) -> Option<(Value, Value)> {
    let pair = match (method, template) {
        ("post", "/api/v2/project/{vcs}/{org}/{repo}") => (
            json!({"repo_url": "/srv/git/app.git"}),
            json!({"repo_url": 5}),
        ),
        ("post", "/api/v2/project/{vcs}/{org}/{repo}/pipeline") => {
            (json!({"branch": "main"}), json!({"branch": 5}))
        }
        ("post", "/api/v2/project/{vcs}/{org}/{repo}/envvar") => (
            json!({"name": "BAR", "value": "x"}),
            json!({"name": "BAR", "value": 5}),
        ),
        ("post", "/api/v2/pipeline/continue") => (
            json!({"continuation-key": "k", "configuration": "version: 2.1"}),
            json!({"continuation-key": 5, "configuration": "version: 2.1"}),
        ),
        ("post", "/api/v2/workflow/{id}/rerun") => {
            (json!({"from_failed": false}), json!({"from_failed": "yes"}))
        }
        ("post", "/api/v2/compile-config-with-defaults") => {
            (json!({"config_yaml": CONFIG}), json!({"config_yaml": 5}))
        }
        ("post", "/api/v3/runner/resource") => (
            json!({"resource_class": "acme/other"}),
            json!({"resource_class": 5}),
        ),
        ("post", "/api/v3/runner/token") => (
            json!({"resource_class": "acme/test"}),
            json!({"resource_class": ["acme/test"]}),
        ),
        ("post", "/runner/v1/register") => (
            json!({"hostname": "h", "version": "1"}),
            json!({"hostname": 5, "version": "1"}),
        ),
        ("post", "/runner/v1/claim") => (json!({"wait_secs": 0}), json!({"wait_secs": "x"})),
        ("post", "/runner/v1/tasks/{id}/events") => (json!([]), json!({"type": "output"})),
        ("post", "/runner/v1/tasks/{id}/test-results") => (json!([]), json!({"x": 1})),
        ("post", "/runner/v1/tasks/{id}/complete") => {
            (json!({"status": "success"}), json!({"status": 5}))
        }
        _ => return None,
    };
    Some(pair)
}

/// Asserts an error answer: the status and a `{"message"}` body.
#[track_caller]
fn error(r: &Resp, status: u16, what: &str) -> String {
    assert_eq!(
        r.status,
        status,
        "{what}: expected {status}, got {} {}",
        r.status,
        r.text()
    );
    let m = r.message();
    assert_ne!(m, FALLBACK, "{what}: answered by the fallback");
    m
}

struct World {
    s: TestServer,
    known: Known,
    runner_token: String,
}

async fn world() -> World {
    let s = TestServer::start().await;
    let repo = s.repo("app", CONFIG);
    let project = s.create_project("git/acme/app", &repo, json!({})).await;
    let p = s.trigger("git/acme/app", json!({})).await;
    let pipeline_id = p["id"].as_str().unwrap().to_string();
    let wf = s.workflows(&pipeline_id, 1).await.remove(0);
    let workflow_id = wf["id"].as_str().unwrap().to_string();
    s.wait_workflow(&workflow_id, &["on_hold"]).await;
    let hold = s.job(&workflow_id, "hold").await;
    s.post(
        "/api/v2/project/git/acme/app/envvar",
        &json!({"name": "FOO", "value": "foo-value"}),
    )
    .await
    .expect(201);
    // A runner token of a class of its own, so that claims in the walk never
    // take the embedded runner's tasks.
    s.post(
        "/api/v3/runner/resource",
        &json!({"resource_class": "acme/test"}),
    )
    .await
    .expect(201);
    let t = s
        .post(
            "/api/v3/runner/token",
            &json!({"resource_class": "acme/test"}),
        )
        .await;
    t.expect(201);
    World {
        known: Known {
            project_id: project["id"].as_str().unwrap().to_string(),
            pipeline_id,
            workflow_id,
            approval_id: hold["approval_request_id"].as_str().unwrap().to_string(),
        },
        runner_token: t.json["token"].as_str().unwrap().to_string(),
        s,
    }
}

/// A request with the endpoint's own kind of credential, right or wrong.
fn credentialed(
    w: &World,
    method: &str,
    path: &str,
    access: Access,
    right: bool,
) -> reqwest::RequestBuilder {
    let req = w.s.request(method, path, Who::Anonymous);
    match (access, right) {
        (Access::Token, true) => req.header("Circle-Token", common::ADMIN_TOKEN),
        (Access::Token, false) => req.header("Circle-Token", "not-a-token-of-this-server"),
        (Access::Runner, true) => req
            .bearer_auth(&w.runner_token)
            .header("Orrery-Runner-Name", "walker"),
        (Access::Runner, false) => req
            .bearer_auth("not-a-runner-token")
            .header("Orrery-Runner-Name", "walker"),
        _ => req,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_is_routed_and_guarded() {
    let w = world().await;
    let s = &w.s;
    for &(method, template, access, _) in ENDPOINTS {
        let path = fill(template, &w.known, None);
        let what = format!("{} {template}", method.to_uppercase());
        // Without credentials.
        let r = TestServer::send(s.request(method, &path, Who::Anonymous)).await;
        assert_ne!(r.status, 405, "{what}: not routed for this method");
        assert!(r.status < 500, "{what}: {} {}", r.status, r.text());
        if r.status == 404 {
            assert_ne!(r.message(), FALLBACK, "{what}: not routed");
        }
        match access {
            Access::Token | Access::Runner => {
                error(&r, 401, &format!("{what} without a token"));
                let r = TestServer::send(credentialed(&w, method, &path, access, false)).await;
                error(&r, 401, &format!("{what} with a wrong token"));
            }
            Access::Signature => {
                let r = TestServer::send(
                    s.request(method, &path, Who::Anonymous)
                        .header("X-GitHub-Event", "push")
                        .header("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)))
                        .body("{}"),
                )
                .await;
                error(&r, 401, &format!("{what} with a bad signature"));
                error(
                    &TestServer::send(
                        s.request(method, &path, Who::Anonymous)
                            .header("X-GitHub-Event", "push")
                            .body("{}"),
                    )
                    .await,
                    401,
                    &format!("{what} without a signature"),
                );
            }
            Access::ContinuationKey => {
                let r = TestServer::send(s.request(method, &path, Who::Anonymous).json(&json!({
                    "continuation-key": "not-a-key", "configuration": CONFIG
                })))
                .await;
                error(&r, 400, &format!("{what} with an unknown key"));
            }
            Access::Public => {
                assert_eq!(r.status, 200, "{what}: {}", r.text());
            }
        }
    }
    w.s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_forms_and_wrong_tokens() {
    let w = world().await;
    let s = &w.s;
    let me = |req: reqwest::RequestBuilder| async { TestServer::send(req).await };
    let url = s.url("/api/v2/me");
    // Every documented way of passing the token works...
    for req in [
        s.http.get(&url).header("Circle-Token", common::ADMIN_TOKEN),
        s.http
            .get(format!("{url}?circle-token={}", common::ADMIN_TOKEN)),
        s.http.get(&url).basic_auth(common::ADMIN_TOKEN, Some("")),
        s.http.get(&url).bearer_auth(common::ADMIN_TOKEN),
    ] {
        let r = me(req).await;
        r.expect(200);
        assert_eq!(r.json["login"], "admin");
    }
    // A token with characters a URL escapes works in the query too.
    let odd = "odd+token/with=chars&more 123";
    let user = s
        .server
        .state
        .store
        .create_user("odd", "Odd", orrery_store::Role::Member)
        .await
        .unwrap();
    s.server
        .state
        .store
        .create_token(&user.id, &orrery_server::secrets::hash_token(odd), "t")
        .await
        .unwrap();
    let r = me(s.http.get(&url).query(&[("circle-token", odd)])).await;
    r.expect(200);
    assert_eq!(r.json["login"], "odd");
    let r = me(s.http.get(&url).header("Circle-Token", odd)).await;
    assert_eq!(r.json["login"], "odd");
    // ... and a wrong one in each place is refused.
    for req in [
        s.http.get(&url).header("Circle-Token", ""),
        s.http
            .get(&url)
            .header("Circle-Token", "wrong-token-wrong-token"),
        s.http.get(format!("{url}?circle-token=wrong")),
        s.http.get(format!("{url}?circle-token=")),
        s.http.get(&url).basic_auth("wrong", Some("")),
        s.http
            .get(&url)
            .header("Authorization", "Basic !!!not-base64"),
        s.http.get(&url).bearer_auth("wrong"),
        s.http.get(&url).header("Authorization", "Token whatever"),
    ] {
        error(&me(req).await, 401, "a wrong token");
    }
    w.s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_ids_are_404() {
    let w = world().await;
    let s = &w.s;
    for &(method, template, access, _) in ENDPOINTS {
        // Creating a project names a new one; it is not a lookup.
        if (method, template) == ("post", "/api/v2/project/{vcs}/{org}/{repo}") {
            continue;
        }
        for param in params(template) {
            if matches!(param, "vcs" | "org") {
                continue;
            }
            let path = fill(template, &w.known, Some(param));
            let what = format!("{} {path} (unknown {param})", method.to_uppercase());
            let mut req = credentialed(&w, method, &path, access, true);
            if let Some((valid, _)) = bodies(method, template) {
                req = req.json(&valid);
            }
            if access == Access::Signature {
                req = req
                    .header("X-GitHub-Event", "push")
                    .header("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)))
                    .body("{}");
            }
            let r = TestServer::send(req).await;
            error(&r, 404, &what);
        }
    }
    // Ids that are not even of the right form are unknown too; numbers that
    // are not numbers are a bad request.
    for path in [
        "/api/v2/pipeline/not-a-uuid",
        "/api/v2/pipeline/not-a-uuid/config",
        "/api/v2/workflow/not-a-uuid/job",
        "/api/v2/project/nope/acme/app",
        "/api/v2/project/git/nobody/app/pipeline",
    ] {
        error(&s.get(path).await, 404, path);
    }
    for path in [
        "/api/v1.1/recent-builds?offset=9223372036854775807",
        "/api/v1.1/recent-builds?limit=100&offset=9223372036854775800",
        "/api/v1.1/recent-builds?limit=abc",
        "/api/v1.1/project/git/acme/app?offset=-1",
        "/api/v2/pipeline?mine=maybe",
        "/api/v2/project/git/acme/app/pipeline?page-token=!!",
        "/api/v2/project/git/acme/app/job/1/output?node=x",
        "/api/v2/project/git/acme/app/job/1/output?step=1.5",
        "/api/v2/project/git/acme/app/pipeline/abc",
        "/api/v2/project/git/acme/app/job/-1",
        "/api/v2/project/git/acme/app/job/0",
        "/api/v1.1/project/git/acme/app/1/output/x/0",
        "/api/v2/project/git/acme/app/1/artifacts/x/a.txt",
        "/api/v2/project/git/acme/app/1/artifacts/-1/a.txt",
        "/api/v2/project/git/acme/app/0/artifacts",
        "/api/v2/project/git/acme/app/1/tests?page-token=!!",
        "/api/v1.1/project/git/acme/app/latest/artifacts?filter=sometimes",
        "/api/v2/insights/git/acme/app/workflows?reporting-window=last-year",
        "/api/v2/insights/git/acme/app/workflows?branch=main&all-branches=true",
        "/api/v2/insights/git/acme/app/workflows/main/jobs/build?start-date=yesterday",
        "/api/v2/insights/git/acme/app/workflows/main/test-metrics?all-branches=maybe",
    ] {
        error(&s.get(path).await, 400, path);
    }
    // Another endpoint's id is not this one's.
    let wrong = format!("/api/v2/workflow/{}", w.known.pipeline_id);
    error(&s.get(&wrong).await, 404, &wrong);
    let r = s
        .post(
            &format!(
                "/api/v2/workflow/{}/approve/{}",
                w.known.workflow_id, w.known.workflow_id
            ),
            &json!({}),
        )
        .await;
    error(&r, 404, "approving a request id that is not an approval");
    // Unrouted paths and methods answer in the same shape.
    let r = s.get("/api/v2/no/such/thing").await;
    r.expect(404);
    assert_eq!(r.message(), FALLBACK);
    let r = s.call("delete", "/api/v2/me", Who::Admin, None).await;
    error(&r, 405, "DELETE /api/v2/me");
    w.s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bodies_are_4xx() {
    let w = world().await;
    let s = &w.s;
    let mut checked = 0;
    let huge = {
        let mut b = b"{\"x\": \"".to_vec();
        b.resize(MAX_BODY + 16, b'a');
        b.extend_from_slice(b"\"}");
        b
    };
    for &(method, template, access, _) in ENDPOINTS {
        let Some((_, wrong_type)) = bodies(method, template) else {
            continue;
        };
        checked += 1;
        let path = fill(template, &w.known, None);
        let what = format!("{} {path}", method.to_uppercase());
        let send = |body: Vec<u8>| {
            credentialed(&w, method, &path, access, true)
                .header("content-type", "application/json")
                .body(body)
        };
        let r = TestServer::send(send(b"{\"oops\": ".to_vec())).await;
        error(&r, 400, &format!("{what} with malformed JSON"));
        let r = TestServer::send(send(b"[1, 2".to_vec())).await;
        error(&r, 400, &format!("{what} with truncated JSON"));
        let r = TestServer::send(send(serde_json::to_vec(&wrong_type).unwrap())).await;
        error(&r, 400, &format!("{what} with {wrong_type}"));
        // Test results have a limit of their own.
        let huge = if template.ends_with("/test-results") {
            let mut b = huge.clone();
            b.resize(orrery_server::api::storage::MAX_TEST_RESULTS + 16, b' ');
            b
        } else {
            huge.clone()
        };
        let r = TestServer::send(send(huge.clone())).await;
        error(&r, 413, &format!("{what} with {} bytes", huge.len()));
    }
    assert_eq!(checked, 13, "every endpoint with a JSON body was checked");

    // Without a Content-Length (chunked), the limit holds the same way.
    let hook = fill("/hooks/{provider}/{project_id}", &w.known, None);
    // Webhooks take up to the providers' cap (GitHub's 25 MB).
    let hook_huge = {
        let mut b = huge.clone();
        b.resize(orrery_server::api::hooks::MAX_HOOK_BODY + 16, b' ');
        b
    };
    for (path, who, body) in [
        (
            "/api/v2/compile-config-with-defaults".to_string(),
            Who::Admin,
            &huge,
        ),
        (
            "/api/v2/project/git/acme/app/pipeline".to_string(),
            Who::Admin,
            &huge,
        ),
        (hook.clone(), Who::Anonymous, &hook_huge),
    ] {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
        let r = TestServer::send(
            s.request("post", &path, who)
                .header("content-type", "application/json")
                .header("X-GitHub-Event", "push")
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                ))),
        )
        .await;
        error(&r, 413, &format!("{path}, chunked"));
    }

    // Webhooks: too large, and a signed body that is not JSON.
    let r = TestServer::send(
        s.request("post", &hook, Who::Anonymous)
            .header("X-GitHub-Event", "push")
            .header("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)))
            .body(hook_huge.clone()),
    )
    .await;
    error(&r, 413, "a webhook over the limit");
    let secret = s.get("/api/v2/project/git/acme/app/webhook").await.json["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let body = b"{\"ref\": ";
    let r = TestServer::send(
        s.request("post", &hook, Who::Anonymous)
            .header("X-GitHub-Event", "push")
            .header(
                "X-Hub-Signature-256",
                format!("sha256={}", orrery_vcs::sign(body, &secret)),
            )
            .header("content-type", "application/json")
            .body(body.to_vec()),
    )
    .await;
    error(&r, 400, "a signed webhook that is not JSON");
    w.s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runner_protocol_guards() {
    let w = world().await;
    let s = &w.s;
    let runner = |path: &str, name: Option<&str>| {
        let mut req = s
            .request("post", path, Who::Anonymous)
            .bearer_auth(&w.runner_token);
        if let Some(n) = name {
            req = req.header("Orrery-Runner-Name", n);
        }
        req
    };
    // The runner name is required and checked.
    let r = TestServer::send(runner("/runner/v1/claim", None).json(&json!({}))).await;
    error(&r, 400, "a claim without a runner name");
    let r = TestServer::send(runner("/runner/v1/claim", Some("bad name!")).json(&json!({}))).await;
    error(&r, 400, "a claim with a bad runner name");
    // An API token is not a runner token, nor the other way round.
    let r = TestServer::send(
        s.request("post", "/runner/v1/claim", Who::Anonymous)
            .bearer_auth(common::ADMIN_TOKEN)
            .header("Orrery-Runner-Name", "walker")
            .json(&json!({})),
    )
    .await;
    error(&r, 401, "a claim with an API token");
    let r = s
        .call("get", "/api/v2/me", Who::Token(&w.runner_token), None)
        .await;
    error(&r, 401, "the API with a runner token");
    // A valid runner of another class registers and finds nothing to do.
    let r = TestServer::send(
        runner("/runner/v1/register", Some("walker"))
            .json(&json!({"hostname": "h", "version": "1"})),
    )
    .await;
    r.expect(200);
    assert_eq!(r.json["runner_id"], "acme/test/walker");
    let r = TestServer::send(runner("/runner/v1/claim", Some("walker")).json(&json!({}))).await;
    assert_eq!(r.status, 204, "{}", r.text());
    // A task the runner does not hold.
    let task = "0f0f0f0f-1111-4222-8333-444444444444";
    for (path, body) in [
        (format!("/runner/v1/tasks/{task}/heartbeat"), json!({})),
        (format!("/runner/v1/tasks/{task}/events"), json!([])),
        (
            format!("/runner/v1/tasks/{task}/complete"),
            json!({"status": "success"}),
        ),
    ] {
        let r = TestServer::send(runner(&path, Some("walker")).json(&body)).await;
        error(&r, 404, &path);
    }
    // Runner administration is for admins.
    let viewer = s.user_token("val", orrery_store::Role::Viewer).await;
    let member = s.user_token("mel", orrery_store::Role::Member).await;
    for token in [&viewer, &member] {
        let r = s
            .call(
                "post",
                "/api/v3/runner/token",
                Who::Token(token),
                Some(&json!({"resource_class": "acme/test"})),
            )
            .await;
        error(&r, 403, "a runner token made by a non-admin");
    }
    let r = s
        .post(
            "/api/v3/runner/resource",
            &json!({"resource_class": "Not Valid"}),
        )
        .await;
    error(&r, 400, "a bad resource class name");
    let r = s
        .post(
            "/api/v3/runner/token",
            &json!({"resource_class": "acme/none"}),
        )
        .await;
    error(&r, 404, "a token for an unknown class");
    let r = s.get("/api/v3/runner?resource-class=acme/test").await;
    r.expect(200);
    let names: Vec<&str> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["walker"]);
    w.s.stop().await;
}

/// The routes the source declares: `(method, path)` from every
/// `.route("path", get(..).post(..))` in `src/api`.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let open = rest.find('"').unwrap();
            let close = open + 1 + rest[open + 1..].find('"').unwrap();
            let path = rest[open + 1..close].to_string();
            // The handlers, up to the call's closing parenthesis.
            let mut depth = 1;
            let mut end = close;
            for (i, c) in rest[close..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = close + i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let handlers = &rest[close + 1..end];
            for method in ["get", "post", "put", "patch", "delete"] {
                let token = format!("{method}(");
                let found = handlers.match_indices(&token).any(|(i, _)| {
                    i == 0
                        || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric()
                            && handlers.as_bytes()[i - 1] != b'_'
                });
                if found {
                    out.insert((method.to_string(), path.clone()));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_router_and_list_agree() {
    let listed: BTreeSet<(String, String)> = ENDPOINTS
        .iter()
        .map(|(m, p, _, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(listed.len(), ENDPOINTS.len(), "no endpoint is listed twice");
    // The document names a wildcard `{*path}` the OpenAPI way, `{path}`.
    let as_documented: BTreeSet<(String, String)> = listed
        .iter()
        .map(|(m, p)| (m.clone(), openapi_path(p)))
        .collect();
    let routed = routes_in_source();
    assert!(
        routed.len() > 30,
        "the source parser found the routes: {routed:?}"
    );
    assert_eq!(
        routed.difference(&listed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routed but not in the OpenAPI list"
    );
    assert_eq!(
        listed.difference(&routed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "listed but not routed"
    );

    let s = TestServer::start().await;
    let r = TestServer::send(s.request("get", "/api/v2/openapi.json", Who::Anonymous)).await;
    r.expect(200);
    assert_eq!(r.json["openapi"], "3.0.3");
    let mut documented = BTreeSet::new();
    for (path, item) in r.json["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            // Every path parameter is declared.
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(
                declared,
                params(path).into_iter().collect(),
                "{method} {path}"
            );
            let access = ENDPOINTS
                .iter()
                .find(|(m, p, _, _)| m == method && openapi_path(p) == *path)
                .unwrap()
                .2;
            assert_eq!(
                op["security"].as_array().unwrap().is_empty(),
                !matches!(access, Access::Token | Access::Runner),
                "{method} {path}: security"
            );
        }
    }
    assert_eq!(documented, as_documented);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn public_endpoints() {
    let s = TestServer::start().await;
    let r = TestServer::send(s.request("get", "/healthz", Who::Anonymous)).await;
    r.expect(200);
    assert_eq!(r.json, json!({"status": "ok"}));
    let r = TestServer::send(s.request("get", "/hooks/post-receive", Who::Anonymous)).await;
    r.expect(200);
    assert!(r.content_type.starts_with("text/x-shellscript"));
    assert!(r.text().starts_with("#!"), "{}", r.text());
    assert_eq!(r.text(), orrery_vcs::post_receive_hook_script());
    s.stop().await;
}
