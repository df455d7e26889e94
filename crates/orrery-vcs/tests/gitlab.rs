//! GitLab webhooks, on payloads written from GitLab's documented examples
//! (`tests/fixtures/gitlab/`) and variants of them: push, tag push, merge
//! requests, system hooks, and the token check.

mod common;

use common::{SECRET, bytes, fixture, fixture_json, ignored, pull_request, push, remove, set};
use orrery_vcs::{Event, GitRef, Headers, Provider, WebhookError, parse, verify};
use serde_json::json;

const HEAD: &str = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7";

/// Verifies and parses a GitLab webhook carrying the test secret as its token.
fn gitlab(event: &str, body: &[u8]) -> Result<Event, WebhookError> {
    common::receive(
        Provider::GitLab,
        &[
            ("X-Gitlab-Event", event),
            ("X-Gitlab-Token", SECRET),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

#[test]
fn branch_push() {
    let p = push(gitlab("Push Hook", &fixture("gitlab/push.json")));
    assert_eq!(p.repo_url, "http://example.com/mike/diaspora.git");
    assert_eq!(p.repo_full_name, "mike/diaspora");
    assert_eq!(p.git_ref, GitRef::Branch("master".into()));
    assert_eq!(p.revision, HEAD);
    assert_eq!(
        p.before.as_deref(),
        Some("95790bf891e76fee5e1747ab589903a6a1f80f22")
    );
    let commit = p.commit.expect("a head commit");
    assert_eq!(commit.subject, "fixed readme");
    assert_eq!(commit.body, "The install steps were out of date.");
    assert_eq!(commit.author_name.as_deref(), Some("GitLab dev user"));
    assert_eq!(
        commit.timestamp.as_deref(),
        Some("2012-01-03T23:36:29+02:00")
    );
    assert_eq!(
        commit.url.as_deref(),
        Some(format!("http://example.com/mike/diaspora/commit/{HEAD}").as_str())
    );
    assert_eq!(p.pusher.as_deref(), Some("jsmith"));
    assert!(!p.forced);
}

#[test]
fn head_commit_is_found_by_sha() {
    // The commit matching `checkout_sha` is the head, wherever it is in the list.
    let mut v = fixture_json("gitlab/push.json");
    let mut commits = v["commits"].as_array().unwrap().clone();
    commits.reverse();
    set(&mut v, "commits", json!(commits));
    assert_eq!(
        push(gitlab("Push Hook", &bytes(&v)))
            .commit
            .unwrap()
            .subject,
        "fixed readme"
    );
    // Without `checkout_sha` the revision is `after`; without a matching commit
    // the last one describes it.
    remove(&mut v, "checkout_sha");
    set(&mut v, "after", json!("c".repeat(40)));
    let p = push(gitlab("Push Hook", &bytes(&v)));
    assert_eq!(p.revision, "c".repeat(40));
    assert_eq!(
        p.commit.unwrap().subject,
        "Update Catalan translation to e38cb41."
    );
    // The project's URL first, the repository's when the project has none.
    remove(&mut v, "project.git_http_url");
    set(
        &mut v,
        "repository.git_http_url",
        json!("https://mirror.example.com/mike/diaspora.git"),
    );
    assert_eq!(
        push(gitlab("Push Hook", &bytes(&v))).repo_url,
        "https://mirror.example.com/mike/diaspora.git"
    );
}

#[test]
fn tag_push_builds_the_checkout_sha() {
    let p = push(gitlab("Tag Push Hook", &fixture("gitlab/tag_push.json")));
    assert_eq!(p.git_ref, GitRef::Tag("v1.0.0".into()));
    // `after` is the annotated tag's object; `checkout_sha` the tagged commit.
    assert_eq!(p.revision, "5937ac0a7beb003549fc5fd26fc247adbce4a52e");
    assert_eq!(p.before, None);
    assert_eq!(p.commit, None);
    assert_eq!(p.repo_full_name, "jsmith/example");
}

#[test]
fn deletions_are_ignored() {
    let mut v = fixture_json("gitlab/push.json");
    set(
        &mut v,
        "after",
        json!("0000000000000000000000000000000000000000"),
    );
    set(&mut v, "checkout_sha", json!(null));
    set(&mut v, "commits", json!([]));
    assert_eq!(
        ignored(gitlab("Push Hook", &bytes(&v))),
        "branch `master` deleted"
    );
    let mut v = fixture_json("gitlab/tag_push.json");
    set(
        &mut v,
        "after",
        json!("0000000000000000000000000000000000000000"),
    );
    set(&mut v, "checkout_sha", json!(null));
    assert_eq!(
        ignored(gitlab("Tag Push Hook", &bytes(&v))),
        "tag `v1.0.0` deleted"
    );
}

#[test]
fn merge_request_opened() {
    let pr = pull_request(gitlab(
        "Merge Request Hook",
        &fixture("gitlab/merge_request.json"),
    ));
    assert_eq!(
        pr.repo_url,
        "http://example.com/awesome_space/awesome_project.git"
    );
    assert_eq!(pr.repo_full_name, "awesome_space/awesome_project");
    assert_eq!(pr.number, 1);
    assert_eq!(pr.action, "opened");
    assert_eq!(pr.head_ref, "ms-viewport");
    assert_eq!(pr.head_sha, HEAD);
    assert_eq!(pr.base_ref, "master");
    assert_eq!(pr.title, "MS-Viewport");
    assert_eq!(pr.url, "http://example.com/diaspora/merge_requests/1");
    assert!(!pr.is_fork);
    assert_eq!(
        pr.head_repo_url.as_deref(),
        Some("http://example.com/awesome_space/awesome_project.git")
    );
    assert!(!pr.draft);
    assert_eq!(pr.sender.as_deref(), Some("root"));
}

#[test]
fn merge_request_actions_in_githubs_words() {
    let cases = [
        ("open", None, "opened"),
        ("reopen", None, "reopened"),
        ("close", None, "closed"),
        ("merge", None, "closed"),
        ("update", Some("a".repeat(40)), "synchronize"),
        ("update", None, "edited"),
        ("approved", None, "approved"),
    ];
    for (action, oldrev, expected) in cases {
        let mut v = fixture_json("gitlab/merge_request.json");
        set(&mut v, "object_attributes.action", json!(action));
        if let Some(oldrev) = oldrev {
            set(&mut v, "object_attributes.oldrev", json!(oldrev));
        }
        let pr = pull_request(gitlab("Merge Request Hook", &bytes(&v)));
        assert_eq!(pr.action, expected, "{action}");
    }
}

#[test]
fn merge_request_draft_and_fork() {
    let mut v = fixture_json("gitlab/merge_request.json");
    set(&mut v, "object_attributes.draft", json!(null));
    set(&mut v, "object_attributes.work_in_progress", json!(true));
    assert!(pull_request(gitlab("Merge Request Hook", &bytes(&v))).draft);

    let mut v = fixture_json("gitlab/merge_request.json");
    set(&mut v, "object_attributes.source_project_id", json!(15));
    set(
        &mut v,
        "object_attributes.source.git_http_url",
        json!("http://example.com/mallory/awesome_project.git"),
    );
    let pr = pull_request(gitlab("Merge Request Hook", &bytes(&v)));
    assert!(pr.is_fork);
    assert_eq!(
        pr.head_repo_url.as_deref(),
        Some("http://example.com/mallory/awesome_project.git")
    );
    assert_eq!(
        pr.repo_url,
        "http://example.com/awesome_space/awesome_project.git"
    );

    // Without both project ids there is no telling: refused, not guessed.
    let mut v = fixture_json("gitlab/merge_request.json");
    remove(&mut v, "object_attributes.source_project_id");
    assert_eq!(
        gitlab("Merge Request Hook", &bytes(&v)),
        Err(WebhookError::MissingField {
            path: "object_attributes.source_project_id".into(),
            expected: "a non-negative integer",
        })
    );
    let mut v = fixture_json("gitlab/merge_request.json");
    remove(&mut v, "object_attributes.last_commit");
    assert!(matches!(
        gitlab("Merge Request Hook", &bytes(&v)),
        Err(WebhookError::MissingField { path, .. }) if path == "object_attributes.last_commit.id"
    ));
}

#[test]
fn system_hooks_and_other_kinds() {
    let p = push(gitlab("System Hook", &fixture("gitlab/push.json")));
    assert_eq!(p.revision, HEAD);
    let p = push(gitlab("System Hook", &fixture("gitlab/tag_push.json")));
    assert!(p.git_ref.is_tag());
    let pr = pull_request(gitlab("System Hook", &fixture("gitlab/merge_request.json")));
    assert_eq!(pr.number, 1);
    let reason = ignored(gitlab(
        "System Hook",
        br#"{"event_name": "repository_update", "changes": []}"#,
    ));
    assert_eq!(
        reason,
        "GitLab system hook `repository_update` events do not start pipelines"
    );
    assert!(matches!(
        gitlab("System Hook", b"{}"),
        Err(WebhookError::MissingField { path, .. }) if path == "object_kind"
    ));
    assert_eq!(
        ignored(gitlab("Issue Hook", br#"{"object_kind": "issue"}"#)),
        "GitLab `Issue Hook` events do not start pipelines"
    );
}

#[test]
fn unknown_and_missing_kinds() {
    let body = fixture("gitlab/push.json");
    for kind in ["push", "Hook", " Hook", "Push Hook!", ""] {
        assert_eq!(
            parse(
                Provider::GitLab,
                &Headers(&[("X-Gitlab-Event", kind)]),
                &body
            ),
            Err(WebhookError::UnknownEvent(kind.trim().into())),
            "{kind:?}"
        );
    }
    assert_eq!(
        parse(Provider::GitLab, &Headers(&[]), &body),
        Err(WebhookError::MissingEventHeader("X-Gitlab-Event".into()))
    );
}

#[test]
fn tokens_are_checked() {
    let body = fixture("gitlab/push.json");
    let check = |token: Option<&str>, secret: &str| {
        let mut headers = vec![("X-Gitlab-Event", "Push Hook")];
        if let Some(token) = token {
            headers.push(("x-gitlab-token", token));
        }
        verify(Provider::GitLab, &Headers(&headers), &body, secret)
    };
    assert_eq!(check(Some(SECRET), SECRET), Ok(()));
    let bad = Err(WebhookError::BadSignature("X-Gitlab-Token".into()));
    assert_eq!(check(Some("wrong"), SECRET), bad);
    assert_eq!(check(Some(&SECRET[..SECRET.len() - 1]), SECRET), bad);
    assert_eq!(check(Some(&format!("{SECRET}x")), SECRET), bad);
    assert_eq!(check(Some(""), SECRET), bad);
    assert_eq!(
        check(None, SECRET),
        Err(WebhookError::MissingSignature("X-Gitlab-Token".into()))
    );
    // An empty secret would accept an empty token: refused as a configuration error.
    assert_eq!(check(Some(""), ""), Err(WebhookError::NoSecret));
}
