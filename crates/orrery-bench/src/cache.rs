//! Caches: a 2 GiB cache (`BENCH_CACHE_MB` MiB) saved by one job and
//! restored by the next, on a real `orrery server` (no embedded runner) and
//! one remote `orrery runner`, with the server's blobs in its data directory
//! and, when `moto_server` is installed, on S3.
//!
//! - The files: a few big ones (incompressible, text, zeros) and many small
//!   ones (text and incompressible) in nested directories, generated once and
//!   used by every run. The save job hard-links them into its job directory
//!   (an untimed step), so nothing is copied.
//! - Throughput: the `Saving Cache` and `Restoring Cache` steps' own times,
//!   from the API (v1.1 job details), against `tar -cf - | zstd -1 -T0` into a
//!   file and `zstd -dc | tar -xf -` out of it, timed in the same run on the
//!   same files. Target: 0.8x the baseline or better.
//! - Memory: the RSS of the server and of the runner, each with every process
//!   below it (the runner's `circleci agent` helpers, the job's processes),
//!   read from /proc every 50 ms while the workflow runs; the peak growth over
//!   the RSS just before the trigger. Target: under 100 MB.
//! - CPU seconds of both trees during each step (from the same samples),
//!   beside the baseline's: on a shared machine they say more than the times.
//! - Every measurement starts with `sync` (the jobs' in untimed steps).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::exec::tempfile_lite::Dir;
use crate::exec::{git, orrery_binary};
use crate::server::{self, Api, Proc};
use crate::{report_memory, report_rate};

const CLASS: &str = "bench/cache";
const KEY: &str = "bench-cache-v1";
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// The targets: throughput against the baseline, and RSS growth.
const TARGET_RATIO: f64 = 0.8;
const TARGET_RSS_MB: f64 = 100.0;
const MIB: f64 = 1024.0 * 1024.0;

/// xorshift64: fast, and good enough to defeat a compressor.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn fill_random(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }

    /// Log-like text from a small vocabulary: compresses several times over.
    fn fill_text(&mut self, buf: &mut [u8]) {
        const WORDS: [&str; 32] = [
            "cache",
            "restore",
            "save",
            "job",
            "step",
            "runner",
            "server",
            "build",
            "test",
            "node_modules",
            "target",
            "release",
            "debug",
            "index",
            "object",
            "archive",
            "the",
            "a",
            "of",
            "to",
            "in",
            "is",
            "for",
            "with",
            "src/main.rs",
            "lib",
            "package.json",
            "0.1.0",
            "warning:",
            "error:",
            "ok",
            "done",
        ];
        let mut at = 0;
        let mut bits = 0u64;
        let mut left = 0;
        while at < buf.len() {
            if left < 6 {
                bits = self.next();
                left = 64;
            }
            let word = WORDS[(bits & 31) as usize].as_bytes();
            let sep = if bits & 32 == 0 { b' ' } else { b'\n' };
            bits >>= 6;
            left -= 6;
            for &b in word.iter().chain(std::iter::once(&sep)) {
                if at == buf.len() {
                    break;
                }
                buf[at] = b;
                at += 1;
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Random,
    Text,
    Zeros,
}

fn write_file(path: &Path, size: usize, kind: Kind, rng: &mut Rng, buf: &mut [u8]) {
    let mut file = std::fs::File::create(path).expect("create a bench file");
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len());
        match kind {
            Kind::Random => rng.fill_random(&mut buf[..n]),
            Kind::Text => rng.fill_text(&mut buf[..n]),
            Kind::Zeros => buf[..n].fill(0),
        }
        file.write_all(&buf[..n]).expect("write a bench file");
        left -= n;
    }
}

/// The files to cache: `total` bytes under `dir`; their count.
///
/// - 30% in two incompressible files, 20% in a text file, 10% in a file of
///   zeros;
/// - 40% in small files of 1 to 64 KiB (two text for one incompressible), 500
///   to a directory, two levels deep.
fn generate(dir: &Path, total: u64) -> usize {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut buf = vec![0u8; 1 << 20];
    let big = dir.join("big");
    std::fs::create_dir_all(&big).expect("bench dir");
    let part = |pct: u64| (total * pct / 100) as usize;
    write_file(
        &big.join("random-0.bin"),
        part(15),
        Kind::Random,
        &mut rng,
        &mut buf,
    );
    write_file(
        &big.join("random-1.bin"),
        part(15),
        Kind::Random,
        &mut rng,
        &mut buf,
    );
    write_file(
        &big.join("text.log"),
        part(20),
        Kind::Text,
        &mut rng,
        &mut buf,
    );
    write_file(
        &big.join("zeros.img"),
        part(10),
        Kind::Zeros,
        &mut rng,
        &mut buf,
    );
    let mut files = 4;
    let small_total = total - (part(15) * 2 + part(20) + part(10)) as u64;
    let mut written = 0u64;
    while written < small_total {
        let size = (1024 + rng.next() % (63 * 1024)).min(small_total - written);
        let n = files - 4;
        let sub = dir.join(format!("small/{:03}/{:03}", n / 50_000, (n / 500) % 100));
        if n % 500 == 0 {
            std::fs::create_dir_all(&sub).expect("bench dir");
        }
        let kind = if n % 3 == 2 { Kind::Random } else { Kind::Text };
        write_file(
            &sub.join(format!("f{n:06}.dat")),
            size as usize,
            kind,
            &mut rng,
            &mut buf,
        );
        written += size;
        files += 1;
    }
    files
}

/// The files under `dir`: how many, and their bytes.
fn count_files(dir: &Path) -> (usize, u64) {
    let mut found = (0, 0);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            let (n, b) = count_files(&e.path());
            found = (found.0 + n, found.1 + b);
        } else if meta.is_file() {
            found = (found.0 + 1, found.1 + meta.len());
        }
    }
    found
}

/// Flushes dirty pages, so a measurement does not pay for the writeback of
/// the one before.
fn sync() {
    let _ = Command::new("sync").status();
}

fn bash(script: &str) -> Duration {
    let started = Instant::now();
    let out = Command::new("bash")
        .args(["-c", &format!("set -euo pipefail; {script}")])
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The baseline's times, CPU seconds (of every process it ran) and archive.
struct Baseline {
    save: Duration,
    restore: Duration,
    save_cpu: f64,
    restore_cpu: f64,
    size: u64,
}

/// `tar | zstd -1 -T0` into a file, and back out into a new directory.
fn baseline(data: &Path, scratch: &Path) -> Baseline {
    let tick = ticks_per_sec();
    let me = std::process::id();
    let archive = scratch.join("baseline.tar.zst");
    let dest = scratch.join("baseline-restored");
    std::fs::create_dir_all(&dest).expect("baseline dir");
    sync();
    let cpu = cpu_ticks(me);
    let save = bash(&format!(
        "tar -cf - -C {} . | zstd -1 -T0 -q -o {}",
        quote(data),
        quote(&archive)
    ));
    let save_cpu = (cpu_ticks(me) - cpu) as f64 / tick;
    let size = std::fs::metadata(&archive).expect("baseline archive").len();
    sync();
    let cpu = cpu_ticks(me);
    let restore = bash(&format!(
        "zstd -dc {} | tar -xf - -C {}",
        quote(&archive),
        quote(&dest)
    ));
    let restore_cpu = (cpu_ticks(me) - cpu) as f64 / tick;
    // The restored files stay until the end: deleting thousands of files
    // just before Orrery's restore would slow its file creation (ext4 skips
    // recently freed inodes).
    let _ = std::fs::remove_file(&archive);
    Baseline {
        save,
        restore,
        save_cpu,
        restore_cpu,
        size,
    }
}

/// Every process's parent, from /proc.
fn parents() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
            let after = &stat[stat.rfind(')')? + 1..];
            let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// VmRSS of a process in KiB (0 when it is gone).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `root` and every process below it.
fn tree(root: u32, parents: &[(u32, u32)]) -> Vec<u32> {
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// The RSS of `root` and every process below it, in KiB.
fn tree_rss_kib(root: u32, parents: &[(u32, u32)]) -> u64 {
    tree(root, parents).into_iter().map(rss_kib).sum()
}

/// CPU time of a process and of its children it has reaped, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(at) = stat.rfind(')') else { return 0 };
    // After `comm`: state is field 3; utime, stime, cutime, cstime are 14-17.
    stat[at + 1..]
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

fn ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One reading of the trees: when (ms since the epoch), and per root its
/// RSS (KiB) and CPU time (ticks).
struct Sample {
    at_ms: i64,
    rss_kib: Vec<u64>,
    cpu: Vec<u64>,
}

/// Reads the trees of `roots` every [`SAMPLE_EVERY`] until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Sample>>,
}

impl Sampler {
    fn start(roots: Vec<u32>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            loop {
                let all = parents();
                let trees: Vec<Vec<u32>> = roots.iter().map(|&r| tree(r, &all)).collect();
                samples.push(Sample {
                    at_ms: now_ms(),
                    rss_kib: trees
                        .iter()
                        .map(|t| t.iter().map(|&p| rss_kib(p)).sum())
                        .collect(),
                    cpu: trees
                        .iter()
                        .map(|t| t.iter().map(|&p| cpu_ticks(p)).sum())
                        .collect(),
                });
                if flag.load(Ordering::Relaxed) {
                    return samples;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        Sampler { stop, thread }
    }

    fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler")
    }
}

/// CPU seconds of root `i` between `from` and `to` (ms since the epoch):
/// from the last sample at or before `from` to the first at or after `to`.
fn cpu_between(samples: &[Sample], i: usize, from: i64, to: i64, tick: f64) -> f64 {
    let first = samples.iter().rev().find(|s| s.at_ms <= from);
    let last = samples.iter().find(|s| s.at_ms >= to);
    match (first, last) {
        (Some(a), Some(b)) => b.cpu[i].saturating_sub(a.cpu[i]) as f64 / tick,
        _ => f64::NAN,
    }
}

/// Milliseconds since the epoch of an API time (`2026-01-02T03:04:05.678Z`).
fn parse_time(t: &str) -> Option<i64> {
    let (date, time) = t.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|v| v.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut h = time.split(':');
    let (hh, mm) = (
        h.next()?.parse::<i64>().ok()?,
        h.next()?.parse::<i64>().ok()?,
    );
    let secs: f64 = h.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60) * 1000 + (secs * 1000.0).round() as i64)
}

/// Where the server keeps blobs.
enum Storage {
    Local,
    S3 { endpoint: String },
}

fn start_server(bin: &Path, dir: &Path, storage: &Storage) -> (Proc, String) {
    server::start_server_with(bin, dir, 0, |cmd| {
        if let Storage::S3 { endpoint } = storage {
            cmd.args(["--blob-url", "s3://orrery-bench/caches"])
                .env("AWS_ENDPOINT", endpoint)
                .env("AWS_ALLOW_HTTP", "true")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ACCESS_KEY_ID", "orrery-bench")
                .env("AWS_SECRET_ACCESS_KEY", "orrery-bench-secret");
        }
    })
}

fn start_runner(bin: &Path, dir: &Path, url: &str, token: &str) -> Proc {
    server::start_runner(bin, dir, url, token, 1)
}

/// moto's S3 server on a free port, with a bucket `orrery-bench`; `None`
/// when it is not installed.
fn start_moto(dir: &Path) -> Option<(Proc, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .ok()?
        .port();
    let log = dir.join("moto.log");
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).ok()?)
        .spawn()
        .ok()?;
    let proc = Proc { child, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    let made = Command::new("curl")
        .args(["-fsS", "-X", "PUT", &format!("{endpoint}/orrery-bench")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    made.then_some((proc, endpoint))
}

/// The save job hard-links `data` into its directory (untimed) and saves it;
/// the restore job restores it and checks the bytes of its files. Both flush
/// dirty pages first (untimed), as the baseline does.
fn config(data: &Path, file_bytes: u64) -> String {
    format!(
        r#"version: 2.1
jobs:
  save:
    machine: true
    resource_class: {CLASS}
    steps:
      - run: mkdir -p ~/project && cp -al {data} ~/project/data && sync
      - save_cache:
          key: {KEY}
          paths: [~/project/data]
  restore:
    machine: true
    resource_class: {CLASS}
    steps:
      - run: sync
      - restore_cache:
          keys: [{KEY}]
      - run: test "$(find ~/project/data -type f -printf '%s\n' | awk '{{s += $1}} END {{printf "%.0f", s}}')" = {file_bytes}
workflows:
  w:
    jobs: [save, {{restore: {{requires: [save]}}}}]
"#,
        data = quote(data)
    )
}

/// What one run of the two jobs measured.
struct Measured {
    save: Duration,
    restore: Duration,
    /// The stored archive's size, as the restore step reports it.
    object_bytes: Option<u64>,
    idle_kib: [u64; 2],
    /// CPU seconds of the server's and the runner's trees during each step.
    save_cpu: [f64; 2],
    restore_cpu: [f64; 2],
    peak_kib: [u64; 2],
}

impl Measured {
    fn growth_kib(&self, i: usize) -> u64 {
        self.peak_kib[i].saturating_sub(self.idle_kib[i])
    }
}

/// The save and restore jobs on a fresh server (blobs on `storage`) and one
/// remote runner, all under `dir`.
fn orrery_run(bin: &Path, dir: &Path, data: &Path, file_bytes: u64, storage: &Storage) -> Measured {
    std::fs::create_dir_all(dir).expect("bench dir");
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join(".circleci")).expect("repo dir");
    std::fs::write(repo.join(".circleci/config.yml"), config(data, file_bytes)).expect("config");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "bench"]);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (server, base) = start_server(bin, dir, storage);
    let api = Api::new(&base);
    let slug = "gh/bench/cache";
    let token = rt.block_on(async {
        let token = api.runner_token(CLASS).await;
        api.call(
            Method::POST,
            &format!("/api/v2/project/{slug}"),
            Some(json!({"repo_url": repo.display().to_string()})),
        )
        .await;
        token
    });
    let runner = start_runner(bin, dir, &base, &token);
    rt.block_on(async {
        let started = Instant::now();
        loop {
            let runners = api.call(Method::GET, "/api/v3/runner", None).await;
            if runners["items"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["resource_class"] == CLASS))
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the runner did not register:\n{}",
                runner.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // Let both settle, then read their idle RSS.
    std::thread::sleep(Duration::from_secs(1));
    let all = parents();
    let idle_kib = [
        tree_rss_kib(server.pid(), &all),
        tree_rss_kib(runner.pid(), &all),
    ];
    sync();

    let sampler = Sampler::start(vec![server.pid(), runner.pid()]);
    let (workflow, status) = rt.block_on(async {
        let p = api
            .call(
                Method::POST,
                &format!("/api/v2/project/{slug}/pipeline"),
                None,
            )
            .await;
        let id = p["id"].as_str().expect("pipeline id").to_string();
        loop {
            let w = api
                .call(
                    Method::GET,
                    &format!("/api/v2/pipeline/{id}/workflow"),
                    None,
                )
                .await;
            let status = w["items"][0]["status"].as_str().unwrap_or("").to_string();
            if !matches!(status.as_str(), "" | "running" | "on_hold" | "failing") {
                return (
                    w["items"][0]["id"].as_str().unwrap_or("").to_string(),
                    status,
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let samples = sampler.finish();
    let peak = |i: usize| samples.iter().map(|s| s.rss_kib[i]).max().unwrap_or(0);
    let peak_kib = [peak(0), peak(1)];
    let tick = ticks_per_sec();

    let measured = rt.block_on(async {
        let jobs = api
            .call(
                Method::GET,
                &format!("/api/v2/workflow/{workflow}/job"),
                None,
            )
            .await;
        let number = |name: &str| {
            jobs["items"]
                .as_array()
                .and_then(|items| items.iter().find(|j| j["name"] == name))
                .and_then(|j| j["job_number"].as_i64())
                .unwrap_or_else(|| panic!("no job {name} in {jobs}"))
        };
        let (save_job, restore_job) = (number("save"), number("restore"));
        if status != "success" {
            let mut text = String::new();
            for n in [save_job, restore_job] {
                let out = api
                    .request(
                        Method::GET,
                        &format!("/api/v2/project/{slug}/job/{n}/output"),
                    )
                    .send()
                    .await;
                if let Ok(o) = out {
                    text.push_str(&o.text().await.unwrap_or_default());
                }
            }
            panic!(
                "the cache workflow ended {status}:\n{text}\nrunner log:\n{}\nserver log:\n{}",
                runner.log_tail(),
                server.log_tail()
            );
        }
        // The step's time, and CPU seconds of both trees while it ran.
        let step = |job: Value, name: &str| {
            let action = job["steps"]
                .as_array()
                .and_then(|steps| steps.iter().find(|s| s["name"] == name))
                .map(|s| s["actions"][0].clone())
                .unwrap_or_else(|| panic!("no step {name} in {job}"));
            let millis = action["run_time_millis"]
                .as_u64()
                .unwrap_or_else(|| panic!("step {name} was not timed: {action}"));
            let from = action["start_time"].as_str().and_then(parse_time);
            let to = action["end_time"].as_str().and_then(parse_time);
            let cpu = |i| match (from, to) {
                (Some(f), Some(t)) => cpu_between(&samples, i, f, t, tick),
                _ => f64::NAN,
            };
            (millis, [cpu(0), cpu(1)])
        };
        let save_details = api
            .call(
                Method::GET,
                &format!("/api/v1.1/project/{slug}/{save_job}"),
                None,
            )
            .await;
        let restore_details = api
            .call(
                Method::GET,
                &format!("/api/v1.1/project/{slug}/{restore_job}"),
                None,
            )
            .await;
        let (save, save_cpu) = step(save_details, "Saving Cache");
        let (restore, restore_cpu) = step(restore_details, "Restoring Cache");
        let output = api
            .request(
                Method::GET,
                &format!("/api/v2/project/{slug}/job/{restore_job}/output"),
            )
            .send()
            .await
            .expect("job output")
            .text()
            .await
            .unwrap_or_default();
        let object_bytes = output
            .split_once(&format!("Found a cache at {KEY} ("))
            .and_then(|(_, rest)| rest.split_once(" bytes)"))
            .and_then(|(n, _)| n.parse().ok());
        Measured {
            save: Duration::from_millis(save),
            restore: Duration::from_millis(restore),
            object_bytes,
            idle_kib,
            peak_kib,
            save_cpu,
            restore_cpu,
        }
    });
    drop(runner);
    drop(server);
    measured
}

fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / MIB)
}

fn report(what: &str, bytes: u64, m: &Measured, base: &Baseline) {
    let rate = |d: Duration| bytes as f64 / MIB / d.as_secs_f64();
    let (bs, br) = (rate(base.save), rate(base.restore));
    report_rate(
        &format!("cache save, {} ({what})", mib(bytes)),
        rate(m.save),
        "MiB/s",
        Some(("tar | zstd -1 -T0", bs)),
        TARGET_RATIO * bs,
        " (0.8x baseline)",
    );
    report_rate(
        &format!("cache restore, {} ({what})", mib(bytes)),
        rate(m.restore),
        "MiB/s",
        Some(("zstd -dc | tar -x", br)),
        TARGET_RATIO * br,
        " (0.8x baseline)",
    );
    report_memory(
        &format!("server RSS growth, save + restore ({what})"),
        m.growth_kib(0),
        TARGET_RSS_MB,
    );
    report_memory(
        &format!("runner + children RSS growth ({what})"),
        m.growth_kib(1),
        TARGET_RSS_MB,
    );
    println!(
        "   ({what}: save {:.2} s vs {:.2} s, restore {:.2} s vs {:.2} s; archive {} vs {}; idle RSS server {:.1} MB, runner {:.1} MB)",
        m.save.as_secs_f64(),
        base.save.as_secs_f64(),
        m.restore.as_secs_f64(),
        base.restore.as_secs_f64(),
        m.object_bytes.map_or("?".into(), mib),
        mib(base.size),
        m.idle_kib[0] as f64 / 1024.0,
        m.idle_kib[1] as f64 / 1024.0,
    );
    println!(
        "   ({what}: CPU seconds, save: server {:.2} + runner {:.2} vs {:.2}; restore: server {:.2} + runner {:.2} vs {:.2})",
        m.save_cpu[0],
        m.save_cpu[1],
        base.save_cpu,
        m.restore_cpu[0],
        m.restore_cpu[1],
        base.restore_cpu,
    );
}

pub fn run() {
    let Some(bin) = orrery_binary() else {
        println!(
            "== cache: skipped: build the CLI next to the bench first (`cargo build --release -p orrery -p orrery-bench`)"
        );
        return;
    };
    if !have("zstd") {
        println!("== cache: skipped: the baseline needs zstd (`apt-get install zstd`)");
        return;
    }
    let size_mb: u64 = std::env::var("BENCH_CACHE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    let wanted = size_mb * 1024 * 1024;
    let dir = Dir::new("orrery-bench-cache");
    // `BENCH_CACHE_FILES=DIR`: generate the files there and keep them (and
    // use them as they are if it exists), for measuring by hand.
    let kept = std::env::var_os("BENCH_CACHE_FILES").map(PathBuf::from);
    let data = kept.clone().unwrap_or_else(|| dir.path().join("files"));
    let started = Instant::now();
    let (files, bytes) = match kept {
        Some(k) if k.is_dir() => count_files(&k),
        _ => (generate(&data, wanted), wanted),
    };
    println!(
        "== cache ({} in {files} files, generated in {:.1} s; orrery server, one remote runner)",
        mib(bytes),
        started.elapsed().as_secs_f64()
    );
    let base = baseline(&data, dir.path());
    let local = orrery_run(
        &bin,
        &dir.path().join("local"),
        &data,
        bytes,
        &Storage::Local,
    );
    report("local blobs", bytes, &local, &base);
    if std::env::var("BENCH_CACHE_S3").is_ok_and(|v| v == "0") {
        return;
    }
    let s3_dir = dir.path().join("s3");
    std::fs::create_dir_all(&s3_dir).expect("bench dir");
    match start_moto(&s3_dir) {
        Some((moto, endpoint)) => {
            let s3 = orrery_run(&bin, &s3_dir, &data, bytes, &Storage::S3 { endpoint });
            drop(moto);
            report("S3, moto", bytes, &s3, &base);
        }
        None => println!("   (S3: skipped, moto_server is missing: pip install 'moto[server]')"),
    }
}
