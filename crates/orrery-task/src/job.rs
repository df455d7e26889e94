//! Commands about the job itself: `step halt` and `agent keepalive`.
//!
//! `step halt` (also `task halt`) creates the empty file `halt` in the task's
//! data directory, `$CIRCLE_INTERNAL_TASK_DATA`; the runner looks for it when
//! the step ends and then stops the job, successfully. `agent keepalive` sleeps
//! until a signal ends it: it is the main process of a job's primary container,
//! whose init process forwards signals to it.

use std::path::PathBuf;
use std::time::Duration;

use crate::args::{self, Spec};
use crate::{Env, Failure, Io, Outcome};

const HALT_USAGE: &str = "\
Usage: circleci step halt

End the job successfully once the current step finishes. Only works inside a job.
";

const KEEPALIVE_USAGE: &str = "\
Usage: circleci agent keepalive

Sleep until killed.
";

const NO_FLAGS: Spec = Spec {
    values: &[],
    switches: &[],
};

/// The file that `step halt` creates.
pub fn halt_file(env: &Env) -> Option<PathBuf> {
    env.var("CIRCLE_INTERNAL_TASK_DATA")
        .map(|dir| PathBuf::from(dir).join("halt"))
}

/// Runs `step halt` with the arguments after `halt`.
pub fn halt_command(argv: &[String], io: &mut Io<'_>, env: &Env) -> Outcome {
    let parsed = args::parse(argv, &NO_FLAGS)?;
    if parsed.help {
        io.stdout
            .write_all(HALT_USAGE.as_bytes())
            .map_err(Failure::write)?;
        return Ok(0);
    }
    if let Some(extra) = parsed.positionals.first() {
        return Err(Failure::Usage(format!(
            "step halt takes no arguments, got \"{extra}\""
        )));
    }
    let Some(path) = halt_file(env) else {
        return Err(Failure::Error(
            "step halt only works inside a job: CIRCLE_INTERNAL_TASK_DATA is not set".to_string(),
        ));
    };
    std::fs::File::create(&path)
        .map_err(|e| Failure::Error(format!("cannot create {}: {e}", path.display())))?;
    Ok(0)
}

/// Runs `agent keepalive` with the arguments after `keepalive`: returns only
/// for help or a usage error.
pub fn keepalive_command(argv: &[String], io: &mut Io<'_>) -> Outcome {
    let parsed = args::parse(argv, &NO_FLAGS)?;
    if parsed.help {
        io.stdout
            .write_all(KEEPALIVE_USAGE.as_bytes())
            .map_err(Failure::write)?;
        return Ok(0);
    }
    if let Some(extra) = parsed.positionals.first() {
        return Err(Failure::Usage(format!(
            "agent keepalive takes no arguments, got \"{extra}\""
        )));
    }
    io.stdout.flush().map_err(Failure::write)?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TempDir, env_with, run_cmd};
    use std::path::Path;

    #[test]
    fn halt_creates_an_empty_file_in_the_task_data_directory() {
        let dir = TempDir::new("halt");
        let env = env_with(
            &[("CIRCLE_INTERNAL_TASK_DATA", &dir.path().to_string_lossy())],
            Path::new(""),
        );
        let halt = dir.path().join("halt");
        assert!(!halt.exists());
        let r = run_cmd(&["step", "halt"], "", &env);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(std::fs::read(&halt).unwrap(), b"");

        std::fs::remove_file(&halt).unwrap();
        let r = run_cmd(&["task", "halt"], "", &env);
        assert_eq!(r.code, 0);
        assert!(halt.is_file());
    }

    #[test]
    fn halt_outside_a_job_fails() {
        let r = run_cmd(&["step", "halt"], "", &Env::default());
        assert_eq!(r.code, 1);
        assert!(r.stderr.contains("only works inside a job"), "{}", r.stderr);
        let r = run_cmd(&["step", "halt", "now"], "", &Env::default());
        assert_eq!(r.code, 2);
    }

    #[test]
    fn keepalive_rejects_arguments_and_has_help() {
        let r = run_cmd(&["agent", "keepalive", "forever"], "", &Env::default());
        assert_eq!(r.code, 2);
        let r = run_cmd(&["agent", "keepalive", "--help"], "", &Env::default());
        assert_eq!((r.code, r.stdout.as_str()), (0, KEEPALIVE_USAGE));
    }
}
