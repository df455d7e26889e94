//! The pipelines dashboard: newest first, filtered by project, branch and
//! status, paged by position (the creation time and id of the last one
//! shown), live.

use std::collections::HashMap;

use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use maud::{Markup, html};
use orrery_store::{Pipeline, Project, Workflow};
use serde::Deserialize;

use super::{St, respond};
use crate::api::{page_token, project_by_path, read_page_token};
use crate::error::ApiError;
use crate::web::view::{self, seg, status, when};
use crate::web::{Html, WebUser};

/// Pipelines per page.
const PAGE: usize = 25;
/// Pipelines read per query while filtering by status.
const BATCH: i64 = 100;
/// Batches read for one page at most (a rare status over many pipelines).
const MAX_BATCHES: usize = 20;

#[derive(Deserialize, Default, Clone)]
pub struct Filter {
    project: Option<String>,
    branch: Option<String>,
    status: Option<String>,
    page: Option<String>,
}

impl Filter {
    fn clean(mut self) -> Filter {
        for f in [
            &mut self.project,
            &mut self.branch,
            &mut self.status,
            &mut self.page,
        ] {
            if f.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *f = None;
            }
        }
        self
    }

    fn query(&self, page: Option<&str>) -> String {
        let mut parts: Vec<(&str, &str)> = Vec::new();
        for (k, v) in [
            ("project", &self.project),
            ("branch", &self.branch),
            ("status", &self.status),
        ] {
            if let Some(v) = v {
                parts.push((k, v));
            }
        }
        if let Some(p) = page {
            parts.push(("page", p));
        }
        serde_urlencoded::to_string(parts).unwrap_or_default()
    }
}

/// The statuses a pipeline can be filtered by (its workflows', or
/// `errored`).
const STATUSES: &[&str] = &[
    "running", "success", "failed", "on_hold", "canceled", "failing", "error", "errored",
];

/// What a pipeline's row says about its status: the pipeline's own when it
/// errored, else its workflows'.
fn matches_status(p: &Pipeline, workflows: &[&Workflow], wanted: &str) -> bool {
    if wanted == "errored" {
        return p.state == "errored";
    }
    workflows.iter().any(|w| w.status == wanted)
}

pub async fn all(
    state: St,
    user: WebUser,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Html {
    let filter = filter.clean();
    let project = match &filter.project {
        Some(slug) => {
            let mut it = slug.splitn(3, '/');
            let (v, o, r) = (
                it.next().unwrap_or_default(),
                it.next().unwrap_or_default(),
                it.next().unwrap_or_default(),
            );
            Some(project_by_path(&state, v, o, r).await?)
        }
        None => None,
    };
    render(&state, &user, &headers, filter, project).await
}

pub async fn of_project(
    state: St,
    user: WebUser,
    headers: HeaderMap,
    Path((vcs, org, repo)): Path<(String, String, String)>,
    Query(filter): Query<Filter>,
) -> Html {
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    let mut filter = filter.clean();
    filter.project = Some(project.slug.clone());
    render(&state, &user, &headers, filter, Some(project)).await
}

async fn render(
    state: &crate::AppState,
    user: &WebUser,
    headers: &HeaderMap,
    filter: Filter,
    project: Option<Project>,
) -> Html {
    if let Some(s) = &filter.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "`{s}` is not a status to filter by; use one of {}",
            STATUSES.join(", ")
        ))
        .into());
    }
    let mut position = match &filter.page {
        Some(t) => {
            let text = read_page_token(t)?;
            let (at, id) = text
                .split_once(':')
                .and_then(|(a, i)| Some((a.parse::<i64>().ok()?, i.to_string())))
                .ok_or_else(|| ApiError::BadRequest("The page link is not valid.".into()))?;
            Some((at, id))
        }
        None => None,
    };
    let projects: HashMap<String, Project> = state
        .store
        .projects()
        .await?
        .into_iter()
        .map(|p| (p.id.clone(), p))
        .collect();
    let mut shown: Vec<(Pipeline, Vec<Workflow>)> = Vec::new();
    let mut more = false;
    'scan: for _ in 0..MAX_BATCHES {
        let limit = if filter.status.is_some() {
            BATCH
        } else {
            PAGE as i64 + 1
        };
        let batch = state
            .store
            .pipelines(
                project.as_ref().map(|p| p.id.as_str()),
                filter.branch.as_deref(),
                position.clone(),
                limit,
            )
            .await?;
        let full = batch.len() as i64 == limit;
        let ids: Vec<String> = batch.iter().map(|p| p.id.clone()).collect();
        let mut workflows: HashMap<String, Vec<Workflow>> = HashMap::new();
        for w in state.store.workflow_summaries(&ids).await? {
            workflows.entry(w.pipeline_id.clone()).or_default().push(w);
        }
        for p in batch {
            let ws = workflows.remove(&p.id).unwrap_or_default();
            let latest = latest_runs(&ws);
            if let Some(s) = &filter.status
                && !matches_status(&p, &latest, s)
            {
                position = Some((p.created_at, p.id.clone()));
                continue;
            }
            if shown.len() == PAGE {
                more = true;
                break 'scan;
            }
            position = Some((p.created_at, p.id.clone()));
            shown.push((p, ws));
        }
        if !full {
            break;
        }
    }
    let next = more
        .then(|| shown.last())
        .flatten()
        .map(|(p, _)| page_token(&format!("{}:{}", p.created_at, p.id)));
    let title = match &project {
        Some(p) => format!("Pipelines of {}", p.slug),
        None => "Pipelines".to_string(),
    };
    let body = html! {
        div.page-head {
            h1 { (title) }
            @if let Some(p) = &project {
                a href=(super::insights::insights_url(p)) data-testid="insights-link" { "Insights" }
            }
            (filters(&filter, &projects))
        }
        @if shown.is_empty() {
            p.empty data-testid="no-pipelines" {
                "No pipelines yet. "
                @if projects.is_empty() { a href="/projects" { "Add a project" } ", then push a commit." }
                @else { "Push a commit to a project, or trigger one from the API." }
            }
        } @else {
            table.pipelines data-testid="pipelines" {
                thead { tr { th { "Pipeline" } th { "Status" } th { "Trigger" } th { "Commit" } th { "Started" } } }
                tbody {
                    @for (p, ws) in &shown {
                        @if let Some(pr) = projects.get(&p.project_id) { (row(p, pr, ws)) }
                    }
                }
            }
        }
        nav.pager {
            @if filter.page.is_some() {
                a href={"?" (filter.query(None))} { "Newest" }
            }
            @if let Some(n) = &next {
                a href={"?" (filter.query(Some(n)))} data-testid="next-page" { "Older →" }
            }
        }
    };
    Ok(respond(
        user,
        headers,
        &title,
        Some("scope=pipelines"),
        body,
    ))
}

/// The latest run of each workflow of a pipeline (reruns replace it).
pub fn latest_runs(ws: &[Workflow]) -> Vec<&Workflow> {
    let mut latest: Vec<&Workflow> = Vec::new();
    for w in ws {
        match latest.iter_mut().find(|l| l.name == w.name) {
            Some(l) if w.created_at >= l.created_at => *l = w,
            Some(_) => {}
            None => latest.push(w),
        }
    }
    latest
}

fn filters(f: &Filter, projects: &HashMap<String, Project>) -> Markup {
    let mut slugs: Vec<&str> = projects.values().map(|p| p.slug.as_str()).collect();
    slugs.sort_unstable();
    html! {
        form.filters method="get" action="/pipelines" {
            label { "Project "
                select name="project" {
                    option value="" { "All projects" }
                    @for s in &slugs {
                        option value=(s) selected[f.project.as_deref() == Some(*s)] { (s) }
                    }
                }
            }
            label { "Branch " input name="branch" value=[f.branch.as_deref()] placeholder="any"; }
            label { "Status "
                select name="status" {
                    option value="" { "Any" }
                    @for s in STATUSES {
                        option value=(s) selected[f.status.as_deref() == Some(*s)] { (s.replace('_', " ")) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
    }
}

fn row(p: &Pipeline, project: &Project, ws: &[Workflow]) -> Markup {
    let link = format!("/pipelines/{}/{}", project.slug, p.number);
    let latest = latest_runs(ws);
    let (vcs_ref, ref_kind) = match (&p.tag, &p.branch) {
        (Some(t), _) => (t.as_str(), "tag"),
        (None, Some(b)) => (b.as_str(), "branch"),
        _ => ("", ""),
    };
    html! {
        tr data-testid="pipeline-row" data-number=(p.number) data-project=(project.slug) {
            td {
                a.pipeline-link href=(link) { (project.slug) " #" (p.number) }
            }
            td.workflows {
                @if p.state == "errored" {
                    (status("errored"))
                }
                @for w in &latest {
                    a.wf href={(link) "#wf-" (w.id)} title=(w.name) {
                        (status(&w.status)) " " span.wf-name { (w.name) }
                        @if let Some(d) = view::span(Some(w.created_at), w.stopped_at) {
                            " " span.dim { (d) }
                        }
                    }
                }
            }
            td {
                span.actor { (p.trigger_actor) } " "
                span.dim { (p.trigger_type.replace('_', " ")) }
            }
            td.commit {
                @if !vcs_ref.is_empty() {
                    a.ref href={"/pipelines/" (project.slug) "?branch=" (seg(vcs_ref))} class=(ref_kind) { (vcs_ref) } " "
                }
                code { (p.revision.get(..7).unwrap_or(&p.revision)) } " "
                span.subject { (p.commit_subject.as_deref().unwrap_or("")) }
            }
            td { (when(p.created_at)) }
        }
    }
}
