//! Timing data for `tests split --split-by=timings`, and durations.
//!
//! The runner stores the test results of earlier runs as a TSV file, one test
//! case per line: `file<TAB>classname<TAB>name<TAB>seconds` (the file may be
//! empty). An item to split gets the summed seconds of the test cases it names;
//! which column names it is the timings type.
//!
//! Compatibility decisions: lines with fewer than four fields or seconds that do
//! not parse as a finite, non-negative number (a header, for example) are
//! skipped; a leading `./` is ignored when file names are compared; a duration
//! without a unit counts as seconds.

use std::collections::HashMap;

/// Which column of the timing data an item names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimingsType {
    /// The test case's class name.
    Classname,
    /// The test case's file.
    Filename,
    /// The test case's `classname.name` or `name`.
    Testname,
    /// `Filename` when the items look like files, else `Classname`.
    Autodetect,
}

impl TimingsType {
    /// Parses a `--timings-type` value (case-insensitive).
    pub fn parse(text: &str) -> Option<TimingsType> {
        match text.to_ascii_lowercase().as_str() {
            "classname" => Some(TimingsType::Classname),
            "filename" => Some(TimingsType::Filename),
            "testname" => Some(TimingsType::Testname),
            "autodetect" => Some(TimingsType::Autodetect),
            _ => None,
        }
    }
}

/// One test case of the timing data.
#[derive(Clone, Debug, PartialEq)]
pub struct TestCase {
    /// The file that holds the test; may be empty.
    pub file: String,
    /// The test's class name.
    pub classname: String,
    /// The test's name.
    pub name: String,
    /// How long it ran, in seconds.
    pub seconds: f64,
}

/// Parses timing data; malformed lines are skipped.
pub fn parse_timings(text: &str) -> Vec<TestCase> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end_matches('\r');
            let mut fields = line.split('\t');
            let file = fields.next()?;
            let classname = fields.next()?;
            let name = fields.next()?;
            let seconds: f64 = fields.next()?.trim().parse().ok()?;
            if !seconds.is_finite() || seconds < 0.0 {
                return None;
            }
            Some(TestCase {
                file: file.to_string(),
                classname: classname.to_string(),
                name: name.to_string(),
                seconds,
            })
        })
        .collect()
}

/// File extensions that mark an item as a file name for autodetection.
const FILE_EXTENSIONS: &[&str] = &[
    "py", "rb", "js", "jsx", "mjs", "cjs", "ts", "tsx", "go", "java", "kt", "kts", "scala",
    "groovy", "rs", "php", "cs", "fs", "vb", "ex", "exs", "erl", "swift", "m", "c", "cc", "cpp",
    "cxx", "h", "hpp", "clj", "cljs", "dart", "lua", "pl", "r", "feature", "coffee", "elm", "hs",
    "ml", "jl", "sh", "bats",
];

/// The timings type `Autodetect` stands for: `Filename` when any item contains
/// a `/` or ends with a known source file extension (`.py`, `.spec.js`, ...),
/// else `Classname`.
pub fn autodetect<S: AsRef<str>>(items: &[S]) -> TimingsType {
    let looks_like_file = |item: &str| {
        item.contains('/')
            || item
                .rsplit_once('.')
                .is_some_and(|(stem, ext)| !stem.is_empty() && FILE_EXTENSIONS.contains(&ext))
    };
    if items.iter().any(|i| looks_like_file(i.as_ref())) {
        TimingsType::Filename
    } else {
        TimingsType::Classname
    }
}

/// The weight of each item from the timing data: the summed seconds of the test
/// cases it names, or `None` when it names none. `ty` must not be
/// `Autodetect` (resolve it with [`autodetect`] first).
pub fn weights<S: AsRef<str>>(
    items: &[S],
    cases: &[TestCase],
    ty: TimingsType,
) -> Vec<Option<f64>> {
    match ty {
        TimingsType::Filename | TimingsType::Autodetect => file_weights(items, cases),
        TimingsType::Classname => {
            let mut sums: HashMap<&str, f64> = HashMap::new();
            for case in cases {
                *sums.entry(case.classname.as_str()).or_default() += case.seconds;
            }
            items
                .iter()
                .map(|i| sums.get(i.as_ref()).copied())
                .collect()
        }
        TimingsType::Testname => {
            let mut sums: HashMap<String, f64> = HashMap::new();
            for case in cases {
                *sums.entry(case.name.clone()).or_default() += case.seconds;
                if !case.classname.is_empty() {
                    let full = format!("{}.{}", case.classname, case.name);
                    *sums.entry(full).or_default() += case.seconds;
                }
            }
            items
                .iter()
                .map(|i| sums.get(i.as_ref()).copied())
                .collect()
        }
    }
}

/// Weights by file. A test case's file matches an item when they are equal, when
/// the item ends with `/` and the file (the data has a relative path, the item
/// an absolute one), or when the file ends with `/` and the item.
fn file_weights<S: AsRef<str>>(items: &[S], cases: &[TestCase]) -> Vec<Option<f64>> {
    // Seconds per distinct file.
    let mut by_file: HashMap<&str, f64> = HashMap::new();
    for case in cases {
        let file = strip_dot(&case.file);
        if !file.is_empty() {
            *by_file.entry(file).or_default() += case.seconds;
        }
    }
    // Seconds per proper `/`-suffix of each file, for items that are shorter
    // than the recorded path.
    let mut by_suffix: HashMap<&str, f64> = HashMap::new();
    for (&file, &seconds) in &by_file {
        for suffix in slash_suffixes(file) {
            *by_suffix.entry(suffix).or_default() += seconds;
        }
    }
    items
        .iter()
        .map(|item| {
            let item = strip_dot(item.as_ref());
            let mut found = None;
            let mut add = |s: Option<&f64>| {
                if let Some(s) = s {
                    *found.get_or_insert(0.0) += s;
                }
            };
            add(by_file.get(item));
            add(by_suffix.get(item));
            for suffix in slash_suffixes(item) {
                add(by_file.get(suffix));
            }
            found
        })
        .collect()
}

/// The parts of `path` after each `/` (not empty ones): `a/b/c` gives `b/c`
/// and `c`.
fn slash_suffixes(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(move |(i, _)| &path[i + 1..])
        .filter(|s| !s.is_empty())
}

fn strip_dot(path: &str) -> &str {
    let mut path = path;
    while let Some(rest) = path.strip_prefix("./") {
        path = rest;
    }
    path
}

/// Parses a duration in Go's notation (`10s`, `1.5m`, `100ms`, `1h30m`; units
/// `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`) into seconds. A plain number counts as
/// seconds. Negative durations are rejected.
pub fn parse_duration(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then_some(seconds);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        // Sub-second units divide, so that `100ms` is exactly the double
        // nearest to 0.1.
        let (multiply, divide) = match &rest[..unit_len] {
            "ns" => (1.0, 1e9),
            "us" | "µs" | "μs" => (1.0, 1e6),
            "ms" => (1.0, 1e3),
            "s" => (1.0, 1.0),
            "m" => (60.0, 1.0),
            "h" => (3600.0, 1.0),
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * multiply / divide;
    }
    total.is_finite().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(file: &str, classname: &str, name: &str, seconds: f64) -> TestCase {
        TestCase {
            file: file.into(),
            classname: classname.into(),
            name: name.into(),
            seconds,
        }
    }

    #[test]
    fn parses_lines_and_skips_malformed_ones() {
        let text = "file\tclassname\tname\tseconds\n\
                    a.py\tA\ttest_x\t1.5\r\n\
                    \tcom.B\ttest_y\t2\n\
                    short\tline\n\
                    b.py\tB\tt\t-1\n\
                    \n";
        assert_eq!(
            parse_timings(text),
            [
                case("a.py", "A", "test_x", 1.5),
                case("", "com.B", "test_y", 2.0)
            ]
        );
    }

    #[test]
    fn autodetects_files_by_slash_or_extension() {
        assert_eq!(autodetect(&["tests/test_a"]), TimingsType::Filename);
        assert_eq!(autodetect(&["a.py", "B"]), TimingsType::Filename);
        assert_eq!(autodetect(&["widget.spec.js"]), TimingsType::Filename);
        assert_eq!(autodetect(&["main_test.go"]), TimingsType::Filename);
        assert_eq!(
            autodetect(&["com.example.FooTest", "BarTest"]),
            TimingsType::Classname
        );
        assert_eq!(autodetect(&[".py"]), TimingsType::Classname);
        assert_eq!(autodetect::<&str>(&[]), TimingsType::Classname);
    }

    #[test]
    fn file_weights_sum_cases_and_match_path_suffixes() {
        let cases = [
            case("tests/a.py", "A", "t1", 1.0),
            case("tests/a.py", "A", "t2", 2.0),
            case("./b.py", "B", "t", 4.0),
            case("/repo/tests/c.py", "C", "t", 8.0),
            case("", "D", "t", 16.0),
        ];
        let items = [
            "tests/a.py",
            "/abs/project/b.py",
            "tests/c.py",
            "./tests/a.py",
            "d.py",
        ];
        assert_eq!(
            weights(&items, &cases, TimingsType::Filename),
            [Some(3.0), Some(4.0), Some(8.0), Some(3.0), None]
        );
        // A suffix that is not at a `/` boundary does not match.
        assert_eq!(
            weights(
                &["a.py"],
                &[case("tests/xa.py", "", "", 1.0)],
                TimingsType::Filename
            ),
            [None]
        );
    }

    #[test]
    fn classname_and_testname_weights() {
        let cases = [
            case("", "com.A", "one", 1.0),
            case("", "com.A", "two", 2.0),
            case("", "com.B", "one", 4.0),
        ];
        assert_eq!(
            weights(&["com.A", "com.B", "com.C"], &cases, TimingsType::Classname),
            [Some(3.0), Some(4.0), None]
        );
        assert_eq!(
            weights(
                &["com.A.one", "two", "one", "three"],
                &cases,
                TimingsType::Testname
            ),
            [Some(1.0), Some(2.0), Some(5.0), None]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(10.0));
        assert_eq!(parse_duration("1.5m"), Some(90.0));
        assert_eq!(parse_duration("100ms"), Some(0.1));
        assert_eq!(parse_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_duration("0"), Some(0.0));
        assert_eq!(parse_duration("2.5"), Some(2.5));
        assert_eq!(parse_duration("250us"), Some(0.00025));
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration(""), None);
    }
}
