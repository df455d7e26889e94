//! Diagnostics: what is wrong with a config, and where.
//!
//! Compiling never fails: broken input is data. The compiler records [`Issue`]s with
//! spans while it works; at the end they become [`Diagnostic`]s with a file name,
//! line, column and the config path of the node (`workflows.main.jobs[2]`), found by
//! walking the source tree only when there is something to report.

use std::fmt;

use serde::Serialize;

use crate::yaml::{Node, Span, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding, ready to show to a person or a tool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// The file (or orb, as `orb circleci/node@5.1.0`) the problem is in.
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
    /// The config path of the node: `workflows.main.jobs[2].deploy.requires[0]`.
    pub path: Option<String>,
    pub hint: Option<String>,
    /// How the compiler got there, outermost first, in CircleCI's words:
    /// `Error calling workflow: 'main'`, `Error calling job: 'build'`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<String>,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: error: message`, then `at <path>`, the trace and the hint on
    /// indented lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match (&self.file, self.line, self.column) {
            (Some(file), Some(line), Some(col)) => write!(f, "{file}:{line}:{col}: ")?,
            (Some(file), _, _) => write!(f, "{file}: ")?,
            _ => {}
        }
        write!(f, "{severity}: {}", self.message)?;
        if let Some(path) = &self.path {
            write!(f, "\n  at {path}")?;
        }
        // Repeated frames (a command calling itself) are shown once with a count.
        let mut i = 0;
        while i < self.trace.len() {
            let run = self.trace[i..]
                .iter()
                .take_while(|t| **t == self.trace[i])
                .count();
            write!(f, "\n  in {}", self.trace[i])?;
            if run > 1 {
                write!(f, " (x{run})")?;
            }
            i += run;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// A finding as the compiler records it, before positions are resolved.
#[derive(Clone, Debug)]
pub(crate) struct Issue {
    pub severity: Severity,
    pub message: String,
    pub span: Option<Span>,
    pub hint: Option<String>,
    pub trace: Vec<String>,
}

/// Finds the config path of the node (or key) written at `span` in `root`.
///
/// The shallowest match wins: a block mapping starts where its first key does, and
/// an error about the mapping should name the mapping.
pub(crate) fn path_of(root: &Node, span: Span) -> Option<String> {
    let mut path = String::new();
    if root.span == span {
        return None;
    }
    if find(root, span, &mut path) {
        Some(path)
    } else {
        None
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn find(node: &Node, span: Span, path: &mut String) -> bool {
    let len = path.len();
    match &node.value {
        Value::Map(map) => {
            // Breadth first within one level: the shallowest node at a position wins.
            for entry in map.iter() {
                if entry.value.span == span || entry.key_span == span {
                    push_key(path, &entry.key);
                    return true;
                }
            }
            for entry in map.iter() {
                push_key(path, &entry.key);
                if find(&entry.value, span, path) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                if item.span == span {
                    path.push_str(&format!("[{i}]"));
                    return true;
                }
            }
            for (i, item) in items.iter().enumerate() {
                path.push_str(&format!("[{i}]"));
                if find(item, span, path) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        _ => false,
    }
}

/// The closest candidate to `name`, for "did you mean" hints.
pub(crate) fn suggest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let limit = (name.chars().count() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        let d = strsim::damerau_levenshtein(name, c);
        let close = d <= limit || c.eq_ignore_ascii_case(name);
        if close && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{SourceId, parse};

    #[test]
    fn finds_paths() {
        let text =
            "workflows:\n  main:\n    jobs:\n      - a\n      - b:\n          requires: [x]\n";
        let root = parse(text, SourceId(0)).unwrap().root;
        let span = Span {
            source: SourceId(0),
            line: 6,
            col: 22,
        };
        assert_eq!(
            path_of(&root, span).as_deref(),
            Some("workflows.main.jobs[1].b.requires[0]")
        );
        let job_map = Span {
            source: SourceId(0),
            line: 5,
            col: 9,
        };
        assert_eq!(
            path_of(&root, job_map).as_deref(),
            Some("workflows.main.jobs[1]")
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("biuld", ["build", "test"]).as_deref(),
            Some("did you mean `build`?")
        );
        assert_eq!(suggest("zzz", ["build", "test"]), None);
    }
}
