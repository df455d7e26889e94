//! The web app over HTTP, without a browser: signing in and out, the
//! session cookie, CSRF and Origin checks on every form, roles (a viewer sees
//! no buttons and is refused anyway), the pages of pipelines, workflows and
//! jobs, error pages, live events and bad input. The browser tests
//! (`crates/orrery/tests/web_browser.rs`) act as a user on top of this.

mod common;

use common::{ADMIN_TOKEN, TestServer, machine_config};
use orrery_store::Role;
use serde_json::{Value, json};

const SLUG: &str = "git/acme/app";

use common::browser::{Browser, form_post};

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_sessions_and_sign_out() {
    let s = TestServer::start().await;
    let mut b = Browser::new(&s);

    // Signed out: pages send to the sign-in page.
    for path in ["/", "/pipelines", "/pipelines/git/acme/app/1"] {
        let p = b.get(path).await;
        assert_eq!(p.status, 303, "{path}");
        assert_eq!(p.location.as_deref(), Some("/signin"), "{path}");
    }
    let p = b.get("/signin").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("Sign in"));

    // Wrong passwords, unknown users, empty forms: 401, no cookie.
    for (login, password) in [
        ("admin", "wrong"),
        ("nobody", ADMIN_TOKEN),
        ("", ""),
        ("admin", ""),
    ] {
        let p = b.sign_in(login, password).await;
        assert_eq!(p.status, 401, "{login}/{password}");
        assert!(p.set_cookie.is_none());
        assert!(p.body.contains("Wrong login or password."));
    }
    // Another user's token is not this user's password.
    let viewer_token = s.user_token("vera", Role::Viewer).await;
    let p = b.sign_in("admin", &viewer_token).await;
    assert_eq!(p.status, 401);
    // A form that is not a form.
    let r = b
        .send(
            b.http
                .post(format!("{}/signin", b.base))
                .header("content-type", "application/json")
                .body("{}"),
        )
        .await;
    assert!(r.status >= 400 && r.status < 500, "{}", r.status);

    // The admin's API token is a password.
    let p = b.sign_in("admin", ADMIN_TOKEN).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some("/"));
    let cookie = p.set_cookie.unwrap();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    // The store keeps the session's hash, not the cookie's value.
    let value = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
    assert!(!String::from_utf8_lossy(&common::database_bytes(&s)).contains(value));

    let p = b.get("/pipelines").await;
    assert_eq!(p.status, 200);
    assert!(
        p.body
            .contains("data-testid=\"signed-in-as\">admin · admin"),
        "{}",
        p.body
    );
    // Headers that keep the page to itself.
    let r = reqwest::Client::new()
        .get(format!("{}/pipelines", s.base))
        .header("cookie", b.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    assert_eq!(r.headers()["cache-control"], "no-store");

    // A session does not open the API.
    let r = reqwest::Client::new()
        .get(format!("{}/api/v2/me", s.base))
        .header("cookie", b.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Only this site's paths are followed after signing in.
    let mut other = Browser::new(&s);
    for (next, to) in [
        ("/pipelines?branch=x", "/pipelines?branch=x"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
    ] {
        let p = other
            .post(
                "/signin",
                &[
                    ("login", "admin"),
                    ("password", ADMIN_TOKEN),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(p.location.as_deref(), Some(to), "{next}");
    }

    // Signing out needs the form's token; then the session is gone.
    let page = b.get("/pipelines").await;
    let csrf = Browser::csrf(&page);
    let p = b
        .post("/signout", &[("_csrf", "0".repeat(64).as_str())])
        .await;
    assert_eq!(p.status, 403);
    let old = b.cookie.clone();
    let p = b.post("/signout", &[("_csrf", &csrf)]).await;
    assert_eq!(p.status, 303);
    assert!(p.set_cookie.unwrap().contains("Max-Age=0"));
    b.cookie = old;
    let p = b.get("/pipelines").await;
    assert_eq!(p.status, 303, "the old cookie no longer works");
    s.stop().await;
}

/// The admin and a viewer, signed in.
async fn two_browsers(s: &TestServer) -> (Browser, Browser) {
    let mut admin = Browser::new(s);
    assert_eq!(admin.sign_in("admin", ADMIN_TOKEN).await.status, 303);
    let token = s.user_token("vera", Role::Viewer).await;
    let mut viewer = Browser::new(s);
    assert_eq!(viewer.sign_in("vera", &token).await.status, 303);
    (admin, viewer)
}

async fn pipeline_with_hold(s: &TestServer) -> (Value, Value) {
    let config = machine_config(
        &[("build", "echo built"), ("deploy", "echo deployed")],
        "      - build\n      - hold:\n          type: approval\n          requires: [build]\n      - deploy:\n          requires: [hold]\n",
    );
    let repo = s.repo("app", &config);
    s.create_project(SLUG, &repo, json!({})).await;
    let p = s.trigger(SLUG, json!({"branch": "main"})).await;
    let wf = s.workflows(p["id"].as_str().unwrap(), 1).await.remove(0);
    s.wait_workflow(wf["id"].as_str().unwrap(), &["on_hold"])
        .await;
    (p, wf)
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_actions_roles_and_forgeries() {
    let s = TestServer::start().await;
    let (mut admin, mut viewer) = two_browsers(&s).await;
    let (p, wf) = pipeline_with_hold(&s).await;
    let wf_id = wf["id"].as_str().unwrap();
    let number = p["number"].as_i64().unwrap();

    // The dashboard lists it, with its workflow's status.
    let page = admin.get("/pipelines").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!("data-number=\"{number}\"")),
        "{}",
        page.body
    );
    assert!(page.body.contains("data-status=\"on_hold\""));
    for filter in [
        "/pipelines?project=git/acme/app",
        "/pipelines?branch=main",
        "/pipelines?status=on_hold",
        "/pipelines/git/acme/app",
    ] {
        let page = admin.get(filter).await;
        assert!(
            page.body.contains("data-testid=\"pipeline-row\""),
            "{filter}"
        );
    }
    for filter in ["/pipelines?branch=other", "/pipelines?status=success"] {
        let page = admin.get(filter).await;
        assert!(
            page.body.contains("data-testid=\"no-pipelines\""),
            "{filter}"
        );
    }
    // Bad filters are clear 4xx pages.
    for (path, status, says) in [
        ("/pipelines?status=sideways", 400, "is not a status"),
        ("/pipelines?page=%%%", 400, "not a token"),
        ("/pipelines?project=git/acme/none", 404, "Project not found"),
        ("/pipelines/git/acme/app/999", 404, "not found"),
        ("/pipelines/git/acme/app/x", 400, "positive number"),
        (
            "/pipelines/git/acme/app/1/workflows/x/jobs/999",
            404,
            "not found",
        ),
        ("/no/such/page/here/at/all", 404, "no page"),
    ] {
        let page = admin.get(path).await;
        assert_eq!(page.status, status, "{path}: {}", page.body);
        assert!(page.body.contains(says), "{path}: {}", page.body);
        assert!(page.body.contains("<html"), "{path}: a page");
    }

    // The pipeline page: the graph, the jobs, the approve button for the
    // admin only.
    let path = format!("/pipelines/{SLUG}/{number}");
    let page = admin.get(&path).await;
    assert_eq!(page.status, 200);
    for part in [
        "<svg",
        "data-job=\"build\"",
        "data-job=\"hold\"",
        "data-job=\"deploy\"",
        "data-testid=\"approve\"",
        "data-testid=\"cancel\"",
    ] {
        assert!(page.body.contains(part), "{part} in {}", page.body);
    }
    let vpage = viewer.get(&path).await;
    assert_eq!(vpage.status, 200);
    assert!(vpage.body.contains("data-job=\"hold\""));
    for part in [
        "data-testid=\"approve\"",
        "data-testid=\"cancel\"",
        "data-testid=\"rerun",
    ] {
        assert!(!vpage.body.contains(part), "a viewer sees {part}");
    }
    // Fragments for live updates are the region alone.
    let r = reqwest::Client::new()
        .get(format!("{}{path}", s.base))
        .header("cookie", admin.cookie.clone().unwrap())
        .header("x-orrery-fragment", "1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(r.contains("<svg") && !r.contains("<html"), "{r}");

    let jobs = s.jobs(wf_id).await;
    let hold = jobs.iter().find(|j| j["name"] == "hold").unwrap();
    let hold_id = hold["id"].as_str().unwrap();
    let approve = format!("/app/workflows/{wf_id}/approve/{hold_id}");
    let csrf = Browser::csrf(&page);

    // A viewer is refused, even with a right token for their session.
    let vcsrf = Browser::csrf(&vpage);
    let r = viewer.post(&approve, &[("_csrf", &vcsrf)]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    // Forged posts: no token, another session's token, another site.
    let r = admin.post(&approve, &[]).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("security token"), "{}", r.body);
    let r = admin.post(&approve, &[("_csrf", &vcsrf)]).await;
    assert_eq!(r.status, 403);
    let req = admin
        .http
        .post(format!("{}{approve}", s.base))
        .header("origin", "https://evil.example");
    let req = form_post(req, &[("_csrf", &csrf)]);
    let r = admin.send(req).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("another site"), "{}", r.body);
    // Nothing happened.
    let w = s.get(&format!("/api/v2/workflow/{wf_id}")).await;
    assert_eq!(w.json["status"], "on_hold");
    // Bad ids.
    for bad in [
        format!("/app/workflows/nope/approve/{hold_id}"),
        format!("/app/workflows/{wf_id}/approve/nope"),
        format!(
            "/app/workflows/{wf_id}/approve/{}",
            jobs.iter().find(|j| j["name"] == "build").unwrap()["id"]
                .as_str()
                .unwrap()
        ),
    ] {
        let r = admin.post(&bad, &[("_csrf", &csrf)]).await;
        assert!(r.status == 404 || r.status == 400, "{bad}: {}", r.status);
    }

    // The admin approves: back to the pipeline, and the workflow goes on.
    let r = admin.post(&approve, &[("_csrf", &csrf)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location.unwrap().starts_with(&path));
    s.wait_workflow(wf_id, &["success"]).await;
    let page = admin.get(&path).await;
    assert!(page.body.contains("approved by admin"), "{}", page.body);
    assert!(page.body.contains("data-testid=\"rerun\""));

    // Rerun from the start makes a second run, shown first.
    let r = admin
        .post(
            &format!("/app/workflows/{wf_id}/rerun"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 303);
    let wfs = s.workflows(p["id"].as_str().unwrap(), 2).await;
    assert_eq!(wfs.len(), 2);
    let page = admin.get(&path).await;
    assert!(page.body.contains("Earlier runs (1)"), "{}", page.body);

    // The config page shows the source.
    let page = admin.get(&format!("{path}/config")).await;
    assert!(page.body.contains("type: approval"), "{}", page.body);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn errored_pipelines_show_their_config_errors() {
    let s = TestServer::start().await;
    let (mut admin, _) = two_browsers(&s).await;
    let repo = s.repo(
        "app",
        "version: 2.1\njobs:\n  build:\n    machine: true\n    steps:\n      - run: echo\nworkflows:\n  main:\n    jobs: [build, missing-job]\n",
    );
    s.create_project(SLUG, &repo, json!({})).await;
    let p = s.trigger(SLUG, json!({"branch": "main"})).await;
    let number = p["number"].as_i64().unwrap();
    let page = admin.get(&format!("/pipelines/{SLUG}/{number}")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("data-testid=\"pipeline-errors\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("missing-job"), "{}", page.body);
    assert!(
        page.body.contains(".circleci/config.yml:"),
        "line numbers: {}",
        page.body
    );
    let page = admin.get("/pipelines?status=errored").await;
    assert!(page.body.contains(&format!("data-number=\"{number}\"")));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn live_events_say_when_a_pipeline_changes() {
    use futures_util::StreamExt;
    let s = TestServer::start().await;
    let (admin, _) = two_browsers(&s).await;
    let client = reqwest::Client::new();
    let get = |q: &str| {
        client
            .get(format!("{}/app/events?{q}", s.base))
            .header("cookie", admin.cookie.clone().unwrap())
            .send()
    };
    for (q, status) in [
        ("scope=sideways", 400),
        ("scope=pipeline", 400),
        ("scope=pipeline&id=nope", 404),
        ("", 400),
    ] {
        assert_eq!(get(q).await.unwrap().status().as_u16(), status, "{q}");
    }
    let r = admin
        .http
        .get(format!("{}/app/events?scope=pipelines", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303, "signed out");

    let r = get("scope=pipelines").await.unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let repo = s.repo(
        "app",
        &machine_config(&[("build", "true")], "      - build\n"),
    );
    s.create_project(SLUG, &repo, json!({})).await;
    s.trigger(SLUG, json!({"branch": "main"})).await;
    let mut seen = String::new();
    tokio::time::timeout(common::DEADLINE, async {
        while !seen.contains("event: change") {
            let chunk = body.next().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("a change event");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_is_throttled_per_login_after_five_failures() {
    let s = TestServer::start().await;
    let token = s.user_token("vera", Role::Viewer).await;
    let mut b = Browser::new(&s);
    for _ in 0..5 {
        assert_eq!(b.sign_in("vera", "guess").await.status, 401);
    }
    // Now even the right password waits, for this login (in any case).
    for login in ["vera", "VERA"] {
        let p = b.sign_in(login, &token).await;
        assert_eq!(p.status, 429, "{}", p.body);
        assert!(p.body.contains("Too many failed sign-ins"), "{}", p.body);
        assert!(p.set_cookie.is_none());
    }
    // Other logins are not held up.
    let p = b.sign_in("admin", ADMIN_TOKEN).await;
    assert_eq!(p.status, 303);
    s.stop().await;
}
