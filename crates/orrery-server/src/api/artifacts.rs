//! A job's artifacts, with CircleCI's paths and shapes: the v2 list
//! (`{"items": [{path, node_index, url}], "next_page_token"}`), the v1.1 list
//! (`[{path, pretty_path, node_index, url}]`, also of the latest job of a
//! branch) and, Orrery's addition, the download each `url` names.
//!
//! A download is authorized like the rest of the API (`Circle-Token` header
//! or `circle-token` query) and streamed by the server from the object
//! store, never redirected (see [`object_response`]). Artifacts carry a Content-Type guessed from the extension, and
//! `Content-Security-Policy: sandbox` with `nosniff`: an HTML report opens in
//! the browser, but as a page of its own that cannot act for this origin
//! (CircleCI serves artifacts from another domain for the same reason).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use orrery_store::{Artifact, Job, Project};
use serde::Deserialize;
use serde_json::{Value, json};

use super::v2::job_by_path;
use super::{Query, project_by_path};
use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};

type St = State<Arc<AppState>>;
type JobPath = Path<(String, String, String, String)>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v2/project/{vcs}/{org}/{repo}/{number}/artifacts",
            get(list_v2),
        )
        .route(
            "/api/v2/project/{vcs}/{org}/{repo}/{number}/artifacts/{node}/{*path}",
            get(download),
        )
        .route(
            "/api/v1.1/project/{vcs}/{org}/{repo}/{number}/artifacts",
            get(list_v1),
        )
        .route(
            "/api/v1.1/project/{vcs}/{org}/{repo}/latest/artifacts",
            get(latest_v1),
        )
}

/// Percent-encodes a path segment (RFC 3986 unreserved characters stay).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where an artifact is downloaded from.
pub fn download_url(state: &AppState, project: &Project, job: &Job, a: &Artifact) -> String {
    let path: Vec<String> = a.path.split('/').map(encode_segment).collect();
    format!(
        "{}/api/v2/project/{}/{}/artifacts/{}/{}",
        state.base_url,
        project.slug,
        job.number.unwrap_or_default(),
        a.node_index,
        path.join("/")
    )
}

async fn list_v2(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo, number)): JobPath,
) -> ApiResult<axum::Json<Value>> {
    let (job, project) = job_by_path(&state, &vcs, &org, &repo, &number).await?;
    let items: Vec<Value> = state
        .store
        .artifacts_of_job(&job.id)
        .await?
        .iter()
        .map(|a| {
            json!({
                "path": a.path,
                "node_index": a.node_index,
                "url": download_url(&state, &project, &job, a),
            })
        })
        .collect();
    Ok(axum::Json(json!({"items": items, "next_page_token": null})))
}

async fn v1_items(state: &AppState, project: &Project, job: &Job) -> ApiResult<Value> {
    Ok(Value::Array(
        state
            .store
            .artifacts_of_job(&job.id)
            .await?
            .iter()
            .map(|a| {
                json!({
                    "path": a.path,
                    "pretty_path": a.path,
                    "node_index": a.node_index,
                    "url": download_url(state, project, job, a),
                })
            })
            .collect(),
    ))
}

async fn list_v1(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo, number)): JobPath,
) -> ApiResult<axum::Json<Value>> {
    let (job, project) = job_by_path(&state, &vcs, &org, &repo, &number).await?;
    Ok(axum::Json(v1_items(&state, &project, &job).await?))
}

#[derive(Deserialize)]
struct LatestQuery {
    branch: Option<String>,
    filter: Option<String>,
}

/// The artifacts of the project's latest job, of `branch` (any branch when
/// absent) and matching `filter` (`completed`, `successful`, `failed`,
/// `running`; any job when absent), as CircleCI's v1.1 documents it.
async fn latest_v1(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo)): Path<(String, String, String)>,
    Query(q): Query<LatestQuery>,
) -> ApiResult<axum::Json<Value>> {
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    let statuses = match q.filter.as_deref() {
        None | Some("") => None,
        Some(f) => Some(
            orrery_store::storage::job_filter_statuses(f).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "filter `{f}` is not one of completed, successful, failed, running"
                ))
            })?,
        ),
    };
    let branch = q.branch.as_deref().filter(|b| !b.is_empty());
    let number = state
        .store
        .latest_job_number(&project.id, branch, statuses)
        .await?
        .ok_or_else(|| ApiError::NotFound("No job matches the branch and filter".into()))?;
    let job = state
        .store
        .job_by_number(&project.id, number)
        .await?
        .ok_or_else(|| ApiError::NotFound("Job not found".into()))?;
    Ok(axum::Json(v1_items(&state, &project, &job).await?))
}

/// A Content-Type for a file name, by its extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit('/')
        .next()
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" | "out" | "err" | "md" | "rst" | "diff" | "patch" | "ini" | "cfg"
        | "conf" | "toml" | "sh" | "py" | "rb" | "rs" | "go" | "java" | "c" | "h" | "cpp"
        | "ts" | "tsx" | "jsx" | "yaml" | "yml" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "zst" => "application/zstd",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

async fn download(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo, number, node, path)): Path<(
        String,
        String,
        String,
        String,
        String,
        String,
    )>,
) -> ApiResult<Response> {
    let (job, _) = job_by_path(&state, &vcs, &org, &repo, &number).await?;
    artifact_response(&state, &job, &node, &path).await
}

/// A job's artifact by node index (as written in a path) and path, streamed:
/// the download of the API and of the web app. Only a path the job stored is
/// found (an exact match in the index, never a file system path).
pub async fn artifact_response(
    state: &AppState,
    job: &Job,
    node: &str,
    path: &str,
) -> ApiResult<Response> {
    let node: i64 = node
        .parse()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("node `{node}` is not a node index")))?;
    let not_found = || ApiError::NotFound("Artifact not found".into());
    let artifact = state
        .store
        .artifact(&job.id, node, path)
        .await?
        .ok_or_else(not_found)?;
    object_response(state, &artifact.object, content_type(&artifact.path)).await
}

/// An object as a download, streamed through the server. API clients are
/// not redirected to signed URLs: they authenticate with a `Circle-Token`
/// header, which clients following a redirect (`curl -L -H ...`) would send
/// on to the object store's host.
pub async fn object_response(
    state: &AppState,
    object: &str,
    content_type: &str,
) -> ApiResult<Response> {
    let not_found = || ApiError::NotFound("Artifact not found".into());
    let blob_err = |e: orrery_blob::BlobError| match e {
        orrery_blob::BlobError::NotFound(_) => not_found(),
        other => ApiError::Internal(other.to_string()),
    };
    let (reader, size) = state.blobs.get(object).await.map_err(blob_err)?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::CONTENT_SECURITY_POLICY, "sandbox".to_string()),
            (header::CACHE_CONTROL, "private, max-age=300".to_string()),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(reader)),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_encoding() {
        assert_eq!(content_type("out/report.HTML"), "text/html; charset=utf-8");
        assert_eq!(content_type("a.b/noext"), "application/octet-stream");
        assert_eq!(content_type("x/y.tar.gz"), "application/gzip");
        assert_eq!(content_type("log.txt"), "text/plain; charset=utf-8");
        assert_eq!(encode_segment("a b%/é"), "a%20b%25%2F%C3%A9");
        assert_eq!(encode_segment("file-1_2.~x"), "file-1_2.~x");
    }
}
