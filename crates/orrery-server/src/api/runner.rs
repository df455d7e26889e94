//! The runner protocol over HTTP, for `orrery runner` on other hosts, and
//! the runner administration API in the shape of CircleCI's runner API v3.
//!
//! Protocol calls carry `Authorization: Bearer <runner token>` (the token
//! names the resource class) and `Orrery-Runner-Name: <name>` (unique within
//! the class). A runner registers when it starts, which ends the tasks a
//! previous process of the same name held; then it claims (long-polling),
//! heartbeats, sends events and completes, as [`orrery_agent::RunnerApi`]
//! describes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use orrery_core::protocol::{Completion, RunnerEvent};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Json, Query, path_id, time};
use crate::AppState;
use crate::auth::{Auth, RunnerAuth};
use crate::error::{ApiError, ApiResult};
use crate::secrets::{hash_token, new_token};

pub const RUNNER_NAME_HEADER: &str = "orrery-runner-name";

/// The longest a claim waits for work.
pub const MAX_CLAIM_WAIT: Duration = Duration::from_secs(60);

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/runner/v1/register", post(register))
        .route("/runner/v1/claim", post(claim))
        .route("/runner/v1/tasks/{id}/heartbeat", post(heartbeat))
        .route("/runner/v1/tasks/{id}/events", post(events))
        .route("/runner/v1/tasks/{id}/complete", post(complete))
        .route(
            "/api/v3/runner/resource",
            get(resource_classes).post(resource_class_create),
        )
        .route("/api/v3/runner/token", post(token_create))
        .route("/api/v3/runner", get(runners))
}

pub fn valid_runner_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The calling runner's id: `<resource class>/<name>`.
pub fn runner_id(auth: &RunnerAuth, headers: &HeaderMap) -> ApiResult<String> {
    let name = headers
        .get(RUNNER_NAME_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::BadRequest("the Orrery-Runner-Name header is missing".into()))?;
    if !valid_runner_name(name) {
        return Err(ApiError::BadRequest(format!(
            "runner name `{name}` may only hold letters, digits, `-`, `_` and `.` (at most 64)"
        )));
    }
    Ok(format!("{}/{name}", auth.resource_class))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    hostname: String,
    version: String,
}

async fn register(
    State(state): State<Arc<AppState>>,
    auth: RunnerAuth,
    headers: HeaderMap,
    Json(body): Json<RegisterBody>,
) -> ApiResult<axum::Json<Value>> {
    let id = runner_id(&auth, &headers)?;
    let name = id.rsplit('/').next().unwrap_or_default();
    let hostname: String = body.hostname.chars().take(255).collect();
    let version: String = body.version.chars().take(64).collect();
    state
        .store
        .touch_runner(name, &auth.resource_class, &hostname, &version)
        .await?;
    let abandoned = state.engine.abandon_runner_tasks(&id).await?;
    Ok(axum::Json(json!({
        "runner_id": id,
        "resource_class": auth.resource_class,
        "abandoned_tasks": abandoned,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClaimBody {
    #[serde(default)]
    wait_secs: u64,
}

async fn claim(
    State(state): State<Arc<AppState>>,
    auth: RunnerAuth,
    headers: HeaderMap,
    body: Option<Json<ClaimBody>>,
) -> ApiResult<Response> {
    let id = runner_id(&auth, &headers)?;
    let wait =
        Duration::from_secs(body.map(|Json(b)| b.wait_secs).unwrap_or(0)).min(MAX_CLAIM_WAIT);
    state.store.runner_seen(&id).await?;
    let claimed = tokio::select! {
        c = state.engine.claim(&id, std::slice::from_ref(&auth.resource_class), wait) => c?,
        // A stopping server ends long polls; the runner asks again after the restart.
        _ = state.shutdown.cancelled() => None,
    };
    Ok(match claimed {
        Some(mut a) => {
            crate::secrets::guard_assignment(&mut a);
            axum::Json(a).into_response()
        }
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// A task id from the path that names a task (of any runner): an unknown
/// id is a 404, while a task another runner holds gets the protocol's answer
/// (lost, a conflict, or an ignored completion).
async fn known_task(state: &AppState, task: &str) -> ApiResult<String> {
    let task = path_id("Task", task)?;
    if state.store.task(&task).await?.is_none() {
        return Err(ApiError::NotFound("Task not found".into()));
    }
    Ok(task)
}

async fn heartbeat(
    State(state): State<Arc<AppState>>,
    auth: RunnerAuth,
    headers: HeaderMap,
    Path(task): Path<String>,
) -> ApiResult<Response> {
    let id = runner_id(&auth, &headers)?;
    let task = known_task(&state, &task).await?;
    state.store.runner_seen(&id).await?;
    let reply = state.engine.heartbeat(&task, &id).await?;
    Ok(axum::Json(reply).into_response())
}

async fn events(
    State(state): State<Arc<AppState>>,
    auth: RunnerAuth,
    headers: HeaderMap,
    Path(task): Path<String>,
    Json(events): Json<Vec<RunnerEvent>>,
) -> ApiResult<StatusCode> {
    let id = runner_id(&auth, &headers)?;
    let task = known_task(&state, &task).await?;
    state.engine.record_events(&task, &id, events).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn complete(
    State(state): State<Arc<AppState>>,
    auth: RunnerAuth,
    headers: HeaderMap,
    Path(task): Path<String>,
    Json(completion): Json<Completion>,
) -> ApiResult<StatusCode> {
    let id = runner_id(&auth, &headers)?;
    let task = known_task(&state, &task).await?;
    state.engine.complete(&task, &id, completion.status).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- administration ----

pub fn valid_class(name: &str) -> bool {
    let part = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
    };
    matches!(name.split_once('/'), Some((ns, n)) if part(ns) && part(n))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassBody {
    resource_class: String,
    #[serde(default)]
    desc: String,
}

async fn resource_class_create(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Json(body): Json<ClassBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    auth.require_admin()?;
    if !valid_class(&body.resource_class) {
        return Err(ApiError::BadRequest(format!(
            "resource_class `{}` must be `namespace/name` in lower-case letters, digits, `-` and `_`",
            body.resource_class
        )));
    }
    let rc = state
        .store
        .create_resource_class(&body.resource_class, &body.desc)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"resource_class": rc.name, "desc": rc.description})),
    ))
}

async fn resource_classes(
    State(state): State<Arc<AppState>>,
    _auth: Auth,
) -> ApiResult<axum::Json<Value>> {
    let items: Vec<Value> = state
        .store
        .resource_classes()
        .await?
        .into_iter()
        .map(|rc| json!({"resource_class": rc.name, "desc": rc.description}))
        .collect();
    Ok(axum::Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    resource_class: String,
    #[serde(default)]
    nickname: String,
}

async fn token_create(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    Json(body): Json<TokenBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    auth.require_admin()?;
    let known = state
        .store
        .resource_classes()
        .await?
        .iter()
        .any(|rc| rc.name == body.resource_class);
    if !known {
        if body.resource_class != orrery_engine::DEFAULT_CLASS {
            return Err(ApiError::NotFound(format!(
                "resource class `{}` not found: create it with POST /api/v3/runner/resource",
                body.resource_class
            )));
        }
        // The default class exists without being created; its row is made
        // with its first token (tokens refer to a class row).
        match state
            .store
            .create_resource_class(
                orrery_engine::DEFAULT_CLASS,
                "jobs that name no runner resource class",
            )
            .await
        {
            Ok(_) | Err(orrery_store::StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let token = new_token();
    let t = state
        .store
        .create_runner_token(&body.resource_class, &hash_token(&token), &body.nickname)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": t.id,
            "token": token,
            "resource_class": t.resource_class,
            "nickname": t.nickname,
            "created_at": time(t.created_at),
        })),
    ))
}

#[derive(Deserialize)]
struct RunnersQuery {
    #[serde(rename = "resource-class")]
    resource_class: Option<String>,
}

async fn runners(
    State(state): State<Arc<AppState>>,
    _auth: Auth,
    Query(q): Query<RunnersQuery>,
) -> ApiResult<axum::Json<Value>> {
    let items: Vec<Value> = state
        .store
        .runners()
        .await?
        .into_iter()
        .filter(|r| {
            q.resource_class
                .as_ref()
                .is_none_or(|c| *c == r.resource_class)
        })
        .map(|r| {
            json!({
                "resource_class": r.resource_class,
                "name": r.name,
                "hostname": r.hostname,
                "version": r.version,
                "first_connected": time(r.first_connected),
                "last_connected": time(r.last_connected),
            })
        })
        .collect();
    Ok(axum::Json(json!({ "items": items })))
}
