//! The web app's projects, project settings, admin area, account page and
//! status badges over HTTP: adding a project by its form (and refusing bad
//! input), variables masked, roles (a viewer sees no forms and is refused
//! anyway), forged posts, users and passwords, role changes ending sessions,
//! the last admin, badges by branch, and build rules honoured by webhooks.

mod common;

use common::{ADMIN_TOKEN, TestServer, machine_config, poll};
use orrery_store::Role;
use serde_json::{Value, json};

const SLUG: &str = "git/acme/app";

use common::browser::{Browser, form_post};

fn testid(id: &str) -> String {
    format!("data-testid=\"{id}\"")
}

/// The admin, signed in.
async fn admin(s: &TestServer) -> Browser {
    let mut b = Browser::new(s);
    assert_eq!(b.sign_in("admin", ADMIN_TOKEN).await.status, 303);
    b
}

/// A new user with `role`, signed in with their API token.
async fn user(s: &TestServer, login: &str, role: Role) -> Browser {
    let token = s.user_token(login, role).await;
    let mut b = Browser::new(s);
    assert_eq!(b.sign_in(login, &token).await.status, 303);
    b
}

async fn project_count(s: &TestServer) -> usize {
    s.server.state.store.projects().await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn projects_are_added_by_their_form() {
    let s = TestServer::start().await;
    let mut a = admin(&s).await;
    let repo = s.repo(
        "app",
        &machine_config(&[("build", "true")], "      - build\n"),
    );

    let page = a.get("/projects").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&testid("add-project-form")),
        "{}",
        page.body
    );
    assert!(page.body.contains(&testid("no-projects")));
    let csrf = Browser::csrf(&page);
    let url = repo.url();
    let file_url = format!("file://{url}");

    // Bad input: a clear 4xx page, nothing created.
    for (form, status, says) in [
        (
            vec![
                ("vcs", "git"),
                ("org", "ac me"),
                ("repo", "app"),
                ("repo_url", url.as_str()),
            ],
            400,
            "may only hold letters",
        ),
        (
            vec![
                ("vcs", "git"),
                ("org", "acme"),
                ("repo", "../x"),
                ("repo_url", url.as_str()),
            ],
            400,
            "may only hold letters",
        ),
        (
            vec![
                ("vcs", "git"),
                ("org", "acme"),
                ("repo", "app"),
                ("repo_url", "relative/path"),
            ],
            400,
            "is not a git URL",
        ),
        (
            vec![
                ("vcs", "svn"),
                ("org", "acme"),
                ("repo", "app"),
                ("repo_url", url.as_str()),
            ],
            400,
            "is not a VCS type",
        ),
        (
            vec![
                ("vcs", "git"),
                ("org", "acme"),
                ("repo", "app"),
                ("repo_url", url.as_str()),
                ("default_branch", "-x"),
            ],
            400,
            "not a branch name",
        ),
    ] {
        let mut with = form.clone();
        with.push(("_csrf", &csrf));
        let r = a.post("/projects", &with).await;
        assert_eq!(r.status, status, "{form:?}: {}", r.body);
        assert!(r.body.contains(says), "{form:?}: {}", r.body);
        assert!(r.body.contains(&testid("error-message")));
    }
    assert_eq!(project_count(&s).await, 0);

    // A good one: the webhook URL and secret, shown once, and the hook hint.
    let r = a
        .post(
            "/projects",
            &[
                ("_csrf", &csrf),
                ("vcs", "git"),
                ("org", "acme"),
                ("repo", "app"),
                ("repo_url", &url),
                ("default_branch", "main"),
            ],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    for id in [
        "webhook-url",
        "webhook-secret",
        "post-receive-hint",
        "project-row",
    ] {
        assert!(r.body.contains(&testid(id)), "{id}: {}", r.body);
    }
    let project = s.get(&format!("/api/v2/project/{SLUG}")).await;
    project.expect(200);
    let id = project.json["id"].as_str().unwrap();
    assert!(
        r.body.contains(&format!("/hooks/generic/{id}")),
        "{}",
        r.body
    );
    // The secret shown is the project's.
    let hook = s.get(&format!("/api/v2/project/{SLUG}/webhook")).await;
    let secret = hook.json["secret"].as_str().unwrap();
    assert!(r.body.contains(secret));

    // Again: a conflict, nothing more.
    let r = a
        .post(
            "/projects",
            &[
                ("_csrf", &csrf),
                ("vcs", "git"),
                ("org", "acme"),
                ("repo", "app"),
                ("repo_url", &url),
            ],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("already exists"), "{}", r.body);
    assert_eq!(project_count(&s).await, 1);

    // A file:// URL works too; the default branch defaults to main.
    let r = a
        .post(
            "/projects",
            &[
                ("_csrf", &csrf),
                ("vcs", "gh"),
                ("org", "acme"),
                ("repo", "other"),
                ("repo_url", &file_url),
                ("default_branch", ""),
            ],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let p = s.get("/api/v2/project/gh/acme/other").await;
    assert_eq!(p.json["vcs_info"]["default_branch"], "main");
    assert!(r.body.contains("/hooks/github/"), "{}", r.body);

    // The list links to pipelines and settings.
    let page = a.get("/projects").await;
    assert_eq!(page.body.matches(&testid("project-row")).count(), 2);
    assert!(page.body.contains("href=\"/pipelines/git/acme/app\""));
    assert!(
        page.body
            .contains("href=\"/projects/git/acme/app/settings\"")
    );
    // Without the form's token: refused.
    let r = a
        .post(
            "/projects",
            &[
                ("vcs", "git"),
                ("org", "acme"),
                ("repo", "third"),
                ("repo_url", &url),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(project_count(&s).await, 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_variables_roles_and_forgeries() {
    let s = TestServer::start().await;
    let mut a = admin(&s).await;
    let mut v = user(&s, "vera", Role::Viewer).await;
    let mut m = user(&s, "mike", Role::Member).await;
    let repo = s.repo(
        "app",
        &machine_config(&[("build", "true")], "      - build\n"),
    );
    let created = s.create_project(SLUG, &repo, json!({})).await;
    let secret = created["webhook"]["secret"].as_str().unwrap().to_string();
    let settings = format!("/projects/{SLUG}/settings");

    let page = a.get(&settings).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for id in [
        "env-form",
        "rules-form",
        "webhook-url",
        "webhook-secret",
        "no-env",
    ] {
        assert!(page.body.contains(&testid(id)), "{id}: {}", page.body);
    }
    assert!(page.body.contains(&secret));
    assert!(page.body.contains(&repo.url()));
    let csrf = Browser::csrf(&page);

    // Add variables; the page shows them masked as the API does.
    let env = format!("{settings}/env");
    for (name, value) in [("SECRET_KEY", "supersecretvalue"), ("SHORT", "abc")] {
        let r = a
            .post(&env, &[("_csrf", &csrf), ("name", name), ("value", value)])
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(r.location.as_deref(), Some(settings.as_str()));
    }
    let page = a.get(&settings).await;
    assert_eq!(page.body.matches(&testid("env-row")).count(), 2);
    assert!(page.body.contains("xxxxalue"), "{}", page.body);
    assert!(!page.body.contains("supersecretvalue"));
    assert!(!page.body.contains(">abc<"));
    let api = s.get(&format!("/api/v2/project/{SLUG}/envvar")).await;
    let masked: Vec<&str> = api.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["value"].as_str().unwrap())
        .collect();
    for m in &masked {
        assert!(page.body.contains(m), "{m}");
    }
    assert_eq!(page.body.matches(&testid("env-delete")).count(), 2);

    // Bad names and unknown projects are 4xx pages.
    let r = a
        .post(&env, &[("_csrf", &csrf), ("name", "1BAD"), ("value", "x")])
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("not a valid environment variable name"));
    let r = a.get("/projects/git/acme/none/settings").await;
    assert_eq!(r.status, 404);
    let r = a
        .post(
            "/projects/git/acme/none/settings/env",
            &[("_csrf", &csrf), ("name", "A"), ("value", "x")],
        )
        .await;
    assert_eq!(r.status, 404);

    // A viewer reads: variables masked, no forms, no secret.
    let vpage = v.get(&settings).await;
    assert_eq!(vpage.status, 200);
    assert_eq!(vpage.body.matches(&testid("env-row")).count(), 2);
    for id in ["env-form", "env-delete", "rules-form", "webhook-secret"] {
        assert!(!vpage.body.contains(&testid(id)), "a viewer sees {id}");
    }
    assert!(!vpage.body.contains(&secret));
    assert!(vpage.body.contains(&testid("webhook-url")));
    let vlist = v.get("/projects").await;
    assert!(vlist.body.contains(&testid("project-row")));
    assert!(!vlist.body.contains(&testid("add-project-form")));
    // ... and is refused, with a right token for their session.
    let vcsrf = Browser::csrf(&vpage);
    let url = repo.url();
    for (path, form) in [
        (env.clone(), vec![("name", "X"), ("value", "y")]),
        (format!("{settings}/env/SHORT/delete"), vec![]),
        (
            format!("{settings}/rules"),
            vec![("branches", "main"), ("tags", "all")],
        ),
        (
            "/projects".to_string(),
            vec![
                ("vcs", "git"),
                ("org", "acme"),
                ("repo", "v"),
                ("repo_url", url.as_str()),
            ],
        ),
    ] {
        let mut with = form.clone();
        with.push(("_csrf", &vcsrf));
        let r = v.post(&path, &with).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    // A member writes.
    let mpage = m.get(&settings).await;
    assert!(mpage.body.contains(&testid("env-form")));
    assert!(mpage.body.contains(&secret));

    // Forged posts: no token, another session's token, another site.
    let delete = format!("{settings}/env/SECRET_KEY/delete");
    let r = a.post(&delete, &[]).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("security token"));
    let r = a.post(&delete, &[("_csrf", &vcsrf)]).await;
    assert_eq!(r.status, 403);
    let req = form_post(
        a.http
            .post(format!("{}{delete}", s.base))
            .header("origin", "https://evil.example"),
        &[("_csrf", &csrf)],
    );
    let r = a.send(req).await;
    assert_eq!(r.status, 403);
    let api = s.get(&format!("/api/v2/project/{SLUG}/envvar")).await;
    assert_eq!(
        api.json["items"].as_array().unwrap().len(),
        2,
        "nothing changed"
    );

    // Deleting: gone from the page and the API; an unknown name is a 404.
    let r = a.post(&delete, &[("_csrf", &csrf)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = a.get(&settings).await;
    assert_eq!(page.body.matches(&testid("env-row")).count(), 1);
    let r = a.post(&delete, &[("_csrf", &csrf)]).await;
    assert_eq!(r.status, 404);
    s.get(&format!("/api/v2/project/{SLUG}/envvar/SECRET_KEY"))
        .await
        .expect(404);

    // The latest pipeline's config is a link away.
    let (p, _) = s.run(SLUG, json!({"branch": "main"})).await;
    let page = a.get(&settings).await;
    let link = format!("/pipelines/{SLUG}/{}/config", p["number"]);
    assert!(page.body.contains(&link), "{}", page.body);
    let config = a.get(&link).await;
    assert_eq!(config.status, 200);
    assert!(config.body.contains("config-compiled"), "{}", config.body);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_area_users_roles_and_passwords() {
    let s = TestServer::start().await;
    let mut a = admin(&s).await;
    let mut m = user(&s, "mike", Role::Member).await;

    // Only admins.
    let r = m.get("/admin").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains(&testid("error-message")));
    let mcsrf = m.token().await;
    let r = m
        .post(
            "/admin/users",
            &[
                ("_csrf", &mcsrf),
                ("login", "eve"),
                ("role", "admin"),
                ("password", "a-long-enough-password"),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(
        s.server
            .state
            .store
            .user_by_login("eve")
            .await
            .unwrap()
            .is_none()
    );

    let page = a.get("/admin").await;
    assert_eq!(page.status, 200, "{}", page.body);
    for id in [
        "users-table",
        "user-row",
        "new-user-form",
        "role-form",
        "runners-table",
        "queue-depth",
        "server-config",
        "db-health",
    ] {
        assert!(page.body.contains(&testid(id)), "{id}: {}", page.body);
    }
    assert_eq!(page.body.matches(&testid("user-row")).count(), 2);
    // The embedded runner, online; the data directory; the blob directory.
    assert!(page.body.contains("data-online=\"true\""), "{}", page.body);
    assert!(page.body.contains(&s.data_dir().display().to_string()));
    assert!(page.body.contains("orrery/default"));
    let csrf = Browser::csrf(&page);

    // New users: checked, then able to sign in with their password.
    for (login, password, role, says) in [
        ("carol", "short", "member", "at least 12"),
        (
            "bad login",
            "a-long-enough-password",
            "member",
            "may only hold",
        ),
        ("carol", "a-long-enough-password", "overlord", "not a role"),
    ] {
        let r = a
            .post(
                "/admin/users",
                &[
                    ("_csrf", &csrf),
                    ("login", login),
                    ("name", "Carol"),
                    ("role", role),
                    ("password", password),
                ],
            )
            .await;
        assert_eq!(r.status, 400, "{login}: {}", r.body);
        assert!(r.body.contains(says), "{login}: {}", r.body);
    }
    assert!(
        s.server
            .state
            .store
            .user_by_login("carol")
            .await
            .unwrap()
            .is_none()
    );
    let r = a
        .post(
            "/admin/users",
            &[
                ("_csrf", &csrf),
                ("login", "carol"),
                ("name", "Carol C"),
                ("role", "member"),
                ("password", "carols-long-password"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = a
        .post(
            "/admin/users",
            &[
                ("_csrf", &csrf),
                ("login", "carol"),
                ("role", "member"),
                ("password", "carols-long-password"),
            ],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // The store keeps a hash, not the password.
    assert!(!String::from_utf8_lossy(&common::database_bytes(&s)).contains("carols-long-password"));
    let mut c = Browser::new(&s);
    assert_eq!(c.sign_in("carol", "wrong-password-123").await.status, 401);
    assert_eq!(c.sign_in("carol", "carols-long-password").await.status, 303);
    let page = c.get("/pipelines").await;
    assert!(page.body.contains("carol · member"), "{}", page.body);

    // A role change ends that user's sessions.
    let carol = s
        .server
        .state
        .store
        .user_by_login("carol")
        .await
        .unwrap()
        .unwrap();
    let r = a
        .post(
            &format!("/admin/users/{}/role", carol.id),
            &[("_csrf", &csrf), ("role", "viewer")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(c.get("/pipelines").await.status, 303, "signed out");
    assert_eq!(c.sign_in("carol", "carols-long-password").await.status, 303);
    assert!(c.get("/pipelines").await.body.contains("carol · viewer"));
    let r = a
        .post(
            "/admin/users/not-a-user/role",
            &[("_csrf", &csrf), ("role", "viewer")],
        )
        .await;
    assert_eq!(r.status, 404);

    // The last admin cannot step down.
    let me = s
        .server
        .state
        .store
        .user_by_login("admin")
        .await
        .unwrap()
        .unwrap();
    let demote = format!("/admin/users/{}/role", me.id);
    let r = a
        .post(&demote, &[("_csrf", &csrf), ("role", "member")])
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("last admin"), "{}", r.body);
    assert_eq!(a.get("/admin").await.status, 200, "still an admin");
    // With another admin, they can (and are signed out).
    let r = a
        .post(
            &format!("/admin/users/{}/role", carol.id),
            &[("_csrf", &csrf), ("role", "admin")],
        )
        .await;
    assert_eq!(r.status, 303);
    let r = a
        .post(&demote, &[("_csrf", &csrf), ("role", "member")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/signin"));
    assert_eq!(a.get("/pipelines").await.status, 303);
    assert_eq!(a.sign_in("admin", ADMIN_TOKEN).await.status, 303);
    assert_eq!(a.get("/admin").await.status, 403, "a member now");

    // Changing one's own password: the current one (or a token) first.
    let page = m.get("/account").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&testid("password-form")));
    let mcsrf = Browser::csrf(&page);
    let r = m
        .post(
            "/account/password",
            &[
                ("_csrf", &mcsrf),
                ("current", "not-my-token"),
                ("password", "mikes-new-password"),
                ("repeat", "mikes-new-password"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn account_password_change() {
    let s = TestServer::start().await;
    let token = s.user_token("mike", Role::Member).await;
    let mut m = Browser::new(&s);
    assert_eq!(m.sign_in("mike", &token).await.status, 303);
    let csrf = m.token().await;
    for (password, repeat, says) in [
        ("short", "short", "at least 12"),
        ("mikes-new-password", "mikes-other-password", "differ"),
    ] {
        let r = m
            .post(
                "/account/password",
                &[
                    ("_csrf", &csrf),
                    ("current", &token),
                    ("password", password),
                    ("repeat", repeat),
                ],
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains(says), "{}", r.body);
    }
    let r = m
        .post(
            "/account/password",
            &[
                ("_csrf", &csrf),
                ("current", &token),
                ("password", "mikes-new-password"),
                ("repeat", "mikes-new-password"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/signin"));
    assert_eq!(m.get("/pipelines").await.status, 303, "signed out");
    assert_eq!(m.sign_in("mike", "mikes-new-password").await.status, 303);
    // Now the password is the current one.
    let csrf = m.token().await;
    let r = m
        .post(
            "/account/password",
            &[
                ("_csrf", &csrf),
                ("current", "mikes-new-password"),
                ("password", "mikes-third-password"),
                ("repeat", "mikes-third-password"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(m.sign_in("mike", "mikes-new-password").await.status, 401);
    assert_eq!(m.sign_in("mike", "mikes-third-password").await.status, 303);
    s.stop().await;
}

async fn badge(s: &TestServer, path: &str) -> (u16, String, String, String) {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", s.base))
        .send()
        .await
        .unwrap();
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (ct, cc) = (h("content-type"), h("cache-control"));
    (r.status().as_u16(), ct, cc, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn status_badges() {
    let s = TestServer::start().await;
    let repo = s.repo(
        "app",
        &machine_config(&[("build", "true")], "      - build\n"),
    );
    s.create_project(SLUG, &repo, json!({})).await;

    // No pipelines yet; served without signing in.
    let (status, ct, cc, body) = badge(&s, "/git/acme/app.svg").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ct, "image/svg+xml");
    assert_eq!(cc, "no-cache");
    assert!(
        body.starts_with("<svg") && body.contains(">no builds</text>"),
        "{body}"
    );
    assert!(body.contains(">CircleCI</text>"));

    // Passing after a successful pipeline on the default branch.
    let (_, wf) = s.run(SLUG, json!({"branch": "main"})).await;
    assert_eq!(wf["status"], "success");
    let (_, _, _, body) = badge(&s, "/git/acme/app.svg").await;
    assert!(body.contains(">passing</text>"), "{body}");
    assert!(!body.contains("build"), "no job names: {body}");

    // A failing branch: its badge fails, the default branch's still passes.
    repo.git(&["checkout", "-q", "-b", "broken"]);
    repo.commit(
        &[(
            ".circleci/config.yml",
            &machine_config(&[("build", "exit 1")], "      - build\n"),
        )],
        "break it",
    );
    let (_, wf) = s.run(SLUG, json!({"branch": "broken"})).await;
    assert_eq!(wf["status"], "failed");
    let (_, _, _, body) = badge(&s, "/git/acme/app.svg?branch=broken").await;
    assert!(body.contains(">failed</text>"), "{body}");
    let (_, _, _, body) = badge(&s, "/git/acme/app.svg?branch=main&style=shield").await;
    assert!(body.contains(">passing</text>"), "{body}");
    let (_, _, _, body) = badge(&s, "/git/acme/app.svg?branch=nothing-here").await;
    assert!(body.contains(">no builds</text>"), "{body}");
    // The long vcs name works as in CircleCI's URLs.
    let (status, _, _, _) = badge(&s, "/git/acme/app.svg?branch=").await;
    assert_eq!(status, 200);

    // Unknown projects and paths that are not badges are 404s; other routes
    // are not shadowed.
    for path in [
        "/git/acme/none.svg",
        "/svn/acme/app.svg",
        "/git/acme/app",
        "/git/acme/.svg",
    ] {
        let (status, _, _, body) = badge(&s, path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let r = s
        .call("post", "/git/acme/app.svg", common::Who::Anonymous, None)
        .await;
    assert_eq!(r.status, 404);
    let r = s.get("/api/v2/nonexistent").await;
    r.expect(404);
    r.message();
    let r = s.get("/api/v2/me").await;
    r.expect(200);
    s.stop().await;
}

/// A generic (post-receive) webhook push of `git_ref` at `sha`.
async fn push(s: &TestServer, project_id: &str, secret: &str, git_ref: &str, sha: &str) -> Value {
    let body = format!(
        r#"{{"ref":"{git_ref}","before":"{}","after":"{sha}","repository":"x","name":"app","pusher":"alice","message":"a change"}}"#,
        "0".repeat(40),
    );
    let r = s
        .request(
            "post",
            &format!("/hooks/generic/{project_id}"),
            common::Who::Anonymous,
        )
        .header("content-type", "application/json")
        .header(
            "X-Orrery-Signature",
            format!("sha256={}", orrery_vcs::sign(body.as_bytes(), secret)),
        )
        .body(body);
    let r = TestServer::send(r).await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text());
    json!({"status": r.status, "body": r.json})
}

async fn pipelines(s: &TestServer) -> usize {
    let r = s.get(&format!("/api/v2/project/{SLUG}/pipeline")).await;
    r.expect(200);
    r.json["items"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn branch_and_tag_rules_filter_webhooks() {
    let s = TestServer::start().await;
    let mut a = admin(&s).await;
    let repo = s.repo(
        "app",
        &machine_config(&[("build", "true")], "      - build\n"),
    );
    let created = s.create_project(SLUG, &repo, json!({})).await;
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["webhook"]["secret"].as_str().unwrap().to_string();
    let sha = repo.head();
    repo.git(&["tag", "v1.0"]);
    repo.git(&["tag", "nightly"]);
    let settings = format!("/projects/{SLUG}/settings");
    let rules = format!("{settings}/rules");
    let csrf = Browser::csrf(&a.get(&settings).await);

    // Bad rules are refused.
    for (form, says) in [
        (vec![("tags", "sometimes")], "not a tag rule"),
        (
            vec![("tags", "patterns"), ("tag_patterns", "")],
            "at least one pattern",
        ),
        (
            vec![("branches", "has space"), ("tags", "all")],
            "not a branch pattern",
        ),
    ] {
        let mut with = form.clone();
        with.push(("_csrf", &csrf));
        let r = a.post(&rules, &with).await;
        assert_eq!(r.status, 400, "{form:?}: {}", r.body);
        assert!(r.body.contains(says), "{form:?}: {}", r.body);
    }

    // Only main and release/*; no tags.
    let r = a
        .post(
            &rules,
            &[
                ("_csrf", &csrf),
                ("branches", "main\r\n\r\nrelease/*\r\n"),
                ("tags", "none"),
                ("tag_patterns", ""),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = a.get(&settings).await;
    assert!(page.body.contains("main\nrelease/*"), "{}", page.body);
    assert!(
        page.body.contains("value=\"none\" checked"),
        "{}",
        page.body
    );
    let stored = s.server.state.store.project(&id).await.unwrap().unwrap();
    let v: Value = serde_json::from_str(&stored.settings).unwrap();
    assert_eq!(v["build_rules"]["branches"], json!(["main", "release/*"]));

    let r = push(&s, &id, &secret, "refs/heads/feature", &sha).await;
    assert_eq!(r["status"], 200, "{r}");
    assert!(
        r["body"]["message"].as_str().unwrap().contains("Skipped"),
        "{r}"
    );
    let r = push(&s, &id, &secret, "refs/tags/v1.0", &sha).await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(pipelines(&s).await, 0, "nothing built");
    let r = push(&s, &id, &secret, "refs/heads/main", &sha).await;
    assert_eq!(r["status"], 201, "{r}");
    repo.git(&["branch", "release/2"]);
    let r = push(&s, &id, &secret, "refs/heads/release/2", &sha).await;
    assert_eq!(r["status"], 201, "{r}");
    assert_eq!(pipelines(&s).await, 2);
    // The API is not filtered.
    repo.git(&["branch", "feature"]);
    s.trigger(SLUG, json!({"branch": "feature"})).await;
    assert_eq!(pipelines(&s).await, 3);

    // Tags by pattern; every branch again.
    let r = a
        .post(
            &rules,
            &[
                ("_csrf", &csrf),
                ("branches", ""),
                ("tags", "patterns"),
                ("tag_patterns", "v*"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = push(&s, &id, &secret, "refs/tags/nightly", &sha).await;
    assert_eq!(r["status"], 200, "{r}");
    let r = push(&s, &id, &secret, "refs/tags/v1.0", &sha).await;
    assert_eq!(r["status"], 201, "{r}");
    let r = push(&s, &id, &secret, "refs/heads/feature", &sha).await;
    assert_eq!(r["status"], 201, "{r}");
    poll("five pipelines", || async {
        (pipelines(&s).await == 5).then_some(())
    })
    .await;
    s.stop().await;
}
