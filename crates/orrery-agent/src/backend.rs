//! The task's side of the runner protocol: where caches, workspaces,
//! artifacts and test results go, and where timing data comes from.
//!
//! One trait, two transports: [`crate::local::LocalBackend`] keeps everything
//! in a directory (`orrery local execute`, the embedded runner); the server's
//! HTTP runner API implements the same trait for remote runners.
//! Cache and workspace data are zstd-compressed tar streams the agent makes;
//! the backend stores them as opaque bytes.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use orrery_testresults::TestCase;
use tokio::io::AsyncRead;

/// A stream of bytes.
pub type ByteStream = Pin<Box<dyn AsyncRead + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    /// The request was refused (bad data, an unknown key).
    #[error("{0}")]
    Refused(String),
    /// Where things are stored failed (object storage, the database): not
    /// the task's fault, and worth trying again.
    #[error("{0}")]
    Unavailable(String),
}

/// A cache found for a key prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheHit {
    pub key: String,
    pub size: u64,
}

/// Storage for one task. Implementations know which project, workflow and
/// job the task belongs to.
pub trait TaskBackend: Send + Sync + 'static {
    /// The most recently saved cache whose key starts with `prefix`.
    fn cache_find(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Option<CacheHit>, BackendError>> + Send;

    fn cache_open(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<ByteStream, BackendError>> + Send;

    /// Stores `data` under `key` unless a cache with that key exists (caches
    /// are immutable; the first save wins). Returns whether this call stored it.
    fn cache_save(
        &self,
        key: &str,
        data: ByteStream,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// The workspace layers `job` persisted (one per node that persisted), in
    /// the order they were saved.
    fn workspace_layers(
        &self,
        job: &str,
    ) -> impl Future<Output = Result<Vec<ByteStream>, BackendError>> + Send;

    fn workspace_save(
        &self,
        data: ByteStream,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Stores the files of an (uncompressed) tar archive as artifacts, each
    /// under `prefix/<name in the archive>`. Returns the artifact paths.
    fn artifacts_save(
        &self,
        prefix: &str,
        tar: &Path,
    ) -> impl Future<Output = Result<Vec<String>, BackendError>> + Send;

    fn test_results_save(
        &self,
        cases: Vec<TestCase>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Test cases of earlier runs of this job, most recent first, for
    /// `circleci tests split --split-by=timings`.
    fn timings(&self) -> impl Future<Output = Result<Vec<TestCase>, BackendError>> + Send;
}
