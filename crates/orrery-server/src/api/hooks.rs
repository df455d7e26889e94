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

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use indexmap::IndexMap;
use orrery_engine::{TriggerKind, TriggerRequest};
use orrery_vcs::{Event, GitRef, Headers, Provider, WebhookError};
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
            let (branch, tag) = match push.git_ref {
                GitRef::Branch(b) => (Some(b), None),
                GitRef::Tag(t) => (None, Some(t)),
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
