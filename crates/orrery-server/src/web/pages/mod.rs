//! The pages. Each handler reads what it shows from the store (the same
//! rows the API reads) and renders it with [`super::view`]. Pages with a
//! live region re-render it when `/app/events` says something changed: the
//! script asks for the same URL with `X-Orrery-Fragment: 1` and gets the
//! region alone.

pub mod dashboard;
pub mod graph;
pub mod insights;
pub mod job;
pub mod live;
pub mod pipeline;
pub mod settings;

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use maud::Markup;

use super::{WebUser, page_response, redirect, view};
use crate::AppState;

pub type St = axum::extract::State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/pipelines", get(dashboard::all))
        .route("/pipelines/{vcs}/{org}/{repo}", get(dashboard::of_project))
        .route(
            "/pipelines/{vcs}/{org}/{repo}/{number}",
            get(pipeline::page),
        )
        .route(
            "/pipelines/{vcs}/{org}/{repo}/{number}/config",
            get(pipeline::config),
        )
        .route(
            "/pipelines/{vcs}/{org}/{repo}/{number}/workflows/{workflow}/jobs/{job}",
            get(job::page),
        )
        .route("/app/workflows/{id}/cancel", post(pipeline::cancel))
        .route("/app/workflows/{id}/rerun", post(pipeline::rerun))
        .route("/app/workflows/{id}/approve/{job}", post(pipeline::approve))
        .route("/app/events", get(live::events))
        .merge(job::routes())
        .merge(settings::routes())
        .merge(insights::routes())
}

/// `/`: the pipelines, or the sign-in page.
pub async fn home(user: Option<WebUser>) -> Response {
    match user {
        Some(_) => redirect("/pipelines"),
        None => redirect("/signin"),
    }
}

/// A whole page, or its live region alone when the page's script asks for
/// it.
pub fn respond(
    user: &WebUser,
    headers: &HeaderMap,
    title: &str,
    live: Option<&str>,
    body: Markup,
) -> Response {
    if headers.contains_key("x-orrery-fragment") {
        page_response(body)
    } else {
        page_response(view::page(user, title, live, body))
    }
}
