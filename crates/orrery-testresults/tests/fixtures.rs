//! Real reporters' JUnit dialects: each fixture under `tests/fixtures/` is written
//! the way its tool writes reports, and each test checks the counts, a failure's
//! message, files where the dialect has them, and times.

use orrery_testresults::{
    Limits, Summary, TestCase, TestResult, parse_junit, parse_junit_reader, summarize,
};

fn parse(xml: &[u8], source: &str) -> Vec<TestCase> {
    let cases = parse_junit(xml, source).unwrap_or_else(|e| panic!("{source}: {e}"));
    // The streaming reader reads the same cases.
    let streamed = parse_junit_reader(xml, source, &Limits::default())
        .unwrap_or_else(|e| panic!("{source} (reader): {e}"));
    assert_eq!(cases, streamed, "{source}: slice and reader disagree");
    assert!(cases.iter().all(|c| c.source == source));
    cases
}

fn find<'a>(cases: &'a [TestCase], name: &str) -> &'a TestCase {
    cases
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case named {name:?}"))
}

fn counts(summary: &Summary) -> (usize, usize, usize, usize) {
    (
        summary.tests,
        summary.failures,
        summary.errors,
        summary.skipped,
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn ant() {
    let cases = parse(include_bytes!("fixtures/ant.xml"), "ant.xml");
    let summary = summarize(&cases);
    assert_eq!(counts(&summary), (3, 1, 0, 0));
    let failed = find(&cases, "testCapitalize");
    assert_eq!(failed.result, TestResult::Failure);
    assert_eq!(failed.classname, "org.example.text.StringUtilsTest");
    assert_eq!(failed.file, None);
    assert_eq!(
        failed.message.as_deref(),
        Some(
            "expected:<[H]ello> but was:<[h]ello>\n\n\
             junit.framework.ComparisonFailure: expected:<[H]ello> but was:<[h]ello>\n\
             \tat org.example.text.StringUtilsTest.testCapitalize(StringUtilsTest.java:31)"
        )
    );
    assert!(close(failed.run_time, 0.009));
    // Old Surefire/Ant versions wrote locale-formatted times with thousands separators.
    assert!(close(find(&cases, "testSlowPath").run_time, 1153.25));
    assert!(close(summary.run_time, 0.004 + 1153.25 + 0.009));
}

#[test]
fn surefire() {
    let cases = parse(include_bytes!("fixtures/surefire.xml"), "surefire.xml");
    assert_eq!(counts(&summarize(&cases)), (5, 1, 1, 1));
    let failed = find(&cases, "appliesDiscount");
    assert_eq!(failed.result, TestResult::Failure);
    let message = failed.message.as_deref().unwrap();
    assert!(
        message.starts_with(
            "expected: <90.00> but was: <100.00>\n\n\
             org.opentest4j.AssertionFailedError: expected: <90.00> but was: <100.00>\n\tat "
        ),
        "{message}"
    );
    assert!(
        !message.contains("SPRING10"),
        "system-out is not part of the message"
    );
    let errored = find(&cases, "rejectsNegativeQuantity");
    assert_eq!(errored.result, TestResult::Error);
    assert!(
        errored
            .message
            .as_deref()
            .unwrap()
            .starts_with("Cannot invoke \"com.acme.billing.Customer.getId()\" because \"customer\" is null\n\njava.lang.NullPointerException")
    );
    let skipped = find(&cases, "sendsEmail");
    assert_eq!(skipped.result, TestResult::Skipped);
    assert_eq!(skipped.message.as_deref(), Some("SMTP stub not available"));
    assert_eq!(skipped.run_time, 0.0);
    // A test that failed once and passed on a rerun passed.
    let flaky = find(&cases, "roundsCurrency");
    assert_eq!(flaky.result, TestResult::Success);
    assert_eq!(flaky.message, None);
    assert!(close(flaky.run_time, 0.022));
    assert!(cases.iter().all(|c| c.file.is_none()));
}

#[test]
fn pytest() {
    let cases = parse(include_bytes!("fixtures/pytest.xml"), "pytest.xml");
    assert_eq!(counts(&summarize(&cases)), (5, 1, 1, 1));
    let failed = find(&cases, "test_rejects_garbage");
    assert_eq!(failed.classname, "tests.test_parser");
    assert_eq!(failed.file.as_deref(), Some("tests/test_parser.py"));
    assert!(close(failed.run_time, 0.013));
    let message = failed.message.as_deref().unwrap();
    // `&#10;` in an attribute is a real newline; `&gt;` in text is unescaped.
    assert!(
        message.starts_with(
            "AssertionError: assert 'x' == 'y'\n  - y\n  + x\n\ndef test_rejects_garbage():"
        ),
        "{message}"
    );
    assert!(message.contains("\n>       assert result == \"y\"\n"));
    assert!(message.ends_with("tests/test_parser.py:18: AssertionError"));
    let errored = find(&cases, "test_connects");
    assert_eq!(errored.result, TestResult::Error);
    assert!(errored.message.as_deref().unwrap().starts_with(
        "failed on setup with \"ConnectionRefusedError: [Errno 111] Connection refused\"\n\n@pytest.fixture"
    ));
    assert_eq!(errored.file.as_deref(), Some("tests/test_db.py"));
    let skipped = find(&cases, "test_migrations");
    assert_eq!(skipped.result, TestResult::Skipped);
    assert_eq!(
        skipped.message.as_deref(),
        Some("needs postgres 16\n\ntests/test_db.py:21: needs postgres 16")
    );
    assert_eq!(
        find(&cases, "test_parses_unicode[caf\\xe9]").result,
        TestResult::Success
    );
}

#[test]
fn jest() {
    let cases = parse(include_bytes!("fixtures/jest.xml"), "jest.xml");
    let summary = summarize(&cases);
    assert_eq!(counts(&summary), (5, 1, 0, 1));
    let failed = find(&cases, "Cart applies a coupon");
    assert_eq!(failed.result, TestResult::Failure);
    assert_eq!(failed.classname, "Cart applies a coupon");
    assert_eq!(failed.file.as_deref(), Some("src/cart/cart.test.ts"));
    let message = failed.message.as_deref().unwrap();
    assert!(
        message.starts_with(
            "Error: expect(received).toBe(expected) // Object.is equality\n\nExpected: 90\nReceived: 100\n    at Object.<anonymous>"
        ),
        "{message}"
    );
    assert!(close(failed.run_time, 0.019));
    let skipped = find(&cases, "Cart checks out as guest");
    assert_eq!(skipped.result, TestResult::Skipped);
    assert_eq!(skipped.message, None);
    assert_eq!(
        find(&cases, "formatPrice formats euros").file.as_deref(),
        Some("src/util/price.test.ts")
    );
    assert!(close(summary.run_time, 0.004 + 0.019 + 0.001 + 0.002));
}

#[test]
fn gotestsum() {
    let cases = parse(include_bytes!("fixtures/gotestsum.xml"), "gotestsum.xml");
    assert_eq!(counts(&summarize(&cases)), (5, 2, 0, 1));
    let failed = find(&cases, "TestTotal/with_discount");
    assert_eq!(failed.classname, "github.com/acme/shop/internal/cart");
    assert_eq!(failed.file, None);
    assert!(close(failed.run_time, 0.010));
    // Go's encoder writes newlines in text as `&#xA;`.
    assert_eq!(
        failed.message.as_deref(),
        Some(
            "Failed\n\n=== RUN   TestTotal/with_discount\n    cart_test.go:42: total = 100, want 90\n--- FAIL: TestTotal/with_discount (0.01s)"
        )
    );
    let skipped = find(&cases, "TestCheckout");
    assert_eq!(skipped.result, TestResult::Skipped);
    assert_eq!(
        skipped.message.as_deref(),
        Some(
            "=== RUN   TestCheckout\n    cart_test.go:58: needs payment sandbox\n--- SKIP: TestCheckout (0.00s)"
        )
    );
    let round = find(&cases, "TestRound");
    assert_eq!(round.classname, "github.com/acme/shop/internal/price");
    assert!(close(round.run_time, 1.35));
}

#[test]
fn rspec() {
    let cases = parse(include_bytes!("fixtures/rspec.xml"), "rspec.xml");
    assert_eq!(counts(&summarize(&cases)), (4, 1, 0, 1));
    let failed = find(&cases, "User validations requires an email");
    assert_eq!(failed.file.as_deref(), Some("./spec/models/user_spec.rb"));
    assert_eq!(failed.classname, "spec.models.user_spec");
    assert!(close(failed.run_time, 0.034117));
    let message = failed.message.as_deref().unwrap();
    assert!(message.starts_with(
        "expected #<User id: nil, email: nil> not to be valid\n\nFailure/Error: expect(user).not_to be_valid"
    ));
    assert!(message.ends_with("in `block (3 levels) in <top (required)>'"));
    assert_eq!(
        find(&cases, "POST /orders rejects an empty cart").result,
        TestResult::Skipped
    );
    assert!(close(
        find(&cases, "POST /orders creates an order").run_time,
        0.790041
    ));
}

#[test]
fn nextest() {
    let cases = parse(include_bytes!("fixtures/nextest.xml"), "nextest.xml");
    assert_eq!(counts(&summarize(&cases)), (4, 1, 0, 0));
    let failed = find(&cases, "snapshots::orbs");
    assert_eq!(failed.classname, "orrery-config::snapshots");
    assert_eq!(failed.file, None);
    assert!(close(failed.run_time, 0.010));
    let message = failed.message.as_deref().unwrap();
    assert!(message.starts_with(
        "thread 'snapshots::orbs' panicked at crates/orrery-config/tests/snapshots.rs:88:9\n\n\
         thread 'snapshots::orbs' panicked at crates/orrery-config/tests/snapshots.rs:88:9:\n\
         assertion `left == right` failed\n  left: 2\n right: 3\n"
    ));
    assert!(!message.contains("running 1 test"), "system-out is ignored");
    // A test that passed on retry (nextest's flakyFailure) passed.
    let flaky = find(&cases, "snapshots::workflows");
    assert_eq!(flaky.result, TestResult::Success);
    assert_eq!(flaky.message, None);
    assert!(close(flaky.run_time, 0.150));
    assert_eq!(
        find(&cases, "cli::tests::parses_flags").classname,
        "orrery-config::bin/orrery"
    );
}

#[test]
fn phpunit_nested_suites_pass_their_file_down() {
    let cases = parse(include_bytes!("fixtures/phpunit.xml"), "phpunit.xml");
    assert_eq!(counts(&summarize(&cases)), (3, 1, 0, 0));
    let file = Some("/home/circleci/project/tests/Unit/MoneyTest.php");
    assert!(cases.iter().all(|c| c.file.as_deref() == file));
    // `classname` wins over PHPUnit's `class`.
    assert!(
        cases
            .iter()
            .all(|c| c.classname == "App.Tests.Unit.MoneyTest")
    );
    let failed = find(&cases, "testFormat with data set \"yen\"");
    assert_eq!(failed.result, TestResult::Failure);
    let message = failed.message.as_deref().unwrap();
    assert!(
        message.starts_with(
            "App\\Tests\\Unit\\MoneyTest::testFormat with data set \"yen\" ('JPY', 100, '¥100')\nFailed asserting"
        ),
        "{message}"
    );
    assert!(close(failed.run_time, 0.025109));
}
