//! `orb pack`: an orb source tree into one orb YAML, as `circleci orb pack` does.
//!
//! The tree's root holds `@orb.yml`. Every other `.yml`/`.yaml` file becomes a key
//! named by its path (`commands/greet.yml` is `commands.greet`), a file named
//! `@x.yml` merges into its directory's key, and a string that is exactly
//! `<<include(path)>>` is replaced by that file's text (path relative to the root,
//! `<<` in it escaped as `\<<` so the orb does not read it as a parameter).
//! Files are read through [`PackFiles`], so this module does no I/O itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::emit::emit;
use crate::yaml::{self, Map, Node, SourceId, Span, Value};

/// Read access to an orb source tree; paths are relative, `/`-separated.
pub trait PackFiles {
    /// Every file in the tree.
    fn files(&self) -> Vec<String>;
    fn read(&self, path: &str) -> Result<String, String>;
}

/// An in-memory tree: path → contents.
impl PackFiles for BTreeMap<String, String> {
    fn files(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }

    fn read(&self, path: &str) -> Result<String, String> {
        self.get(path)
            .cloned()
            .ok_or_else(|| format!("no such file: {path}"))
    }
}

/// A problem while packing: the file and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackError {
    pub file: String,
    pub line: Option<u32>,
    pub message: String,
}

impl std::fmt::Display for PackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

fn is_yaml(path: &str) -> bool {
    path.ends_with(".yml") || path.ends_with(".yaml")
}

fn hidden(path: &str) -> bool {
    path.split('/').any(|part| part.starts_with('.'))
}

/// Packs the tree into orb YAML, or returns every problem found.
pub fn pack(files: &dyn PackFiles) -> Result<String, Vec<PackError>> {
    let mut errors = Vec::new();
    let mut paths: Vec<String> = files
        .files()
        .into_iter()
        .filter(|p| is_yaml(p) && !hidden(p))
        .collect();
    paths.sort();
    if !paths.iter().any(|p| p == "@orb.yml" || p == "@orb.yaml") {
        return Err(vec![PackError {
            file: "@orb.yml".into(),
            line: None,
            message: "the orb source has no @orb.yml at its root (pack the directory that holds it, usually src/)".into(),
        }]);
    }
    let mut root = Map::default();
    // `@orb.yml` first, so its keys lead the output.
    paths.sort_by_key(|p| !(p == "@orb.yml" || p == "@orb.yaml"));
    for path in &paths {
        let text = match files.read(path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(PackError {
                    file: path.clone(),
                    line: None,
                    message: e,
                });
                continue;
            }
        };
        let doc = match yaml::parse(&text, SourceId(0)) {
            Ok(d) => d.root,
            Err(e) => {
                errors.push(PackError {
                    file: path.clone(),
                    line: Some(e.line),
                    message: format!("not valid YAML: {}", e.message),
                });
                continue;
            }
        };
        let doc = include(doc, path, files, &mut errors);
        let (dirs, file_name) = match path.rsplit_once('/') {
            Some((d, f)) => (d.split('/').collect::<Vec<_>>(), f),
            None => (Vec::new(), path.as_str()),
        };
        let stem = file_name
            .strip_suffix(".yml")
            .or_else(|| file_name.strip_suffix(".yaml"))
            .unwrap_or(file_name);
        let mut key_path: Vec<&str> = dirs;
        let merge = stem.starts_with('@');
        if !merge {
            key_path.push(stem);
        }
        if let Err(message) = place(&mut root, &key_path, doc, merge) {
            errors.push(PackError {
                file: path.clone(),
                line: None,
                message,
            });
        }
    }
    if errors.is_empty() {
        Ok(emit(&Node::new(Value::Map(root), Span::default())))
    } else {
        Err(errors)
    }
}

/// Puts `doc` at `path` in the tree; `merge` folds a mapping into that level.
fn place(root: &mut Map, path: &[&str], doc: Node, merge: bool) -> Result<(), String> {
    let mut level = root;
    for (i, key) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        if last && !merge {
            if level.contains_key(key) {
                return Err(format!("`{}` is defined twice", path.join(".")));
            }
            level.insert(*key, Span::default(), doc);
            return Ok(());
        }
        if !level.contains_key(key) {
            level.insert(
                *key,
                Span::default(),
                Node::new(Value::Map(Map::default()), Span::default()),
            );
        }
        let entry = level
            .entries
            .iter_mut()
            .find(|e| &*e.key == *key)
            .expect("just inserted");
        level = match &mut entry.value.value {
            Value::Map(m) => m,
            _ => {
                return Err(format!(
                    "`{}` is both a value and a directory",
                    path[..=i].join(".")
                ));
            }
        };
    }
    // Merge a file's mapping into this level.
    match doc.value {
        Value::Map(m) => {
            for e in m.entries {
                if level.contains_key(&e.key) {
                    return Err(format!("`{}` is defined twice", e.key));
                }
                level.entries.push(e);
            }
            Ok(())
        }
        Value::Null => Ok(()),
        other => Err(format!(
            "an @ file must hold a mapping, found: {}",
            other.type_name()
        )),
    }
}

/// Replaces `<<include(path)>>` strings throughout a document.
fn include(node: Node, file: &str, files: &dyn PackFiles, errors: &mut Vec<PackError>) -> Node {
    match node.value {
        Value::Str(s) if s.contains("include(") => match include_target(&s) {
            Ok(Some(target)) => match files.read(&target) {
                Ok(text) => Node::new(Value::Str(Arc::from(text.replace("<<", "\\<<"))), node.span),
                Err(_) => {
                    errors.push(PackError {
                        file: file.into(),
                        line: Some(node.span.line),
                        message: format!("could not open {target} for inclusion"),
                    });
                    Node::new(Value::Str(s), node.span)
                }
            },
            Ok(None) => Node::new(Value::Str(s), node.span),
            Err(message) => {
                errors.push(PackError {
                    file: file.into(),
                    line: Some(node.span.line),
                    message,
                });
                Node::new(Value::Str(s), node.span)
            }
        },
        Value::Seq(items) => Node::new(
            Value::Seq(
                items
                    .into_iter()
                    .map(|n| include(n, file, files, errors))
                    .collect(),
            ),
            node.span,
        ),
        Value::Map(m) => Node::new(
            Value::Map(Map {
                entries: m
                    .entries
                    .into_iter()
                    .map(|mut e| {
                        e.value = include(e.value, file, files, errors);
                        e
                    })
                    .collect(),
            }),
            node.span,
        ),
        other => Node::new(other, node.span),
    }
}

/// The file an include statement names, `None` when there is none.
fn include_target(s: &str) -> Result<Option<String>, String> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(off) = s[from..].find("<<") {
        let start = from + off;
        from = start + 2;
        let rest = s[start + 2..].trim_start();
        let Some(after) = rest.strip_prefix("include(") else {
            continue;
        };
        let Some(close) = after.find(')') else {
            continue;
        };
        let path = &after[..close];
        let tail = after[close + 1..].trim_start();
        if !tail.starts_with(">>") {
            continue;
        }
        if path.is_empty()
            || !path
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '.' | '-'))
        {
            continue;
        }
        let end = s.len() - tail.len() + 2;
        found.push((start, end, path.to_string()));
    }
    match found.as_slice() {
        [] => Ok(None),
        [(start, end, path)] => {
            if *start != 0 || *end != s.len() {
                return Err(format!("entire string must be include statement: '{s}'"));
            }
            if path.starts_with('/') || path.split('/').any(|p| p == "..") {
                return Err(format!(
                    "include path {path} must stay inside the orb source directory"
                ));
            }
            Ok(Some(path.trim_start_matches("./").to_string()))
        }
        _ => Err(format!("multiple include statements: '{s}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
        files
            .iter()
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect()
    }

    #[test]
    fn packs_a_tree() {
        let t = tree(&[
            ("@orb.yml", "version: 2.1\ndescription: Greets\n"),
            (
                "commands/greet.yml",
                "parameters:\n  to: {type: string, default: world}\nsteps:\n  - run: <<include(scripts/greet.sh)>>\n",
            ),
            ("scripts/greet.sh", "echo \"hello << parameters.to >>\"\n"),
            (
                "executors/@executors.yml",
                "default:\n  docker: [{image: busybox}]\n",
            ),
            ("jobs/hello.yml", "executor: default\nsteps: [greet]\n"),
            ("README.md", "ignored"),
        ]);
        let out = pack(&t).unwrap();
        expect_test::expect![[r#"
            version: 2.1
            description: Greets
            commands:
              greet:
                parameters:
                  to:
                    type: string
                    default: world
                steps:
                - run: |
                    echo "hello \<< parameters.to >>"
            executors:
              default:
                docker:
                - image: busybox
            jobs:
              hello:
                executor: default
                steps:
                - greet
        "#]]
        .assert_eq(&out);
    }

    #[test]
    fn include_errors() {
        assert!(
            include_target("echo <<include(a.sh)>>")
                .unwrap_err()
                .contains("entire string")
        );
        assert!(
            include_target("<<include(../x.sh)>>")
                .unwrap_err()
                .contains("inside")
        );
        assert_eq!(
            include_target("<< include(a/b.sh) >>").unwrap().as_deref(),
            Some("a/b.sh")
        );
        let t = tree(&[
            ("@orb.yml", "version: 2.1\n"),
            ("commands/x.yml", "steps: [run: <<include(missing.sh)>>]\n"),
        ]);
        let errs = pack(&t).unwrap_err();
        assert_eq!(errs[0].message, "could not open missing.sh for inclusion");
        assert_eq!(errs[0].file, "commands/x.yml");
    }

    #[test]
    fn needs_orb_yml() {
        let errs = pack(&tree(&[("commands/x.yml", "steps: []")])).unwrap_err();
        assert!(errs[0].message.contains("@orb.yml"));
    }
}
