//! A pipeline: its trigger, its errors (an errored pipeline shows its
//! config's messages with their lines), each workflow as a graph with the
//! actions the user's role allows (cancel, rerun from the start or from
//! failed, approve), earlier runs, and its config (source and compiled).

use axum::extract::Path;
use axum::http::HeaderMap;
use maud::{Markup, html};
use orrery_store::{Job, Pipeline, Project, Workflow};
use serde::Deserialize;

use super::dashboard::latest_runs;
use super::graph;
use super::{St, respond};
use crate::api::v2::{pipeline_and_project, workflow_and_more};
use crate::api::{path_id, path_number, project_by_path};
use crate::error::ApiError;
use crate::web::session::{Empty, WebForm};
use crate::web::view::{self, action_button, status, when};
use crate::web::{Html, WebUser, redirect};

type PipelinePath = Path<(String, String, String, String)>;

pub async fn pipeline_by_path(
    state: &crate::AppState,
    (vcs, org, repo, number): &(String, String, String, String),
) -> Result<(Pipeline, Project), ApiError> {
    let project = project_by_path(state, vcs, org, repo).await?;
    let n = path_number("the pipeline number", number)?;
    let p = state
        .store
        .pipeline_by_number(&project.id, n)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Pipeline {} #{n} not found", project.slug)))?;
    Ok((p, project))
}

pub fn pipeline_url(project: &Project, number: i64) -> String {
    format!("/pipelines/{}/{number}", project.slug)
}

pub fn job_url(project: &Project, pipeline: i64, workflow: &str, job: &Job) -> Option<String> {
    job.number.map(|n| {
        format!(
            "/pipelines/{}/{pipeline}/workflows/{workflow}/jobs/{n}",
            project.slug
        )
    })
}

pub async fn page(state: St, user: WebUser, headers: HeaderMap, path: PipelinePath) -> Html {
    let (p, project) = pipeline_by_path(&state, &path.0).await?;
    let workflows = state.store.workflows_of_pipeline(&p.id).await?;
    let latest: Vec<&Workflow> = latest_runs(&workflows);
    let mut earlier: Vec<&Workflow> = workflows
        .iter()
        .filter(|w| !latest.iter().any(|l| l.id == w.id))
        .collect();
    earlier.reverse();
    let mut sections = Vec::new();
    for w in &latest {
        let jobs = state.store.jobs_of_workflow(&w.id).await?;
        sections.push(workflow_section(&user, &project, &p, w, &jobs, true));
    }
    let mut older = Vec::new();
    for w in &earlier {
        let jobs = state.store.jobs_of_workflow(&w.id).await?;
        older.push(workflow_section(&user, &project, &p, w, &jobs, false));
    }
    let errors: Vec<serde_json::Value> = serde_json::from_str(&p.errors).unwrap_or_default();
    let title = format!("{} #{}", project.slug, p.number);
    let body = html! {
        div.page-head {
            h1 { a href={"/pipelines/" (project.slug)} { (project.slug) } " #" (p.number) }
            (trigger(&p, &project))
        }
        @if !errors.is_empty() {
            section.errors data-testid="pipeline-errors" {
                h2 { (status("errored")) " The config could not be used" }
                @for e in &errors {
                    pre.config-error { (e["message"].as_str().unwrap_or_default()) }
                }
            }
        }
        @for s in sections { (s) }
        @if !older.is_empty() {
            details.earlier {
                summary { "Earlier runs (" (older.len()) ")" }
                @for s in older { (s) }
            }
        }
        p { a href={(pipeline_url(&project, p.number)) "/config"} data-testid="config-link" { "Configuration" } }
    };
    let live = format!("scope=pipeline&id={}", p.id);
    Ok(respond(&user, &headers, &title, Some(&live), body))
}

fn trigger(p: &Pipeline, project: &Project) -> Markup {
    html! {
        p.trigger data-testid="trigger" {
            "Triggered by " strong { (p.trigger_actor) } " (" (p.trigger_type.replace('_', " ")) ") "
            @if let Some(t) = &p.tag { "on tag " code { (t) } " " }
            @else if let Some(b) = &p.branch {
                "on " a href={"/pipelines/" (project.slug) "?branch=" (view::seg(b))} { code { (b) } } " "
            }
            "at " code { (p.revision.get(..12).unwrap_or(&p.revision)) } " · " (when(p.created_at))
            @if let Some(s) = &p.commit_subject { br; span.subject { (s) } }
        }
    }
}

fn ended(w: &Workflow) -> bool {
    matches!(
        w.status.as_str(),
        "success" | "failed" | "error" | "canceled" | "unauthorized" | "not_run"
    )
}

fn workflow_section(
    user: &WebUser,
    project: &Project,
    p: &Pipeline,
    w: &Workflow,
    jobs: &[Job],
    latest: bool,
) -> Markup {
    let actions = format!("/app/workflows/{}", w.id);
    html! {
        section.workflow id={"wf-" (w.id)} data-testid="workflow" data-workflow=(w.name) data-status=(w.status) {
            div.wf-head {
                h2 { (status(&w.status)) " " (w.name) }
                span.dim {
                    @if let Some(d) = view::span(Some(w.created_at), w.stopped_at) { (d) " · " }
                    "started by " (w.started_by)
                    @if let Some(c) = &w.canceled_by { " · canceled by " (c) }
                    @if w.rerun_of.is_some() { " · a rerun" }
                }
                @if latest && user.can_write() {
                    div.actions {
                        @if !ended(w) {
                            (action_button(user, &format!("{actions}/cancel"), "Cancel workflow", "danger", "cancel"))
                        } @else {
                            form.inline method="post" action={(actions) "/rerun"} {
                                (view::csrf(user))
                                button type="submit" data-testid="rerun" { "Rerun workflow from start" }
                            }
                            @if matches!(w.status.as_str(), "failed" | "error" | "canceled") {
                                form.inline method="post" action={(actions) "/rerun"} {
                                    (view::csrf(user))
                                    input type="hidden" name="from_failed" value="true";
                                    button type="submit" data-testid="rerun-failed" { "Rerun from failed" }
                                }
                            }
                        }
                    }
                }
            }
            div.graph-wrap { (graph::svg(jobs, |j| job_url(project, p.number, &w.id, j))) }
            ul.jobs {
                @for j in jobs {
                    li data-testid="job" data-job=(j.name) data-status=(j.status) {
                        (status(&j.status)) " "
                        @match job_url(project, p.number, &w.id, j) {
                            Some(u) => a href=(u) { (j.name) },
                            None => span { (j.name) },
                        }
                        @if let Some(d) = view::span(j.started_at, j.stopped_at) { " " span.dim { (d) } }
                        @if j.job_type == "approval" {
                            @if let Some(by) = &j.approved_by { " " span.dim { "approved by " (by) } }
                            @if j.status == "on_hold" && user.can_write() && latest {
                                " " (action_button(user, &format!("{actions}/approve/{}", j.id), "Approve", "primary", "approve"))
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn config(state: St, user: WebUser, headers: HeaderMap, path: PipelinePath) -> Html {
    let (p, project) = pipeline_by_path(&state, &path.0).await?;
    let (p, _) = pipeline_and_project(&state, &p.id).await?;
    let title = format!("Config of {} #{}", project.slug, p.number);
    let body = html! {
        div.page-head { h1 { a href=(pipeline_url(&project, p.number)) { (project.slug) " #" (p.number) } " · configuration" } }
        @for (name, text) in [
            ("Source", &p.config_source),
            ("Compiled", &p.config_compiled),
            ("Setup source", &p.setup_config_source),
            ("Setup compiled", &p.setup_config_compiled),
        ] {
            @if let Some(t) = text {
                details open[name == "Source"] {
                    summary { (name) }
                    pre.config data-testid={"config-" (name.to_lowercase().replace(' ', "-"))} { (t) }
                }
            }
        }
        @if p.config_source.is_none() && p.setup_config_source.is_none() { p.empty { "This pipeline has no config." } }
    };
    Ok(respond(&user, &headers, &title, None, body))
}

/// Where to go after an action on a workflow: its pipeline's page.
async fn back_to(state: &crate::AppState, w: &Workflow) -> Html {
    let (p, project) = pipeline_and_project(state, &w.pipeline_id).await?;
    Ok(redirect(&format!(
        "{}#wf-{}",
        pipeline_url(&project, p.number),
        w.id
    )))
}

pub async fn cancel(
    state: St,
    Path(id): Path<String>,
    WebForm { user, .. }: WebForm<Empty>,
) -> Html {
    user.require_write()?;
    let (w, _, _) = workflow_and_more(&state, &id).await?;
    state
        .engine
        .cancel_workflow(&w.id, &user.user.login)
        .await?;
    back_to(&state, &w).await
}

#[derive(Deserialize)]
pub struct RerunForm {
    #[serde(default)]
    from_failed: Option<String>,
}

pub async fn rerun(
    state: St,
    Path(id): Path<String>,
    WebForm { user, form }: WebForm<RerunForm>,
) -> Html {
    user.require_write()?;
    let (w, _, _) = workflow_and_more(&state, &id).await?;
    let from_failed = form.from_failed.as_deref() == Some("true");
    state
        .engine
        .rerun(&w.id, from_failed, None, &user.user.login)
        .await?;
    back_to(&state, &w).await
}

pub async fn approve(
    state: St,
    Path((id, job)): Path<(String, String)>,
    WebForm { user, .. }: WebForm<Empty>,
) -> Html {
    user.require_write()?;
    let (w, _, _) = workflow_and_more(&state, &id).await?;
    let job_id = path_id("Job", &job)?;
    let j = state
        .store
        .job(&job_id)
        .await?
        .filter(|j| j.workflow_id == w.id)
        .ok_or_else(|| ApiError::NotFound("Job not found".into()))?;
    let request = j
        .approval_request_id
        .ok_or_else(|| ApiError::BadRequest(format!("{} is not an approval job", j.name)))?;
    state
        .engine
        .approve(&w.id, &request, &user.user.login)
        .await?;
    back_to(&state, &w).await
}
