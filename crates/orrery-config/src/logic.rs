//! Logic statements: `when`/`unless` conditions of workflows and steps, evaluated
//! at compile time once parameters and pipeline values are substituted.
//!
//! Forms: a literal (truthy test), `and`, `or`, `not`, `equal` (all arguments
//! equal) and `matches` (`pattern` must match the whole `value`). Falsy values are
//! `false`, `null`, `0`, `NaN` and `""`.

use crate::compile::Compiler;
use crate::diag::suggest;
use crate::filters::compile_full_match;
use crate::yaml::{Node, Value};

const MAX_DEPTH: usize = 100;
const OPERATORS: [&str; 5] = ["and", "or", "not", "equal", "matches"];

/// Evaluates a condition; problems are reported and count as false.
pub(crate) fn evaluate(compiler: &mut Compiler<'_>, node: &Node) -> bool {
    eval(compiler, node, 0)
}

fn truthy(node: &Node) -> bool {
    match &node.value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => match f.parse::<f64>() {
            Ok(v) => v != 0.0 && !v.is_nan(),
            Err(_) => !f.to_ascii_lowercase().contains("nan"),
        },
        Value::Str(s) => !s.is_empty(),
        Value::Seq(items) => !items.is_empty(),
        Value::Map(m) => !m.is_empty(),
    }
}

fn eval(compiler: &mut Compiler<'_>, node: &Node, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        compiler.error("logic statement nests more than 100 levels deep", node.span);
        return false;
    }
    let Value::Map(map) = &node.value else {
        return truthy(node);
    };
    if map.len() != 1 {
        let keys: Vec<&str> = map.keys().collect();
        compiler.error_hint(
            format!(
                "a logic statement has exactly one operator ({}), found: {}",
                OPERATORS.join(", "),
                keys.join(", ")
            ),
            node.span,
            None,
        );
        return false;
    }
    let entry = &map.entries[0];
    let args = &entry.value;
    match &*entry.key {
        "and" | "or" => {
            let Some(items) = args.as_seq() else {
                compiler.error(
                    format!("`{}` takes a list of statements", entry.key),
                    args.span,
                );
                return false;
            };
            if items.is_empty() {
                compiler.error(
                    format!("`{}` needs at least one statement", entry.key),
                    args.span,
                );
                return false;
            }
            // Evaluate all, so every problem is reported.
            let values: Vec<bool> = items.iter().map(|i| eval(compiler, i, depth + 1)).collect();
            if &*entry.key == "and" {
                values.iter().all(|v| *v)
            } else {
                values.iter().any(|v| *v)
            }
        }
        "not" => !eval(compiler, args, depth + 1),
        "equal" => {
            let Some(items) = args.as_seq() else {
                compiler.error("`equal` takes a list of values", args.span);
                return false;
            };
            if items.len() < 2 {
                compiler.error("`equal` needs at least two values", args.span);
                return false;
            }
            items.windows(2).all(|w| equal_values(&w[0], &w[1]))
        }
        "matches" => {
            let Some(m) = args.as_map() else {
                compiler.error(
                    "`matches` takes a map with `pattern` and `value`",
                    args.span,
                );
                return false;
            };
            compiler.check_keys(m, &["pattern", "value"], "matches");
            let (Some(pattern), Some(value)) = (m.get("pattern"), m.get("value")) else {
                compiler.error("`matches` needs both `pattern` and `value`", args.span);
                return false;
            };
            let Some(pattern_text) = pattern.scalar_text() else {
                compiler.error("matches.pattern must be a string", pattern.span);
                return false;
            };
            let re = match compile_full_match(&pattern_text) {
                Ok(re) => re,
                Err(e) => {
                    compiler.error(e, pattern.span);
                    return false;
                }
            };
            match value.scalar_text() {
                Some(v) => re.is_match(&v),
                None => {
                    compiler.error("matches.value must be a string", value.span);
                    false
                }
            }
        }
        other => {
            compiler.error_hint(
                format!("unknown logic operator `{other}`"),
                entry.key_span,
                suggest(other, OPERATORS)
                    .or_else(|| Some(format!("operators: {}", OPERATORS.join(", ")))),
            );
            false
        }
    }
}

/// Equality of two values as CircleCI compares them: same type and value
/// (numbers compare by value).
fn equal_values(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => {
            y.parse::<f64>().is_ok_and(|y| y == *x as f64)
        }
        (Value::Float(x), Value::Float(y)) => match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(x), Ok(y)) => x == y,
            _ => x == y,
        },
        _ => a.same_value(b),
    }
}
