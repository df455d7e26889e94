//! The JUnit XML parser: bytes in, [`TestCase`]s out, streaming through
//! quick-xml's reader.
//!
//! There is no single JUnit schema; every reporter writes its own dialect (Ant,
//! Maven Surefire, pytest, jest-junit, gotestsum, rspec_junit_formatter, cargo
//! nextest, PHPUnit, ...). The rules, chosen to read all of them:
//!
//! - The root is `<testsuites>` or `<testsuite>`; anything else is
//!   [`JunitError::UnexpectedRoot`]. Suites may nest (PHPUnit nests a suite per
//!   class inside a suite per file).
//! - Every `<testcase>` inside the root is a case, whatever wraps it, except one
//!   inside another `<testcase>` (ignored with everything in it).
//! - `classname` (else `class`, which PHPUnit writes) and `name` default to empty.
//!   `time` is seconds; missing, negative or unreadable is 0. A comma is read as a
//!   thousands separator when the value also has a dot (`1,234.5`, old Surefire)
//!   and as the decimal mark otherwise (`0,5`, written under some locales).
//! - The file is the testcase's `file` (else `filepath`) attribute, else that of
//!   the nearest enclosing `<testsuite>`/`<testsuites>` that has one, else `None`.
//!   An empty attribute counts as missing.
//! - The result comes from the testcase's direct children: `<failure>` is a
//!   failure, `<error>` an error, `<skipped>` a skip, none of them a success. When
//!   several are present a failure or error outranks a skip, and between failure
//!   and error the first one decides; the messages of all the elements of the
//!   deciding kind are joined by blank lines. Other children (`<system-out>`,
//!   `<system-err>`, `<properties>`, Surefire's and nextest's `<flakyFailure>`,
//!   `<rerunFailure>` and the like) are ignored: a test that passed on a retry is
//!   a success.
//! - A result element's message is its `message` attribute and its text (trimmed,
//!   CDATA included, entities unescaped): both, separated by a blank line, when
//!   both exist and differ; otherwise whichever exists; when neither does, its
//!   `type` attribute (`java.lang.NullPointerException`); else `None`. A message
//!   longer than [`Limits::max_message_bytes`] is cut and marked.
//! - Entities: the five predefined ones and character references are unescaped.
//!   An unknown entity (`&nbsp;`) is kept as written rather than failing the file.
//!   A bare `&` in text is not XML and fails.
//! - Only UTF-8 is read (a UTF-8 byte order mark is skipped). A UTF-16 file, or an
//!   `encoding="ISO-8859-1"` declaration over non-ASCII bytes, fails with a reason.
//! - Text, CDATA or a second element outside the root, a mismatched end tag, or an
//!   input ending inside an element is [`JunitError::NotXml`] with the position.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::model::{TestCase, TestResult};

/// The largest input accepted: 256 MiB.
pub const MAX_INPUT_BYTES: u64 = 256 * 1024 * 1024;

/// The deepest element nesting accepted. Real reports nest a handful of levels.
pub const MAX_DEPTH: usize = 256;

/// The longest message kept per test case, in bytes; longer ones are cut.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What is appended to a message that was cut at [`Limits::max_message_bytes`].
const TRUNCATED_MARK: &str = "\n[message truncated]";

/// The characters XML counts as whitespace.
const XML_WHITESPACE: [char; 4] = [' ', '\t', '\r', '\n'];

/// The longest element name quoted in an error, in characters.
const MAX_QUOTED_NAME: usize = 64;

/// Bounds on what the parser accepts and keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Inputs larger than this many bytes are refused ([`JunitError::TooLarge`]).
    pub max_input_bytes: u64,
    /// Elements nested deeper than this are refused ([`JunitError::TooDeep`]).
    pub max_depth: usize,
    /// Messages longer than this many bytes are cut (at a character boundary).
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: MAX_INPUT_BYTES,
            max_depth: MAX_DEPTH,
            max_message_bytes: MAX_MESSAGE_BYTES,
        }
    }
}

/// Where in the input a problem is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// The byte offset from the start of the input.
    pub offset: u64,
    /// The 1-based line, when the whole input is at hand (byte slices, not readers).
    pub line: Option<u64>,
    /// The 1-based column in characters, when the line is known.
    pub column: Option<u64>,
}

impl Position {
    fn at(offset: u64) -> Self {
        Position {
            offset,
            line: None,
            column: None,
        }
    }

    /// Fills in the line and column from the input the offset points into.
    fn locate(&mut self, input: &[u8]) {
        let end = usize::try_from(self.offset)
            .unwrap_or(usize::MAX)
            .min(input.len());
        let before = &input[..end];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let newlines = before.iter().filter(|&&b| b == b'\n').count();
        // Counting bytes that do not continue a UTF-8 sequence counts characters.
        let column = before[line_start..]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count();
        self.line = Some(newlines as u64 + 1);
        self.column = Some(column as u64 + 1);
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "line {line}, column {column} (byte {})", self.offset)
            }
            _ => write!(f, "byte {}", self.offset),
        }
    }
}

/// Why an input is not usable JUnit XML.
#[derive(Debug, thiserror::Error)]
pub enum JunitError {
    /// The input is larger than [`Limits::max_input_bytes`].
    #[error("the input is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The input has no element at all.
    #[error(
        "the input has no root element (it is empty or holds only whitespace, comments or declarations)"
    )]
    Empty,
    /// The input is not well-formed XML (or not UTF-8).
    #[error("not XML at {at}: {reason}")]
    NotXml {
        /// What is wrong.
        reason: String,
        /// Where.
        at: Position,
    },
    /// The root element is neither `<testsuites>` nor `<testsuite>`.
    #[error("unexpected root element <{found}> at {at}: JUnit XML has <testsuites> or <testsuite>")]
    UnexpectedRoot {
        /// The root element's name (shortened and escaped for display).
        found: String,
        /// Where it starts.
        at: Position,
    },
    /// Elements nest deeper than [`Limits::max_depth`].
    #[error("elements nest more than {limit} levels deep at {at}")]
    TooDeep {
        /// The limit.
        limit: usize,
        /// The start of the first element too deep.
        at: Position,
    },
    /// Reading from the reader failed ([`parse_junit_reader`] only).
    #[error("cannot read the input: {0}")]
    Io(#[source] Arc<io::Error>),
}

impl JunitError {
    /// The position of the problem, when it has one.
    pub fn position(&self) -> Option<Position> {
        match self {
            JunitError::NotXml { at, .. }
            | JunitError::UnexpectedRoot { at, .. }
            | JunitError::TooDeep { at, .. } => Some(*at),
            JunitError::TooLarge { .. } | JunitError::Empty | JunitError::Io(_) => None,
        }
    }

    fn locate(mut self, input: &[u8]) -> Self {
        if let JunitError::NotXml { at, .. }
        | JunitError::UnexpectedRoot { at, .. }
        | JunitError::TooDeep { at, .. } = &mut self
        {
            at.locate(input);
        }
        self
    }

    fn not_xml(reason: impl Into<String>, offset: u64) -> Self {
        JunitError::NotXml {
            reason: reason.into(),
            at: Position::at(offset),
        }
    }
}

/// Parses one JUnit XML document with the default [`Limits`].
///
/// `source` is stored in every case's [`TestCase::source`] (a file name or reporter
/// name). Cases come in document order.
pub fn parse_junit(xml: &[u8], source: &str) -> Result<Vec<TestCase>, JunitError> {
    parse_junit_with(xml, source, &Limits::default())
}

/// Parses one JUnit XML document with the given limits.
pub fn parse_junit_with(
    xml: &[u8],
    source: &str,
    limits: &Limits,
) -> Result<Vec<TestCase>, JunitError> {
    if xml.len() as u64 > limits.max_input_bytes {
        return Err(JunitError::TooLarge {
            limit: limits.max_input_bytes,
        });
    }
    check_not_utf16(xml)?;
    let mut reader = Reader::from_reader(xml);
    run(&mut reader, source, limits, |_| false).map_err(|e| e.locate(xml))
}

/// Parses one JUnit XML document from a reader, streaming, with the given limits.
///
/// Reads at most one byte more than [`Limits::max_input_bytes`]. Errors carry byte
/// offsets but no lines: the input is not kept.
pub fn parse_junit_reader<R: Read>(
    reader: R,
    source: &str,
    limits: &Limits,
) -> Result<Vec<TestCase>, JunitError> {
    let counted = Counted {
        inner: reader,
        read: 0,
        cap: limits.max_input_bytes.saturating_add(1),
    };
    let mut buffered = BufReader::new(counted);
    let head = buffered
        .fill_buf()
        .map_err(|e| JunitError::Io(Arc::new(e)))?;
    check_not_utf16(head)?;
    let mut reader = Reader::from_reader(buffered);
    let limit = limits.max_input_bytes;
    run(&mut reader, source, limits, |r| {
        r.get_ref().get_ref().read > limit
    })
}

/// A reader that stops after `cap` bytes and counts what it read.
struct Counted<R> {
    inner: R,
    read: u64,
    cap: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self.cap.saturating_sub(self.read);
        if room == 0 {
            return Ok(0);
        }
        let want = usize::try_from(room).unwrap_or(usize::MAX).min(buf.len());
        let got = self.inner.read(&mut buf[..want])?;
        self.read += got as u64;
        Ok(got)
    }
}

/// quick-xml without its `encoding` feature reads UTF-8 only; say so plainly for
/// the UTF-16 files some Windows tools write.
fn check_not_utf16(head: &[u8]) -> Result<(), JunitError> {
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Err(JunitError::not_xml(
            "the input is UTF-16 (it starts with a UTF-16 byte order mark); only UTF-8 is read",
            0,
        ));
    }
    Ok(())
}

/// The event loop shared by both entry points. `over_limit` says whether the
/// reader has read past the input size limit.
fn run<R: BufRead>(
    reader: &mut Reader<R>,
    source: &str,
    limits: &Limits,
    over_limit: impl Fn(&Reader<R>) -> bool,
) -> Result<Vec<TestCase>, JunitError> {
    let too_large = || JunitError::TooLarge {
        limit: limits.max_input_bytes,
    };
    let mut state = State::new(source, limits);
    let mut buf = Vec::new();
    loop {
        // Text is an event too, so the position before a read is the event's start.
        let start = reader.buffer_position();
        let event = reader.read_event_into(&mut buf);
        if over_limit(reader) {
            return Err(too_large());
        }
        let event = match event {
            Ok(event) => event,
            Err(quick_xml::Error::Io(e)) => return Err(JunitError::Io(e)),
            Err(e) => {
                return Err(JunitError::not_xml(e.to_string(), reader.error_position()));
            }
        };
        match event {
            Event::Start(e) => state.open(&e, start, false)?,
            Event::Empty(e) => state.open(&e, start, true)?,
            Event::End(_) => state.close(),
            Event::Text(t) => {
                // Point past leading whitespace, at what is wrong if anything is.
                let lead = t.len() - t.trim_start_matches(XML_WHITESPACE).len();
                state.text(&t.xml10_content(), start + lead as u64, false)?;
            }
            Event::CData(c) => state.text(&c.xml10_content(), start, true)?,
            Event::GeneralRef(r) => {
                let resolved = resolve_reference(&r);
                state.text(&resolved, start, true)?;
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            Event::Eof => return state.finish(reader.buffer_position()),
        }
        buf.clear();
    }
}

/// Resolves `&name;` (given `name`): predefined entities and character references;
/// anything else is kept as written.
fn resolve_reference(name: &str) -> Cow<'static, str> {
    match resolve_entity(name) {
        Some(c) => Cow::Owned(c.to_string()),
        None => Cow::Owned(format!("&{name};")),
    }
}

/// The character a predefined entity or character reference stands for.
fn resolve_entity(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse::<u32>().ok()?,
            };
            char::from_u32(code).filter(|&c| c != '\0')
        }
    }
}

/// Unescapes and normalizes a raw attribute value the XML way: references are
/// resolved (unknown ones kept as written), and literal tabs, newlines and
/// carriage returns become spaces (`&#10;` stays a newline). Never fails.
fn attribute_value(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find(['&', '\t', '\n', '\r']) {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match rest.as_bytes()[i] {
            b'&' => {
                // Names of references that resolve are short; looking no further
                // keeps a value full of bare `&` linear.
                let semicolon = after.bytes().take(16).position(|b| b == b';');
                if let Some(c) = semicolon.and_then(|end| resolve_entity(&after[..end])) {
                    out.push(c);
                    rest = &after[semicolon.unwrap_or(0) + 1..];
                } else {
                    out.push('&');
                    rest = after;
                }
            }
            b'\r' => {
                out.push(' ');
                rest = after.strip_prefix('\n').unwrap_or(after);
            }
            _ => {
                out.push(' ');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Reads a `time` attribute as seconds; see the module rules.
fn parse_seconds(raw: &str) -> f64 {
    let s = raw.trim();
    let normalized: Cow<'_, str> = if s.contains(',') {
        if s.contains('.') {
            Cow::Owned(s.replace(',', ""))
        } else {
            Cow::Owned(s.replace(',', "."))
        }
    } else {
        Cow::Borrowed(s)
    };
    match normalized.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => v,
        _ => 0.0,
    }
}

/// An element name for an error message: shortened, control characters escaped.
fn quoted_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(MAX_QUOTED_NAME)
        .flat_map(char::escape_debug)
        .collect();
    if name.chars().nth(MAX_QUOTED_NAME).is_some() {
        out.push('…');
    }
    out
}

/// Appends `text` to `buf` without letting it grow past `cap` bytes; returns
/// whether something was cut.
fn push_capped(buf: &mut String, text: &str, cap: usize) -> bool {
    let room = cap.saturating_sub(buf.len());
    if text.len() <= room {
        buf.push_str(text);
        return false;
    }
    let mut end = room;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    buf.push_str(&text[..end]);
    true
}

/// The role of an open element.
#[derive(Clone, Debug)]
enum Frame {
    /// `<testsuites>` or `<testsuite>`, with its file attribute.
    Suite { file: Option<String> },
    /// The `<testcase>` being built.
    Case,
    /// A `<failure>`, `<error>` or `<skipped>` directly inside the case.
    Outcome,
    /// Anything else; its content is ignored.
    Other,
}

/// One open element: its role, name (for errors) and start offset.
struct Open {
    frame: Frame,
    name: String,
    start: u64,
}

/// The testcase being read.
struct CaseBuilder {
    classname: String,
    name: String,
    file: Option<String>,
    run_time: f64,
    result: TestResult,
    message: String,
    truncated: bool,
}

/// The result element being read.
struct Capture {
    result: TestResult,
    message: Option<String>,
    kind: Option<String>,
    text: String,
    truncated: bool,
}

struct State<'a> {
    source: &'a str,
    limits: &'a Limits,
    cases: Vec<TestCase>,
    stack: Vec<Open>,
    root_seen: bool,
    case: Option<CaseBuilder>,
    capture: Option<Capture>,
}

impl<'a> State<'a> {
    fn new(source: &'a str, limits: &'a Limits) -> Self {
        State {
            source,
            limits,
            cases: Vec::new(),
            stack: Vec::new(),
            root_seen: false,
            case: None,
            capture: None,
        }
    }

    fn open(&mut self, e: &BytesStart<'_>, start: u64, empty: bool) -> Result<(), JunitError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(JunitError::TooDeep {
                limit: self.limits.max_depth,
                at: Position::at(start),
            });
        }
        let local = e.local_name();
        let name: &str = local.as_ref();
        if self.stack.is_empty() {
            if self.root_seen {
                return Err(JunitError::not_xml(
                    format!(
                        "a second root element <{}> after the first one ended",
                        quoted_name(name)
                    ),
                    start,
                ));
            }
            if name != "testsuites" && name != "testsuite" {
                return Err(JunitError::UnexpectedRoot {
                    found: quoted_name(name),
                    at: Position::at(start),
                });
            }
            self.root_seen = true;
        }
        let frame = self.classify(name, e, start)?;
        if empty {
            self.finish_frame(frame);
        } else {
            self.stack.push(Open {
                frame,
                name: quoted_name(name),
                start,
            });
        }
        Ok(())
    }

    /// Decides an opening element's role and starts what it starts.
    fn classify(
        &mut self,
        name: &str,
        e: &BytesStart<'_>,
        start: u64,
    ) -> Result<Frame, JunitError> {
        if self.capture.is_some() {
            return Ok(Frame::Other);
        }
        if self.case.is_some() {
            let direct_child = matches!(
                self.stack.last(),
                Some(Open {
                    frame: Frame::Case,
                    ..
                })
            );
            let result = match name {
                "failure" => TestResult::Failure,
                "error" => TestResult::Error,
                "skipped" => TestResult::Skipped,
                _ => return Ok(Frame::Other),
            };
            if !direct_child {
                return Ok(Frame::Other);
            }
            let [message, kind] = attributes(e, ["message", "type"], start)?;
            self.capture = Some(Capture {
                result,
                message,
                kind,
                text: String::new(),
                truncated: false,
            });
            return Ok(Frame::Outcome);
        }
        match name {
            "testsuites" | "testsuite" => {
                let [file, filepath] = attributes(e, ["file", "filepath"], start)?;
                Ok(Frame::Suite {
                    file: non_empty(file).or(non_empty(filepath)),
                })
            }
            "testcase" => {
                let [classname, class, name, time, file, filepath] = attributes(
                    e,
                    ["classname", "class", "name", "time", "file", "filepath"],
                    start,
                )?;
                let file = non_empty(file)
                    .or(non_empty(filepath))
                    .or_else(|| self.suite_file());
                self.case = Some(CaseBuilder {
                    classname: classname.or(class).unwrap_or_default(),
                    name: name.unwrap_or_default(),
                    file,
                    run_time: time.as_deref().map_or(0.0, parse_seconds),
                    result: TestResult::Success,
                    message: String::new(),
                    truncated: false,
                });
                Ok(Frame::Case)
            }
            _ => Ok(Frame::Other),
        }
    }

    /// The file of the nearest enclosing suite that names one.
    fn suite_file(&self) -> Option<String> {
        self.stack.iter().rev().find_map(|open| match &open.frame {
            Frame::Suite { file } => file.clone(),
            _ => None,
        })
    }

    fn close(&mut self) {
        // quick-xml checks that end tags match, so the stack is never empty here.
        if let Some(open) = self.stack.pop() {
            self.finish_frame(open.frame);
        }
    }

    fn finish_frame(&mut self, frame: Frame) {
        match frame {
            Frame::Suite { .. } | Frame::Other => {}
            Frame::Outcome => {
                if let Some(capture) = self.capture.take() {
                    self.record_outcome(capture);
                }
            }
            Frame::Case => {
                if let Some(case) = self.case.take() {
                    let mut message = case.message;
                    if case.truncated {
                        message.push_str(TRUNCATED_MARK);
                    }
                    self.cases.push(TestCase {
                        classname: case.classname,
                        name: case.name,
                        file: case.file,
                        result: case.result,
                        message: (!message.is_empty()).then_some(message),
                        run_time: case.run_time,
                        source: self.source.to_owned(),
                    });
                }
            }
        }
    }

    /// Folds a finished result element into the case; see the module rules.
    fn record_outcome(&mut self, capture: Capture) {
        let Some(case) = self.case.as_mut() else {
            return;
        };
        let replace = match (case.result, capture.result) {
            (TestResult::Success, _) => true,
            (TestResult::Skipped, new) => new.is_failed(),
            _ => false,
        };
        let append = !replace
            && (case.result == capture.result
                || (case.result.is_failed() && capture.result.is_failed()));
        if !replace && !append {
            return;
        }
        if replace {
            case.result = capture.result;
            case.message.clear();
            case.truncated = false;
        }
        let attribute = capture
            .message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty());
        let text = Some(capture.text.trim()).filter(|t| !t.is_empty());
        let kind = capture
            .kind
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        let parts: Vec<&str> = match (attribute, text) {
            (Some(a), Some(t)) if a != t => vec![a, t],
            (Some(a), _) => vec![a],
            (None, Some(t)) => vec![t],
            (None, None) => kind.into_iter().collect(),
        };
        let cap = self.limits.max_message_bytes;
        for part in parts {
            if !case.message.is_empty() {
                case.truncated |= push_capped(&mut case.message, "\n\n", cap);
            }
            case.truncated |= push_capped(&mut case.message, part, cap);
        }
        // Text cut while reading means the message is cut even if it fit after trimming.
        case.truncated |= capture.truncated;
    }

    /// Character data: part of a message inside a result element, whitespace
    /// elsewhere inside the root, and not allowed outside it (except whitespace
    /// outside CDATA).
    fn text(&mut self, text: &str, start: u64, significant: bool) -> Result<(), JunitError> {
        if self.stack.is_empty() {
            if significant || !text.trim_matches(XML_WHITESPACE).is_empty() {
                let reason = if self.root_seen {
                    "text after the root element"
                } else {
                    "text before the root element (the input does not start with `<`)"
                };
                return Err(JunitError::not_xml(reason, start));
            }
            return Ok(());
        }
        if let Some(capture) = self.capture.as_mut() {
            let cap = self.limits.max_message_bytes;
            capture.truncated |= push_capped(&mut capture.text, text, cap);
        }
        Ok(())
    }

    fn finish(self, end: u64) -> Result<Vec<TestCase>, JunitError> {
        if let Some(open) = self.stack.last() {
            return Err(JunitError::not_xml(
                format!(
                    "the input ends inside <{}> (opened at byte {}); is the file cut short?",
                    open.name, open.start
                ),
                end,
            ));
        }
        if !self.root_seen {
            return Err(JunitError::Empty);
        }
        Ok(self.cases)
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// The values of the named attributes (first occurrence of each), unescaped.
fn attributes<const N: usize>(
    e: &BytesStart<'_>,
    names: [&str; N],
    start: u64,
) -> Result<[Option<String>; N], JunitError> {
    let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
    let mut attributes = e.attributes();
    // Duplicate attributes are not XML, but rejecting a report for one helps nobody.
    attributes.with_checks(false);
    for attribute in attributes {
        let attribute = attribute.map_err(|err| {
            JunitError::not_xml(
                format!(
                    "bad attribute in <{}>: {err}",
                    quoted_name(e.local_name().as_ref())
                ),
                start,
            )
        })?;
        let key = attribute.key.as_ref();
        if let Some(i) = names.iter().position(|&n| n == key)
            && values[i].is_none()
        {
            values[i] = Some(attribute_value(&attribute.value));
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("0.25"), 0.25);
        assert_eq!(parse_seconds(" 3 "), 3.0);
        assert_eq!(parse_seconds("0,5"), 0.5);
        assert_eq!(parse_seconds("1,153.250"), 1153.25);
        assert_eq!(parse_seconds(""), 0.0);
        assert_eq!(parse_seconds("fast"), 0.0);
        assert_eq!(parse_seconds("-1"), 0.0);
        assert_eq!(parse_seconds("NaN"), 0.0);
        assert_eq!(parse_seconds("inf"), 0.0);
        assert_eq!(parse_seconds("1,2,3"), 0.0);
        assert_eq!(parse_seconds("1e-3"), 0.001);
    }

    #[test]
    fn attribute_values() {
        assert_eq!(
            attribute_value("a &lt;b&gt; &amp; &quot;c&quot; &apos;"),
            "a <b> & \"c\" '"
        );
        assert_eq!(
            attribute_value("line1&#10;line2&#xA;x&#x9;y"),
            "line1\nline2\nx\ty"
        );
        assert_eq!(attribute_value("a\r\nb\tc\nd\re"), "a b c d e");
        assert_eq!(
            attribute_value("&nbsp; & &; &#0; &#xZZ; &"),
            "&nbsp; & &; &#0; &#xZZ; &"
        );
        assert_eq!(attribute_value("é&#233;"), "éé");
    }

    #[test]
    fn capped_push_respects_char_boundaries() {
        let mut s = String::from("ab");
        assert!(push_capped(&mut s, "éé", 5));
        assert_eq!(s, "abé");
        assert!(!push_capped(&mut String::new(), "abc", 3));
    }

    #[test]
    fn positions() {
        let mut p = Position::at(8);
        p.locate("ab\ncdé\nfg".as_bytes());
        assert_eq!((p.line, p.column), (Some(3), Some(1)));
        assert_eq!(p.to_string(), "line 3, column 1 (byte 8)");
        let mut p = Position::at(7);
        p.locate("ab\ncdé\nfg".as_bytes());
        assert_eq!((p.line, p.column), (Some(2), Some(4)));
        let mut p = Position::at(1000);
        p.locate(b"x");
        assert_eq!((p.line, p.column), (Some(1), Some(2)));
        assert_eq!(Position::at(4).to_string(), "byte 4");
    }

    #[test]
    fn quoted_names_are_short_and_escaped() {
        assert_eq!(quoted_name("html"), "html");
        assert_eq!(quoted_name("a\0b"), "a\\0b");
        assert_eq!(
            quoted_name(&"x".repeat(100)).chars().count(),
            MAX_QUOTED_NAME + 1
        );
    }
}
