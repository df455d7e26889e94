//! `orrery local execute` end to end: the real binary, real git repositories,
//! a real Docker Engine and the images `scripts/test-images.sh` builds
//! (`orrery-test/busybox:1`, `orrery-test/debian:12`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BUSYBOX: &str = "orrery-test/busybox:1";
const DEBIAN: &str = "orrery-test/debian:12";

struct Repo {
    dir: tempfile::TempDir,
    data: tempfile::TempDir,
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Repo {
    /// A git repository on branch `main` holding `files`, committed.
    fn new(files: &[(&str, &str)]) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", "initial"]);
        Repo {
            dir,
            data: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orrery"));
        cmd.args(["local", "execute", "--color", "never"])
            .args(args)
            .arg("--data-dir")
            .arg(self.data.path())
            .current_dir(self.dir.path())
            .env("ORRERY_KILL_GRACE_SECS", "2")
            .env_remove("ORRERY_ORB_DIR");
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).stdin(Stdio::null()).output().unwrap();
        Run::from(out)
    }

    fn local(&self) -> PathBuf {
        self.data.path().join("local")
    }

    /// Every file below the data directory's `dir`, relative to it.
    fn files(&self, dir: &str) -> Vec<String> {
        let root = self.local().join(dir);
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path().strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// The status the summary table gives a job.
    fn status(&self, job: &str) -> &str {
        self.stdout
            .lines()
            .skip_while(|l| !l.starts_with("WORKFLOW"))
            .find_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols.len() >= 3 && cols[1] == job).then_some(cols[2])
            })
            .unwrap_or_else(|| {
                panic!(
                    "no job {job} in the summary:\n{}\n{}",
                    self.stdout, self.stderr
                )
            })
    }

    fn has(&self, text: &str) -> bool {
        self.stdout.contains(text)
    }

    fn lines_of(&self, label: &str) -> Vec<&str> {
        let prefix = format!("[{label}] ");
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .collect()
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    /// The run's id prefix, which every container name of the run carries.
    fn container_prefix(&self) -> String {
        run_prefix(&self.stdout)
    }
}

fn run_prefix(stdout: &str) -> String {
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Run "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id in:\n{stdout}"));
    format!("orrery-{}-", &id[..8])
}

/// Containers of a run that still exist.
fn leftover_containers(prefix: &str) -> Vec<String> {
    all_task_containers()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Containers of Orrery tasks that exist (of any test).
fn all_task_containers() -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=orrery.task",
            "--format",
            "{{.Names}}",
        ])
        .output()
        .expect("docker must be installed (scripts/test-images.sh)");
    assert!(
        out.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The workflow of the feature tests, on the Docker or the machine executor.
fn feature_config(docker: bool) -> String {
    let (executor, services) = if docker {
        (
            format!("docker:\n      - image: {BUSYBOX}"),
            format!(
                "\n      - image: {BUSYBOX}\n        name: web\n        command: [\"httpd\", \"-f\", \"-p\", \"18080\", \"-h\", \"/srv\"]\n        entrypoint: [\"/bin/sh\", \"-c\", \"mkdir -p /srv && echo from-service > /srv/index.html && exec \\\"$@\\\"\", \"--\"]"
            ),
        )
    } else {
        ("machine: true".to_string(), String::new())
    };
    let service_check = if docker {
        "      - run:\n          name: Reach the service on localhost\n          command: wget -q -O - http://localhost:18080/index.html && wget -q -O - http://web:18080/index.html\n"
    } else {
        ""
    };
    format!(
        r#"version: 2.1
executors:
  box:
    {executor}
jobs:
  build:
    {executor}{services}
    steps:
      - checkout
      - restore_cache:
          keys:
            - deps-v1-{{{{ checksum "deps.txt" }}}}
            - deps-v1-
      - run:
          name: Install dependencies
          command: |
            if [ -f ~/deps/stamp ]; then echo "CACHE-HIT $(cat ~/deps/stamp)"; else mkdir -p ~/deps && echo "made-by-$CIRCLE_BUILD_NUM" > ~/deps/stamp && echo CACHE-MISS; fi
      - save_cache:
          key: deps-v1-{{{{ checksum "deps.txt" }}}}
          paths: [~/deps]
{service_check}      - run:
          name: Background ticker
          command: while true; do echo TICK; sleep 0.2; done
          background: true
      - run: mkdir -p out && echo built-$CIRCLE_SHA1 > out/app.txt && echo "token=$API_TOKEN"
      - persist_to_workspace: {{root: ., paths: [out]}}
      - store_artifacts: {{path: out, destination: build-out}}
  test:
    executor: box
    parallelism: 3
    steps:
      - checkout
      - attach_workspace: {{at: ws}}
      - run: grep -q built- ws/out/app.txt && echo WORKSPACE-OK
      - run:
          name: Split and run tests
          command: |
            circleci tests glob "tests/*.py" | circleci tests split --split-by=timings > mine.txt
            total=0
            mkdir -p results
            echo '<testsuite name="t">' > results/junit.xml
            for f in $(cat mine.txt); do
              t=$(basename $f .py | tr -d t)
              total=$((total + t))
              echo "<testcase classname=\"suite\" name=\"$f\" file=\"$f\" time=\"$t\"/>" >> results/junit.xml
            done
            echo '</testsuite>' >> results/junit.xml
            echo "NODE $CIRCLE_NODE_INDEX TOTAL $total"
      - store_test_results: {{path: results}}
  halting:
    executor: box
    steps:
      - run: circleci-agent step halt
      - run: echo SHOULD-NOT-RUN; exit 1
  failing:
    executor: box
    steps:
      - run: echo about to fail; exit 3
      - run:
          name: Cleanup on failure
          command: echo CLEANUP-RAN
          when: on_fail
      - run: echo NEVER-RAN
  quiet:
    executor: box
    steps:
      - run:
          command: echo before-silence; sleep 60
          no_output_timeout: 1s
workflows:
  main:
    jobs:
      - build
      - test: {{requires: [build]}}
      - halting
      - failing
      - quiet
"#
    )
}

fn feature_repo(docker: bool) -> Repo {
    let mut files: Vec<(String, String)> = vec![
        (".circleci/config.yml".into(), feature_config(docker)),
        ("deps.txt".into(), "left-pad==1.0\n".into()),
    ];
    // Nine test files whose time is their number: the best split on three
    // nodes is 15 seconds each.
    for t in 1..=9 {
        files.push((format!("tests/t{t}.py"), String::new()));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    Repo::new(&refs)
}

fn node_totals(run: &Run) -> Vec<u32> {
    let mut totals: Vec<u32> = run
        .stdout
        .lines()
        .filter_map(|l| l.split("NODE ").nth(1))
        .filter_map(|rest| rest.split("TOTAL ").nth(1))
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    totals.sort();
    totals
}

fn check_feature_workflow(docker: bool) {
    let repo = feature_repo(docker);
    let first = repo.run(&["-e", "API_TOKEN=s3cr3t-value"]);
    assert_eq!(
        first.code,
        Some(1),
        "failing and quiet jobs fail the run: {first:?}"
    );
    assert_eq!(first.status("build"), "success", "{first:?}");
    assert_eq!(first.status("test"), "success", "{first:?}");
    assert_eq!(first.status("halting"), "success", "{first:?}");
    assert_eq!(first.status("failing"), "failed", "{first:?}");
    assert_eq!(first.status("quiet"), "timedout", "{first:?}");
    // Cache: missed, saved.
    assert!(first.has("CACHE-MISS"), "{first:?}");
    assert!(first.has("Stored Cache to deps-v1-"), "{first:?}");
    // Service container on localhost and by name.
    if docker {
        assert_eq!(
            first
                .lines_of("build")
                .iter()
                .filter(|l| l.trim() == "from-service")
                .count(),
            2,
            "{first:?}"
        );
    }
    // Background step output and secret masking.
    assert!(first.has("TICK"), "{first:?}");
    assert!(first.has("token=********"), "{first:?}");
    assert!(
        !first.stdout.contains("s3cr3t-value"),
        "the secret leaked: {first:?}"
    );
    // Workspace between jobs.
    assert_eq!(
        first
            .stdout
            .lines()
            .filter(|l| l.ends_with("]   WORKSPACE-OK"))
            .count(),
        3,
        "{first:?}"
    );
    // Halt, on_fail, no_output_timeout.
    assert!(!first.has("SHOULD-NOT-RUN"), "{first:?}");
    assert!(first.has("CLEANUP-RAN"), "{first:?}");
    assert!(!first.has("NEVER-RAN"), "{first:?}");
    assert!(first.has("Exited with code exit status 3"), "{first:?}");
    assert!(
        first.has("Too long with no output (exceeded 1s): context deadline exceeded"),
        "{first:?}"
    );
    assert!(first.has("before-silence"), "{first:?}");
    // Artifacts and test results are stored.
    let artifacts = repo.files("artifacts");
    assert!(
        artifacts
            .iter()
            .any(|a| a.ends_with("build/0/build-out/app.txt")),
        "{artifacts:?}"
    );
    let results = repo.files("test-results");
    assert_eq!(results.len(), 3, "one result file per node: {results:?}");
    // With no timings yet the split falls back to names.
    assert!(
        first.stderr.contains("falling back") || first.has("falling back"),
        "{first:?}"
    );
    assert_eq!(node_totals(&first).iter().sum::<u32>(), 45, "{first:?}");

    // The second run restores the cache and splits by the timings of the first.
    let second = repo.run(&["-e", "API_TOKEN=s3cr3t-value"]);
    assert_eq!(second.status("build"), "success", "{second:?}");
    assert!(second.has("CACHE-HIT made-by-"), "{second:?}");
    assert!(
        second.has("Skipping cache generation, cache already exists"),
        "{second:?}"
    );
    let totals = node_totals(&second);
    assert_eq!(totals.iter().sum::<u32>(), 45, "{second:?}");
    let worst = *totals.iter().max().unwrap();
    assert!(
        worst as f64 <= 15.0 * 1.1,
        "timings split within 10% of the best (15): {totals:?}"
    );
    for run in [&first, &second] {
        let prefix = run.container_prefix();
        assert!(
            leftover_containers(&prefix).is_empty(),
            "containers left: {:?}",
            leftover_containers(&prefix)
        );
    }
}

#[test]
fn docker_workflow_runs_every_feature() {
    check_feature_workflow(true);
}

#[test]
fn machine_workflow_runs_every_feature() {
    check_feature_workflow(false);
}

#[test]
fn a_real_python_project_builds_and_tests_in_debian() {
    let config = format!(
        r#"version: 2.1
jobs:
  test:
    docker:
      - image: {DEBIAN}
    steps:
      - checkout
      - run:
          name: Install
          command: python3 -m compileall -q calc
      - run:
          name: Test
          command: |
            mkdir -p results
            python3 -m pytest -q --junitxml=results/junit.xml tests
      - store_test_results:
          path: results
workflows:
  ci:
    jobs: [test]
"#
    );
    let repo = Repo::new(&[
        (".circleci/config.yml", &config),
        (
            "calc/__init__.py",
            "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n",
        ),
        (
            "tests/test_calc.py",
            "from calc import add, mul\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\ndef test_mul():\n    assert mul(4, 5) == 20\n\n\ndef test_add_negative():\n    assert add(-1, 1) == 0\n",
        ),
    ]);
    let run = repo.run(&[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.has("3 passed"), "{run:?}");
    assert!(run.has("Found 3 test(s): 0 failed"), "{run:?}");
}

#[test]
fn bad_input_fails_jobs_with_clear_messages() {
    let config = format!(
        r#"version: 2.1
jobs:
  missing-image:
    docker: [{{image: orrery-test/does-not-exist:1}}]
    steps: [checkout]
  dead-service:
    docker:
      - image: {BUSYBOX}
      - image: {BUSYBOX}
        command: ["sh", "-c", "echo service-broke >&2; exit 4"]
    steps:
      - run: wget -q -T 2 -O - http://localhost:18081/
  no-shell:
    docker: [{{image: {BUSYBOX}}}]
    shell: /bin/zsh -e
    steps:
      - run: echo hi
  corrupt-cache:
    docker: [{{image: {BUSYBOX}}}]
    steps:
      - restore_cache: {{key: corrupt-v1}}
workflows:
  main:
    jobs: [missing-image, dead-service, no-shell, corrupt-cache]
"#
    );
    let repo = Repo::new(&[(".circleci/config.yml", &config)]);
    // A cache archive that is not zstd at all.
    let cache_dir = repo.local().join("caches").join(
        "local%2Flocal%2F".to_string() + &repo.dir.path().file_name().unwrap().to_string_lossy(),
    );
    std::fs::create_dir_all(&cache_dir).unwrap();
    std::fs::write(
        cache_dir.join("corrupt-v1.tar.zst"),
        b"this is not a cache archive",
    )
    .unwrap();

    let run = repo.run(&[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.status("missing-image"), "failed", "{run:?}");
    assert!(
        run.has(
            "image orrery-test/does-not-exist:1 is not on this machine and could not be pulled"
        ),
        "{run:?}"
    );
    assert_eq!(run.status("dead-service"), "failed", "{run:?}");
    assert!(run.has("exited with code 4"), "{run:?}");
    assert!(run.has("service-broke"), "{run:?}");
    assert_eq!(run.status("no-shell"), "failed", "{run:?}");
    assert!(run.has("cannot start `/bin/zsh`"), "{run:?}");
    assert_eq!(run.status("corrupt-cache"), "failed", "{run:?}");
    assert!(run.has("cannot restore the cache corrupt-v1"), "{run:?}");
    let prefix = run.container_prefix();
    assert!(
        leftover_containers(&prefix).is_empty(),
        "containers left: {:?}",
        leftover_containers(&prefix)
    );

    // An unknown executor is a config error: nothing runs.
    let bad = Repo::new(&[(
        ".circleci/config.yml",
        "version: 2.1\njobs:\n  build:\n    executor: nope\n    steps: [checkout]\n",
    )]);
    let run = bad.run(&[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("Cannot find a definition for executor named nope"),
        "{run:?}"
    );
}

#[test]
fn an_archive_escaping_its_directory_is_refused() {
    let config = format!(
        "version: 2.1\njobs:\n  build:\n    docker: [{{image: {BUSYBOX}}}]\n    steps:\n      - restore_cache: {{key: evil-v1}}\n      - run: ls /escaped-by-tar && exit 1 || echo NOT-ESCAPED\n"
    );
    let repo = Repo::new(&[(".circleci/config.yml", &config)]);
    // A zstd tar whose entry climbs out of the target directory.
    let mut tar = Vec::new();
    let mut header = [0u8; 512];
    let name = b"../../../escaped-by-tar";
    header[..name.len()].copy_from_slice(name);
    header[100..107].copy_from_slice(b"0000644");
    header[124..135].copy_from_slice(b"00000000001");
    header[156] = b'0';
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| *b as u32).sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    tar.extend_from_slice(&header);
    let mut block = [0u8; 512];
    block[0] = b'x';
    tar.extend_from_slice(&block);
    tar.extend_from_slice(&[0u8; 1024]);
    let compressed = zstd::encode_all(&tar[..], 1).unwrap();
    let cache_dir = repo.local().join("caches").join(
        "local%2Flocal%2F".to_string() + &repo.dir.path().file_name().unwrap().to_string_lossy(),
    );
    std::fs::create_dir_all(&cache_dir).unwrap();
    std::fs::write(cache_dir.join("evil-v1.tar.zst"), compressed).unwrap();
    let run = repo.run(&[]);
    assert_eq!(run.status("build"), "failed", "{run:?}");
    assert!(run.has("leaves the target directory"), "{run:?}");
    assert!(
        !run.has("NOT-ESCAPED") && !run.has("escaped-by-tar\n"),
        "later steps do not run: {run:?}"
    );
}

#[test]
fn ctrl_c_cancels_and_removes_every_container() {
    let config = format!(
        "version: 2.1\njobs:\n  slow:\n    docker:\n      - image: {BUSYBOX}\n      - image: {BUSYBOX}\n        command: [\"sleep\", \"600\"]\n    steps:\n      - run: echo STARTED-SLOW; sleep 600\nworkflows:\n  main:\n    jobs: [slow]\n"
    );
    let repo = Repo::new(&[(".circleci/config.yml", &config)]);
    let mut child = repo
        .command(&[])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            if line.contains("STARTED-SLOW") {
                let _ = tx.send(all.clone());
            }
        }
    });
    let seen = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the step started");
    let prefix = run_prefix(&seen);
    assert_eq!(
        leftover_containers(&prefix).len(),
        2,
        "the primary and the service run while the job runs"
    );
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "orrery did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    assert!(
        leftover_containers(&prefix).is_empty(),
        "containers left after Ctrl-C: {:?}",
        leftover_containers(&prefix)
    );
}
