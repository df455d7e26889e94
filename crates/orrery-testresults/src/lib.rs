//! Test results from JUnit XML.
//!
//! CircleCI's `store_test_results` step collects JUnit XML files. This crate turns
//! them into [`TestCase`]s (one per `<testcase>`) and derives what the server shows
//! and uses: a [`Summary`], a failures-first order ([`failures_first`]), timing
//! data for `circleci tests split --split-by=timings` ([`timings_tsv`],
//! [`merge_timings`]).
//!
//! The crate does no I/O beyond reading the byte slice or reader it is given, and
//! never panics on input: a file that is not JUnit XML is a [`JunitError`] saying
//! what is wrong and where. Parsing streams through quick-xml's reader; memory is
//! bounded by the input size limit, the nesting limit and the message limit
//! ([`Limits`]).
//!
//! ```
//! use orrery_testresults::{TestResult, parse_junit, summarize};
//!
//! let xml = br#"<testsuite name="t">
//!   <testcase classname="a.B" name="ok" time="0.5"/>
//!   <testcase classname="a.B" name="bad" time="1.5"><failure message="1 != 2"/></testcase>
//! </testsuite>"#;
//! let cases = parse_junit(xml, "junit.xml").expect("valid JUnit XML");
//! assert_eq!(cases[1].result, TestResult::Failure);
//! assert_eq!(cases[1].message.as_deref(), Some("1 != 2"));
//! assert_eq!(summarize(&cases).failures, 1);
//! ```
//!
//! Modules: [`model`] holds the data types the server stores; [`junit`] is the
//! parser; [`report`] holds the functions over parsed cases.

pub mod junit;
pub mod model;
pub mod report;

pub use junit::{
    JunitError, Limits, MAX_DEPTH, MAX_INPUT_BYTES, MAX_MESSAGE_BYTES, Position, parse_junit,
    parse_junit_reader, parse_junit_with,
};
pub use model::{Summary, TestCase, TestResult};
pub use report::{failures_first, merge_timings, summarize, timings_tsv};
