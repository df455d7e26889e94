//! `circleci tests glob`: the files matching glob patterns.
//!
//! A pattern is brace-expanded first (`{a,b}` alternation, nestable), then split
//! into path components. Within a component `*` matches any run of characters,
//! `?` one character, `[abc]`, `[a-z]` and `[!a]` (or `[^a]`) one character of a
//! class, and `\` escapes the next character. A component that is exactly `**`
//! matches zero or more whole directories; `**` inside a longer component acts
//! like `*` (the rule of Go's doublestar, which CircleCI's patterns follow).
//!
//! Compatibility decisions: wildcards match names starting with a dot (as Go's
//! matchers do); `**` does not descend into symbolic links to directories (it
//! would loop on a cyclic link), but a link named by a literal component or
//! matched by a one-level wildcard is followed; `.` components are dropped, so
//! `./src/*.py` prints `src/a.py`; a pattern ending in `/` names a directory and
//! matches nothing, since only files are printed.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::args::{self, Spec};
use crate::{Env, Failure, Io, Outcome};

const USAGE: &str = "\
Usage: circleci tests glob PATTERN...

Print the files matching any PATTERN, one per line, sorted and without duplicates.
Relative patterns print paths relative to the current directory.

Patterns: * (any characters but /), ** (any number of directories, as a whole
component), ? (one character), [abc] [a-z] [!a] (character classes), {a,b}
(alternatives). Quote the patterns so the shell does not expand them.
";

/// Runs `tests glob` with the arguments after `glob`.
pub fn command(argv: &[String], io: &mut Io<'_>, env: &Env) -> Outcome {
    let parsed = args::parse(
        argv,
        &Spec {
            values: &[],
            switches: &[],
        },
    )?;
    if parsed.help {
        io.stdout
            .write_all(USAGE.as_bytes())
            .map_err(Failure::write)?;
        return Ok(0);
    }
    if parsed.positionals.is_empty() {
        return Err(Failure::Usage(
            "tests glob needs at least one pattern".to_string(),
        ));
    }
    let base = if env.cwd.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        env.cwd.clone()
    };
    for path in glob(&parsed.positionals, &base) {
        writeln!(io.stdout, "{path}").map_err(Failure::write)?;
    }
    Ok(0)
}

/// The files matching any of `patterns`, sorted and deduplicated. Relative
/// patterns are resolved against `base` and give paths relative to it; absolute
/// patterns give absolute paths.
pub fn glob(patterns: &[String], base: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for pattern in patterns {
        for expanded in expand_braces(pattern) {
            glob_one(&expanded, base, &mut out);
        }
    }
    out
}

fn glob_one(pattern: &str, base: &Path, out: &mut BTreeSet<String>) {
    if pattern.is_empty() || pattern.ends_with('/') {
        return;
    }
    let absolute = pattern.starts_with('/');
    let mut components: Vec<Component> = Vec::new();
    for part in pattern.split('/') {
        if part.is_empty() || part == "." {
            continue;
        }
        let component = Component::parse(part);
        // Consecutive `**` match what one does; collapsing them keeps the walk
        // linear.
        if component == Component::AnyDirs && components.last() == Some(&Component::AnyDirs) {
            continue;
        }
        components.push(component);
    }
    if components.is_empty() {
        return;
    }
    let (start, prefix) = if absolute {
        (PathBuf::from("/"), "/".to_string())
    } else {
        (base.to_path_buf(), String::new())
    };
    let mut walker = Walker {
        components: &components,
        out,
    };
    walker.walk(&start, &prefix, 0);
}

struct Walker<'a> {
    components: &'a [Component],
    out: &'a mut BTreeSet<String>,
}

impl Walker<'_> {
    /// Matches `components[idx..]` below `path`, whose printed form is
    /// `display` (empty for the base directory, `/` for the root).
    fn walk(&mut self, path: &Path, display: &str, idx: usize) {
        let Some(component) = self.components.get(idx) else {
            if !display.is_empty() && fs::metadata(path).is_ok_and(|m| m.is_file()) {
                self.out.insert(display.to_string());
            }
            return;
        };
        match component {
            Component::Literal(name) => {
                self.walk(&path.join(name), &join(display, name), idx + 1);
            }
            Component::Pattern(tokens) => {
                for (name, child, _) in entries(path) {
                    if matches(tokens, &name) {
                        self.walk(&child, &join(display, &name), idx + 1);
                    }
                }
            }
            Component::AnyDirs => {
                // Zero directories.
                self.walk(path, display, idx + 1);
                // One more directory (and so on, recursively), or, when `**`
                // ends the pattern, a file at this depth.
                let last = idx + 1 == self.components.len();
                for (name, child, is_real_dir) in entries(path) {
                    if is_real_dir {
                        self.walk(&child, &join(display, &name), idx);
                    } else if last && fs::metadata(&child).is_ok_and(|m| m.is_file()) {
                        self.out.insert(join(display, &name));
                    }
                }
            }
        }
    }
}

/// The entries of a directory: name, path and whether it is a directory that is
/// not a symbolic link. An unreadable directory has no entries.
fn entries(dir: &Path) -> Vec<(String, PathBuf, bool)> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    read.filter_map(Result::ok)
        .map(|entry| {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
                is_dir,
            )
        })
        .collect()
}

fn join(display: &str, name: &str) -> String {
    if display.is_empty() {
        name.to_string()
    } else if display.ends_with('/') {
        format!("{display}{name}")
    } else {
        format!("{display}/{name}")
    }
}

/// Expands `{a,b}` alternations, including nested ones, into every pattern they
/// stand for. A brace group without a top-level comma, an unmatched brace and an
/// escaped brace (`\{`) are literal.
pub fn expand_braces(pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    expand_into(pattern, 0, &mut out);
    out
}

fn expand_into(pattern: &str, from: usize, out: &mut Vec<String>) {
    let bytes = pattern.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'{' => {
                if let Some((close, commas)) = brace_group(bytes, i)
                    && !commas.is_empty()
                {
                    let prefix = &pattern[..i];
                    let suffix = &pattern[close + 1..];
                    let mut start = i + 1;
                    for end in commas.into_iter().chain([close]) {
                        let alternative = &pattern[start..end];
                        // The prefix holds no expandable group, so scanning
                        // resumes where the alternative starts.
                        expand_into(&format!("{prefix}{alternative}{suffix}"), i, out);
                        start = end + 1;
                    }
                    return;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    out.push(pattern.to_string());
}

/// The matching `}` of the `{` at `open` and the positions of its top-level
/// commas.
fn brace_group(bytes: &[u8], open: usize) -> Option<(usize, Vec<usize>)> {
    let mut depth = 0usize;
    let mut commas = Vec::new();
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' if depth == 0 => return Some((i, commas)),
            b'}' => depth -= 1,
            b',' if depth == 0 => commas.push(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// One path component of a pattern.
#[derive(Debug, PartialEq)]
enum Component {
    /// A name without wildcards (escapes removed).
    Literal(String),
    /// `**`: zero or more directories.
    AnyDirs,
    /// A name with wildcards.
    Pattern(Vec<Token>),
}

impl Component {
    fn parse(text: &str) -> Component {
        if text == "**" {
            return Component::AnyDirs;
        }
        let tokens = tokenize(text);
        let literal: Option<String> = tokens
            .iter()
            .map(|t| match t {
                Token::Char(c) => Some(*c),
                _ => None,
            })
            .collect();
        match literal {
            Some(name) => Component::Literal(name),
            None => Component::Pattern(tokens),
        }
    }
}

/// One element of a component pattern.
#[derive(Debug, PartialEq)]
enum Token {
    /// This character.
    Char(char),
    /// `?`: any one character.
    Any,
    /// `*`: any run of characters.
    Star,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches_char(&self, c: char) -> bool {
        match self {
            Token::Char(x) => *x == c,
            Token::Any => true,
            Token::Star => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                tokens.push(Token::Char(chars[i + 1]));
                i += 2;
            }
            '*' => {
                // Runs of stars (`**` inside a component) are one star.
                if tokens.last() != Some(&Token::Star) {
                    tokens.push(Token::Star);
                }
                i += 1;
            }
            '?' => {
                tokens.push(Token::Any);
                i += 1;
            }
            '[' => match parse_class(&chars, i) {
                Some((token, next)) => {
                    tokens.push(token);
                    i = next;
                }
                None => {
                    tokens.push(Token::Char('['));
                    i += 1;
                }
            },
            c => {
                tokens.push(Token::Char(c));
                i += 1;
            }
        }
    }
    tokens
}

/// Parses the class starting at `chars[open] == '['`: the token and the index
/// after its `]`, or `None` when the class is not closed (then `[` is literal).
fn parse_class(chars: &[char], open: usize) -> Option<(Token, usize)> {
    let mut i = open + 1;
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let mut c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        if c == '\\' {
            i += 1;
            c = *chars.get(i)?;
        }
        i += 1;
        // A range `a-z`, unless the `-` ends the class.
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&n| n != ']') {
            let mut hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *chars.get(i)?;
                i += 1;
            }
            ranges.push((c, hi));
        } else {
            ranges.push((c, c));
        }
    }
}

/// Whether `name` matches the component pattern `tokens`.
fn matches(tokens: &[Token], name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    let (mut t, mut n) = (0, 0);
    // The last star seen and the name position it is currently assumed to
    // stretch to; on a mismatch the star absorbs one more character.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, n));
                t += 1;
                continue;
            }
            Some(token) if token.matches_char(name[n]) => {
                t += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((st, sn)) => {
                t = st + 1;
                n = sn + 1;
                star = Some((st, sn + 1));
            }
            None => return false,
        }
    }
    tokens[t..].iter().all(|tok| *tok == Token::Star)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TempDir, env_with, run_cmd};

    fn pat_matches(pattern: &str, name: &str) -> bool {
        matches(&tokenize(pattern), name)
    }

    #[test]
    fn component_matching() {
        assert!(pat_matches("*.py", "test_a.py"));
        assert!(pat_matches("*.py", ".hidden.py"));
        assert!(!pat_matches("*.py", "test_a.pyc"));
        assert!(pat_matches("a*b*c", "aXXbYYc"));
        assert!(!pat_matches("a*b*c", "aXXbYY"));
        assert!(pat_matches("?.rb", "a.rb"));
        assert!(!pat_matches("?.rb", "ab.rb"));
        assert!(pat_matches("[abc].txt", "b.txt"));
        assert!(!pat_matches("[abc].txt", "d.txt"));
        assert!(pat_matches("[a-c][0-9]", "c7"));
        assert!(pat_matches("[!a]x", "bx"));
        assert!(!pat_matches("[!a]x", "ax"));
        assert!(pat_matches("[^a]x", "bx"));
        assert!(pat_matches("[]]", "]"));
        assert!(pat_matches("[a-]", "-"));
        assert!(pat_matches("\\*", "*"));
        assert!(!pat_matches("\\*", "x"));
        assert!(pat_matches("[unclosed", "[unclosed"));
        assert!(pat_matches("*", ""));
        assert!(pat_matches("ünï*", "ünïcode"));
    }

    #[test]
    fn brace_expansion() {
        let mut e = expand_braces("{a,b}/*.{py,rb}");
        e.sort();
        assert_eq!(e, ["a/*.py", "a/*.rb", "b/*.py", "b/*.rb"]);
        let mut e = expand_braces("x{a,{b,c}d}y");
        e.sort();
        assert_eq!(e, ["xay", "xbdy", "xcdy"]);
        assert_eq!(expand_braces("{a}"), ["{a}"]);
        assert_eq!(expand_braces("{a,b"), ["{a,b"]);
        assert_eq!(expand_braces("\\{a,b}"), ["\\{a,b}"]);
        let mut e = expand_braces("{,x}y");
        e.sort();
        assert_eq!(e, ["xy", "y"]);
    }

    fn tree() -> TempDir {
        let dir = TempDir::new("glob");
        for f in [
            "top.py",
            "setup.cfg",
            "a/one.py",
            "a/two.rb",
            "a/deep/er/three.py",
            "b/four.py",
            "c/five.py",
            "x1.txt",
            "x2.txt",
            "xy.txt",
            "x10.txt",
        ] {
            dir.write(f, "");
        }
        // A directory whose name matches `*.py` must not be printed.
        fs::create_dir_all(dir.path().join("pkg.py/inner")).unwrap();
        dir.write("pkg.py/inner/mod.py", "");
        dir
    }

    fn glob_strs(patterns: &[&str], base: &Path) -> Vec<String> {
        let patterns: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        glob(&patterns, base).into_iter().collect()
    }

    #[test]
    fn double_star_matches_any_depth_including_zero_and_only_files() {
        let dir = tree();
        assert_eq!(
            glob_strs(&["**/*.py"], dir.path()),
            [
                "a/deep/er/three.py",
                "a/one.py",
                "b/four.py",
                "c/five.py",
                "pkg.py/inner/mod.py",
                "top.py",
            ]
        );
        assert_eq!(
            glob_strs(&["a/**"], dir.path()),
            ["a/deep/er/three.py", "a/one.py", "a/two.rb"]
        );
        assert_eq!(
            glob_strs(&["a/**/three.py"], dir.path()),
            ["a/deep/er/three.py"]
        );
        assert_eq!(glob_strs(&["**/**/one.py"], dir.path()), ["a/one.py"]);
    }

    #[test]
    fn braces_question_marks_and_classes() {
        let dir = tree();
        assert_eq!(
            glob_strs(&["{a,b}/*"], dir.path()),
            ["a/one.py", "a/two.rb", "b/four.py"]
        );
        assert_eq!(
            glob_strs(&["x?.txt"], dir.path()),
            ["x1.txt", "x2.txt", "xy.txt"]
        );
        assert_eq!(glob_strs(&["x[0-9].txt"], dir.path()), ["x1.txt", "x2.txt"]);
        assert_eq!(glob_strs(&["x[!0-9].txt"], dir.path()), ["xy.txt"]);
        assert_eq!(
            glob_strs(&["x[12y].txt"], dir.path()),
            ["x1.txt", "x2.txt", "xy.txt"]
        );
        // A directory matching the last component is not a file.
        assert_eq!(glob_strs(&["*.py"], dir.path()), ["top.py"]);
        assert_eq!(glob_strs(&["a"], dir.path()), Vec::<String>::new());
        assert_eq!(glob_strs(&["a/"], dir.path()), Vec::<String>::new());
    }

    #[test]
    fn several_patterns_are_merged_sorted_and_deduplicated() {
        let dir = tree();
        assert_eq!(
            glob_strs(
                &["b/*.py", "./b/four.py", "*/four.py", "top.py", "missing/*"],
                dir.path()
            ),
            ["b/four.py", "top.py"]
        );
    }

    #[test]
    fn absolute_patterns_give_absolute_paths() {
        let dir = tree();
        let pattern = format!("{}/b/*.py", dir.path().display());
        let got = glob_strs(&[&pattern], Path::new("/nonexistent"));
        assert_eq!(got, [format!("{}/b/four.py", dir.path().display())]);
    }

    #[test]
    fn command_prints_one_path_per_line() {
        let dir = tree();
        let env = env_with(&[], dir.path());
        let r = run_cmd(&["tests", "glob", "c/*.py", "b/*.py"], "", &env);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout, "b/four.py\nc/five.py\n");

        let r = run_cmd(&["tests", "glob"], "", &env);
        assert_eq!(r.code, 2);
        assert!(
            r.stderr.contains("needs at least one pattern"),
            "{}",
            r.stderr
        );
    }
}
