//! Status badges: `/{vcs}/{org}/{repo}.svg?branch=`, as CircleCI serves
//! them: "CircleCI | passing" (or `failed`, `running`, `on hold`,
//! `canceled`, `no builds`) for the latest pipeline of the branch (the
//! project's default branch when none is given), from its workflows.
//!
//! Badges are public: they are served without signing in, like CircleCI's
//! badges of public projects, so a README can show them. They say a status
//! and nothing else (no names, commits or messages); an unknown project is a
//! plain 404 (the same as a project one may not see would be). Other query
//! parameters CircleCI takes (`style`, `circle-token`) are accepted and
//! ignored.
//!
//! The route is `/{vcs}/{org}/{repo}` (the router cannot match a suffix):
//! the handler takes only `GET`/`HEAD` of a last segment ending in `.svg`
//! and answers everything else the way the router's fallback does, so it
//! shadows no other route or error.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use orrery_store::Project;
use serde::Deserialize;

use super::pages::dashboard::latest_runs;
use crate::AppState;
use crate::api::project_by_path;
use crate::error::ApiError;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/{vcs}/{org}/{repo}", any(badge))
}

#[derive(Deserialize, Default)]
struct BadgeQuery {
    branch: Option<String>,
}

async fn badge(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    Path((vcs, org, repo)): Path<(String, String, String)>,
) -> Response {
    let name = repo
        .strip_suffix(".svg")
        .filter(|n| !n.is_empty() && (method == Method::GET || method == Method::HEAD));
    let Some(name) = name else {
        return crate::api::not_found(uri, headers).await;
    };
    let q: BadgeQuery = query
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    match status(&state, &vcs, &org, name, q.branch.as_deref()).await {
        Ok(s) => svg_response(s),
        Err(ApiError::NotFound(m)) => (
            StatusCode::NOT_FOUND,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            m,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

fn svg_response(status: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        svg(status),
    )
        .into_response()
}

async fn status(
    state: &AppState,
    vcs: &str,
    org: &str,
    repo: &str,
    branch: Option<&str>,
) -> Result<&'static str, ApiError> {
    let project: Project = project_by_path(state, vcs, org, repo).await?;
    let branch = match branch.map(str::trim) {
        Some(b) if !b.is_empty() => b.to_string(),
        _ => project.default_branch.clone(),
    };
    let Some(p) = state
        .store
        .pipelines(Some(&project.id), Some(&branch), None, 1)
        .await?
        .into_iter()
        .next()
    else {
        return Ok("no builds");
    };
    if p.state == "errored" {
        return Ok("failed");
    }
    let workflows = state
        .store
        .workflow_summaries(std::slice::from_ref(&p.id))
        .await?;
    let latest = latest_runs(&workflows);
    if latest.is_empty() {
        // Still being set up, or no workflow ran on this branch.
        return Ok(
            if matches!(p.state.as_str(), "setup-pending" | "setup" | "pending") {
                "running"
            } else {
                "no builds"
            },
        );
    }
    let statuses: Vec<&str> = latest.iter().map(|w| w.status.as_str()).collect();
    Ok(summary(&statuses))
}

/// One word for a pipeline's workflows: a failure wins, then work still
/// going on, then holds; `passing` when all succeeded.
fn summary(statuses: &[&str]) -> &'static str {
    let any = |set: &[&str]| statuses.iter().any(|s| set.contains(s));
    if any(&["failed", "error", "failing", "unauthorized"]) {
        "failed"
    } else if any(&["running"]) {
        "running"
    } else if any(&["on_hold"]) {
        "on hold"
    } else if statuses.iter().all(|s| *s == "success") {
        "passing"
    } else if any(&["canceled"]) {
        "canceled"
    } else if any(&["success"]) {
        "passing"
    } else {
        "no builds"
    }
}

fn color(status: &str) -> &'static str {
    match status {
        "passing" => "#42c88a",
        "failed" => "#cc4242",
        "running" => "#6ac6e0",
        "on hold" => "#8b70e0",
        _ => "#9f9f9f",
    }
}

/// Text width in pixels at 11 px Verdana, near enough.
fn text_width(s: &str) -> usize {
    s.chars()
        .map(|c| match c {
            'i' | 'l' | 'I' | '.' | ' ' => 4,
            'm' | 'w' | 'M' | 'W' => 10,
            c if c.is_ascii_uppercase() => 8,
            _ => 7,
        })
        .sum()
}

/// A flat badge in the shields.io layout CircleCI uses.
fn svg(status: &str) -> String {
    let label = "CircleCI";
    let lw = text_width(label) + 12;
    let rw = text_width(status) + 12;
    let w = lw + rw;
    let (lx, rx) = (lw * 10 / 2, (lw * 10) + rw * 10 / 2);
    let (ltl, rtl) = (text_width(label) * 10, text_width(status) * 10);
    let fill = color(status);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{label}: {status}" data-status="{status}"><title>{label}: {status}</title><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{rw}" height="20" fill="{fill}"/><rect width="{w}" height="20" fill="url(#s)"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="110"><text aria-hidden="true" x="{lx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{ltl}">{label}</text><text x="{lx}" y="140" transform="scale(.1)" fill="#fff" textLength="{ltl}">{label}</text><text aria-hidden="true" x="{rx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{rtl}">{status}</text><text x="{rx}" y="140" transform="scale(.1)" fill="#fff" textLength="{rtl}">{status}</text></g></svg>"##
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        assert_eq!(summary(&["success", "success"]), "passing");
        assert_eq!(summary(&["success", "failed"]), "failed");
        assert_eq!(summary(&["running", "success"]), "running");
        assert_eq!(summary(&["on_hold"]), "on hold");
        assert_eq!(summary(&["canceled"]), "canceled");
        assert_eq!(summary(&["success", "not_run"]), "passing");
        assert_eq!(summary(&["not_run"]), "no builds");
    }

    #[test]
    fn badges_are_svg() {
        let s = svg("passing");
        assert!(s.starts_with("<svg") && s.contains(">passing</text>"));
        assert!(s.contains("#42c88a"));
    }
}
