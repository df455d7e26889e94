//! Gitea and Forgejo webhooks.
//!
//! The event kind is `X-Forgejo-Event` or `X-Gitea-Event` (Forgejo sends both;
//! either is read). The payloads are GitHub's shapes with small differences that
//! the shared reader in [`crate::github`] handles: `pusher.login` instead of
//! `pusher.name`, no `head_commit` before Gitea 1.17, `synchronized` for new
//! commits on a pull request, and `repo_id` beside each pull request branch.
//! As with GitHub, `create` is ignored: a new tag is built from its `push`.
//! Gitea reports a pull request's labels, assignees and milestones under the
//! `pull_request` kind too; they arrive as [`Event::PullRequest`] with their own
//! action (`label_updated`, `assigned`...) for the engine to pass over.

use crate::error::WebhookError;
use crate::github::{self, Dialect};
use crate::model::{Event, Headers};
use crate::payload::decode;

/// The event headers read, in order.
pub(crate) const EVENT_HEADERS: [&str; 2] = ["X-Forgejo-Event", "X-Gitea-Event"];

/// Parses a Gitea or Forgejo webhook.
pub(crate) fn parse(headers: &Headers<'_>, body: &[u8]) -> Result<Event, WebhookError> {
    let kind = EVENT_HEADERS
        .iter()
        .find_map(|h| headers.get(h))
        .ok_or_else(|| WebhookError::MissingEventHeader(EVENT_HEADERS[1].to_string()))?;
    if !github::is_event_name(kind) {
        return Err(WebhookError::UnknownEvent(kind.to_string()));
    }
    let v = decode(headers, body)?;
    match kind {
        "push" => github::push(&v, Dialect::Gitea),
        "pull_request" => github::pull_request(&v, Dialect::Gitea),
        "create" => Ok(github::create(&v)),
        other => Ok(github::ignored_kind(Dialect::Gitea, other)),
    }
}
