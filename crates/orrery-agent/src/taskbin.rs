//! The in-job `circleci` binary, embedded at build time (see `build.rs`), and
//! installed into each task's `bin/` as `circleci` and `circleci-agent`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The static `circleci` executable.
pub static BINARY: &[u8] = include_bytes!(env!("ORRERY_TASK_BINARY_PATH"));

/// Puts the binary into `dir` as `circleci` and `circleci-agent`: hard links
/// to one copy kept in `cache` (written once per version), or copies when the
/// two are on different file systems.
pub fn install(dir: &Path, cache: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let master = cached_copy(cache)?;
    for name in ["circleci", "circleci-agent"] {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        if std::fs::hard_link(&master, &path).is_err() {
            std::fs::copy(&master, &path)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

/// The one copy of the binary in `cache`, named by its size and a hash of its
/// bytes so that a new build never reuses an old copy.
fn cached_copy(cache: &Path) -> std::io::Result<std::path::PathBuf> {
    use std::hash::{Hash, Hasher};
    static HASH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let hash = *HASH.get_or_init(|| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        BINARY.hash(&mut hasher);
        hasher.finish()
    });
    let path = cache.join(format!("circleci-{}-{hash:016x}", BINARY.len()));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(cache)?;
    // Unique per call: tasks of one process may install at the same time.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = cache.join(format!(".circleci.tmp-{}-{n}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(BINARY)?;
    file.sync_all()?;
    drop(file);
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_installs_share_one_copy() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let dir = root.path().join(format!("task-{i}"));
                let cache = cache.clone();
                std::thread::spawn(move || install(&dir, &cache))
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
        let copies: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
        assert_eq!(copies.len(), 1, "one cached copy, no temporary files left");
        let bin = root.path().join("task-3/circleci");
        assert_eq!(std::fs::read(&bin).unwrap().len(), BINARY.len());
        assert!(std::fs::metadata(&bin).unwrap().permissions().mode() & 0o111 != 0);
    }
}
