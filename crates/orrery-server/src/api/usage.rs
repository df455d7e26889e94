//! Orrery's addition: what a project keeps in storage, in bytes per kind,
//! and how long each kind is kept (days; `null` is forever).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::{Value, json};

use super::project_by_path;
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiResult;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/v2/project/{vcs}/{org}/{repo}/storage", get(usage))
}

async fn usage(
    State(state): State<Arc<AppState>>,
    _auth: Auth,
    Path((vcs, org, repo)): Path<(String, String, String)>,
) -> ApiResult<axum::Json<Value>> {
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    let u = state.store.storage_usage(&project.id).await?;
    Ok(axum::Json(json!({
        "project_slug": project.slug,
        "bytes": {
            "artifacts": u.artifacts,
            "caches": u.caches,
            "workspaces": u.workspaces,
            "output": u.output,
            "total": u.artifacts + u.caches + u.workspaces + u.output,
        },
        "retention_days": state.retention.to_json(),
    })))
}
