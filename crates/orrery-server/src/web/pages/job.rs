//! A job: its steps (collapsible, with their output, live while the job
//! runs), its parallel runs as tabs, its artifacts and test results.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::HeaderMap;
use maud::html;

use super::pipeline::pipeline_by_path;
use super::{St, respond};
use crate::AppState;
use crate::api::path_number;
use crate::error::ApiError;
use crate::web::view::status;
use crate::web::{Html, WebUser};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
}

pub async fn page(
    state: St,
    user: WebUser,
    headers: HeaderMap,
    Path((vcs, org, repo, number, _workflow, job)): Path<(
        String,
        String,
        String,
        String,
        String,
        String,
    )>,
) -> Html {
    let (p, project) = pipeline_by_path(&state, &(vcs, org, repo, number)).await?;
    let n = path_number("the job number", &job)?;
    let job = state
        .store
        .job_by_number(&project.id, n)
        .await?
        .filter(|j| j.pipeline_id == p.id)
        .ok_or_else(|| ApiError::NotFound(format!("Job {n} not found")))?;
    let title = format!("{} · {} #{}", job.name, project.slug, n);
    let body = html! {
        div.page-head { h1 { (status(&job.status)) " " (job.name) } }
    };
    Ok(respond(&user, &headers, &title, None, body))
}
