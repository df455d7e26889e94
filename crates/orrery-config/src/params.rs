//! Parameters: declarations, argument binding with type checks, and `<< >>`
//! substitution.
//!
//! Substitution is lexical: an element's body is substituted once with that
//! element's own arguments, and inserted argument values are never scanned again,
//! so a steps argument written in a job keeps meaning what it meant in the job.
//! A reference that is the whole scalar keeps the argument's type (and its span,
//! which carries its source and therefore its scope); a reference inside a longer
//! string is interpolated as text. `\<<` escapes a reference.

use std::sync::Arc;

use crate::diag::suggest;
use crate::yaml::{Map, Node, Span, Value};

/// The type of a parameter.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ParamType {
    String,
    Boolean,
    Integer,
    Enum(Vec<String>),
    Executor,
    Steps,
    EnvVarName,
}

impl ParamType {
    fn name(&self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Boolean => "boolean",
            ParamType::Integer => "integer",
            ParamType::Enum(_) => "enum",
            ParamType::Executor => "executor",
            ParamType::Steps => "steps",
            ParamType::EnvVarName => "env_var_name",
        }
    }
}

/// A declared parameter.
#[derive(Clone, Debug)]
pub(crate) struct ParamDecl {
    pub name: Arc<str>,
    pub ty: ParamType,
    pub default: Option<Node>,
}

/// Which element declares parameters (pipeline parameters have stricter rules).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeclKind {
    Element,
    /// An element of an orb: early published orbs declare parameters without a
    /// `type`, which meant string.
    OrbElement,
    Pipeline,
}

/// A problem with a declaration or an argument; the caller turns it into an issue.
pub(crate) struct ParamProblem {
    pub message: String,
    pub span: Span,
    pub hint: Option<String>,
}

fn problem(message: impl Into<String>, span: Span) -> ParamProblem {
    ParamProblem {
        message: message.into(),
        span,
        hint: None,
    }
}

pub(crate) fn valid_element_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Reads a `parameters:` map of declarations.
pub(crate) fn parse_decls(
    node: Option<&Node>,
    kind: DeclKind,
    problems: &mut Vec<ParamProblem>,
) -> Vec<ParamDecl> {
    let Some(node) = node else {
        return Vec::new();
    };
    if node.is_null() {
        return Vec::new();
    }
    let Some(map) = node.as_map() else {
        problems.push(problem(
            format!(
                "parameters must be a map of declarations, expected type: Mapping, found: {}",
                node.type_name()
            ),
            node.span,
        ));
        return Vec::new();
    };
    let mut decls = Vec::with_capacity(map.len());
    for entry in map.iter() {
        if kind != DeclKind::Pipeline && !valid_element_name(&entry.key) {
            problems.push(problem(
                format!(
                    "invalid parameter name `{}`: names start with a letter and use letters, digits, `_` and `-`",
                    entry.key
                ),
                entry.key_span,
            ));
            continue;
        }
        if let Some(decl) = parse_decl(&entry.key, &entry.value, kind, problems) {
            decls.push(decl);
        }
    }
    decls
}

fn parse_decl(
    name: &Arc<str>,
    node: &Node,
    kind: DeclKind,
    problems: &mut Vec<ParamProblem>,
) -> Option<ParamDecl> {
    let Some(map) = node.as_map() else {
        problems.push(problem(
            format!(
                "parameter `{name}` must be a map with `type` (and `default`, `description`, `enum`), found: {}",
                node.type_name()
            ),
            node.span,
        ));
        return None;
    };
    for entry in map.iter() {
        if !matches!(&*entry.key, "type" | "default" | "description" | "enum") {
            let mut p = problem(
                format!(
                    "extraneous key [{}] is not permitted in parameter `{name}`",
                    entry.key
                ),
                entry.key_span,
            );
            p.hint = suggest(&entry.key, ["type", "default", "description", "enum"]);
            problems.push(p);
        }
    }
    let implicit_string = Node::str("string", node.span);
    let ty_node = match map.get("type") {
        Some(t) => t,
        None if kind == DeclKind::OrbElement => &implicit_string,
        None => {
            problems.push(problem(
                format!("parameter `{name}`: required key [type] not found"),
                node.span,
            ));
            return None;
        }
    };
    let ty_name = ty_node.as_str().unwrap_or("");
    let allowed: &[&str] = match kind {
        DeclKind::Pipeline => &["string", "boolean", "integer", "enum"],
        DeclKind::Element | DeclKind::OrbElement => &[
            "string",
            "boolean",
            "integer",
            "enum",
            "executor",
            "steps",
            "env_var_name",
        ],
    };
    if !allowed.contains(&ty_name) {
        let mut p = problem(
            format!(
                "parameter `{name}` has an unknown type `{}`; allowed types: {}",
                ty_node.scalar_text().unwrap_or_default(),
                allowed.join(", ")
            ),
            ty_node.span,
        );
        p.hint = suggest(ty_name, allowed.iter().copied());
        problems.push(p);
        return None;
    }
    let ty = match ty_name {
        "string" => ParamType::String,
        "boolean" => ParamType::Boolean,
        "integer" => ParamType::Integer,
        "executor" => ParamType::Executor,
        "steps" => ParamType::Steps,
        "env_var_name" => ParamType::EnvVarName,
        _ => {
            let Some(values) = map.get("enum").and_then(Node::as_seq) else {
                problems.push(problem(
                    format!("enum parameter `{name}` needs an `enum` list of allowed values"),
                    node.span,
                ));
                return None;
            };
            let values: Vec<String> = values
                .iter()
                .filter_map(|v| v.scalar_text().map(|t| t.into_owned()))
                .collect();
            if values.is_empty() {
                problems.push(problem(
                    format!("enum parameter `{name}` has an empty `enum` list"),
                    node.span,
                ));
                return None;
            }
            ParamType::Enum(values)
        }
    };
    if map.contains_key("enum") && !matches!(ty, ParamType::Enum(_)) {
        problems.push(problem(
            format!("parameter `{name}`: `enum` is only allowed with `type: enum`"),
            map.entry("enum").map_or(node.span, |e| e.key_span),
        ));
    }
    let default = map.get("default").cloned();
    let default = match default {
        // `default: ~` on a string parameter reads as "no default" in some
        // configs; CircleCI treats a null default as a value, an empty string.
        Some(d) if d.is_null() && ty == ParamType::String => Some(Node::str("", d.span)),
        other => other,
    };
    if let Some(d) = &default {
        if let Err(mut p) = check_value(name, &ty, d) {
            p.message = format!("default of {}", p.message);
            problems.push(p);
        }
    } else if kind == DeclKind::Pipeline {
        problems.push(problem(
            format!("pipeline parameter `{name}` needs a `default`"),
            node.span,
        ));
        return None;
    }
    Some(ParamDecl {
        name: name.clone(),
        ty,
        default,
    })
}

fn type_error(name: &str, ty: &ParamType, value: &Node) -> ParamProblem {
    let shown = match value.scalar_text() {
        Some(t) => format!("\"{t}\""),
        None => value.type_name().to_lowercase(),
    };
    problem(
        format!(
            "Type error for argument {name}: expected type: {}, actual value: {shown} (type {})",
            ty.name(),
            match &value.value {
                Value::Str(_) => "string",
                Value::Int(_) => "integer",
                Value::Float(_) => "float",
                Value::Bool(_) => "boolean",
                Value::Null => "null",
                Value::Seq(_) => "sequence",
                Value::Map(_) => "mapping",
            }
        ),
        value.span,
    )
}

/// Checks an argument against its type and returns the value to bind.
pub(crate) fn check_value(name: &str, ty: &ParamType, value: &Node) -> Result<Node, ParamProblem> {
    let ok = match (ty, &value.value) {
        (ParamType::String, Value::Str(_)) => true,
        // An empty string parameter may be written as `~`.
        (ParamType::String, Value::Null) => {
            return Ok(Node::str("", value.span));
        }
        (ParamType::Boolean, Value::Bool(_)) => true,
        (ParamType::Integer, Value::Int(_)) => true,
        (ParamType::Enum(allowed), _) => {
            let Some(text) = value.scalar_text() else {
                return Err(type_error(name, ty, value));
            };
            if !allowed.iter().any(|a| *a == text) {
                let mut p = problem(
                    format!(
                        "argument {name}: value \"{text}\" is not one of the allowed values: {}",
                        allowed.join(", ")
                    ),
                    value.span,
                );
                p.hint = suggest(&text, allowed.iter().map(String::as_str));
                return Err(p);
            }
            return Ok(Node::str(text.into_owned(), value.span));
        }
        (ParamType::Executor, Value::Str(_)) => true,
        (ParamType::Executor, Value::Map(m)) => {
            if !m.contains_key("name") {
                return Err(problem(
                    format!("argument {name}: an executor given as a map needs a `name`"),
                    value.span,
                ));
            }
            true
        }
        (ParamType::Steps, Value::Seq(_)) => true,
        (ParamType::Steps, Value::Null) => {
            return Ok(Node::new(Value::Seq(Vec::new()), value.span));
        }
        (ParamType::EnvVarName, Value::Str(s)) => {
            if !is_env_var_name(s) {
                return Err(problem(
                    format!(
                        "argument {name}: \"{s}\" is not a valid environment variable name (letters, digits and `_`, not starting with a digit)"
                    ),
                    value.span,
                ));
            }
            true
        }
        _ => false,
    };
    if ok {
        Ok(value.clone())
    } else {
        Err(type_error(name, ty, value))
    }
}

pub(crate) fn is_env_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Arguments bound to parameters: name → value.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bindings {
    pub values: Vec<(Arc<str>, Node)>,
}

impl Bindings {
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.values
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v)
    }
}

/// Binds invocation arguments to declarations: type checks, defaults, and the
/// CircleCI errors for unexpected and missing arguments.
pub(crate) fn bind(
    decls: &[ParamDecl],
    args: &[(&Arc<str>, Span, &Node)],
    at: Span,
    problems: &mut Vec<ParamProblem>,
) -> Bindings {
    let mut values = Vec::with_capacity(decls.len());
    let unexpected: Vec<_> = args
        .iter()
        .filter(|(name, _, _)| !decls.iter().any(|d| d.name == **name))
        .collect();
    if !unexpected.is_empty() {
        let names: Vec<&str> = unexpected.iter().map(|(n, _, _)| &***n).collect();
        let mut p = problem(
            format!("Unexpected argument(s): {}", names.join(", ")),
            unexpected[0].1,
        );
        p.hint = if decls.is_empty() {
            Some("this element declares no parameters".to_string())
        } else {
            suggest(names[0], decls.iter().map(|d| &*d.name)).or_else(|| {
                Some(format!(
                    "declared parameters: {}",
                    decls
                        .iter()
                        .map(|d| &*d.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        };
        problems.push(p);
    }
    let mut missing = Vec::new();
    for decl in decls {
        let given = args.iter().find(|(n, _, _)| **n == decl.name);
        match given {
            Some((_, _, value)) => match check_value(&decl.name, &decl.ty, value) {
                Ok(v) => values.push((decl.name.clone(), v)),
                Err(p) => {
                    problems.push(p);
                    // Bound anyway, so the body does not report it missing too.
                    values.push((decl.name.clone(), (*value).clone()));
                }
            },
            None => match &decl.default {
                Some(d) => {
                    if let Ok(v) = check_value(&decl.name, &decl.ty, d) {
                        values.push((decl.name.clone(), v));
                    }
                }
                None => {
                    missing.push(&*decl.name);
                    // Bound to an empty value so the body does not report it again.
                    values.push((decl.name.clone(), Node::str("", at)));
                }
            },
        }
    }
    if !missing.is_empty() {
        problems.push(problem(
            format!("Missing required argument(s): {}", missing.join(", ")),
            at,
        ));
    }
    Bindings { values }
}

/// Which `<< ns.name >>` references a substitution pass replaces.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Namespace {
    Parameters,
    Pipeline,
    Matrix,
}

impl Namespace {
    fn prefix(self) -> &'static str {
        match self {
            Namespace::Parameters => "parameters.",
            Namespace::Pipeline => "pipeline.",
            Namespace::Matrix => "matrix.",
        }
    }
}

/// Whether `s` contains `<<`; `memchr` on `<` is much faster than a substring
/// search on the hot path (most strings have no `<` at all).
pub(crate) fn has_angle_pair(s: &str) -> bool {
    find_pair(s.as_bytes()).is_some()
}

/// The offset of the first `<<`.
fn find_pair(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = bytes[from..].iter().position(|b| *b == b'<') {
        let at = from + i;
        if bytes.get(at + 1) == Some(&b'<') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// A reference found in a string: byte range and the name after the prefix.
struct Reference<'a> {
    start: usize,
    end: usize,
    name: &'a str,
}

/// Finds `<< ns.name >>` references; `\<<` is an escape and never a reference.
fn find_references(s: &str, ns: Namespace) -> Vec<Reference<'_>> {
    let mut refs = Vec::new();
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(off) = find_pair(&bytes[from..]) {
        let start = from + off;
        from = start + 2;
        if start > 0 && bytes[start - 1] == b'\\' {
            continue;
        }
        let mut i = start + 2;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let prefix = ns.prefix();
        if !s[i..].starts_with(prefix) {
            continue;
        }
        let name_start = i + prefix.len();
        let mut j = name_start;
        while j < bytes.len()
            && (bytes[j].is_ascii_alphanumeric() || matches!(bytes[j], b'_' | b'-' | b'.'))
        {
            j += 1;
        }
        if j == name_start {
            continue;
        }
        let name_end = j;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if !s[j..].starts_with(">>") {
            continue;
        }
        refs.push(Reference {
            start,
            end: j + 2,
            name: &s[name_start..name_end],
        });
        from = j + 2;
    }
    refs
}

/// A reference that could not be resolved, or a value that cannot be interpolated.
pub(crate) struct SubstProblem {
    pub message: String,
    pub span: Span,
    pub hint: Option<String>,
}

/// Replaces references of one namespace in a tree.
pub(crate) struct Substituter<'a> {
    pub ns: Namespace,
    pub lookup: &'a dyn Fn(&str) -> Option<Node>,
    /// Names available, for hints.
    pub known: &'a dyn Fn() -> Vec<String>,
    pub problems: Vec<SubstProblem>,
}

impl Substituter<'_> {
    pub fn node(&mut self, node: &Node) -> Node {
        match &node.value {
            Value::Str(s) => self.string(s, node.span),
            Value::Seq(items) => Node::new(
                Value::Seq(items.iter().map(|n| self.node(n)).collect()),
                node.span,
            ),
            Value::Map(map) => Node::new(Value::Map(self.map(map)), node.span),
            _ => node.clone(),
        }
    }

    pub fn map(&mut self, map: &Map) -> Map {
        let mut out = Map {
            entries: Vec::with_capacity(map.len()),
        };
        for entry in map.iter() {
            let value = self.node(&entry.value);
            if has_angle_pair(&entry.key) {
                // A substituted key may now equal another key: the later wins.
                let k = self.string(&entry.key, entry.key_span);
                let key = match k.scalar_text() {
                    Some(t) => Arc::from(t.as_ref()),
                    None => entry.key.clone(),
                };
                out.insert(key, entry.key_span, value);
            } else {
                out.entries.push(crate::yaml::Entry {
                    key: entry.key.clone(),
                    key_span: entry.key_span,
                    value,
                });
            }
        }
        out
    }

    fn unknown(&mut self, name: &str, span: Span) {
        let full = format!("{}{name}", self.ns.prefix());
        let (message, hint) = match self.ns {
            Namespace::Parameters => (
                format!("Arguments referenced without declared parameters: {full}"),
                suggest(name, (self.known)().iter().map(String::as_str))
                    .or_else(|| Some("declare it under `parameters:` of this job, command or executor; parameters are not inherited from callers".into())),
            ),
            Namespace::Pipeline => {
                if let Some(p) = name.strip_prefix("parameters.") {
                    (
                        format!("Unknown pipeline parameter: {p} (referenced as << {full} >>)"),
                        suggest(&full, (self.known)().iter().map(String::as_str))
                            .or_else(|| Some("declare it under the top-level `parameters:`; pipeline parameters are not visible inside orbs".into())),
                    )
                } else {
                    (
                        format!("Unknown pipeline value: {full}"),
                        suggest(&full, (self.known)().iter().map(String::as_str)),
                    )
                }
            }
            Namespace::Matrix => (
                format!("Unknown matrix parameter: {full}"),
                suggest(name, (self.known)().iter().map(String::as_str)),
            ),
        };
        self.problems.push(SubstProblem {
            message,
            span,
            hint,
        });
    }

    pub fn string(&mut self, s: &Arc<str>, span: Span) -> Node {
        if !has_angle_pair(s) {
            return Node::new(Value::Str(s.clone()), span);
        }
        let sectioned;
        let s = if self.ns == Namespace::Parameters && (s.contains("<<#") || s.contains("<<^")) {
            sectioned = Arc::from(self.sections(s, span));
            &sectioned
        } else {
            s
        };
        let refs = find_references(s, self.ns);
        if refs.is_empty() {
            return Node::new(Value::Str(s.clone()), span);
        }
        // The whole scalar is one reference: keep the value's type and origin.
        if refs.len() == 1 && refs[0].start == 0 && refs[0].end == s.len() {
            return match (self.lookup)(refs[0].name) {
                // Parameter values keep their own span: it carries the scope the
                // value was written in. Other values were not written anywhere.
                Some(v) if self.ns == Namespace::Parameters => v,
                Some(mut v) => {
                    v.span = span;
                    v
                }
                None => {
                    self.unknown(refs[0].name, span);
                    Node::new(Value::Str(s.clone()), span)
                }
            };
        }
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for r in &refs {
            out.push_str(&s[last..r.start]);
            match (self.lookup)(r.name) {
                Some(v) => match v.scalar_text() {
                    Some(t) => out.push_str(&t),
                    None => {
                        self.problems.push(SubstProblem {
                            message: format!(
                                "{}{} is a {} and cannot be placed inside a string",
                                self.ns.prefix(),
                                r.name,
                                v.type_name().to_lowercase()
                            ),
                            span,
                            hint: Some("use the reference as the whole value instead".into()),
                        });
                        out.push_str(&s[r.start..r.end]);
                    }
                },
                None => {
                    self.unknown(r.name, span);
                    out.push_str(&s[r.start..r.end]);
                }
            }
            last = r.end;
        }
        out.push_str(&s[last..]);
        Node::new(Value::Str(out.into()), span)
    }
}

impl Substituter<'_> {
    /// Resolves `<<# parameters.x >>text<</ parameters.x >>` (kept when `x` is
    /// truthy) and `<<^ parameters.x >>text<</ parameters.x >>` (kept when falsy).
    fn sections(&mut self, s: &str, span: Span) -> String {
        let mut text = s.to_string();
        // Each pass removes one section; the bound stops malformed input.
        for _ in 0..1000 {
            let Some((open_start, open_end, inverted, name)) = find_tag(&text, &['#', '^'], None)
            else {
                break;
            };
            let Some((close_start, close_end, _, _)) =
                find_tag(&text[open_end..], &['/'], Some(&name))
            else {
                self.problems.push(SubstProblem {
                    message: format!(
                        "section <<{} parameters.{name} >> has no closing <</ parameters.{name} >>",
                        if inverted { '^' } else { '#' }
                    ),
                    span,
                    hint: None,
                });
                break;
            };
            let truthy = match (self.lookup)(&name) {
                Some(v) => match &v.value {
                    Value::Bool(b) => *b,
                    Value::Null => false,
                    Value::Str(s) => !s.is_empty(),
                    Value::Int(i) => *i != 0,
                    Value::Seq(items) => !items.is_empty(),
                    _ => true,
                },
                None => {
                    self.unknown(&name, span);
                    false
                }
            };
            let inner = text[open_end..open_end + close_start].to_string();
            let keep = truthy != inverted;
            text = format!(
                "{}{}{}",
                &text[..open_start],
                if keep { inner.as_str() } else { "" },
                &text[open_end + close_end..]
            );
        }
        text
    }
}

/// Finds `<<X parameters.name >>` with X one of `marks`: (start, end, X is `^`, name).
fn find_tag(s: &str, marks: &[char], want: Option<&str>) -> Option<(usize, usize, bool, String)> {
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(off) = find_pair(&bytes[from..]) {
        let start = from + off;
        from = start + 2;
        let mut i = start + 2;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let Some(mark) = s[i..].chars().next().filter(|c| marks.contains(c)) else {
            continue;
        };
        i += 1;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let Some(rest) = s[i..].strip_prefix("parameters.") else {
            continue;
        };
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        let mut j = i + "parameters.".len() + name_len;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if name.is_empty() || !s[j..].starts_with(">>") || want.is_some_and(|w| w != name) {
            continue;
        }
        return Some((start, j + 2, mark == '^', name.to_string()));
    }
    None
}

/// Turns `\<<` escapes into `<<` once substitution is over.
pub(crate) fn unescape(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains("\\<<") {
        std::borrow::Cow::Owned(s.replace("\\<<", "<<"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::SourceId;

    fn span() -> Span {
        Span {
            source: SourceId(0),
            line: 1,
            col: 1,
        }
    }

    #[test]
    fn finds_references_with_and_without_spaces() {
        let refs = find_references(
            "a << parameters.x >> b <<parameters.y-z>> \\<< parameters.q >> <<EOF",
            Namespace::Parameters,
        );
        let names: Vec<_> = refs.iter().map(|r| r.name).collect();
        assert_eq!(names, ["x", "y-z"]);
    }

    #[test]
    fn whole_value_keeps_type_and_strings_interpolate() {
        let lookup = |name: &str| match name {
            "n" => Some(Node::new(Value::Int(3), span())),
            "b" => Some(Node::new(Value::Bool(true), span())),
            _ => None,
        };
        let known = || vec!["n".to_string(), "b".to_string()];
        let mut sub = Substituter {
            ns: Namespace::Parameters,
            lookup: &lookup,
            known: &known,
            problems: Vec::new(),
        };
        let whole = sub.string(&Arc::from("<< parameters.n >>"), span());
        assert!(matches!(whole.value, Value::Int(3)));
        let text = sub.string(
            &Arc::from("n=<< parameters.n >>, b=<<parameters.b>>"),
            span(),
        );
        assert_eq!(text.as_str(), Some("n=3, b=true"));
        let _ = sub.string(&Arc::from("<< parameters.nn >>"), span());
        assert_eq!(sub.problems.len(), 1);
        assert_eq!(
            sub.problems[0].message,
            "Arguments referenced without declared parameters: parameters.nn"
        );
        assert_eq!(sub.problems[0].hint.as_deref(), Some("did you mean `n`?"));
    }

    #[test]
    fn sections() {
        let lookup = |name: &str| match name {
            "on" => Some(Node::new(Value::Bool(true), span())),
            "off" => Some(Node::new(Value::Bool(false), span())),
            _ => None,
        };
        let known = Vec::new;
        let mut sub = Substituter {
            ns: Namespace::Parameters,
            lookup: &lookup,
            known: &known,
            problems: Vec::new(),
        };
        let out = sub.string(
            &Arc::from("a <<# parameters.on >>X=1<</ parameters.on >> b <<# parameters.off >>Y<</ parameters.off >><<^ parameters.off >>Z<</ parameters.off >>"),
            span(),
        );
        assert_eq!(out.as_str(), Some("a X=1 b Z"));
        assert!(sub.problems.is_empty());
    }

    #[test]
    fn type_checks() {
        let s = |v: Value| Node::new(v, span());
        assert!(check_value("x", &ParamType::String, &s(Value::Str("a".into()))).is_ok());
        let err = check_value("x", &ParamType::String, &s(Value::Float("3.10".into())))
            .err()
            .unwrap();
        assert_eq!(
            err.message,
            "Type error for argument x: expected type: string, actual value: \"3.10\" (type float)"
        );
        assert!(check_value("x", &ParamType::Boolean, &s(Value::Str("yes".into()))).is_err());
        let e = ParamType::Enum(vec!["a".into(), "b".into()]);
        assert!(check_value("x", &e, &s(Value::Str("c".into()))).is_err());
        assert!(check_value("x", &ParamType::EnvVarName, &s(Value::Str("1A".into()))).is_err());
        assert!(check_value("x", &ParamType::EnvVarName, &s(Value::Str("A_1".into()))).is_ok());
    }
}
