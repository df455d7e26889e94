//! A small flag parser for the subcommands.
//!
//! Flags are long (`--name`) and take their value either attached
//! (`--index=1`) or as the next argument (`--index 1`), as Go's pflag accepts
//! them in CircleCI's own agent. Boolean flags take no value, or an attached
//! `=true`/`=false`. `--` ends the flags; `-` alone is a positional argument
//! (stdin). `--help` and `-h` ask for the command's help.

use std::collections::BTreeMap;

use crate::Failure;

/// The flags a command accepts.
pub struct Spec {
    /// Flags that take a value, without the leading `--`.
    pub values: &'static [&'static str],
    /// Flags that take no value, without the leading `--`.
    pub switches: &'static [&'static str],
}

/// A parsed command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Flag values by name (without `--`); a later occurrence replaces an
    /// earlier one. Switches that are on have the value `true`.
    pub flags: BTreeMap<&'static str, String>,
    /// Arguments that are not flags, in order.
    pub positionals: Vec<String>,
    /// Whether `--help` or `-h` was given.
    pub help: bool,
}

impl Parsed {
    /// A flag's value, if given.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.flags.get(name).map(String::as_str)
    }

    /// Whether a switch is on.
    pub fn switch(&self, name: &str) -> bool {
        self.value(name) == Some("true")
    }
}

/// Parses `args` against `spec`. Unknown flags and missing values are usage
/// errors.
pub fn parse(args: &[String], spec: &Spec) -> Result<Parsed, Failure> {
    let mut parsed = Parsed::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            parsed.positionals.extend(iter.by_ref().cloned());
            break;
        }
        if arg == "--help" || arg == "-h" {
            parsed.help = true;
            continue;
        }
        let Some(body) = arg.strip_prefix("--") else {
            if arg.len() > 1 && arg.starts_with('-') {
                return Err(Failure::Usage(format!("unknown flag {arg}")));
            }
            parsed.positionals.push(arg.clone());
            continue;
        };
        let (name, attached) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        if let Some(&known) = spec.values.iter().find(|&&v| v == name) {
            let value = match attached {
                Some(value) => value.to_string(),
                None => iter
                    .next()
                    .cloned()
                    .ok_or_else(|| Failure::Usage(format!("flag --{name} needs a value")))?,
            };
            parsed.flags.insert(known, value);
        } else if let Some(&known) = spec.switches.iter().find(|&&s| s == name) {
            let on = match attached {
                None => true,
                Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => true,
                Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => false,
                Some(v) => {
                    return Err(Failure::Usage(format!(
                        "flag --{name} takes true or false, not \"{v}\""
                    )));
                }
            };
            if on {
                parsed.flags.insert(known, "true".to_string());
            } else {
                parsed.flags.remove(known);
            }
        } else {
            return Err(Failure::Usage(format!("unknown flag --{name}")));
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec {
        values: &["index", "total"],
        switches: &["verbose"],
    };

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn both_value_forms_switches_and_positionals() {
        let p = parse(
            &args(&[
                "--index=1",
                "--total",
                "3",
                "file.txt",
                "--verbose",
                "--",
                "--x",
            ]),
            &SPEC,
        )
        .unwrap();
        assert_eq!(p.value("index"), Some("1"));
        assert_eq!(p.value("total"), Some("3"));
        assert!(p.switch("verbose"));
        assert_eq!(p.positionals, ["file.txt", "--x"]);
        assert!(!p.help);
    }

    #[test]
    fn later_values_win_and_switches_can_be_turned_off() {
        let p = parse(
            &args(&["--index=1", "--index=2", "--verbose", "--verbose=false"]),
            &SPEC,
        )
        .unwrap();
        assert_eq!(p.value("index"), Some("2"));
        assert!(!p.switch("verbose"));
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(&args(&["--bogus"]), &SPEC),
            Err(Failure::Usage("unknown flag --bogus".into()))
        );
        assert_eq!(
            parse(&args(&["--index"]), &SPEC),
            Err(Failure::Usage("flag --index needs a value".into()))
        );
        assert!(matches!(
            parse(&args(&["-x"]), &SPEC),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            parse(&args(&["--verbose=maybe"]), &SPEC),
            Err(Failure::Usage(_))
        ));
        assert_eq!(parse(&args(&["-"]), &SPEC).unwrap().positionals, ["-"]);
        assert!(parse(&args(&["-h"]), &SPEC).unwrap().help);
    }
}
