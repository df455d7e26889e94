//! The whole shared corpus of real configs: each one compiles with the corpus
//! orbs, or fails only because an orb it imports is not in the corpus, or is on
//! the list of configs CircleCI itself rejects (`corpus_rejects.txt`). Every
//! config that compiles is also checked for idempotent `process` output.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use orrery_config::{CompileOptions, FetchedOrb, OrbFetchError, OrbRef, OrbSource, compile, print};

fn corpus_dir() -> PathBuf {
    match std::env::var_os("ORRERY_CORPUS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/circleci"),
    }
}

/// The corpus orbs by registry name, served for any version asked for: the
/// corpus has one (early) version of each.
struct CorpusOrbs(BTreeMap<String, Arc<str>>);

impl CorpusOrbs {
    fn load(dir: &std::path::Path) -> CorpusOrbs {
        let manifest =
            std::fs::read_to_string(dir.join("MANIFEST.tsv")).expect("corpus MANIFEST.tsv");
        let mut orbs = BTreeMap::new();
        for line in manifest.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            let (file, features) = (cols[0], cols[5]);
            if let Some(name) = features.split(',').find_map(|f| f.strip_prefix("orb:")) {
                let text = std::fs::read_to_string(dir.join(file)).expect("orb file");
                orbs.insert(name.to_string(), Arc::from(text));
            }
        }
        CorpusOrbs(orbs)
    }
}

impl OrbSource for CorpusOrbs {
    fn fetch(&self, orb: &OrbRef) -> Result<FetchedOrb, OrbFetchError> {
        match self.0.get(&orb.full_name()) {
            Some(source) => Ok(FetchedOrb {
                version: "0.0.0-corpus".into(),
                source: source.clone(),
            }),
            None => Err(OrbFetchError::NotFound {
                available: Vec::new(),
            }),
        }
    }
}

#[test]
fn every_corpus_config_compiles_or_is_explained() {
    let dir = corpus_dir();
    assert!(
        dir.is_dir(),
        "the shared corpus is missing at {}",
        dir.display()
    );
    let orbs = CorpusOrbs::load(&dir);
    let rejects: Vec<(String, String)> = include_str!("corpus_rejects.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let parts: Vec<&str> = l.split(" | ").collect();
            (parts[0].to_string(), parts[1].to_string())
        })
        .collect();

    let mismatches: Vec<(String, Vec<String>)> = include_str!("corpus_orb_mismatches.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let parts: Vec<&str> = l.split(" | ").collect();
            (
                parts[0].to_string(),
                parts[1].split(", ").map(|a| format!("{a}/")).collect(),
            )
        })
        .collect();

    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("configs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let (mut valid, mut missing_orb, mut rejected, mut mismatched) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let compiled = compile(&text, &CompileOptions::new(name.clone()), &orbs);
        let errors: Vec<String> = compiled.errors().map(|d| d.to_string()).collect();
        if let Some((_, expected)) = rejects.iter().find(|(f, _)| *f == name) {
            if errors.iter().any(|e| e.contains(expected.as_str())) {
                rejected += 1;
            } else {
                failures.push(format!(
                    "{name}: listed as rejected for `{expected}`, but got: {errors:#?}"
                ));
            }
            continue;
        }
        if let Some((_, aliases)) = mismatches.iter().find(|(f, _)| *f == name) {
            let explained = |e: &String| {
                e.contains("orb not found") || aliases.iter().any(|a| e.contains(a.as_str()))
            };
            if compiled.plan.is_none() && errors.iter().all(explained) {
                mismatched += 1;
            } else {
                failures.push(format!(
                    "{name}: listed as failing on orbs {aliases:?} only, but got: {:#?}",
                    errors.iter().filter(|e| !explained(e)).collect::<Vec<_>>()
                ));
            }
            continue;
        }
        match &compiled.plan {
            Some(plan) => {
                valid += 1;
                let body = print::render_body(plan);
                let again = compile(&body, &CompileOptions::new("processed.yml"), &orbs);
                match again.plan {
                    Some(p2) => {
                        let body2 = print::render_body(&p2);
                        if body2 != body {
                            failures.push(format!("{name}: process is not idempotent"));
                        }
                    }
                    None => failures.push(format!(
                        "{name}: processed output does not compile: {:#?}",
                        again.errors().map(|d| d.to_string()).collect::<Vec<_>>()
                    )),
                }
            }
            None if errors.iter().all(|e| e.contains("orb not found")) => missing_orb += 1,
            None => failures.push(format!("{name}: {errors:#?}")),
        }
    }
    eprintln!(
        "corpus: {} configs: {valid} valid, {missing_orb} fail only for orbs not in the corpus, {mismatched} only on elements of older corpus orb versions, {rejected} rejected as CircleCI rejects them",
        files.len()
    );
    assert!(
        failures.is_empty(),
        "{} corpus failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(valid >= 80, "only {valid} corpus configs compiled");
}
