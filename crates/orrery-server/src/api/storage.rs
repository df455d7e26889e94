//! Task storage for remote runners: caches, workspaces, artifacts, test
//! results and timings of a task the calling runner holds, through
//! [`crate::storage::TaskStorage`] (the same code the embedded runner uses).
//!
//! Uploads are streamed into object storage and checked against the
//! `X-Orrery-Sha256` and `X-Orrery-Size` headers the runner sends (it spools
//! the archive first, so it knows both, and can resend it whole); a mismatch
//! is refused and leaves nothing. Downloads are streamed through the server,
//! or redirected (307) to a short-lived signed URL of the object store, so a
//! runner never holds credentials for the bucket.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures_util::TryStreamExt;
use orrery_agent::{BackendError, TaskBackend};
use orrery_blob::PutOptions;
use orrery_testresults::TestCase;
use serde::Deserialize;
use serde_json::json;

use super::runner::runner_id;
use super::{Json, Query, path_id};
use crate::AppState;
use crate::auth::RunnerAuth;
use crate::error::{ApiError, ApiResult};
use crate::storage::TaskStorage;

pub const SHA256_HEADER: &str = "x-orrery-sha256";
pub const SIZE_HEADER: &str = "x-orrery-size";
/// `footer`: the body ends with its digest and size
/// ([`orrery_blob::footer`]) instead of announcing them in headers, so a
/// runner can stream an archive while it makes it. Caches and workspaces.
pub const DIGEST_HEADER: &str = "x-orrery-digest";

/// How long a signed download URL is valid.
const SIGNED_FOR: Duration = Duration::from_secs(600);

/// The largest test results upload (JSON, held in memory while it is
/// stored): failure messages of up to 64 KiB each quickly pass the API's
/// general limit (600 failing tests with long stack traces do); 64 MiB holds
/// a thousand such failures.
pub const MAX_TEST_RESULTS: usize = 64 * 1024 * 1024;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/runner/v1/tasks/{id}/caches", get(cache_find))
        .route(
            "/runner/v1/tasks/{id}/caches/object",
            get(cache_get).put(cache_put),
        )
        .route(
            "/runner/v1/tasks/{id}/workspaces/{job}",
            get(workspace_list),
        )
        .route(
            "/runner/v1/tasks/{id}/workspaces/{job}/{index}",
            get(workspace_get),
        )
        .route("/runner/v1/tasks/{id}/workspace", put(workspace_put))
        .route("/runner/v1/tasks/{id}/artifacts", put(artifacts_put))
        .route(
            "/runner/v1/tasks/{id}/test-results",
            post(test_results_post).layer(DefaultBodyLimit::max(MAX_TEST_RESULTS)),
        )
        .route("/runner/v1/tasks/{id}/timings", get(timings_get))
}

/// A storage failure as an answer: what the runner sent is a 400 with the
/// reason; the server's own storage failing is a 500 (logged, its details
/// kept from job output), which the runner retries.
fn refused(e: BackendError) -> ApiError {
    match e {
        BackendError::Io(io) => ApiError::BadRequest(format!("the upload failed: {io}")),
        BackendError::Refused(m) => ApiError::BadRequest(m),
        BackendError::Unavailable(m) => ApiError::Internal(format!("task storage: {m}")),
    }
}

/// The storage of a task the calling runner holds and is running.
async fn held(
    state: &AppState,
    auth: &RunnerAuth,
    headers: &HeaderMap,
    task: &str,
) -> ApiResult<TaskStorage> {
    let runner = runner_id(auth, headers)?;
    let task_id = path_id("Task", task)?;
    let task = state
        .store
        .task(&task_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Task not found".into()))?;
    if task.runner_id.as_deref() != Some(runner.as_str()) || task.state != "running" {
        return Err(ApiError::Conflict(
            "this runner does not hold the task (it ended, or its lease was lost)".into(),
        ));
    }
    Ok(TaskStorage::new(
        Arc::clone(&state.blobs),
        state.store.clone(),
        &task_id,
    ))
}

/// The digest and size a runner announced for an upload.
fn announced(headers: &HeaderMap) -> ApiResult<PutOptions> {
    if let Some(mode) = headers.get(DIGEST_HEADER) {
        if mode.as_bytes() != b"footer" {
            return Err(ApiError::BadRequest(format!(
                "{DIGEST_HEADER} must be `footer` (or left out, with {SHA256_HEADER} and {SIZE_HEADER})"
            )));
        }
        if headers.contains_key(SHA256_HEADER) || headers.contains_key(SIZE_HEADER) {
            return Err(ApiError::BadRequest(format!(
                "with a footer, {SHA256_HEADER} and {SIZE_HEADER} are not sent"
            )));
        }
        return Ok(PutOptions {
            footer: true,
            ..PutOptions::default()
        });
    }
    let sha256 = headers
        .get(SHA256_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| ApiError::BadRequest(format!("the {SHA256_HEADER} header is missing")))?;
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(format!(
            "{SHA256_HEADER} must be 64 hex digits"
        )));
    }
    let size = headers
        .get(SIZE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("{SIZE_HEADER} must be a number")))
        })
        .transpose()?
        .ok_or_else(|| ApiError::BadRequest(format!("the {SIZE_HEADER} header is missing")))?;
    Ok(PutOptions {
        sha256: Some(sha256),
        size: Some(size),
        ..PutOptions::default()
    })
}

/// The request body as a reader that holds it to the announced size: it
/// fails as soon as the body runs past it, and at an end before it, so a
/// short or cut-off upload is refused as such (not as a checksum mismatch).
fn body_reader(body: Body, options: &PutOptions) -> impl tokio::io::AsyncRead + Unpin + Send {
    Announced {
        inner: tokio_util::io::StreamReader::new(
            body.into_data_stream()
                .map_err(|e| std::io::Error::other(format!("the request body: {e}"))),
        ),
        expected: options.size,
        read: 0,
    }
}

struct Announced<R> {
    inner: R,
    expected: Option<u64>,
    read: u64,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Announced<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let n = (buf.filled().len() - before) as u64;
        self.read += n;
        let Some(expected) = self.expected else {
            return Poll::Ready(Ok(()));
        };
        if self.read > expected {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the body is longer than the {expected} bytes announced"),
            )));
        }
        if n == 0 && self.read < expected {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the body ended after {} of the {expected} bytes announced",
                    self.read
                ),
            )));
        }
        Poll::Ready(Ok(()))
    }
}

/// An object as a response: a redirect to a signed URL where the store
/// signs, else the bytes.
async fn object_response(state: &AppState, object: &str) -> ApiResult<Response> {
    let blob_err = |e: orrery_blob::BlobError| ApiError::Internal(e.to_string());
    if let Some(url) = state
        .blobs
        .signed_get(object, SIGNED_FOR)
        .await
        .map_err(blob_err)?
    {
        return Ok((StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, url)]).into_response());
    }
    let (reader, size) = state.blobs.get(object).await.map_err(blob_err)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            reader,
            256 * 1024,
        )),
    )
        .into_response())
}

/// Query values default to empty, so that an unknown task is a 404 before
/// a missing value is a 400.
#[derive(Deserialize)]
struct PrefixQuery {
    #[serde(default)]
    prefix: String,
}

async fn cache_find(
    State(state): State<Arc<AppState>>,
    auth: RunnerAuth,
    headers: HeaderMap,
    Path(task): Path<String>,
    Query(q): Query<PrefixQuery>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let storage = held(&state, &auth, &headers, &task).await?;
    let hit = storage.cache_find(&q.prefix).await.map_err(refused)?;
    Ok(axum::Json(json!({
        "hit": hit.map(|h| json!({"key": h.key, "size": h.size})),
    })))
}

#[derive(Deserialize)]
struct KeyQuery {
    #[serde(default)]
    key: String,
}

fn check_key(key: &str) -> ApiResult<()> {
    if key.is_empty() || key.len() > 900 {
        return Err(ApiError::BadRequest(
            "a cache key (?key=) has 1 to 900 characters".into(),
        ));
    }
    Ok(())
}

async fn cache_get(
    State(state): State<Arc<AppState>>,
    auth: RunnerAuth,
    headers: HeaderMap,
    Path(task): Path<String>,
    Query(q): Query<KeyQuery>,
) -> ApiResult<Response> {
    let storage = held(&state, &auth, &headers, &task).await?;
    check_key(&q.key)?;
    let (object, _) = storage
        .cache_object(&q.key)
        .await
        .map_err(refused)?
        .ok_or_else(|| ApiError::NotFound(format!("no cache for key {}", q.key)))?;
    object_response(&state, &object).await
}

async fn cache_put(
    State(state): State<Arc<AppState>>,
    auth: RunnerAuth,
    headers: HeaderMap,
    Path(task): Path<String>,
    Query(q): Query<KeyQuery>,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<serde_json::Value>)> {
    let storage = held(&state, &auth, &headers, &task).await?;
    check_key(&q.key)?;
    let options = announced(&headers)?;
    let saved = storage
        .save_cache(&q.key, body_reader(body, &options), &options)
        .await
        .map_err(refused)?;
    let status = if saved {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(json!({ "saved": saved }))))
}

async fn workspace_list(
    State(state): State<Arc<AppState>>,
    auth: RunnerAuth,
    headers: HeaderMap,
    Path((task, job)): Path<(String, String)>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let storage = held(&state, &auth, &headers, &task).await?;
    let layers: Vec<serde_json::Value> = storage
        .workspace_objects(&job)
        .await
        .map_err(refused)?
        .iter()
        .enumerate()
        .map(|(i, (_, size))| json!({"index": i, "size": size}))
        .collect();
    Ok(axum::Json(json!({ "layers": layers })))
}

async fn workspace_get(
    State(state): State<Arc<AppState>>,
    auth: RunnerAuth,
    headers: HeaderMap,
    Path((task, job, index)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let storage = held(&state, &auth, &headers, &task).await?;
    let index: usize = index
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("layer `{index}` is not a number")))?;
    let objects = storage.workspace_objects(&job).await.map_err(refused)?;
    let (object, _) = objects
        .get(index)
        .ok_or_else(|| ApiError::NotFound("Workspace layer not found".into()))?;
    object_response(&state, object).await
}

async fn workspace_put(
    State(state): State<Arc<AppState>>,
    auth: RunnerAuth,
    headers: HeaderMap,
    Path(task): Path<String>,
    body: Body,
) -> ApiResult<StatusCode> {
    let storage = held(&state, &auth, &headers, &task).await?;
    let options = announced(&headers)?;
    storage
        .save_workspace(body_reader(body, &options), &options)
        .await
        .map_err(refused)?;
    Ok(StatusCode::CREATED)
}

async fn artifacts_put(
    State(state): State<Arc<AppState>>,
    auth: RunnerAuth,
    headers: HeaderMap,
    Path(task): Path<String>,
    Query(q): Query<PrefixQuery>,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<serde_json::Value>)> {
    let storage = held(&state, &auth, &headers, &task).await?;
    if q.prefix.is_empty() {
        return Err(ApiError::BadRequest(
            "artifacts need a destination (?prefix=)".into(),
        ));
    }
    let options = announced(&headers)?;
    if options.footer {
        return Err(ApiError::BadRequest(format!(
            "artifacts announce their digest and size in {SHA256_HEADER} and {SIZE_HEADER}"
        )));
    }
    // The tar is read entry by entry from a file: spool it, checked.
    let spool = state.data_dir.join("tmp");
    tokio::fs::create_dir_all(&spool)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let file = spool.join(format!("artifacts-{}.tar", orrery_store::new_id()));
    let written = spool_checked(&file, body_reader(body, &options), &options).await;
    let result = match written {
        Ok(()) => storage
            .save_artifacts(&q.prefix, &file)
            .await
            .map_err(refused),
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&file).await;
    Ok((StatusCode::CREATED, axum::Json(json!({ "paths": result? }))))
}

/// Writes a body to a file, checking its digest (`data` is a
/// [`body_reader`], which checks the size).
async fn spool_checked(
    file: &std::path::Path,
    mut data: impl tokio::io::AsyncRead + Unpin + Send,
    options: &PutOptions,
) -> ApiResult<()> {
    use sha2::Digest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = |e: std::io::Error| ApiError::BadRequest(format!("the upload failed: {e}"));
    let mut out = tokio::fs::File::create(file)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = data.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    let actual = hex::encode(hasher.finalize());
    if let Some(expected) = &options.sha256
        && !expected.eq_ignore_ascii_case(&actual)
    {
        return Err(ApiError::BadRequest(format!(
            "the data does not match its checksum: expected sha256 {expected}, got {actual}"
        )));
    }
    Ok(())
}

async fn test_results_post(
    State(state): State<Arc<AppState>>,
    auth: RunnerAuth,
    headers: HeaderMap,
    Path(task): Path<String>,
    Json(cases): Json<Vec<TestCase>>,
) -> ApiResult<StatusCode> {
    let storage = held(&state, &auth, &headers, &task).await?;
    storage.test_results_save(cases).await.map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn timings_get(
    State(state): State<Arc<AppState>>,
    auth: RunnerAuth,
    headers: HeaderMap,
    Path(task): Path<String>,
) -> ApiResult<axum::Json<Vec<TestCase>>> {
    let storage = held(&state, &auth, &headers, &task).await?;
    Ok(axum::Json(storage.timings().await.map_err(refused)?))
}
