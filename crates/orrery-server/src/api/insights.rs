//! Insights, which CircleCI keeps for its cloud, computed here from what the
//! store already has (workflows, jobs, test cases), with CircleCI's paths and
//! field names:
//!
//! - `GET /api/v2/insights/{slug}/flaky-tests`: a test is **flaky** when the
//!   same test (classname, name and file, in a job of the same name) both
//!   failed and passed on the same revision within the last 14 days (CircleCI's
//!   rule). `times_flaked` counts its failed runs on such revisions;
//!   `time_wasted` is the run time, in seconds, of the jobs those failures
//!   were in (each had to be run again); the job, workflow and pipeline
//!   fields name the latest flake.
//! - `GET .../workflows` and `.../workflows/{name}/jobs`: summary metrics per
//!   workflow (per job) over a reporting window (`reporting-window`, default
//!   the last 90 days) of the default branch (`branch=`, `all-branches=true`).
//!   `total_runs` counts every run in the window, as CircleCI does (running
//!   ones too); durations (seconds) are of the finished runs; `throughput` is
//!   runs per day between the first and the last run (at least one day);
//!   `mttr` is the mean time, in seconds, from a failed run's end to the end
//!   of the next successful run; credits are always 0.
//! - `GET .../workflows/{name}` and `.../workflows/{name}/jobs/{job}`: the
//!   recent finished runs.
//! - `GET .../workflows/{name}/test-metrics`: over the 10 most recent runs of
//!   the workflow that reported tests (CircleCI's window), the most failed
//!   and the slowest tests (100 of each; the `_extra` counts are the tests left
//!   out that tie with the last one listed), and per run test counts.
//!   `total_test_runs` is the number of those runs, `average_test_count` the
//!   tests per run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use orrery_store::storage::{JobRunRow, WorkflowRunRow};
use orrery_store::{Job, Millis, Project, TestRow, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};

use super::testresults::api_result;
use super::{Query, project_by_path, time};
use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};

const DAY_MS: i64 = 24 * 3600 * 1000;
/// How far back flaky tests are looked for (CircleCI: 14 days).
pub const FLAKY_WINDOW_MS: i64 = 14 * DAY_MS;
/// Test metrics cover this many recent runs of a workflow (as CircleCI's).
pub const TEST_METRICS_RUNS: usize = 10;
/// Tests listed as most failed and as slowest.
pub const TOP_TESTS: usize = 100;
/// The most runs one request reads.
const MAX_ROWS: i64 = 20_000;

type St = State<Arc<AppState>>;
type Slug = Path<(String, String, String)>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v2/insights/{vcs}/{org}/{repo}/flaky-tests",
            get(flaky_tests),
        )
        .route(
            "/api/v2/insights/{vcs}/{org}/{repo}/workflows",
            get(workflow_summaries),
        )
        .route(
            "/api/v2/insights/{vcs}/{org}/{repo}/workflows/{workflow_name}",
            get(workflow_runs),
        )
        .route(
            "/api/v2/insights/{vcs}/{org}/{repo}/workflows/{workflow_name}/jobs",
            get(job_summaries),
        )
        .route(
            "/api/v2/insights/{vcs}/{org}/{repo}/workflows/{workflow_name}/jobs/{job_name}",
            get(job_runs),
        )
        .route(
            "/api/v2/insights/{vcs}/{org}/{repo}/workflows/{workflow_name}/test-metrics",
            get(test_metrics),
        )
}

#[derive(Deserialize, Default)]
struct InsightsQuery {
    branch: Option<String>,
    #[serde(rename = "all-branches")]
    all_branches: Option<bool>,
    #[serde(rename = "reporting-window")]
    reporting_window: Option<String>,
    #[serde(rename = "start-date")]
    start_date: Option<String>,
    #[serde(rename = "end-date")]
    end_date: Option<String>,
}

impl InsightsQuery {
    /// The branch asked for: `None` for all branches; the project's default
    /// branch when none is named.
    fn branch(&self, project: &Project) -> ApiResult<Option<String>> {
        let named = self.branch.clone().filter(|b| !b.is_empty());
        match (self.all_branches.unwrap_or(false), named) {
            (true, Some(_)) => Err(ApiError::BadRequest(
                "use either branch or all-branches, not both".into(),
            )),
            (true, None) => Ok(None),
            (false, Some(b)) => Ok(Some(b)),
            (false, None) => Ok(Some(project.default_branch.clone())),
        }
    }

    /// The start of the reporting window.
    fn window_start(&self, now: Millis) -> ApiResult<Millis> {
        let days = match self.reporting_window.as_deref() {
            None | Some("last-90-days") => 90,
            Some("last-24-hours") => 1,
            Some("last-7-days") => 7,
            Some("last-30-days") => 30,
            Some("last-60-days") => 60,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "reporting-window `{other}` is not one of last-24-hours, last-7-days, last-30-days, last-60-days, last-90-days"
                )));
            }
        };
        Ok(now - days * DAY_MS)
    }

    /// `start-date`/`end-date` (RFC 3339) of the recent-runs endpoints;
    /// the last 90 days by default.
    fn dates(&self, now: Millis) -> ApiResult<(Millis, Millis)> {
        let parse = |what: &str, v: &Option<String>| -> ApiResult<Option<Millis>> {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    chrono::DateTime::parse_from_rfc3339(s)
                        .map(|d| d.timestamp_millis())
                        .map_err(|_| {
                            ApiError::BadRequest(format!(
                                "{what} `{s}` is not a date-time (RFC 3339)"
                            ))
                        })
                })
                .transpose()
        };
        let start = parse("start-date", &self.start_date)?;
        let end = parse("end-date", &self.end_date)?;
        if end.is_some() && start.is_none() {
            return Err(ApiError::BadRequest("end-date needs a start-date".into()));
        }
        let start = start.unwrap_or(now - 90 * DAY_MS);
        let end = end.unwrap_or(now);
        if end < start {
            return Err(ApiError::BadRequest("end-date is before start-date".into()));
        }
        Ok((start, end))
    }
}

async fn known_workflow(state: &AppState, project: &Project, name: &str) -> ApiResult<()> {
    if state
        .store
        .has_workflow_named(&project.id, name, None)
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::NotFound("Workflow not found".into()))
    }
}

// ---- numbers ----

/// The value at quantile `q` of sorted values (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// CircleCI's `duration_metrics` of durations in seconds.
pub fn duration_metrics(secs: Vec<f64>) -> Value {
    Durations::of(secs).json()
}

/// Duration metrics, in whole seconds (the standard deviation to 0.01 s).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Durations {
    pub min: i64,
    pub mean: i64,
    pub median: i64,
    pub p95: i64,
    pub max: i64,
    pub standard_deviation: f64,
}

impl Durations {
    pub(crate) fn of(mut secs: Vec<f64>) -> Durations {
        if secs.is_empty() {
            return Durations::default();
        }
        secs.sort_by(f64::total_cmp);
        let n = secs.len() as f64;
        let mean = secs.iter().sum::<f64>() / n;
        let var = secs.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
        Durations {
            min: secs[0].round() as i64,
            mean: mean.round() as i64,
            median: quantile(&secs, 0.5).round() as i64,
            p95: quantile(&secs, 0.95).round() as i64,
            max: secs[secs.len() - 1].round() as i64,
            standard_deviation: (var.sqrt() * 100.0).round() / 100.0,
        }
    }

    fn json(&self) -> Value {
        json!({
            "min": self.min,
            "mean": self.mean,
            "median": self.median,
            "p95": self.p95,
            "max": self.max,
            "standard_deviation": self.standard_deviation,
        })
    }
}

/// Whether a run's status is a success (`Some(true)`), a failure
/// (`Some(false)`) or neither (running, canceled, ...).
fn outcome(status: &str) -> Option<bool> {
    match status {
        "success" => Some(true),
        "failed" | "error" | "failing" | "infrastructure_fail" | "timedout" => Some(false),
        _ => None,
    }
}

/// One run for the summary metrics.
struct Run {
    status: String,
    created_at: Millis,
    /// Seconds, for finished runs.
    duration: Option<f64>,
    stopped_at: Option<Millis>,
}

/// The summary metrics of a workflow's (a job's) runs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RunStats {
    /// Every run in the window, running ones too.
    pub total: i64,
    pub successful: i64,
    pub failed: i64,
    /// `successful / total` (0 without runs).
    pub success_rate: f64,
    /// Runs per day between the first and the last run (at least one day).
    pub throughput: f64,
    /// Of the finished runs, in seconds.
    pub durations: Durations,
    /// Mean time to recovery, in seconds, and the recoveries it is of.
    pub mttr: i64,
    pub recoveries: usize,
    /// When the first and the last run were created.
    pub window_start: Millis,
    pub window_end: Millis,
    /// The status of the latest run.
    pub last_status: Option<String>,
}

impl RunStats {
    fn of(runs: &mut [Run]) -> RunStats {
        runs.sort_by_key(|r| r.created_at);
        let total = runs.len() as i64;
        let successful = runs
            .iter()
            .filter(|r| outcome(&r.status) == Some(true))
            .count() as i64;
        let failed = runs
            .iter()
            .filter(|r| outcome(&r.status) == Some(false))
            .count() as i64;
        let start = runs.first().map_or(0, |r| r.created_at);
        let end = runs.last().map_or(0, |r| r.created_at);
        let days = ((end - start) as f64 / DAY_MS as f64).max(1.0);
        let durations: Vec<f64> = runs.iter().filter_map(|r| r.duration).collect();
        // From the end of the first failure of a streak to the end of the
        // success that ends it.
        let mut failing_since: Option<Millis> = None;
        let mut recoveries = Vec::new();
        for r in runs.iter().filter(|r| r.stopped_at.is_some()) {
            match outcome(&r.status) {
                Some(false) => {
                    failing_since.get_or_insert(r.stopped_at.unwrap_or_default());
                }
                Some(true) => {
                    if let Some(since) = failing_since.take() {
                        recoveries.push((r.stopped_at.unwrap_or_default() - since).max(0));
                    }
                }
                None => {}
            }
        }
        let mttr = if recoveries.is_empty() {
            0
        } else {
            (recoveries.iter().sum::<i64>() as f64 / recoveries.len() as f64 / 1000.0).round()
                as i64
        };
        RunStats {
            total,
            successful,
            failed,
            success_rate: if total > 0 {
                successful as f64 / total as f64
            } else {
                0.0
            },
            throughput: total as f64 / days,
            durations: Durations::of(durations),
            mttr,
            recoveries: recoveries.len(),
            window_start: start,
            window_end: end,
            last_status: runs.last().map(|r| r.status.clone()),
        }
    }

    /// CircleCI's `metrics` object (`mttr` for workflows only).
    fn json(&self, with_mttr: bool) -> Value {
        let mut metrics = json!({
            "total_runs": self.total,
            "successful_runs": self.successful,
            "failed_runs": self.failed,
            "success_rate": self.success_rate,
            "throughput": self.throughput,
            "duration_metrics": self.durations.json(),
            "total_credits_used": 0,
        });
        if with_mttr {
            metrics["mttr"] = json!(self.mttr);
            metrics["total_recoveries"] = json!(self.recoveries);
        }
        metrics
    }
}

#[cfg(test)]
fn summary_metrics(runs: &mut [Run], with_mttr: bool) -> (Value, Millis, Millis) {
    let stats = RunStats::of(runs);
    (stats.json(with_mttr), stats.window_start, stats.window_end)
}

fn workflow_run(r: &WorkflowRunRow) -> Run {
    Run {
        status: r.status.clone(),
        created_at: r.created_at,
        duration: r
            .stopped_at
            .map(|s| (s - r.created_at).max(0) as f64 / 1000.0),
        stopped_at: r.stopped_at,
    }
}

fn job_run(r: &JobRunRow) -> Run {
    Run {
        status: r.status.clone(),
        created_at: r.created_at,
        duration: match (r.started_at, r.stopped_at) {
            (Some(a), Some(b)) => Some((b - a).max(0) as f64 / 1000.0),
            _ => None,
        },
        stopped_at: r.stopped_at,
    }
}

/// The summary of a workflow's (a job's) runs in a window.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Summary {
    pub name: String,
    pub stats: RunStats,
}

fn summaries(by_name: BTreeMap<String, Vec<Run>>) -> Vec<Summary> {
    by_name
        .into_iter()
        .map(|(name, mut runs)| Summary {
            name,
            stats: RunStats::of(&mut runs),
        })
        .collect()
}

/// The project's workflows (by name) run since `since`, of one branch
/// when given, with their metrics.
pub(crate) async fn workflow_summaries_of(
    state: &AppState,
    project: &Project,
    branch: Option<&str>,
    since: Millis,
) -> ApiResult<Vec<Summary>> {
    let rows = state
        .store
        .workflow_runs(&project.id, None, branch, since, MAX_ROWS)
        .await?;
    let mut by_name: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for r in &rows {
        by_name
            .entry(r.name.clone())
            .or_default()
            .push(workflow_run(r));
    }
    Ok(summaries(by_name))
}

/// The build jobs (by name) of a workflow run since `since`, of one branch
/// when given, with their metrics.
pub(crate) async fn job_summaries_of(
    state: &AppState,
    project: &Project,
    workflow: &str,
    branch: Option<&str>,
    since: Millis,
) -> ApiResult<Vec<Summary>> {
    let rows = state
        .store
        .job_runs(&project.id, workflow, None, branch, since, MAX_ROWS)
        .await?;
    let mut by_name: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for r in &rows {
        by_name.entry(r.name.clone()).or_default().push(job_run(r));
    }
    Ok(summaries(by_name))
}

// ---- workflows and jobs ----

async fn workflow_summaries(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo)): Slug,
    Query(q): Query<InsightsQuery>,
) -> ApiResult<axum::Json<Value>> {
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    let branch = q.branch(&project)?;
    let since = q.window_start(now_ms())?;
    let items: Vec<Value> = workflow_summaries_of(&state, &project, branch.as_deref(), since)
        .await?
        .into_iter()
        .map(|s| {
            json!({
                "name": s.name,
                "project_id": project.id,
                "metrics": s.stats.json(true),
                "window_start": time(s.stats.window_start),
                "window_end": time(s.stats.window_end),
            })
        })
        .collect();
    Ok(axum::Json(json!({"items": items, "next_page_token": null})))
}

async fn job_summaries(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo, workflow)): Path<(String, String, String, String)>,
    Query(q): Query<InsightsQuery>,
) -> ApiResult<axum::Json<Value>> {
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    known_workflow(&state, &project, &workflow).await?;
    let branch = q.branch(&project)?;
    let since = q.window_start(now_ms())?;
    let items: Vec<Value> = job_summaries_of(&state, &project, &workflow, branch.as_deref(), since)
        .await?
        .into_iter()
        .map(|s| {
            json!({
                "name": s.name,
                "metrics": s.stats.json(false),
                "window_start": time(s.stats.window_start),
                "window_end": time(s.stats.window_end),
            })
        })
        .collect();
    Ok(axum::Json(json!({"items": items, "next_page_token": null})))
}

async fn workflow_runs(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo, workflow)): Path<(String, String, String, String)>,
    Query(q): Query<InsightsQuery>,
) -> ApiResult<axum::Json<Value>> {
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    known_workflow(&state, &project, &workflow).await?;
    let branch = q.branch(&project)?;
    let (start, end) = q.dates(now_ms())?;
    let rows = state
        .store
        .workflow_runs(
            &project.id,
            Some(&workflow),
            branch.as_deref(),
            start,
            MAX_ROWS,
        )
        .await?;
    let items: Vec<Value> = rows
        .iter()
        .filter(|r| r.created_at <= end)
        .filter_map(|r| {
            let stopped = r.stopped_at?;
            Some(json!({
                "id": r.id,
                "branch": r.branch,
                "duration": ((stopped - r.created_at).max(0) as f64 / 1000.0).round() as i64,
                "created_at": time(r.created_at),
                "stopped_at": time(stopped),
                "credits_used": 0,
                "status": r.status,
                "is_approval": false,
            }))
        })
        .collect();
    Ok(axum::Json(json!({"items": items, "next_page_token": null})))
}

async fn job_runs(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo, workflow, job)): Path<(String, String, String, String, String)>,
    Query(q): Query<InsightsQuery>,
) -> ApiResult<axum::Json<Value>> {
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    if !state
        .store
        .has_workflow_named(&project.id, &workflow, Some(&job))
        .await?
    {
        return Err(ApiError::NotFound("Job not found".into()));
    }
    let branch = q.branch(&project)?;
    let (start, end) = q.dates(now_ms())?;
    let rows = state
        .store
        .job_runs(
            &project.id,
            &workflow,
            Some(&job),
            branch.as_deref(),
            start,
            MAX_ROWS,
        )
        .await?;
    let items: Vec<Value> = rows
        .iter()
        .filter(|r| r.created_at <= end)
        .filter_map(|r| {
            let (started, stopped) = (r.started_at?, r.stopped_at?);
            Some(json!({
                "id": r.id,
                "job_number": r.number,
                "started_at": time(started),
                "stopped_at": time(stopped),
                "status": r.status,
                "credits_used": 0,
                "duration": ((stopped - started).max(0) as f64 / 1000.0).round() as i64,
            }))
        })
        .collect();
    Ok(axum::Json(json!({"items": items, "next_page_token": null})))
}

// ---- tests ----

/// A test's identity across runs: job name, classname, name, file (in
/// this order, which is also the order of listings that tie).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TestKey {
    pub job_name: String,
    pub classname: String,
    pub name: String,
    pub file: String,
}

pub(crate) fn test_key(t: &TestRow) -> TestKey {
    TestKey {
        job_name: t.job_name.clone(),
        classname: t.classname.clone(),
        name: t.name.clone(),
        file: t.file.clone().unwrap_or_default(),
    }
}

fn failed(t: &TestRow) -> bool {
    api_result(&t.result) == "failure"
}

/// What a job, its workflow and pipeline say about a test run.
struct JobInfo {
    job: Job,
    workflow_created_at: Millis,
    pipeline_number: i64,
}

async fn job_info(
    state: &AppState,
    cache: &mut HashMap<String, Option<JobInfo>>,
    job_id: &str,
) -> ApiResult<()> {
    if cache.contains_key(job_id) {
        return Ok(());
    }
    let mut info = None;
    if let Some(job) = state.store.job(job_id).await? {
        let workflow = state.store.workflow_summary(&job.workflow_id).await?;
        let pipeline = state.store.pipeline(&job.pipeline_id).await?;
        if let (Some(w), Some(p)) = (workflow, pipeline) {
            info = Some(JobInfo {
                workflow_created_at: w.created_at,
                pipeline_number: p.number,
                job,
            });
        }
    }
    cache.insert(job_id.to_string(), info);
    Ok(())
}

/// The keys of the project's flaky tests, with their flakes, newest first;
/// of one branch's runs when given.
async fn flakes(
    state: &AppState,
    project: &Project,
    branch: Option<&str>,
) -> ApiResult<Vec<(TestKey, Vec<TestRow>)>> {
    let rows = state
        .store
        .flaky_failures(&project.id, now_ms() - FLAKY_WINDOW_MS, MAX_ROWS)
        .await?;
    let mut order: Vec<TestKey> = Vec::new();
    let mut by_key: HashMap<TestKey, Vec<TestRow>> = HashMap::new();
    for r in rows {
        if branch.is_some_and(|b| b != r.branch) {
            continue;
        }
        let key = test_key(&r);
        if !by_key.contains_key(&key) {
            order.push(key.clone());
        }
        by_key.entry(key).or_default().push(r);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let rows = by_key.remove(&k).unwrap_or_default();
            (k, rows)
        })
        .collect())
}

/// The project's flaky tests (see [`FlakyTest`]).
pub(crate) async fn flaky_keys(state: &AppState, project: &Project) -> ApiResult<HashSet<TestKey>> {
    Ok(flakes(state, project, None)
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect())
}

/// A flaky test: it failed and passed on the same revision, in a job of
/// the same name, within [`FLAKY_WINDOW_MS`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FlakyTest {
    pub key: TestKey,
    pub source: String,
    /// Its failed runs on such revisions.
    pub times_flaked: usize,
    /// The run time of the jobs those failures were in.
    pub time_wasted_ms: i64,
    /// The latest flake: when, and its job, workflow and pipeline.
    pub latest_at: Millis,
    pub workflow_name: String,
    pub job_number: Option<i64>,
    pub workflow_id: Option<String>,
    pub workflow_created_at: Option<Millis>,
    pub pipeline_number: Option<i64>,
}

/// The project's flaky tests, the most flaked first (then the latest);
/// of one branch's runs when given.
pub(crate) async fn flaky_tests_of(
    state: &AppState,
    project: &Project,
    branch: Option<&str>,
) -> ApiResult<Vec<FlakyTest>> {
    let mut jobs: HashMap<String, Option<JobInfo>> = HashMap::new();
    let mut out: Vec<FlakyTest> = Vec::new();
    for (key, rows) in flakes(state, project, branch).await? {
        let latest = &rows[0];
        let mut wasted_ms = 0i64;
        let mut seen = HashSet::new();
        for r in &rows {
            job_info(state, &mut jobs, &r.job_id).await?;
            if seen.insert(r.job_id.clone())
                && let Some(Some(info)) = jobs.get(&r.job_id)
                && let (Some(a), Some(b)) = (info.job.started_at, info.job.stopped_at)
            {
                wasted_ms += (b - a).max(0);
            }
        }
        let info = jobs.get(&latest.job_id).and_then(Option::as_ref);
        out.push(FlakyTest {
            source: latest.source.clone(),
            times_flaked: rows.len(),
            time_wasted_ms: wasted_ms,
            latest_at: latest.created_at,
            workflow_name: latest.workflow_name.clone(),
            job_number: info.and_then(|i| i.job.number),
            workflow_id: info.map(|i| i.job.workflow_id.clone()),
            workflow_created_at: info.map(|i| i.workflow_created_at),
            pipeline_number: info.map(|i| i.pipeline_number),
            key,
        });
    }
    out.sort_by(|a, b| {
        b.times_flaked
            .cmp(&a.times_flaked)
            .then(b.latest_at.cmp(&a.latest_at))
    });
    Ok(out)
}

async fn flaky_tests(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo)): Slug,
) -> ApiResult<axum::Json<Value>> {
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    let flaky: Vec<Value> = flaky_tests_of(&state, &project, None)
        .await?
        .into_iter()
        .map(|f| {
            json!({
                "test_name": f.key.name,
                "classname": f.key.classname,
                "file": f.key.file,
                "source": f.source,
                "job_name": f.key.job_name,
                "job_number": f.job_number,
                "workflow_name": f.workflow_name,
                "workflow_id": f.workflow_id,
                "workflow_created_at": f.workflow_created_at.map(time),
                "pipeline_number": f.pipeline_number,
                "times_flaked": f.times_flaked,
                "time_wasted": (f.time_wasted_ms as f64 / 1000.0).round() as i64,
            })
        })
        .collect();
    let total = flaky.len();
    Ok(axum::Json(
        json!({"flaky_tests": flaky, "total_flaky_tests": total}),
    ))
}

/// A test's runs (skipped ones left out).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct TestStats {
    pub source: String,
    pub runs: u64,
    pub failures: u64,
    /// Run times, in seconds.
    pub times: Vec<f64>,
}

impl TestStats {
    /// The mean run time, in seconds.
    pub(crate) fn mean(&self) -> f64 {
        if self.times.is_empty() {
            0.0
        } else {
            self.times.iter().sum::<f64>() / self.times.len() as f64
        }
    }
}

/// Counts a test run into `stats` (not a skipped one).
pub(crate) fn add_test_run(stats: &mut BTreeMap<TestKey, TestStats>, t: &TestRow) {
    if t.result == "skipped" {
        return;
    }
    let s = stats.entry(test_key(t)).or_default();
    s.runs += 1;
    s.failures += u64::from(failed(t));
    s.times.push(t.run_time);
    if s.source.is_empty() {
        s.source = t.source.clone();
    }
}

/// The project's test runs since `since` (of a branch when given), per
/// test.
pub(crate) async fn test_stats_of(
    state: &AppState,
    project: &Project,
    branch: Option<&str>,
    since: Millis,
) -> ApiResult<BTreeMap<TestKey, TestStats>> {
    let rows = state
        .store
        .test_history(&project.id, None, branch, since, MAX_ROWS)
        .await?;
    let mut stats = BTreeMap::new();
    for t in &rows {
        add_test_run(&mut stats, t);
    }
    Ok(stats)
}

async fn test_metrics(
    State(state): St,
    _auth: Auth,
    Path((vcs, org, repo, workflow)): Path<(String, String, String, String)>,
    Query(q): Query<InsightsQuery>,
) -> ApiResult<axum::Json<Value>> {
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    known_workflow(&state, &project, &workflow).await?;
    let branch = q.branch(&project)?;
    let runs = state
        .store
        .workflow_runs(
            &project.id,
            Some(&workflow),
            branch.as_deref(),
            now_ms() - 90 * DAY_MS,
            5 * TEST_METRICS_RUNS as i64,
        )
        .await?;
    let mut covered: Vec<(WorkflowRunRow, Vec<TestRow>)> = Vec::new();
    for run in runs {
        if covered.len() == TEST_METRICS_RUNS {
            break;
        }
        let tests = state.store.test_results_of_workflow(&run.id).await?;
        if !tests.is_empty() {
            covered.push((run, tests));
        }
    }
    let flaky = flaky_keys(&state, &project).await?;
    let mut stats: BTreeMap<TestKey, TestStats> = BTreeMap::new();
    let mut test_runs = Vec::new();
    let mut total_tests = 0usize;
    for (run, tests) in &covered {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for t in tests {
            *counts.entry(t.result.as_str()).or_default() += 1;
            add_test_run(&mut stats, t);
        }
        total_tests += tests.len();
        let count = |k: &str| counts.get(k).copied().unwrap_or(0);
        let ran = tests.len() as u64 - count("skipped");
        test_runs.push(json!({
            "pipeline_number": run.pipeline_number,
            "workflow_id": run.id,
            "success_rate": if ran > 0 { count("success") as f64 / ran as f64 } else { 0.0 },
            "test_counts": {
                "error": count("error"),
                "failure": count("failure"),
                "skipped": count("skipped"),
                "success": count("success"),
                "total": tests.len(),
            },
        }));
    }
    let item = |key: &TestKey, s: &TestStats, p95: f64| {
        json!({
            "test_name": key.name,
            "classname": key.classname,
            "file": key.file,
            "job_name": key.job_name,
            "source": s.source,
            "failed_runs": s.failures,
            "total_runs": s.runs,
            "p95_duration": p95,
            "flaky": flaky.contains(key),
        })
    };
    let mut all: Vec<(&TestKey, &TestStats, f64)> = stats
        .iter()
        .map(|(k, s)| {
            let mut times = s.times.clone();
            times.sort_by(f64::total_cmp);
            (k, s, quantile(&times, 0.95))
        })
        .collect();
    // Most failed: by failed runs, then the lowest success rate.
    let mut most_failed: Vec<&(&TestKey, &TestStats, f64)> =
        all.iter().filter(|(_, s, _)| s.failures > 0).collect();
    most_failed.sort_by(|a, b| {
        b.1.failures
            .cmp(&a.1.failures)
            .then(a.1.runs.cmp(&b.1.runs))
            .then(a.0.cmp(b.0))
    });
    let failed_extra = match most_failed.get(TOP_TESTS.saturating_sub(1)) {
        Some(last) if most_failed.len() > TOP_TESTS => most_failed[TOP_TESTS..]
            .iter()
            .filter(|t| t.1.failures == last.1.failures)
            .count(),
        _ => 0,
    };
    let most_failed: Vec<Value> = most_failed
        .iter()
        .take(TOP_TESTS)
        .map(|(k, s, p)| item(k, s, *p))
        .collect();
    all.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(b.0)));
    let slow_extra = match all.get(TOP_TESTS.saturating_sub(1)) {
        Some(last) if all.len() > TOP_TESTS => {
            all[TOP_TESTS..].iter().filter(|t| t.2 == last.2).count()
        }
        _ => 0,
    };
    let slowest: Vec<Value> = all
        .iter()
        .take(TOP_TESTS)
        .map(|(k, s, p)| item(k, s, *p))
        .collect();
    let average = if covered.is_empty() {
        0
    } else {
        (total_tests as f64 / covered.len() as f64).round() as i64
    };
    Ok(axum::Json(json!({
        "average_test_count": average,
        "most_failed_tests": most_failed,
        "most_failed_tests_extra": failed_extra,
        "slowest_tests": slowest,
        "slowest_tests_extra": slow_extra,
        "total_test_runs": covered.len(),
        "test_runs": test_runs,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_durations() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(quantile(&v, 0.5), 5.0);
        assert_eq!(quantile(&v, 0.95), 10.0);
        assert_eq!(quantile(&[3.0], 0.95), 3.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
        let m = duration_metrics(vec![4.0, 2.0, 6.0]);
        assert_eq!(m["min"], 2);
        assert_eq!(m["max"], 6);
        assert_eq!(m["mean"], 4);
        assert_eq!(m["median"], 4);
        assert_eq!(m["standard_deviation"], 1.63);
    }

    #[test]
    fn mttr_counts_from_the_first_failure() {
        let run = |status: &str, at: i64| Run {
            status: status.into(),
            created_at: at,
            duration: Some(1.0),
            stopped_at: Some(at + 1000),
        };
        let mut runs = vec![
            run("failed", 0),
            run("failed", 10_000),
            run("success", 30_000),
            run("success", 40_000),
            run("failed", 50_000),
            run("success", 60_000),
            run("running", 70_000),
        ];
        let (m, start, end) = summary_metrics(&mut runs, true);
        assert_eq!((start, end), (0, 70_000));
        assert_eq!(m["total_runs"], 7);
        assert_eq!(m["successful_runs"], 3);
        assert_eq!(m["failed_runs"], 3);
        // Recoveries: 30 s (from 1 s to 31 s) and 10 s (51 s to 61 s).
        assert_eq!(m["mttr"], 20);
        assert_eq!(m["total_recoveries"], 2);
        assert_eq!(m["throughput"], 7.0);
    }
}
