//! GitHub webhooks, and the GitHub-shaped payloads that Gitea and Forgejo send too.
//!
//! The event kind is the `X-GitHub-Event` header. Orrery acts on `push` (branches
//! and tags) and `pull_request`, answers `ping`, and ignores every other kind with
//! a reason.
//!
//! **Tags are built from the `push` event, not from `create`.** Pushing a tag sends
//! both a `push` (with `ref: refs/tags/<name>` and the commit) and a `create`
//! (with only the ref's name). CircleCI starts tag pipelines from the push, and so
//! does Orrery: acting on both would run every tag pipeline twice, and `create`
//! does not even say which commit the tag points to. A new branch likewise arrives
//! as a `push` with `created: true`. So `create` is always [`Event::Ignored`].

use serde_json::Value;

use crate::error::WebhookError;
use crate::model::{Event, GitRef, Headers, PullRequest, Push};
use crate::payload::{
    RefKind, at, before_sha, commit_from, decode, first_nonempty, flag, is_sha, is_zero_sha,
    opt_nonempty, opt_str, req_full_ref, req_ref_name, req_sha, req_str, req_u64,
};

/// The header naming a GitHub event.
pub(crate) const EVENT_HEADER: &str = "X-GitHub-Event";

/// Whose flavour of the GitHub payloads is being read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    GitHub,
    Gitea,
}

impl Dialect {
    fn name(self) -> &'static str {
        match self {
            Dialect::GitHub => "GitHub",
            Dialect::Gitea => "Gitea",
        }
    }
}

/// Parses a GitHub webhook.
pub(crate) fn parse(headers: &Headers<'_>, body: &[u8]) -> Result<Event, WebhookError> {
    let kind = headers
        .get(EVENT_HEADER)
        .ok_or_else(|| WebhookError::MissingEventHeader(EVENT_HEADER.to_string()))?;
    if !is_event_name(kind) {
        return Err(WebhookError::UnknownEvent(kind.to_string()));
    }
    let v = decode(headers, body)?;
    match kind {
        "ping" => Ok(Event::Ping),
        "push" => push(&v, Dialect::GitHub),
        "pull_request" => pull_request(&v, Dialect::GitHub),
        "create" => Ok(create(&v)),
        other => Ok(ignored_kind(Dialect::GitHub, other)),
    }
}

/// Whether `kind` has the form of a GitHub or Gitea event name (`push`,
/// `pull_request_review_comment`): lower-case letters, digits and underscores.
/// Any such name is a valid kind; the ones Orrery does not act on are ignored,
/// so a kind GitHub adds later is not an error.
pub(crate) fn is_event_name(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 64
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The [`Event::Ignored`] for an event kind Orrery does not act on.
pub(crate) fn ignored_kind(dialect: Dialect, kind: &str) -> Event {
    Event::Ignored(format!(
        "{} `{kind}` events do not start pipelines",
        dialect.name()
    ))
}

/// A `create` event: always ignored (see the module documentation).
pub(crate) fn create(v: &Value) -> Event {
    let what = opt_str(v, "ref_type").unwrap_or("ref");
    let name = opt_str(v, "ref").unwrap_or("");
    Event::Ignored(format!(
        "`create` events are not built: the new {what} `{name}` is built from its `push` event"
    ))
}

/// A `push` event: a branch or a tag, or a deletion (ignored).
pub(crate) fn push(v: &Value, dialect: Dialect) -> Result<Event, WebhookError> {
    let git_ref = match req_full_ref(v, "ref")? {
        RefKind::Ref(r) => r,
        RefKind::Other(full) => {
            return Ok(Event::Ignored(format!(
                "ref `{full}` is neither a branch nor a tag"
            )));
        }
    };
    if flag(v, "deleted") || opt_str(v, "after").is_some_and(is_zero_sha) {
        return Ok(Event::Ignored(deleted(&git_ref)));
    }

    // `head_commit.id` is the commit to build. For a branch it equals `after`;
    // for an annotated tag `after` may name the tag object, while the head
    // commit is the tagged commit, which is what a pipeline checks out.
    let explicit_head = at(v, "head_commit").filter(|h| h.is_object());
    let revision = match explicit_head
        .and_then(|c| opt_str(c, "id"))
        .filter(|id| is_sha(id) && !is_zero_sha(id))
    {
        Some(id) => id.to_ascii_lowercase(),
        None => req_sha(v, "after")?,
    };
    let head = explicit_head.or_else(|| commit_in_list(v, &revision));
    let pusher_paths: &[&str] = match dialect {
        Dialect::GitHub => &["pusher.name", "sender.login"],
        Dialect::Gitea => &[
            "pusher.login",
            "pusher.username",
            "sender.login",
            "sender.username",
        ],
    };
    Ok(Event::Push(Push {
        repo_url: req_str(v, "repository.clone_url")?.to_string(),
        repo_full_name: req_str(v, "repository.full_name")?.to_string(),
        git_ref,
        revision,
        before: before_sha(v, "before"),
        commit: head.map(commit_from),
        pusher: first_nonempty(v, pusher_paths).map(str::to_string),
        forced: flag(v, "forced"),
    }))
}

/// The reason given for a deleted branch or tag.
pub(crate) fn deleted(git_ref: &GitRef) -> String {
    let what = if git_ref.is_tag() { "tag" } else { "branch" };
    format!("{what} `{}` deleted", git_ref.name())
}

/// The head commit's object when there is no `head_commit` (Gitea before 1.17):
/// the entry of `commits` whose id is the revision, else the last entry
/// (`commits` is oldest first).
fn commit_in_list<'v>(v: &'v Value, revision: &str) -> Option<&'v Value> {
    let commits = at(v, "commits")?.as_array()?;
    commits
        .iter()
        .find(|c| opt_str(c, "id").is_some_and(|id| id.eq_ignore_ascii_case(revision)))
        .or_else(|| commits.last())
        .filter(|c| c.is_object())
}

/// A `pull_request` event.
pub(crate) fn pull_request(v: &Value, dialect: Dialect) -> Result<Event, WebhookError> {
    let action = req_str(v, "action")?;
    // Gitea says `synchronized` where GitHub says `synchronize`.
    let action = match action {
        "synchronized" => "synchronize",
        other => other,
    };
    let base_full_name = first_nonempty(
        v,
        &["pull_request.base.repo.full_name", "repository.full_name"],
    )
    .ok_or_else(|| WebhookError::field("repository.full_name", "a non-empty string"))?;
    let repo_url = first_nonempty(
        v,
        &["pull_request.base.repo.clone_url", "repository.clone_url"],
    )
    .ok_or_else(|| WebhookError::field("repository.clone_url", "a non-empty string"))?;
    let title = opt_str(v, "pull_request.title")
        .ok_or_else(|| WebhookError::field("pull_request.title", "a string"))?;
    let head_repo = at(v, "pull_request.head.repo").filter(|r| r.is_object());
    Ok(Event::PullRequest(PullRequest {
        repo_url: repo_url.to_string(),
        repo_full_name: base_full_name.to_string(),
        number: req_u64(v, "pull_request.number")?,
        action: action.to_string(),
        head_ref: req_ref_name(v, "pull_request.head.ref")?,
        head_sha: req_sha(v, "pull_request.head.sha")?,
        base_ref: req_ref_name(v, "pull_request.base.ref")?,
        title: title.to_string(),
        url: req_str(v, "pull_request.html_url")?.to_string(),
        is_fork: is_fork(v, head_repo, base_full_name, dialect),
        head_repo_url: head_repo
            .and_then(|r| opt_nonempty(r, "clone_url"))
            .map(str::to_string),
        draft: flag(v, "pull_request.draft"),
        sender: first_nonempty(v, &["sender.login", "sender.username"]).map(str::to_string),
    }))
}

/// Whether the head branch is in another repository. Any sign of it counts: no
/// head repository (deleted), another full name, or another repository id.
fn is_fork(v: &Value, head_repo: Option<&Value>, base_full_name: &str, dialect: Dialect) -> bool {
    let Some(head_repo) = head_repo else {
        return true;
    };
    if opt_str(head_repo, "full_name") != Some(base_full_name) {
        return true;
    }
    let differ = |a: &str, b: &str| match (
        at(v, a).and_then(Value::as_u64),
        at(v, b).and_then(Value::as_u64),
    ) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    };
    differ("pull_request.head.repo.id", "pull_request.base.repo.id")
        || (dialect == Dialect::Gitea
            && differ("pull_request.head.repo_id", "pull_request.base.repo_id"))
}
