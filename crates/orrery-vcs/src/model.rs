//! The data a webhook turns into: which provider sent it, its headers, and the
//! normalised [`Event`] the engine acts on.
//!
//! Every provider's payload is mapped onto the same types, in GitHub's words where
//! the providers differ (a GitLab merge request is a [`PullRequest`], its `open`
//! action is `opened`). Commit SHAs are lower-case hex (40 digits, or 64 in a
//! SHA-256 repository) and ref names are valid git ref names, so both can be
//! handed to git without further checks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The sender of a webhook; each has its own headers, signature scheme and payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// GitHub and GitHub Enterprise Server.
    GitHub,
    /// GitLab (project hooks, group hooks and system hooks).
    GitLab,
    /// Gitea and its fork Forgejo, which send the same payloads.
    Gitea,
    /// Orrery's own JSON, sent by the git `post-receive` hook of
    /// [`post_receive_hook_script`](crate::post_receive_hook_script).
    Generic,
}

impl Provider {
    /// Every provider, in a fixed order.
    pub const ALL: [Provider; 4] = [
        Provider::GitHub,
        Provider::GitLab,
        Provider::Gitea,
        Provider::Generic,
    ];

    /// The lower-case name used in URLs and configuration (`github`, `gitlab`,
    /// `gitea`, `generic`).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::Generic => "generic",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given to [`Provider::from_str`] is not a provider.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown VCS provider `{0}`: expected github, gitlab, gitea, forgejo or generic")]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    /// Reads a provider name case-insensitively; `forgejo` is [`Provider::Gitea`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "github" => Ok(Provider::GitHub),
            "gitlab" => Ok(Provider::GitLab),
            "gitea" | "forgejo" => Ok(Provider::Gitea),
            "generic" => Ok(Provider::Generic),
            _ => Err(UnknownProvider(s.to_string())),
        }
    }
}

/// A request's headers as `(name, value)` pairs, the way an HTTP server hands them
/// over. Names are compared case-insensitively; when a name occurs more than once
/// the first occurrence counts.
#[derive(Clone, Copy, Debug)]
pub struct Headers<'a>(pub &'a [(&'a str, &'a str)]);

impl<'a> Headers<'a> {
    /// The value of the first header called `name` (any case), without the
    /// surrounding whitespace.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

/// What a webhook asks of Orrery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "event", rename_all = "snake_case")]
pub enum Event {
    /// Commits pushed to a branch, or a tag pushed: a pipeline for
    /// [`Push::revision`].
    Push(Push),
    /// A pull (merge) request was opened, updated, closed...: what to do depends on
    /// [`PullRequest::action`].
    PullRequest(PullRequest),
    /// A check that the hook is set up (GitHub's `ping`): acknowledge it, do nothing.
    Ping,
    /// A genuine webhook of a kind Orrery does not act on (issues, stars, a deleted
    /// branch...), with the reason, for the delivery log.
    Ignored(String),
}

/// A branch or a tag, by its short name (`main`, `v1.2.0`), as CircleCI's
/// `pipeline.git.branch` and `pipeline.git.tag` hold them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum GitRef {
    /// `refs/heads/<name>`.
    Branch(String),
    /// `refs/tags/<name>`.
    Tag(String),
}

impl GitRef {
    /// The short name of the branch or tag.
    pub fn name(&self) -> &str {
        match self {
            GitRef::Branch(name) | GitRef::Tag(name) => name,
        }
    }

    /// The full ref (`refs/heads/main`, `refs/tags/v1`).
    pub fn full(&self) -> String {
        match self {
            GitRef::Branch(name) => format!("refs/heads/{name}"),
            GitRef::Tag(name) => format!("refs/tags/{name}"),
        }
    }

    /// Whether this is a tag.
    pub fn is_tag(&self) -> bool {
        matches!(self, GitRef::Tag(_))
    }
}

/// A push of a branch or a tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    /// The URL to clone the repository from (HTTPS for the hosted providers).
    pub repo_url: String,
    /// The repository's `owner/name` (GitLab: the full namespace path).
    pub repo_full_name: String,
    /// The branch or tag pushed.
    pub git_ref: GitRef,
    /// The commit to build: lower-case hex, 40 digits (64 in a SHA-256
    /// repository). For an annotated tag this is the tagged commit where the
    /// payload says which it is.
    pub revision: String,
    /// What the ref pointed to before the push; `None` for a new branch or tag.
    pub before: Option<String>,
    /// The head commit, when the payload describes it.
    pub commit: Option<Commit>,
    /// The login of whoever pushed, when known.
    pub pusher: Option<String>,
    /// Whether the push was forced; `false` where the provider does not say
    /// (GitLab, Gitea, the generic hook).
    pub forced: bool,
}

/// A commit as a payload describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The message's first line.
    pub subject: String,
    /// The rest of the message, trimmed (empty when there is none).
    pub body: String,
    /// The commit's web page.
    pub url: Option<String>,
    /// The author's name.
    pub author_name: Option<String>,
    /// The author's e-mail address.
    pub author_email: Option<String>,
    /// The commit's timestamp as the provider wrote it (ISO 8601).
    pub timestamp: Option<String>,
}

impl Commit {
    /// The whole message again: the subject, then a blank line and the body when
    /// there is one.
    pub fn message(&self) -> String {
        if self.body.is_empty() {
            self.subject.clone()
        } else {
            format!("{}\n\n{}", self.subject, self.body)
        }
    }
}

/// A pull request (GitLab: merge request) event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// The clone URL of the base (target) repository.
    pub repo_url: String,
    /// The base repository's `owner/name`.
    pub repo_full_name: String,
    /// The pull request's number in its repository (GitLab: the `iid`).
    pub number: u64,
    /// What happened, in GitHub's words: `opened`, `synchronize` (new commits),
    /// `reopened`, `closed`, `edited`, `converted_to_draft`... GitLab's and
    /// Gitea's own words are mapped onto these where they have an equivalent and
    /// kept otherwise.
    pub action: String,
    /// The head (source) branch.
    pub head_ref: String,
    /// The head commit, lower-case hex.
    pub head_sha: String,
    /// The base (target) branch.
    pub base_ref: String,
    /// The title.
    pub title: String,
    /// The pull request's web page.
    pub url: String,
    /// Whether the head branch lives in another repository. When the payload
    /// leaves it in doubt (the head repository was deleted) this is `true`: fork
    /// builds do not get the project's secrets, so doubt must err that way.
    pub is_fork: bool,
    /// The clone URL of the head repository, when it still exists.
    pub head_repo_url: Option<String>,
    /// Whether the pull request is a draft.
    pub draft: bool,
    /// The login of whoever caused the event.
    pub sender: Option<String>,
}
