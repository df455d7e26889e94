//! CircleCI API v1.1, the parts scripts still read: a job's details with its
//! steps, actions and each action's output, and recent builds.
//!
//! `output_url` points at this server (`.../output/{step}/{node}`), which
//! answers CircleCI's JSON: `[{"type": "out", "time": ..., "message": ...}]`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use orrery_store::{Job, Project};
use serde::Deserialize;
use serde_json::{Value, json};

use super::live::latest_tasks;
use super::v2::job_by_path;
use super::{Query, project_by_path, time, time_opt};
use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1.1/recent-builds", get(recent_all))
        .route("/api/v1.1/project/{vcs}/{org}/{repo}", get(recent_project))
        .route(
            "/api/v1.1/project/{vcs}/{org}/{repo}/{number}",
            get(job_details),
        )
        .route(
            "/api/v1.1/project/{vcs}/{org}/{repo}/{number}/output/{step}/{node}",
            get(action_output),
        )
}

/// v1.1 `lifecycle` and `outcome` of a job status.
fn lifecycle(status: &str) -> (&'static str, Value) {
    match status {
        "queued" | "blocked" | "on_hold" => ("queued", Value::Null),
        "not_running" => ("not_running", Value::Null),
        "running" => ("running", Value::Null),
        "not_run" => ("not_run", Value::Null),
        other => ("finished", json!(other)),
    }
}

async fn summary(state: &AppState, job: &Job, project: &Project) -> ApiResult<Value> {
    let pipeline = state.store.pipeline(&job.pipeline_id).await?;
    let workflow = state.store.workflow(&job.workflow_id).await?;
    let (lifecycle, outcome) = lifecycle(&job.status);
    let (org, repo) = project
        .slug
        .split_once('/')
        .and_then(|(_, rest)| rest.split_once('/'))
        .unwrap_or_default();
    let build_time = match (job.started_at, job.stopped_at) {
        (Some(a), Some(b)) => json!(b - a),
        _ => Value::Null,
    };
    let p = pipeline.as_ref();
    Ok(json!({
        "build_num": job.number,
        "build_url": format!("{}/{}/{}", state.base_url, project.slug, job.number.unwrap_or_default()),
        "status": job.status,
        "lifecycle": lifecycle,
        "outcome": outcome,
        "username": org,
        "reponame": repo,
        "vcs_url": project.repo_url,
        "vcs_type": project.vcs_provider,
        "vcs_revision": p.map(|p| p.revision.clone()),
        "branch": p.and_then(|p| p.branch.clone()),
        "vcs_tag": p.and_then(|p| p.tag.clone()),
        "subject": p.and_then(|p| p.commit_subject.clone()),
        "body": p.and_then(|p| p.commit_body.clone()),
        "why": p.map(|p| p.trigger_type.clone()),
        "user": {"login": p.map(|p| p.trigger_actor.clone())},
        "queued_at": time_opt(job.queued_at),
        "start_time": time_opt(job.started_at),
        "stop_time": time_opt(job.stopped_at),
        "build_time_millis": build_time,
        "parallel": job.parallelism,
        "workflows": workflow.as_ref().map(|w| json!({
            "job_name": job.name,
            "job_id": job.id,
            "workflow_id": w.id,
            "workflow_name": w.name,
            "workspace_id": w.workspace_id,
            "pipeline_id": job.pipeline_id,
            "pipeline_number": p.map(|p| p.number),
            "upstream_job_ids": serde_json::from_str::<Value>(&job.dependencies).unwrap_or(json!([])),
        })),
    }))
}

#[derive(Deserialize)]
struct RecentQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn recent(state: &AppState, project: Option<&Project>, q: RecentQuery) -> ApiResult<Value> {
    let limit = q.limit.unwrap_or(30);
    let offset = q.offset.unwrap_or(0);
    if !(1..=100).contains(&limit) || offset < 0 {
        return Err(ApiError::BadRequest(
            "limit must be 1 to 100 and offset not negative".into(),
        ));
    }
    let wanted = limit
        .checked_add(offset)
        .ok_or_else(|| ApiError::BadRequest("offset is too large".into()))?;
    let jobs = state
        .store
        .recent_jobs(project.map(|p| p.id.as_str()), wanted)
        .await?;
    let mut out = Vec::new();
    for job in jobs.iter().skip(offset as usize) {
        let p = match project {
            Some(p) => p.clone(),
            None => match state.store.project(&job.project_id).await? {
                Some(p) => p,
                None => continue,
            },
        };
        out.push(summary(state, job, &p).await?);
    }
    Ok(Value::Array(out))
}

async fn recent_all(
    State(state): State<Arc<AppState>>,
    _auth: Auth,
    Query(q): Query<RecentQuery>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(recent(&state, None, q).await?))
}

async fn recent_project(
    State(state): State<Arc<AppState>>,
    _auth: Auth,
    Path((vcs, org, repo)): Path<(String, String, String)>,
    Query(q): Query<RecentQuery>,
) -> ApiResult<axum::Json<Value>> {
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    Ok(axum::Json(recent(&state, Some(&project), q).await?))
}

async fn job_details(
    State(state): State<Arc<AppState>>,
    _auth: Auth,
    Path((vcs, org, repo, number)): Path<(String, String, String, String)>,
) -> ApiResult<axum::Json<Value>> {
    let (job, project) = job_by_path(&state, &vcs, &org, &repo, &number).await?;
    let mut out = summary(&state, &job, &project).await?;
    // Steps: one per step index, with one action per parallel node (its
    // latest attempt). An earlier attempt that failed for infrastructure
    // reasons (its runner was lost) adds its `Infrastructure failure` step,
    // so the retry's reason stays visible.
    let all_tasks = state.store.tasks_of_job(&job.id).await?;
    let tasks = latest_tasks(all_tasks.clone());
    let mut shown: Vec<(&orrery_store::Task, bool)> = Vec::new();
    for t in &all_tasks {
        let latest = tasks.get(&t.node_index).is_some_and(|l| l.id == t.id);
        if latest || t.result.as_deref() == Some("infrastructure_fail") {
            shown.push((t, latest));
        }
    }
    shown.sort_by_key(|(t, _)| (t.node_index, t.attempt));
    let mut steps: std::collections::BTreeMap<i64, (String, Vec<Value>)> = Default::default();
    for (task, latest) in shown {
        let node = &task.node_index;
        for s in state.store.steps_of_task(&task.id).await? {
            if !latest && s.status != "infrastructure_fail" {
                continue;
            }
            let outcome = orrery_engine::step_outcome(s.outcome.as_deref());
            let exit_code = outcome.as_ref().and_then(|o| o.exit_code());
            let run_time = s.stopped_at.map(|e| e - s.started_at);
            let has_output = !state
                .store
                .output(&task.id, s.step_index, 0)
                .await?
                .is_empty();
            let mut output_url = format!(
                "{}/api/v1.1/project/{}/{}/output/{}/{}",
                state.base_url,
                project.slug,
                job.number.unwrap_or_default(),
                s.step_index,
                node
            );
            if !latest {
                output_url.push_str(&format!("?attempt={}", task.attempt));
            }
            let action = json!({
                "index": node,
                "step": s.step_index,
                "name": s.name,
                "type": "test",
                "status": s.status,
                "background": s.background,
                "start_time": time(s.started_at),
                "end_time": time_opt(s.stopped_at),
                "run_time_millis": run_time,
                "exit_code": exit_code,
                "has_output": has_output,
                "output_url": output_url,
                "failed": matches!(s.status.as_str(), "failed" | "timedout" | "infrastructure_fail").then_some(true),
                "timedout": (s.status == "timedout").then_some(true),
                "canceled": (s.status == "canceled").then_some(true),
                "infrastructure_fail": (s.status == "infrastructure_fail").then_some(true),
                "attempt": task.attempt,
            });
            steps
                .entry(s.step_index)
                .or_insert_with(|| (s.name.clone(), Vec::new()))
                .1
                .push(action);
        }
    }
    out["steps"] = Value::Array(
        steps
            .into_values()
            .map(|(name, actions)| json!({"name": name, "actions": actions}))
            .collect(),
    );
    Ok(axum::Json(out))
}

#[derive(Deserialize)]
struct OutputQuery {
    /// An earlier attempt of the node (default: the latest).
    attempt: Option<i64>,
}

async fn action_output(
    State(state): State<Arc<AppState>>,
    _auth: Auth,
    Query(q): Query<OutputQuery>,
    Path((vcs, org, repo, number, step, node)): Path<(
        String,
        String,
        String,
        String,
        String,
        String,
    )>,
) -> ApiResult<axum::Json<Value>> {
    let (job, _) = job_by_path(&state, &vcs, &org, &repo, &number).await?;
    let step: i64 = step
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("step `{step}` is not a number")))?;
    let node: i64 = node
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("node `{node}` is not a number")))?;
    let all_tasks = state.store.tasks_of_job(&job.id).await?;
    let task = match q.attempt {
        Some(a) => all_tasks
            .into_iter()
            .find(|t| t.node_index == node && t.attempt == a),
        None => latest_tasks(all_tasks).remove(&node),
    }
    .ok_or_else(|| ApiError::NotFound("Action not found".into()))?;
    let steps = state.store.steps_of_task(&task.id).await?;
    let s = steps
        .iter()
        .find(|s| s.step_index == step)
        .ok_or_else(|| ApiError::NotFound("Action not found".into()))?;
    let mut bytes = Vec::new();
    for (_, chunk) in state.store.output(&task.id, step, 0).await? {
        bytes.extend_from_slice(&chunk);
    }
    if bytes.is_empty() {
        return Ok(axum::Json(json!([])));
    }
    Ok(axum::Json(json!([{
        "type": "out",
        "time": time(s.stopped_at.unwrap_or(s.started_at)),
        "message": String::from_utf8_lossy(&bytes),
    }])))
}
