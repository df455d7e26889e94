//! The parser's rules on small documents: roots, files, times, results, messages,
//! entities and limits, and the errors bad input gets (never a panic).

use orrery_testresults::{
    JunitError, Limits, MAX_DEPTH, TestCase, TestResult, parse_junit, parse_junit_reader,
    parse_junit_with,
};

fn parse(xml: &str) -> Vec<TestCase> {
    parse_junit(xml.as_bytes(), "t.xml").unwrap_or_else(|e| panic!("{e}\n{xml}"))
}

fn one(xml: &str) -> TestCase {
    let mut cases = parse(xml);
    assert_eq!(cases.len(), 1, "{xml}");
    cases.remove(0)
}

fn case_with(children: &str) -> TestCase {
    one(&format!(
        "<testsuite><testcase classname=\"C\" name=\"n\">{children}</testcase></testsuite>"
    ))
}

fn error(xml: &[u8]) -> JunitError {
    match parse_junit(xml, "t.xml") {
        Ok(cases) => panic!("expected an error, got {cases:?}"),
        Err(e) => e,
    }
}

#[test]
fn roots() {
    assert!(parse("<testsuites/>").is_empty());
    assert!(parse("<testsuite name=\"x\"></testsuite>").is_empty());
    assert_eq!(
        parse("<testsuite><testcase name=\"a\"/><testcase name=\"b\"/></testsuite>").len(),
        2
    );
    // A namespace prefix does not matter.
    assert_eq!(
        parse("<j:testsuite xmlns:j=\"urn:x\"><j:testcase name=\"a\"/></j:testsuite>").len(),
        1
    );
    // A UTF-8 byte order mark, a declaration, a doctype and comments are fine.
    let cases = parse_junit(
        b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<!DOCTYPE testsuite>\n<!-- c -->\n<testsuite><testcase name=\"a\"/></testsuite>\n<!-- end -->\n",
        "bom.xml",
    )
    .unwrap();
    assert_eq!(cases.len(), 1);
}

#[test]
fn cases_inside_any_wrapper_but_not_inside_a_case() {
    let cases = parse(
        "<testsuites><testcase name=\"top\"/><group><testcase name=\"wrapped\"/></group>\
         <testsuite><testcase name=\"outer\"><testcase name=\"inner\"><failure/></testcase></testcase></testsuite></testsuites>",
    );
    let names: Vec<_> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["top", "wrapped", "outer"]);
    assert_eq!(cases[2].result, TestResult::Success);
}

#[test]
fn file_attributes() {
    let cases = parse(
        "<testsuites file=\"root.py\"><testsuite file=\"suite.py\">\
           <testcase name=\"own\" file=\"own.py\"/>\
           <testcase name=\"filepath\" filepath=\"fp.py\"/>\
           <testcase name=\"both\" file=\"f.py\" filepath=\"fp.py\"/>\
           <testcase name=\"empty\" file=\"\"/>\
           <testcase name=\"inherited\"/>\
         </testsuite><testsuite><testcase name=\"from root\"/></testsuite>\
         <testsuite filepath=\"sfp.py\"><testcase name=\"suite filepath\"/></testsuite></testsuites>",
    );
    let files: Vec<_> = cases.iter().map(|c| c.file.as_deref()).collect();
    assert_eq!(
        files,
        [
            Some("own.py"),
            Some("fp.py"),
            Some("f.py"),
            Some("suite.py"),
            Some("suite.py"),
            Some("root.py"),
            Some("sfp.py"),
        ]
    );
    assert_eq!(
        one("<testsuite><testcase name=\"x\"/></testsuite>").file,
        None
    );
}

#[test]
fn names_default_to_empty_and_class_is_a_fallback() {
    let case = one("<testsuite><testcase/></testsuite>");
    assert_eq!((case.classname.as_str(), case.name.as_str()), ("", ""));
    assert_eq!(case.run_time, 0.0);
    let case = one("<testsuite><testcase class=\"K\" name=\"n\"/></testsuite>");
    assert_eq!(case.classname, "K");
}

#[test]
fn times() {
    for (time, seconds) in [
        ("0.5", 0.5),
        ("12", 12.0),
        ("0,25", 0.25),
        ("2,001.5", 2001.5),
        ("", 0.0),
        ("soon", 0.0),
        ("-3", 0.0),
        ("NaN", 0.0),
        ("1e999", 0.0),
    ] {
        let case = one(&format!(
            "<testsuite><testcase name=\"t\" time=\"{time}\"/></testsuite>"
        ));
        assert_eq!(case.run_time, seconds, "time={time:?}");
    }
}

#[test]
fn results() {
    assert_eq!(case_with("").result, TestResult::Success);
    assert_eq!(case_with("<failure/>").result, TestResult::Failure);
    assert_eq!(case_with("<error/>").result, TestResult::Error);
    assert_eq!(case_with("<skipped/>").result, TestResult::Skipped);
    assert_eq!(case_with("<skipped></skipped>").result, TestResult::Skipped);
    assert_eq!(
        case_with("<system-out>x</system-out><system-err>y</system-err>").result,
        TestResult::Success
    );
    // A failure or error outranks a skip; between them the first decides.
    let case = case_with("<skipped message=\"s\"/><failure message=\"f\"/>");
    assert_eq!(
        (case.result, case.message.as_deref()),
        (TestResult::Failure, Some("f"))
    );
    let case = case_with("<error message=\"e\"/><skipped message=\"s\"/>");
    assert_eq!(
        (case.result, case.message.as_deref()),
        (TestResult::Error, Some("e"))
    );
    // pytest adds a teardown error to a failed test: both messages are kept.
    let case =
        case_with("<failure message=\"assert 1 == 2\"/><error message=\"failed on teardown\"/>");
    assert_eq!(case.result, TestResult::Failure);
    assert_eq!(
        case.message.as_deref(),
        Some("assert 1 == 2\n\nfailed on teardown")
    );
    // Result elements count only as direct children of the testcase.
    let case = case_with("<properties><failure message=\"no\"/></properties>");
    assert_eq!(case.result, TestResult::Success);
    // A result element's own children do not start another result.
    let case = case_with("<failure message=\"f\"><skipped/>text</failure>");
    assert_eq!(
        (case.result, case.message.as_deref()),
        (TestResult::Failure, Some("f\n\ntext"))
    );
}

#[test]
fn messages() {
    let message = |children: &str| case_with(children).message;
    assert_eq!(message("<failure message=\"m\"/>").as_deref(), Some("m"));
    assert_eq!(
        message("<failure>\n  text\n</failure>").as_deref(),
        Some("text")
    );
    assert_eq!(
        message("<failure message=\"m\">m</failure>").as_deref(),
        Some("m")
    );
    assert_eq!(
        message("<failure message=\"m\">t</failure>").as_deref(),
        Some("m\n\nt")
    );
    assert_eq!(message("<failure message=\" \"> </failure>"), None);
    assert_eq!(message("<failure/>"), None);
    assert_eq!(
        message("<error type=\"java.lang.NullPointerException\"/>").as_deref(),
        Some("java.lang.NullPointerException")
    );
    assert_eq!(
        message("<failure type=\"T\" message=\"m\"/>").as_deref(),
        Some("m")
    );
    // CDATA, entities, character references and text mixed.
    assert_eq!(
        message("<failure>a &lt; b &amp;&amp; c &gt; d &quot;&apos; &#233;&#x1F600; <![CDATA[<raw> &amp;]]> end</failure>")
            .as_deref(),
        Some("a < b && c > d \"' é😀 <raw> &amp; end")
    );
    // An unknown entity is kept as written.
    assert_eq!(
        message("<failure>a&nbsp;b</failure>").as_deref(),
        Some("a&nbsp;b")
    );
    // Windows line ends become newlines.
    assert_eq!(
        message("<failure>a\r\nb\rc</failure>").as_deref(),
        Some("a\nb\nc")
    );
    // Comments inside the text are dropped.
    assert_eq!(
        message("<failure>a<!-- x -->b</failure>").as_deref(),
        Some("ab")
    );
}

#[test]
fn long_messages_are_cut() {
    let limits = Limits {
        max_message_bytes: 10,
        ..Limits::default()
    };
    let parse = |xml: &str| {
        parse_junit_with(xml.as_bytes(), "t", &limits)
            .unwrap()
            .remove(0)
    };
    let case =
        parse("<testsuite><testcase><failure>0123456789abcdef</failure></testcase></testsuite>");
    assert_eq!(
        case.message.as_deref(),
        Some("0123456789\n[message truncated]")
    );
    let case = parse("<testsuite><testcase><failure message=\"ééééééé\"/></testcase></testsuite>");
    assert_eq!(case.message.as_deref(), Some("ééééé\n[message truncated]"));
    let case = parse("<testsuite><testcase><failure>0123456789</failure></testcase></testsuite>");
    assert_eq!(case.message.as_deref(), Some("0123456789"));
}

#[test]
fn a_huge_valid_attribute_is_read_and_its_message_cut() {
    let big = "x".repeat(16 * 1024 * 1024);
    let xml = format!(
        "<testsuite><testcase name=\"n\"><failure message=\"{big}\"/></testcase></testsuite>"
    );
    let case = one(&xml);
    assert_eq!(case.result, TestResult::Failure);
    let message = case.message.unwrap();
    assert!(message.len() < 70 * 1024);
    assert!(message.ends_with("[message truncated]"));
}

#[test]
fn a_huge_unterminated_attribute_is_an_error() {
    let xml = format!(
        "<testsuite><testcase name=\"{}",
        "x".repeat(8 * 1024 * 1024)
    );
    assert!(matches!(error(xml.as_bytes()), JunitError::NotXml { .. }));
}

#[test]
fn not_xml() {
    for input in [
        &b"hello, world"[..],
        b"{\"tests\": []}",
        b"\x00\x01\x02\xff\xfe garbage",
        b"PASS src/cart.test.ts\n  Cart\n    adds an item (4 ms)\n",
    ] {
        let e = error(input);
        assert!(matches!(e, JunitError::NotXml { .. }), "{e}");
    }
    // Whitespace that is not XML whitespace is text.
    assert!(matches!(
        error("\u{a0}<testsuite/>".as_bytes()),
        JunitError::NotXml { .. }
    ));
    let e = error(b"  \n  junk<testsuite/>");
    assert_eq!(
        e.to_string(),
        "not XML at line 2, column 3 (byte 5): text before the root element (the input does not start with `<`)"
    );
}

#[test]
fn empty_inputs() {
    for input in [
        &b""[..],
        b"   \n",
        b"<?xml version=\"1.0\"?>",
        b"<!-- nothing -->",
    ] {
        assert!(matches!(error(input), JunitError::Empty), "{input:?}");
    }
}

#[test]
fn html() {
    let e = error(b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>");
    match &e {
        JunitError::UnexpectedRoot { found, at } => {
            assert_eq!(found, "html");
            assert_eq!((at.line, at.column, at.offset), (Some(2), Some(1), 16));
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        e.to_string(),
        "unexpected root element <html> at line 2, column 1 (byte 16): JUnit XML has <testsuites> or <testsuite>"
    );
    // A bare testcase is not a report either.
    assert!(matches!(
        error(b"<testcase name=\"x\"/>"),
        JunitError::UnexpectedRoot { .. }
    ));
}

#[test]
fn truncated() {
    let full = include_str!("fixtures/surefire.xml");
    for cut in [
        full.len() / 3,
        full.len() / 2,
        full.len() - 20,
        full.len() - 2,
    ] {
        let e = error(&full.as_bytes()[..cut]);
        assert!(matches!(e, JunitError::NotXml { .. }), "cut at {cut}: {e}");
    }
    let e = error(b"<testsuite>\n<testcase name=\"a\">");
    assert_eq!(
        e.to_string(),
        "not XML at line 2, column 20 (byte 31): the input ends inside <testcase> (opened at byte 12); is the file cut short?"
    );
}

#[test]
fn malformed() {
    for input in [
        &b"<testsuite><testcase></testsuite>"[..],
        b"<testsuite></testcase>",
        b"<testsuite/></testsuite>",
        b"<testsuite/><testsuite/>",
        b"<testsuite/>trailing",
        b"<testsuite/><![CDATA[x]]>",
        b"<testsuite><testcase name=x/></testsuite>",
        b"<testsuite><testcase name=\"a\" time/></testsuite>",
        b"<testsuite>a & b</testsuite>",
        b"<testsuite><testcase name=\"\xff\xfe\"/></testsuite>",
        b"<testsuite><failure>\xc3\x28</failure></testsuite>",
    ] {
        let e = error(input);
        assert!(
            matches!(e, JunitError::NotXml { .. }),
            "{}: {e}",
            String::from_utf8_lossy(input)
        );
        assert!(e.position().is_some());
    }
}

#[test]
fn utf16_is_named() {
    let xml: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain("<testsuite/>".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let e = error(&xml);
    assert!(e.to_string().contains("UTF-16"), "{e}");
    let e = parse_junit_reader(&xml[..], "t", &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("UTF-16"), "{e}");
}

#[test]
fn deep_nesting() {
    let depth = 10_000;
    let xml = format!(
        "<testsuites>{}{}</testsuites>",
        "<testsuite>".repeat(depth),
        "</testsuite>".repeat(depth)
    );
    match error(xml.as_bytes()) {
        JunitError::TooDeep { limit, at } => {
            assert_eq!(limit, MAX_DEPTH);
            assert_eq!(at.offset, (12 + 11 * (MAX_DEPTH - 1)) as u64);
        }
        other => panic!("{other}"),
    }
    // Unknown elements count too, and so does an empty element at the limit.
    let xml = format!("<testsuite>{}", "<x>".repeat(depth));
    assert!(matches!(error(xml.as_bytes()), JunitError::TooDeep { .. }));
    let limits = Limits {
        max_depth: 2,
        ..Limits::default()
    };
    assert!(parse_junit_with(b"<testsuite><testcase/></testsuite>", "t", &limits).is_ok());
    assert!(matches!(
        parse_junit_with(
            b"<testsuite><testcase><failure/></testcase></testsuite>",
            "t",
            &limits
        ),
        Err(JunitError::TooDeep { limit: 2, .. })
    ));
}

#[test]
fn too_large() {
    let limits = Limits {
        max_input_bytes: 64,
        ..Limits::default()
    };
    let exactly = format!("<testsuite>{}</testsuite>", " ".repeat(64 - 23));
    assert_eq!(exactly.len(), 64);
    assert!(parse_junit_with(exactly.as_bytes(), "t", &limits).is_ok());
    assert!(parse_junit_reader(exactly.as_bytes(), "t", &limits).is_ok());
    let over = format!("<testsuite>{}</testsuite>", " ".repeat(64 - 22));
    assert!(matches!(
        parse_junit_with(over.as_bytes(), "t", &limits),
        Err(JunitError::TooLarge { limit: 64 })
    ));
    assert!(matches!(
        parse_junit_reader(over.as_bytes(), "t", &limits),
        Err(JunitError::TooLarge { limit: 64 })
    ));
    // The reader stops reading early, whatever is past the limit.
    let endless = std::io::repeat(b' ');
    assert!(matches!(
        parse_junit_reader(endless, "t", &limits),
        Err(JunitError::TooLarge { limit: 64 })
    ));
}

#[test]
fn the_default_size_limit_is_256_mib() {
    // Zeroed memory is cheap to allocate; the size is checked before parsing.
    let big = vec![0u8; 256 * 1024 * 1024 + 1];
    match parse_junit(&big, "big.xml") {
        Err(JunitError::TooLarge { limit }) => assert_eq!(limit, 256 * 1024 * 1024),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reader_errors_have_offsets_but_no_lines() {
    let e = parse_junit_reader(&b"<html>\n</html>"[..], "t", &Limits::default()).unwrap_err();
    let at = e.position().unwrap();
    assert_eq!((at.offset, at.line), (0, None));
    assert_eq!(
        e.to_string(),
        "unexpected root element <html> at byte 0: JUnit XML has <testsuites> or <testsuite>"
    );

    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let e = parse_junit_reader(Failing, "t", &Limits::default()).unwrap_err();
    assert!(matches!(e, JunitError::Io(_)));
    assert_eq!(e.to_string(), "cannot read the input: disk on fire");
}

#[test]
fn serde_names() {
    let case = TestCase {
        classname: "C".into(),
        name: "n".into(),
        file: None,
        result: TestResult::Error,
        message: Some("boom".into()),
        run_time: 0.5,
        source: "junit.xml".into(),
    };
    let json = serde_json::to_value(&case).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "classname": "C", "name": "n", "file": null, "result": "error",
            "message": "boom", "run_time": 0.5, "source": "junit.xml"
        })
    );
    let back: TestCase = serde_json::from_value(json).unwrap();
    assert_eq!(back, case);
    for (result, stored, api) in [
        (TestResult::Success, "success", "success"),
        (TestResult::Failure, "failure", "failure"),
        (TestResult::Error, "error", "failure"),
        (TestResult::Skipped, "skipped", "skipped"),
    ] {
        assert_eq!(serde_json::to_value(result).unwrap(), stored);
        assert_eq!((result.as_str(), result.api_str()), (stored, api));
    }
}
