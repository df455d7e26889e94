//! Helpers shared by the integration tests: fixtures, signing, headers.

#![allow(dead_code)]

use std::path::PathBuf;

use orrery_vcs::{Event, Headers, Provider, PullRequest, Push, WebhookError, sign};

/// The secret every test signs with (GitHub's documentation uses it too).
pub const SECRET: &str = "It's a Secret to Everybody";

/// The bytes of `tests/fixtures/<path>`.
pub fn fixture(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// A fixture as JSON, to make variants of it.
pub fn fixture_json(path: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(path)).expect("fixture is JSON")
}

/// `sha256=<hex>` for `body` under [`SECRET`].
pub fn signature(body: &[u8]) -> String {
    format!("sha256={}", sign(body, SECRET))
}

/// Verifies and parses with the given headers, as an endpoint would.
pub fn receive(
    provider: Provider,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Event, WebhookError> {
    orrery_vcs::verify_and_parse(provider, &Headers(headers), body, SECRET)
}

/// The push inside an event, or a panic saying what the event was.
pub fn push(event: Result<Event, WebhookError>) -> Push {
    match event {
        Ok(Event::Push(p)) => p,
        other => panic!("expected a push, got {other:?}"),
    }
}

/// The pull request inside an event, or a panic saying what the event was.
pub fn pull_request(event: Result<Event, WebhookError>) -> PullRequest {
    match event {
        Ok(Event::PullRequest(p)) => p,
        other => panic!("expected a pull request, got {other:?}"),
    }
}

/// The reason of an ignored event, or a panic saying what the event was.
pub fn ignored(event: Result<Event, WebhookError>) -> String {
    match event {
        Ok(Event::Ignored(reason)) => reason,
        other => panic!("expected an ignored event, got {other:?}"),
    }
}

/// Sets the value at a dotted JSON path (creating nothing: the parent must exist).
pub fn set(v: &mut serde_json::Value, path: &str, value: serde_json::Value) {
    let (parent, key) = match path.rsplit_once('.') {
        Some((parent, key)) => (Some(parent), key),
        None => (None, path),
    };
    let mut target = &mut *v;
    if let Some(parent) = parent {
        for step in parent.split('.') {
            target = target
                .get_mut(step)
                .unwrap_or_else(|| panic!("no `{step}` on the way to `{path}`"));
        }
    }
    target
        .as_object_mut()
        .unwrap_or_else(|| panic!("the parent of `{path}` is not an object"))
        .insert(key.to_string(), value);
}

/// Removes the value at a dotted JSON path.
pub fn remove(v: &mut serde_json::Value, path: &str) {
    let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
    let mut target = &mut *v;
    for step in parent.split('.').filter(|s| !s.is_empty()) {
        target = target.get_mut(step).expect("parent exists");
    }
    target
        .as_object_mut()
        .expect("parent is an object")
        .remove(key)
        .unwrap_or_else(|| panic!("`{path}` was not there"));
}

/// A JSON value as body bytes.
pub fn bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialisable")
}
