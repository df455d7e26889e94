//! The `circleci` command that runs inside a CI job.
//!
//! Orrery copies this program into every job container as `circleci` and
//! `circleci-agent`, so it has only a few pure-Rust dependencies and builds as
//! a static executable. It implements the in-job commands of CircleCI's agent:
//!
//! - `tests glob PATTERN...`: files matching glob patterns ([`glob`]);
//! - `tests split [FILE]`: this node's share of a list of tests ([`split`]);
//! - `tests run --command=CMD`: runs a command on this node's share ([`testrun`]);
//! - `step halt` / `task halt`: ends the job successfully after this step ([`job`]);
//! - `env subst [TEXT]`: `envsubst` for `$NAME` and `${NAME}` ([`subst`]);
//! - `agent keepalive`: sleeps forever, the main process of a job's container;
//! - `agent exec|tar|untar|checksum|mkdir|home|exists`: what the runner does
//!   inside the job's environment ([`agent`]);
//! - `version`, `help`.
//!
//! All of it is reachable through [`run`], which takes the arguments, the
//! standard streams and an [`Env`] (variables and working directory) so that the
//! tests drive it without touching the process's own state.
//!
//! ```
//! use orrery_task::{Env, run};
//!
//! let mut env = Env::default();
//! env.vars.insert("NAME".into(), "world".into());
//! let args: Vec<String> = ["circleci", "env", "subst", "hello $NAME"].map(String::from).into();
//! let (mut out, mut err) = (Vec::new(), Vec::new());
//! let code = run(&args, &mut std::io::empty(), &mut out, &mut err, &env);
//! assert_eq!(code, 0);
//! assert_eq!(String::from_utf8(out).unwrap(), "hello world\n");
//! ```
//!
//! Exit codes: 0 success, 1 failure (an I/O error, `step halt` outside a job), 2
//! usage errors (unknown commands or flags, bad values, unreadable input files).
//! `tests run` exits with its command's code.

#![forbid(unsafe_code)]

pub mod agent;
pub mod args;
pub mod glob;
pub mod job;
pub mod serve;
pub mod split;
pub mod subst;
pub mod testrun;
pub mod timings;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The environment a command runs in: variables and the working directory.
///
/// The binary fills it from the process ([`Env::from_process`]); tests build
/// one by hand.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// Environment variables. Names or values that are not UTF-8 are converted
    /// lossily.
    pub vars: BTreeMap<String, String>,
    /// The working directory that relative paths are resolved against. Empty
    /// means the process's own working directory.
    pub cwd: PathBuf,
}

impl Env {
    /// The environment of the running process.
    pub fn from_process() -> Env {
        let vars = std::env::vars_os()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect();
        let cwd = std::env::current_dir().unwrap_or_default();
        Env { vars, cwd }
    }

    /// A variable's value; an empty value counts as unset.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A path resolved against the working directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() || self.cwd.as_os_str().is_empty() {
            path.to_path_buf()
        } else {
            self.cwd.join(path)
        }
    }
}

/// Why a command did not succeed.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// A usage error: unknown command or flag, a bad value. Exit code 2.
    Usage(String),
    /// A failure while doing the work. Exit code 1.
    Error(String),
    /// Exit with this code without a message (the message, if any, is already
    /// written; or stdout was closed by its reader).
    Exit(i32),
}

impl Failure {
    /// The failure for an error writing to stdout or stderr: a closed pipe ends
    /// the command quietly, anything else is reported.
    pub fn write(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::Exit(1)
        } else {
            Failure::Error(format!("cannot write output: {e}"))
        }
    }
}

/// The outcome of one command: its exit code, or why it failed.
pub type Outcome = Result<i32, Failure>;

/// The standard streams of a command.
pub struct Io<'a> {
    /// Standard input.
    pub stdin: &'a mut dyn Read,
    /// Standard output.
    pub stdout: &'a mut dyn Write,
    /// Standard error.
    pub stderr: &'a mut dyn Write,
}

/// Runs the command line `args` (`args[0]` is the program name) and returns the
/// exit code. Errors are written to `stderr`.
///
/// The program name's basename picks the name used in messages: invoked as
/// `circleci-agent` the program behaves exactly like `circleci` and calls itself
/// `circleci-agent`.
pub fn run(
    args: &[String],
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
    env: &Env,
) -> i32 {
    let prog = program_name(args.first().map(String::as_str));
    let rest = args.get(1..).unwrap_or(&[]);
    let mut io = Io {
        stdin,
        stdout,
        stderr,
    };
    let outcome = dispatch(prog, rest, &mut io, env);
    // Output is written in full before the exit code is decided; a failed flush
    // (for example a closed pipe) is the command's failure too.
    let outcome = outcome.and_then(|code| io.stdout.flush().map(|()| code).map_err(Failure::write));
    match outcome {
        Ok(code) => code,
        Err(Failure::Usage(msg)) => {
            let _ = writeln!(io.stderr, "{prog}: {msg}\nRun '{prog} help' for usage.");
            2
        }
        Err(Failure::Error(msg)) => {
            let _ = writeln!(io.stderr, "{prog}: {msg}");
            1
        }
        Err(Failure::Exit(code)) => code,
    }
}

/// The name the program calls itself: `circleci-agent` when invoked under that
/// name, `circleci` otherwise (including when run under any other file name).
pub fn program_name(argv0: Option<&str>) -> &'static str {
    let base = argv0
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .unwrap_or("");
    if base == "circleci-agent" {
        "circleci-agent"
    } else {
        "circleci"
    }
}

/// The version line of `circleci version`.
pub fn version_line() -> String {
    format!("circleci (orrery) {}", env!("CARGO_PKG_VERSION"))
}

/// The top-level help text.
pub fn usage(prog: &str) -> String {
    format!(
        "\
Usage: {prog} <command> [arguments]

The CircleCI commands available inside a job (Orrery's implementation).

Commands:
  tests glob PATTERN...      print the files matching the patterns (*, **, ?, [a-z], {{a,b}})
  tests split [FILE]         print this node's share of the tests named in FILE or stdin
  tests run --command=CMD    run CMD with this node's share of the tests (from stdin) on its stdin
  step halt                  end the job successfully once this step finishes (also: task halt)
  env subst [TEXT]           replace $NAME and ${{NAME}} in TEXT or stdin with environment values
  agent keepalive            sleep until killed (a container's main process)
  version                    print the version (also: --version)
  help                       print this help (also: --help, -h)

Run '{prog} <command> <subcommand> --help' for a command's flags.
"
    )
}

fn dispatch(prog: &str, args: &[String], io: &mut Io<'_>, env: &Env) -> Outcome {
    let Some(command) = args.first() else {
        io.stderr
            .write_all(usage(prog).as_bytes())
            .map_err(Failure::write)?;
        return Ok(2);
    };
    let sub = args.get(1).map(String::as_str);
    let rest = args.get(2..).unwrap_or(&[]);
    match (command.as_str(), sub) {
        ("help" | "--help" | "-h", _) => {
            io.stdout
                .write_all(usage(prog).as_bytes())
                .map_err(Failure::write)?;
            Ok(0)
        }
        ("version" | "--version", _) => {
            writeln!(io.stdout, "{}", version_line()).map_err(Failure::write)?;
            Ok(0)
        }
        ("tests", Some("glob")) => glob::command(rest, io, env),
        ("tests", Some("split")) => split::command(rest, io, env),
        ("tests", Some("run")) => testrun::command(rest, io, env),
        ("step" | "task", Some("halt")) => job::halt_command(rest, io, env),
        ("env", Some("subst")) => subst::command(rest, io, env),
        ("agent", Some("keepalive")) => job::keepalive_command(rest, io),
        ("agent", Some(sub)) => agent::command(sub, rest, io, env),
        ("tests", _) => Err(missing_or_unknown(command, sub, "glob, split or run")),
        ("step" | "task", _) => Err(missing_or_unknown(command, sub, "halt")),
        ("env", _) => Err(missing_or_unknown(command, sub, "subst")),
        ("agent", _) => Err(missing_or_unknown(
            command,
            sub,
            "keepalive, exec, tar, untar, checksum, mkdir, home or exists",
        )),
        (other, _) => Err(Failure::Usage(format!("unknown command \"{other}\""))),
    }
}

fn missing_or_unknown(command: &str, sub: Option<&str>, expected: &str) -> Failure {
    match sub {
        None => Failure::Usage(format!("\"{command}\" needs a subcommand: {expected}")),
        Some(sub) => Failure::Usage(format!(
            "unknown command \"{command} {sub}\" (expected {expected})"
        )),
    }
}

/// Reads all of a named file (`-` is stdin) or, without a name, stdin. An
/// unreadable file is a usage error.
pub(crate) fn read_input(
    file: Option<&str>,
    io: &mut Io<'_>,
    env: &Env,
) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    match file {
        None | Some("-") => {
            io.stdin
                .read_to_end(&mut buf)
                .map_err(|e| Failure::Error(format!("cannot read stdin: {e}")))?;
        }
        Some(name) => {
            buf = std::fs::read(env.resolve(name))
                .map_err(|e| Failure::Usage(format!("cannot read {name}: {e}")))?;
        }
    }
    Ok(buf)
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers shared by the unit tests: a temporary directory that removes
    //! itself, and a way to run a command line and capture its output.

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::Env;

    /// A fresh directory under the system's temporary directory, removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        /// Creates a directory whose name includes `tag`, the process id and a
        /// counter, so parallel tests never share one.
        pub fn new(tag: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("orrery-task-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create temp dir");
            TempDir(path)
        }

        /// The directory's path.
        pub fn path(&self) -> &Path {
            &self.0
        }

        /// Writes `text` to `rel` inside the directory, creating parents.
        pub fn write(&self, rel: &str, text: &str) {
            let path = self.0.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The result of running a command line.
    pub struct Ran {
        pub code: i32,
        pub stdout: String,
        pub stderr: String,
    }

    /// Runs `circleci ARGS` with `stdin` and `env`.
    pub fn run_cmd(args: &[&str], stdin: &str, env: &Env) -> Ran {
        let argv: Vec<String> = std::iter::once("circleci")
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        run_argv(&argv, stdin, env)
    }

    /// Runs a full argv (program name included).
    pub fn run_argv(argv: &[String], stdin: &str, env: &Env) -> Ran {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = super::run(argv, &mut stdin.as_bytes(), &mut out, &mut err, env);
        Ran {
            code,
            stdout: String::from_utf8(out).expect("utf-8 stdout"),
            stderr: String::from_utf8(err).expect("utf-8 stderr"),
        }
    }

    /// An environment with the given variables and working directory.
    pub fn env_with(vars: &[(&str, &str)], cwd: &Path) -> Env {
        Env {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cwd: cwd.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{env_with, run_argv, run_cmd};
    use super::*;

    #[test]
    fn version_and_help() {
        let env = Env::default();
        let v = run_cmd(&["version"], "", &env);
        assert_eq!(v.code, 0);
        assert_eq!(
            v.stdout,
            format!("circleci (orrery) {}\n", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(run_cmd(&["--version"], "", &env).stdout, v.stdout);

        let h = run_cmd(&["help"], "", &env);
        assert_eq!(h.code, 0);
        for cmd in [
            "tests glob",
            "tests split",
            "tests run",
            "step halt",
            "env subst",
            "agent keepalive",
        ] {
            assert!(h.stdout.contains(cmd), "help lacks {cmd}: {}", h.stdout);
        }
    }

    #[test]
    fn no_arguments_is_a_usage_error_with_the_usage_text() {
        let r = run_cmd(&[], "", &Env::default());
        assert_eq!(r.code, 2);
        assert!(r.stdout.is_empty());
        assert!(
            r.stderr.starts_with("Usage: circleci <command>"),
            "{}",
            r.stderr
        );
    }

    #[test]
    fn unknown_and_incomplete_commands_are_usage_errors() {
        let env = Env::default();
        let r = run_cmd(&["frobnicate"], "", &env);
        assert_eq!(r.code, 2);
        assert!(
            r.stderr.contains("unknown command \"frobnicate\""),
            "{}",
            r.stderr
        );

        let r = run_cmd(&["tests", "shuffle"], "", &env);
        assert_eq!(r.code, 2);
        assert!(
            r.stderr.contains("unknown command \"tests shuffle\""),
            "{}",
            r.stderr
        );

        let r = run_cmd(&["tests"], "", &env);
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains("needs a subcommand"), "{}", r.stderr);
    }

    #[test]
    fn invoked_as_circleci_agent_it_behaves_like_circleci() {
        let env = env_with(&[("WHO", "agent")], Path::new(""));
        let argv: Vec<String> = ["/usr/local/bin/circleci-agent", "env", "subst", "hi $WHO"]
            .map(String::from)
            .into();
        let r = run_argv(&argv, "", &env);
        assert_eq!(r.code, 0);
        assert_eq!(r.stdout, "hi agent\n");

        let argv: Vec<String> = ["circleci-agent", "version"].map(String::from).into();
        let r = run_argv(&argv, "", &env);
        assert_eq!(r.stdout, format!("{}\n", version_line()));

        // Errors name the program as it was invoked.
        let argv: Vec<String> = ["circleci-agent", "nope"].map(String::from).into();
        let r = run_argv(&argv, "", &env);
        assert_eq!(r.code, 2);
        assert!(
            r.stderr.starts_with("circleci-agent: unknown command"),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr.contains("Run 'circleci-agent help'"),
            "{}",
            r.stderr
        );
    }

    #[test]
    fn program_name_uses_the_basename() {
        assert_eq!(program_name(Some("/bin/circleci-agent")), "circleci-agent");
        assert_eq!(program_name(Some("circleci")), "circleci");
        assert_eq!(program_name(Some("/tmp/whatever")), "circleci");
        assert_eq!(program_name(None), "circleci");
    }
}
