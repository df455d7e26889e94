//! Config compile time: the largest corpus config and the whole corpus, against
//! only parsing the same YAML (saphyr-parser's event stream) in the same run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use orrery_config::{CompileOptions, FetchedOrb, OrbFetchError, OrbRef, OrbSource, compile};

use crate::{fastest, report};

struct AnyVersion(BTreeMap<String, Arc<str>>);

impl OrbSource for AnyVersion {
    fn fetch(&self, orb: &OrbRef) -> Result<FetchedOrb, OrbFetchError> {
        self.0
            .get(&orb.full_name())
            .map(|s| FetchedOrb {
                version: "0.0.0".into(),
                source: s.clone(),
            })
            .ok_or(OrbFetchError::NotFound {
                available: Vec::new(),
            })
    }
}

fn corpus_dir() -> PathBuf {
    std::env::var_os("ORRERY_CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/circleci")
        })
}

fn parse_only(text: &str) -> usize {
    saphyr_parser::Parser::new_from_str(text)
        .filter(|e| e.is_ok())
        .count()
}

pub fn run() {
    let dir = corpus_dir();
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv"))
        .expect("corpus manifest (set ORRERY_CORPUS_DIR)");
    let mut orbs = BTreeMap::new();
    let mut configs: Vec<(String, String)> = Vec::new();
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let text = std::fs::read_to_string(dir.join(cols[0])).unwrap();
        match cols[5].split(',').find_map(|f| f.strip_prefix("orb:")) {
            Some(name) => {
                orbs.insert(name.to_string(), Arc::from(text));
            }
            None => configs.push((cols[0].to_string(), text)),
        }
    }
    let orbs = AnyVersion(orbs);
    let options = CompileOptions::new("config.yml");
    let total_bytes: usize = configs.iter().map(|(_, t)| t.len()).sum();
    let (largest_name, largest) = configs.iter().max_by_key(|(_, t)| t.len()).unwrap();

    println!(
        "== config compile ({} configs, {} KB; largest {} at {} KB)",
        configs.len(),
        total_bytes / 1024,
        largest_name,
        largest.len() / 1024
    );
    // Warm up.
    for (_, t) in &configs {
        std::hint::black_box(compile(t, &options, &orbs));
    }
    let largest_parse = fastest(31, || {
        std::hint::black_box(parse_only(largest));
    });
    let largest_compile = fastest(31, || {
        std::hint::black_box(compile(largest, &options, &orbs));
    });
    let plan = compile(largest, &options, &orbs).plan;
    let (jobs, steps, out_bytes) = plan.as_ref().map_or((0, 0, 0), |p| {
        (
            p.jobs.len(),
            p.jobs.values().map(|j| j.steps.len()).sum::<usize>(),
            orrery_config::print::render_body(p).len(),
        )
    });
    println!(
        "largest config expands to {jobs} jobs, {steps} steps, {} KB of compiled config",
        out_bytes / 1024
    );
    report(
        "largest config: compile",
        largest_compile,
        Some(("YAML parse only", largest_parse)),
        Duration::from_millis(5),
    );
    let corpus_parse = fastest(7, || {
        for (_, t) in &configs {
            std::hint::black_box(parse_only(t));
        }
    });
    let corpus_compile = fastest(7, || {
        for (_, t) in &configs {
            std::hint::black_box(compile(t, &options, &orbs));
        }
    });
    report(
        "whole corpus: compile",
        corpus_compile,
        Some(("YAML parse only", corpus_parse)),
        Duration::from_millis(500),
    );
    println!(
        "throughput: {:.1} MB/s compile, {:.1} MB/s parse only",
        total_bytes as f64 / corpus_compile.as_secs_f64() / 1e6,
        total_bytes as f64 / corpus_parse.as_secs_f64() / 1e6
    );
}
