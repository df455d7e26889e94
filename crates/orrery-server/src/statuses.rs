//! Commit statuses: as jobs change state, tells GitHub, GitLab or Gitea, with
//! CircleCI's context names (`ci/circleci: <job>`), when the project has a
//! VCS token. Best effort: a failed call is logged (without the token) and
//! the next change of the job sends its state again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use orrery_engine::EngineEvent;
use orrery_store::{Job, Pipeline, Project};
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::AppState;

/// One status to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusUpdate {
    pub method_url: String,
    pub body: Option<serde_json::Value>,
    /// `(header, value)`: the token, in the provider's way.
    pub auth: (&'static str, String),
}

/// The provider's word for a job status, or `None` when nothing is sent.
pub fn provider_state(provider: &str, status: &str) -> Option<&'static str> {
    let s = match (provider, status) {
        (_, "not_run" | "retried") => return None,
        ("gitlab", "queued" | "blocked" | "on_hold" | "not_running") => "pending",
        ("gitlab", "running") => "running",
        ("gitlab", "success") => "success",
        ("gitlab", "canceled") => "canceled",
        ("gitlab", _) => "failed",
        (_, "queued" | "blocked" | "on_hold" | "not_running" | "running") => "pending",
        (_, "success") => "success",
        (_, "failed" | "timedout") => "failure",
        (_, _) => "error",
    };
    Some(s)
}

fn description(status: &str) -> String {
    match status {
        "success" => "Your tests passed on Orrery!".into(),
        "failed" => "Your tests failed on Orrery".into(),
        "running" => "Your tests are running on Orrery".into(),
        "queued" | "blocked" | "not_running" => "Your tests are queued on Orrery".into(),
        "on_hold" => "This job is on hold".into(),
        other => format!("The job ended: {other}"),
    }
}

/// The default API of a provider, for a repository URL.
pub fn default_api(provider: &str, repo_url: &str) -> Option<String> {
    match provider {
        "github" => Some("https://api.github.com".into()),
        "gitlab" => Some("https://gitlab.com/api/v4".into()),
        "gitea" => {
            let rest = repo_url.split_once("://")?;
            let host = rest.1.split('/').next()?;
            Some(format!("{}://{host}/api/v1", rest.0))
        }
        _ => None,
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What to send for a job's state; pure, so it is tested without a network.
pub fn status_update(
    project: &Project,
    api_base: &str,
    token: &str,
    pipeline: &Pipeline,
    job: &Job,
    target_url: &str,
) -> Option<StatusUpdate> {
    let state = provider_state(&project.vcs_provider, &job.status)?;
    let (_, owner_repo) = project.slug.split_once('/')?;
    let context = format!("ci/circleci: {}", job.name);
    let api = api_base.trim_end_matches('/');
    let sha = &pipeline.revision;
    match project.vcs_provider.as_str() {
        "github" => Some(StatusUpdate {
            method_url: format!("{api}/repos/{owner_repo}/statuses/{sha}"),
            body: Some(json!({
                "state": state, "target_url": target_url,
                "description": description(&job.status), "context": context,
            })),
            auth: ("authorization", format!("Bearer {token}")),
        }),
        "gitea" => Some(StatusUpdate {
            method_url: format!("{api}/repos/{owner_repo}/statuses/{sha}"),
            body: Some(json!({
                "state": state, "target_url": target_url,
                "description": description(&job.status), "context": context,
            })),
            auth: ("authorization", format!("token {token}")),
        }),
        "gitlab" => Some(StatusUpdate {
            method_url: format!(
                "{api}/projects/{}/statuses/{sha}?state={state}&name={}&target_url={}&description={}",
                percent_encode(owner_repo),
                percent_encode(&context),
                percent_encode(target_url),
                percent_encode(&description(&job.status)),
            ),
            body: None,
            auth: ("private-token", token.to_string()),
        }),
        _ => None,
    }
}

/// What was last sent for each job, `(state, description)`: a job is told
/// again only when that changes (GitLab refuses a repeated state, and GitHub
/// would list it twice).
#[derive(Default)]
struct Sent(HashMap<String, (&'static str, String)>);

impl Sent {
    /// Jobs remembered at most; past it the memory starts over (at worst a
    /// status is sent twice).
    const CAPACITY: usize = 50_000;

    fn remember(&mut self, job_id: &str, key: (&'static str, String)) {
        if self.0.len() >= Sent::CAPACITY {
            self.0.clear();
        }
        self.0.insert(job_id.to_string(), key);
    }
}

async fn send_for_job(
    state: &AppState,
    client: &reqwest::Client,
    job: &Job,
    sent: &mut Sent,
) -> Option<()> {
    if job.job_type != "build" {
        return None;
    }
    let project = state.store.project(&job.project_id).await.ok()??;
    let token = state.cipher.open(project.vcs_token.as_deref()?)?;
    let key = (
        provider_state(&project.vcs_provider, &job.status)?,
        description(&job.status),
    );
    if sent.0.get(&job.id) == Some(&key) {
        return None;
    }
    let pipeline = state.store.pipeline(&job.pipeline_id).await.ok()??;
    let api = match state
        .store
        .setting(&format!("vcs_api_url:{}", project.id))
        .await
        .ok()?
    {
        Some(a) => a,
        None => default_api(&project.vcs_provider, &project.repo_url)?,
    };
    let target = format!(
        "{}/pipelines/{}/{}/workflows/{}/jobs/{}",
        state.base_url,
        project.slug,
        pipeline.number,
        job.workflow_id,
        job.number.unwrap_or_default()
    );
    let update = status_update(&project, &api, &token, &pipeline, job, &target)?;
    let mut req = client
        .post(&update.method_url)
        .header(update.auth.0, &update.auth.1)
        .header("user-agent", concat!("orrery/", env!("CARGO_PKG_VERSION")))
        .header("accept", "application/json");
    if let Some(body) = &update.body {
        req = req.json(body);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => sent.remember(&job.id, key),
        Ok(r) => tracing::warn!(
            project = %project.slug, job = %job.name, status = %r.status(),
            "the VCS refused a commit status"
        ),
        Err(e) => tracing::warn!(
            project = %project.slug, job = %job.name, error = %e.without_url(),
            "a commit status could not be sent"
        ),
    }
    Some(())
}

/// Sends statuses until `shutdown`.
pub async fn run_notifier(state: Arc<AppState>, shutdown: CancellationToken) {
    let mut events = state.engine.subscribe();
    let client = match crate::client::http_client(Duration::from_secs(10)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "commit statuses are off: no HTTP client");
            return;
        }
    };
    let mut sent = Sent::default();
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = shutdown.cancelled() => return,
        };
        match event {
            Ok(EngineEvent::Job { job_id, .. }) => {
                if let Ok(Some(job)) = state.store.job(&job_id).await {
                    send_for_job(&state, &client, &job, &mut sent).await;
                }
            }
            // A new workflow's first jobs are queued without events of their
            // own: report them (jobs still blocked are reported once they
            // leave that state, as their later changes come as job events).
            Ok(EngineEvent::Workflow { workflow_id, .. }) => {
                let jobs = state
                    .store
                    .jobs_of_workflow(&workflow_id)
                    .await
                    .unwrap_or_default();
                for job in jobs.iter().filter(|j| j.status != "blocked") {
                    send_for_job(&state, &client, job, &mut sent).await;
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "commit statuses fell behind; some were skipped");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
