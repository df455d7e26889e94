//! The in-job `circleci` binary, embedded at build time (see `build.rs`), and
//! installed into each task's `bin/` as `circleci` and `circleci-agent`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The static `circleci` executable.
pub static BINARY: &[u8] = include_bytes!(env!("ORRERY_TASK_BINARY_PATH"));

/// Writes the binary into `dir` as `circleci` and `circleci-agent`.
pub fn install(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for name in ["circleci", "circleci-agent"] {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(BINARY)?;
        file.sync_all()?;
        drop(file);
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(())
}
