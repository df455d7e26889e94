//! The OpenAPI document of the API, at `/api/v2/openapi.json`: every path
//! the server routes, its methods, what it does and how it is authorized.
//! A test checks that the document and the router list the same endpoints.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/v2/openapi.json", get(document))
}

/// How an endpoint is authorized.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// A personal API token (`Circle-Token`, `circle-token` query, Basic).
    Token,
    /// A runner token (`Authorization: Bearer`).
    Runner,
    /// The webhook's signature.
    Signature,
    /// The continuation key in the body.
    ContinuationKey,
    Public,
}

/// A route as OpenAPI writes it: a wildcard `{*path}` is the parameter
/// `{path}` (which may hold `/`).
pub fn openapi_path(route: &str) -> String {
    route.replace("{*", "{")
}

/// Every endpoint: method, path (as routed), access, summary.
pub const ENDPOINTS: &[(&str, &str, Access, &str)] = &[
    ("get", "/healthz", Access::Public, "Health check"),
    (
        "get",
        "/api/v2/openapi.json",
        Access::Public,
        "This document",
    ),
    ("get", "/api/v2/me", Access::Token, "The signed-in user"),
    (
        "get",
        "/api/v2/me/collaborations",
        Access::Token,
        "Organizations",
    ),
    (
        "get",
        "/api/v2/project/{vcs}/{org}/{repo}",
        Access::Token,
        "Get a project",
    ),
    (
        "post",
        "/api/v2/project/{vcs}/{org}/{repo}",
        Access::Token,
        "Create a project from a git URL (Orrery: body {repo_url, default_branch, vcs_provider, vcs_token, vcs_api_url})",
    ),
    (
        "get",
        "/api/v2/project/{vcs}/{org}/{repo}/webhook",
        Access::Token,
        "The project's webhook URL and secret (Orrery)",
    ),
    (
        "get",
        "/api/v2/project/{vcs}/{org}/{repo}/pipeline",
        Access::Token,
        "A project's pipelines, newest first",
    ),
    (
        "post",
        "/api/v2/project/{vcs}/{org}/{repo}/pipeline",
        Access::Token,
        "Trigger a pipeline {branch, tag, parameters}",
    ),
    (
        "get",
        "/api/v2/project/{vcs}/{org}/{repo}/pipeline/{number}",
        Access::Token,
        "A pipeline by number",
    ),
    (
        "get",
        "/api/v2/project/{vcs}/{org}/{repo}/job/{number}",
        Access::Token,
        "Job details",
    ),
    (
        "post",
        "/api/v2/project/{vcs}/{org}/{repo}/job/{number}/cancel",
        Access::Token,
        "Cancel a job",
    ),
    (
        "get",
        "/api/v2/project/{vcs}/{org}/{repo}/job/{number}/output",
        Access::Token,
        "A job's output bytes (Orrery; ?step=&node=)",
    ),
    (
        "get",
        "/api/v2/project/{vcs}/{org}/{repo}/job/{number}/output/stream",
        Access::Token,
        "A job's output, live, as Server-Sent Events (Orrery)",
    ),
    (
        "get",
        "/api/v2/project/{vcs}/{org}/{repo}/{number}/artifacts",
        Access::Token,
        "A job's artifacts {items: [{path, node_index, url}]}",
    ),
    (
        "get",
        "/api/v2/project/{vcs}/{org}/{repo}/{number}/artifacts/{node}/{*path}",
        Access::Token,
        "Download an artifact (Orrery); may redirect to a signed URL",
    ),
    (
        "get",
        "/api/v2/project/{vcs}/{org}/{repo}/{number}/tests",
        Access::Token,
        "A job's test results {items: [{message, source, run_time, file, result, name, classname}]}",
    ),
    (
        "get",
        "/api/v2/project/{vcs}/{org}/{repo}/storage",
        Access::Token,
        "Bytes stored per kind and retention (Orrery)",
    ),
    (
        "get",
        "/api/v2/project/{vcs}/{org}/{repo}/envvar",
        Access::Token,
        "Project environment variables, masked",
    ),
    (
        "post",
        "/api/v2/project/{vcs}/{org}/{repo}/envvar",
        Access::Token,
        "Create or replace a variable {name, value}",
    ),
    (
        "get",
        "/api/v2/project/{vcs}/{org}/{repo}/envvar/{name}",
        Access::Token,
        "A variable, masked",
    ),
    (
        "delete",
        "/api/v2/project/{vcs}/{org}/{repo}/envvar/{name}",
        Access::Token,
        "Delete a variable",
    ),
    (
        "get",
        "/api/v2/pipeline",
        Access::Token,
        "Pipelines of an organization (?org-slug=&mine=)",
    ),
    (
        "post",
        "/api/v2/pipeline/continue",
        Access::ContinuationKey,
        "Continue a setup pipeline",
    ),
    ("get", "/api/v2/pipeline/{id}", Access::Token, "A pipeline"),
    (
        "get",
        "/api/v2/pipeline/{id}/config",
        Access::Token,
        "A pipeline's source and compiled config",
    ),
    (
        "get",
        "/api/v2/pipeline/{id}/workflow",
        Access::Token,
        "A pipeline's workflows",
    ),
    ("get", "/api/v2/workflow/{id}", Access::Token, "A workflow"),
    (
        "get",
        "/api/v2/workflow/{id}/job",
        Access::Token,
        "A workflow's jobs",
    ),
    (
        "post",
        "/api/v2/workflow/{id}/cancel",
        Access::Token,
        "Cancel a workflow",
    ),
    (
        "post",
        "/api/v2/workflow/{id}/rerun",
        Access::Token,
        "Rerun a workflow {from_failed, jobs}",
    ),
    (
        "post",
        "/api/v2/workflow/{id}/approve/{request_id}",
        Access::Token,
        "Approve a job",
    ),
    (
        "post",
        "/api/v2/compile-config-with-defaults",
        Access::Token,
        "Compile a config",
    ),
    (
        "get",
        "/api/v2/insights/{vcs}/{org}/{repo}/flaky-tests",
        Access::Token,
        "Tests that failed and passed on the same revision in the last 14 days",
    ),
    (
        "get",
        "/api/v2/insights/{vcs}/{org}/{repo}/workflows",
        Access::Token,
        "Summary metrics per workflow (?branch=&all-branches=&reporting-window=)",
    ),
    (
        "get",
        "/api/v2/insights/{vcs}/{org}/{repo}/workflows/{workflow_name}",
        Access::Token,
        "Recent runs of a workflow (?branch=&all-branches=&start-date=&end-date=)",
    ),
    (
        "get",
        "/api/v2/insights/{vcs}/{org}/{repo}/workflows/{workflow_name}/jobs",
        Access::Token,
        "Summary metrics per job of a workflow",
    ),
    (
        "get",
        "/api/v2/insights/{vcs}/{org}/{repo}/workflows/{workflow_name}/jobs/{job_name}",
        Access::Token,
        "Recent runs of a job",
    ),
    (
        "get",
        "/api/v2/insights/{vcs}/{org}/{repo}/workflows/{workflow_name}/test-metrics",
        Access::Token,
        "Most failed and slowest tests of a workflow's 10 latest runs",
    ),
    (
        "get",
        "/api/v1.1/recent-builds",
        Access::Token,
        "Recent jobs of all projects",
    ),
    (
        "get",
        "/api/v1.1/project/{vcs}/{org}/{repo}",
        Access::Token,
        "Recent jobs of a project",
    ),
    (
        "get",
        "/api/v1.1/project/{vcs}/{org}/{repo}/{number}",
        Access::Token,
        "Job details with steps and actions",
    ),
    (
        "get",
        "/api/v1.1/project/{vcs}/{org}/{repo}/{number}/artifacts",
        Access::Token,
        "A job's artifacts [{path, pretty_path, node_index, url}]",
    ),
    (
        "get",
        "/api/v1.1/project/{vcs}/{org}/{repo}/latest/artifacts",
        Access::Token,
        "The artifacts of the latest job (?branch=&filter=completed|successful|failed|running)",
    ),
    (
        "get",
        "/api/v1.1/project/{vcs}/{org}/{repo}/{number}/tests",
        Access::Token,
        "A job's test results {tests, exceptions}",
    ),
    (
        "get",
        "/api/v1.1/project/{vcs}/{org}/{repo}/{number}/output/{step}/{node}",
        Access::Token,
        "An action's output",
    ),
    (
        "post",
        "/api/v3/runner/resource",
        Access::Token,
        "Create a resource class (admin)",
    ),
    (
        "get",
        "/api/v3/runner/resource",
        Access::Token,
        "Resource classes",
    ),
    (
        "post",
        "/api/v3/runner/token",
        Access::Token,
        "Create a runner token (admin)",
    ),
    ("get", "/api/v3/runner", Access::Token, "Runners"),
    (
        "post",
        "/runner/v1/register",
        Access::Runner,
        "A runner starts",
    ),
    (
        "post",
        "/runner/v1/claim",
        Access::Runner,
        "Claim a task (long poll)",
    ),
    (
        "post",
        "/runner/v1/tasks/{id}/heartbeat",
        Access::Runner,
        "Keep a task's lease",
    ),
    (
        "post",
        "/runner/v1/tasks/{id}/events",
        Access::Runner,
        "Step events and output",
    ),
    (
        "post",
        "/runner/v1/tasks/{id}/complete",
        Access::Runner,
        "A task's result",
    ),
    (
        "get",
        "/runner/v1/tasks/{id}/caches",
        Access::Runner,
        "The newest cache whose key starts with ?prefix=",
    ),
    (
        "get",
        "/runner/v1/tasks/{id}/caches/object",
        Access::Runner,
        "A cache's archive (?key=); may redirect to a signed URL",
    ),
    (
        "put",
        "/runner/v1/tasks/{id}/caches/object",
        Access::Runner,
        "Save a cache (?key=; X-Orrery-Sha256, X-Orrery-Size); the first save of a key wins",
    ),
    (
        "get",
        "/runner/v1/tasks/{id}/workspaces/{job}",
        Access::Runner,
        "A job's workspace layers",
    ),
    (
        "get",
        "/runner/v1/tasks/{id}/workspaces/{job}/{index}",
        Access::Runner,
        "A workspace layer's archive; may redirect to a signed URL",
    ),
    (
        "put",
        "/runner/v1/tasks/{id}/workspace",
        Access::Runner,
        "Add a workspace layer (X-Orrery-Sha256, X-Orrery-Size)",
    ),
    (
        "put",
        "/runner/v1/tasks/{id}/artifacts",
        Access::Runner,
        "Store artifacts from a tar (?prefix=; X-Orrery-Sha256, X-Orrery-Size)",
    ),
    (
        "post",
        "/runner/v1/tasks/{id}/test-results",
        Access::Runner,
        "Store a node's test cases",
    ),
    (
        "get",
        "/runner/v1/tasks/{id}/timings",
        Access::Runner,
        "Test timings of earlier runs, for tests split",
    ),
    (
        "get",
        "/hooks/post-receive",
        Access::Public,
        "The git post-receive hook script",
    ),
    (
        "post",
        "/hooks/{provider}/{project_id}",
        Access::Signature,
        "A VCS webhook (github, gitlab, gitea, generic)",
    ),
];

pub fn document_value() -> Value {
    let mut paths = Map::new();
    for (method, route, access, summary) in ENDPOINTS {
        let path = &openapi_path(route);
        let security = match access {
            Access::Token => {
                json!([{"api_key_header": []}, {"api_key_query": []}, {"basic_auth": []}])
            }
            Access::Runner => json!([{"runner_token": []}]),
            _ => json!([]),
        };
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let entry = paths
            .entry(path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[*method] = json!({
            "summary": summary,
            "parameters": params,
            "security": security,
            "responses": {
                "default": {"description": "Errors are {\"message\": \"...\"} with a 4xx status.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            },
        });
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Orrery API (CircleCI API v2 and v1.1 compatible)", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "properties": {"message": {"type": "string"}}}},
            "securitySchemes": {
                "api_key_header": {"type": "apiKey", "in": "header", "name": "Circle-Token"},
                "api_key_query": {"type": "apiKey", "in": "query", "name": "circle-token"},
                "basic_auth": {"type": "http", "scheme": "basic"},
                "runner_token": {"type": "http", "scheme": "bearer"},
            },
        },
    })
}

async fn document() -> axum::Json<Value> {
    axum::Json(document_value())
}
