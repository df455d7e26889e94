//! The HTTP routes and what they share: JSON in and out with CircleCI's
//! error shape, project slugs, timestamps and page tokens.

pub mod artifacts;
pub mod hooks;
pub mod insights;
pub mod live;
pub mod openapi;
pub mod runner;
pub mod storage;
pub mod testresults;
pub mod usage;
pub mod v1;
pub mod v2;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use orrery_store::{Millis, Project};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// The largest request body accepted (configs, webhooks, output batches).
pub const MAX_BODY: usize = 8 * 1024 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .merge(v2::routes())
        .merge(v1::routes())
        .merge(runner::routes())
        .merge(storage::routes())
        .merge(artifacts::routes())
        .merge(testresults::routes())
        .merge(insights::routes())
        .merge(usage::routes())
        .merge(hooks::routes())
        .merge(live::routes())
        .merge(openapi::routes())
        .merge(crate::web::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn health(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    state.store.count_users().await?;
    Ok(axum::Json(serde_json::json!({"status": "ok"})))
}

/// An unknown path: a page for browsers, CircleCI's JSON for API clients.
pub(crate) async fn not_found(uri: axum::http::Uri, headers: axum::http::HeaderMap) -> Response {
    let api = ["/api/", "/runner/", "/hooks/"]
        .iter()
        .any(|p| uri.path().starts_with(p));
    let browser = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if browser && !api {
        crate::web::WebError(ApiError::NotFound("There is no page here.".into())).into_response()
    } else {
        ApiError::NotFound("Not found: no such endpoint.".into()).into_response()
    }
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({"message": "Method not allowed for this endpoint."})),
    )
        .into_response()
}

/// A JSON body, whose rejections are CircleCI-style errors saying what is
/// wrong and where.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::BadRequest(
            "The request body must be JSON (Content-Type: application/json).".into(),
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(format!(
            "The request body is not valid JSON: {}",
            e.body_text()
        )),
        JsonRejection::JsonDataError(e) => ApiError::BadRequest(format!(
            "The request body has a wrong field: {}",
            e.body_text()
        )),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge(format!("The request body is larger than {MAX_BODY} bytes."))
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

impl<S, T> axum::extract::OptionalFromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    /// No body (or only whitespace) is `None`; a body must be JSON.
    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let Body(bytes) = Body::from_request(req, state).await?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(|v| Some(Json(v)))
            .map_err(|e| ApiError::BadRequest(format!("The request body is not valid: {e}")))
    }
}

/// Query parameters, whose rejections are CircleCI-style errors (axum's own
/// answer in plain text).
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(rejection) => Err(ApiError::BadRequest(format!(
                "The query string is not valid: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// A raw body, with the size limit as a CircleCI-style error.
pub struct Body(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge(
                format!("The request body is larger than {MAX_BODY} bytes."),
            )),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// Turns `gh`/`github`, `gl`/`gitlab`, `bb`/`bitbucket`, `gitea` and `git` slug
/// prefixes into the short form Orrery stores (`gh/org/repo`).
pub fn normalize_vcs(vcs: &str) -> Option<&'static str> {
    match vcs {
        "gh" | "github" => Some("gh"),
        "gl" | "gitlab" => Some("gl"),
        "bb" | "bitbucket" => Some("bb"),
        "gitea" | "forgejo" => Some("gitea"),
        "git" => Some("git"),
        "circleci" => Some("circleci"),
        _ => None,
    }
}

/// The project a `{vcs}/{org}/{repo}` path names.
pub async fn project_by_path(
    state: &AppState,
    vcs: &str,
    org: &str,
    repo: &str,
) -> ApiResult<Project> {
    let not_found = || ApiError::NotFound("Project not found".into());
    let vcs = normalize_vcs(vcs).ok_or_else(not_found)?;
    state
        .store
        .project_by_slug(&format!("{vcs}/{org}/{repo}"))
        .await?
        .ok_or_else(not_found)
}

/// RFC 3339 with milliseconds, as CircleCI writes times.
pub fn time(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn time_opt(ms: Option<Millis>) -> serde_json::Value {
    ms.map_or(serde_json::Value::Null, |m| {
        serde_json::Value::String(time(m))
    })
}

/// An opaque page token.
pub fn page_token(position: &str) -> String {
    orrery_core::protocol::b64::encode(position.as_bytes())
}

pub fn read_page_token(token: &str) -> ApiResult<String> {
    orrery_core::protocol::b64::decode(token)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::BadRequest("page-token is not a token this server issued".into()))
}

/// Parses a number from a path segment.
pub fn path_number(what: &str, s: &str) -> ApiResult<i64> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("{what} must be a positive number, not `{s}`")))
}

/// Checks an id from a path (ours are UUIDs).
pub fn path_id(what: &str, s: &str) -> ApiResult<String> {
    uuid::Uuid::parse_str(s)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::NotFound(format!("{what} not found")))
}
