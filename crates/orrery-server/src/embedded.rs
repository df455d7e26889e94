//! The embedded runner: the runner loop of `orrery runner`, calling the
//! engine in-process instead of over HTTP, with the server's data directory
//! as its storage. It serves the default resource class.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use orrery_agent::worker::{ApiError, BackendFactory, RunnerApi, WorkerConfig, run_worker};
use orrery_core::protocol::{Assignment, Completion, HeartbeatReply, RunnerEvent};
use orrery_engine::{DEFAULT_CLASS, Engine};
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::storage::TaskStorage;

pub struct Options {
    pub slots: usize,
    pub work_root: PathBuf,
    pub kill_grace: Duration,
}

/// The runner protocol as direct engine calls.
pub struct InProcess {
    engine: Arc<Engine>,
    runner_id: String,
    classes: Vec<String>,
}

impl InProcess {
    pub fn new(engine: Arc<Engine>, runner_id: String, classes: Vec<String>) -> InProcess {
        InProcess {
            engine,
            runner_id,
            classes,
        }
    }
}

fn api_err(e: orrery_engine::EngineError) -> ApiError {
    ApiError(e.to_string())
}

impl RunnerApi for InProcess {
    async fn claim(&self, wait: Duration) -> Result<Option<Assignment>, ApiError> {
        let mut claimed = self
            .engine
            .claim(&self.runner_id, &self.classes, wait)
            .await
            .map_err(api_err)?;
        if let Some(a) = &mut claimed {
            crate::secrets::guard_assignment(a);
        }
        Ok(claimed)
    }

    async fn heartbeat(&self, task_id: &str) -> Result<HeartbeatReply, ApiError> {
        self.engine
            .heartbeat(task_id, &self.runner_id)
            .await
            .map_err(api_err)
    }

    async fn events(&self, task_id: &str, events: Vec<RunnerEvent>) -> Result<(), ApiError> {
        self.engine
            .record_events(task_id, &self.runner_id, events)
            .await
            .map_err(api_err)
    }

    async fn complete(&self, task_id: &str, completion: Completion) -> Result<(), ApiError> {
        self.engine
            .complete(task_id, &self.runner_id, completion.status)
            .await
            .map_err(api_err)
    }
}

/// The server's own storage ([`TaskStorage`]): what the embedded runner's
/// jobs save, jobs on remote runners restore, and the other way round.
pub struct ServerBackends {
    pub state: Arc<AppState>,
}

impl BackendFactory for ServerBackends {
    type Backend = TaskStorage;

    fn backend(&self, a: &Assignment) -> TaskStorage {
        TaskStorage::new(
            Arc::clone(&self.state.blobs),
            self.state.store.clone(),
            &a.task_id,
        )
    }
}

/// Runs the embedded runner until `shutdown`.
pub async fn run(
    state: Arc<AppState>,
    runner_id: String,
    options: Options,
    shutdown: CancellationToken,
) {
    let api = Arc::new(InProcess::new(
        Arc::clone(&state.engine),
        runner_id,
        vec![DEFAULT_CLASS.to_string()],
    ));
    let factory = Arc::new(ServerBackends {
        state: Arc::clone(&state),
    });
    run_worker(
        api,
        factory,
        WorkerConfig {
            slots: options.slots,
            work_root: options.work_root,
            kill_grace: options.kill_grace,
            claim_wait: Duration::from_secs(30),
        },
        shutdown,
    )
    .await;
}
