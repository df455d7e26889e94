//! CircleCI API v2: paths, field names, status values and `next_page_token`
//! pagination as CircleCI documents them, plus Orrery's documented additions
//! (creating a project from a git URL, its webhook).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use indexmap::IndexMap;
use orrery_config::{CompileOptions, InputValue, PipelineValues, compile, print};
use orrery_engine::{TriggerKind, TriggerRequest};
use orrery_store::{Job, NewProject, Pipeline, Project, Workflow};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Json, Query, normalize_vcs, page_token, path_id, path_number, project_by_path, read_page_token,
    time, time_opt,
};
use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::secrets::new_token;

type St = State<Arc<AppState>>;
type Slug = Path<(String, String, String)>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v2/me", get(me))
        .route("/api/v2/me/collaborations", get(collaborations))
        .route(
            "/api/v2/project/{vcs}/{org}/{repo}",
            get(project_get).post(project_create),
        )
        .route(
            "/api/v2/project/{vcs}/{org}/{repo}/webhook",
            get(project_webhook),
        )
        .route(
            "/api/v2/project/{vcs}/{org}/{repo}/pipeline",
            get(project_pipelines).post(trigger),
        )
        .route(
            "/api/v2/project/{vcs}/{org}/{repo}/pipeline/{number}",
            get(pipeline_by_number),
        )
        .route(
            "/api/v2/project/{vcs}/{org}/{repo}/job/{number}",
            get(job_details),
        )
        .route(
            "/api/v2/project/{vcs}/{org}/{repo}/job/{number}/cancel",
            post(job_cancel),
        )
        .route(
            "/api/v2/project/{vcs}/{org}/{repo}/envvar",
            get(envvar_list).post(envvar_create),
        )
        .route(
            "/api/v2/project/{vcs}/{org}/{repo}/envvar/{name}",
            get(envvar_get).delete(envvar_delete),
        )
        .route("/api/v2/pipeline", get(org_pipelines))
        .route("/api/v2/pipeline/continue", post(pipeline_continue))
        .route("/api/v2/pipeline/{id}", get(pipeline_get))
        .route("/api/v2/pipeline/{id}/config", get(pipeline_config))
        .route("/api/v2/pipeline/{id}/workflow", get(pipeline_workflows))
        .route("/api/v2/workflow/{id}", get(workflow_get))
        .route("/api/v2/workflow/{id}/job", get(workflow_jobs))
        .route("/api/v2/workflow/{id}/cancel", post(workflow_cancel))
        .route("/api/v2/workflow/{id}/rerun", post(workflow_rerun))
        .route(
            "/api/v2/workflow/{id}/approve/{request_id}",
            post(workflow_approve),
        )
        .route(
            "/api/v2/compile-config-with-defaults",
            post(compile_with_defaults),
        )
}

fn accepted() -> (StatusCode, axum::Json<Value>) {
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"message": "Accepted."})),
    )
}

// ---- me ----

async fn me(Auth(user): Auth) -> axum::Json<Value> {
    axum::Json(json!({"id": user.id, "login": user.login, "name": user.name, "avatar_url": null}))
}

async fn collaborations(State(state): St, _auth: Auth) -> ApiResult<axum::Json<Value>> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for p in state.store.projects().await? {
        if seen.contains(&p.org_id) {
            continue;
        }
        seen.push(p.org_id.clone());
        if let Some(org) = state.store.org(&p.org_id).await? {
            let vcs = p.slug.split('/').next().unwrap_or_default().to_string();
            out.push(json!({
                "id": org.id,
                "vcs_type": org.vcs_type,
                "name": org.name,
                "avatar_url": null,
                "slug": format!("{vcs}/{}", org.name),
            }));
        }
    }
    Ok(axum::Json(Value::Array(out)))
}

// ---- projects ----

fn provider_name(vcs_provider: &str) -> &'static str {
    match vcs_provider {
        "github" => "GitHub",
        "gitlab" => "GitLab",
        "gitea" => "Gitea",
        "bitbucket" => "Bitbucket",
        _ => "Git",
    }
}

pub fn project_json(p: &Project, org_name: &str) -> Value {
    let vcs = p.slug.split('/').next().unwrap_or_default();
    json!({
        "id": p.id,
        "slug": p.slug,
        "name": p.name,
        "organization_name": org_name,
        "organization_slug": format!("{vcs}/{org_name}"),
        "organization_id": p.org_id,
        "vcs_info": {
            "vcs_url": p.repo_url,
            "provider": provider_name(&p.vcs_provider),
            "default_branch": p.default_branch,
        },
    })
}

async fn org_name(state: &AppState, p: &Project) -> ApiResult<String> {
    Ok(state
        .store
        .org(&p.org_id)
        .await?
        .map(|o| o.name)
        .unwrap_or_default())
}

async fn project_get(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo)): Slug,
) -> ApiResult<axum::Json<Value>> {
    let p = project_by_path(&state, &vcs, &org, &repo).await?;
    let org = org_name(&state, &p).await?;
    Ok(axum::Json(project_json(&p, &org)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// Orrery's addition: where to clone from (`https://`, `ssh://`, `git@`,
    /// `file://` or a local path).
    pub repo_url: String,
    pub default_branch: Option<String>,
    /// `github`, `gitlab`, `gitea` or `git`; from the slug's prefix when absent.
    pub vcs_provider: Option<String>,
    /// A token for commit statuses (GitHub/GitLab/Gitea).
    pub vcs_token: Option<String>,
    /// The provider's API base URL, for commit statuses (self-hosted instances).
    pub vcs_api_url: Option<String>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with('.')
}

pub fn check_repo_url(url: &str) -> ApiResult<()> {
    let ok = url.starts_with("https://")
        || url.starts_with("http://")
        || url.starts_with("ssh://")
        || url.starts_with("git://")
        || url.starts_with("file://")
        || url.starts_with('/')
        || (url.contains('@') && url.contains(':') && !url.contains("://"));
    if !ok || url.starts_with('-') || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ApiError::BadRequest(format!(
            "repo_url `{url}` is not a git URL (https://, ssh://, git@host:path, file:// or an absolute path)"
        )));
    }
    Ok(())
}

/// Checks and creates a project (`POST /api/v2/project/...` and the web
/// app's form): the project and its webhook secret in clear, shown once.
pub async fn create_project(
    state: &AppState,
    vcs: &str,
    org: &str,
    repo: &str,
    body: CreateProject,
) -> ApiResult<(Project, String)> {
    let short = normalize_vcs(vcs).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "`{vcs}` is not a VCS type: use gh, github, gl, gitlab, bb, bitbucket, gitea or git"
        ))
    })?;
    for (what, value) in [("organization", org), ("repository", repo)] {
        if !valid_name(value) {
            return Err(ApiError::BadRequest(format!(
                "the {what} name `{value}` may only hold letters, digits, `-`, `_` and `.`"
            )));
        }
    }
    check_repo_url(&body.repo_url)?;
    let provider = match body.vcs_provider.as_deref() {
        Some(p @ ("github" | "gitlab" | "gitea" | "git")) => p.to_string(),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "vcs_provider `{other}` is not one of github, gitlab, gitea, git"
            )));
        }
        None => match short {
            "gh" => "github",
            "gl" => "gitlab",
            "gitea" => "gitea",
            _ => "git",
        }
        .to_string(),
    };
    let default_branch = body.default_branch.unwrap_or_else(|| "main".into());
    if default_branch.is_empty() || default_branch.contains("..") || default_branch.starts_with('-')
    {
        return Err(ApiError::BadRequest(format!(
            "default_branch `{default_branch}` is not a branch name"
        )));
    }
    if let Some(api) = &body.vcs_api_url
        && !(api.starts_with("https://") || api.starts_with("http://"))
    {
        return Err(ApiError::BadRequest(format!(
            "vcs_api_url `{api}` must be an http(s) URL"
        )));
    }
    let secret = new_token();
    let project = state
        .store
        .create_project(NewProject {
            org_name: org.to_string(),
            vcs_type: provider.clone(),
            name: repo.to_string(),
            slug: format!("{short}/{org}/{repo}"),
            vcs_provider: provider,
            repo_url: body.repo_url,
            default_branch,
            webhook_secret: state.cipher.seal(&secret),
            vcs_token: body.vcs_token.as_deref().map(|t| state.cipher.seal(t)),
        })
        .await
        .map_err(|e| match e {
            orrery_store::StoreError::Conflict(_) => {
                ApiError::Conflict(format!("Project {short}/{org}/{repo} already exists"))
            }
            other => other.into(),
        })?;
    if let Some(api) = body.vcs_api_url {
        state
            .store
            .set_setting(&format!("vcs_api_url:{}", project.id), &api)
            .await?;
    }
    Ok((project, secret))
}

async fn project_create(
    State(state): St,
    auth: Auth,
    Path((vcs, org, repo)): Slug,
    Json(body): Json<CreateProject>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    auth.require_write()?;
    let (project, secret) = create_project(&state, &vcs, &org, &repo, body).await?;
    let mut out = project_json(&project, &org);
    out["webhook"] = webhook_json(&state, &project, &secret);
    Ok((StatusCode::CREATED, axum::Json(out)))
}

pub fn webhook_json(state: &AppState, p: &Project, secret: &str) -> Value {
    let provider = match p.vcs_provider.as_str() {
        "github" | "gitlab" | "gitea" => p.vcs_provider.as_str(),
        _ => "generic",
    };
    json!({
        "url": format!("{}/hooks/{provider}/{}", state.base_url, p.id),
        "secret": secret,
        "urls": {
            "github": format!("{}/hooks/github/{}", state.base_url, p.id),
            "gitlab": format!("{}/hooks/gitlab/{}", state.base_url, p.id),
            "gitea": format!("{}/hooks/gitea/{}", state.base_url, p.id),
            "generic": format!("{}/hooks/generic/{}", state.base_url, p.id),
        },
    })
}

/// Orrery's addition: the webhook URL and secret (members and admins).
async fn project_webhook(
    State(state): St,
    auth: Auth,
    Path((vcs, org, repo)): Slug,
) -> ApiResult<axum::Json<Value>> {
    auth.require_write()?;
    let p = project_by_path(&state, &vcs, &org, &repo).await?;
    let secret = state
        .cipher
        .open(&p.webhook_secret)
        .ok_or_else(|| ApiError::Internal("the webhook secret cannot be decrypted".into()))?;
    Ok(axum::Json(webhook_json(&state, &p, &secret)))
}

// ---- pipelines ----

pub fn pipeline_json(p: &Pipeline, project: &Project) -> Value {
    let errors: Value = serde_json::from_str(&p.errors).unwrap_or_else(|_| json!([]));
    let params: Value = serde_json::from_str(&p.parameters).unwrap_or_else(|_| json!({}));
    json!({
        "id": p.id,
        "errors": errors,
        "project_slug": project.slug,
        "updated_at": time(p.updated_at),
        "number": p.number,
        "trigger_parameters": params,
        "state": p.state,
        "created_at": time(p.created_at),
        "trigger": {
            "type": p.trigger_type,
            "received_at": time(p.received_at),
            "actor": {"login": p.trigger_actor, "avatar_url": null},
        },
        "vcs": {
            "provider_name": provider_name(&project.vcs_provider),
            "target_repository_url": project.repo_url,
            "origin_repository_url": p.origin_repo_url,
            "branch": p.branch,
            "tag": p.tag,
            "revision": p.revision,
            "review_id": p.review_id,
            "review_url": p.review_url,
            "commit": {"subject": p.commit_subject, "body": p.commit_body},
        },
    })
}

/// Pipeline parameters from JSON: strings, integers and booleans.
pub fn parameters_from_json(value: Option<Value>) -> ApiResult<IndexMap<String, InputValue>> {
    let mut out = IndexMap::new();
    let Some(value) = value else {
        return Ok(out);
    };
    let Value::Object(map) = value else {
        if value.is_null() {
            return Ok(out);
        }
        return Err(ApiError::BadRequest(
            "parameters must be an object of names to values".into(),
        ));
    };
    for (k, v) in map {
        let v = match v {
            Value::Bool(b) => InputValue::Bool(b),
            Value::String(s) => InputValue::String(s),
            Value::Number(n) if n.is_i64() => InputValue::Integer(n.as_i64().unwrap_or_default()),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "parameters.{k} must be a string, an integer or a boolean, not {other}"
                )));
            }
        };
        out.insert(k, v);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct TriggerBody {
    branch: Option<String>,
    tag: Option<String>,
    parameters: Option<Value>,
}

async fn trigger(
    State(state): St,
    auth: Auth,
    Path((vcs, org, repo)): Slug,
    body: Option<Json<TriggerBody>>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    auth.require_write()?;
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    let body = body.map(|Json(b)| b).unwrap_or(TriggerBody {
        branch: None,
        tag: None,
        parameters: None,
    });
    let parameters = parameters_from_json(body.parameters)?;
    let branch = match (&body.branch, &body.tag) {
        (None, None) => Some(project.default_branch.clone()),
        _ => body.branch.clone(),
    };
    let pipeline = state
        .engine
        .trigger(
            &project,
            TriggerRequest {
                kind: TriggerKind::Api,
                actor: auth.0.login.clone(),
                branch,
                tag: body.tag,
                revision: None,
                parameters,
                review_id: None,
                review_url: None,
                only_workflow: None,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": pipeline.id,
            "state": pipeline.state,
            "number": pipeline.number,
            "created_at": time(pipeline.created_at),
        })),
    ))
}

#[derive(Deserialize)]
struct PipelineQuery {
    branch: Option<String>,
    #[serde(rename = "page-token")]
    page_token: Option<String>,
    #[serde(rename = "org-slug")]
    org_slug: Option<String>,
    mine: Option<bool>,
}

const PAGE: i64 = 20;

async fn list_pipelines(
    state: &AppState,
    project: Option<&Project>,
    q: &PipelineQuery,
    actor: Option<&str>,
) -> ApiResult<Value> {
    let before = match &q.page_token {
        Some(t) => {
            let text = read_page_token(t)?;
            let (at, id) = text
                .split_once(':')
                .ok_or_else(|| ApiError::BadRequest("page-token is not valid".into()))?;
            Some((
                at.parse()
                    .map_err(|_| ApiError::BadRequest("page-token is not valid".into()))?,
                id.to_string(),
            ))
        }
        None => None,
    };
    let mut items = Vec::new();
    // The position of the last pipeline read, and of the last one listed.
    let mut scanned = before;
    let mut listed: Option<(i64, String)> = None;
    let mut next = None;
    let mut projects: HashMap<String, Project> = HashMap::new();
    let token = |(at, id): &(i64, String)| page_token(&format!("{at}:{id}"));
    // Filters applied after the query (org, mine) may need several batches.
    // A next page is announced only when a pipeline for it was seen, so the
    // last page has no token.
    const BATCHES: usize = 50;
    'scan: for batch_number in 1..=BATCHES {
        let batch = state
            .store
            .pipelines(
                project.map(|p| p.id.as_str()),
                q.branch.as_deref(),
                scanned.clone(),
                PAGE + 1,
            )
            .await?;
        let more = batch.len() as i64 > PAGE;
        for p in batch {
            let position = (p.created_at, p.id.clone());
            scanned = Some(position.clone());
            if !projects.contains_key(&p.project_id)
                && let Some(pr) = state.store.project(&p.project_id).await?
            {
                projects.insert(pr.id.clone(), pr);
            }
            let Some(pr) = projects.get(&p.project_id) else {
                continue;
            };
            if let Some(org) = &q.org_slug {
                let org_of = pr.slug.rsplit_once('/').map(|(o, _)| o).unwrap_or_default();
                let (ov, on) = org.split_once('/').unwrap_or(("", org.as_str()));
                let (pv, pn) = org_of.split_once('/').unwrap_or_default();
                if pn != on || normalize_vcs(ov).is_some_and(|v| v != pv) {
                    continue;
                }
            }
            if let Some(a) = actor
                && p.trigger_actor != a
            {
                continue;
            }
            if items.len() as i64 == PAGE {
                next = listed.as_ref().map(token);
                break 'scan;
            }
            items.push(pipeline_json(&p, pr));
            listed = Some(position);
        }
        if !more {
            break;
        }
        if batch_number == BATCHES {
            // Enough read for one request: the client goes on from here.
            next = scanned.as_ref().map(token);
        }
    }
    Ok(json!({"items": items, "next_page_token": next}))
}

async fn project_pipelines(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo)): Slug,
    Query(q): Query<PipelineQuery>,
) -> ApiResult<axum::Json<Value>> {
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    Ok(axum::Json(
        list_pipelines(&state, Some(&project), &q, None).await?,
    ))
}

async fn org_pipelines(
    State(state): St,
    auth: Auth,
    Query(q): Query<PipelineQuery>,
) -> ApiResult<axum::Json<Value>> {
    let actor = q.mine.unwrap_or(false).then(|| auth.0.login.clone());
    Ok(axum::Json(
        list_pipelines(&state, None, &q, actor.as_deref()).await?,
    ))
}

pub async fn pipeline_and_project(state: &AppState, id: &str) -> ApiResult<(Pipeline, Project)> {
    let id = path_id("Pipeline", id)?;
    let p = state
        .store
        .pipeline(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Pipeline not found".into()))?;
    let project = state
        .store
        .project(&p.project_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Project not found".into()))?;
    Ok((p, project))
}

async fn pipeline_get(
    State(state): St,
    _auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let (p, project) = pipeline_and_project(&state, &id).await?;
    Ok(axum::Json(pipeline_json(&p, &project)))
}

async fn pipeline_by_number(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo, number)): Path<(String, String, String, String)>,
) -> ApiResult<axum::Json<Value>> {
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    let n = path_number("the pipeline number", &number)?;
    let p = state
        .store
        .pipeline_by_number(&project.id, n)
        .await?
        .ok_or_else(|| ApiError::NotFound("Pipeline not found".into()))?;
    Ok(axum::Json(pipeline_json(&p, &project)))
}

async fn pipeline_config(
    State(state): St,
    _auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let (p, _) = pipeline_and_project(&state, &id).await?;
    Ok(axum::Json(json!({
        "source": p.config_source.clone().or(p.setup_config_source.clone()).unwrap_or_default(),
        "compiled": p.config_compiled.clone().or(p.setup_config_compiled.clone()).unwrap_or_default(),
        "setup-config": p.setup_config_source,
        "compiled-setup-config": p.setup_config_compiled,
    })))
}

pub fn workflow_json(w: &Workflow, pipeline_number: i64, project_slug: &str) -> Value {
    json!({
        "id": w.id,
        "pipeline_id": w.pipeline_id,
        "pipeline_number": pipeline_number,
        "project_slug": project_slug,
        "name": w.name,
        "status": w.status,
        "tag": w.tag,
        "started_by": w.started_by,
        "canceled_by": w.canceled_by,
        "errored_by": null,
        "created_at": time(w.created_at),
        "stopped_at": time_opt(w.stopped_at),
        "rerun_of": w.rerun_of,
    })
}

async fn pipeline_workflows(
    State(state): St,
    _auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let (p, project) = pipeline_and_project(&state, &id).await?;
    let items: Vec<Value> = state
        .store
        .workflows_of_pipeline(&p.id)
        .await?
        .iter()
        .map(|w| workflow_json(w, p.number, &project.slug))
        .collect();
    Ok(axum::Json(json!({"items": items, "next_page_token": null})))
}

#[derive(Deserialize)]
struct ContinueBody {
    #[serde(rename = "continuation-key")]
    continuation_key: String,
    configuration: String,
    parameters: Option<Value>,
}

/// Authorized by the continuation key alone, as CircleCI does. The answer is
/// 200 (not 202 like the other actions): CircleCI's continuation orb checks
/// for exactly that status.
async fn pipeline_continue(
    State(state): St,
    Json(body): Json<ContinueBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let params = parameters_from_json(body.parameters)?;
    state
        .engine
        .continue_pipeline(&body.continuation_key, &body.configuration, params)
        .await?;
    Ok((StatusCode::OK, axum::Json(json!({"message": "Accepted."}))))
}

// ---- workflows ----

pub async fn workflow_and_more(
    state: &AppState,
    id: &str,
) -> ApiResult<(Workflow, Pipeline, Project)> {
    let id = path_id("Workflow", id)?;
    let w = state
        .store
        .workflow(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Workflow not found".into()))?;
    let (p, project) = pipeline_and_project(state, &w.pipeline_id).await?;
    Ok((w, p, project))
}

async fn workflow_get(
    State(state): St,
    _auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let (w, p, project) = workflow_and_more(&state, &id).await?;
    Ok(axum::Json(workflow_json(&w, p.number, &project.slug)))
}

pub fn job_item_json(j: &Job, project_slug: &str) -> Value {
    let deps: Value = serde_json::from_str(&j.dependencies).unwrap_or_else(|_| json!([]));
    json!({
        "id": j.id,
        "name": j.name,
        "job_number": j.number,
        "project_slug": project_slug,
        "status": j.status,
        "type": j.job_type,
        "dependencies": deps,
        "started_at": time_opt(j.started_at),
        "stopped_at": time_opt(j.stopped_at),
        "approved_by": j.approved_by,
        "canceled_by": j.canceled_by,
        "approval_request_id": j.approval_request_id,
    })
}

async fn workflow_jobs(
    State(state): St,
    _auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let (w, _, project) = workflow_and_more(&state, &id).await?;
    let items: Vec<Value> = state
        .store
        .jobs_of_workflow(&w.id)
        .await?
        .iter()
        .map(|j| job_item_json(j, &project.slug))
        .collect();
    Ok(axum::Json(json!({"items": items, "next_page_token": null})))
}

async fn workflow_cancel(
    State(state): St,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    auth.require_write()?;
    let (w, _, _) = workflow_and_more(&state, &id).await?;
    state.engine.cancel_workflow(&w.id, &auth.0.login).await?;
    Ok(accepted())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RerunBody {
    #[serde(default)]
    from_failed: bool,
    jobs: Option<Vec<String>>,
    #[serde(default)]
    enable_ssh: bool,
    #[serde(default)]
    sparse_tree: bool,
}

async fn workflow_rerun(
    State(state): St,
    auth: Auth,
    Path(id): Path<String>,
    body: Option<Json<RerunBody>>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    auth.require_write()?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    if body.enable_ssh {
        return Err(ApiError::BadRequest(
            "Rerunning with SSH is not supported by this server.".into(),
        ));
    }
    if body.from_failed && body.jobs.is_some() {
        return Err(ApiError::BadRequest(
            "from_failed and jobs cannot be combined".into(),
        ));
    }
    let _ = body.sparse_tree;
    let (w, _, _) = workflow_and_more(&state, &id).await?;
    let jobs = match body.jobs {
        Some(ids) => Some(
            ids.iter()
                .map(|j| path_id("Job", j))
                .collect::<ApiResult<Vec<_>>>()?,
        ),
        None => None,
    };
    let new_id = state
        .engine
        .rerun(&w.id, body.from_failed, jobs, &auth.0.login)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"workflow_id": new_id})),
    ))
}

async fn workflow_approve(
    State(state): St,
    auth: Auth,
    Path((id, request_id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    auth.require_write()?;
    let (w, _, _) = workflow_and_more(&state, &id).await?;
    let request_id = path_id("Approval request", &request_id)?;
    state
        .engine
        .approve(&w.id, &request_id, &auth.0.login)
        .await?;
    Ok(accepted())
}

// ---- jobs ----

pub async fn job_by_path(
    state: &AppState,
    vcs: &str,
    org: &str,
    repo: &str,
    number: &str,
) -> ApiResult<(Job, Project)> {
    let project = project_by_path(state, vcs, org, repo).await?;
    let n = path_number("the job number", number)?;
    let job = state
        .store
        .job_by_number(&project.id, n)
        .await?
        .ok_or_else(|| ApiError::NotFound("Job not found".into()))?;
    Ok((job, project))
}

fn executor_json(job: &Job) -> Value {
    let compiled: Option<orrery_config::Job> = serde_json::from_str(&job.job).ok();
    let Some(c) = compiled else {
        return json!({"type": null, "resource_class": null});
    };
    let kind = match &c.executor {
        Some(orrery_config::Executor::Docker(_)) => "docker",
        Some(orrery_config::Executor::Machine(_)) => "machine",
        Some(orrery_config::Executor::Macos(_)) => "macos",
        None => "docker",
    };
    json!({"type": kind, "resource_class": c.resource_class.unwrap_or_else(|| "medium".into())})
}

async fn job_details(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo, number)): Path<(String, String, String, String)>,
) -> ApiResult<axum::Json<Value>> {
    let (job, project) = job_by_path(&state, &vcs, &org, &repo, &number).await?;
    let workflow = state.store.workflow(&job.workflow_id).await?;
    let pipeline = state.store.pipeline(&job.pipeline_id).await?;
    let tasks = state.store.tasks_of_job(&job.id).await?;
    let mut latest: std::collections::BTreeMap<i64, &orrery_store::Task> = Default::default();
    for t in &tasks {
        if latest
            .get(&t.node_index)
            .is_none_or(|l| t.attempt > l.attempt)
        {
            latest.insert(t.node_index, t);
        }
    }
    let parallel_runs: Vec<Value> = latest
        .values()
        .map(|t| {
            let status = match t.state.as_str() {
                "finished" => t.result.clone().unwrap_or_else(|| "failed".into()),
                other => other.to_string(),
            };
            json!({"index": t.node_index, "status": status})
        })
        .collect();
    let duration = match (job.started_at, job.stopped_at) {
        (Some(a), Some(b)) => json!(b - a),
        _ => Value::Null,
    };
    let contexts: Vec<Value> = serde_json::from_str::<Vec<String>>(&job.contexts)
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({"name": c}))
        .collect();
    let org_name = org_name(&state, &project).await?;
    let web_url = match (&pipeline, &workflow) {
        (Some(p), Some(w)) => format!(
            "{}/pipelines/{}/{}/workflows/{}/jobs/{}",
            state.base_url,
            project.slug,
            p.number,
            w.id,
            job.number.unwrap_or_default()
        ),
        _ => String::new(),
    };
    Ok(axum::Json(json!({
        "web_url": web_url,
        "project": {
            "id": project.id,
            "slug": project.slug,
            "name": project.name,
            "external_url": project.repo_url,
        },
        "parallel_runs": parallel_runs,
        "started_at": time_opt(job.started_at),
        "latest_workflow": workflow.as_ref().map(|w| json!({"id": w.id, "name": w.name})),
        "name": job.name,
        "executor": executor_json(&job),
        "parallelism": job.parallelism,
        "status": job.status,
        "number": job.number,
        "pipeline": {"id": job.pipeline_id},
        "duration": duration,
        "created_at": time(job.created_at),
        "messages": [],
        "contexts": contexts,
        "organization": {"name": org_name},
        "queued_at": time_opt(job.queued_at),
        "stopped_at": time_opt(job.stopped_at),
    })))
}

async fn job_cancel(
    State(state): St,
    auth: Auth,
    Path((vcs, org, repo, number)): Path<(String, String, String, String)>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    auth.require_write()?;
    let (job, _) = job_by_path(&state, &vcs, &org, &repo, &number).await?;
    state.engine.cancel_job(&job.id, &auth.0.login).await?;
    Ok(accepted())
}

// ---- environment variables ----

/// CircleCI's mask: `xxxx` and the last four characters (only for values
/// long enough that those do not give most of it away).
pub fn mask(value: &str) -> String {
    let n = value.chars().count();
    if n >= 8 {
        let tail: String = value.chars().skip(n - 4).collect();
        format!("xxxx{tail}")
    } else {
        "xxxx".into()
    }
}

pub fn check_env_name(name: &str) -> ApiResult<()> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 256;
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "`{name}` is not a valid environment variable name: letters, digits and `_`, not starting with a digit"
        )))
    }
}

/// Checks and stores (sealed) a project's variable (the API and the web
/// app's form).
pub async fn set_envvar(
    state: &AppState,
    project: &Project,
    name: &str,
    value: &str,
) -> ApiResult<orrery_store::EnvVar> {
    check_env_name(name)?;
    if value.len() > 128 * 1024 {
        return Err(ApiError::BadRequest(
            "the value is longer than 128 KiB".into(),
        ));
    }
    Ok(state
        .store
        .set_env(&project.id, name, &state.cipher.seal(value))
        .await?)
}

async fn envvar_list(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo)): Slug,
) -> ApiResult<axum::Json<Value>> {
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    let mut items = Vec::new();
    for v in state.store.env(&project.id).await? {
        let clear = state.cipher.open(&v.value).unwrap_or_default();
        items
            .push(json!({"name": v.name, "value": mask(&clear), "created_at": time(v.created_at)}));
    }
    Ok(axum::Json(json!({"items": items, "next_page_token": null})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvBody {
    name: String,
    value: String,
}

async fn envvar_create(
    State(state): St,
    auth: Auth,
    Path((vcs, org, repo)): Slug,
    Json(body): Json<EnvBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    auth.require_write()?;
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    let v = set_envvar(&state, &project, &body.name, &body.value).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(
            json!({"name": v.name, "value": mask(&body.value), "created_at": time(v.created_at)}),
        ),
    ))
}

async fn envvar_get(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo, name)): Path<(String, String, String, String)>,
) -> ApiResult<axum::Json<Value>> {
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    let v = state
        .store
        .env(&project.id)
        .await?
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| ApiError::NotFound("Environment variable not found".into()))?;
    let clear = state.cipher.open(&v.value).unwrap_or_default();
    Ok(axum::Json(
        json!({"name": v.name, "value": mask(&clear), "created_at": time(v.created_at)}),
    ))
}

async fn envvar_delete(
    State(state): St,
    auth: Auth,
    Path((vcs, org, repo, name)): Path<(String, String, String, String)>,
) -> ApiResult<axum::Json<Value>> {
    auth.require_write()?;
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    if !state.store.delete_env(&project.id, &name).await? {
        return Err(ApiError::NotFound("Environment variable not found".into()));
    }
    Ok(axum::Json(
        json!({"message": "Environment variable deleted."}),
    ))
}

// ---- compile ----

#[derive(Deserialize)]
struct CompileBody {
    config_yaml: String,
    #[serde(default)]
    pipeline_parameters: Option<Value>,
    #[serde(default)]
    pipeline_values: Option<Value>,
    #[serde(default)]
    owner_id: Option<String>,
}

async fn compile_with_defaults(
    State(state): St,
    _auth: Auth,
    Json(body): Json<CompileBody>,
) -> ApiResult<axum::Json<Value>> {
    let _ = body.owner_id;
    let mut options = CompileOptions::new(".circleci/config.yml");
    options.pipeline_parameters = parameters_from_json(body.pipeline_parameters)?;
    let mut values = PipelineValues::default();
    for (k, v) in parameters_from_json(body.pipeline_values)? {
        values.set(&k, v);
    }
    options.pipeline_values = values;
    let orbs = Arc::clone(&state.orbs);
    let config = body.config_yaml;
    let compiled = tokio::task::spawn_blocking(move || {
        let c = compile(&config, &options, orbs.as_ref());
        let output = c.plan.as_ref().map(|p| print::render(p, &config));
        (c, output, config)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (c, output, source) = compiled;
    let errors: Vec<Value> = c
        .errors()
        .map(|d| json!({"message": d.to_string()}))
        .collect();
    Ok(axum::Json(json!({
        "valid": c.is_valid(),
        "errors": errors,
        "source_yaml": source,
        "output_yaml": output.unwrap_or_default(),
    })))
}
