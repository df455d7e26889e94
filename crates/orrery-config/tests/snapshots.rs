//! Data-driven snapshot tests: every `cases/*.case` is compiled and the result is
//! compared with the `.out` file beside it: the `process` output (orb lines and
//! compiled config) of a valid config, or every diagnostic of an invalid one.
//!
//! A case file holds sections: `=== config` (the config.yml), `=== orb ns/name@x.y.z`
//! (an orb for the registry), `=== parameters` and `=== values` (YAML maps of
//! pipeline parameters and pipeline values). Lines before the first section
//! describe the case. Run with `UPDATE_EXPECT=1` to rewrite the `.out` files, then
//! read the diff.

use std::path::{Path, PathBuf};

use orrery_config::yaml::{self, SourceId, Value};
use orrery_config::{CompileOptions, InputValue, OrbRegistry, compile, print};

struct Case {
    config: String,
    orbs: OrbRegistry,
    options: CompileOptions,
}

fn input(node: &yaml::Node) -> InputValue {
    match &node.value {
        Value::Bool(b) => InputValue::Bool(*b),
        Value::Int(i) => InputValue::Integer(*i),
        _ => InputValue::String(node.scalar_text().unwrap_or_default().into_owned()),
    }
}

fn read_case(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).unwrap();
    let mut case = Case {
        config: String::new(),
        orbs: OrbRegistry::new(),
        options: CompileOptions::new("config.yml"),
    };
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        if let Some(header) = line.strip_prefix("=== ") {
            sections.push((header.trim().to_string(), String::new()));
        } else if let Some((_, body)) = sections.last_mut() {
            body.push_str(line);
        }
    }
    for (header, body) in sections {
        let (kind, arg) = header.split_once(' ').unwrap_or((header.as_str(), ""));
        match kind {
            "config" => case.config = body,
            "orb" => {
                let (name, version) = arg.split_once('@').expect("orb ns/name@version");
                case.orbs.add(name, version, body).unwrap();
            }
            "parameters" | "values" => {
                let doc = yaml::parse(&body, SourceId(0)).unwrap().root;
                for e in doc.as_map().map(|m| m.entries.clone()).unwrap_or_default() {
                    if kind == "parameters" {
                        case.options
                            .pipeline_parameters
                            .insert(e.key.to_string(), input(&e.value));
                    } else {
                        case.options.pipeline_values.set(&e.key, input(&e.value));
                    }
                }
            }
            other => panic!("{}: unknown section `{other}`", path.display()),
        }
    }
    case
}

fn render(case: &Case) -> String {
    let compiled = compile(&case.config, &case.options, &case.orbs);
    let mut out = String::new();
    for d in &compiled.diagnostics {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    if let Some(plan) = &compiled.plan {
        if !out.is_empty() {
            out.push_str("---\n");
        }
        let full = print::render(plan, &case.config);
        let trailer = full.find("\n# Original config.yml file:\n").unwrap();
        out.push_str(&full[..trailer + 1]);
        // Idempotence: compiling the output again gives the same output.
        let body = print::render_body(plan);
        let again = compile(&body, &CompileOptions::new("processed.yml"), &case.orbs);
        let again = again
            .plan
            .unwrap_or_else(|| panic!("processed output does not compile:\n{body}"));
        assert_eq!(
            print::render_body(&again),
            body,
            "process is not idempotent"
        );
    }
    out
}

#[test]
fn snapshots() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 30,
        "expected the snapshot cases in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for path in &paths {
        let actual = render(&read_case(path));
        let out = path.with_extension("out");
        let expected = std::fs::read_to_string(&out).unwrap_or_default();
        if actual != expected {
            if update {
                std::fs::write(&out, &actual).unwrap();
            } else {
                failures.push(format!(
                    "== {}\n-- expected:\n{expected}\n-- actual:\n{actual}",
                    path.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} snapshot(s) differ (UPDATE_EXPECT=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
