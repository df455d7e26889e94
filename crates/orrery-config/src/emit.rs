//! A YAML emitter for node trees, in the block style CircleCI prints compiled
//! configs in (sequences at the indentation of their key, `|` blocks for
//! multi-line strings, quotes only where a plain scalar would read back
//! differently).
//!
//! Invariant: `yaml::parse(emit(tree))` gives back the same values; a property
//! test holds it to that.

use crate::yaml::{Node, Value, resolve_plain};

/// Emits a node as a YAML document (no `---`), ending in a newline.
pub fn emit(node: &Node) -> String {
    let mut out = String::new();
    match &node.value {
        Value::Map(m) if !m.is_empty() => write_map(&mut out, node, 0),
        Value::Seq(s) if !s.is_empty() => write_seq(&mut out, node, 0),
        _ => {
            write_scalar_inline(&mut out, node, 0);
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn write_map(out: &mut String, node: &Node, at: usize) {
    let Value::Map(map) = &node.value else { return };
    for entry in map.iter() {
        indent(out, at);
        write_key(out, &entry.key);
        out.push(':');
        write_after_key(out, &entry.value, at);
    }
}

/// Writes what follows `key:` for a value, including the line break.
fn write_after_key(out: &mut String, value: &Node, at: usize) {
    match &value.value {
        Value::Map(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, value, at + 2);
        }
        Value::Seq(s) if !s.is_empty() => {
            out.push('\n');
            write_seq(out, value, at);
        }
        _ => {
            out.push(' ');
            write_scalar_inline(out, value, at + 2);
            out.push('\n');
        }
    }
}

fn write_seq(out: &mut String, node: &Node, at: usize) {
    let Value::Seq(items) = &node.value else {
        return;
    };
    for item in items {
        match &item.value {
            Value::Map(m) if !m.is_empty() => {
                // The first entry goes on the dash line.
                let mut block = String::new();
                write_map(&mut block, item, at + 2);
                push_dashed(out, &block, at);
            }
            Value::Seq(s) if !s.is_empty() => {
                let mut block = String::new();
                write_seq(&mut block, item, at + 2);
                push_dashed(out, &block, at);
            }
            _ => {
                indent(out, at);
                out.push_str("- ");
                write_scalar_inline(out, item, at + 2);
                out.push('\n');
            }
        }
    }
}

/// Replaces the indentation of a block's first line with `- `.
fn push_dashed(out: &mut String, block: &str, at: usize) {
    indent(out, at);
    out.push_str("- ");
    out.push_str(&block[at + 2..]);
}

fn write_key(out: &mut String, key: &str) {
    if key == "<<" || key.contains('\n') || !plain_safe(key) {
        if key.contains('\n') || !single_quote_safe(key) {
            double_quoted(out, key);
        } else {
            single_quoted(out, key);
        }
    } else {
        out.push_str(key);
    }
}

/// Writes a scalar (or empty collection) after `key: ` or `- `. Block scalars
/// put their lines at `content_indent`.
fn write_scalar_inline(out: &mut String, node: &Node, content_indent: usize) {
    match &node.value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => {
            if matches!(resolve_plain(f), Value::Float(_) | Value::Int(_)) {
                out.push_str(f)
            } else {
                double_quoted(out, f)
            }
        }
        Value::Str(s) => write_string(out, s, content_indent),
        Value::Seq(_) => out.push_str("[]"),
        Value::Map(_) => out.push_str("{}"),
    }
}

fn write_string(out: &mut String, s: &str, content_indent: usize) {
    if s.contains('\n') {
        if literal_safe(s) {
            let trailing = s.len() - s.trim_end_matches('\n').len();
            let header = match trailing {
                0 => "|-",
                1 => "|",
                _ => "|+",
            };
            out.push_str(header);
            let body = s.trim_end_matches('\n');
            for line in body.split('\n') {
                out.push('\n');
                if !line.is_empty() {
                    indent(out, content_indent);
                    out.push_str(line);
                }
            }
            // Keep-chomping: the extra newlines are empty lines.
            for _ in 1..trailing {
                out.push('\n');
            }
        } else {
            double_quoted(out, s);
        }
    } else if s.is_empty() {
        out.push_str("\"\"");
    } else if plain_safe(s) {
        out.push_str(s);
    } else if single_quote_safe(s) {
        single_quoted(out, s);
    } else {
        double_quoted(out, s);
    }
}

fn printable(c: char) -> bool {
    !(c.is_control() || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}' || c == '\u{85}')
}

fn literal_safe(s: &str) -> bool {
    let body = s.trim_end_matches('\n');
    if body.is_empty() || body.starts_with(' ') || body.starts_with('\n') {
        return false;
    }
    body.split('\n').all(|line| {
        !line.ends_with(' ')
            && !line.ends_with('\t')
            && !line.starts_with('\t')
            && line.chars().all(|c| c == '\t' || printable(c))
    })
}

fn single_quote_safe(s: &str) -> bool {
    !s.starts_with(' ') && !s.ends_with(' ') && s.chars().all(printable)
}

fn plain_safe(s: &str) -> bool {
    if s.is_empty() || !matches!(resolve_plain(s), Value::Str(_)) {
        return false;
    }
    let first = s.chars().next().unwrap_or(' ');
    let second = s.chars().nth(1);
    if matches!(
        first,
        '?' | ':'
            | ','
            | '['
            | ']'
            | '{'
            | '}'
            | '#'
            | '&'
            | '*'
            | '!'
            | '|'
            | '>'
            | '\''
            | '"'
            | '%'
            | '@'
            | '`'
            | ' '
    ) {
        return false;
    }
    if first == '-' && (second.is_none() || second == Some(' ')) {
        return false;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if s.ends_with(' ')
        || s.ends_with(':')
        || s.contains(": ")
        || s.contains(" #")
        || s.contains(":\t")
    {
        return false;
    }
    s.chars().all(|c| c != '\t' && printable(c))
}

fn single_quoted(out: &mut String, s: &str) {
    out.push('\'');
    out.push_str(&s.replace('\'', "''"));
    out.push('\'');
}

fn double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if !printable(c) => {
                let code = c as u32;
                if code <= 0xff {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{code:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{Map, SourceId, Span, parse};
    use proptest::prelude::*;

    fn sp() -> Span {
        Span::default()
    }

    fn s(text: &str) -> Node {
        Node::str(text, sp())
    }

    fn roundtrip(node: &Node) {
        let text = emit(node);
        let back = parse(&text, SourceId(0))
            .unwrap_or_else(|e| panic!("emitted YAML does not parse: {e:?}\n{text}"))
            .root;
        assert!(
            back.same_value(node),
            "round trip changed the value:\n{text}\n{back:?}"
        );
    }

    #[test]
    fn emits_block_style() {
        let mut inner = Map::default();
        inner.insert("command", sp(), s("echo hi\necho there\n"));
        inner.insert("name", sp(), s("Say: hi"));
        let mut step = Map::default();
        step.insert("run", sp(), Node::new(Value::Map(inner), sp()));
        let mut job = Map::default();
        job.insert(
            "steps",
            sp(),
            Node::new(
                Value::Seq(vec![s("checkout"), Node::new(Value::Map(step), sp())]),
                sp(),
            ),
        );
        let node = Node::new(Value::Map(job), sp());
        let text = emit(&node);
        assert_eq!(
            text,
            "steps:\n- checkout\n- run:\n    command: |\n      echo hi\n      echo there\n    name: 'Say: hi'\n"
        );
        roundtrip(&node);
    }

    #[test]
    fn quotes_what_would_change_type() {
        for text in [
            "yes", "1", "3.10", "null", "", "- x", "a: b", "#x", "*x", "<<", "~", " lead", "trail ",
        ] {
            roundtrip(&s(text));
        }
    }

    fn arb_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9 ._:#'\"\\-\\\\]{0,12}",
            "[a-z \n]{0,20}",
            any::<String>().prop_map(|s| s.chars().take(16).collect()),
            Just("yes".to_string()),
            Just("<<".to_string()),
            Just("- a".to_string()),
        ]
    }

    fn arb_node() -> impl Strategy<Value = Node> {
        let leaf = prop_oneof![
            arb_string().prop_map(|t| Node::str(t, Span::default())),
            any::<i64>().prop_map(|i| Node::new(Value::Int(i), Span::default())),
            any::<bool>().prop_map(|b| Node::new(Value::Bool(b), Span::default())),
            Just(Node::new(Value::Null, Span::default())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5)
                    .prop_map(|v| Node::new(Value::Seq(v), Span::default())),
                prop::collection::vec((arb_string(), inner), 0..5).prop_map(|entries| {
                    let mut m = Map::default();
                    for (k, v) in entries {
                        m.insert(k, Span::default(), v);
                    }
                    Node::new(Value::Map(m), Span::default())
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn emitted_yaml_reads_back_the_same(node in arb_node()) {
            let text = emit(&node);
            let back = parse(&text, SourceId(0));
            prop_assert!(back.is_ok(), "does not parse: {:?}\n{}", back.err(), text);
            prop_assert!(back.unwrap().root.same_value(&node), "changed:\n{}", text);
        }
    }
}
