//! Bad input never panics: arbitrary bytes, XML-ish token soup, and the real
//! fixtures mutated at random (bytes flipped, spans deleted, duplicated or
//! replaced with XML punctuation, files cut short) all give cases or an error.
//! The slice and reader entry points agree on every input.

use orrery_testresults::{
    Limits, TestCase, failures_first, merge_timings, parse_junit, parse_junit_reader,
    parse_junit_with, summarize, timings_tsv,
};
use proptest::prelude::*;

const FIXTURES: [&[u8]; 8] = [
    include_bytes!("fixtures/ant.xml"),
    include_bytes!("fixtures/surefire.xml"),
    include_bytes!("fixtures/pytest.xml"),
    include_bytes!("fixtures/jest.xml"),
    include_bytes!("fixtures/gotestsum.xml"),
    include_bytes!("fixtures/rspec.xml"),
    include_bytes!("fixtures/nextest.xml"),
    include_bytes!("fixtures/phpunit.xml"),
];

/// Pieces that make mutations likely to reach deep into the parser.
const TOKENS: [&str; 24] = [
    "<",
    ">",
    "/>",
    "</",
    "\"",
    "'",
    "&",
    ";",
    "&amp;",
    "&#",
    "&#x",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<?",
    "?>",
    "<testcase name=\"x\">",
    "</testcase>",
    "<failure>",
    "<skipped/>",
    "<testsuite file=\"f\">",
    "</testsuite>",
    "\u{feff}",
];

/// Parses with every entry point and uses the results; panics surface as failures.
fn exercise(input: &[u8]) {
    let small = Limits {
        max_depth: 8,
        max_message_bytes: 32,
        ..Limits::default()
    };
    for limits in [Limits::default(), small] {
        let sliced = parse_junit_with(input, "fuzz.xml", &limits);
        let streamed = parse_junit_reader(input, "fuzz.xml", &limits);
        match (&sliced, &streamed) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(
                std::mem::discriminant(a),
                std::mem::discriminant(b),
                "{a} / {b}"
            ),
            (a, b) => panic!("slice and reader disagree: {a:?} / {b:?}"),
        }
        if let Ok(cases) = sliced {
            use_cases(cases, &limits);
        } else if let Err(e) = sliced {
            // Every error renders.
            assert!(!e.to_string().is_empty());
        }
    }
}

fn use_cases(mut cases: Vec<TestCase>, limits: &Limits) {
    for case in &cases {
        assert!(case.run_time.is_finite() && case.run_time >= 0.0);
        assert_eq!(case.source, "fuzz.xml");
        if let Some(message) = &case.message {
            assert!(message.len() <= limits.max_message_bytes + 32);
        }
    }
    let summary = summarize(&cases);
    assert_eq!(summary.tests, cases.len());
    let tsv = timings_tsv(&cases);
    assert_eq!(tsv.lines().count(), cases.len());
    assert!(tsv.lines().all(|l| l.split('\t').count() == 4));
    let merged = merge_timings(&[&cases, &cases]);
    assert!(merged.len() <= cases.len());
    failures_first(&mut cases);
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Insert(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), 1usize..200).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), 1usize..200).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(i, t)| Mutation::Insert(i, t)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(input: &mut Vec<u8>, mutation: &Mutation) {
    let len = input.len();
    if len == 0 {
        return;
    }
    match *mutation {
        Mutation::Flip(i, b) => input[i % len] = b,
        Mutation::Delete(i, n) => {
            let start = i % len;
            input.drain(start..(start + n).min(len));
        }
        Mutation::Duplicate(i, n) => {
            let start = i % len;
            let span = input[start..(start + n).min(len)].to_vec();
            input.splice(start..start, span);
        }
        Mutation::Insert(i, t) => {
            let at = i % (len + 1);
            input.splice(at..at, TOKENS[t].bytes());
        }
        Mutation::Truncate(i) => input.truncate(i % len),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&input);
    }

    #[test]
    fn token_soup(tokens in proptest::collection::vec(
        prop_oneof![
            (0..TOKENS.len()).prop_map(|t| TOKENS[t].to_owned()),
            "[a-z =\"]{0,8}",
        ],
        0..64,
    )) {
        let mut input = String::from("<testsuites>");
        input.extend(tokens);
        exercise(input.as_bytes());
    }

    #[test]
    fn mutated_fixtures(
        fixture in 0..FIXTURES.len(),
        mutations in proptest::collection::vec(mutation(), 1..8),
    ) {
        let mut input = FIXTURES[fixture].to_vec();
        for m in &mutations {
            apply(&mut input, m);
        }
        exercise(&input);
    }
}

#[test]
fn every_fixture_cut_at_every_length() {
    for fixture in FIXTURES {
        for cut in 0..fixture.len() {
            let result = parse_junit(&fixture[..cut], "fuzz.xml");
            // Only a cut in the trailing whitespace can still be a complete document.
            if result.is_ok() {
                assert!(
                    fixture[cut..].iter().all(u8::is_ascii_whitespace),
                    "cut at {cut}"
                );
            }
        }
    }
}
