//! GitHub webhooks, on GitHub's own example payloads (`tests/fixtures/github/`,
//! from `@octokit/webhooks-examples`) and variants made from them: each is signed
//! here, verified and parsed; wrong, missing and stale signatures are refused.

mod common;

use common::{
    SECRET, bytes, fixture, fixture_json, ignored, pull_request, push, remove, set, signature,
};
use orrery_vcs::{
    Commit, Event, GitRef, Headers, MAX_BODY_BYTES, Provider, WebhookError, parse, sign, verify,
};
use serde_json::json;

const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const PR_SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

/// Verifies and parses a GitHub webhook signed with the test secret.
fn github(event: &str, body: &[u8]) -> Result<Event, WebhookError> {
    let sig = signature(body);
    common::receive(
        Provider::GitHub,
        &[
            ("X-GitHub-Event", event),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

#[test]
fn signature_matches_githubs_documented_example() {
    // From GitHub's "Validating webhook deliveries".
    assert_eq!(
        sign(b"Hello, World!", SECRET),
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
}

#[test]
fn branch_push() {
    let p = push(github("push", &fixture("github/push-branch.json")));
    assert_eq!(p.repo_url, "https://github.com/Codertocat/Hello-World.git");
    assert_eq!(p.repo_full_name, "Codertocat/Hello-World");
    assert_eq!(p.git_ref, GitRef::Branch("master".into()));
    assert_eq!(p.revision, SHA);
    // A new branch: `before` is all zeros.
    assert_eq!(p.before, None);
    assert_eq!(
        p.commit,
        Some(Commit {
            subject: "Initial commit".into(),
            body: String::new(),
            url: Some(format!(
                "https://github.com/Codertocat/Hello-World/commit/{SHA}"
            )),
            author_name: Some("Codertocat".into()),
            author_email: Some("21031067+Codertocat@users.noreply.github.com".into()),
            timestamp: Some("2019-05-15T15:19:25Z".into()),
        })
    );
    assert_eq!(p.pusher.as_deref(), Some("Codertocat"));
    assert!(!p.forced);
}

#[test]
fn tag_push() {
    let p = push(github("push", &fixture("github/push-tag.json")));
    assert_eq!(p.git_ref, GitRef::Tag("simple-tag".into()));
    assert_eq!(p.git_ref.full(), "refs/tags/simple-tag");
    assert_eq!(p.revision, SHA);
    assert_eq!(p.commit.unwrap().subject, "Adding a .gitignore file");
}

#[test]
fn deleted_tag_is_ignored() {
    let reason = ignored(github("push", &fixture("github/push-tag-deleted.json")));
    assert_eq!(reason, "tag `simple-tag` deleted");
}

#[test]
fn deleted_branch_is_ignored() {
    let mut v = fixture_json("github/push-branch.json");
    set(&mut v, "deleted", json!(true));
    set(&mut v, "created", json!(false));
    set(&mut v, "before", json!(SHA));
    set(
        &mut v,
        "after",
        json!("0000000000000000000000000000000000000000"),
    );
    set(&mut v, "head_commit", json!(null));
    assert_eq!(
        ignored(github("push", &bytes(&v))),
        "branch `master` deleted"
    );
}

#[test]
fn forced_push_with_message_body() {
    let mut v = fixture_json("github/push-branch.json");
    let before = "a".repeat(40);
    set(&mut v, "forced", json!(true));
    set(&mut v, "created", json!(false));
    set(&mut v, "before", json!(before));
    set(
        &mut v,
        "head_commit.message",
        json!("Rewrite history\r\n\r\nBecause we can.\n  Really.\n"),
    );
    let p = push(github("push", &bytes(&v)));
    assert!(p.forced);
    assert_eq!(p.before, Some(before));
    let commit = p.commit.unwrap();
    assert_eq!(commit.subject, "Rewrite history");
    assert_eq!(commit.body, "Because we can.\n  Really.");
}

#[test]
fn annotated_tag_builds_the_tagged_commit() {
    // For an annotated tag `after` may be the tag object; the head commit is the
    // commit to check out.
    let mut v = fixture_json("github/push-tag.json");
    set(&mut v, "after", json!("b".repeat(40)));
    assert_eq!(push(github("push", &bytes(&v))).revision, SHA);
    // Without a head commit, `after` is all there is.
    set(&mut v, "head_commit", json!(null));
    let p = push(github("push", &bytes(&v)));
    assert_eq!(p.revision, "b".repeat(40));
    assert_eq!(p.commit, None);
}

#[test]
fn pusher_falls_back_to_sender() {
    let mut v = fixture_json("github/push-branch.json");
    remove(&mut v, "pusher");
    set(&mut v, "sender.login", json!("someone"));
    assert_eq!(
        push(github("push", &bytes(&v))).pusher.as_deref(),
        Some("someone")
    );
}

#[test]
fn pull_request_opened() {
    let pr = pull_request(github(
        "pull_request",
        &fixture("github/pull_request-opened.json"),
    ));
    assert_eq!(pr.repo_url, "https://github.com/Codertocat/Hello-World.git");
    assert_eq!(pr.repo_full_name, "Codertocat/Hello-World");
    assert_eq!(pr.number, 2);
    assert_eq!(pr.action, "opened");
    assert_eq!(pr.head_ref, "changes");
    assert_eq!(pr.head_sha, PR_SHA);
    assert_eq!(pr.base_ref, "master");
    assert_eq!(pr.title, "Update the README with new information.");
    assert_eq!(pr.url, "https://github.com/Codertocat/Hello-World/pull/2");
    assert!(!pr.is_fork);
    assert_eq!(
        pr.head_repo_url.as_deref(),
        Some("https://github.com/Codertocat/Hello-World.git")
    );
    assert!(!pr.draft);
    assert_eq!(pr.sender.as_deref(), Some("Codertocat"));
}

#[test]
fn pull_request_synchronize_and_draft() {
    let pr = pull_request(github(
        "pull_request",
        &fixture("github/pull_request-synchronize.json"),
    ));
    assert_eq!(pr.action, "synchronize");
    assert_eq!(pr.head_sha, PR_SHA);
    let pr = pull_request(github(
        "pull_request",
        &fixture("github/pull_request-converted_to_draft.json"),
    ));
    assert_eq!(pr.action, "converted_to_draft");
    assert!(pr.draft);
}

#[test]
fn pull_request_from_a_fork() {
    let mut v = fixture_json("github/pull_request-opened.json");
    set(
        &mut v,
        "pull_request.head.repo.full_name",
        json!("mallory/Hello-World"),
    );
    set(&mut v, "pull_request.head.repo.id", json!(1));
    set(
        &mut v,
        "pull_request.head.repo.clone_url",
        json!("https://github.com/mallory/Hello-World.git"),
    );
    let pr = pull_request(github("pull_request", &bytes(&v)));
    assert!(pr.is_fork);
    assert_eq!(
        pr.head_repo_url.as_deref(),
        Some("https://github.com/mallory/Hello-World.git")
    );
    assert_eq!(pr.repo_url, "https://github.com/Codertocat/Hello-World.git");

    // Same name, another repository id: still a fork.
    let mut v = fixture_json("github/pull_request-opened.json");
    set(&mut v, "pull_request.head.repo.id", json!(1));
    assert!(pull_request(github("pull_request", &bytes(&v))).is_fork);

    // The fork was deleted: GitHub sends `head.repo: null`.
    let mut v = fixture_json("github/pull_request-opened.json");
    set(&mut v, "pull_request.head.repo", json!(null));
    let pr = pull_request(github("pull_request", &bytes(&v)));
    assert!(pr.is_fork);
    assert_eq!(pr.head_repo_url, None);
}

#[test]
fn create_ping_and_other_kinds() {
    let reason = ignored(github("create", &fixture("github/create-tag.json")));
    assert!(reason.contains("tag `simple-tag`"), "{reason}");
    assert!(reason.contains("`push`"), "{reason}");
    assert_eq!(
        github("ping", &fixture("github/ping.json")),
        Ok(Event::Ping)
    );
    assert_eq!(
        ignored(github("issues", &fixture("github/issues-opened.json"))),
        "GitHub `issues` events do not start pipelines"
    );
}

#[test]
fn other_refs_are_ignored_and_bad_refs_refused() {
    let mut v = fixture_json("github/push-branch.json");
    set(&mut v, "ref", json!("refs/notes/commits"));
    assert_eq!(
        ignored(github("push", &bytes(&v))),
        "ref `refs/notes/commits` is neither a branch nor a tag"
    );
    for bad in [
        "refs/heads/--upload-pack=touch x",
        "refs/heads/a..b",
        "refs/heads/",
        "main",
        "refs/tags/v1\n",
    ] {
        set(&mut v, "ref", json!(bad));
        assert!(
            matches!(github("push", &bytes(&v)), Err(WebhookError::MissingField { ref path, .. }) if path == "ref"),
            "{bad:?}"
        );
    }
}

#[test]
fn missing_fields_are_named() {
    let cases: [(&str, &str, &str); 6] = [
        (
            "pull_request",
            "github/pull_request-opened.json",
            "pull_request.head.sha",
        ),
        (
            "pull_request",
            "github/pull_request-opened.json",
            "pull_request.number",
        ),
        (
            "pull_request",
            "github/pull_request-opened.json",
            "pull_request.head.ref",
        ),
        ("pull_request", "github/pull_request-opened.json", "action"),
        ("push", "github/push-branch.json", "repository.clone_url"),
        ("push", "github/push-branch.json", "ref"),
    ];
    for (event, file, path) in cases {
        let mut v = fixture_json(file);
        remove(&mut v, path);
        match github(event, &bytes(&v)) {
            Err(WebhookError::MissingField { path: p, .. }) => assert_eq!(p, path),
            other => panic!("{path}: {other:?}"),
        }
    }
    // A SHA that is not one is refused too.
    let mut v = fixture_json("github/pull_request-opened.json");
    set(&mut v, "pull_request.head.sha", json!("HEAD~1"));
    let err = github("pull_request", &bytes(&v)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `pull_request.head.sha` is missing or is not a commit SHA (40 or 64 hex digits)"
    );
}

#[test]
fn form_encoded_payloads() {
    // GitHub's default content type: `payload=<url-encoded JSON>`, signed as sent.
    let json = fixture("github/push-branch.json");
    let mut body = b"payload=".to_vec();
    for &b in &json {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => body.push(b),
            b' ' => body.push(b'+'),
            _ => body.extend_from_slice(format!("%{b:02X}").as_bytes()),
        }
    }
    let sig = signature(&body);
    let headers = [
        ("x-github-event", "push"),
        ("x-hub-signature-256", sig.as_str()),
        (
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
    ];
    let form = push(common::receive(Provider::GitHub, &headers, &body));
    assert_eq!(form, push(github("push", &json)));

    let sig = signature(b"other=1");
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-Hub-Signature-256", sig.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    assert!(matches!(
        common::receive(Provider::GitHub, &headers, b"other=1"),
        Err(WebhookError::InvalidJson(_))
    ));
}

#[test]
fn signatures_are_checked() {
    let body = fixture("github/push-branch.json");
    let good = signature(&body);
    let check = |sig: Option<&str>, body: &[u8], secret: &str| {
        let mut headers = vec![("X-GitHub-Event", "push")];
        if let Some(sig) = sig {
            headers.push(("X-Hub-Signature-256", sig));
        }
        verify(Provider::GitHub, &Headers(&headers), body, secret)
    };
    assert_eq!(check(Some(&good), &body, SECRET), Ok(()));
    // Hex digits of either case.
    assert_eq!(
        check(
            Some(&good.to_uppercase().replace("SHA256=", "sha256=")),
            &body,
            SECRET
        ),
        Ok(())
    );

    let bad = Err(WebhookError::BadSignature("X-Hub-Signature-256".into()));
    assert_eq!(check(Some(&good), &body, "another secret"), bad);
    let mut tampered = body.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    assert_eq!(check(Some(&good), &tampered, SECRET), bad);
    assert_eq!(check(Some(&good[..good.len() - 2]), &body, SECRET), bad);
    assert_eq!(check(Some(&good["sha256=".len()..]), &body, SECRET), bad);
    assert_eq!(
        check(Some(&good.replace("sha256=", "sha1=")), &body, SECRET),
        bad
    );
    assert_eq!(check(Some(""), &body, SECRET), bad);
    assert_eq!(
        check(None, &body, SECRET),
        Err(WebhookError::MissingSignature("X-Hub-Signature-256".into()))
    );
    // The legacy SHA-1 header alone is not enough.
    let headers = [(
        "X-Hub-Signature",
        "sha1=0000000000000000000000000000000000000000",
    )];
    assert!(matches!(
        verify(Provider::GitHub, &Headers(&headers), &body, SECRET),
        Err(WebhookError::MissingSignature(_))
    ));
    assert_eq!(check(Some(&good), &body, ""), Err(WebhookError::NoSecret));
    assert!(check(None, &body, "").unwrap_err().is_unauthenticated());
}

#[test]
fn bad_requests() {
    let body = fixture("github/push-branch.json");
    let parse_with =
        |headers: &[(&str, &str)], body: &[u8]| parse(Provider::GitHub, &Headers(headers), body);
    assert_eq!(
        parse_with(&[], &body),
        Err(WebhookError::MissingEventHeader("X-GitHub-Event".into()))
    );
    assert_eq!(
        parse_with(&[("X-GitHub-Event", "Push Hook")], &body),
        Err(WebhookError::UnknownEvent("Push Hook".into()))
    );
    for not_json in [&b"not json"[..], b"", b"[1, 2]", b"\"push\"", b"{\"ref\": "] {
        assert!(
            matches!(
                parse_with(&[("X-GitHub-Event", "push")], not_json),
                Err(WebhookError::InvalidJson(_))
            ),
            "{not_json:?}"
        );
    }
    let huge = vec![b' '; MAX_BODY_BYTES + 1];
    let too_large = Err(WebhookError::BodyTooLarge {
        size: MAX_BODY_BYTES + 1,
        limit: MAX_BODY_BYTES,
    });
    assert_eq!(parse_with(&[("X-GitHub-Event", "push")], &huge), too_large);
    let sig = signature(&huge);
    let err = verify(
        Provider::GitHub,
        &Headers(&[("X-Hub-Signature-256", &sig)]),
        &huge,
        SECRET,
    )
    .unwrap_err();
    assert!(err.is_too_large());
}
