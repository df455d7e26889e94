//! A job's test results (what `store_test_results` reported), with
//! CircleCI's paths and shapes: v2 `GET .../{job-number}/tests` (paged
//! `items`) and v1.1 `GET .../{build_num}/tests` (`{"tests", "exceptions"}`).
//!
//! Orrery stores JUnit's `<error>` apart from `<failure>`; CircleCI's API
//! knows only `success`, `failure` and `skipped`, so an error is answered as
//! a `failure`. v2 answers strings where CircleCI's schema requires them (an
//! absent `message` or `file` is `""`); v1.1 keeps `null` as it always did.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use orrery_store::TestRow;
use orrery_testresults::TestResult;
use serde::Deserialize;
use serde_json::{Value, json};

use super::v2::job_by_path;
use super::{Query, page_token, read_page_token};
use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};

/// Test cases per v2 page.
pub const PAGE: usize = 1000;

type JobPath = Path<(String, String, String, String)>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v2/project/{vcs}/{org}/{repo}/{number}/tests",
            get(tests_v2),
        )
        .route(
            "/api/v1.1/project/{vcs}/{org}/{repo}/{number}/tests",
            get(tests_v1),
        )
}

/// A stored result in CircleCI's words (`error` is a `failure`).
pub fn api_result(stored: &str) -> &'static str {
    serde_json::from_value::<TestResult>(Value::String(stored.to_string()))
        .unwrap_or(TestResult::Failure)
        .api_str()
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(rename = "page-token")]
    page_token: Option<String>,
}

fn item_v2(t: &TestRow) -> Value {
    json!({
        "message": t.message.clone().unwrap_or_default(),
        "source": t.source,
        "run_time": t.run_time,
        "file": t.file.clone().unwrap_or_default(),
        "result": api_result(&t.result),
        "name": t.name,
        "classname": t.classname,
    })
}

async fn tests_v2(
    State(state): State<Arc<AppState>>,
    _auth: Auth,
    Path((vcs, org, repo, number)): JobPath,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Value>> {
    let (job, _) = job_by_path(&state, &vcs, &org, &repo, &number).await?;
    let start = match &q.page_token {
        Some(t) => read_page_token(t)?
            .strip_prefix("tests:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::BadRequest("page-token is not valid".into()))?,
        None => 0,
    };
    let rows = state.store.test_results_of_job(&job.id).await?;
    let items: Vec<Value> = rows.iter().skip(start).take(PAGE).map(item_v2).collect();
    let next = (start + PAGE < rows.len()).then(|| page_token(&format!("tests:{}", start + PAGE)));
    Ok(axum::Json(json!({"items": items, "next_page_token": next})))
}

async fn tests_v1(
    State(state): State<Arc<AppState>>,
    _auth: Auth,
    Path((vcs, org, repo, number)): JobPath,
) -> ApiResult<axum::Json<Value>> {
    let (job, _) = job_by_path(&state, &vcs, &org, &repo, &number).await?;
    let tests: Vec<Value> = state
        .store
        .test_results_of_job(&job.id)
        .await?
        .iter()
        .map(|t| {
            json!({
                "classname": t.classname,
                "file": t.file,
                "name": t.name,
                "result": api_result(&t.result),
                "run_time": t.run_time,
                "message": t.message,
                "source": t.source,
                "source_type": "junit",
            })
        })
        .collect();
    Ok(axum::Json(json!({"tests": tests, "exceptions": []})))
}
