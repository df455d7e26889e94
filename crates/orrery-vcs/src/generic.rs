//! The generic webhook: Orrery's own small JSON, sent by a git `post-receive`
//! hook on any git server ([`post_receive_hook_script`]).
//!
//! The body is one ref update:
//!
//! ```json
//! {"ref": "refs/heads/main", "before": "<sha>", "after": "<sha>",
//!  "repository": "<clone url>", "name": "project", "pusher": "alice",
//!  "message": "Subject\n\nBody", "author_name": "Alice", "author_email": "a@example.com",
//!  "timestamp": "2024-05-01T12:00:00+02:00"}
//! ```
//!
//! `ref`, `after` and `repository` are required; the rest may be absent or empty.
//! Without `name`, the repository's name is the last path segment of its URL
//! without `.git`. Without `message` there is no [`Commit`]. An `after` of all
//! zeros is a deleted ref and is ignored. The body is authenticated by
//! `X-Orrery-Signature: sha256=<hex HMAC-SHA256 of the body>`.

use serde_json::Value;

use crate::error::WebhookError;
use crate::github::deleted;
use crate::model::{Commit, Event, Headers, Push};
use crate::payload::{
    RefKind, before_sha, decode, is_zero_sha, opt_nonempty, opt_str, req_full_ref, req_sha,
    req_str, split_message,
};

/// The `post-receive` hook script; see [`post_receive_hook_script`].
const POST_RECEIVE: &str = include_str!("post-receive.sh");

/// A POSIX shell script to install as `hooks/post-receive` in a bare repository:
/// for every branch or tag pushed it sends the generic webhook, signed with the
/// shared secret, to the Orrery server.
///
/// Its settings (`ORRERY_WEBHOOK_URL`, `ORRERY_WEBHOOK_SECRET`, and optionally
/// `ORRERY_REPO_URL`, `ORRERY_REPO_NAME`, `ORRERY_PUSHER`) come from the
/// environment or the repository's git config (`orrery.webhookUrl`,
/// `orrery.webhookSecret`, `orrery.repoUrl`, `orrery.repoName`), as the comment at
/// its top explains. It needs `git`, `awk`, `openssl` and `curl`.
pub fn post_receive_hook_script() -> &'static str {
    POST_RECEIVE
}

/// Parses a generic webhook.
pub(crate) fn parse(headers: &Headers<'_>, body: &[u8]) -> Result<Event, WebhookError> {
    let v = decode(headers, body)?;
    let git_ref = match req_full_ref(&v, "ref")? {
        RefKind::Ref(r) => r,
        RefKind::Other(full) => {
            return Ok(Event::Ignored(format!(
                "ref `{full}` is neither a branch nor a tag"
            )));
        }
    };
    if opt_str(&v, "after").is_some_and(is_zero_sha) {
        return Ok(Event::Ignored(deleted(&git_ref)));
    }
    let revision = req_sha(&v, "after")?;
    let repo_url = req_str(&v, "repository")?;
    let repo_full_name = match opt_nonempty(&v, "name") {
        Some(name) => name.to_string(),
        None => name_from_url(repo_url)
            .ok_or_else(|| WebhookError::field("name", "a non-empty string"))?,
    };
    Ok(Event::Push(Push {
        repo_url: repo_url.to_string(),
        repo_full_name,
        git_ref,
        revision,
        before: before_sha(&v, "before"),
        commit: commit(&v),
        pusher: opt_nonempty(&v, "pusher").map(str::to_string),
        forced: false,
    }))
}

fn commit(v: &Value) -> Option<Commit> {
    let message = opt_nonempty(v, "message")?;
    let (subject, body) = split_message(message);
    let text = |path| opt_nonempty(v, path).map(str::to_string);
    Some(Commit {
        subject,
        body,
        url: None,
        author_name: text("author_name"),
        author_email: text("author_email"),
        timestamp: text("timestamp"),
    })
}

/// The last path segment of a clone URL or path, without `.git`
/// (`git@host:team/app.git` → `app`).
fn name_from_url(url: &str) -> Option<String> {
    let trimmed = url.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    let last = trimmed.rsplit(['/', ':']).next()?;
    (!last.is_empty()).then(|| last.to_string())
}

#[cfg(test)]
mod tests {
    use super::name_from_url;

    #[test]
    fn names_from_urls() {
        assert_eq!(name_from_url("/srv/git/app.git").as_deref(), Some("app"));
        assert_eq!(name_from_url("/srv/git/app.git/").as_deref(), Some("app"));
        assert_eq!(
            name_from_url("git@host:team/app.git").as_deref(),
            Some("app")
        );
        assert_eq!(name_from_url("git@host:app").as_deref(), Some("app"));
        assert_eq!(name_from_url("https://h/x/y").as_deref(), Some("y"));
        assert_eq!(name_from_url("/").as_deref(), None);
        assert_eq!(name_from_url(".git").as_deref(), None);
    }
}
