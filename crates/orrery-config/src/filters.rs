//! Branch and tag filters: which git refs a workflow job (or a schedule) runs for.
//!
//! Patterns are exact names or `/regex/`, and a regex must match the whole name, as
//! CircleCI's (Java) matching does. The rules for tags follow CircleCI: a job runs
//! for a tag only when it has a `tags` filter that admits it.

use regex::Regex;
use serde::{Deserialize, Serialize};

/// A git ref a pipeline is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitRef<'a> {
    Branch(&'a str),
    Tag(&'a str),
}

/// One filter pattern.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pattern {
    Exact(String),
    /// The regex between the slashes (`/^v.*/` is stored as `^v.*`).
    Regex(String),
}

impl Pattern {
    /// Parses `name` or `/regex/`.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.len() >= 2 && text.starts_with('/') && text.ends_with('/') {
            let inner = &text[1..text.len() - 1];
            compile_full_match(inner)?;
            Ok(Pattern::Regex(inner.to_string()))
        } else {
            Ok(Pattern::Exact(text.to_string()))
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Exact(exact) => exact == name,
            Pattern::Regex(re) => compile_full_match(re).is_ok_and(|re| re.is_match(name)),
        }
    }

    /// The pattern as written in a config.
    pub fn to_config_string(&self) -> String {
        match self {
            Pattern::Exact(s) => s.clone(),
            Pattern::Regex(re) => format!("/{re}/"),
        }
    }
}

/// Compiles a Java-style regex so that it must match the whole input. Compiled
/// regexes are cached per thread: the same filter is checked for every matrix
/// cell and every pipeline.
pub fn compile_full_match(re: &str) -> Result<Regex, String> {
    thread_local! {
        static CACHE: std::cell::RefCell<std::collections::HashMap<String, Result<Regex, String>>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    CACHE.with(|cache| {
        if let Some(hit) = cache.borrow().get(re) {
            return hit.clone();
        }
        let result = compile_uncached(re);
        let mut cache = cache.borrow_mut();
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(re.to_string(), result.clone());
        result
    })
}

fn compile_uncached(re: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{re})$")).map_err(|e| {
        let detail = e.to_string();
        let last = detail.lines().last().unwrap_or_default().trim();
        let last = last.strip_prefix("error: ").unwrap_or(last).to_string();
        if re.contains("(?=") || re.contains("(?!") || re.contains("(?<=") || re.contains("(?<!") {
            format!("invalid regular expression /{re}/: look-around is not supported ({last})")
        } else {
            format!("invalid regular expression /{re}/: {last}")
        }
    })
}

/// `only` and `ignore` lists for branches or tags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatternFilter {
    pub only: Vec<Pattern>,
    pub ignore: Vec<Pattern>,
    /// Whether `only`/`ignore` were written as a single string (printing keeps it).
    #[serde(default)]
    pub only_scalar: bool,
    #[serde(default)]
    pub ignore_scalar: bool,
}

impl PatternFilter {
    /// `only` is considered first: with an `only` list, a name must match it;
    /// otherwise it must not match `ignore`.
    pub fn admits(&self, name: &str) -> bool {
        if !self.only.is_empty() {
            return self.only.iter().any(|p| p.matches(name));
        }
        !self.ignore.iter().any(|p| p.matches(name))
    }
}

/// `filters:` of a workflow job or a schedule trigger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    pub branches: Option<PatternFilter>,
    pub tags: Option<PatternFilter>,
    /// An expression filter (`filters: pipeline.git.branch == "main"`), which
    /// replaces the branch and tag rules.
    #[serde(default)]
    pub expression: Option<FilterExpression>,
}

/// An expression filter and its value for the pipeline the plan was compiled for
/// (expressions only read pipeline values, so the value is known then).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterExpression {
    pub source: String,
    pub result: bool,
}

impl Filters {
    /// Whether a job with these filters runs for `git_ref`, on its own (the
    /// workflow rule that upstream jobs of a tag build need tag filters too is
    /// applied by the workflow, see [`crate::plan::Workflow`]).
    pub fn admits(&self, git_ref: GitRef<'_>) -> bool {
        if let Some(e) = &self.expression {
            return e.result;
        }
        match git_ref {
            GitRef::Branch(branch) => self.branches.as_ref().is_none_or(|b| b.admits(branch)),
            GitRef::Tag(tag) => self.tags.as_ref().is_some_and(|t| {
                // A tags filter with neither list admits no tag.
                (!t.only.is_empty() || !t.ignore.is_empty()) && t.admits(tag)
            }),
        }
    }
}

/// [`Filters::admits`] for a job that may have no filters at all.
pub fn job_admits(filters: Option<&Filters>, git_ref: GitRef<'_>) -> bool {
    match filters {
        Some(f) => f.admits(git_ref),
        None => matches!(git_ref, GitRef::Branch(_)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(only: &[&str], ignore: &[&str]) -> PatternFilter {
        PatternFilter {
            only: only.iter().map(|p| Pattern::parse(p).unwrap()).collect(),
            ignore: ignore.iter().map(|p| Pattern::parse(p).unwrap()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn regex_must_match_whole_name() {
        let p = Pattern::parse("/release-.*/").unwrap();
        assert!(p.matches("release-1"));
        assert!(!p.matches("pre-release-1"));
        let p = Pattern::parse("/main|dev/").unwrap();
        assert!(p.matches("dev"));
        assert!(!p.matches("devx"));
    }

    #[test]
    fn only_wins_over_ignore() {
        let f = filter(&["main"], &["main"]);
        assert!(f.admits("main"));
        assert!(!f.admits("dev"));
    }

    #[test]
    fn tags_need_a_tags_filter() {
        let none = Filters::default();
        assert!(none.admits(GitRef::Branch("x")));
        assert!(!none.admits(GitRef::Tag("v1")));
        assert!(!job_admits(None, GitRef::Tag("v1")));
        let tagged = Filters {
            branches: Some(filter(&[], &["/.*/"])),
            tags: Some(filter(&["/^v.*/"], &[])),
            expression: None,
        };
        assert!(tagged.admits(GitRef::Tag("v1.0")));
        assert!(!tagged.admits(GitRef::Tag("x1.0")));
        assert!(!tagged.admits(GitRef::Branch("main")));
    }

    #[test]
    fn bad_regex_is_a_clear_error() {
        let err = Pattern::parse("/^(?!main).*/").unwrap_err();
        assert!(err.contains("look-around"), "{err}");
        let err = Pattern::parse("/(/").unwrap_err();
        assert!(err.starts_with("invalid regular expression /(/"), "{err}");
    }
}
