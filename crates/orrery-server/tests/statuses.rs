//! Commit statuses: a small HTTP server in the test plays GitHub, GitLab and
//! Gitea and records what Orrery sends as jobs run.

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::Request;
use common::{TestServer, Ticker, machine_config};
use serde_json::{Value, json};

/// One request the fake VCS received.
#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| percent_decode(v))
        })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else if b[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// A fake VCS API answering 201 to everything and keeping the requests.
struct FakeVcs {
    base: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl FakeVcs {
    async fn start() -> FakeVcs {
        let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let keep = Arc::clone(&log);
        let app = axum::Router::new().fallback(move |req: Request| {
            let keep = Arc::clone(&keep);
            async move {
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                keep.lock().unwrap().push(Recorded {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or_default().to_string(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                        .collect(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                });
                (
                    axum::http::StatusCode::CREATED,
                    axum::Json(json!({"id": 1})),
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = tokio_util::sync::CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await
                .unwrap();
        });
        FakeVcs { base, log, stop }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the requests received satisfy `done`; they are returned.
    async fn wait(&self, what: &str, done: impl Fn(&[Recorded]) -> bool) -> Vec<Recorded> {
        let mut ticker = Ticker::new();
        loop {
            let got = self.requests();
            if done(&got) {
                return got;
            }
            ticker
                .tick(|| format!("{what}; the fake VCS got {got:#?}"))
                .await;
        }
    }
}

fn config(marker: &str) -> String {
    machine_config(
        &[("build", &format!("echo {marker}")), ("bad", "exit 1")],
        "      - build\n      - bad\n",
    )
}

/// The states sent for a job (by context), in order.
fn states_for(
    reqs: &[Recorded],
    context: &str,
    state_of: impl Fn(&Recorded) -> Option<(String, String)>,
) -> Vec<String> {
    reqs.iter()
        .filter_map(&state_of)
        .filter(|(c, _)| c == context)
        .map(|(_, s)| s)
        .collect()
}

fn json_state(r: &Recorded) -> Option<(String, String)> {
    Some((
        r.body["context"].as_str()?.to_string(),
        r.body["state"].as_str()?.to_string(),
    ))
}

fn gitlab_state(r: &Recorded) -> Option<(String, String)> {
    Some((r.query_param("name")?, r.query_param("state")?))
}

const TOKEN: &str = "vcs-token-SECRET-0123456789abcdef";

#[tokio::test(flavor = "multi_thread")]
async fn github_statuses() {
    let vcs = FakeVcs::start().await;
    let s = TestServer::start().await;
    let repo = s.repo("app", &config("github"));
    let sha = repo.head();
    let created = s
        .create_project(
            "gh/acme/app",
            &repo,
            json!({"vcs_provider": "github", "vcs_token": TOKEN, "vcs_api_url": format!("{}/api/v3/", vcs.base)}),
        )
        .await;
    assert!(!created.to_string().contains(TOKEN));
    let (p, wf) = s.run("gh/acme/app", json!({})).await;
    assert_eq!(wf["status"], "failed");
    let done = |reqs: &[Recorded]| {
        let b = states_for(reqs, "ci/circleci: build", json_state);
        let f = states_for(reqs, "ci/circleci: bad", json_state);
        b.last().is_some_and(|s| s == "success") && f.last().is_some_and(|s| s == "failure")
    };
    let reqs = vcs.wait("build succeeded and bad failed", done).await;
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, format!("/api/v3/repos/acme/app/statuses/{sha}"));
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert!(
            r.header("content-type")
                .unwrap()
                .starts_with("application/json")
        );
        assert!(r.header("user-agent").unwrap().starts_with("orrery/"));
        let target = r.body["target_url"].as_str().unwrap();
        assert!(target.starts_with(&s.base), "{target}");
        assert!(
            target.contains(&format!("/pipelines/gh/acme/app/{}/", p["number"])),
            "{target}"
        );
        assert!(
            r.body["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
        assert!(
            ["pending", "success", "failure", "error"].contains(&r.body["state"].as_str().unwrap()),
            "{r:?}"
        );
    }
    let build = states_for(&reqs, "ci/circleci: build", json_state);
    assert_eq!(
        build.first().map(String::as_str),
        Some("pending"),
        "{build:?}"
    );
    assert_eq!(build.last().map(String::as_str), Some("success"));
    assert_eq!(
        build.iter().filter(|s| *s == "success").count(),
        1,
        "{build:?}"
    );
    let bad = states_for(&reqs, "ci/circleci: bad", json_state);
    assert_eq!(bad.first().map(String::as_str), Some("pending"), "{bad:?}");
    assert_eq!(bad.last().map(String::as_str), Some("failure"));
    // Each change is told once: no status repeats the one before it.
    for context in ["ci/circleci: build", "ci/circleci: bad"] {
        let sent: Vec<(String, String)> = reqs
            .iter()
            .filter(|r| r.body["context"] == context)
            .map(|r| {
                (
                    r.body["state"].to_string(),
                    r.body["description"].to_string(),
                )
            })
            .collect();
        assert!(
            sent.windows(2).all(|w| w[0] != w[1]),
            "{context} was told the same twice: {sent:?}"
        );
    }

    // The token is nowhere in the API.
    for path in [
        "/api/v2/project/gh/acme/app".to_string(),
        "/api/v2/project/gh/acme/app/webhook".to_string(),
        format!("/api/v2/pipeline/{}", p["id"].as_str().unwrap()),
        format!("/api/v2/pipeline/{}/config", p["id"].as_str().unwrap()),
        "/api/v2/project/gh/acme/app/job/1".to_string(),
        "/api/v2/project/gh/acme/app/job/1/output".to_string(),
        "/api/v1.1/project/gh/acme/app/1".to_string(),
        "/api/v2/project/gh/acme/app/envvar".to_string(),
        "/api/v2/me/collaborations".to_string(),
    ] {
        let r = s.get(&path).await;
        r.expect(200);
        assert!(!r.text().contains(TOKEN), "{path}: {}", r.text());
    }
    s.stop().await;
    vcs.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn gitlab_statuses() {
    let vcs = FakeVcs::start().await;
    let s = TestServer::start().await;
    let repo = s.repo("app", &config("gitlab"));
    let sha = repo.head();
    s.create_project(
        "gl/acme/app",
        &repo,
        json!({"vcs_token": TOKEN, "vcs_api_url": format!("{}/api/v4", vcs.base)}),
    )
    .await;
    let (_, wf) = s.run("gl/acme/app", json!({})).await;
    assert_eq!(wf["status"], "failed");
    let reqs = vcs
        .wait("build succeeded and bad failed on GitLab", |reqs| {
            states_for(reqs, "ci/circleci: build", gitlab_state)
                .last()
                .is_some_and(|s| s == "success")
                && states_for(reqs, "ci/circleci: bad", gitlab_state)
                    .last()
                    .is_some_and(|s| s == "failed")
        })
        .await;
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.path,
            format!("/api/v4/projects/acme%2Fapp/statuses/{sha}")
        );
        assert_eq!(r.header("private-token"), Some(TOKEN));
        assert_eq!(r.header("authorization"), None);
        assert!(
            ["pending", "running", "success", "failed", "canceled"]
                .contains(&r.query_param("state").unwrap().as_str()),
            "{r:?}"
        );
        assert!(r.query_param("target_url").unwrap().starts_with(&s.base));
        assert!(r.query_param("description").is_some());
    }
    let build = states_for(&reqs, "ci/circleci: build", gitlab_state);
    assert!(
        build.iter().any(|s| s == "running"),
        "GitLab hears that the job runs: {build:?}"
    );
    let bad = states_for(&reqs, "ci/circleci: bad", gitlab_state);
    assert_eq!(bad.last().map(String::as_str), Some("failed"));
    s.stop().await;
    vcs.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn gitea_statuses_and_projects_without_a_token() {
    let vcs = FakeVcs::start().await;
    let s = TestServer::start().await;
    let repo = s.repo("app", &config("gitea"));
    let sha = repo.head();
    s.create_project(
        "gitea/acme/app",
        &repo,
        json!({"vcs_token": TOKEN, "vcs_api_url": format!("{}/api/v1", vcs.base)}),
    )
    .await;
    // A GitHub project without a token sends nothing.
    let quiet = s.repo("quiet", &config("quiet"));
    s.create_project(
        "gh/acme/quiet",
        &quiet,
        json!({"vcs_api_url": format!("{}/quiet", vcs.base)}),
    )
    .await;
    let (_, quiet_wf) = s.run("gh/acme/quiet", json!({})).await;
    assert_eq!(quiet_wf["status"], "failed");
    let (_, wf) = s.run("gitea/acme/app", json!({})).await;
    assert_eq!(wf["status"], "failed");
    let reqs = vcs
        .wait("build succeeded and bad failed on Gitea", |reqs| {
            states_for(reqs, "ci/circleci: build", json_state)
                .last()
                .is_some_and(|s| s == "success")
                && states_for(reqs, "ci/circleci: bad", json_state)
                    .last()
                    .is_some_and(|s| s == "failure")
        })
        .await;
    for r in &reqs {
        assert_eq!(r.path, format!("/api/v1/repos/acme/app/statuses/{sha}"));
        assert_eq!(
            r.header("authorization"),
            Some(format!("token {TOKEN}").as_str())
        );
    }
    assert!(
        !reqs.iter().any(|r| r.path.starts_with("/quiet")),
        "a project without a token sends no status"
    );
    s.stop().await;
    vcs.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_jobs_are_pending_and_canceled_ones_end() {
    let vcs = FakeVcs::start().await;
    // No runner: jobs stay queued.
    let s = TestServer::start_with(|c| c.embedded_slots = 0).await;
    let repo = s.repo(
        "app",
        &machine_config(
            &[("build", "true"), ("deploy", "true")],
            "      - build\n      - deploy: {requires: [build]}\n",
        ),
    );
    let sha = repo.head();
    s.create_project(
        "gh/acme/app",
        &repo,
        json!({"vcs_token": TOKEN, "vcs_api_url": vcs.base}),
    )
    .await;
    let p = s.trigger("gh/acme/app", json!({})).await;
    let reqs = vcs
        .wait("the queued job is reported pending", |reqs| {
            !states_for(reqs, "ci/circleci: build", json_state).is_empty()
        })
        .await;
    assert_eq!(reqs[0].path, format!("/repos/acme/app/statuses/{sha}"));
    assert_eq!(reqs[0].body["state"], "pending");
    assert_eq!(
        reqs[0].body["description"],
        "Your tests are queued on Orrery"
    );
    let wf = s.workflows(p["id"].as_str().unwrap(), 1).await.remove(0);
    s.call(
        "post",
        &format!("/api/v2/workflow/{}/cancel", wf["id"].as_str().unwrap()),
        common::Who::Admin,
        None,
    )
    .await
    .expect(202);
    let reqs = vcs
        .wait("the canceled job is reported", |reqs| {
            states_for(reqs, "ci/circleci: build", json_state).len() == 2
        })
        .await;
    assert_eq!(
        states_for(&reqs, "ci/circleci: build", json_state),
        ["pending", "error"]
    );
    // The job that never left `blocked` was never reported.
    assert!(states_for(&reqs, "ci/circleci: deploy", json_state).is_empty());
    s.stop().await;
    vcs.stop.cancel();
}
