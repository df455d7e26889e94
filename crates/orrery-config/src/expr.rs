//! Expressions (CircleCI Server 4.8): `filters: pipeline.git.branch == "main"`.
//!
//! Grammar, loosest first: `or`, `and`, comparisons (`==`, `!=`, `starts-with`,
//! `matches`, `>=`, `>`, `<=`, `<`), `not` (binds tightest), then literals
//! (`"string"`, `'string'`, numbers, `true`, `false`, `null`, `/regex/`),
//! pipeline values (`pipeline.git.branch`, `pipeline.parameters.x`) and
//! parentheses. `and`/`or` short-circuit and return an operand, so
//! `x and 10 or 1` picks a value.

use crate::filters::compile_full_match;
use crate::values::InputValue;

/// A value an expression computes.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprValue {
    Null,
    Bool(bool),
    Number(f64),
    Str(String),
    Regex(String),
}

impl ExprValue {
    pub fn truthy(&self) -> bool {
        match self {
            ExprValue::Null => false,
            ExprValue::Bool(b) => *b,
            ExprValue::Number(n) => *n != 0.0 && !n.is_nan(),
            ExprValue::Str(s) => !s.is_empty(),
            ExprValue::Regex(_) => true,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            ExprValue::Null => "null",
            ExprValue::Bool(_) => "boolean",
            ExprValue::Number(_) => "number",
            ExprValue::Str(_) => "string",
            ExprValue::Regex(_) => "regex",
        }
    }
}

impl From<&InputValue> for ExprValue {
    fn from(v: &InputValue) -> Self {
        match v {
            InputValue::Bool(b) => ExprValue::Bool(*b),
            InputValue::Integer(i) => ExprValue::Number(*i as f64),
            InputValue::String(s) => ExprValue::Str(s.clone()),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Str(String),
    Number(f64),
    Regex(String),
    Ident(String),
    Op(&'static str),
    LParen,
    RParen,
}

fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '(' => {
                out.push(Token::LParen);
                i += 1;
            }
            ')' => {
                out.push(Token::RParen);
                i += 1;
            }
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("unterminated string starting with {quote}")),
                        Some('\\') if chars.get(i + 1).is_some() => {
                            s.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(ch) if *ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Str(s));
            }
            '/' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated regex: a `/` is missing".into()),
                        Some('\\') if chars.get(i + 1) == Some(&'/') => {
                            s.push('/');
                            i += 2;
                        }
                        Some('/') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Regex(s));
            }
            '=' | '!' | '<' | '>' => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let op = match two.as_str() {
                    "==" => "==",
                    "!=" => "!=",
                    ">=" => ">=",
                    "<=" => "<=",
                    _ if c == '>' => ">",
                    _ if c == '<' => "<",
                    _ => return Err(format!("unexpected `{c}`")),
                };
                i += op.len();
                out.push(Token::Op(op));
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                out.push(Token::Number(
                    text.parse()
                        .map_err(|_| format!("`{text}` is not a number"))?,
                ));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | '-'))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "and" => Token::Op("and"),
                    "or" => Token::Op("or"),
                    "not" => Token::Op("not"),
                    "starts-with" => Token::Op("starts-with"),
                    "matches" => Token::Op("matches"),
                    _ => Token::Ident(word),
                });
            }
            other => return Err(format!("unexpected `{other}`")),
        }
    }
    Ok(out)
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
enum Ast {
    Literal(ExprValue),
    Var(String),
    Not(Box<Ast>),
    Binary(&'static str, Box<Ast>, Box<Ast>),
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek_op(&self) -> Option<&'static str> {
        match self.tokens.get(self.pos) {
            Some(Token::Op(op)) => Some(op),
            _ => None,
        }
    }

    fn or(&mut self) -> Result<Ast, String> {
        let mut left = self.and()?;
        while self.peek_op() == Some("or") {
            self.pos += 1;
            left = Ast::Binary("or", Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Ast, String> {
        let mut left = self.comparison()?;
        while self.peek_op() == Some("and") {
            self.pos += 1;
            left = Ast::Binary("and", Box::new(left), Box::new(self.comparison()?));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Ast, String> {
        let left = self.unary()?;
        match self.peek_op() {
            Some(op @ ("==" | "!=" | "starts-with" | "matches" | ">=" | ">" | "<=" | "<")) => {
                self.pos += 1;
                Ok(Ast::Binary(op, Box::new(left), Box::new(self.unary()?)))
            }
            _ => Ok(left),
        }
    }

    fn unary(&mut self) -> Result<Ast, String> {
        if self.peek_op() == Some("not") {
            self.pos += 1;
            return Ok(Ast::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Ast, String> {
        let token = self
            .tokens
            .get(self.pos)
            .cloned()
            .ok_or("the expression ends too early")?;
        self.pos += 1;
        Ok(match token {
            Token::Str(s) => Ast::Literal(ExprValue::Str(s)),
            Token::Number(n) => Ast::Literal(ExprValue::Number(n)),
            Token::Regex(r) => {
                compile_full_match(&r)?;
                Ast::Literal(ExprValue::Regex(r))
            }
            Token::Ident(w) => match w.as_str() {
                "true" => Ast::Literal(ExprValue::Bool(true)),
                "false" => Ast::Literal(ExprValue::Bool(false)),
                "null" => Ast::Literal(ExprValue::Null),
                _ => Ast::Var(w),
            },
            Token::LParen => {
                let inner = self.or()?;
                if self.tokens.get(self.pos) != Some(&Token::RParen) {
                    return Err("a `)` is missing".into());
                }
                self.pos += 1;
                inner
            }
            Token::RParen => return Err("unexpected `)`".into()),
            Token::Op(op) => return Err(format!("unexpected `{op}`")),
        })
    }
}

/// A checked expression, ready to evaluate against pipeline values.
#[derive(Clone, Debug, PartialEq)]
pub struct Expression {
    ast: Ast,
}

impl Expression {
    pub fn parse(src: &str) -> Result<Expression, String> {
        let tokens = tokenize(src)?;
        if tokens.is_empty() {
            return Err("the expression is empty".into());
        }
        let mut p = Parser { tokens, pos: 0 };
        let ast = p.or()?;
        if p.pos != p.tokens.len() {
            return Err(format!(
                "unexpected {:?} after the end of the expression",
                p.tokens[p.pos]
            ));
        }
        Ok(Expression { ast })
    }

    /// Evaluates with `lookup` giving pipeline values by full name
    /// (`pipeline.git.branch`); an unknown name is an error.
    pub fn evaluate(
        &self,
        lookup: &dyn Fn(&str) -> Option<ExprValue>,
    ) -> Result<ExprValue, String> {
        eval(&self.ast, lookup)
    }
}

fn eval(ast: &Ast, lookup: &dyn Fn(&str) -> Option<ExprValue>) -> Result<ExprValue, String> {
    match ast {
        Ast::Literal(v) => Ok(v.clone()),
        Ast::Var(name) => lookup(name).ok_or_else(|| format!("unknown value `{name}`")),
        Ast::Not(inner) => Ok(ExprValue::Bool(!eval(inner, lookup)?.truthy())),
        Ast::Binary("and", l, r) => {
            let left = eval(l, lookup)?;
            if left.truthy() {
                eval(r, lookup)
            } else {
                Ok(left)
            }
        }
        Ast::Binary("or", l, r) => {
            let left = eval(l, lookup)?;
            if left.truthy() {
                Ok(left)
            } else {
                eval(r, lookup)
            }
        }
        Ast::Binary(op, l, r) => {
            let (left, right) = (eval(l, lookup)?, eval(r, lookup)?);
            let b = match *op {
                "==" => left == right,
                "!=" => left != right,
                "starts-with" => match (&left, &right) {
                    (ExprValue::Str(a), ExprValue::Str(b)) => a.starts_with(b.as_str()),
                    _ => {
                        return Err(format!(
                            "starts-with compares strings, found {} and {}",
                            left.type_name(),
                            right.type_name()
                        ));
                    }
                },
                "matches" => match (&left, &right) {
                    (ExprValue::Str(s), ExprValue::Regex(re)) => {
                        compile_full_match(re)?.is_match(s)
                    }
                    _ => {
                        return Err(format!(
                            "matches takes a string and a /regex/, found {} and {}",
                            left.type_name(),
                            right.type_name()
                        ));
                    }
                },
                _ => match (&left, &right) {
                    (ExprValue::Number(a), ExprValue::Number(b)) => match *op {
                        ">=" => a >= b,
                        ">" => a > b,
                        "<=" => a <= b,
                        _ => a < b,
                    },
                    _ => {
                        return Err(format!(
                            "{op} compares numbers, found {} and {}",
                            left.type_name(),
                            right.type_name()
                        ));
                    }
                },
            };
            Ok(ExprValue::Bool(b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval_with(src: &str, branch: &str) -> Result<ExprValue, String> {
        let lookup = |name: &str| match name {
            "pipeline.git.branch" => Some(ExprValue::Str(branch.into())),
            "pipeline.number" => Some(ExprValue::Number(7.0)),
            _ => None,
        };
        Expression::parse(src)?.evaluate(&lookup)
    }

    #[test]
    fn evaluates() {
        assert_eq!(
            eval_with(r#"pipeline.git.branch == "main""#, "main"),
            Ok(ExprValue::Bool(true))
        );
        assert_eq!(
            eval_with(r#"pipeline.git.branch != "main""#, "main"),
            Ok(ExprValue::Bool(false))
        );
        assert_eq!(
            eval_with(r#"pipeline.git.branch starts-with "rel""#, "release/1"),
            Ok(ExprValue::Bool(true))
        );
        assert_eq!(
            eval_with("pipeline.git.branch matches /rel.*/", "release"),
            Ok(ExprValue::Bool(true))
        );
        assert_eq!(
            eval_with("pipeline.number >= 5 and 10 or 1", "x"),
            Ok(ExprValue::Number(10.0))
        );
        assert_eq!(
            eval_with("not (pipeline.number > 5) or false", "x"),
            Ok(ExprValue::Bool(false))
        );
        // `not` binds tightest: `not 7` is a boolean, which `>` refuses.
        assert!(eval_with("not pipeline.number > 5", "x").is_err());
        assert_eq!(
            eval_with("(1 == 1) and not (2 == 3)", "x"),
            Ok(ExprValue::Bool(true))
        );
        assert_eq!(eval_with(r#"1 == "1""#, "x"), Ok(ExprValue::Bool(false)));
    }

    #[test]
    fn errors() {
        assert!(
            eval_with("pipeline.nope == 1", "x")
                .unwrap_err()
                .contains("unknown value")
        );
        assert!(eval_with("1 starts-with 2", "x").is_err());
        assert!(Expression::parse("a ==").is_err());
        assert!(Expression::parse("(a").is_err());
        assert!(Expression::parse("\"open").is_err());
    }
}
