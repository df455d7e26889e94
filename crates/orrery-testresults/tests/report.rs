//! The functions over parsed cases: summaries, the failures-first order, timing
//! data and merging timings across runs.

use orrery_testresults::{
    Summary, TestCase, TestResult, failures_first, merge_timings, parse_junit, summarize,
    timings_tsv,
};

fn case(
    file: Option<&str>,
    classname: &str,
    name: &str,
    result: TestResult,
    run_time: f64,
) -> TestCase {
    TestCase {
        classname: classname.into(),
        name: name.into(),
        file: file.map(Into::into),
        result,
        message: None,
        run_time,
        source: "junit.xml".into(),
    }
}

fn names(cases: &[TestCase]) -> Vec<&str> {
    cases.iter().map(|c| c.name.as_str()).collect()
}

#[test]
fn summarize_counts_and_adds() {
    assert_eq!(summarize(&[]), Summary::default());
    let cases = [
        case(None, "C", "a", TestResult::Success, 0.5),
        case(None, "C", "b", TestResult::Failure, 1.0),
        case(None, "C", "c", TestResult::Error, 0.25),
        case(None, "C", "d", TestResult::Skipped, 0.0),
        case(None, "C", "e", TestResult::Failure, 2.0),
        case(None, "C", "f", TestResult::Success, 0.25),
    ];
    let summary = summarize(&cases);
    assert_eq!(
        summary,
        Summary {
            tests: 6,
            failures: 2,
            errors: 1,
            skipped: 1,
            run_time: 4.0,
        }
    );
    assert_eq!(summary.passed(), 2);
}

#[test]
fn failures_first_groups_then_sorts_stably() {
    let mut cases = vec![
        case(Some("b.py"), "B", "pass2", TestResult::Success, 0.0),
        case(Some("a.py"), "A", "skip", TestResult::Skipped, 0.0),
        case(Some("b.py"), "B", "fail", TestResult::Failure, 0.0),
        case(Some("a.py"), "A", "pass1", TestResult::Success, 0.0),
        case(Some("a.py"), "A", "error", TestResult::Error, 0.0),
        case(None, "Z", "nofile-fail", TestResult::Failure, 0.0),
        case(Some("a.py"), "A", "dup", TestResult::Success, 1.0),
        case(Some("a.py"), "A", "dup", TestResult::Success, 2.0),
    ];
    failures_first(&mut cases);
    assert_eq!(
        names(&cases),
        [
            "nofile-fail",
            "error",
            "fail",
            "skip",
            "dup",
            "dup",
            "pass1",
            "pass2"
        ]
    );
    // Equal keys keep their order.
    assert_eq!((cases[4].run_time, cases[5].run_time), (1.0, 2.0));
    // Classname before name within a file.
    let mut cases = vec![
        case(Some("f"), "B", "a", TestResult::Success, 0.0),
        case(Some("f"), "A", "z", TestResult::Success, 0.0),
    ];
    failures_first(&mut cases);
    assert_eq!(names(&cases), ["z", "a"]);
}

#[test]
fn failures_first_on_a_real_report() {
    let mut cases = parse_junit(include_bytes!("fixtures/pytest.xml"), "pytest.xml").unwrap();
    failures_first(&mut cases);
    let results: Vec<_> = cases.iter().map(|c| c.result).collect();
    assert_eq!(
        results,
        [
            TestResult::Error,
            TestResult::Failure,
            TestResult::Skipped,
            TestResult::Success,
            TestResult::Success,
        ]
    );
    // tests/test_db.py sorts before tests/test_parser.py.
    assert_eq!(cases[0].name, "test_connects");
}

#[test]
fn timings_tsv_format() {
    assert_eq!(timings_tsv(&[]), "");
    let cases = [
        case(
            Some("tests/test_a.py"),
            "tests.test_a",
            "test_one",
            TestResult::Success,
            0.013,
        ),
        case(
            None,
            "pkg/cart",
            "TestTotal/with discount",
            TestResult::Failure,
            1.5,
        ),
        case(Some("a\tb.py"), "C\nD", "n\r\ne", TestResult::Success, 0.0),
        case(None, "", "slow", TestResult::Success, 1234.5),
        case(None, "", "tiny", TestResult::Success, 1e-7),
        case(None, "", "broken", TestResult::Success, f64::NAN),
        case(None, "", "negative", TestResult::Success, -2.0),
    ];
    assert_eq!(
        timings_tsv(&cases),
        "tests/test_a.py\ttests.test_a\ttest_one\t0.013\n\
         \tpkg/cart\tTestTotal/with discount\t1.5\n\
         a b.py\tC D\tn  e\t0\n\
         \t\tslow\t1234.5\n\
         \t\ttiny\t0.0000001\n\
         \t\tbroken\t0\n\
         \t\tnegative\t0\n"
    );
    for line in timings_tsv(&cases).lines() {
        assert_eq!(line.split('\t').count(), 4, "{line:?}");
    }
}

#[test]
fn timings_tsv_of_a_real_report() {
    let cases = parse_junit(include_bytes!("fixtures/rspec.xml"), "rspec.xml").unwrap();
    let tsv = timings_tsv(&cases);
    assert_eq!(
        tsv.lines().next(),
        Some(
            "./spec/models/user_spec.rb\tspec.models.user_spec\tUser#full_name joins first and last name\t0.012345"
        )
    );
    assert_eq!(tsv.lines().count(), 4);
}

#[test]
fn merge_timings_keeps_the_most_recent() {
    let latest = [
        case(Some("a.py"), "A", "one", TestResult::Success, 1.0),
        case(Some("a.py"), "A", "two", TestResult::Failure, 2.0),
        case(Some("a.py"), "A", "one", TestResult::Success, 9.0),
    ];
    let older = [
        case(Some("a.py"), "A", "two", TestResult::Success, 20.0),
        case(Some("b.py"), "B", "three", TestResult::Success, 30.0),
        // The same name in another file is another test.
        case(Some("c.py"), "A", "one", TestResult::Success, 40.0),
    ];
    let oldest = [
        case(Some("b.py"), "B", "three", TestResult::Success, 300.0),
        case(None, "D", "four", TestResult::Skipped, 400.0),
    ];
    let merged = merge_timings(&[&latest, &older, &oldest]);
    let summary: Vec<_> = merged
        .iter()
        .map(|c| (c.file.as_deref(), c.name.as_str(), c.run_time))
        .collect();
    assert_eq!(
        summary,
        [
            (Some("a.py"), "one", 1.0),
            (Some("a.py"), "two", 2.0),
            (Some("b.py"), "three", 30.0),
            (Some("c.py"), "one", 40.0),
            (None, "four", 400.0),
        ]
    );
    // The kept case is the recent one, result and all.
    assert_eq!(merged[1].result, TestResult::Failure);
    assert!(merge_timings(&[]).is_empty());
    assert!(merge_timings(&[&[], &[]]).is_empty());
}

#[test]
fn merged_timings_feed_the_tsv() {
    let latest = parse_junit(include_bytes!("fixtures/gotestsum.xml"), "run2").unwrap();
    let mut older = latest.clone();
    for case in &mut older {
        case.run_time += 100.0;
    }
    older.push(case(
        None,
        "github.com/acme/shop/internal/gone",
        "TestOld",
        TestResult::Success,
        7.0,
    ));
    let merged = merge_timings(&[&latest, &older]);
    assert_eq!(merged.len(), latest.len() + 1);
    assert_eq!(&merged[..latest.len()], &latest[..]);
    assert!(timings_tsv(&merged).ends_with("\tgithub.com/acme/shop/internal/gone\tTestOld\t7\n"));
}
