//! Task storage on the server: caches, workspaces, artifacts and test
//! results of one task, in object storage ([`orrery_blob::Blobs`]) with their
//! index in the store.
//!
//! [`TaskStorage`] implements the agent's [`TaskBackend`], so the embedded
//! runner uses it directly; the runner API's storage endpoints
//! (`api::storage`) call the same methods for remote runners, so a job on one
//! runner host restores what a job on another saved.
//!
//! Objects are named by what they are plus a fresh id
//! (`caches/<project>/<uuid>`, `workspaces/<workspace>/<job>/<uuid>`,
//! `artifacts/<job>/<node>/<uuid>`): a key or path chosen by a job never
//! becomes an object name, and a failed save leaves no row pointing at a
//! partial object.

use std::path::Path;
use std::sync::Arc;

use orrery_agent::{BackendError, ByteStream, CacheHit, TaskBackend};
use orrery_blob::{BlobError, Blobs, PutOptions};
use orrery_store::{Artifact, Store, TestRow, new_id, now_ms};
use orrery_testresults::{TestCase, TestResult};
use tokio::io::AsyncRead;

use crate::error::ApiError;

/// The largest cache or workspace layer accepted.
pub const MAX_ARCHIVE: u64 = 20 * 1024 * 1024 * 1024;

/// Which task storage serves, and what its lookups need.
#[derive(Clone, Debug)]
pub struct TaskScope {
    pub task_id: String,
    pub project_id: String,
    pub workspace_id: String,
    pub job_id: String,
    pub job_name: String,
    pub workflow_name: String,
    pub node: u32,
    pub branch: String,
    pub default_branch: String,
    pub revision: String,
}

impl TaskScope {
    pub async fn of_task(store: &Store, task_id: &str) -> Result<TaskScope, ApiError> {
        let missing = |what: &str| ApiError::NotFound(format!("{what} not found"));
        let task = store.task(task_id).await?.ok_or_else(|| missing("Task"))?;
        let job = store
            .job(&task.job_id)
            .await?
            .ok_or_else(|| missing("Job"))?;
        let workflow = store
            .workflow_head(&job.workflow_id)
            .await?
            .ok_or_else(|| missing("Workflow"))?;
        let pipeline = store
            .pipeline(&job.pipeline_id)
            .await?
            .ok_or_else(|| missing("Pipeline"))?;
        let project = store
            .project(&job.project_id)
            .await?
            .ok_or_else(|| missing("Project"))?;
        Ok(TaskScope {
            task_id: task.id,
            project_id: project.id,
            workspace_id: workflow.workspace_id,
            job_id: job.id,
            job_name: job.name,
            workflow_name: workflow.name,
            node: task.node_index as u32,
            branch: pipeline
                .branch
                .clone()
                .or(pipeline.tag.clone())
                .unwrap_or_default(),
            default_branch: project.default_branch,
            revision: pipeline.revision,
        })
    }
}

/// One task's storage. Its [`TaskScope`] is read from the store on first
/// use.
#[derive(Clone)]
pub struct TaskStorage {
    pub blobs: Arc<Blobs>,
    pub store: Store,
    task_id: String,
    scope: Arc<tokio::sync::OnceCell<TaskScope>>,
}

/// The data's fault (it did not arrive whole, or not as announced), or the
/// storage's.
fn backend_err(e: BlobError) -> BackendError {
    match e {
        BlobError::Input(io) => BackendError::Io(io),
        e @ (BlobError::Checksum { .. } | BlobError::TooLarge { .. }) => {
            BackendError::Refused(e.to_string())
        }
        other => BackendError::Unavailable(other.to_string()),
    }
}

fn store_err(e: orrery_store::StoreError) -> BackendError {
    BackendError::Unavailable(format!("the server's database: {e}"))
}

impl TaskStorage {
    pub fn new(blobs: Arc<Blobs>, store: Store, task_id: &str) -> TaskStorage {
        TaskStorage {
            blobs,
            store,
            task_id: task_id.to_string(),
            scope: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// Storage for a scope already read.
    pub fn with_scope(blobs: Arc<Blobs>, store: Store, scope: TaskScope) -> TaskStorage {
        TaskStorage {
            blobs,
            store,
            task_id: scope.task_id.clone(),
            scope: Arc::new(tokio::sync::OnceCell::new_with(Some(scope))),
        }
    }

    pub async fn scope(&self) -> Result<&TaskScope, BackendError> {
        self.scope
            .get_or_try_init(|| TaskScope::of_task(&self.store, &self.task_id))
            .await
            .map_err(|e| BackendError::Refused(e.to_string()))
    }

    /// Saves a cache unless its key is taken; checks `options` (the digest
    /// and size a remote runner announced). `Ok(false)`: the key exists.
    pub async fn save_cache(
        &self,
        key: &str,
        data: impl AsyncRead + Unpin + Send,
        options: &PutOptions,
    ) -> Result<bool, BackendError> {
        let s = self.scope().await?;
        let object = format!("caches/{}/{}", s.project_id, new_id());
        if !self
            .store
            .claim_cache(&s.project_id, key, &object)
            .await
            .map_err(store_err)?
        {
            return Ok(false);
        }
        let options = PutOptions {
            max_size: Some(options.max_size.unwrap_or(MAX_ARCHIVE)),
            ..options.clone()
        };
        match self.blobs.put(&object, data, &options).await {
            Ok(stored) => {
                self.store
                    .finish_cache(
                        &s.project_id,
                        key,
                        &object,
                        stored.size as i64,
                        &stored.sha256,
                    )
                    .await
                    .map_err(store_err)?;
                Ok(true)
            }
            Err(e) => {
                let _ = self.store.abandon_cache(&s.project_id, key, &object).await;
                let _ = self.blobs.delete(&object).await;
                Err(backend_err(e))
            }
        }
    }

    /// The object of a ready cache, or `None`.
    pub async fn cache_object(&self, key: &str) -> Result<Option<(String, u64)>, BackendError> {
        let s = self.scope().await?;
        let entry = self
            .store
            .cache(&s.project_id, key)
            .await
            .map_err(store_err)?
            .filter(|c| c.state == "ready");
        Ok(match entry {
            Some(c) => {
                let _ = self.store.touch_cache(&s.project_id, key).await;
                Some((c.object, c.size as u64))
            }
            None => None,
        })
    }

    /// Adds a workspace layer from `data`, checked against `options`.
    pub async fn save_workspace(
        &self,
        data: impl AsyncRead + Unpin + Send,
        options: &PutOptions,
    ) -> Result<(), BackendError> {
        let s = self.scope().await?;
        let object = format!(
            "workspaces/{}/{}/{}",
            s.workspace_id,
            hex_name(&s.job_name),
            new_id()
        );
        let options = PutOptions {
            max_size: Some(options.max_size.unwrap_or(MAX_ARCHIVE)),
            ..options.clone()
        };
        let stored = self
            .blobs
            .put(&object, data, &options)
            .await
            .map_err(backend_err)?;
        if let Err(e) = self
            .store
            .add_workspace_layer(
                &s.workspace_id,
                &s.job_name,
                &s.project_id,
                &object,
                stored.size as i64,
            )
            .await
        {
            let _ = self.blobs.delete(&object).await;
            return Err(store_err(e));
        }
        Ok(())
    }

    /// The objects of a job's workspace layers, in order.
    pub async fn workspace_objects(&self, job: &str) -> Result<Vec<(String, u64)>, BackendError> {
        Ok(self
            .store
            .workspace_layers(&self.scope().await?.workspace_id, job)
            .await
            .map_err(store_err)?
            .into_iter()
            .map(|l| (l.object, l.size as u64))
            .collect())
    }

    /// Stores the files of a collected artifacts tar (a file on this host):
    /// all of them or none. The objects are written first and the rows that
    /// make them visible added only once the whole archive was read, so an
    /// archive that breaks (ends inside a file, names a path outside the
    /// artifacts) leaves no artifact and no object.
    pub async fn save_artifacts(
        &self,
        prefix: &str,
        tar: &Path,
    ) -> Result<Vec<String>, BackendError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<ArtifactEntry>(1);
        let tar = tar.to_path_buf();
        let prefix = prefix.to_string();
        let reader = tokio::task::spawn_blocking(move || read_artifacts(&tar, &prefix, tx));
        let s = self.scope().await?;
        let mut written: Vec<Artifact> = Vec::new();
        let put_all: Result<(), BackendError> = async {
            while let Some(entry) = rx.recv().await {
                let object = format!("artifacts/{}/{}/{}", s.job_id, s.node, new_id());
                let body = tokio_util::io::StreamReader::new(futures_util::stream::poll_fn({
                    let mut chunks = entry.chunks;
                    move |cx| chunks.poll_recv(cx)
                }));
                let put = self
                    .blobs
                    .put(&object, body, &PutOptions::default())
                    .await
                    .map_err(backend_err)?;
                written.push(Artifact {
                    job_id: s.job_id.clone(),
                    node_index: i64::from(s.node),
                    path: entry.path,
                    project_id: s.project_id.clone(),
                    object,
                    size: put.size as i64,
                    created_at: now_ms(),
                });
            }
            Ok(())
        }
        .await;
        // A failed write stops the reader; a failed read (the cause) wins.
        drop(rx);
        let read = reader
            .await
            .map_err(|e| BackendError::Unavailable(e.to_string()))
            .and_then(|r| r);
        if let Err(e) = read.and(put_all) {
            for a in &written {
                let _ = self.blobs.delete(&a.object).await;
            }
            return Err(e);
        }
        let mut stored = Vec::new();
        for (i, a) in written.iter().enumerate() {
            // A path stored again (a retried node) replaces the earlier
            // object, which then goes.
            let added = async {
                let earlier = self
                    .store
                    .artifact(&a.job_id, a.node_index, &a.path)
                    .await?;
                self.store.add_artifact(a).await?;
                Ok::<_, orrery_store::StoreError>(earlier)
            }
            .await;
            match added {
                Ok(earlier) => {
                    if let Some(old) = earlier.filter(|e| e.object != a.object) {
                        let _ = self.blobs.delete(&old.object).await;
                    }
                }
                Err(e) => {
                    for rest in &written[i..] {
                        let _ = self.blobs.delete(&rest.object).await;
                    }
                    return Err(store_err(e));
                }
            }
            stored.push(a.path.clone());
        }
        stored.sort();
        Ok(stored)
    }
}

/// A job name as one safe path segment.
fn hex_name(s: &str) -> String {
    hex::encode(s.as_bytes())
}

struct ArtifactEntry {
    path: String,
    chunks: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
}

/// Reads a tar on a blocking thread, handing each artifact's bytes over.
fn read_artifacts(
    tar: &Path,
    prefix: &str,
    tx: tokio::sync::mpsc::Sender<ArtifactEntry>,
) -> Result<(), BackendError> {
    use std::io::Read;
    let file = std::fs::File::open(tar)?;
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path()?.into_owned();
        let Some(path) = orrery_agent::local::artifact_path(prefix, &name)? else {
            continue;
        };
        let (chunk_tx, chunk_rx) = tokio::sync::mpsc::channel(4);
        if tx
            .blocking_send(ArtifactEntry {
                path: path.display().to_string(),
                chunks: chunk_rx,
            })
            .is_err()
        {
            return Ok(());
        }
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n as u64;
            if chunk_tx
                .blocking_send(Ok(bytes::Bytes::copy_from_slice(&buf[..n])))
                .is_err()
            {
                return Ok(());
            }
        }
        if got < entry.size() {
            return Err(BackendError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the archive ends inside {}", path.display()),
            )));
        }
    }
    Ok(())
}

fn test_result(s: &str) -> TestResult {
    serde_json::from_value(serde_json::Value::String(s.to_string())).unwrap_or(TestResult::Error)
}

/// A stored row as the test case it was.
pub fn case_of(row: &TestRow) -> TestCase {
    TestCase {
        classname: row.classname.clone(),
        name: row.name.clone(),
        file: row.file.clone(),
        result: test_result(&row.result),
        message: row.message.clone(),
        run_time: row.run_time,
        source: row.source.clone(),
    }
}

impl TaskBackend for TaskStorage {
    async fn cache_find(&self, prefix: &str) -> Result<Option<CacheHit>, BackendError> {
        Ok(self
            .store
            .find_cache(&self.scope().await?.project_id, prefix)
            .await
            .map_err(store_err)?
            .map(|c| CacheHit {
                key: c.key,
                size: c.size as u64,
            }))
    }

    async fn cache_open(&self, key: &str) -> Result<ByteStream, BackendError> {
        let (object, _) = self
            .cache_object(key)
            .await?
            .ok_or_else(|| BackendError::Refused(format!("no cache for key {key}")))?;
        let (reader, _) = self.blobs.get(&object).await.map_err(backend_err)?;
        Ok(reader)
    }

    async fn cache_save(&self, key: &str, data: ByteStream) -> Result<bool, BackendError> {
        self.save_cache(key, data, &PutOptions::default()).await
    }

    async fn workspace_layers(&self, job: &str) -> Result<Vec<ByteStream>, BackendError> {
        let mut out: Vec<ByteStream> = Vec::new();
        for (object, _) in self.workspace_objects(job).await? {
            let (reader, _) = self.blobs.get(&object).await.map_err(backend_err)?;
            out.push(reader);
        }
        Ok(out)
    }

    async fn workspace_save(&self, data: ByteStream) -> Result<(), BackendError> {
        self.save_workspace(data, &PutOptions::default()).await
    }

    async fn artifacts_save(&self, prefix: &str, tar: &Path) -> Result<Vec<String>, BackendError> {
        self.save_artifacts(prefix, tar).await
    }

    async fn test_results_save(&self, cases: Vec<TestCase>) -> Result<(), BackendError> {
        let s = self.scope().await?;
        let now = now_ms();
        let rows: Vec<TestRow> = cases
            .into_iter()
            .map(|c| TestRow {
                project_id: s.project_id.clone(),
                job_id: s.job_id.clone(),
                job_name: s.job_name.clone(),
                workflow_name: s.workflow_name.clone(),
                node_index: i64::from(s.node),
                branch: s.branch.clone(),
                revision: s.revision.clone(),
                classname: c.classname,
                name: c.name,
                file: c.file,
                result: c.result.as_str().to_string(),
                run_time: c.run_time,
                message: c.message,
                source: c.source,
                created_at: now,
            })
            .collect();
        self.store
            .set_test_results(&s.job_id, i64::from(s.node), &rows)
            .await
            .map_err(store_err)
    }

    /// Timings of earlier runs of this job: this branch's history first,
    /// then the default branch's, most recent first; this run's own results
    /// never count (every node of a run must split the same way).
    async fn timings(&self) -> Result<Vec<TestCase>, BackendError> {
        let s = self.scope().await?;
        let since = now_ms() - 90 * 24 * 3600 * 1000;
        let mut runs: Vec<Vec<TestCase>> = Vec::new();
        let mut branches = vec![s.branch.as_str()];
        if s.default_branch != s.branch {
            branches.push(s.default_branch.as_str());
        }
        for branch in branches {
            let rows = self
                .store
                .test_history(
                    &s.project_id,
                    Some(&s.job_name),
                    Some(branch),
                    since,
                    50_000,
                )
                .await
                .map_err(store_err)?;
            let mut current: Option<(String, Vec<TestCase>)> = None;
            for row in rows.iter().filter(|r| r.job_id != s.job_id) {
                match &mut current {
                    Some((job, cases)) if *job == row.job_id => cases.push(case_of(row)),
                    _ => {
                        if let Some((_, cases)) = current.take() {
                            runs.push(cases);
                        }
                        current = Some((row.job_id.clone(), vec![case_of(row)]));
                    }
                }
            }
            if let Some((_, cases)) = current {
                runs.push(cases);
            }
        }
        let history: Vec<&[TestCase]> = runs.iter().map(Vec::as_slice).collect();
        Ok(orrery_testresults::merge_timings(&history))
    }
}
