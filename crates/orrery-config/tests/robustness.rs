//! Bad input never panics: arbitrary text, and real corpus configs mutated at
//! random (lines dropped, duplicated, re-indented, YAML punctuation inserted,
//! files cut short), all compile to a result with diagnostics.

use std::path::PathBuf;
use std::sync::OnceLock;

use orrery_config::{CompileOptions, OrbRegistry, compile, print};
use proptest::prelude::*;

fn corpus() -> &'static Vec<String> {
    static CORPUS: OnceLock<Vec<String>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/corpus/circleci/configs");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("the shared corpus")
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            // Large files make each case slow without finding more.
            .filter(|t| t.len() < 30_000)
            .collect()
    })
}

fn orbs() -> OrbRegistry {
    let mut r = OrbRegistry::new();
    r.add(
        "circleci/node",
        "5.0.0",
        "commands:\n  install:\n    parameters: {v: {type: string, default: x}}\n    steps: [run: echo << parameters.v >>]\njobs:\n  test:\n    docker: [{image: a}]\n    steps: [install]\n",
    )
    .unwrap();
    r
}

/// Compiles, and when valid also prints and recompiles; panics surface as test failures.
fn exercise(text: &str) {
    let compiled = compile(text, &CompileOptions::new("fuzz.yml"), &orbs());
    if let Some(plan) = &compiled.plan {
        let body = print::render_body(plan);
        let again = compile(&body, &CompileOptions::new("again.yml"), &orbs());
        assert!(
            again.plan.is_some(),
            "the processed output of a valid config must compile:\n{body}\n{:#?}",
            again.diagnostics
        );
    } else {
        assert!(
            compiled.errors().count() > 0,
            "an invalid config must say why"
        );
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    DropLine(usize),
    DuplicateLine(usize),
    Indent(usize, bool),
    Insert(usize, &'static str),
    Truncate(usize),
    SwapLines(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let snippets = prop::sample::select(vec![
        ":",
        "- ",
        "<<",
        "<<: *a",
        "&a ",
        "*a",
        "[",
        "]",
        "{",
        "}",
        "\"",
        "'",
        "#",
        "|",
        ">",
        "\t",
        "<< parameters.x >>",
        "<< pipeline.git.branch >>",
        "<< matrix.x >>",
        "~",
        "!!str ",
        "? ",
        "---\n",
        "requires: [x]",
        "steps:",
        "when:",
        "matrix:",
        "\\<<",
    ]);
    prop_oneof![
        any::<usize>().prop_map(Mutation::DropLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<bool>()).prop_map(|(l, d)| Mutation::Indent(l, d)),
        (any::<usize>(), snippets).prop_map(|(p, s)| Mutation::Insert(p, s)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match m {
            Mutation::DropLine(i) => {
                lines.remove(i % n);
            }
            Mutation::DuplicateLine(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::Indent(i, deeper) => {
                let l = &mut lines[i % n];
                if *deeper {
                    l.insert_str(0, "  ");
                } else if l.starts_with("  ") {
                    l.drain(..2);
                }
            }
            Mutation::Insert(p, s) => {
                let l = &mut lines[p % n];
                let mut at = p % (l.len() + 1);
                while !l.is_char_boundary(at) {
                    at -= 1;
                }
                l.insert_str(at, s);
            }
            Mutation::Truncate(i) => lines.truncate(1 + i % n),
            Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_corpus_configs_never_panic(
        index in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let corpus = corpus();
        let text = apply(index.get::<String>(corpus.as_slice()), &mutations);
        exercise(&text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        exercise(&text);
    }

    #[test]
    fn yaml_shaped_text_never_panics(text in "(version: 2\\.1\n|jobs:\n|  [a-z]{1,4}:\n|    - [a-z<>. ]{0,12}\n|workflows:\n|[ :\\-\\[\\]{}<>&*|]{1,3}\n){1,12}") {
        exercise(&text);
    }
}

#[test]
fn hostile_documents_are_refused_cleanly() {
    // Alias bomb.
    let mut bomb = String::from("version: 2.1\na: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for c in 'b'..='j' {
        bomb.push_str(&format!("{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        prev = c;
    }
    let compiled = compile(&bomb, &CompileOptions::new("bomb.yml"), &orbs());
    assert!(compiled.errors().any(|d| d.message.contains("too large")));
    // Deep nesting.
    let deep = format!(
        "version: 2.1\nx: {}{}\n",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let compiled = compile(&deep, &CompileOptions::new("deep.yml"), &orbs());
    assert!(compiled.errors().any(|d| d.message.contains("levels deep")));
    // A command that calls itself.
    let recursive = "version: 2.1\ncommands:\n  a:\n    steps: [a]\njobs:\n  build:\n    docker: [{image: x}]\n    steps: [a]\n";
    let compiled = compile(recursive, &CompileOptions::new("rec.yml"), &orbs());
    assert!(
        compiled.errors().any(|d| d.message.contains("call itself")),
        "{:#?}",
        compiled.diagnostics
    );
    // A huge matrix.
    let matrix = format!(
        "version: 2.1\njobs:\n  j:\n    parameters: {{a: {{type: integer}}, b: {{type: integer}}, c: {{type: integer}}}}\n    docker: [{{image: x}}]\n    steps: [checkout]\nworkflows:\n  w:\n    jobs:\n      - j:\n          matrix:\n            parameters: {{a: [{0}], b: [{0}], c: [{0}]}}\n",
        (0..30)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let compiled = compile(&matrix, &CompileOptions::new("matrix.yml"), &orbs());
    assert!(compiled.errors().any(|d| d.message.contains("10,000")));
}
