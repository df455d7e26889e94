//! Functions over parsed test cases: the [`summarize`] counts, the
//! [`failures_first`] order the UI shows, and timing data for
//! `circleci tests split --split-by=timings` ([`timings_tsv`], [`merge_timings`]).

use std::cmp::Ordering;
use std::collections::HashSet;

use crate::model::{Summary, TestCase, TestResult};

/// Counts cases by result and adds up their run times.
pub fn summarize(cases: &[TestCase]) -> Summary {
    let mut summary = Summary {
        tests: cases.len(),
        ..Summary::default()
    };
    for case in cases {
        match case.result {
            TestResult::Success => {}
            TestResult::Failure => summary.failures += 1,
            TestResult::Error => summary.errors += 1,
            TestResult::Skipped => summary.skipped += 1,
        }
        summary.run_time += case.run_time;
    }
    summary
}

/// Sorts cases for display: failures and errors first, then skipped cases, then
/// successes.
///
/// Within each group cases are ordered by `(file, classname, name)`, a case without
/// a file before one with a file; the sort is stable, so cases with the same key
/// keep their order.
pub fn failures_first(cases: &mut [TestCase]) {
    cases.sort_by(|a, b| {
        group(a.result)
            .cmp(&group(b.result))
            .then_with(|| compare_keys(a, b))
    });
}

/// The display group of a result: 0 for failed, 1 for skipped, 2 for passed.
fn group(result: TestResult) -> u8 {
    match result {
        TestResult::Failure | TestResult::Error => 0,
        TestResult::Skipped => 1,
        TestResult::Success => 2,
    }
}

fn compare_keys(a: &TestCase, b: &TestCase) -> Ordering {
    a.key().cmp(&b.key())
}

/// Renders timing data, one line per case in the given order:
/// `file<TAB>classname<TAB>name<TAB>seconds`, each line ending in a newline.
///
/// A missing file is an empty field. Tabs, carriage returns and newlines inside a
/// field become spaces, so every line has exactly four fields. Seconds are written
/// in plain decimal notation (Rust's shortest round-trip form, never an exponent);
/// a negative or non-finite run time is written as `0`. This is the format the
/// in-job `circleci tests split --split-by=timings` reads.
pub fn timings_tsv(cases: &[TestCase]) -> String {
    let mut out = String::new();
    for case in cases {
        push_field(&mut out, case.file.as_deref().unwrap_or(""));
        out.push('\t');
        push_field(&mut out, &case.classname);
        out.push('\t');
        push_field(&mut out, &case.name);
        out.push('\t');
        let seconds = if case.run_time.is_finite() && case.run_time > 0.0 {
            case.run_time
        } else {
            0.0
        };
        out.push_str(&seconds.to_string());
        out.push('\n');
    }
    out
}

fn push_field(out: &mut String, field: &str) {
    out.extend(field.chars().map(|c| match c {
        '\t' | '\n' | '\r' => ' ',
        c => c,
    }));
}

/// Merges the cases of several earlier runs into one timing set, the latest run
/// first in `history`.
///
/// For each `(file, classname, name)` the most recent case is kept: the first one
/// met when reading the runs in order, each run in its own order (so within one
/// run, a test reported twice keeps its first entry). The result keeps the cases'
/// other fields, whatever their result; the order is that of first appearance.
pub fn merge_timings(history: &[&[TestCase]]) -> Vec<TestCase> {
    let mut seen = HashSet::new();
    let mut merged = Vec::new();
    for run in history {
        for case in run.iter() {
            if seen.insert(case.key()) {
                merged.push(case.clone());
            }
        }
    }
    merged
}
