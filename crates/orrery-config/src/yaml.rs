//! YAML with positions: a document tree that remembers where every node came from.
//!
//! CircleCI configs need more than a plain YAML value: every node keeps its line and
//! column (diagnostics point at them), scalars resolve the YAML 1.1 way CircleCI reads
//! them (`yes`/`on` are booleans), anchors may be redefined, and merge keys
//! (`<<: *defaults`) are applied. The tree is built from saphyr-parser's event stream
//! with an explicit stack, so deep input cannot overflow the call stack, and alias
//! expansion has a budget, so a "billion laughs" document is refused instead of
//! exhausting memory.

use std::borrow::Cow;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Tag};

/// Identifies one source text (the config file, an orb, an inline orb).
///
/// Nodes carry it in their span; the compiler also uses it as the lexical scope of
/// the definitions in that source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct SourceId(pub u32);

/// Where a node starts: 1-based line and column in one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub source: SourceId,
    pub line: u32,
    pub col: u32,
}

/// A YAML node and where it was written.
#[derive(Clone, Debug)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

/// A resolved YAML value.
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// A float (or an integer too large for `i64`), kept as written.
    Float(Arc<str>),
    Str(Arc<str>),
    Seq(Vec<Node>),
    Map(Map),
}

/// One `key: value` pair of a mapping.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: Arc<str>,
    pub key_span: Span,
    pub value: Node,
}

/// A mapping that keeps the order of its keys.
#[derive(Clone, Debug, Default)]
pub struct Map {
    pub entries: Vec<Entry>,
}

impl Map {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries
            .iter()
            .find(|e| &*e.key == key)
            .map(|e| &e.value)
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| &*e.key == key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.iter().any(|e| &*e.key == key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| &*e.key)
    }

    /// Sets `key`, replacing an existing value in place or appending.
    pub fn insert(&mut self, key: impl Into<Arc<str>>, key_span: Span, value: Node) {
        let key = key.into();
        if let Some(e) = self.entries.iter_mut().find(|e| e.key == key) {
            e.value = value;
        } else {
            self.entries.push(Entry {
                key,
                key_span,
                value,
            });
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        let idx = self.entries.iter().position(|e| &*e.key == key)?;
        Some(self.entries.remove(idx))
    }
}

impl Node {
    pub fn new(value: Value, span: Span) -> Node {
        Node { value, span }
    }

    pub fn str(s: impl Into<Arc<str>>, span: Span) -> Node {
        Node::new(Value::Str(s.into()), span)
    }

    pub fn as_map(&self) -> Option<&Map> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The text of a scalar as CircleCI would print it inside a string
    /// (`true`, `42`, `1.5`, `` for null); `None` for collections.
    pub fn scalar_text(&self) -> Option<Cow<'_, str>> {
        match &self.value {
            Value::Null => Some(Cow::Borrowed("")),
            Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Value::Int(i) => Some(Cow::Owned(i.to_string())),
            Value::Float(f) => Some(Cow::Borrowed(f)),
            Value::Str(s) => Some(Cow::Borrowed(s)),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// A short name of the node's type for error messages, in the words CircleCI's
    /// validator uses (`String`, `Mapping`, `Sequence`, ...).
    pub fn type_name(&self) -> &'static str {
        self.value.type_name()
    }

    /// Structural equality, ignoring spans.
    pub fn same_value(&self, other: &Node) -> bool {
        self.value.same_value(&other.value)
    }
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "Null",
            Value::Bool(_) => "Boolean",
            Value::Int(_) => "Integer",
            Value::Float(_) => "Float",
            Value::Str(_) => "String",
            Value::Seq(_) => "Sequence",
            Value::Map(_) => "Mapping",
        }
    }

    /// Structural equality, ignoring spans.
    pub fn same_value(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Seq(a), Value::Seq(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_value(y))
            }
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b.iter())
                        .all(|(x, y)| x.key == y.key && x.value.same_value(&y.value))
            }
            _ => false,
        }
    }
}

/// A problem found while reading YAML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    pub message: String,
    pub line: u32,
    pub col: u32,
}

/// A duplicate key, reported as a warning: the later value wins, as in CircleCI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateKey {
    pub key: String,
    pub span: Span,
}

/// The result of reading one YAML source.
#[derive(Debug)]
pub struct Document {
    pub root: Node,
    pub duplicate_keys: Vec<DuplicateKey>,
}

/// Limits that keep hostile input from exhausting the stack or memory.
const MAX_DEPTH: usize = 256;
const MAX_NODES: usize = 4_000_000;

enum Frame {
    Seq {
        anchor: usize,
        span: Span,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        span: Span,
        builder: MapBuilder,
        key: Option<PendingKey>,
    },
}

struct PendingKey {
    text: Arc<str>,
    span: Span,
    merge: bool,
}

/// Collects mapping entries and applies merge keys and duplicate-key rules.
#[derive(Default)]
struct MapBuilder {
    entries: Vec<Entry>,
    /// Parallel to `entries`: whether the entry came from a merge key.
    merged: Vec<bool>,
}

impl MapBuilder {
    fn position(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|e| &*e.key == key)
    }

    fn explicit(&mut self, key: PendingKey, value: Node, dups: &mut Vec<DuplicateKey>) {
        match self.position(&key.text) {
            Some(i) => {
                if !self.merged[i] {
                    dups.push(DuplicateKey {
                        key: key.text.to_string(),
                        span: key.span,
                    });
                }
                self.entries[i].value = value;
                self.merged[i] = false;
            }
            None => {
                self.entries.push(Entry {
                    key: key.text,
                    key_span: key.span,
                    value,
                });
                self.merged.push(false);
            }
        }
    }

    /// Applies `<<: value`: keys already present (explicit or merged earlier) win.
    fn merge(&mut self, value: Node) -> Result<(), YamlError> {
        let sources = match value.value {
            Value::Map(m) => vec![m],
            Value::Seq(items) => {
                let mut maps = Vec::with_capacity(items.len());
                for item in items {
                    match item.value {
                        Value::Map(m) => maps.push(m),
                        other => {
                            return Err(YamlError {
                                message: format!(
                                    "a merge key (<<) takes a mapping or a list of mappings, found a {} in the list",
                                    other.type_name()
                                ),
                                line: item.span.line,
                                col: item.span.col,
                            });
                        }
                    }
                }
                maps
            }
            other => {
                return Err(YamlError {
                    message: format!(
                        "a merge key (<<) takes a mapping or a list of mappings, found a {}",
                        other.type_name()
                    ),
                    line: value.span.line,
                    col: value.span.col,
                });
            }
        };
        for map in sources {
            for entry in map.entries {
                if self.position(&entry.key).is_none() {
                    self.entries.push(entry);
                    self.merged.push(true);
                }
            }
        }
        Ok(())
    }
}

fn node_count(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Value::Map(m) => {
            1 + m
                .entries
                .iter()
                .map(|e| node_count(&e.value))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// Reads one YAML document. `source` is stamped into every span.
pub fn parse(text: &str, source: SourceId) -> Result<Document, YamlError> {
    let mut builder = TreeBuilder {
        stack: Vec::new(),
        anchors: Vec::new(),
        nodes: 0,
        duplicate_keys: Vec::new(),
        root: None,
        documents: 0,
    };
    let parser = Parser::new_from_str(text);
    for event in parser {
        let (event, span) = event.map_err(|e| YamlError {
            message: if e.info() == "recursion limit exceeded" {
                "the document nests more than 256 levels deep".to_string()
            } else {
                e.info().to_string()
            },
            line: e.marker().line() as u32,
            col: e.marker().col() as u32 + 1,
        })?;
        let at = Span {
            source,
            line: span.start.line() as u32,
            col: span.start.col() as u32 + 1,
        };
        builder.event(event, at)?;
    }
    let root = builder.root.unwrap_or(Node {
        value: Value::Null,
        span: Span {
            source,
            line: 1,
            col: 1,
        },
    });
    Ok(Document {
        root,
        duplicate_keys: builder.duplicate_keys,
    })
}

struct TreeBuilder {
    stack: Vec<Frame>,
    /// Anchored nodes by anchor id, with their node counts.
    anchors: Vec<Option<(Node, usize)>>,
    nodes: usize,
    duplicate_keys: Vec<DuplicateKey>,
    root: Option<Node>,
    documents: usize,
}

impl TreeBuilder {
    fn error(&self, message: impl Into<String>, at: Span) -> YamlError {
        YamlError {
            message: message.into(),
            line: at.line,
            col: at.col,
        }
    }

    fn event(&mut self, event: Event<'_>, at: Span) -> Result<(), YamlError> {
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(self.error(
                        "the file holds more than one YAML document (a second `---`); a config is one document",
                        at,
                    ));
                }
                self.anchors.clear();
            }
            Event::Alias(id) => {
                let Some(Some((node, count))) = self.anchors.get(id) else {
                    return Err(self.error(
                        "alias refers to an anchor that is not complete here (a recursive alias)",
                        at,
                    ));
                };
                self.nodes += count;
                if self.nodes > MAX_NODES {
                    return Err(self.error(
                        "the document is too large once its aliases are expanded (more than 4,000,000 nodes)",
                        at,
                    ));
                }
                let node = node.clone();
                if matches!(node.value, Value::Seq(_) | Value::Map(_)) {
                    self.complete(node, 0, at)?;
                } else {
                    self.complete_scalar(node, 0, false, at)?;
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.nodes += 1;
                let node = self.scalar(&text, style, tag.as_deref(), at)?;
                // A plain `<<` in key position is a merge key.
                let is_merge_key = style == ScalarStyle::Plain && text == "<<" && tag.is_none();
                self.complete_scalar(node, anchor, is_merge_key, at)?;
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_tag(tag.as_deref(), "seq", at)?;
                self.push(
                    Frame::Seq {
                        anchor,
                        span: at,
                        items: Vec::new(),
                    },
                    at,
                )?;
            }
            Event::MappingStart(anchor, tag) => {
                self.check_tag(tag.as_deref(), "map", at)?;
                self.push(
                    Frame::Map {
                        anchor,
                        span: at,
                        builder: MapBuilder::default(),
                        key: None,
                    },
                    at,
                )?;
            }
            Event::SequenceEnd => {
                let Some(Frame::Seq {
                    anchor,
                    span,
                    items,
                }) = self.stack.pop()
                else {
                    return Err(self.error("unbalanced sequence end", at));
                };
                self.nodes += 1;
                self.complete(Node::new(Value::Seq(items), span), anchor, span)?;
            }
            Event::MappingEnd => {
                let Some(Frame::Map {
                    anchor,
                    span,
                    builder,
                    key,
                }) = self.stack.pop()
                else {
                    return Err(self.error("unbalanced mapping end", at));
                };
                if key.is_some() {
                    return Err(self.error("mapping key without a value", at));
                }
                self.nodes += 1;
                let map = Map {
                    entries: builder.entries,
                };
                self.complete(Node::new(Value::Map(map), span), anchor, span)?;
            }
        }
        Ok(())
    }

    fn push(&mut self, frame: Frame, at: Span) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.error("the document nests more than 256 levels deep", at));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn check_tag(&self, tag: Option<&Tag>, expected: &str, at: Span) -> Result<(), YamlError> {
        match tag {
            None => Ok(()),
            Some(t) if t.handle == "tag:yaml.org,2002:" && t.suffix == expected => Ok(()),
            Some(t) => Err(self.error(
                format!(
                    "unsupported YAML tag `{}{}` on a collection",
                    t.handle, t.suffix
                ),
                at,
            )),
        }
    }

    fn scalar(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
        at: Span,
    ) -> Result<Node, YamlError> {
        let value = match tag {
            Some(t) if t.handle == "tag:yaml.org,2002:" || t.handle == "!!" => {
                match t.suffix.as_str() {
                    "str" => Value::Str(text.into()),
                    "null" => Value::Null,
                    "bool" => match resolve_plain(text) {
                        v @ Value::Bool(_) => v,
                        _ => return Err(self.error(format!("`{text}` is not a boolean"), at)),
                    },
                    "int" => match resolve_plain(text) {
                        v @ Value::Int(_) => v,
                        _ => return Err(self.error(format!("`{text}` is not an integer"), at)),
                    },
                    "float" => match resolve_plain(text) {
                        v @ (Value::Int(_) | Value::Float(_)) => v,
                        _ => return Err(self.error(format!("`{text}` is not a number"), at)),
                    },
                    other => {
                        return Err(self.error(format!("unsupported YAML tag `!!{other}`"), at));
                    }
                }
            }
            Some(t) if t.handle == "!" && t.suffix.is_empty() => Value::Str(text.into()),
            Some(t) => {
                return Err(self.error(
                    format!("unsupported YAML tag `{}{}`", t.handle, t.suffix),
                    at,
                ));
            }
            None if style == ScalarStyle::Plain => resolve_plain(text),
            None => Value::Str(text.into()),
        };
        Ok(Node::new(value, at))
    }

    fn complete_scalar(
        &mut self,
        node: Node,
        anchor: usize,
        is_merge_key: bool,
        at: Span,
    ) -> Result<(), YamlError> {
        if let Some(Frame::Map { key, .. }) = self.stack.last_mut()
            && key.is_none()
        {
            let text: Arc<str> = match &node.value {
                Value::Str(s) => s.clone(),
                Value::Float(f) => f.clone(),
                // Keys keep their written text: `on:` stays "on", `1:` stays "1".
                _ => Arc::from(node.scalar_text().unwrap_or_default().as_ref()),
            };
            let text = if matches!(node.value, Value::Null) {
                Arc::from("")
            } else {
                text
            };
            *key = Some(PendingKey {
                text,
                span: at,
                merge: is_merge_key,
            });
            if anchor != 0 {
                self.store_anchor(anchor, &node);
            }
            return Ok(());
        }
        self.complete(node, anchor, at)
    }

    fn store_anchor(&mut self, anchor: usize, node: &Node) {
        if self.anchors.len() <= anchor {
            self.anchors.resize(anchor + 1, None);
        }
        self.anchors[anchor] = Some((node.clone(), node_count(node)));
    }

    /// Hands a finished node to its parent (or makes it the root).
    fn complete(&mut self, node: Node, anchor: usize, at: Span) -> Result<(), YamlError> {
        if anchor != 0 {
            self.store_anchor(anchor, &node);
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map { builder, key, .. }) => match key.take() {
                None => {
                    // A collection in key position.
                    Err(YamlError {
                        message: format!(
                            "a {} cannot be used as a mapping key",
                            node.type_name().to_lowercase()
                        ),
                        line: at.line,
                        col: at.col,
                    })
                }
                Some(k) if k.merge => builder.merge(node),
                Some(k) => {
                    builder.explicit(k, node, &mut self.duplicate_keys);
                    Ok(())
                }
            },
        }
    }
}

/// Resolves a plain scalar the way a YAML 1.1 loader (CircleCI's) does.
pub fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return Value::Float(text.into()),
        _ => {}
    }
    let bytes = text.as_bytes();
    let first = bytes[0];
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return Value::Str(text.into());
    }
    if let Some(v) = resolve_int(text) {
        return v;
    }
    if is_float(text) {
        return Value::Float(text.into());
    }
    Value::Str(text.into())
}

fn resolve_int(text: &str) -> Option<Value> {
    let (neg, body) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if body.is_empty() {
        return None;
    }
    let (radix, digits) = if let Some(hex) = body.strip_prefix("0x") {
        (16, hex)
    } else if let Some(oct) = body.strip_prefix("0o") {
        (8, oct)
    } else if let Some(bin) = body.strip_prefix("0b") {
        (2, bin)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || !digits
            .bytes()
            .all(|b| b == b'_' || (b as char).is_digit(radix))
    {
        return None;
    }
    let cleaned: String = digits.chars().filter(|c| *c != '_').collect();
    match i64::from_str_radix(&cleaned, radix) {
        Ok(v) => Some(Value::Int(if neg { -v } else { v })),
        // Too large for i64: still a number, kept as written.
        Err(_) if radix == 10 => Some(Value::Float(text.into())),
        Err(_) => None,
    }
}

fn is_float(text: &str) -> bool {
    // YAML 1.1: [-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+][0-9]+)?
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let Some(dot) = mantissa.find('.') else {
        return false;
    };
    let (int_part, frac_part) = (&mantissa[..dot], &mantissa[dot + 1..]);
    let int_ok = int_part.is_empty()
        || (int_part.as_bytes()[0].is_ascii_digit()
            && int_part.bytes().all(|b| b.is_ascii_digit() || b == b'_'));
    let frac_ok = frac_part.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    if !int_ok || !frac_ok || (int_part.is_empty() && frac_part.is_empty()) {
        return false;
    }
    match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Node {
        parse(text, SourceId(0)).unwrap().root
    }

    #[test]
    fn resolves_yaml_1_1_scalars() {
        assert!(matches!(resolve_plain("yes"), Value::Bool(true)));
        assert!(matches!(resolve_plain("Off"), Value::Bool(false)));
        assert!(matches!(resolve_plain("42"), Value::Int(42)));
        assert!(matches!(resolve_plain("-7"), Value::Int(-7)));
        assert!(matches!(resolve_plain("0x1F"), Value::Int(31)));
        assert!(matches!(resolve_plain("010"), Value::Int(8)));
        assert!(matches!(resolve_plain("3.10"), Value::Float(ref f) if &**f == "3.10"));
        assert!(matches!(resolve_plain("1e3"), Value::Str(_)));
        assert!(matches!(resolve_plain("08"), Value::Str(_)));
        assert!(matches!(resolve_plain("1.2.3"), Value::Str(_)));
        assert!(matches!(resolve_plain("~"), Value::Null));
        assert!(matches!(resolve_plain("v1"), Value::Str(_)));
    }

    #[test]
    fn keeps_positions() {
        let root = doc("a:\n  b: [1, 2]\n  c: x\n");
        let a = root.as_map().unwrap().get("a").unwrap().as_map().unwrap();
        let c = a.entry("c").unwrap();
        assert_eq!((c.key_span.line, c.key_span.col), (3, 3));
        assert_eq!((c.value.span.line, c.value.span.col), (3, 6));
    }

    #[test]
    fn merge_keys_explicit_keys_win() {
        let root =
            doc("base: &b {x: 1, y: 2}\nother: &o {y: 9, z: 3}\nm:\n  y: 5\n  <<: [*b, *o]\n");
        let m = root.as_map().unwrap().get("m").unwrap().as_map().unwrap();
        let keys: Vec<_> = m.keys().collect();
        assert_eq!(keys, ["y", "x", "z"]);
        assert!(matches!(m.get("y").unwrap().value, Value::Int(5)));
        assert!(matches!(m.get("x").unwrap().value, Value::Int(1)));
        assert!(matches!(m.get("z").unwrap().value, Value::Int(3)));
    }

    #[test]
    fn explicit_key_after_merge_overrides_silently() {
        let d = parse("b: &b {x: 1}\nm:\n  <<: *b\n  x: 2\n", SourceId(0)).unwrap();
        assert!(d.duplicate_keys.is_empty());
        let m = d.root.as_map().unwrap().get("m").unwrap().as_map().unwrap();
        assert!(matches!(m.get("x").unwrap().value, Value::Int(2)));
    }

    #[test]
    fn redefined_anchor_uses_latest() {
        let root = doc("a: &x 1\nb: *x\nc: &x 2\nd: *x\n");
        let m = root.as_map().unwrap();
        assert!(matches!(m.get("b").unwrap().value, Value::Int(1)));
        assert!(matches!(m.get("d").unwrap().value, Value::Int(2)));
    }

    #[test]
    fn duplicate_keys_last_wins_and_reported() {
        let d = parse("a: 1\na: 2\n", SourceId(0)).unwrap();
        assert_eq!(d.duplicate_keys.len(), 1);
        assert!(matches!(
            d.root.as_map().unwrap().get("a").unwrap().value,
            Value::Int(2)
        ));
    }

    #[test]
    fn refuses_billion_laughs() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='k' {
            text.push_str(&format!(
                "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = c;
        }
        let err = parse(&text, SourceId(0)).unwrap_err();
        assert!(err.message.contains("too large"), "{err:?}");
    }

    #[test]
    fn refuses_deep_nesting() {
        let text = "[".repeat(300) + &"]".repeat(300);
        let err = parse(&text, SourceId(0)).unwrap_err();
        assert!(err.message.contains("256 levels"), "{err:?}");
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("a: b\n c: d\n", SourceId(0)).unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn quoted_scalars_are_strings() {
        let root = doc("a: 'yes'\nb: \"1\"\nc: |\n  x\n");
        let m = root.as_map().unwrap();
        assert_eq!(m.get("a").unwrap().as_str(), Some("yes"));
        assert_eq!(m.get("b").unwrap().as_str(), Some("1"));
        assert_eq!(m.get("c").unwrap().as_str(), Some("x\n"));
    }
}
