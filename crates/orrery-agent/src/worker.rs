//! The runner: claims tasks through the runner protocol and runs them.
//!
//! One loop serves both transports: the server's embedded runner calls the
//! engine in-process, `orrery runner` calls it over HTTP; both implement
//! [`RunnerApi`]. Per task it keeps the lease alive with heartbeats (and stops
//! the task when the server says it was canceled or the lease was lost),
//! forwards output in sequenced chunks (batched, and resent on failure; the
//! server stores a chunk once), and reports the result.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use orrery_core::JobStatus;
use orrery_core::protocol::{Assignment, Completion, HeartbeatReply, RunnerEvent};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::backend::TaskBackend;
use crate::spec::{CheckoutSource, TaskEvent, TaskSpec};

/// A failed protocol call.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ApiError(pub String);

/// The server side of the runner protocol, as a runner sees it.
pub trait RunnerApi: Send + Sync + 'static {
    /// Waits up to `wait` for a task of the runner's resource classes.
    fn claim(
        &self,
        wait: Duration,
    ) -> impl Future<Output = Result<Option<Assignment>, ApiError>> + Send;
    fn heartbeat(
        &self,
        task_id: &str,
    ) -> impl Future<Output = Result<HeartbeatReply, ApiError>> + Send;
    fn events(
        &self,
        task_id: &str,
        events: Vec<RunnerEvent>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    fn complete(
        &self,
        task_id: &str,
        completion: Completion,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

/// Makes the storage backend of a task.
pub trait BackendFactory: Send + Sync + 'static {
    type Backend: TaskBackend;
    fn backend(&self, assignment: &Assignment) -> Self::Backend;
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// How many tasks run at once.
    pub slots: usize,
    pub work_root: PathBuf,
    pub kill_grace: Duration,
    /// How long one claim call waits for work.
    pub claim_wait: Duration,
}

/// Claims and runs tasks until `shutdown`. Tasks still running then are
/// canceled (their containers removed) without reporting a result; the
/// server gives them to another runner once their lease runs out.
pub async fn run_worker<A: RunnerApi, F: BackendFactory>(
    api: Arc<A>,
    factory: Arc<F>,
    config: WorkerConfig,
    shutdown: CancellationToken,
) {
    // Containers of a previous process with this work root are orphans now.
    let removed = crate::exec::docker::remove_owned(&config.work_root.display().to_string()).await;
    if removed > 0 {
        tracing::warn!(
            removed,
            "removed containers a previous run of this runner left"
        );
    }
    let slots = Arc::new(Semaphore::new(config.slots.max(1)));
    let mut running = tokio::task::JoinSet::new();
    let mut failures = 0u32;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
        let claimed = tokio::select! {
            c = api.claim(config.claim_wait) => c,
            _ = shutdown.cancelled() => break,
        };
        match claimed {
            Ok(Some(assignment)) => {
                failures = 0;
                let api = Arc::clone(&api);
                let backend = factory.backend(&assignment);
                let config = config.clone();
                let stop = shutdown.child_token();
                running.spawn(async move {
                    run_assignment(api, backend, assignment, config, stop).await;
                    drop(permit);
                });
            }
            Ok(None) => {}
            Err(e) => {
                // The server is unreachable: back off, a little more each time.
                failures += 1;
                let wait = Duration::from_millis(200 * u64::from(failures.min(25)));
                tracing::warn!(error = %e, "claiming a task failed; retrying in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
        // Reap finished tasks.
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

async fn retry<T, Fut: Future<Output = Result<T, ApiError>>>(
    what: &str,
    deadline: Duration,
    mut f: impl FnMut() -> Fut,
) -> Result<T, ApiError> {
    let started = tokio::time::Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if started.elapsed() < deadline => {
                tracing::warn!(error = %e, "{what} failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs one claimed task and reports it.
pub async fn run_assignment<A: RunnerApi, B: TaskBackend>(
    api: Arc<A>,
    backend: B,
    a: Assignment,
    config: WorkerConfig,
    stop: CancellationToken,
) {
    let task_id = a.task_id.clone();
    let spec = TaskSpec {
        task_id: format!("{}-{}", &task_id[..task_id.len().min(8)], a.attempt),
        job_name: a.job_name.clone(),
        job: a.job.clone(),
        node_index: a.node_index,
        node_total: a.node_total,
        builtin_env: a.builtin_env.clone(),
        context_env: a.context_env.clone(),
        project_env: a.project_env.clone(),
        checkout: CheckoutSource::Git {
            url: a.checkout.url.clone(),
            revision: a.checkout.revision.clone(),
            branch: a.checkout.branch.clone(),
            tag: a.checkout.tag.clone(),
        },
        ssh_keys: Vec::new(),
        max_run_time: Duration::from_secs(a.max_run_time_secs.max(1)),
        work_root: config.work_root.clone(),
        workspace_upstream: a.workspace_upstream.clone(),
        kill_grace: config.kill_grace,
    };
    let cancel = stop.child_token();
    let lost = CancellationToken::new();

    // Heartbeats.
    let heartbeat = {
        let api = Arc::clone(&api);
        let task_id = task_id.clone();
        let cancel = cancel.clone();
        let lost = lost.clone();
        let every = Duration::from_secs(a.heartbeat_secs.max(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match api.heartbeat(&task_id).await {
                    Ok(reply) if reply.lost => {
                        lost.cancel();
                        cancel.cancel();
                        break;
                    }
                    Ok(reply) if reply.cancel => cancel.cancel(),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
            }
        })
    };

    // Events: sequenced per step, output batched.
    let (tx, mut rx) = mpsc::unbounded_channel::<TaskEvent>();
    let forward = {
        let api = Arc::clone(&api);
        let task_id = task_id.clone();
        tokio::spawn(async move {
            let mut seqs: HashMap<usize, u64> = HashMap::new();
            let mut batch: Vec<RunnerEvent> = Vec::new();
            let mut pending_bytes = 0usize;
            let flush_every = Duration::from_millis(200);
            // When the oldest event of the batch arrived: a batch is sent
            // at most `flush_every` later, however steadily output flows.
            let mut batch_since: Option<tokio::time::Instant> = None;
            loop {
                let wait =
                    batch_since.map_or(flush_every, |t| flush_every.saturating_sub(t.elapsed()));
                let event = tokio::time::timeout(wait, rx.recv()).await;
                let done = matches!(event, Ok(None));
                if let Ok(Some(event)) = event {
                    let since = *batch_since.get_or_insert_with(tokio::time::Instant::now);
                    let now = orrery_now();
                    match event {
                        TaskEvent::StepStarted {
                            index,
                            name,
                            background,
                        } => batch.push(RunnerEvent::StepStarted {
                            index: index as u32,
                            name,
                            background,
                            at: now,
                        }),
                        TaskEvent::Output { index, data } => {
                            // Merge with the previous chunk of the same step in this batch.
                            if let Some(RunnerEvent::Output {
                                index: i, data: d, ..
                            }) = batch.last_mut()
                                && *i == index as u32
                                && d.len() + data.len() <= 256 * 1024
                            {
                                pending_bytes += data.len();
                                d.extend_from_slice(&data);
                            } else {
                                let seq = seqs.entry(index).or_insert(0);
                                pending_bytes += data.len();
                                batch.push(RunnerEvent::Output {
                                    index: index as u32,
                                    seq: *seq,
                                    data,
                                });
                                *seq += 1;
                            }
                        }
                        TaskEvent::StepFinished { index, outcome, .. } => {
                            batch.push(RunnerEvent::StepFinished {
                                index: index as u32,
                                outcome,
                                at: now,
                            })
                        }
                    }
                    if pending_bytes < 512 * 1024
                        && batch.len() < 256
                        && since.elapsed() < flush_every
                    {
                        continue;
                    }
                }
                batch_since = None;
                if !batch.is_empty() {
                    let events = std::mem::take(&mut batch);
                    pending_bytes = 0;
                    let result = retry("sending output", Duration::from_secs(600), || {
                        api.events(&task_id, events.clone())
                    })
                    .await;
                    if let Err(e) = result {
                        tracing::error!(error = %e, "output could not be delivered");
                    }
                }
                if done {
                    break;
                }
            }
        })
    };

    let result = crate::run_task(spec, Arc::new(backend), tx, cancel.clone()).await;
    let _ = forward.await;
    heartbeat.abort();
    if lost.is_cancelled() || stop.is_cancelled() {
        // The server no longer expects a result from this runner.
        return;
    }
    let status = if cancel.is_cancelled() {
        JobStatus::Canceled
    } else {
        result.status
    };
    if let Err(e) = retry("reporting the result", Duration::from_secs(600), || {
        api.complete(&task_id, Completion { status })
    })
    .await
    {
        tracing::error!(error = %e, task = %task_id, "the result could not be reported");
    }
}

fn orrery_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
