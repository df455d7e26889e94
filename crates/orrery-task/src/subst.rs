//! `circleci env subst`: `envsubst` for `$NAME` and `${NAME}`.
//!
//! A name is a letter or `_` followed by letters, digits and `_`. Both forms are
//! replaced by the variable's value, an unset variable by nothing. A `$` not
//! followed by a name (or by `{`, a name and `}`) is kept as it is; `$$` is not
//! an escape, so `$$HOME` keeps the first `$` and replaces `$HOME`.
//!
//! Compatibility decision: with TEXT as an argument the result is printed with
//! a newline, like `echo`; text from stdin is printed exactly, byte for byte
//! apart from the replacements.

use crate::args::{self, Spec};
use crate::{Env, Failure, Io, Outcome};

const USAGE: &str = "\
Usage: circleci env subst [TEXT]

Print TEXT (or stdin) with $NAME and ${NAME} replaced by the values of the
environment variables (unset ones by nothing).
";

/// Replaces `$NAME` and `${NAME}` in `input` using `lookup`.
pub fn subst<'a>(input: &[u8], lookup: impl Fn(&str) -> Option<&'a str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'$' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let braced = input.get(i + 1) == Some(&b'{');
        let start = if braced { i + 2 } else { i + 1 };
        let end = name_end(input, start);
        let closed = !braced || input.get(end) == Some(&b'}');
        if end > start && closed {
            // Name bytes are ASCII, so this is valid UTF-8.
            let name = std::str::from_utf8(&input[start..end]).unwrap_or_default();
            out.extend_from_slice(lookup(name).unwrap_or("").as_bytes());
            i = if braced { end + 1 } else { end };
        } else {
            out.push(b'$');
            i += 1;
        }
    }
    out
}

/// The end of the name starting at `start` (`start` itself when there is none).
fn name_end(input: &[u8], start: usize) -> usize {
    let mut end = start;
    while let Some(&b) = input.get(end) {
        let ok = b == b'_' || b.is_ascii_alphabetic() || (end > start && b.is_ascii_digit());
        if !ok {
            break;
        }
        end += 1;
    }
    end
}

/// Runs `env subst` with the arguments after `subst`.
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
    let lookup = |name: &str| env.vars.get(name).map(String::as_str);
    match parsed.positionals.as_slice() {
        [] => {
            let input = crate::read_input(None, io, env)?;
            io.stdout
                .write_all(&subst(&input, lookup))
                .map_err(Failure::write)?;
        }
        [text] => {
            let mut out = subst(text.as_bytes(), lookup);
            out.push(b'\n');
            io.stdout.write_all(&out).map_err(Failure::write)?;
        }
        more => {
            return Err(Failure::Usage(format!(
                "env subst takes at most one argument, got {} (quote the text)",
                more.len()
            )));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{env_with, run_cmd};
    use std::path::Path;

    fn s(text: &str) -> String {
        let lookup = |name: &str| match name {
            "HOME" => Some("/home/u"),
            "A_1" => Some("one"),
            "EMPTY" => Some(""),
            _ => None,
        };
        String::from_utf8(subst(text.as_bytes(), lookup)).unwrap()
    }

    #[test]
    fn replaces_both_forms_and_leaves_the_rest() {
        assert_eq!(s("$HOME and ${HOME}"), "/home/u and /home/u");
        assert_eq!(s("x${A_1}y $A_1.z"), "xoney one.z");
        assert_eq!(s("[$UNSET][${UNSET}][$EMPTY]"), "[][][]");
        assert_eq!(
            s("cost: $5, $ alone, $-x, end$"),
            "cost: $5, $ alone, $-x, end$"
        );
        assert_eq!(s("$$HOME"), "$/home/u");
        assert_eq!(s("${HOME"), "${HOME");
        assert_eq!(s("${1X} ${} ${A-B}"), "${1X} ${} ${A-B}");
        assert_eq!(s("ünï $HOME ✓"), "ünï /home/u ✓");
    }

    #[test]
    fn command_reads_an_argument_or_stdin() {
        let env = env_with(&[("NAME", "orrery")], Path::new(""));
        let r = run_cmd(&["env", "subst", "hi ${NAME}"], "", &env);
        assert_eq!((r.code, r.stdout.as_str()), (0, "hi orrery\n"));
        let r = run_cmd(&["env", "subst"], "a: $NAME\nb: $MISSING\n", &env);
        assert_eq!((r.code, r.stdout.as_str()), (0, "a: orrery\nb: \n"));
        let r = run_cmd(&["env", "subst", "a", "b"], "", &env);
        assert_eq!(r.code, 2);
    }
}
