//! A project's insights (what CircleCI keeps for its cloud): per workflow
//! its runs, success rate, median and 95th percentile durations and last
//! status; per job of each workflow its runs, success rate and median
//! duration; flaky tests; the slowest and the most failing tests.
//!
//! The numbers are the insights API's ([`crate::api::insights`]): the same
//! functions compute both, over the last `days` days (30 unless asked) of
//! one branch (`branch=`) or of all of them. Flaky tests keep CircleCI's
//! rule and window: failed and passed on the same revision within 14 days.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::HeaderMap;
use axum::routing::get;
use maud::{Markup, html};
use orrery_store::{Project, now_ms};
use serde::Deserialize;

use super::job::parse_query;
use super::{St, respond};
use crate::AppState;
use crate::api::insights::{
    FLAKY_WINDOW_MS, FlakyTest, Summary, TestKey, TestStats, flaky_tests_of, job_summaries_of,
    test_stats_of, workflow_summaries_of,
};
use crate::api::project_by_path;
use crate::error::ApiError;
use crate::web::view::{self, seg, status, when};
use crate::web::{Html, WebUser};

/// The window when none is asked for, in days.
pub const DEFAULT_DAYS: i64 = 30;
/// The longest window, in days.
pub const MAX_DAYS: i64 = 365;
/// Tests listed as slowest and as most failing.
const TOP: usize = 10;
/// Workflows whose jobs are listed (the busiest).
const MAX_JOB_TABLES: usize = 10;
const DAY_MS: i64 = 24 * 3600 * 1000;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/insights", get(index))
        .route("/insights/{vcs}/{org}/{repo}", get(page))
}

#[derive(Deserialize, Default)]
struct InsightsQuery {
    branch: Option<String>,
    days: Option<String>,
}

/// The page's link for a project.
pub fn insights_url(p: &Project) -> String {
    format!("/insights/{}", p.slug)
}

/// The window in days: [`DEFAULT_DAYS`] when not given, else 1 to
/// [`MAX_DAYS`].
fn days(v: Option<&str>) -> Result<i64, ApiError> {
    match v.map(str::trim) {
        None | Some("") => Ok(DEFAULT_DAYS),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|d| (1..=MAX_DAYS).contains(d))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "days must be a number of days from 1 to {MAX_DAYS}, not `{s}`"
                ))
            }),
    }
}

/// Whether `name` can be a branch name (git's `check-ref-format` rules).
fn is_branch_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && !name.contains("/.")
        && name != "@"
        && !name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
}

/// The branch asked for (`None`: all branches).
fn branch(v: Option<&str>) -> Result<Option<String>, ApiError> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(b) if is_branch_name(b) => Ok(Some(b.to_string())),
        Some(b) => Err(ApiError::BadRequest(format!(
            "`{}` is not a branch name",
            b.escape_debug()
        ))),
    }
}

/// `/insights`: the projects, each with a link to its insights.
async fn index(state: St, user: WebUser, headers: HeaderMap) -> Html {
    let projects = state.store.projects().await?;
    let body = html! {
        div.page-head { h1 { "Insights" } }
        @if projects.is_empty() {
            p.empty data-testid="no-projects" { "No projects yet. " a href="/projects" { "Add a project" } "." }
        } @else {
            table.projects data-testid="insights-projects" {
                thead { tr { th { "Project" } th { "Default branch" } } }
                tbody {
                    @for p in &projects {
                        tr {
                            td { a href=(insights_url(p)) data-testid="insights-project" { (p.slug) } }
                            td { code { (p.default_branch) } }
                        }
                    }
                }
            }
        }
    };
    Ok(respond(&user, &headers, "Insights", None, body))
}

/// `/insights/{vcs}/{org}/{repo}?branch=&days=`.
async fn page(
    state: St,
    user: WebUser,
    headers: HeaderMap,
    Path((vcs, org, repo)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Html {
    let project = project_by_path(&state, &vcs, &org, &repo).await?;
    let q: InsightsQuery = parse_query(query)?;
    let days = days(q.days.as_deref())?;
    let branch = branch(q.branch.as_deref())?;
    let since = now_ms() - days * DAY_MS;
    let b = branch.as_deref();

    let workflows = workflow_summaries_of(&state, &project, b, since).await?;
    // Jobs of the busiest workflows.
    let mut busiest: Vec<&Summary> = workflows.iter().collect();
    busiest.sort_by(|a, b| b.stats.total.cmp(&a.stats.total).then(a.name.cmp(&b.name)));
    let mut jobs: Vec<(&str, Vec<Summary>)> = Vec::new();
    for w in busiest.into_iter().take(MAX_JOB_TABLES) {
        jobs.push((
            &w.name,
            job_summaries_of(&state, &project, &w.name, b, since).await?,
        ));
    }
    let flaky = flaky_tests_of(&state, &project, b).await?;
    let flaky_keys: HashSet<&TestKey> = flaky.iter().map(|f| &f.key).collect();
    let tests = test_stats_of(&state, &project, b, since).await?;

    let title = format!("Insights of {}", project.slug);
    let body = html! {
        div.page-head {
            h1 { (title) }
            p.head-links {
                a href={"/pipelines/" (project.slug)} data-testid="pipelines-link" { "Pipelines" }
                " · "
                a href={"/projects/" (project.slug) "/settings"} { "Settings" }
            }
        }
        (filters(&project, branch.as_deref(), days))
        p.dim data-testid="insights-scope" {
            "The last " (days) " days of "
            @match &branch {
                Some(b) => { "branch " code { (b) } }
                None => "all branches",
            }
            "."
        }
        section.card.insights data-testid="insights-workflows" {
            h2 { "Workflows" }
            @if workflows.is_empty() {
                p.empty data-testid="no-workflows" { "No workflow ran in this window." }
            } @else {
                (workflows_table(&project, &workflows, branch.as_deref()))
            }
        }
        @for (workflow, js) in &jobs {
            section.card.insights data-testid="insights-jobs" data-workflow=(workflow) {
                h2 { "Jobs of " (workflow) }
                @if js.is_empty() {
                    p.empty { "No job of this workflow started in this window." }
                } @else {
                    (jobs_table(workflow, js))
                }
            }
        }
        section.card.insights data-testid="insights-flaky" {
            h2 { "Flaky tests" }
            p.dim { "Tests that failed and passed on the same revision in the last "
                (FLAKY_WINDOW_MS / DAY_MS) " days." }
            @if flaky.is_empty() {
                p.empty data-testid="no-flaky-tests" { "No flaky tests." }
            } @else {
                (flaky_table(&project, &flaky))
            }
        }
        section.card.insights data-testid="insights-slowest" {
            h2 { "Slowest tests" }
            @if tests.is_empty() {
                p.empty data-testid="no-tests" { "No test results in this window." }
            } @else {
                (slowest_table(&tests, &flaky_keys))
            }
        }
        section.card.insights data-testid="insights-failing" {
            h2 { "Most failing tests" }
            (failing_table(&tests, &flaky_keys))
        }
    };
    Ok(respond(&user, &headers, &title, None, body))
}

fn filters(project: &Project, branch: Option<&str>, days: i64) -> Markup {
    let action = format!("/insights/{}", project.slug);
    html! {
        form.filters method="get" action=(action) data-testid="insights-filters" {
            label { "Branch " input name="branch" value=[branch] placeholder="all branches"; }
            label { "Days " input type="number" name="days" min="1" max=(MAX_DAYS) value=(days); }
            button type="submit" { "Show" }
            @if branch != Some(project.default_branch.as_str()) {
                a href={(action) "?branch=" (seg(&project.default_branch)) "&days=" (days)} { "Only " (project.default_branch) }
            }
            @if branch.is_some() {
                a href={(action) "?days=" (days)} { "All branches" }
            }
        }
    }
}

/// A rate as `50%`.
fn percent(rate: f64) -> String {
    format!("{:.0}%", rate * 100.0)
}

/// A small horizontal bar, `share` of its track (0 to 1).
fn bar(share: f64, class: &str) -> Markup {
    let width = (share.clamp(0.0, 1.0) * 100.0).round();
    html! {
        span.bar-track aria-hidden="true" {
            span class={"bar " (class)} style={"width:" (width) "%"} {}
        }
    }
}

fn secs(s: i64) -> String {
    view::duration(s * 1000)
}

fn rate_cell(rate: f64) -> Markup {
    html! {
        td.rate {
            span.num { (percent(rate)) } " "
            (bar(rate, if rate >= 0.9 { "ok" } else if rate >= 0.5 { "warn" } else { "bad" }))
        }
    }
}

fn workflows_table(project: &Project, workflows: &[Summary], branch: Option<&str>) -> Markup {
    let pipelines = match branch {
        Some(b) => format!("/pipelines/{}?branch={}", project.slug, seg(b)),
        None => format!("/pipelines/{}", project.slug),
    };
    html! {
        div.table-wrap {
            table.insights {
                thead { tr {
                    th { "Workflow" } th.num { "Runs" } th.num { "Failed" } th { "Success rate" }
                    th.num { "Median" } th.num { "95th percentile" } th { "Last run" }
                } }
                tbody {
                    @for w in workflows {
                        tr data-testid="workflow-row" data-workflow=(w.name) data-runs=(w.stats.total)
                            data-success-rate=(percent(w.stats.success_rate)) {
                            td { a href=(pipelines) { (w.name) } }
                            td.num { (w.stats.total) }
                            td.num { (w.stats.failed) }
                            (rate_cell(w.stats.success_rate))
                            td.num { (secs(w.stats.durations.median)) }
                            td.num { (secs(w.stats.durations.p95)) }
                            td {
                                @if let Some(s) = &w.stats.last_status { (status(s)) " " }
                                span.dim { (when(w.stats.window_end)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn jobs_table(workflow: &str, jobs: &[Summary]) -> Markup {
    html! {
        div.table-wrap {
            table.insights {
                thead { tr {
                    th { "Job" } th.num { "Runs" } th.num { "Failed" } th { "Success rate" } th.num { "Median" }
                } }
                tbody {
                    @for j in jobs {
                        tr data-testid="job-row" data-workflow=(workflow) data-job=(j.name) data-runs=(j.stats.total)
                            data-success-rate=(percent(j.stats.success_rate)) {
                            td { (j.name) }
                            td.num { (j.stats.total) }
                            td.num { (j.stats.failed) }
                            (rate_cell(j.stats.success_rate))
                            td.num { (secs(j.stats.durations.median)) }
                        }
                    }
                }
            }
        }
    }
}

fn test_cell(key: &TestKey, flaky: bool) -> Markup {
    html! {
        td {
            @if !key.classname.is_empty() { span.dim { (key.classname) " · " } }
            strong { (key.name) }
            @if flaky { " " span.badge.flaky title="Failed and passed on the same revision" { "flaky" } }
            @if !key.file.is_empty() { br; span.dim { code { (key.file) } } }
        }
    }
}

fn flaky_table(project: &Project, flaky: &[FlakyTest]) -> Markup {
    html! {
        div.table-wrap {
            table.insights {
                thead { tr {
                    th { "Test" } th { "Job" } th.num { "Times flaked" } th.num { "Time wasted" } th { "Latest flake" }
                } }
                tbody {
                    @for f in flaky {
                        tr data-testid="flaky-test" data-name=(f.key.name) data-times=(f.times_flaked) {
                            (test_cell(&f.key, false))
                            td { (f.key.job_name) br; span.dim { (f.workflow_name) } }
                            td.num { (f.times_flaked) }
                            td.num { (view::duration(f.time_wasted_ms)) }
                            td {
                                @match (f.pipeline_number, &f.workflow_id, f.job_number) {
                                    (Some(p), Some(w), Some(j)) => {
                                        a href={"/pipelines/" (project.slug) "/" (p) "/workflows/" (w) "/jobs/" (j) "?tab=tests"} {
                                            "Job #" (j)
                                        }
                                        " "
                                    }
                                    _ => {}
                                }
                                span.dim { (when(f.latest_at)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn slowest_table(tests: &BTreeMap<TestKey, TestStats>, flaky: &HashSet<&TestKey>) -> Markup {
    let mut slowest: Vec<(&TestKey, &TestStats, f64)> =
        tests.iter().map(|(k, s)| (k, s, s.mean())).collect();
    slowest.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(b.0)));
    slowest.truncate(TOP);
    let longest = slowest.first().map_or(0.0, |t| t.2);
    html! {
        div.table-wrap {
            table.insights {
                thead { tr { th { "Test" } th { "Job" } th.num { "Runs" } th { "Mean time" } } }
                tbody {
                    @for (k, s, mean) in &slowest {
                        tr data-testid="slow-test" data-name=(k.name) {
                            (test_cell(k, flaky.contains(k)))
                            td { (k.job_name) }
                            td.num { (s.runs) }
                            td.rate {
                                span.num { (format!("{mean:.3}s")) } " "
                                (bar(if longest > 0.0 { mean / longest } else { 0.0 }, "time"))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn failing_table(tests: &BTreeMap<TestKey, TestStats>, flaky: &HashSet<&TestKey>) -> Markup {
    let mut failing: Vec<(&TestKey, &TestStats)> =
        tests.iter().filter(|(_, s)| s.failures > 0).collect();
    // By failures, then the lowest success rate (the fewest runs).
    failing.sort_by(|a, b| {
        b.1.failures
            .cmp(&a.1.failures)
            .then(a.1.runs.cmp(&b.1.runs))
            .then(a.0.cmp(b.0))
    });
    failing.truncate(TOP);
    html! {
        @if failing.is_empty() {
            p.empty data-testid="no-failing-tests" { "No test failed in this window." }
        } @else {
            div.table-wrap {
                table.insights {
                    thead { tr { th { "Test" } th { "Job" } th.num { "Failures" } th.num { "Runs" } th { "Failure rate" } } }
                    tbody {
                        @for (k, s) in &failing {
                            @let rate = s.failures as f64 / s.runs.max(1) as f64;
                            tr data-testid="failing-test" data-name=(k.name) data-failures=(s.failures) data-runs=(s.runs) {
                                (test_cell(k, flaky.contains(k)))
                                td { (k.job_name) }
                                td.num { (s.failures) }
                                td.num { (s.runs) }
                                td.rate { span.num { (percent(rate)) } " " (bar(rate, "bad")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_branches() {
        assert_eq!(days(None).unwrap(), DEFAULT_DAYS);
        assert_eq!(days(Some("")).unwrap(), DEFAULT_DAYS);
        assert_eq!(days(Some("7")).unwrap(), 7);
        for bad in ["0", "-1", "x", "366", "1.5"] {
            assert!(days(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(branch(None).unwrap(), None);
        assert_eq!(branch(Some("")).unwrap(), None);
        assert_eq!(
            branch(Some("feature/x-1")).unwrap().as_deref(),
            Some("feature/x-1")
        );
        for bad in [
            "a..b", "a b", "-x", "x/", "x.lock", "a~1", "a^", "a:b", "a\u{0}", "@", "a@{1}", ".x",
        ] {
            assert!(branch(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn bars_and_rates() {
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(1.0), "100%");
        let b = bar(1.7, "ok").into_string();
        assert!(b.contains("width:100%"), "{b}");
    }
}
