//! The agent: runs one task of one compiled job.
//!
//! [`run_task`] takes a [`TaskSpec`] (the compiled job, its environment
//! variables, where the code comes from), a [`TaskBackend`] (where caches,
//! workspaces, artifacts and test results go) and a cancellation token, and
//! reports [`TaskEvent`]s as steps start, print and finish. The same code runs
//! in `orrery local execute`, in the server's embedded runner and in remote
//! `orrery runner` processes; only the backend differs.
//!
//! Jobs run on an [`exec::Environment`]: a Docker container set or the host
//! ("machine"). The in-job `circleci` binary ([`taskbin`]) is installed into
//! every environment and does the work inside it (step processes, archives,
//! checksums), so both executors behave the same.

pub mod backend;
pub mod exec;
mod host;
pub mod local;
pub mod mask;
mod runner;
pub mod spec;
pub mod taskbin;
pub mod template;
pub mod worker;

pub use backend::{BackendError, ByteStream, CacheHit, TaskBackend};
pub use local::{LocalBackend, LocalTask};
pub use runner::run_task;
pub use spec::{CheckoutSource, SshKey, StepRecord, TaskEvent, TaskResult, TaskSpec};
pub use tokio_util::sync::CancellationToken;
pub use worker::{ApiError, BackendFactory, RunnerApi, WorkerConfig, run_worker};
