//! The `circleci` binary as a job runs it: `tests split` with the node index and
//! total from the environment, and `tests run` feeding a shell command.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("orrery-task-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary with `args`, `stdin`, extra environment and a working
/// directory; the node variables of the calling environment are removed.
fn circleci(args: &[&str], stdin: &str, env: &[(&str, &str)], cwd: &std::path::Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_circleci"))
        .args(args)
        .current_dir(cwd)
        .env_remove("CIRCLE_NODE_INDEX")
        .env_remove("CIRCLE_NODE_TOTAL")
        .env_remove("CIRCLE_INTERNAL_TASK_DATA")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run circleci");
    // A command that fails on its flags exits without reading stdin.
    let written = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    child.wait_with_output().expect("wait for circleci")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn tests_split_uses_the_node_index_and_total_from_the_environment() {
    let dir = TempDir::new("split");
    let input = "spec/c_spec.rb\nspec/a_spec.rb spec/e_spec.rb\nspec/b_spec.rb\nspec/d_spec.rb\nspec/a_spec.rb\n";
    let mut union = Vec::new();
    for index in ["0", "1"] {
        let out = circleci(
            &["tests", "split"],
            input,
            &[("CIRCLE_NODE_INDEX", index), ("CIRCLE_NODE_TOTAL", "2")],
            &dir.0,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "");
        let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
        if index == "1" {
            assert_eq!(lines, ["spec/b_spec.rb", "spec/d_spec.rb"]);
        }
        union.extend(lines);
    }
    union.sort();
    assert_eq!(
        union,
        [
            "spec/a_spec.rb",
            "spec/b_spec.rb",
            "spec/c_spec.rb",
            "spec/d_spec.rb",
            "spec/e_spec.rb"
        ]
    );

    let bad = circleci(
        &["tests", "split"],
        input,
        &[("CIRCLE_NODE_INDEX", "2"), ("CIRCLE_NODE_TOTAL", "2")],
        &dir.0,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("must be less than"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn tests_run_gives_the_command_this_nodes_names_on_stdin() {
    let dir = TempDir::new("run");
    let out = circleci(
        &["tests", "run", "--command=cat > out.txt", "--verbose"],
        "t4 t1 t3 t2 t5",
        &[("CIRCLE_NODE_INDEX", "0"), ("CIRCLE_NODE_TOTAL", "2")],
        &dir.0,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(dir.0.join("out.txt")).expect("out.txt written");
    assert_eq!(written, "t1\nt3\nt5\n");
    assert_eq!(text(&out.stderr), "t1\nt3\nt5\n");

    // The command's exit code is the exit code.
    let out = circleci(
        &["tests", "run", "--command", "wc -l; exit 7"],
        "a b",
        &[],
        &dir.0,
    );
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout).trim(), "2");
}

#[test]
fn installed_as_circleci_agent_it_behaves_the_same() {
    let dir = TempDir::new("agent");
    let agent = dir.0.join("circleci-agent");
    // A link, as in a job image; a copy could hit "text file busy" when another
    // test forks while it is open for writing.
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_circleci"), &agent).expect("link binary");
    let out = Command::new(&agent)
        .args(["version"])
        .output()
        .expect("run circleci-agent");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("circleci (orrery) {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(&agent)
        .arg("bogus")
        .output()
        .expect("run circleci-agent");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("circleci-agent: unknown command \"bogus\""),
        "{}",
        text(&out.stderr)
    );
}
