//! A job: its steps (collapsible, with their output, live while the job
//! runs), its parallel runs as tabs, its artifacts and test results.
//!
//! The page never holds a whole output: each step shows at most the last
//! [`TAIL`] bytes of its output (rendered here, ANSI colours as spans, for
//! readers without JavaScript), within a budget for the page, with a link to
//! the raw output. The script (`app.js`) loads what it shows from the raw
//! route (`/app/jobs/{id}/output`, streamed from the store a page of chunks
//! at a time) into a virtualised view, and follows the job live through
//! `/app/jobs/{id}/live` (the API's live stream, from where the stored
//! output ends). Tabs are links (`?tab=steps|tests|artifacts&node=N`), so
//! they work without the script.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use maud::{Markup, html};
use orrery_store::{Artifact, Job, Project, Step, Task, TestRow, Workflow};
use serde::Deserialize;

use super::pipeline::{pipeline_by_path, pipeline_url};
use super::{St, respond};
use crate::AppState;
use crate::api::artifacts::{artifact_response, encode_segment};
use crate::api::insights::{TestKey, flaky_keys, test_key};
use crate::api::live::{is_job_terminal, job_stream, latest_tasks, stored_output};
use crate::api::v2::pipeline_and_project;
use crate::api::{path_id, path_number};
use crate::error::ApiError;
use crate::web::session::{Empty, WebForm};
use crate::web::view::{self, action_button, status};
use crate::web::{Html, WebUser, redirect};

/// The most of a step's output the page shows (its end).
pub const TAIL: usize = 64 * 1024;
/// The most output one page shows, all steps together.
const PAGE_BUDGET: usize = 160 * 1024;
/// Test cases listed besides the failures.
const MAX_OTHER_TESTS: usize = 2000;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/app/jobs/{id}/output", get(raw_output))
        .route("/app/jobs/{id}/output/times", get(output_times))
        .route("/app/jobs/{id}/live", get(live))
        .route("/app/jobs/{id}/artifacts/{node}/{*path}", get(artifact))
        .route("/app/jobs/{id}/cancel", post(cancel))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Steps,
    Tests,
    Artifacts,
}

impl Tab {
    fn name(self) -> &'static str {
        match self {
            Tab::Steps => "steps",
            Tab::Tests => "tests",
            Tab::Artifacts => "artifacts",
        }
    }
}

#[derive(Deserialize, Default)]
struct JobQuery {
    tab: Option<String>,
    node: Option<String>,
}

/// A query string, or a 400 page when it is not one.
pub(super) fn parse_query<T: serde::de::DeserializeOwned + Default>(
    q: Option<String>,
) -> Result<T, ApiError> {
    match q {
        None => Ok(T::default()),
        Some(q) => serde_urlencoded::from_str(&q)
            .map_err(|e| ApiError::BadRequest(format!("The query is not valid: {e}"))),
    }
}

/// A non-negative index from a query (`node`, `step`).
fn index(what: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    match v {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest(format!("{what} must be a number, not `{s}`"))),
    }
}

/// The page of a job.
pub fn job_page_url(project: &Project, pipeline: i64, job: &Job) -> String {
    format!(
        "/pipelines/{}/{pipeline}/workflows/{}/jobs/{}",
        project.slug,
        job.workflow_id,
        job.number.unwrap_or_default()
    )
}

async fn job_by_id(state: &AppState, id: &str) -> Result<Job, ApiError> {
    let id = path_id("Job", id)?;
    state
        .store
        .job(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Job not found".into()))
}

pub async fn page(
    state: St,
    user: WebUser,
    headers: HeaderMap,
    Path((vcs, org, repo, number, workflow, job)): Path<(
        String,
        String,
        String,
        String,
        String,
        String,
    )>,
    RawQuery(query): RawQuery,
) -> Html {
    let (p, project) = pipeline_by_path(&state, &(vcs, org, repo, number)).await?;
    let n = path_number("the job number", &job)?;
    let workflow_id = path_id("Workflow", &workflow)?;
    let job = state
        .store
        .job_by_number(&project.id, n)
        .await?
        .filter(|j| j.pipeline_id == p.id && j.workflow_id == workflow_id)
        .ok_or_else(|| ApiError::NotFound(format!("Job {n} not found")))?;
    let q: JobQuery = parse_query(query)?;
    let tab = match q.tab.as_deref() {
        None | Some("") | Some("steps") => Tab::Steps,
        Some("tests") => Tab::Tests,
        Some("artifacts") => Tab::Artifacts,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "`{other}` is not a tab of a job (steps, tests, artifacts)"
            ))
            .into());
        }
    };
    let node = index("node", q.node.as_deref())?.unwrap_or(0);
    let nodes = job.parallelism.max(1);
    if node >= nodes {
        return Err(ApiError::NotFound(format!(
            "The job has no parallel run {node} (it has {nodes})"
        ))
        .into());
    }
    let w = state
        .store
        .workflow_summary(&job.workflow_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Workflow not found".into()))?;
    let tasks = latest_tasks(state.store.tasks_of_job(&job.id).await?);
    let tests = state.store.test_results_of_job(&job.id).await?;
    let artifacts = state.store.artifacts_of_job(&job.id).await?;
    let base = job_page_url(&project, p.number, &job);

    let content = match tab {
        Tab::Steps => steps_tab(&state, &job, &tasks, node, nodes, &base).await?,
        Tab::Tests => tests_tab(&tests, nodes > 1, &flaky_keys(&state, &project).await?),
        Tab::Artifacts => artifacts_tab(&job, &artifacts, nodes > 1),
    };
    let failed = tests.iter().filter(|t| is_failure(&t.result)).count();
    let tab_link = |t: Tab, label: Markup| {
        let href = if nodes > 1 {
            format!("{base}?tab={}&node={node}", t.name())
        } else {
            format!("{base}?tab={}", t.name())
        };
        html! {
            a href=(href) data-testid={"tab-" (t.name())} aria-current=[(t == tab).then_some("page")] { (label) }
        }
    };
    let title = format!("{} · {} #{}", job.name, project.slug, n);
    let body = html! {
        (header(&user, &job, &w, &project, p.number, tasks.get(&node)))
        nav.tabs aria-label="Job" {
            (tab_link(Tab::Steps, html! { "Steps" }))
            (tab_link(Tab::Tests, html! {
                "Tests (" (tests.len()) ")"
                @if failed > 0 { " " span.status.s-failed { (failed) " failed" } }
            }))
            (tab_link(Tab::Artifacts, html! { "Artifacts (" (artifacts.len()) ")" }))
        }
        (content)
    };
    Ok(respond(&user, &headers, &title, None, body))
}

fn executor_label(plan: &orrery_config::Job) -> Option<String> {
    Some(match plan.executor.as_ref()? {
        orrery_config::Executor::Docker(images) => match images.first() {
            Some(i) => format!("docker · {}", i.image),
            None => "docker".into(),
        },
        orrery_config::Executor::Machine(m) => match &m.image {
            Some(i) => format!("machine · {i}"),
            None => "machine".into(),
        },
        orrery_config::Executor::Macos(_) => "macos".into(),
    })
}

fn header(
    user: &WebUser,
    job: &Job,
    w: &Workflow,
    project: &Project,
    pipeline: i64,
    task: Option<&Task>,
) -> Markup {
    let plan: Option<orrery_config::Job> = serde_json::from_str(&job.job).ok();
    let executor = plan.as_ref().and_then(executor_label);
    let class = task
        .map(|t| t.resource_class.clone())
        .filter(|c| !c.is_empty())
        .or_else(|| plan.as_ref().and_then(|p| p.resource_class.clone()));
    let running = !is_job_terminal(&job.status);
    let pipeline_link = pipeline_url(project, pipeline);
    html! {
        div.page-head.job-head {
            h1 data-testid="job-title" {
                span #job-status data-testid="job-status" { (status(&job.status)) }
                " " (job.name)
            }
            @if running && user.can_write() && job.job_type != "approval" {
                div.actions {
                    (action_button(user, &format!("/app/jobs/{}/cancel", job.id), "Cancel job", "danger", "cancel-job"))
                }
            }
        }
        p.job-meta.dim data-testid="job-meta" {
            @if let Some(d) = view::span(job.started_at, job.stopped_at) {
                span { "Duration " strong { (d) } }
            }
            @if let Some(e) = &executor { span { "Executor " code { (e) } } }
            @if let Some(c) = &class { span { "Resource class " code { (c) } } }
            span { "Workflow " a href={(pipeline_link) "#wf-" (w.id)} { (w.name) } }
            span { "Pipeline " a href=(pipeline_link) { (project.slug) " #" (pipeline) } }
            @if let Some(t) = task { span { "Attempt " (t.attempt) } }
            @if let Some(c) = &job.canceled_by { span { "Canceled by " (c) } }
        }
    }
}

fn is_failure(result: &str) -> bool {
    matches!(result, "failure" | "error")
}

fn failed_step(status: &str) -> bool {
    matches!(status, "failed" | "timedout" | "infrastructure_fail")
}

/// The end of a step's output, at most [`TAIL`] bytes (or `budget`), and
/// whether earlier output was left out. Reads chunks from the last one
/// back, a few more each time, so a long output costs what its end does.
async fn output_tail(
    state: &AppState,
    task: &str,
    step: i64,
    last_seq: i64,
    budget: usize,
) -> Result<(Vec<u8>, bool), ApiError> {
    let mut until = last_seq + 1;
    let mut want = 1i64;
    let mut pages: Vec<Vec<(i64, Vec<u8>)>> = Vec::new();
    let mut size = 0usize;
    while until > 0 && size < budget {
        let from = (until - want).max(0);
        let page = state
            .store
            .output_page(task, step, from, until, want)
            .await?;
        size += page.iter().map(|(_, d)| d.len()).sum::<usize>();
        pages.push(page);
        until = from;
        want = (want * 2).min(256);
    }
    let mut cut = until > 0;
    let mut bytes: Vec<u8> = Vec::with_capacity(size.min(budget * 2));
    for page in pages.into_iter().rev() {
        for (_, d) in page {
            bytes.extend_from_slice(&d);
        }
    }
    if bytes.len() > budget {
        bytes.drain(..bytes.len() - budget);
        cut = true;
    }
    if cut {
        // Start at a line.
        if let Some(at) = bytes.iter().position(|b| *b == b'\n')
            && at + 1 < bytes.len()
        {
            bytes.drain(..=at);
        }
    }
    Ok((bytes, cut))
}

async fn steps_tab(
    state: &AppState,
    job: &Job,
    tasks: &std::collections::BTreeMap<i64, Task>,
    node: i64,
    nodes: i64,
    base: &str,
) -> Result<Markup, ApiError> {
    let task = tasks.get(&node);
    let (steps, marks): (Vec<Step>, HashMap<i64, i64>) = match task {
        Some(t) => (
            state.store.steps_of_task(&t.id).await?,
            state.store.output_marks(&t.id).await?.into_iter().collect(),
        ),
        None => (Vec::new(), HashMap::new()),
    };
    // Which steps show their output here: failed ones first, then running
    // ones, then from the last step back, while the page's budget lasts.
    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by_key(|&i| {
        let s = &steps[i];
        let rank = if failed_step(&s.status) {
            0
        } else if s.status == "running" {
            1
        } else {
            2
        };
        (rank, std::cmp::Reverse(i))
    });
    let mut tails: HashMap<i64, (String, bool)> = HashMap::new();
    let mut budget = PAGE_BUDGET;
    if let Some(t) = task {
        for i in order {
            let s = &steps[i];
            let Some(last) = marks.get(&s.step_index) else {
                continue;
            };
            if budget < 1024 {
                break;
            }
            let (bytes, cut) =
                output_tail(state, &t.id, s.step_index, *last, TAIL.min(budget)).await?;
            budget = budget.saturating_sub(bytes.len());
            tails.insert(s.step_index, (ansi_html(&bytes), cut));
        }
    }
    let live = !is_job_terminal(&job.status);
    Ok(html! {
        @if nodes > 1 {
            nav.tabs.nodes aria-label="Parallel runs" {
                @for i in 0..nodes {
                    a href={(base) "?tab=steps&node=" (i)} data-testid="node-tab" data-node=(i)
                        aria-current=[(i == node).then_some("page")] {
                        "Node " (i)
                        @if let Some(t) = tasks.get(&i) {
                            " " (status(t.result.as_deref().unwrap_or(if t.state == "queued" { "queued" } else { "running" })))
                        }
                    }
                }
            }
        }
        div.steps #steps data-testid="steps" data-job-id=(job.id) data-node=(node)
            data-live=[live.then_some("1")] data-attempt=[task.map(|t| t.attempt)] {
            div.steps-tools {
                button.ts-toggle type="button" data-testid="timestamps" aria-pressed="false" hidden { "Timestamps" }
                @if task.is_some() {
                    a href={"/app/jobs/" (job.id) "/output?node=" (node)} data-testid="raw-log-all" { "Raw output of all steps" }
                }
            }
            @if steps.is_empty() {
                p.empty data-testid="no-steps" {
                    @if live { "No steps yet: the job waits for a runner." } @else { "This run has no steps." }
                }
            }
            @for s in &steps {
                (step_view(job, node, s, marks.contains_key(&s.step_index), tails.get(&s.step_index)))
            }
        }
    })
}

fn step_view(
    job: &Job,
    node: i64,
    s: &Step,
    has_output: bool,
    tail: Option<&(String, bool)>,
) -> Markup {
    let raw = format!(
        "/app/jobs/{}/output?node={node}&step={}",
        job.id, s.step_index
    );
    let open = failed_step(&s.status) || s.status == "running";
    html! {
        details.step id={"step-" (node) "-" (s.step_index)} data-testid="step" data-name=(s.name)
            data-status=(s.status) data-index=(s.step_index) data-has-output=[has_output.then_some("1")] open[open] {
            summary {
                span.step-status { (status(&s.status)) }
                span.step-name { (s.name) }
                @if s.background { span.dim { "background" } }
                span.dur.dim { (view::span(Some(s.started_at), s.stopped_at).unwrap_or_default()) }
            }
            div.step-body {
                @if !has_output {
                    p.no-output.dim { "No output." }
                } @else {
                    @match tail {
                        Some((html_text, cut)) => {
                            @if *cut {
                                p.cut.dim data-testid="output-cut" {
                                    "Only the end of this step's output is shown here. "
                                    a href=(raw) { "The whole output" }
                                }
                            }
                            pre.output-static data-testid="step-output" { (view::raw(html_text.clone())) }
                        }
                        None => p.cut.dim data-testid="output-cut" {
                            "This step's output is not shown here. "
                            a href=(raw) { "Open it" }
                        },
                    }
                }
                p.step-links {
                    a href=(raw) data-testid="raw-log" { "Raw log" }
                }
            }
        }
    }
}

fn test_name(t: &TestRow) -> String {
    if t.classname.is_empty() {
        t.name.clone()
    } else {
        format!("{} · {}", t.classname, t.name)
    }
}

/// The "flaky" badge of a test that is flaky in the project (see
/// [`crate::api::insights::FlakyTest`]).
fn flaky_badge(t: &TestRow, flaky: &HashSet<TestKey>) -> Markup {
    html! {
        @if flaky.contains(&test_key(t)) {
            " " span.badge.flaky data-testid="flaky-badge" title="Failed and passed on the same revision recently" { "flaky" }
        }
    }
}

fn tests_tab(tests: &[TestRow], by_node: bool, flaky: &HashSet<TestKey>) -> Markup {
    let failures: Vec<&TestRow> = tests.iter().filter(|t| is_failure(&t.result)).collect();
    let others: Vec<&TestRow> = tests.iter().filter(|t| !is_failure(&t.result)).collect();
    let skipped = others.iter().filter(|t| t.result == "skipped").count();
    let passed = others.len() - skipped;
    html! {
        section.card.tests data-testid="tests" {
            @if tests.is_empty() {
                p.empty data-testid="no-tests" { "This job stored no test results (" code { "store_test_results" } ")." }
            } @else {
                p.counts data-testid="test-counts" {
                    strong { (tests.len()) } " tests: "
                    span.status.s-failed { (failures.len()) " failed" } " "
                    span.status.s-success { (passed) " passed" } " "
                    span.status.s-canceled { (skipped) " skipped" }
                }
                @if !failures.is_empty() {
                    h2 { "Failures" }
                    ol.failures {
                        @for t in &failures {
                            li.test-failure data-testid="test-failure" data-name=(t.name) {
                                div.test-head {
                                    (status(if t.result == "error" { "error" } else { "failed" }))
                                    " " strong { (test_name(t)) }
                                    (flaky_badge(t, flaky))
                                    @if let Some(f) = &t.file { " " span.dim { code { (f) } } }
                                    @if by_node { " " span.dim { "node " (t.node_index) } }
                                    " " span.dim { (format!("{:.3}s", t.run_time)) }
                                }
                                @if let Some(m) = &t.message {
                                    pre.test-message { (m) }
                                }
                            }
                        }
                    }
                }
                @if !others.is_empty() {
                    h2 { "Other tests" }
                    div.table-wrap {
                        table.tests-table {
                            thead { tr { th { "Test" } th { "Result" } @if by_node { th { "Node" } } th { "Time" } } }
                            tbody {
                                @for t in others.iter().take(MAX_OTHER_TESTS) {
                                    tr data-testid="test" {
                                        td { (test_name(t)) (flaky_badge(t, flaky)) @if let Some(f) = &t.file { br; span.dim { code { (f) } } } }
                                        td { (status(if t.result == "success" { "success" } else { "canceled" })) }
                                        @if by_node { td { (t.node_index) } }
                                        td { (format!("{:.3}s", t.run_time)) }
                                    }
                                }
                            }
                        }
                    }
                    @if others.len() > MAX_OTHER_TESTS {
                        p.dim { "And " (others.len() - MAX_OTHER_TESTS) " more; the API lists them all." }
                    }
                }
            }
        }
    }
}

/// A size as `512 B`, `1.5 KiB`, `20.0 MiB`.
fn size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b < 1024.0 {
        format!("{bytes} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.1} GiB", b / 1024.0 / 1024.0 / 1024.0)
    }
}

pub fn artifact_url(job: &Job, a: &Artifact) -> String {
    let path: Vec<String> = a.path.split('/').map(encode_segment).collect();
    format!(
        "/app/jobs/{}/artifacts/{}/{}",
        job.id,
        a.node_index,
        path.join("/")
    )
}

fn artifacts_tab(job: &Job, artifacts: &[Artifact], by_node: bool) -> Markup {
    html! {
        section.card.artifacts data-testid="artifacts" {
            @if artifacts.is_empty() {
                p.empty data-testid="no-artifacts" { "This job stored no artifacts (" code { "store_artifacts" } ")." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr { th { "Path" } @if by_node { th { "Node" } } th { "Size" } } }
                        tbody {
                            @for a in artifacts {
                                tr {
                                    td { a href=(artifact_url(job, a)) data-testid="artifact" data-path=(a.path) { (a.path) } }
                                    @if by_node { td { (a.node_index) } }
                                    td { (size(a.size)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize, Default)]
struct RawQueryParams {
    node: Option<String>,
    step: Option<String>,
    /// Only chunks before this sequence number (what a live stream with
    /// `marks` does not send).
    until: Option<String>,
}

/// A step's output (or all steps' of a node), as stored: bytes, streamed a
/// few chunks at a time.
async fn raw_output(
    state: St,
    _user: WebUser,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Html {
    let job = job_by_id(&state, &id).await?;
    let q: RawQueryParams = parse_query(query)?;
    let node = index("node", q.node.as_deref())?.unwrap_or(0);
    let step = index("step", q.step.as_deref())?;
    let until = index("until", q.until.as_deref())?.unwrap_or(i64::MAX);
    let task = latest_tasks(state.store.tasks_of_job(&job.id).await?)
        .remove(&node)
        .ok_or_else(|| ApiError::NotFound(format!("Node {node} of the job has no output")))?;
    let all: Vec<i64> = state
        .store
        .steps_of_task(&task.id)
        .await?
        .iter()
        .map(|s| s.step_index)
        .collect();
    let steps = match step {
        Some(s) if all.contains(&s) => vec![s],
        Some(s) => {
            return Err(ApiError::NotFound(format!("The job has no step {s}")).into());
        }
        None => all,
    };
    let body = stored_output(Arc::clone(&state), task.id, steps, until);
    let mut r = body.into_response();
    let h = r.headers_mut();
    for (k, v) in [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CONTENT_SECURITY_POLICY, "sandbox"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    Ok(r)
}

/// When a step's stored output arrived, for the page's timestamps:
/// `{"chunks": [[offset, unix ms or null], ...]}`, each chunk's first byte's
/// offset in the step's output (what the raw route sends, with the same
/// `until`).
async fn output_times(
    state: St,
    _user: WebUser,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Html {
    let job = job_by_id(&state, &id).await?;
    let q: RawQueryParams = parse_query(query)?;
    let node = index("node", q.node.as_deref())?.unwrap_or(0);
    let step = index("step", q.step.as_deref())?
        .ok_or_else(|| ApiError::BadRequest("step is required".into()))?;
    let until = index("until", q.until.as_deref())?.unwrap_or(i64::MAX);
    let task = latest_tasks(state.store.tasks_of_job(&job.id).await?)
        .remove(&node)
        .ok_or_else(|| ApiError::NotFound(format!("Node {node} of the job has no output")))?;
    let mut offset = 0i64;
    let chunks: Vec<serde_json::Value> = state
        .store
        .output_times(&task.id, step, until)
        .await?
        .into_iter()
        .map(|(size, at)| {
            let here = offset;
            offset += size;
            serde_json::json!([here, at])
        })
        .collect();
    let mut r = axum::Json(serde_json::json!({ "chunks": chunks })).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// The job's live output for the page's script: the API's stream, from
/// where the stored output ends (see [`job_stream`]).
async fn live(state: St, _user: WebUser, Path(id): Path<String>) -> Html {
    let job = job_by_id(&state, &id).await?;
    Ok(job_stream(Arc::clone(&state), job, true).into_response())
}

/// An artifact, for a signed-in user: the API's download.
async fn artifact(
    state: St,
    _user: WebUser,
    Path((id, node, path)): Path<(String, String, String)>,
) -> Html {
    let job = job_by_id(&state, &id).await?;
    Ok(artifact_response(&state, &job, &node, &path).await?)
}

async fn cancel(state: St, Path(id): Path<String>, WebForm { user, .. }: WebForm<Empty>) -> Html {
    user.require_write()?;
    let job = job_by_id(&state, &id).await?;
    state.engine.cancel_job(&job.id, &user.user.login).await?;
    let (p, project) = pipeline_and_project(&state, &job.pipeline_id).await?;
    Ok(redirect(&job_page_url(&project, p.number, &job)))
}

/// SGR state: what `ESC [ ... m` sets.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Sgr {
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
    /// 30–37, 90–97.
    fg: Option<u8>,
    /// 40–47.
    bg: Option<u8>,
}

impl Sgr {
    fn apply(&mut self, params: &str) {
        let codes: Vec<u32> = params
            .split([';', ':'])
            .map(|p| p.parse().unwrap_or(0))
            .collect();
        let mut i = 0;
        while i < codes.len() {
            let c = codes[i];
            match c {
                0 => *self = Sgr::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => {
                    self.bold = false;
                    self.dim = false;
                }
                23 => self.italic = false,
                24 => self.underline = false,
                30..=37 | 90..=97 => self.fg = Some(c as u8),
                39 => self.fg = None,
                40..=47 => self.bg = Some(c as u8),
                100..=107 => self.bg = Some((c - 60) as u8),
                49 => self.bg = None,
                38 | 48 => {
                    // 256 colours (the first 16 map to classes) or RGB.
                    let colour = match codes.get(i + 1) {
                        Some(5) => {
                            let n = codes.get(i + 2).copied().unwrap_or(0);
                            i += 2;
                            (n < 16).then(|| if n < 8 { n } else { n - 8 + 60 })
                        }
                        Some(2) => {
                            i += 4;
                            None
                        }
                        _ => None,
                    };
                    let base = if c == 38 { 30 } else { 40 };
                    let v = colour.map(|n| (base + n) as u8);
                    if c == 38 {
                        self.fg = v;
                    } else {
                        self.bg = v.map(|b| if b >= 100 { b - 60 } else { b });
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }

    fn classes(&self) -> String {
        let mut out = Vec::new();
        if self.bold {
            out.push("a-b".to_string());
        }
        if self.dim {
            out.push("a-d".to_string());
        }
        if self.italic {
            out.push("a-i".to_string());
        }
        if self.underline {
            out.push("a-u".to_string());
        }
        if let Some(f) = self.fg {
            out.push(format!("f{f}"));
        }
        if let Some(b) = self.bg {
            out.push(format!("b{b}"));
        }
        out.join(" ")
    }
}

fn escape_into(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        '\t' => out.push('\t'),
        c if c.is_control() => {}
        c => out.push(c),
    }
}

/// Reads `s`, applying its escape sequences to `sgr`; with `out`, writes
/// its text as HTML, in spans of the colours it had.
fn scan(s: &str, sgr: &mut Sgr, mut out: Option<&mut String>) {
    let mut open = false;
    let mut shown = Sgr::default();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            match chars.next() {
                Some('[') => {
                    let mut params = String::new();
                    let mut fin = None;
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            fin = Some(c);
                            break;
                        }
                        params.push(c);
                    }
                    if fin == Some('m') {
                        sgr.apply(&params);
                    }
                }
                Some(']') => {
                    // OSC: to BEL or ST.
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {}
            }
            continue;
        }
        let Some(out) = out.as_deref_mut() else {
            continue;
        };
        if !open || shown != *sgr {
            if open {
                out.push_str("</span>");
                open = false;
            }
            if *sgr != Sgr::default() {
                out.push_str("<span class=\"");
                out.push_str(&sgr.classes());
                out.push_str("\">");
                open = true;
            }
            shown = *sgr;
        }
        escape_into(out, c);
    }
    if open && let Some(out) = out {
        out.push_str("</span>");
    }
}

/// Terminal output as HTML: text escaped, SGR colours and styles as spans
/// of the stylesheet's classes (`a-b`, `f31`, `b44`...), other escape
/// sequences dropped, a line rewritten after a carriage return shown as its
/// last version.
pub fn ansi_html(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut sgr = Sgr::default();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (hidden, shown) = match line.rfind('\r') {
            Some(at) => (&line[..at], &line[at + 1..]),
            None => ("", line),
        };
        scan(hidden, &mut sgr, None);
        scan(shown, &mut sgr, Some(&mut out));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_to_html() {
        assert_eq!(ansi_html(b"plain <b>&"), "plain &lt;b&gt;&amp;");
        assert_eq!(
            ansi_html(b"\x1b[31mred\x1b[0m ok"),
            "<span class=\"f31\">red</span> ok"
        );
        assert_eq!(
            ansi_html(b"\x1b[1;32mA\nB\x1b[m"),
            "<span class=\"a-b f32\">A</span>\n<span class=\"a-b f32\">B</span>"
        );
        assert_eq!(ansi_html(b"10%\r50%\r100%\r\n"), "100%\n");
        assert_eq!(ansi_html(b"\x1b[2K\x1b]0;title\x07x"), "x");
        assert_eq!(
            ansi_html(b"\x1b[38;5;9;48;5;4mx"),
            "<span class=\"f91 b44\">x</span>"
        );
        assert_eq!(ansi_html(b"\xff<"), "\u{fffd}&lt;");
    }

    #[test]
    fn sizes() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(20 * 1024 * 1024), "20.0 MiB");
    }
}
