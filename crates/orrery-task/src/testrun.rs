//! `circleci tests run`: runs a command on this node's share of the tests.
//!
//! The list of tests is read from stdin and split exactly as `tests split`
//! splits it; the command runs under `/bin/sh -c` (or `sh` from `PATH` when
//! `/bin/sh` does not exist) with this node's names on its stdin, one per line,
//! and its stdout and stderr are the job's. The exit code is the command's
//! (128 plus the signal number when a signal ended it).
//!
//! Choosing the names ([`plan`]) and running the command ([`execute`]) are
//! separate so that the choice is testable without spawning anything.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::args::{self, Spec};
use crate::split::{self, SplitOptions};
use crate::{Env, Failure, Io, Outcome};

const USAGE: &str = "\
Usage: circleci tests run --command=CMD [flags]

Read whitespace-separated test names from stdin, split them as `tests split`
does, and run CMD with `sh -c`, giving it this node's names on stdin, one per
line. Exits with CMD's exit code.

  --command CMD          the command to run (required)
  --verbose              print this node's names to stderr first
";

/// `--command` and the split flags ([`split::VALUE_FLAGS`]).
const VALUE_FLAGS: &[&str] = &[
    "command",
    "index",
    "total",
    "split-by",
    "timings-type",
    "time-default",
    "timings-file",
];

/// `--verbose` and the split switches ([`split::SWITCHES`]).
const SWITCHES: &[&str] = &["show-counts", "verbose"];

/// What `tests run` will do on this node.
#[derive(Debug, PartialEq)]
pub struct RunPlan {
    /// The shell command.
    pub command: String,
    /// This node's names, sorted; the command's stdin.
    pub items: Vec<String>,
    /// Whether to print the names to stderr before running.
    pub verbose: bool,
}

/// Parses the arguments after `run`, reads the names from stdin and splits
/// them. Split messages (the fallback, `--show-counts`) go to stderr. `None`
/// means help was printed.
pub fn plan(argv: &[String], io: &mut Io<'_>, env: &Env) -> Result<Option<RunPlan>, Failure> {
    let parsed = args::parse(
        argv,
        &Spec {
            values: VALUE_FLAGS,
            switches: SWITCHES,
        },
    )?;
    if parsed.help {
        write!(io.stdout, "{USAGE}\n{}", split::FLAGS_HELP).map_err(Failure::write)?;
        return Ok(None);
    }
    let command = match parsed.value("command") {
        Some(c) if !c.trim().is_empty() => c.to_string(),
        _ => {
            return Err(Failure::Usage("tests run needs --command=CMD".to_string()));
        }
    };
    if let Some(extra) = parsed.positionals.first() {
        return Err(Failure::Usage(format!(
            "tests run takes no arguments besides flags, got \"{extra}\" (the names are read from stdin)"
        )));
    }
    let opts = SplitOptions::from_flags(&parsed, env)?;
    let input = crate::read_input(None, io, env)?;
    let text = String::from_utf8_lossy(&input);
    let names: Vec<&str> = text.split_whitespace().collect();
    let result = split::split(&names, &opts, env);
    for line in &result.messages {
        writeln!(io.stderr, "{line}").map_err(Failure::write)?;
    }
    Ok(Some(RunPlan {
        command,
        items: result.items,
        verbose: parsed.switch("verbose"),
    }))
}

/// Runs a plan: the command inherits this process's stdout and stderr (not
/// `io`'s, which only carries the verbose listing) and reads the names on its
/// stdin.
pub fn execute(plan: &RunPlan, io: &mut Io<'_>, env: &Env) -> Outcome {
    if plan.verbose {
        for item in &plan.items {
            writeln!(io.stderr, "{item}").map_err(Failure::write)?;
        }
    }
    // Anything this program wrote must come out before the command's output.
    io.stdout.flush().map_err(Failure::write)?;
    io.stderr.flush().map_err(Failure::write)?;

    let shell = if Path::new("/bin/sh").exists() {
        "/bin/sh"
    } else {
        "sh"
    };
    let mut command = Command::new(shell);
    command.arg("-c").arg(&plan.command).stdin(Stdio::piped());
    if !env.cwd.as_os_str().is_empty() {
        command.current_dir(&env.cwd);
    }
    let mut child = command
        .spawn()
        .map_err(|e| Failure::Error(format!("cannot run {shell}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let mut list = String::new();
        for item in &plan.items {
            list.push_str(item);
            list.push('\n');
        }
        // A command that does not read all of its stdin closes the pipe; that
        // is its business, not an error.
        match stdin.write_all(list.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failure::Error(format!("cannot write to the command: {e}")));
            }
            _ => {}
        }
    }
    let status = child
        .wait()
        .map_err(|e| Failure::Error(format!("cannot wait for the command: {e}")))?;
    Ok(exit_code(status))
}

/// The exit code a shell would report for `status`.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

/// Runs `tests run` with the arguments after `run`.
pub fn command(argv: &[String], io: &mut Io<'_>, env: &Env) -> Outcome {
    match plan(argv, io, env)? {
        Some(plan) => execute(&plan, io, env),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TempDir, env_with};

    fn plan_for(
        args: &[&str],
        stdin: &str,
        env: &Env,
    ) -> (Result<Option<RunPlan>, Failure>, String) {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Io {
            stdin: &mut stdin.as_bytes(),
            stdout: &mut out,
            stderr: &mut err,
        };
        let result = plan(&argv, &mut io, env);
        (result, String::from_utf8(err).unwrap())
    }

    #[test]
    fn selects_this_nodes_share_like_tests_split() {
        let env = env_with(
            &[("CIRCLE_NODE_INDEX", "1"), ("CIRCLE_NODE_TOTAL", "2")],
            Path::new(""),
        );
        let (result, err) = plan_for(&["--command=pytest", "--verbose"], "d c b a\n", &env);
        assert_eq!(
            result.unwrap().unwrap(),
            RunPlan {
                command: "pytest".into(),
                items: vec!["b".into(), "d".into()],
                verbose: true,
            }
        );
        assert!(err.is_empty());

        let (result, err) = plan_for(
            &[
                "--command",
                "x",
                "--index=0",
                "--total=3",
                "--split-by=timings",
                "--show-counts",
            ],
            "a b c d",
            &env,
        );
        assert_eq!(result.unwrap().unwrap().items, ["a", "d"]);
        assert_eq!(
            err,
            format!(
                "{}\nnode index 0 of 3 nodes: 2 of 4 items\n",
                split::FALLBACK_MESSAGE
            )
        );
    }

    #[test]
    fn accepts_every_split_flag() {
        assert_eq!(&VALUE_FLAGS[1..], split::VALUE_FLAGS);
        assert!(split::SWITCHES.iter().all(|s| SWITCHES.contains(s)));
    }

    #[test]
    fn usage_errors() {
        let env = Env::default();
        let (result, _) = plan_for(&[], "a", &env);
        assert_eq!(
            result,
            Err(Failure::Usage("tests run needs --command=CMD".into()))
        );
        let (result, _) = plan_for(&["--command=x", "extra"], "a", &env);
        assert!(matches!(result, Err(Failure::Usage(m)) if m.contains("\"extra\"")));
        let (result, _) = plan_for(&["--command=x", "--index=2", "--total=2"], "a", &env);
        assert!(matches!(result, Err(Failure::Usage(_))));
    }

    #[test]
    fn execute_feeds_the_names_and_returns_the_exit_code() {
        let dir = TempDir::new("run");
        let env = env_with(&[], dir.path());
        let plan = RunPlan {
            command: "cat > got.txt; exit 3".into(),
            items: vec!["a.py".into(), "b.py".into()],
            verbose: true,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Io {
            stdin: &mut std::io::empty(),
            stdout: &mut out,
            stderr: &mut err,
        };
        assert_eq!(execute(&plan, &mut io, &env), Ok(3));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("got.txt")).unwrap(),
            "a.py\nb.py\n"
        );
        assert_eq!(String::from_utf8(err).unwrap(), "a.py\nb.py\n");
    }
}
