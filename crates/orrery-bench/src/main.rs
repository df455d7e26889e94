//! `bench`: Orrery's benchmarks. Each prints its measurements, the baseline
//! measured in the same run, the ratio, and the target.
//!
//! Usage: `cargo build --release -p orrery -p orrery-bench && target/release/bench [all|config|exec]`.

mod config;
mod exec;

use std::time::Duration;

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let known = ["config", "exec"];
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
    let verdict = if value <= target { "ok" } else { "MISSED" };
    match baseline {
        Some((what, b)) => println!(
            "{name:<44} {:>12}   {what} {:>12}   ratio {:>5.2}x   target <= {}  [{verdict}]",
            ms(value),
            ms(b),
            value.as_secs_f64() / b.as_secs_f64(),
            ms(target)
        ),
        None => println!(
            "{name:<44} {:>12}   target <= {}  [{verdict}]",
            ms(value),
            ms(target)
        ),
    }
}
