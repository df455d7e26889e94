//! GitLab webhooks: project and group hooks, and system hooks.
//!
//! The event kind is the `X-Gitlab-Event` header (`Push Hook`, `Tag Push Hook`,
//! `Merge Request Hook`, `System Hook`...). A system hook names its event in the
//! body's `object_kind` (`push`, `tag_push`, `merge_request`) and otherwise sends
//! the same payloads, so it is read the same way.
//!
//! GitLab has no ping: its "Test" button sends a real push or merge request
//! payload built from the project's latest commit, which starts a pipeline like
//! any other push.
//!
//! Merge request actions are put in GitHub's words: `open` → `opened`, `reopen` →
//! `reopened`, `close` and `merge` → `closed` (GitHub reports a merged pull
//! request as closed), `update` → `synchronize` when it carries new commits (GitLab
//! then sends `oldrev`) and `edited` otherwise; approvals keep GitLab's words.

use serde_json::Value;

use crate::error::WebhookError;
use crate::github::deleted;
use crate::model::{Event, Headers, PullRequest, Push};
use crate::payload::{
    RefKind, at, before_sha, commit_from, decode, first_nonempty, flag, is_zero_sha, opt_nonempty,
    opt_str, req_full_ref, req_ref_name, req_sha, req_str, req_u64, sha_value,
};

/// The header naming a GitLab event.
pub(crate) const EVENT_HEADER: &str = "X-Gitlab-Event";

/// Parses a GitLab webhook.
pub(crate) fn parse(headers: &Headers<'_>, body: &[u8]) -> Result<Event, WebhookError> {
    let kind = headers
        .get(EVENT_HEADER)
        .ok_or_else(|| WebhookError::MissingEventHeader(EVENT_HEADER.to_string()))?;
    if !is_hook_name(kind) {
        return Err(WebhookError::UnknownEvent(kind.to_string()));
    }
    let v = decode(headers, body)?;
    match kind {
        "Push Hook" | "Tag Push Hook" => push(&v),
        "Merge Request Hook" => merge_request(&v),
        "System Hook" => match first_nonempty(&v, &["object_kind", "event_name"]) {
            Some("push" | "tag_push") => push(&v),
            Some("merge_request") => merge_request(&v),
            Some(other) => Ok(Event::Ignored(format!(
                "GitLab system hook `{other}` events do not start pipelines"
            ))),
            None => Err(WebhookError::field("object_kind", "a non-empty string")),
        },
        other => Ok(Event::Ignored(format!(
            "GitLab `{other}` events do not start pipelines"
        ))),
    }
}

/// Whether `kind` has the form of a GitLab event name: words of letters and
/// digits ending in ` Hook`. Any such name is a valid kind; the ones Orrery does
/// not act on are ignored.
fn is_hook_name(kind: &str) -> bool {
    kind.len() <= 64
        && kind.len() > " Hook".len()
        && kind.ends_with(" Hook")
        && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
}

/// A push or tag push.
fn push(v: &Value) -> Result<Event, WebhookError> {
    let git_ref = match req_full_ref(v, "ref")? {
        RefKind::Ref(r) => r,
        RefKind::Other(full) => {
            return Ok(Event::Ignored(format!(
                "ref `{full}` is neither a branch nor a tag"
            )));
        }
    };
    if opt_str(v, "after").is_some_and(is_zero_sha) {
        return Ok(Event::Ignored(deleted(&git_ref)));
    }
    // `checkout_sha` is the commit the ref points to; for an annotated tag
    // `after` is the tag object instead.
    let revision = match opt_str(v, "checkout_sha") {
        Some(sha) => sha_value(Some(sha), "checkout_sha")?,
        None => req_sha(v, "after")?,
    };
    let repo_url = first_nonempty(v, &["project.git_http_url", "repository.git_http_url"])
        .ok_or_else(|| WebhookError::field("project.git_http_url", "a non-empty string"))?;
    let commit = at(v, "commits")
        .and_then(Value::as_array)
        .and_then(|commits| {
            commits
                .iter()
                .find(|c| opt_str(c, "id").is_some_and(|id| id.eq_ignore_ascii_case(&revision)))
                .or_else(|| commits.last())
        })
        .filter(|c| c.is_object())
        .map(commit_from);
    Ok(Event::Push(Push {
        repo_url: repo_url.to_string(),
        repo_full_name: req_str(v, "project.path_with_namespace")?.to_string(),
        git_ref,
        revision,
        before: before_sha(v, "before"),
        commit,
        pusher: opt_nonempty(v, "user_username").map(str::to_string),
        forced: false,
    }))
}

/// A merge request event.
fn merge_request(v: &Value) -> Result<Event, WebhookError> {
    let action = match req_str(v, "object_attributes.action")? {
        "open" => "opened",
        "reopen" => "reopened",
        "close" | "merge" => "closed",
        "update" if at(v, "object_attributes.oldrev").is_some() => "synchronize",
        "update" => "edited",
        other => other,
    };
    let source = req_u64(v, "object_attributes.source_project_id")?;
    let target = req_u64(v, "object_attributes.target_project_id")?;
    let repo_url = first_nonempty(
        v,
        &[
            "object_attributes.target.git_http_url",
            "project.git_http_url",
        ],
    )
    .ok_or_else(|| WebhookError::field("project.git_http_url", "a non-empty string"))?;
    let repo_full_name = first_nonempty(
        v,
        &[
            "object_attributes.target.path_with_namespace",
            "project.path_with_namespace",
        ],
    )
    .ok_or_else(|| WebhookError::field("project.path_with_namespace", "a non-empty string"))?;
    let title = opt_str(v, "object_attributes.title")
        .ok_or_else(|| WebhookError::field("object_attributes.title", "a string"))?;
    Ok(Event::PullRequest(PullRequest {
        repo_url: repo_url.to_string(),
        repo_full_name: repo_full_name.to_string(),
        number: req_u64(v, "object_attributes.iid")?,
        action: action.to_string(),
        head_ref: req_ref_name(v, "object_attributes.source_branch")?,
        head_sha: req_sha(v, "object_attributes.last_commit.id")?,
        base_ref: req_ref_name(v, "object_attributes.target_branch")?,
        title: title.to_string(),
        url: req_str(v, "object_attributes.url")?.to_string(),
        is_fork: source != target,
        head_repo_url: opt_nonempty(v, "object_attributes.source.git_http_url").map(str::to_string),
        draft: flag(v, "object_attributes.draft") || flag(v, "object_attributes.work_in_progress"),
        sender: opt_nonempty(v, "user.username").map(str::to_string),
    }))
}
