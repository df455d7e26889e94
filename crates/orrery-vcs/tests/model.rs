//! The public data types: provider names, ref helpers, error classes, and the
//! JSON form of events (what the server stores and shows).

use orrery_vcs::{Commit, Event, GitRef, Headers, Provider, Push, UnknownProvider, WebhookError};
use serde_json::json;

#[test]
fn provider_names() {
    for p in Provider::ALL {
        assert_eq!(p.as_str().parse::<Provider>(), Ok(p));
        assert_eq!(p.to_string(), p.as_str());
        assert_eq!(serde_json::to_value(p).unwrap(), json!(p.as_str()));
    }
    assert_eq!("Forgejo".parse::<Provider>(), Ok(Provider::Gitea));
    assert_eq!("GitHub".parse::<Provider>(), Ok(Provider::GitHub));
    assert_eq!(
        "bitbucket".parse::<Provider>(),
        Err(UnknownProvider("bitbucket".into()))
    );
}

#[test]
fn headers_are_case_insensitive_and_first_wins() {
    let pairs = [("x-github-event", " push "), ("X-GitHub-Event", "ping")];
    assert_eq!(Headers(&pairs).get("X-GITHUB-EVENT"), Some("push"));
    assert_eq!(Headers(&pairs).get("X-Other"), None);
}

#[test]
fn refs_and_messages() {
    let tag = GitRef::Tag("v1".into());
    assert_eq!(
        (tag.name(), tag.full().as_str(), tag.is_tag()),
        ("v1", "refs/tags/v1", true)
    );
    let branch = GitRef::Branch("a/b".into());
    assert_eq!(
        (branch.full().as_str(), branch.is_tag()),
        ("refs/heads/a/b", false)
    );
    let commit = Commit {
        subject: "S".into(),
        body: "B".into(),
        ..Commit::default()
    };
    assert_eq!(commit.message(), "S\n\nB");
}

#[test]
fn error_classes() {
    assert!(WebhookError::NoSecret.is_unauthenticated());
    assert!(WebhookError::BadSignature("h".into()).is_unauthenticated());
    assert!(WebhookError::MissingSignature("h".into()).is_unauthenticated());
    assert!(!WebhookError::InvalidJson("x".into()).is_unauthenticated());
    let large = WebhookError::BodyTooLarge { size: 2, limit: 1 };
    assert!(large.is_too_large() && !large.is_unauthenticated());
}

#[test]
fn events_as_json() {
    let push = Event::Push(Push {
        repo_url: "https://example.com/a/b.git".into(),
        repo_full_name: "a/b".into(),
        git_ref: GitRef::Branch("main".into()),
        revision: "a".repeat(40),
        before: None,
        commit: None,
        pusher: Some("me".into()),
        forced: false,
    });
    let value = serde_json::to_value(&push).unwrap();
    assert_eq!(value["type"], "push");
    assert_eq!(
        value["event"]["git_ref"],
        json!({"kind": "branch", "name": "main"})
    );
    assert_eq!(serde_json::from_value::<Event>(value).unwrap(), push);
    assert_eq!(
        serde_json::to_value(Event::Ping).unwrap(),
        json!({"type": "ping"})
    );
    assert_eq!(
        serde_json::to_value(Event::Ignored("why".into())).unwrap(),
        json!({"type": "ignored", "event": "why"})
    );
}
