//! VCS webhooks: `POST /hooks/{provider}/{project_id}` for `github`,
//! `gitlab`, `gitea` (and `forgejo`) and `generic` (the shipped git
//! `post-receive` hook, at `GET /hooks/post-receive`).
//!
//! A webhook is authorized by its signature (or GitLab's token) against the
//! project's secret, never by an API token. What triggers a pipeline:
//! - a push of a branch or a tag, unless the head commit says `[ci skip]` or
//!   `[skip ci]`;
//! - a pull request opened or reopened from a branch of the same repository
//!   (later pushes to it trigger as pushes). Pull requests from forks are not
//!   built: they would run with the project's secrets.
//!
//! The project's build rules ([`BuildRules`], set on its settings page)
//! decide which branches and tags a webhook builds; pipelines triggered
//! through the API or by schedules are not filtered.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use indexmap::IndexMap;
use orrery_engine::{TriggerKind, TriggerRequest};
use orrery_vcs::{Event, GitRef, Headers, Provider, WebhookError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Body, path_id};
use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// The largest webhook body: the providers' own cap (GitHub's 25 MB), above
/// the API's [`super::MAX_BODY`], since a push of many commits is large.
pub const MAX_HOOK_BODY: usize = orrery_vcs::MAX_BODY_BYTES;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/hooks/post-receive", get(hook_script))
        .route(
            "/hooks/{provider}/{project_id}",
            post(receive).layer(DefaultBodyLimit::max(MAX_HOOK_BODY)),
        )
}

async fn hook_script() -> ([(&'static str, &'static str); 1], &'static str) {
    (
        [("content-type", "text/x-shellscript; charset=utf-8")],
        orrery_vcs::post_receive_hook_script(),
    )
}

fn webhook_error(e: WebhookError) -> ApiError {
    if e.is_unauthenticated() {
        ApiError::BadCredentials(e.to_string())
    } else if e.is_too_large() {
        ApiError::TooLarge(e.to_string())
    } else {
        ApiError::BadRequest(e.to_string())
    }
}

async fn receive(
    State(state): State<Arc<AppState>>,
    Path((provider, project_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Body, ApiError>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let Body(body) = body.map_err(|e| match e {
        ApiError::TooLarge(_) => ApiError::TooLarge(format!(
            "The webhook body is larger than {MAX_HOOK_BODY} bytes."
        )),
        other => other,
    })?;
    let provider: Provider = provider
        .parse()
        .map_err(|e: orrery_vcs::UnknownProvider| ApiError::NotFound(e.to_string()))?;
    let project_id = path_id("Project", &project_id)?;
    let project = state
        .store
        .project(&project_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Project not found".into()))?;
    let secret = state
        .cipher
        .open(&project.webhook_secret)
        .ok_or_else(|| ApiError::Internal("the webhook secret cannot be decrypted".into()))?;
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let event = orrery_vcs::verify_and_parse(provider, &Headers(&pairs), &body, &secret)
        .map_err(webhook_error)?;
    let ok = |message: String| Ok((StatusCode::OK, axum::Json(json!({ "message": message }))));
    let request = match event {
        Event::Ping => return ok("pong".into()),
        Event::Ignored(reason) => return ok(format!("Ignored: {reason}")),
        Event::Push(push) => {
            if let Some(c) = &push.commit
                && orrery_vcs::should_skip(&c.message())
            {
                return ok("Skipped: the commit message asks not to build ([ci skip]).".into());
            }
            let rules = BuildRules::of(&project);
            let (branch, tag) = match push.git_ref {
                GitRef::Branch(b) => {
                    if !rules.builds_branch(&b) {
                        return ok(format!(
                            "Skipped: branch `{b}` does not match the project's branch rules."
                        ));
                    }
                    (Some(b), None)
                }
                GitRef::Tag(t) => {
                    if !rules.builds_tag(&t) {
                        return ok(format!(
                            "Skipped: tag `{t}` does not match the project's tag rules."
                        ));
                    }
                    (None, Some(t))
                }
            };
            TriggerRequest {
                kind: TriggerKind::Webhook,
                actor: push.pusher.unwrap_or_else(|| "webhook".into()),
                branch,
                tag,
                revision: Some(push.revision),
                parameters: IndexMap::new(),
                review_id: None,
                review_url: None,
                only_workflow: None,
            }
        }
        Event::PullRequest(pr) => {
            if pr.is_fork {
                return ok(
                    "Ignored: pull requests from forks are not built (they would get the project's secrets)."
                        .into(),
                );
            }
            if !matches!(pr.action.as_str(), "opened" | "reopened") {
                return ok(format!(
                    "Ignored: pull request action `{}` (pushes to the branch build it)",
                    pr.action
                ));
            }
            if !BuildRules::of(&project).builds_branch(&pr.head_ref) {
                return ok(format!(
                    "Skipped: branch `{}` does not match the project's branch rules.",
                    pr.head_ref
                ));
            }
            TriggerRequest {
                kind: TriggerKind::Webhook,
                actor: pr.sender.unwrap_or_else(|| "webhook".into()),
                branch: Some(pr.head_ref),
                tag: None,
                revision: Some(pr.head_sha),
                parameters: IndexMap::new(),
                review_id: Some(pr.number.to_string()),
                review_url: Some(pr.url),
                only_workflow: None,
            }
        }
    };
    let pipeline = state.engine.trigger(&project, request).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": pipeline.id,
            "number": pipeline.number,
            "state": pipeline.state,
            "created_at": super::time(pipeline.created_at),
        })),
    ))
}

/// Which branches and tags webhooks build, kept in the project's
/// `settings` JSON under `build_rules`. Patterns are globs: `*` matches any
/// run of characters (`/` included), `?` one character.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRules {
    /// Branches that build; none means every branch.
    #[serde(default)]
    pub branches: Vec<String>,
    #[serde(default)]
    pub tags: TagRule,
    /// The tags that build when `tags` is `patterns`.
    #[serde(default)]
    pub tag_patterns: Vec<String>,
}

/// Whether tags build: all of them, none, or those matching patterns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagRule {
    #[default]
    All,
    None,
    Patterns,
}

/// The most patterns of one kind, and the longest pattern.
pub const MAX_PATTERNS: usize = 100;
pub const MAX_PATTERN_LEN: usize = 200;

impl BuildRules {
    /// The rules of a project (every branch and tag when it has none, or
    /// its settings cannot be read).
    pub fn of(project: &orrery_store::Project) -> BuildRules {
        serde_json::from_str::<Value>(&project.settings)
            .ok()
            .and_then(|v| serde_json::from_value(v.get("build_rules")?.clone()).ok())
            .unwrap_or_default()
    }

    pub fn builds_branch(&self, branch: &str) -> bool {
        self.branches.is_empty() || self.branches.iter().any(|p| glob_match(p, branch))
    }

    pub fn builds_tag(&self, tag: &str) -> bool {
        match self.tags {
            TagRule::All => true,
            TagRule::None => false,
            TagRule::Patterns => self.tag_patterns.iter().any(|p| glob_match(p, tag)),
        }
    }

    /// Patterns from a text area: one a line, blank lines dropped, each
    /// checked.
    pub fn parse_patterns(what: &str, text: &str) -> ApiResult<Vec<String>> {
        let patterns: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if patterns.len() > MAX_PATTERNS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_PATTERNS} {what} patterns"
            )));
        }
        for p in &patterns {
            if p.len() > MAX_PATTERN_LEN || p.chars().any(|c| c.is_control() || c == ' ') {
                return Err(ApiError::BadRequest(format!(
                    "`{p}` is not a {what} pattern: no spaces, at most {MAX_PATTERN_LEN} characters"
                )));
            }
        }
        Ok(patterns)
    }
}

/// A glob match: `*` any run of characters, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("main", "main", true),
            ("main", "mainline", false),
            ("release/*", "release/1.2", true),
            ("release/*", "release", false),
            ("*", "", true),
            ("v?.*", "v1.2", true),
            ("v?.*", "v12.2", false),
            ("*-fix", "a/b-fix", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ] {
            assert_eq!(glob_match(p, t), want, "{p} {t}");
        }
    }

    #[test]
    fn rules_from_settings() {
        let mut project = orrery_store::Project {
            id: String::new(),
            org_id: String::new(),
            name: String::new(),
            slug: String::new(),
            vcs_provider: String::new(),
            repo_url: String::new(),
            default_branch: "main".into(),
            webhook_secret: Vec::new(),
            vcs_token: None,
            settings: "{}".into(),
            created_at: 0,
        };
        let all = BuildRules::of(&project);
        assert!(all.builds_branch("x") && all.builds_tag("v1"));
        project.settings = r#"{"build_rules":{"branches":["main","rel/*"],"tags":"patterns","tag_patterns":["v*"]}}"#.into();
        let r = BuildRules::of(&project);
        assert!(r.builds_branch("main") && r.builds_branch("rel/1") && !r.builds_branch("dev"));
        assert!(r.builds_tag("v1") && !r.builds_tag("x1"));
        project.settings = r#"{"build_rules":{"tags":"none"}}"#.into();
        assert!(!BuildRules::of(&project).builds_tag("v1"));
    }
}
