//! The data types of test results: one [`TestCase`] per `<testcase>`, its
//! [`TestResult`], and the [`Summary`] of a set of cases.
//!
//! All of them serialize with serde so the server can store them; the field names
//! follow CircleCI's test metadata API (`classname`, `name`, `file`, `result`,
//! `message`, `run_time`, `source`).

use serde::{Deserialize, Serialize};

/// The outcome of one test case.
///
/// Serialized as `"success"`, `"failure"`, `"error"` or `"skipped"`. CircleCI's API
/// knows only `success`, `failure` and `skipped`; Orrery keeps [`TestResult::Error`]
/// (an unexpected exception rather than a failed assertion, JUnit's `<error>`)
/// distinct in storage, and the API maps it to `failure`
/// ([`TestResult::api_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestResult {
    /// The test passed (no `<failure>`, `<error>` or `<skipped>` child).
    Success,
    /// The test failed (a `<failure>` child).
    Failure,
    /// The test errored (an `<error>` child).
    Error,
    /// The test was skipped (a `<skipped>` child).
    Skipped,
}

impl TestResult {
    /// The name Orrery stores: `success`, `failure`, `error` or `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            TestResult::Success => "success",
            TestResult::Failure => "failure",
            TestResult::Error => "error",
            TestResult::Skipped => "skipped",
        }
    }

    /// The name CircleCI's API uses, where an error counts as a failure.
    pub fn api_str(self) -> &'static str {
        match self {
            TestResult::Error => "failure",
            other => other.as_str(),
        }
    }

    /// Whether the test failed or errored.
    pub fn is_failed(self) -> bool {
        matches!(self, TestResult::Failure | TestResult::Error)
    }
}

/// One test case from a JUnit XML file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestCase {
    /// The `classname` attribute (`class` when only that is present), else empty.
    pub classname: String,
    /// The `name` attribute, else empty.
    pub name: String,
    /// The test's file: the testcase's `file` (or `filepath`) attribute, else the
    /// nearest enclosing `<testsuite>`/`<testsuites>` that has one, else `None`.
    /// Kept as written (for example RSpec's `./spec/x_spec.rb`).
    pub file: Option<String>,
    /// The outcome.
    pub result: TestResult,
    /// The failure, error or skip message: the `message` attribute and the element's
    /// text (see the parser's rules in [`crate::junit`]), or `None`.
    pub message: Option<String>,
    /// The `time` attribute in seconds; 0 when it is missing or unreadable.
    pub run_time: f64,
    /// Where the case came from (a file or reporter name), set by the caller.
    pub source: String,
}

impl TestCase {
    /// The identity of a test across runs: `(file, classname, name)`.
    pub fn key(&self) -> (Option<&str>, &str, &str) {
        (self.file.as_deref(), &self.classname, &self.name)
    }
}

/// Counts and total time of a set of test cases.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// All cases.
    pub tests: usize,
    /// Cases whose result is [`TestResult::Failure`].
    pub failures: usize,
    /// Cases whose result is [`TestResult::Error`].
    pub errors: usize,
    /// Cases whose result is [`TestResult::Skipped`].
    pub skipped: usize,
    /// The sum of the cases' run times in seconds (not the suites' `time`
    /// attributes, which may include setup).
    pub run_time: f64,
}

impl Summary {
    /// Cases that passed: all cases but failures, errors and skipped ones.
    pub fn passed(&self) -> usize {
        self.tests
            .saturating_sub(self.failures + self.errors + self.skipped)
    }
}
