//! Secrets at rest: webhook secrets, VCS tokens and variable values are
//! stored encrypted, API and runner tokens hashed, and the key that opens
//! them is private to the server. Checked on the database's bytes.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{ADMIN_TOKEN, TestServer, database_bytes, machine_config};
use orrery_store::Role;
use serde_json::json;

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_encrypted_or_hashed_at_rest() {
    let s = TestServer::start().await;
    let repo = s.repo(
        "app",
        &machine_config(
            &[("build", "echo \"$DEPLOY_PASSWORD\" | wc -c")],
            "      - build\n",
        ),
    );
    let vcs_token = "ghp_VCS_TOKEN_IN_CLEAR_0123456789";
    let p = s
        .create_project(
            "gh/acme/app",
            &repo,
            json!({"vcs_token": vcs_token, "vcs_api_url": "http://127.0.0.1:9/unused"}),
        )
        .await;
    let webhook_secret = p["webhook"]["secret"].as_str().unwrap().to_string();
    let env_value = "ENV_VALUE_IN_CLEAR_abcdef";
    s.post(
        "/api/v2/project/gh/acme/app/envvar",
        &json!({"name": "DEPLOY_PASSWORD", "value": env_value}),
    )
    .await
    .expect(201);
    let viewer_token = s.user_token("vera", Role::Viewer).await;
    let runner_token = {
        let r = s
            .post(
                "/api/v3/runner/token",
                &json!({"resource_class": "orrery/default", "nickname": "n"}),
            )
            .await;
        r.expect(201);
        r.json["token"].as_str().unwrap().to_string()
    };
    // A job that reads the variable, so that it travels through the engine.
    let (_, wf) = s.run("gh/acme/app", json!({})).await;
    assert_eq!(wf["status"], "success");
    // The stored secrets still work.
    let r = s.get("/api/v2/project/gh/acme/app/webhook").await;
    assert_eq!(r.json["secret"], webhook_secret.as_str());
    let r = s
        .call("get", "/api/v2/me", common::Who::Token(&viewer_token), None)
        .await;
    r.expect(200);
    let r = s
        .get("/api/v2/project/gh/acme/app/envvar/DEPLOY_PASSWORD")
        .await;
    assert_eq!(r.json["value"], "xxxxcdef");

    let db = database_bytes(&s);
    for (what, clear) in [
        ("the webhook secret", webhook_secret.as_str()),
        ("the VCS token", vcs_token),
        ("the variable's value", env_value),
        ("the admin's API token", ADMIN_TOKEN),
        ("a viewer's API token", viewer_token.as_str()),
        ("a runner token", runner_token.as_str()),
    ] {
        assert!(!contains(&db, clear), "{what} is stored in clear");
    }
    // Tokens are kept as their SHA-256.
    for token in [ADMIN_TOKEN, viewer_token.as_str(), runner_token.as_str()] {
        assert!(
            contains(&db, &orrery_server::secrets::hash_token(token)),
            "the token's hash is stored"
        );
    }
    // The key is the server's alone.
    let key = s.data_dir().join("secret.key");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let key_bytes = std::fs::read(&key).unwrap();
    assert!(
        !db.windows(32).any(|w| w == key_bytes.as_slice()),
        "the key is not in the database"
    );

    // After a restart on the same data directory, everything still opens:
    // the key is loaded, not made anew, and the admin is not made twice.
    let data = s.data_dir();
    let TestServer { server, dir, .. } = s;
    server.shutdown_token().cancel();
    server.wait().await;
    let s2 = TestServer::start_with(|c| {
        c.data_dir = data.clone();
        c.admin_token = Some("another-admin-token-456".into());
    })
    .await;
    assert!(s2.server.first_start.is_none());
    let r = s2.get("/api/v2/project/gh/acme/app/webhook").await;
    r.expect(200);
    assert_eq!(r.json["secret"], webhook_secret.as_str());
    let r = s2
        .call(
            "get",
            "/api/v2/me",
            common::Who::Token("another-admin-token-456"),
            None,
        )
        .await;
    r.expect(401);
    s2.stop().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn first_start() {
    // A short admin token is refused.
    let dir = tempfile::tempdir().unwrap();
    let mut config = orrery_server::ServerConfig::new(
        dir.path().to_path_buf(),
        std::sync::Arc::new(orrery_config::NoOrbs),
    );
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.embedded_slots = 0;
    config.admin_token = Some("short".into());
    assert!(orrery_server::Server::start(config.clone()).await.is_err());
    // Without one, a random token is made and shown once.
    config.admin_token = None;
    let server = orrery_server::Server::start(config).await.unwrap();
    let first = server.first_start.clone().unwrap();
    assert_eq!(first.login, "admin");
    let token = first.token.unwrap();
    assert!(token.len() >= 32);
    let http = orrery_server::client::http_client(std::time::Duration::from_secs(10)).unwrap();
    let r = http
        .get(format!("http://{}/api/v2/me", server.addr))
        .header("Circle-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.shutdown_token().cancel();
    server.wait().await;
}
