//! `circleci tests split`: this node's share of a list of tests.
//!
//! Every node of a parallel job runs the same command on the same list and must
//! agree on the split without talking to the others, so the split is a pure
//! function of the list, the weights and the node count. Each distinct name
//! goes to exactly one node; a node prints its names sorted.
//!
//! - By name: the sorted distinct names are dealt round-robin, name `i` to node
//!   `i % total`.
//! - By file size or by timings: greedy longest-processing-time. Names are taken
//!   by weight, heaviest first (ties by name), and each goes to the node with the
//!   smallest total weight so far (ties: fewest names, then lowest index).
//!
//! Timing data comes from `--timings-file`, else from
//! `$CIRCLE_INTERNAL_TASK_DATA/timings.tsv` (see [`crate::timings`]). Without
//! any data that matches a name, the split falls back to names with CircleCI's
//! message.
//!
//! Compatibility decisions: an explicit `--timings-file` that cannot be read
//! counts as no data (the same fallback, no extra message); an empty
//! `CIRCLE_NODE_INDEX` or `CIRCLE_NODE_TOTAL` counts as unset; `--show-counts`
//! prints one line of Orrery's own wording.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap};
use std::path::PathBuf;

use crate::args::{self, Parsed, Spec};
use crate::timings::{self, TestCase, TimingsType};
use crate::{Env, Failure, Io, Outcome};

/// CircleCI's message when there is no timing data to split by.
pub const FALLBACK_MESSAGE: &str =
    "Error auto-detecting timing type, falling back to weighting by name.";

/// The flags taking values that `tests split` and `tests run` share.
pub const VALUE_FLAGS: &[&str] = &[
    "index",
    "total",
    "split-by",
    "timings-type",
    "time-default",
    "timings-file",
];

/// The switches that `tests split` and `tests run` share.
pub const SWITCHES: &[&str] = &["show-counts"];

/// The help text of the split flags, shared with `tests run`.
pub const FLAGS_HELP: &str = "\
Flags:
  --index N              this node's index (default $CIRCLE_NODE_INDEX, else 0)
  --total N              the number of nodes (default $CIRCLE_NODE_TOTAL, else 1)
  --split-by WAY         name, filesize or timings (default name)
  --timings-type TYPE    classname, filename, testname or autodetect (default autodetect)
  --timings-file PATH    timing data (default $CIRCLE_INTERNAL_TASK_DATA/timings.tsv)
  --time-default D       the weight of a test without timing data, e.g. 10s, 1.5m, 100ms (default 0s)
  --show-counts          print this node's share of the count to stderr
";

const USAGE: &str = "\
Usage: circleci tests split [flags] [FILE]

Read whitespace-separated test names from FILE (or stdin) and print this node's
share, sorted, one per line. Every node, run with the same input, agrees on the
split, and every name goes to exactly one node.
";

/// How to weigh names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitBy {
    /// Round-robin over the sorted names.
    Name,
    /// By file size in bytes.
    Filesize,
    /// By seconds from timing data.
    Timings,
}

impl SplitBy {
    /// Parses a `--split-by` value (case-insensitive).
    pub fn parse(text: &str) -> Option<SplitBy> {
        match text.to_ascii_lowercase().as_str() {
            "name" => Some(SplitBy::Name),
            "filesize" => Some(SplitBy::Filesize),
            "timings" => Some(SplitBy::Timings),
            _ => None,
        }
    }
}

/// The settings of a split.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitOptions {
    /// This node's index, less than `total`.
    pub index: usize,
    /// The number of nodes, at least 1.
    pub total: usize,
    /// How to weigh names.
    pub split_by: SplitBy,
    /// Which timing data column names match.
    pub timings_type: TimingsType,
    /// Whether to print this node's counts to stderr.
    pub show_counts: bool,
    /// The weight, in seconds, of a name without timing data.
    pub time_default: f64,
    /// Where the timing data is, if given.
    pub timings_file: Option<PathBuf>,
}

impl SplitOptions {
    /// The options from parsed flags, with the node index and total defaulting
    /// to `CIRCLE_NODE_INDEX` and `CIRCLE_NODE_TOTAL`.
    pub fn from_flags(parsed: &Parsed, env: &Env) -> Result<SplitOptions, Failure> {
        let number = |flag: &str, var: &str, default: usize| -> Result<usize, Failure> {
            match (parsed.value(flag), env.var(var)) {
                (Some(v), _) => v.trim().parse().map_err(|_| {
                    Failure::Usage(format!("--{flag} must be a whole number, not \"{v}\""))
                }),
                (None, Some(v)) => v.trim().parse().map_err(|_| {
                    Failure::Usage(format!("{var} must be a whole number, not \"{v}\""))
                }),
                (None, None) => Ok(default),
            }
        };
        let index = number("index", "CIRCLE_NODE_INDEX", 0)?;
        let total = number("total", "CIRCLE_NODE_TOTAL", 1)?;
        if total == 0 {
            return Err(Failure::Usage("--total must be at least 1".to_string()));
        }
        if index >= total {
            return Err(Failure::Usage(format!(
                "--index ({index}) must be less than --total ({total})"
            )));
        }
        let split_by = match parsed.value("split-by") {
            None => SplitBy::Name,
            Some(v) => SplitBy::parse(v).ok_or_else(|| {
                Failure::Usage(format!(
                    "unknown --split-by value \"{v}\" (expected name, filesize or timings)"
                ))
            })?,
        };
        let timings_type = match parsed.value("timings-type") {
            None => TimingsType::Autodetect,
            Some(v) => TimingsType::parse(v).ok_or_else(|| {
                Failure::Usage(format!(
                    "unknown --timings-type value \"{v}\" (expected classname, filename, testname or autodetect)"
                ))
            })?,
        };
        let time_default = match parsed.value("time-default") {
            None => 0.0,
            Some(v) => timings::parse_duration(v).ok_or_else(|| {
                Failure::Usage(format!(
                    "--time-default must be a duration such as 10s, 1.5m or 100ms, not \"{v}\""
                ))
            })?,
        };
        Ok(SplitOptions {
            index,
            total,
            split_by,
            timings_type,
            show_counts: parsed.switch("show-counts"),
            time_default,
            timings_file: parsed.value("timings-file").map(|p| env.resolve(p)),
        })
    }
}

/// The result of a split for one node.
#[derive(Debug, PartialEq)]
pub struct Split {
    /// This node's names, sorted.
    pub items: Vec<String>,
    /// Lines for stderr: the fallback message, the counts.
    pub messages: Vec<String>,
}

/// Splits `names` (duplicates are kept once) and returns this node's share.
/// File sizes and timing data are read through `env`.
pub fn split<S: AsRef<str>>(names: &[S], opts: &SplitOptions, env: &Env) -> Split {
    let unique: Vec<String> = names
        .iter()
        .map(|n| n.as_ref().to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut messages = Vec::new();
    let weights: Option<Vec<f64>> = match opts.split_by {
        SplitBy::Name => None,
        SplitBy::Filesize => Some(
            unique
                .iter()
                .map(|n| std::fs::metadata(env.resolve(n)).map_or(0.0, |m| m.len() as f64))
                .collect(),
        ),
        SplitBy::Timings => {
            let found = load_timings(opts, env).and_then(|cases| {
                let ty = match opts.timings_type {
                    TimingsType::Autodetect => timings::autodetect(&unique),
                    ty => ty,
                };
                let found = timings::weights(&unique, &cases, ty);
                found.iter().any(Option::is_some).then_some(found)
            });
            match found {
                Some(found) => Some(
                    found
                        .into_iter()
                        .map(|w| w.unwrap_or(opts.time_default))
                        .collect(),
                ),
                None => {
                    messages.push(FALLBACK_MESSAGE.to_string());
                    None
                }
            }
        }
    };
    let nodes = match &weights {
        None => assign_by_name(unique.len(), opts.total),
        Some(w) => assign_weighted(&unique, w, opts.total),
    };
    let mut items = Vec::new();
    let mut weight = 0.0;
    for (i, name) in unique.iter().enumerate() {
        if nodes[i] == opts.index {
            items.push(name.clone());
            weight += weights.as_ref().map_or(0.0, |w| w[i]);
        }
    }
    if opts.show_counts {
        let mut line = format!(
            "node index {} of {} nodes: {} of {} items",
            opts.index,
            opts.total,
            items.len(),
            unique.len()
        );
        if let Some(w) = &weights {
            let sum: f64 = w.iter().sum();
            match opts.split_by {
                SplitBy::Filesize => line.push_str(&format!(", {weight} of {sum} bytes")),
                _ => line.push_str(&format!(", {weight:.3}s of {sum:.3}s")),
            }
        }
        messages.push(line);
    }
    Split { items, messages }
}

/// The timing data: the given file, else the task's `timings.tsv` if present.
/// `None` when there is no readable file.
fn load_timings(opts: &SplitOptions, env: &Env) -> Option<Vec<TestCase>> {
    let path = match &opts.timings_file {
        Some(path) => path.clone(),
        None => PathBuf::from(env.var("CIRCLE_INTERNAL_TASK_DATA")?).join("timings.tsv"),
    };
    let bytes = std::fs::read(path).ok()?;
    Some(timings::parse_timings(&String::from_utf8_lossy(&bytes)))
}

/// The node of each of `count` sorted names, dealt round-robin.
pub fn assign_by_name(count: usize, total: usize) -> Vec<usize> {
    (0..count).map(|i| i % total).collect()
}

/// The node of each name by greedy longest-processing-time over `weights`
/// (parallel to `names`).
pub fn assign_weighted<S: AsRef<str>>(names: &[S], weights: &[f64], total: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| {
        weights[b]
            .total_cmp(&weights[a])
            .then_with(|| names[a].as_ref().cmp(names[b].as_ref()))
    });
    let mut heap: BinaryHeap<Reverse<Load>> = (0..total)
        .map(|node| {
            Reverse(Load {
                weight: 0.0,
                count: 0,
                node,
            })
        })
        .collect();
    let mut nodes = vec![0; names.len()];
    for i in order {
        let Reverse(mut load) = heap.pop().expect("total is at least 1");
        nodes[i] = load.node;
        load.weight += weights[i];
        load.count += 1;
        heap.push(Reverse(load));
    }
    nodes
}

/// A node's load so far, ordered by weight, then count, then index.
#[derive(Debug)]
struct Load {
    weight: f64,
    count: usize,
    node: usize,
}

impl Ord for Load {
    fn cmp(&self, other: &Load) -> Ordering {
        self.weight
            .total_cmp(&other.weight)
            .then(self.count.cmp(&other.count))
            .then(self.node.cmp(&other.node))
    }
}

impl PartialOrd for Load {
    fn partial_cmp(&self, other: &Load) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Load {
    fn eq(&self, other: &Load) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Load {}

/// Runs `tests split` with the arguments after `split`.
pub fn command(argv: &[String], io: &mut Io<'_>, env: &Env) -> Outcome {
    let parsed = args::parse(
        argv,
        &Spec {
            values: VALUE_FLAGS,
            switches: SWITCHES,
        },
    )?;
    if parsed.help {
        write!(io.stdout, "{USAGE}\n{FLAGS_HELP}").map_err(Failure::write)?;
        return Ok(0);
    }
    let opts = SplitOptions::from_flags(&parsed, env)?;
    if parsed.positionals.len() > 1 {
        return Err(Failure::Usage(format!(
            "tests split takes at most one file, got {}",
            parsed.positionals.len()
        )));
    }
    let input = crate::read_input(parsed.positionals.first().map(String::as_str), io, env)?;
    let text = String::from_utf8_lossy(&input);
    let names: Vec<&str> = text.split_whitespace().collect();
    let result = split(&names, &opts, env);
    for line in &result.messages {
        writeln!(io.stderr, "{line}").map_err(Failure::write)?;
    }
    for item in &result.items {
        writeln!(io.stdout, "{item}").map_err(Failure::write)?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TempDir, env_with, run_cmd};
    use std::path::Path;

    fn opts(index: usize, total: usize, split_by: SplitBy) -> SplitOptions {
        SplitOptions {
            index,
            total,
            split_by,
            timings_type: TimingsType::Autodetect,
            show_counts: false,
            time_default: 0.0,
            timings_file: None,
        }
    }

    /// The shares of every node of a split.
    fn all_shares(names: &[&str], base: &SplitOptions, env: &Env) -> Vec<Vec<String>> {
        (0..base.total)
            .map(|index| {
                let o = SplitOptions {
                    index,
                    ..base.clone()
                };
                split(names, &o, env).items
            })
            .collect()
    }

    fn assert_partition(shares: &[Vec<String>], names: &[&str]) {
        let mut all: Vec<&str> = shares.iter().flatten().map(String::as_str).collect();
        all.sort();
        let mut want: Vec<&str> = names.to_vec();
        want.sort();
        want.dedup();
        assert_eq!(all, want, "every name on exactly one node");
        for share in shares {
            let mut sorted = share.clone();
            sorted.sort();
            assert_eq!(*share, sorted, "a share is printed sorted");
        }
    }

    #[test]
    fn by_name_is_round_robin_over_sorted_names_and_a_partition() {
        let names = ["e", "b", "a", "d", "c", "b", "f", "g"];
        let env = Env::default();
        let shares = all_shares(&names, &opts(0, 3, SplitBy::Name), &env);
        assert_eq!(
            shares,
            [vec!["a", "d", "g"], vec!["b", "e"], vec!["c", "f"]]
        );
        assert_partition(&shares, &names);
        // Deterministic: the same input in another order gives the same split.
        let mut reversed = names;
        reversed.reverse();
        assert_eq!(
            all_shares(&reversed, &opts(0, 3, SplitBy::Name), &env),
            shares
        );
        // More nodes than names: some nodes get nothing.
        let shares = all_shares(&["x", "y"], &opts(0, 4, SplitBy::Name), &env);
        assert_eq!(shares[2], Vec::<String>::new());
        assert_partition(&shares, &["x", "y"]);
    }

    /// The smallest possible largest node total, by brute force.
    fn best_makespan(weights: &[f64], total: usize) -> f64 {
        fn go(weights: &[f64], loads: &mut Vec<f64>, best: &mut f64) {
            let Some((&w, rest)) = weights.split_first() else {
                let max = loads.iter().cloned().fold(0.0, f64::max);
                *best = best.min(max);
                return;
            };
            for i in 0..loads.len() {
                // Nodes with equal loads are interchangeable; try one of them.
                if loads[..i].contains(&loads[i]) || loads[i] + w >= *best {
                    continue;
                }
                loads[i] += w;
                go(rest, loads, best);
                loads[i] -= w;
            }
        }
        let mut best = f64::INFINITY;
        go(weights, &mut vec![0.0; total], &mut best);
        best
    }

    fn makespan(names: &[String], weights: &[f64], shares: &[Vec<String>]) -> f64 {
        shares
            .iter()
            .map(|share| {
                share
                    .iter()
                    .map(|n| weights[names.iter().position(|x| x == n).unwrap()])
                    .sum::<f64>()
            })
            .fold(0.0, f64::max)
    }

    /// A suite of 20 test files with known timings.
    const SUITE: [(&str, f64); 20] = [
        ("tests/test_api.py", 41.2),
        ("tests/test_auth.py", 12.9),
        ("tests/test_billing.py", 33.0),
        ("tests/test_cache.py", 3.1),
        ("tests/test_cli.py", 7.7),
        ("tests/test_config.py", 2.4),
        ("tests/test_db.py", 55.8),
        ("tests/test_email.py", 9.3),
        ("tests/test_export.py", 18.6),
        ("tests/test_files.py", 14.0),
        ("tests/test_i18n.py", 1.2),
        ("tests/test_import.py", 22.5),
        ("tests/test_jobs.py", 30.4),
        ("tests/test_models.py", 26.1),
        ("tests/test_queue.py", 11.0),
        ("tests/test_search.py", 47.9),
        ("tests/test_signup.py", 6.6),
        ("tests/test_storage.py", 19.8),
        ("tests/test_ui.py", 38.3),
        ("tests/test_utils.py", 0.9),
    ];

    fn suite_tsv(suite: &[(&str, f64)]) -> String {
        // Each file's time is spread over two test cases to exercise summing.
        suite
            .iter()
            .map(|(file, secs)| {
                format!(
                    "{file}\tSuite\ttest_one\t{}\n{file}\tSuite\ttest_two\t{}\n",
                    secs * 0.25,
                    secs * 0.75
                )
            })
            .collect()
    }

    #[test]
    fn by_timings_balances_a_known_suite_close_to_the_best_split() {
        let dir = TempDir::new("timings");
        dir.write("timings.tsv", &suite_tsv(&SUITE));
        let env = env_with(
            &[("CIRCLE_INTERNAL_TASK_DATA", &dir.path().to_string_lossy())],
            dir.path(),
        );
        let names: Vec<&str> = SUITE.iter().map(|(n, _)| *n).collect();
        let base = opts(0, 3, SplitBy::Timings);
        let shares = all_shares(&names, &base, &env);
        assert_partition(&shares, &names);

        let all_names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let weights: Vec<f64> = SUITE.iter().map(|(_, w)| *w).collect();
        let got = makespan(&all_names, &weights, &shares);
        // No split beats the average load or the heaviest single test.
        let sum: f64 = weights.iter().sum();
        let bound = (sum / 3.0).max(weights.iter().cloned().fold(0.0, f64::max));
        assert!(
            got <= bound * 1.10,
            "largest node {got:.1}s, lower bound {bound:.1}s"
        );

        // Against the true optimum on a smaller suite.
        let small = &SUITE[..11];
        let small_names: Vec<&str> = small.iter().map(|(n, _)| *n).collect();
        let small_weights: Vec<f64> = small.iter().map(|(_, w)| *w).collect();
        let shares = all_shares(&small_names, &base, &env);
        assert_partition(&shares, &small_names);
        let owned: Vec<String> = small_names.iter().map(|s| s.to_string()).collect();
        let got = makespan(&owned, &small_weights, &shares);
        let best = best_makespan(&small_weights, 3);
        assert!(
            got <= best * 1.10,
            "largest node {got:.1}s, best {best:.1}s"
        );
    }

    #[test]
    fn weighted_assignment_follows_the_greedy_rule() {
        // Heaviest first; ties in weight by name; equal loads go to fewer
        // names, then the lower index.
        let names = ["a", "b", "c", "d", "e"];
        let weights = [5.0, 5.0, 4.0, 1.0, 0.0];
        assert_eq!(assign_weighted(&names, &weights, 2), [0, 1, 0, 1, 1]);
        let zeros = [0.0; 5];
        assert_eq!(assign_weighted(&names, &zeros, 2), [0, 1, 0, 1, 0]);
    }

    #[test]
    fn timings_type_autodetect_picks_filename_or_classname() {
        let dir = TempDir::new("autodetect");
        dir.write(
            "t.tsv",
            "a.py\tcom.A\tt\t10\nb.py\tcom.B\tt\t1\nc.py\tcom.C\tt\t1\n",
        );
        let env = env_with(&[], dir.path());
        let mut o = opts(0, 2, SplitBy::Timings);
        o.timings_file = Some(dir.path().join("t.tsv"));
        // File names: a.py (10s) alone on node 0.
        let s = split(&["a.py", "b.py", "c.py"], &o, &env);
        assert_eq!(s.items, ["a.py"]);
        assert!(s.messages.is_empty(), "{:?}", s.messages);
        // Class names: com.A (10s) alone on node 0.
        let s = split(&["com.A", "com.B", "com.C"], &o, &env);
        assert_eq!(s.items, ["com.A"]);
        assert!(s.messages.is_empty());
        // Forcing the wrong type finds no data: fallback to names.
        o.timings_type = TimingsType::Classname;
        let s = split(&["a.py", "b.py", "c.py"], &o, &env);
        assert_eq!(s.items, ["a.py", "c.py"]);
        assert_eq!(s.messages, [FALLBACK_MESSAGE]);
    }

    #[test]
    fn no_timing_data_falls_back_to_names_with_circlecis_message() {
        let dir = TempDir::new("nodata");
        let env = env_with(
            &[("CIRCLE_INTERNAL_TASK_DATA", &dir.path().to_string_lossy())],
            dir.path(),
        );
        let r = run_cmd(
            &[
                "tests",
                "split",
                "--split-by=timings",
                "--index=1",
                "--total=2",
            ],
            "c b a d",
            &env,
        );
        assert_eq!(r.code, 0);
        assert_eq!(r.stdout, "b\nd\n");
        assert_eq!(
            r.stderr,
            "Error auto-detecting timing type, falling back to weighting by name.\n"
        );
        // A missing explicit file is the same.
        let r = run_cmd(
            &[
                "tests",
                "split",
                "--split-by",
                "timings",
                "--timings-file",
                "nope.tsv",
            ],
            "a",
            &env,
        );
        assert_eq!((r.code, r.stdout.as_str()), (0, "a\n"));
        assert_eq!(r.stderr, format!("{FALLBACK_MESSAGE}\n"));
    }

    #[test]
    fn time_default_weighs_names_without_data() {
        let dir = TempDir::new("timedefault");
        dir.write("timings.tsv", "known.py\tK\tt\t10\n");
        let env = env_with(
            &[("CIRCLE_INTERNAL_TASK_DATA", &dir.path().to_string_lossy())],
            dir.path(),
        );
        let names = ["known.py", "new1.py", "new2.py", "new3.py"];
        // Unknown names weigh nothing: all of them join known.py's rival node.
        let r = run_cmd(
            &[
                "tests",
                "split",
                "--split-by=timings",
                "--total=2",
                "--index=1",
            ],
            &names.join("\n"),
            &env,
        );
        assert_eq!(r.stdout, "new1.py\nnew2.py\nnew3.py\n");
        // At 6s each, known.py (10s) shares its node with one of them.
        let r = run_cmd(
            &[
                "tests",
                "split",
                "--split-by=timings",
                "--total=2",
                "--index=0",
                "--time-default=6s",
            ],
            &names.join("\n"),
            &env,
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout, "known.py\nnew3.py\n");
        assert!(r.stderr.is_empty(), "{}", r.stderr);
    }

    #[test]
    fn by_filesize_balances_bytes() {
        let dir = TempDir::new("filesize");
        dir.write("big", &"x".repeat(1000));
        dir.write("mid", &"x".repeat(600));
        dir.write("small1", &"x".repeat(300));
        dir.write("small2", &"x".repeat(300));
        let env = env_with(&[], dir.path());
        let names = ["big", "mid", "small1", "small2", "missing"];
        let shares = all_shares(&names, &opts(0, 2, SplitBy::Filesize), &env);
        assert_partition(&shares, &names);
        assert_eq!(
            shares,
            [vec!["big", "missing"], vec!["mid", "small1", "small2"]]
        );
        // Absolute names work too.
        let abs = dir.path().join("big").to_string_lossy().into_owned();
        let s = split(
            &[abs.as_str(), "mid"],
            &opts(1, 2, SplitBy::Filesize),
            &Env::default(),
        );
        assert_eq!(s.items, ["mid"]);
    }

    #[test]
    fn show_counts_and_defaults_from_the_environment() {
        let env = env_with(
            &[("CIRCLE_NODE_INDEX", "2"), ("CIRCLE_NODE_TOTAL", "3")],
            Path::new(""),
        );
        let r = run_cmd(&["tests", "split", "--show-counts"], "a b c d e", &env);
        assert_eq!(r.code, 0);
        assert_eq!(r.stdout, "c\n");
        assert_eq!(r.stderr, "node index 2 of 3 nodes: 1 of 5 items\n");
        // Flags override the environment.
        let r = run_cmd(&["tests", "split", "--index", "0"], "a b c d e", &env);
        assert_eq!(r.stdout, "a\nd\n");
    }

    #[test]
    fn reads_names_from_a_file_argument() {
        let dir = TempDir::new("splitfile");
        dir.write("list.txt", "z\ny\n\n  x  \n");
        let env = env_with(&[], dir.path());
        let r = run_cmd(&["tests", "split", "list.txt"], "ignored", &env);
        assert_eq!((r.code, r.stdout.as_str()), (0, "x\ny\nz\n"));
        let r = run_cmd(&["tests", "split", "absent.txt"], "", &env);
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains("cannot read absent.txt"), "{}", r.stderr);
    }

    #[test]
    fn usage_errors() {
        let env = Env::default();
        for (args, message) in [
            (
                &["--index=3", "--total=3"][..],
                "--index (3) must be less than --total (3)",
            ),
            (&["--total=0"][..], "--total must be at least 1"),
            (&["--index=x"][..], "--index must be a whole number"),
            (
                &["--split-by=size"][..],
                "unknown --split-by value \"size\"",
            ),
            (&["--timings-type=file"][..], "unknown --timings-type value"),
            (
                &["--time-default=soon"][..],
                "--time-default must be a duration",
            ),
            (&["--bogus"][..], "unknown flag --bogus"),
            (&["a", "b"][..], "at most one file"),
        ] {
            let argv: Vec<&str> = ["tests", "split"]
                .into_iter()
                .chain(args.iter().copied())
                .collect();
            let r = run_cmd(&argv, "", &env);
            assert_eq!(r.code, 2, "{args:?}");
            assert!(r.stderr.contains(message), "{args:?}: {}", r.stderr);
            assert!(r.stdout.is_empty());
        }
        let env = env_with(
            &[("CIRCLE_NODE_INDEX", "4"), ("CIRCLE_NODE_TOTAL", "4")],
            Path::new(""),
        );
        let r = run_cmd(&["tests", "split"], "a", &env);
        assert_eq!(r.code, 2);
    }
}
