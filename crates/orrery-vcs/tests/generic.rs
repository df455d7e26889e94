//! The generic webhook's JSON and signature, and CircleCI's `[ci skip]` rule.

mod common;

use common::{SECRET, ignored, push, signature};
use orrery_vcs::{Commit, Event, GitRef, Headers, Provider, WebhookError, should_skip, verify};

const AFTER: &str = "0123456789abcdef0123456789abcdef01234567";

/// Verifies and parses a generic webhook signed with the test secret.
fn generic(body: &str) -> Result<Event, WebhookError> {
    let sig = signature(body.as_bytes());
    common::receive(
        Provider::Generic,
        &[("X-Orrery-Signature", &sig)],
        body.as_bytes(),
    )
}

#[test]
fn full_body() {
    let body = format!(
        r#"{{"ref":"refs/heads/feature/x","before":"{}","after":"{}","repository":"ssh://git@git.example.org/srv/app.git","name":"team/app","pusher":"alice","message":"Subject line\n\nBody \"quoted\" \\ here","author_name":"Alice","author_email":"alice@example.org","timestamp":"2024-05-01T12:00:00+02:00"}}"#,
        "f".repeat(40),
        AFTER.to_uppercase(),
    );
    let p = push(generic(&body));
    assert_eq!(p.repo_url, "ssh://git@git.example.org/srv/app.git");
    assert_eq!(p.repo_full_name, "team/app");
    assert_eq!(p.git_ref, GitRef::Branch("feature/x".into()));
    assert_eq!(p.revision, AFTER);
    assert_eq!(p.before, Some("f".repeat(40)));
    assert_eq!(
        p.commit,
        Some(Commit {
            subject: "Subject line".into(),
            body: "Body \"quoted\" \\ here".into(),
            url: None,
            author_name: Some("Alice".into()),
            author_email: Some("alice@example.org".into()),
            timestamp: Some("2024-05-01T12:00:00+02:00".into()),
        })
    );
    assert_eq!(p.pusher.as_deref(), Some("alice"));
    assert!(!p.forced);
}

#[test]
fn minimal_body() {
    let body =
        format!(r#"{{"ref":"refs/tags/v1","after":"{AFTER}","repository":"/srv/git/app.git/"}}"#);
    let p = push(generic(&body));
    assert_eq!(p.git_ref, GitRef::Tag("v1".into()));
    // The name comes from the URL when the body has none.
    assert_eq!(p.repo_full_name, "app");
    assert_eq!(p.before, None);
    assert_eq!(p.commit, None);
    assert_eq!(p.pusher, None);
    // Empty optional fields count as absent.
    let body = format!(
        r#"{{"ref":"refs/tags/v1","after":"{AFTER}","repository":"/srv/app","name":"","message":"","pusher":""}}"#
    );
    let p = push(generic(&body));
    assert_eq!(
        (p.repo_full_name.as_str(), p.commit, p.pusher),
        ("app", None, None)
    );
}

#[test]
fn deletions_and_errors() {
    let zero = "0".repeat(40);
    let body = format!(
        r#"{{"ref":"refs/heads/old","before":"{AFTER}","after":"{zero}","repository":"/srv/app"}}"#
    );
    assert_eq!(ignored(generic(&body)), "branch `old` deleted");

    let missing = |body: &str| match generic(body) {
        Err(WebhookError::MissingField { path, .. }) => path,
        other => panic!("{body}: {other:?}"),
    };
    assert_eq!(
        missing(r#"{"ref":"refs/heads/x","repository":"/srv/app"}"#),
        "after"
    );
    assert_eq!(
        missing(r#"{"ref":"refs/heads/x","after":"HEAD","repository":"/srv/app"}"#),
        "after"
    );
    assert_eq!(
        missing(&format!(r#"{{"ref":"refs/heads/x","after":"{AFTER}"}}"#)),
        "repository"
    );
    assert_eq!(
        missing(&format!(r#"{{"after":"{AFTER}","repository":"/srv/app"}}"#)),
        "ref"
    );
    assert_eq!(
        missing(&format!(
            r#"{{"ref":"refs/heads/x","after":"{AFTER}","repository":"/"}}"#
        )),
        "name"
    );
}

#[test]
fn signature_is_checked() {
    let body = format!(r#"{{"ref":"refs/heads/x","after":"{AFTER}","repository":"/srv/app"}}"#);
    let sig = signature(body.as_bytes());
    let check = |headers: &[(&str, &str)], body: &[u8]| {
        verify(Provider::Generic, &Headers(headers), body, SECRET)
    };
    assert_eq!(
        check(&[("x-orrery-signature", &sig)], body.as_bytes()),
        Ok(())
    );
    assert_eq!(
        check(
            &[("X-Orrery-Signature", &sig)],
            body.replace("/srv", "/tmp").as_bytes()
        ),
        Err(WebhookError::BadSignature("X-Orrery-Signature".into()))
    );
    assert_eq!(
        check(&[("X-Hub-Signature-256", &sig)], body.as_bytes()),
        Err(WebhookError::MissingSignature("X-Orrery-Signature".into()))
    );
}

#[test]
fn ci_skip_markers() {
    assert!(should_skip("[ci skip] docs"));
    assert!(should_skip("docs [skip ci]"));
    assert!(should_skip("Subject\n\nThe body says [ci skip]."));
    assert!(should_skip("Subject\n\nThe body says [skip ci]."));
    assert!(!should_skip("Subject"));
    assert!(!should_skip(""));
    // Case-sensitive, and exactly these spellings.
    assert!(!should_skip("[CI SKIP]"));
    assert!(!should_skip("[Skip CI]"));
    assert!(!should_skip("[ci-skip]"));
    assert!(!should_skip("[skip-ci]"));
    assert!(!should_skip("[ skip ci ]"));
    assert!(!should_skip("ci skip"));
}

#[test]
fn ci_skip_window_is_250_characters() {
    let marker = "[skip ci]";
    // Ending exactly at character 250: counts.
    let at_end = format!("{}{marker}", "x".repeat(250 - marker.len()));
    assert_eq!(at_end.chars().count(), 250);
    assert!(should_skip(&at_end));
    // One character later it straddles the window: does not count.
    assert!(!should_skip(&format!(
        "{}{marker}",
        "x".repeat(251 - marker.len())
    )));
    assert!(!should_skip(&format!(
        "Subject\n\n{}{marker}",
        "y".repeat(300)
    )));
    // Characters, not bytes: 240 two-byte characters leave room for the marker.
    assert!(should_skip(&format!("{}[ci skip]", "é".repeat(240))));
    assert!(!should_skip(&format!("{}[ci skip]", "é".repeat(242))));
}
