//! A [`TaskBackend`] on a local directory: what `orrery local execute` and
//! the embedded runner use.
//!
//! Layout under the data directory:
//!
//! ```text
//! caches/<project>/<key, percent-encoded>.tar.zst
//! workspaces/<workspace id>/<job>/<node>.tar.zst
//! artifacts/<run id>/<job>/<node>/<artifact path>
//! test-results/<project>/<job>/<run id>-<node>.json
//! ```
//!
//! Writes go to a temporary file first and appear under their final name in
//! one step; a cache key is claimed with a hard link, so the first save of a
//! key wins and a concurrent second save is discarded.

use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use orrery_testresults::TestCase;
use tokio::io::AsyncWriteExt;

use crate::backend::{BackendError, ByteStream, CacheHit, TaskBackend};

/// Which task a [`LocalBackend`] serves.
#[derive(Clone, Debug)]
pub struct LocalTask {
    pub project: String,
    /// Shared by the jobs of a workflow (and its reruns).
    pub workspace_id: String,
    pub run_id: String,
    pub job: String,
    pub node: u32,
}

#[derive(Clone, Debug)]
pub struct LocalBackend {
    root: PathBuf,
    task: LocalTask,
}

/// Percent-encodes what is not safe in a file name.
pub fn encode_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // "." and ".." are not names.
    if out.chars().all(|c| c == '.') {
        out = out.replace('.', "%2E");
    }
    out
}

pub fn decode_name(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

static TMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn tmp_name(dir: &Path) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!(".tmp-{}-{n}", std::process::id()))
}

/// Copies a stream into a new file in `dir`; returns its path and size. The
/// file is removed if the stream fails.
async fn write_tmp(dir: &Path, mut data: ByteStream) -> Result<(PathBuf, u64), BackendError> {
    tokio::fs::create_dir_all(dir).await?;
    let tmp = tmp_name(dir);
    let result = async {
        let mut file = tokio::fs::File::create(&tmp).await?;
        let n = tokio::io::copy(&mut data, &mut file).await?;
        file.flush().await?;
        file.sync_all().await?;
        Ok::<u64, std::io::Error>(n)
    }
    .await;
    match result {
        Ok(n) => Ok((tmp, n)),
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e.into())
        }
    }
}

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>, task: LocalTask) -> LocalBackend {
        LocalBackend {
            root: root.into(),
            task,
        }
    }

    fn cache_dir(&self) -> PathBuf {
        self.root
            .join("caches")
            .join(encode_name(&self.task.project))
    }

    fn workspace_dir(&self, job: &str) -> PathBuf {
        self.root
            .join("workspaces")
            .join(encode_name(&self.task.workspace_id))
            .join(encode_name(job))
    }

    fn results_dir(&self) -> PathBuf {
        self.root
            .join("test-results")
            .join(encode_name(&self.task.project))
            .join(encode_name(&self.task.job))
    }

    /// Where this task's artifacts are stored.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.root
            .join("artifacts")
            .join(encode_name(&self.task.run_id))
            .join(encode_name(&self.task.job))
            .join(self.task.node.to_string())
    }

    /// The test cases this task stored, if any.
    pub fn stored_test_results(&self) -> Option<Vec<TestCase>> {
        let path = self.results_dir().join(format!(
            "{}-{}.json",
            encode_name(&self.task.run_id),
            self.task.node
        ));
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }
}

impl TaskBackend for LocalBackend {
    async fn cache_find(&self, prefix: &str) -> Result<Option<CacheHit>, BackendError> {
        let dir = self.cache_dir();
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut best: Option<(SystemTime, CacheHit)> = None;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(encoded) = name.strip_suffix(".tar.zst") else {
                continue;
            };
            let Some(key) = decode_name(encoded) else {
                continue;
            };
            if !key.starts_with(prefix) {
                continue;
            }
            let meta = entry.metadata().await?;
            let created = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            // The most recent match wins, even over an exact one.
            if best.as_ref().is_none_or(|(t, _)| created > *t) {
                best = Some((
                    created,
                    CacheHit {
                        key,
                        size: meta.len(),
                    },
                ));
            }
        }
        Ok(best.map(|(_, hit)| hit))
    }

    async fn cache_open(&self, key: &str) -> Result<ByteStream, BackendError> {
        let path = self
            .cache_dir()
            .join(format!("{}.tar.zst", encode_name(key)));
        let file = tokio::fs::File::open(&path).await?;
        Ok(Box::pin(file))
    }

    async fn cache_save(&self, key: &str, data: ByteStream) -> Result<bool, BackendError> {
        let dir = self.cache_dir();
        let (tmp, _) = write_tmp(&dir, data).await?;
        let target = dir.join(format!("{}.tar.zst", encode_name(key)));
        let claimed = match tokio::fs::hard_link(&tmp, &target).await {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e.into());
            }
        };
        let _ = tokio::fs::remove_file(&tmp).await;
        Ok(claimed)
    }

    async fn workspace_layers(&self, job: &str) -> Result<Vec<ByteStream>, BackendError> {
        let dir = self.workspace_dir(job);
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut names = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tar.zst") {
                names.push(name);
            }
        }
        names.sort();
        let mut out: Vec<ByteStream> = Vec::new();
        for name in names {
            out.push(Box::pin(tokio::fs::File::open(dir.join(name)).await?));
        }
        Ok(out)
    }

    async fn workspace_save(&self, data: ByteStream) -> Result<(), BackendError> {
        let dir = self.workspace_dir(&self.task.job);
        let (tmp, _) = write_tmp(&dir, data).await?;
        let target = dir.join(format!("{:04}.tar.zst", self.task.node));
        tokio::fs::rename(&tmp, &target).await?;
        Ok(())
    }

    async fn artifacts_save(&self, prefix: &str, tar: &Path) -> Result<Vec<String>, BackendError> {
        let dest = self.artifacts_dir();
        let tar = tar.to_path_buf();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || unpack_artifacts(&tar, &prefix, &dest))
            .await
            .map_err(|e| BackendError::Refused(e.to_string()))?
    }

    async fn test_results_save(&self, cases: Vec<TestCase>) -> Result<(), BackendError> {
        let dir = self.results_dir();
        tokio::fs::create_dir_all(&dir).await?;
        let json = serde_json::to_vec(&cases).map_err(|e| BackendError::Refused(e.to_string()))?;
        let tmp = tmp_name(&dir);
        tokio::fs::write(&tmp, json).await?;
        let target = dir.join(format!(
            "{}-{}.json",
            encode_name(&self.task.run_id),
            self.task.node
        ));
        tokio::fs::rename(&tmp, &target).await?;
        Ok(())
    }

    async fn timings(&self) -> Result<Vec<TestCase>, BackendError> {
        let dir = self.results_dir();
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut runs: Vec<(SystemTime, Vec<TestCase>)> = Vec::new();
        // Only earlier runs count: every node of this run must split the same
        // way, whichever of them finished first.
        let this_run = format!("{}-", encode_name(&self.task.run_id));
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") || name.starts_with(&this_run) {
                continue;
            }
            let modified = entry
                .metadata()
                .await?
                .modified()
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let text = tokio::fs::read(entry.path()).await?;
            if let Ok(cases) = serde_json::from_slice::<Vec<TestCase>>(&text) {
                runs.push((modified, cases));
            }
        }
        runs.sort_by_key(|r| std::cmp::Reverse(r.0));
        let history: Vec<&[TestCase]> = runs.iter().map(|(_, c)| c.as_slice()).collect();
        Ok(orrery_testresults::merge_timings(&history))
    }
}

/// A relative path made only of normal components, or `None`.
fn safe_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// The artifact path of an entry of a collected artifacts tar: entries are
/// named `artifact` (a single file) or `artifact/<path>` (a directory's
/// files) and become `prefix` or `prefix/<path>`. `None` for other entries;
/// an error for a path that would leave the artifact directory.
pub fn artifact_path(prefix: &str, entry: &Path) -> Result<Option<PathBuf>, BackendError> {
    let rel = match entry.strip_prefix("artifact") {
        Ok(rest) => rest.to_path_buf(),
        Err(_) => return Ok(None),
    };
    let artifact = if rel.as_os_str().is_empty() {
        PathBuf::from(prefix)
    } else {
        Path::new(prefix).join(&rel)
    };
    match safe_relative(&artifact) {
        Some(a) => Ok(Some(a)),
        None => Err(BackendError::Refused(format!(
            "artifact path {} leaves the artifact directory",
            artifact.display()
        ))),
    }
}

/// Stores the regular files of a collected tar as artifacts. Entries are named
/// `artifact` (a single file) or `artifact/<path>` (a directory's files).
fn unpack_artifacts(tar: &Path, prefix: &str, dest: &Path) -> Result<Vec<String>, BackendError> {
    let file = std::fs::File::open(tar)?;
    let mut archive = tar::Archive::new(file);
    let mut stored = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path()?.into_owned();
        let Some(artifact) = artifact_path(prefix, &name)? else {
            continue;
        };
        let target = dest.join(&artifact);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::File::create(&target)?;
        std::io::copy(&mut entry, &mut out)?;
        stored.push(artifact.display().to_string());
    }
    stored.sort();
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(dir: &Path, job: &str, node: u32) -> LocalBackend {
        LocalBackend::new(
            dir,
            LocalTask {
                project: "gh/acme/app".into(),
                workspace_id: "ws1".into(),
                run_id: "run1".into(),
                job: job.into(),
                node,
            },
        )
    }

    fn stream(bytes: &'static [u8]) -> ByteStream {
        Box::pin(bytes)
    }

    async fn read_all(mut s: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut out)
            .await
            .unwrap();
        out
    }

    #[test]
    fn names_round_trip() {
        for s in ["v1-main-abc=", "a/b c", "..", "ключ", ""] {
            assert_eq!(decode_name(&encode_name(s)).as_deref(), Some(s));
            assert!(!encode_name(s).contains('/'));
        }
    }

    #[tokio::test]
    async fn caches_are_immutable_and_found_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend(dir.path(), "build", 0);
        assert_eq!(b.cache_find("deps-").await.unwrap(), None);
        assert!(b.cache_save("deps-main-1", stream(b"first")).await.unwrap());
        assert!(
            !b.cache_save("deps-main-1", stream(b"second"))
                .await
                .unwrap(),
            "first save wins"
        );
        assert_eq!(
            read_all(b.cache_open("deps-main-1").await.unwrap()).await,
            b"first"
        );
        // Make the second key visibly newer.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(b.cache_save("deps-main-2", stream(b"newer")).await.unwrap());
        let hit = b.cache_find("deps-main-").await.unwrap().unwrap();
        assert_eq!(hit.key, "deps-main-2");
        // The most recent match wins even over an exact match.
        assert_eq!(
            b.cache_find("deps-main-1").await.unwrap().unwrap().key,
            "deps-main-1"
        );
        assert_eq!(
            b.cache_find("deps-main").await.unwrap().unwrap().key,
            "deps-main-2"
        );
        assert_eq!(b.cache_find("other").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_failed_stream_leaves_no_cache() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend(dir.path(), "build", 0);
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tx.send(Ok(b"partial".to_vec())).await.unwrap();
        tx.send(Err(std::io::Error::other("archiver failed")))
            .await
            .unwrap();
        drop(tx);
        let reader: ByteStream = Box::pin(crate::runner::channel_reader(rx));
        assert!(b.cache_save("k", reader).await.is_err());
        assert_eq!(b.cache_find("k").await.unwrap(), None);
        let leftovers: Vec<_> = std::fs::read_dir(b.cache_dir()).unwrap().collect();
        assert!(leftovers.is_empty(), "no temporary files remain");
    }

    #[tokio::test]
    async fn workspaces_layer_per_job() {
        let dir = tempfile::tempdir().unwrap();
        backend(dir.path(), "build", 1)
            .workspace_save(stream(b"node1"))
            .await
            .unwrap();
        backend(dir.path(), "build", 0)
            .workspace_save(stream(b"node0"))
            .await
            .unwrap();
        let layers = backend(dir.path(), "test", 0)
            .workspace_layers("build")
            .await
            .unwrap();
        let mut contents = Vec::new();
        for l in layers {
            contents.push(read_all(l).await);
        }
        assert_eq!(contents, [b"node0".to_vec(), b"node1".to_vec()]);
        assert!(
            backend(dir.path(), "x", 0)
                .workspace_layers("none")
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn timings_come_from_earlier_runs_only() {
        let dir = tempfile::tempdir().unwrap();
        let case = |name: &str, t: f64| TestCase {
            classname: "c".into(),
            name: name.into(),
            file: Some(format!("{name}.py")),
            result: orrery_testresults::TestResult::Success,
            message: None,
            run_time: t,
            source: "x".into(),
        };
        let mut earlier = backend(dir.path(), "test", 0);
        earlier.task.run_id = "run0".into();
        earlier
            .test_results_save(vec![case("a", 1.0)])
            .await
            .unwrap();
        // A node of the current run finished first: the others must not see it.
        let current = backend(dir.path(), "test", 0);
        current
            .test_results_save(vec![case("b", 2.0)])
            .await
            .unwrap();
        let timings = backend(dir.path(), "test", 1).timings().await.unwrap();
        let names: Vec<&str> = timings.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a"]);
    }

    #[tokio::test]
    async fn artifacts_are_confined() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend(dir.path(), "build", 0);
        let tar_path = dir.path().join("a.tar");
        {
            let mut builder = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
            for (name, data) in [
                ("artifact/report.html", &b"<html>"[..]),
                ("artifact/sub/x.txt", &b"x"[..]),
            ] {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                builder.append_data(&mut h, name, data).unwrap();
            }
            builder.finish().unwrap();
        }
        let stored = b.artifacts_save("out", &tar_path).await.unwrap();
        assert_eq!(stored, ["out/report.html", "out/sub/x.txt"]);
        assert_eq!(
            std::fs::read(b.artifacts_dir().join("out/sub/x.txt")).unwrap(),
            b"x"
        );
        let err = b
            .artifacts_save("../../escape", &tar_path)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("leaves the artifact directory"),
            "{err}"
        );
    }
}
