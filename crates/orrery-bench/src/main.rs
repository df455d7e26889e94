//! `bench`: Orrery's benchmarks. Each prints its measurements, the baseline
//! measured in the same run, the ratio, and the target.
//!
//! Usage: `cargo build --release -p orrery -p orrery-bench && target/release/bench [all|config|exec|server|cache|web]`.

mod cache;
mod config;
mod exec;
mod server;
mod web;

use std::time::Duration;

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let known = ["config", "exec", "server", "cache", "web"];
    if which != "all" && !known.contains(&which.as_str()) {
        eprintln!("usage: bench [all|{}]", known.join("|"));
        std::process::exit(2);
    }
    if which == "all" || which == "config" {
        config::run();
    }
    if which == "all" || which == "exec" {
        exec::run();
    }
    if which == "all" || which == "server" {
        server::run();
    }
    if which == "all" || which == "web" {
        web::run();
    }
    if which == "all" || which == "cache" {
        cache::run();
    }
}

/// The fastest of `runs` timings of `f`: on a shared machine the minimum is the
/// most repeatable estimate of what the code itself costs.
pub fn fastest(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[0]
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// One result line: name, value, baseline, ratio, target and whether it is met.
pub fn report(name: &str, value: Duration, baseline: Option<(&str, Duration)>, target: Duration) {
    report_noted(name, value, baseline, target, "");
}

/// [`report`] with a note after the target (where the target comes from).
pub fn report_noted(
    name: &str,
    value: Duration,
    baseline: Option<(&str, Duration)>,
    target: Duration,
    target_note: &str,
) {
    let verdict = if value <= target { "ok" } else { "MISSED" };
    match baseline {
        Some((what, b)) => println!(
            "{name:<44} {:>12}   {what} {:>12}   ratio {:>5.2}x   target <= {}{target_note}  [{verdict}]",
            ms(value),
            ms(b),
            value.as_secs_f64() / b.as_secs_f64(),
            ms(target)
        ),
        None => println!(
            "{name:<44} {:>12}   target <= {}{target_note}  [{verdict}]",
            ms(value),
            ms(target)
        ),
    }
}

/// One result line where more is better (a rate): name, value, the baseline
/// measured in the same run (ratio: ours over theirs), and the target.
pub fn report_rate(
    name: &str,
    value: f64,
    unit: &str,
    baseline: Option<(&str, f64)>,
    target: f64,
    target_note: &str,
) {
    let verdict = if value >= target { "ok" } else { "MISSED" };
    let shown = |v: f64| format!("{v:.0} {unit}");
    match baseline {
        Some((what, b)) => println!(
            "{name:<44} {:>12}   {what} {:>12}   ratio {:>5.2}x   target >= {}{target_note}  [{verdict}]",
            shown(value),
            shown(b),
            value / b,
            shown(target)
        ),
        None => println!(
            "{name:<44} {:>12}   target >= {}{target_note}  [{verdict}]",
            shown(value),
            shown(target)
        ),
    }
}

/// One result line of memory, in MiB (written MB, as the targets are).
pub fn report_memory(name: &str, kib: u64, target_mib: f64) {
    let mib = kib as f64 / 1024.0;
    let verdict = if mib <= target_mib { "ok" } else { "MISSED" };
    println!(
        "{name:<44} {:>12}   target <= {target_mib:.1} MB  [{verdict}]",
        format!("{mib:.1} MB")
    );
}
