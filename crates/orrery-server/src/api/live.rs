//! A job's output: whole (`.../job/{number}/output`, raw bytes) and live
//! (`.../job/{number}/output/stream`, Server-Sent Events). Orrery's additions
//! to API v2; v1.1's `output_url`s serve the same bytes as CircleCI's JSON.
//!
//! The stream sends what is stored first, then what arrives, in order and
//! without gaps: on every change the engine announces for the job (and every
//! few seconds, and after a missed announcement) it reads the store from
//! where it left off. Events:
//! - `step`: `{"node", "index", "name", "status", "attempt"}` when a step
//!   starts or ends;
//! - `output`: `{"node", "step", "seq", "data"}`, `data` base64 (output is
//!   bytes, not always UTF-8);
//! - `end`: `{"status"}` once the job has ended and everything was sent.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use orrery_engine::EngineEvent;
use orrery_store::{Job, Task};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::Query;
use super::v2::job_by_path;
use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v2/project/{vcs}/{org}/{repo}/job/{number}/output",
            get(output),
        )
        .route(
            "/api/v2/project/{vcs}/{org}/{repo}/job/{number}/output/stream",
            get(stream),
        )
}

/// The latest attempt of each parallel node.
pub fn latest_tasks(tasks: Vec<Task>) -> BTreeMap<i64, Task> {
    let mut latest: BTreeMap<i64, Task> = BTreeMap::new();
    for t in tasks {
        if latest
            .get(&t.node_index)
            .is_none_or(|l| t.attempt > l.attempt)
        {
            latest.insert(t.node_index, t);
        }
    }
    latest
}

#[derive(Deserialize)]
struct OutputQuery {
    step: Option<i64>,
    #[serde(default)]
    node: i64,
}

type JobPath = Path<(String, String, String, String)>;

async fn output(
    State(state): State<Arc<AppState>>,
    _auth: Auth,
    Path((vcs, org, repo, number)): JobPath,
    Query(q): Query<OutputQuery>,
) -> ApiResult<Response> {
    let (job, _) = job_by_path(&state, &vcs, &org, &repo, &number).await?;
    let tasks = latest_tasks(state.store.tasks_of_job(&job.id).await?);
    let task = tasks
        .get(&q.node)
        .ok_or_else(|| ApiError::NotFound(format!("node {} of the job has no output", q.node)))?;
    let steps = match q.step {
        Some(s) => vec![s],
        None => state
            .store
            .steps_of_task(&task.id)
            .await?
            .iter()
            .map(|s| s.step_index)
            .collect(),
    };
    let body = stored_output(Arc::clone(&state), task.id.clone(), steps, i64::MAX);
    Ok(([("content-type", "application/octet-stream")], body).into_response())
}

/// Output chunks read from the store at a time by [`stored_output`].
const STORED_PAGE: i64 = 16;

/// The stored output of `steps` of a task (chunks below `until` each), as a
/// body streamed a few chunks at a time: a long log is never held whole.
pub fn stored_output(
    state: Arc<AppState>,
    task: String,
    steps: Vec<i64>,
    until: i64,
) -> axum::body::Body {
    let stream = futures_util::stream::unfold(
        (state, task, steps.into_iter(), None::<(i64, i64)>, false),
        move |(state, task, mut steps, mut at, done)| async move {
            if done {
                return None;
            }
            loop {
                let (step, from) = match at {
                    Some(a) => a,
                    None => (steps.next()?, 0),
                };
                match state
                    .store
                    .output_page(&task, step, from, until, STORED_PAGE)
                    .await
                {
                    Err(e) => {
                        tracing::warn!(error = %e, "reading output");
                        let err = std::io::Error::other(e.to_string());
                        return Some((Err(err), (state, task, steps, at, true)));
                    }
                    Ok(page) if page.is_empty() => at = None,
                    Ok(page) => {
                        let next = page.last().map_or(from, |(s, _)| s + 1);
                        let mut bytes = Vec::with_capacity(page.iter().map(|(_, d)| d.len()).sum());
                        for (_, d) in page {
                            bytes.extend_from_slice(&d);
                        }
                        at = Some((step, next));
                        return Some((
                            Ok::<_, std::io::Error>(bytes::Bytes::from(bytes)),
                            (state, task, steps, at, false),
                        ));
                    }
                }
            }
        },
    );
    axum::body::Body::from_stream(stream)
}

/// Where a watcher is.
#[derive(Default)]
struct Cursor {
    /// Step status last sent, by (task, step).
    steps: HashMap<(String, i64), String>,
    /// Next output sequence number, by (task, step).
    next_seq: HashMap<(String, i64), i64>,
}

async fn sync(
    state: &AppState,
    job: &Job,
    cursor: &mut Cursor,
    tx: &mpsc::Sender<Event>,
) -> ApiResult<bool> {
    let tasks = latest_tasks(state.store.tasks_of_job(&job.id).await?);
    for (node, task) in &tasks {
        for step in state.store.steps_of_task(&task.id).await? {
            let key = (task.id.clone(), step.step_index);
            if cursor.steps.get(&key) != Some(&step.status) {
                cursor.steps.insert(key.clone(), step.status.clone());
                let data = json!({
                    "node": node, "index": step.step_index, "name": step.name,
                    "status": step.status, "attempt": task.attempt,
                });
                if tx
                    .send(Event::default().event("step").data(data.to_string()))
                    .await
                    .is_err()
                {
                    return Ok(false);
                }
            }
            let from = cursor.next_seq.get(&key).copied().unwrap_or(0);
            for (seq, chunk) in state.store.output(&task.id, step.step_index, from).await? {
                if seq != cursor.next_seq.get(&key).copied().unwrap_or(0) {
                    // A gap: the chunk in between has not arrived yet.
                    break;
                }
                cursor.next_seq.insert(key.clone(), seq + 1);
                let data = json!({
                    "node": node, "step": step.step_index, "seq": seq,
                    "data": orrery_core::protocol::b64::encode(&chunk),
                });
                if tx
                    .send(Event::default().event("output").data(data.to_string()))
                    .await
                    .is_err()
                {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

/// Whether a job status is final.
pub fn is_job_terminal(status: &str) -> bool {
    !matches!(
        status,
        "queued" | "running" | "not_running" | "on_hold" | "blocked"
    )
}

async fn stream(
    State(state): State<Arc<AppState>>,
    _auth: Auth,
    Path((vcs, org, repo, number)): JobPath,
) -> ApiResult<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>> {
    let (job, _) = job_by_path(&state, &vcs, &org, &repo, &number).await?;
    Ok(job_stream(state, job, false))
}

/// The live output of a job as Server-Sent Events (see the module's docs).
/// With `tail`, what is stored when the stream starts is skipped: the first
/// event, `marks` (`{"marks": [{"node", "step", "next"}]}`), says from which
/// sequence number on each step's output follows, so a client that reads
/// what came before elsewhere (the web app's raw output, `until=next`)
/// misses nothing and gets nothing twice.
pub fn job_stream(
    state: Arc<AppState>,
    job: Job,
    tail: bool,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let mut events = state.engine.subscribe();
    let (tx, mut rx) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let mut cursor = Cursor::default();
        if tail {
            let mut marks = Vec::new();
            if let Ok(tasks) = state.store.tasks_of_job(&job.id).await {
                for (node, task) in latest_tasks(tasks) {
                    for (step, seq) in state.store.output_marks(&task.id).await.unwrap_or_default()
                    {
                        cursor.next_seq.insert((task.id.clone(), step), seq + 1);
                        marks.push(json!({"node": node, "step": step, "next": seq + 1}));
                    }
                }
            }
            let data = json!({ "marks": marks });
            if tx
                .send(Event::default().event("marks").data(data.to_string()))
                .await
                .is_err()
            {
                return;
            }
        }
        loop {
            // Read the job first: if it has ended, what the store holds is all.
            let current = match state.store.job(&job.id).await {
                Ok(Some(j)) => j,
                _ => break,
            };
            match sync(&state, &job, &mut cursor, &tx).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "live output sync failed");
                }
            }
            if is_job_terminal(&current.status) {
                let end = json!({"status": current.status});
                let _ = tx
                    .send(Event::default().event("end").data(end.to_string()))
                    .await;
                return;
            }
            // Wait for news of this job, or a while.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            loop {
                let next = tokio::select! {
                    n = tokio::time::timeout_at(deadline, events.recv()) => n,
                    // The server is stopping: end the stream (the client reconnects).
                    _ = state.shutdown.cancelled() => return,
                };
                match next {
                    Err(_) => break,
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                    Ok(Err(broadcast::error::RecvError::Closed)) => return,
                    Ok(Ok(e)) => {
                        let mine = match &e {
                            EngineEvent::Job { job_id, .. }
                            | EngineEvent::Step { job_id, .. }
                            | EngineEvent::Output { job_id, .. } => *job_id == job.id,
                            _ => false,
                        };
                        if mine {
                            break;
                        }
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)));
    Sse::new(stream).keep_alive(KeepAlive::default())
}
