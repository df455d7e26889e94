//! Cache key templates: `deps-{{ .Branch }}-{{ checksum "package-lock.json" }}`.
//!
//! Supported, as CircleCI documents them: `{{ .Branch }}`, `{{ .BuildNum }}`,
//! `{{ .Revision }}`, `{{ .CheckoutKey }}`, `{{ .Environment.NAME }}`,
//! `{{ checksum "file" }}`, `{{ epoch }}` and `{{ arch }}`.

/// A piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Branch,
    BuildNum,
    Revision,
    CheckoutKey,
    Environment(String),
    Checksum(String),
    Epoch,
    Arch,
}

/// Parses a template, or says what is wrong with it.
pub fn parse(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("`{{{{` without a closing `}}}}` in cache key `{template}`"))?;
        let expr = after[..end].trim();
        parts.push(match expr {
            ".Branch" => Part::Branch,
            ".BuildNum" => Part::BuildNum,
            ".Revision" => Part::Revision,
            ".CheckoutKey" => Part::CheckoutKey,
            "epoch" => Part::Epoch,
            "arch" => Part::Arch,
            _ => {
                if let Some(name) = expr.strip_prefix(".Environment.") {
                    Part::Environment(name.to_string())
                } else if let Some(arg) = expr.strip_prefix("checksum") {
                    let arg = arg.trim();
                    let file = arg
                        .strip_prefix('"')
                        .and_then(|a| a.strip_suffix('"'))
                        .ok_or_else(|| format!("checksum takes a quoted file name: `{{{{ {expr} }}}}`"))?;
                    Part::Checksum(file.to_string())
                } else {
                    return Err(format!(
                        "unknown cache key template `{{{{ {expr} }}}}`; use .Branch, .BuildNum, .Revision, .Environment.NAME, checksum \"file\", epoch or arch"
                    ));
                }
            }
        });
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(parts)
}

/// The files a template checksums.
pub fn checksum_files(parts: &[Part]) -> Vec<&str> {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Checksum(f) => Some(f.as_str()),
            _ => None,
        })
        .collect()
}

/// What the template's values are.
pub struct Values<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Checksums by file name, computed beforehand.
    pub checksums: &'a dyn Fn(&str) -> Option<String>,
    pub epoch: u64,
    pub arch: &'a str,
}

/// Renders a parsed template. A missing value renders empty, as CircleCI's
/// Go template does; a missing checksum file is an error.
pub fn render(parts: &[Part], values: &Values<'_>) -> Result<String, String> {
    let mut out = String::new();
    let env = |name: &str| (values.env)(name).unwrap_or_default();
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Branch => out.push_str(&env("CIRCLE_BRANCH")),
            Part::BuildNum => out.push_str(&env("CIRCLE_BUILD_NUM")),
            Part::Revision => out.push_str(&env("CIRCLE_SHA1")),
            Part::CheckoutKey => out.push_str(&env("CIRCLE_CHECKOUT_KEY")),
            Part::Environment(name) => out.push_str(&env(name)),
            Part::Checksum(file) => out.push_str(
                &(values.checksums)(file)
                    .ok_or_else(|| format!("cannot checksum {file}: the file does not exist"))?,
            ),
            Part::Epoch => out.push_str(&values.epoch.to_string()),
            Part::Arch => out.push_str(values.arch),
        }
    }
    Ok(out)
}

/// `{{ arch }}`: operating system and architecture, as CircleCI spells them.
pub fn host_arch() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{}-{arch}", std::env::consts::OS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_form() {
        let parts = parse("v1-{{ .Branch }}-{{checksum \"a.lock\"}}-{{ .Environment.X }}-{{ epoch }}-{{ arch }}-{{ .Revision }}-{{ .BuildNum }}").unwrap();
        assert_eq!(checksum_files(&parts), ["a.lock"]);
        let env = |n: &str| match n {
            "CIRCLE_BRANCH" => Some("main".to_string()),
            "X" => Some("x".to_string()),
            "CIRCLE_SHA1" => Some("abc".to_string()),
            "CIRCLE_BUILD_NUM" => Some("7".to_string()),
            _ => None,
        };
        let sums = |f: &str| (f == "a.lock").then(|| "SUM=".to_string());
        let out = render(
            &parts,
            &Values {
                env: &env,
                checksums: &sums,
                epoch: 42,
                arch: "linux-amd64",
            },
        )
        .unwrap();
        assert_eq!(out, "v1-main-SUM=-x-42-linux-amd64-abc-7");
    }

    #[test]
    fn errors_are_clear() {
        assert!(
            parse("a-{{ .Branch")
                .unwrap_err()
                .contains("without a closing")
        );
        assert!(
            parse("a-{{ .Nope }}")
                .unwrap_err()
                .contains("unknown cache key template")
        );
        assert!(parse("{{ checksum a }}").unwrap_err().contains("quoted"));
        let parts = parse("{{ checksum \"missing\" }}").unwrap();
        let none = |_: &str| None;
        let err = render(
            &parts,
            &Values {
                env: &none,
                checksums: &none,
                epoch: 0,
                arch: "",
            },
        )
        .unwrap_err();
        assert!(err.contains("missing"));
    }
}
