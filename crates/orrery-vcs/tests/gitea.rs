//! Gitea and Forgejo webhooks, on payloads written from Gitea's payload types
//! (`tests/fixtures/gitea/`) and variants of them, and the three signature
//! headers they may carry.

mod common;

use common::{
    SECRET, bytes, fixture, fixture_json, ignored, pull_request, push, remove, set, signature,
};
use orrery_vcs::{
    Event, GitRef, Headers, Provider, WebhookError, parse, should_skip, sign, verify,
};
use serde_json::json;

/// Verifies and parses a Gitea webhook with Gitea's headers.
fn gitea(event: &str, body: &[u8]) -> Result<Event, WebhookError> {
    let sig = sign(body, SECRET);
    common::receive(
        Provider::Gitea,
        &[
            ("X-Gitea-Event", event),
            ("X-Gitea-Event-Type", event),
            ("X-Gitea-Signature", &sig),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

#[test]
fn branch_push() {
    let p = push(gitea("push", &fixture("gitea/push.json")));
    assert_eq!(p.repo_url, "http://localhost:3000/gitea/webhooks.git");
    assert_eq!(p.repo_full_name, "gitea/webhooks");
    assert_eq!(p.git_ref, GitRef::Branch("develop".into()));
    assert_eq!(p.revision, "bffeb74224043ba2feb48d137756c8a9331c449a");
    assert_eq!(
        p.before.as_deref(),
        Some("28e1879d029cb852e4844d9c718537df08844e03")
    );
    let commit = p.commit.expect("a head commit");
    assert_eq!(commit.subject, "Webhooks Yay!");
    assert_eq!(commit.body, "The body says \"why\".");
    assert_eq!(commit.author_email.as_deref(), Some("someone@gitea.io"));
    assert_eq!(
        commit.timestamp.as_deref(),
        Some("2017-03-13T13:52:11-04:00")
    );
    assert_eq!(p.pusher.as_deref(), Some("gitea"));
    assert!(!p.forced);
}

#[test]
fn push_without_head_commit_uses_the_commit_list() {
    // Gitea before 1.17 sends no `head_commit`.
    let p = push(gitea("push", &fixture("gitea/push-old.json")));
    assert_eq!(p.revision, "4f2b5bcb0a4c5d0e8d3cf44e2b2a3f6c7ac8b9d1");
    let commit = p.commit.expect("the commit named by `after`");
    assert_eq!(commit.subject, "Deploy to the new cluster");
    assert_eq!(commit.author_name.as_deref(), Some("Carol"));
    assert!(should_skip(&commit.message()));
    assert_eq!(p.pusher.as_deref(), Some("carol"));
}

#[test]
fn tag_push_and_deletion() {
    let mut v = fixture_json("gitea/push.json");
    set(&mut v, "ref", json!("refs/tags/v2.0.0"));
    set(
        &mut v,
        "before",
        json!("0000000000000000000000000000000000000000"),
    );
    let p = push(gitea("push", &bytes(&v)));
    assert_eq!(p.git_ref, GitRef::Tag("v2.0.0".into()));
    assert_eq!(p.before, None);

    set(
        &mut v,
        "after",
        json!("0000000000000000000000000000000000000000"),
    );
    set(&mut v, "head_commit", json!(null));
    set(&mut v, "commits", json!([]));
    assert_eq!(ignored(gitea("push", &bytes(&v))), "tag `v2.0.0` deleted");
}

#[test]
fn pusher_login_falls_back() {
    let mut v = fixture_json("gitea/push.json");
    remove(&mut v, "pusher.login");
    set(&mut v, "pusher.username", json!("old-style"));
    assert_eq!(
        push(gitea("push", &bytes(&v))).pusher.as_deref(),
        Some("old-style")
    );
    set(&mut v, "pusher", json!(null));
    assert_eq!(
        push(gitea("push", &bytes(&v))).pusher.as_deref(),
        Some("gitea")
    );
}

#[test]
fn pull_request_from_a_fork() {
    let pr = pull_request(gitea("pull_request", &fixture("gitea/pull_request.json")));
    assert_eq!(pr.repo_url, "https://codeberg.example/alice/widget.git");
    assert_eq!(pr.repo_full_name, "alice/widget");
    assert_eq!(pr.number, 12);
    assert_eq!(pr.action, "opened");
    assert_eq!(pr.head_ref, "frobnicate");
    assert_eq!(pr.head_sha, "2c9d9e1f4b7a0c3e5d8f1a2b3c4d5e6f7a8b9c0d");
    assert_eq!(pr.base_ref, "main");
    assert_eq!(pr.title, "Add a widget frobnicator");
    assert_eq!(pr.url, "https://codeberg.example/alice/widget/pulls/12");
    assert!(pr.is_fork);
    assert_eq!(
        pr.head_repo_url.as_deref(),
        Some("https://codeberg.example/bob/widget.git")
    );
    assert!(!pr.draft);
    assert_eq!(pr.sender.as_deref(), Some("bob"));
}

#[test]
fn pull_request_variants() {
    // New commits: Gitea says `synchronized`.
    let mut v = fixture_json("gitea/pull_request.json");
    set(&mut v, "action", json!("synchronized"));
    assert_eq!(
        pull_request(gitea("pull_request", &bytes(&v))).action,
        "synchronize"
    );

    // A branch of the same repository.
    let base = v["pull_request"]["base"]["repo"].clone();
    set(&mut v, "pull_request.head.repo", base);
    set(&mut v, "pull_request.head.repo_id", json!(21));
    assert!(!pull_request(gitea("pull_request", &bytes(&v))).is_fork);
    // The same name but another `repo_id`: a fork after all.
    set(&mut v, "pull_request.head.repo_id", json!(99));
    assert!(pull_request(gitea("pull_request", &bytes(&v))).is_fork);

    // Gitea 1.21+ drafts.
    let mut v = fixture_json("gitea/pull_request.json");
    set(&mut v, "pull_request.draft", json!(true));
    assert!(pull_request(gitea("pull_request", &bytes(&v))).draft);
}

#[test]
fn create_and_other_kinds() {
    let reason = ignored(gitea("create", &fixture("gitea/create.json")));
    assert!(reason.contains("tag `v0.3.0`"), "{reason}");
    assert_eq!(
        ignored(gitea("issue_comment", b"{}")),
        "Gitea `issue_comment` events do not start pipelines"
    );
    assert_eq!(
        parse(Provider::Gitea, &Headers(&[]), b"{}"),
        Err(WebhookError::MissingEventHeader("X-Gitea-Event".into()))
    );
    assert_eq!(
        parse(
            Provider::Gitea,
            &Headers(&[("X-Gitea-Event", "Push")]),
            b"{}"
        ),
        Err(WebhookError::UnknownEvent("Push".into()))
    );
}

#[test]
fn forgejo_headers() {
    let body = fixture("gitea/push.json");
    let sig = sign(&body, SECRET);
    let headers = [
        ("X-Forgejo-Event", "push"),
        ("X-Forgejo-Signature", sig.as_str()),
    ];
    let p = push(common::receive(Provider::Gitea, &headers, &body));
    assert_eq!(p.git_ref, GitRef::Branch("develop".into()));
}

#[test]
fn signature_headers() {
    let body = fixture("gitea/push.json");
    let hex = sign(&body, SECRET);
    let prefixed = signature(&body);
    let check = |headers: &[(&str, &str)], body: &[u8]| {
        verify(Provider::Gitea, &Headers(headers), body, SECRET)
    };

    assert_eq!(check(&[("X-Gitea-Signature", &hex)], &body), Ok(()));
    assert_eq!(check(&[("X-Forgejo-Signature", &hex)], &body), Ok(()));
    assert_eq!(check(&[("X-Hub-Signature-256", &prefixed)], &body), Ok(()));

    let bad = |name: &str| Err(WebhookError::BadSignature(name.into()));
    // Gitea's header is bare hex; GitHub's has the prefix.
    assert_eq!(
        check(&[("X-Gitea-Signature", &prefixed)], &body),
        bad("X-Gitea-Signature")
    );
    assert_eq!(
        check(&[("X-Hub-Signature-256", &hex)], &body),
        bad("X-Hub-Signature-256")
    );
    // A Gitea hook without a secret sends an empty signature.
    assert_eq!(
        check(&[("X-Gitea-Signature", "")], &body),
        bad("X-Gitea-Signature")
    );
    let mut tampered = body.clone();
    tampered[10] ^= 0x20;
    assert_eq!(
        check(&[("X-Gitea-Signature", &hex)], &tampered),
        bad("X-Gitea-Signature")
    );
    assert_eq!(
        verify(
            Provider::Gitea,
            &Headers(&[("X-Gitea-Signature", &hex)]),
            &body,
            "other"
        ),
        bad("X-Gitea-Signature")
    );
    assert_eq!(
        check(&[("X-Gitea-Event", "push")], &body),
        Err(WebhookError::MissingSignature("X-Gitea-Signature".into()))
    );
}
