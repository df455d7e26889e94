//! The `orrery config` and `orrery orb` commands as a user runs them: exit codes,
//! messages, JSON output, and an orb packed, imported and used end to end.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn orrery(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orrery"))
        .args(args)
        .current_dir(cwd)
        .env_remove("ORRERY_ORB_DIR")
        .env("HOME", cwd)
        .output()
        .expect("run orrery")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const VALID: &str = "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox}]\n    steps: [checkout, {run: echo hi}]\nworkflows:\n  main:\n    jobs: [build]\n";

#[test]
fn validate_reports_valid_and_invalid_configs_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), ".circleci/config.yml", VALID);
    let ok = orrery(&["config", "validate"], dir.path());
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert_eq!(
        stdout(&ok),
        "Config file at .circleci/config.yml is valid.\n"
    );

    write(
        dir.path(),
        "bad.yml",
        "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox}]\n    steps: [checkout]\nworkflows:\n  main:\n    jobs: [build, {deploy: {requires: [biuld]}}]\n",
    );
    let bad = orrery(&["config", "validate", "bad.yml"], dir.path());
    assert_eq!(bad.status.code(), Some(1));
    let err = stderr(&bad);
    assert!(
        err.contains("bad.yml:8:20: error: Cannot find a definition for job named deploy"),
        "{err}"
    );
    assert!(err.contains("config bad.yml has 1 error"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = orrery(&["config", "validate", "nope.yml"], dir.path());
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("cannot read config file nope.yml"),
        "{}",
        stderr(&missing)
    );
    let bad_flag = orrery(&["config", "validate", "--frobnicate"], dir.path());
    assert_eq!(bad_flag.status.code(), Some(2));
    write(dir.path(), "c.yml", VALID);
    let bad_params = orrery(
        &[
            "config",
            "process",
            "c.yml",
            "--pipeline-parameters",
            "{not json",
        ],
        dir.path(),
    );
    assert_eq!(bad_params.status.code(), Some(2));
    assert!(stderr(&bad_params).contains("--pipeline-parameters: not valid JSON"));
    let bad_value = orrery(
        &[
            "config",
            "process",
            "c.yml",
            "--pipeline-value",
            "git.branch",
        ],
        dir.path(),
    );
    assert_eq!(bad_value.status.code(), Some(2));
    assert!(stderr(&bad_value).contains("expected NAME=VALUE"));
}

#[test]
fn json_diagnostics_for_tools() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "c.yml",
        "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox}]\n    steps: [chekout]\n",
    );
    let out = orrery(&["config", "validate", "--json", "c.yml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["valid"], false);
    let d = &doc["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(
        d["message"],
        "Cannot find a definition for command named chekout"
    );
    assert_eq!(d["line"], 5);
    assert_eq!(d["column"], 13);
    assert_eq!(d["path"], "jobs.build.steps[0]");
    assert_eq!(d["hint"], "did you mean `checkout`?");
}

#[test]
fn process_prints_compiled_config_with_parameters_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let config = "version: 2.1\nparameters:\n  target: {type: string, default: dev}\njobs:\n  build:\n    docker: [{image: busybox}]\n    steps: [{run: 'deploy << pipeline.parameters.target >> on << pipeline.git.branch >>'}]\nworkflows:\n  main:\n    jobs: [build]\n";
    let mut child = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .args([
            "config",
            "process",
            "-",
            "--pipeline-parameters",
            r#"{"target": "prod"}"#,
            "--pipeline-value",
            "pipeline.git.branch=main",
        ])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("version: 2\njobs:\n  build:\n"), "{text}");
    assert!(text.contains("command: deploy prod on main"), "{text}");
    assert!(
        text.contains("\n# Original config.yml file:\n# version: 2.1\n"),
        "{text}"
    );

    let undeclared = orrery(
        &[
            "config",
            "process",
            "-",
            "--pipeline-parameters",
            r#"{"nope": 1}"#,
        ],
        dir.path(),
    );
    assert_eq!(undeclared.status.code(), Some(1));
}

#[test]
fn orb_pack_import_and_use() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "orb/src/@orb.yml",
        "version: 2.1\ndescription: Says hello\n",
    );
    write(
        root,
        "orb/src/commands/hello.yml",
        "parameters:\n  to: {type: string, default: world}\nsteps:\n  - run:\n      name: Hello\n      command: <<include(scripts/hello.sh)>>\n",
    );
    write(
        root,
        "orb/src/scripts/hello.sh",
        "#!/bin/sh\necho \"hello $TO\"\n",
    );
    write(
        root,
        "orb/src/jobs/greet.yml",
        "docker: [{image: busybox}]\nsteps: [hello]\n",
    );

    let packed = orrery(&["orb", "pack", "orb/src"], root);
    assert_eq!(packed.status.code(), Some(0), "{}", stderr(&packed));
    let orb_yaml = stdout(&packed);
    assert!(
        orb_yaml.contains("command: |\n          #!/bin/sh\n          echo \"hello $TO\"\n"),
        "{orb_yaml}"
    );
    write(root, "packed.yml", &orb_yaml);

    let orbs = root.join("orbs");
    let orbs = orbs.to_str().unwrap();
    let imported = orrery(
        &[
            "orb",
            "import",
            "acme/hello@1.2.0",
            "packed.yml",
            "--orb-dir",
            orbs,
        ],
        root,
    );
    assert_eq!(imported.status.code(), Some(0), "{}", stderr(&imported));
    assert!(root.join("orbs/acme/hello@1.2.0.yml").is_file());
    let again = orrery(
        &[
            "orb",
            "import",
            "acme/hello@1.2.0",
            "packed.yml",
            "--orb-dir",
            orbs,
        ],
        root,
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already imported"),
        "{}",
        stderr(&again)
    );
    let partial = orrery(
        &[
            "orb",
            "import",
            "acme/hello@1.2",
            "packed.yml",
            "--orb-dir",
            orbs,
        ],
        root,
    );
    assert_eq!(partial.status.code(), Some(2));
    assert!(stderr(&partial).contains("needs an exact version"));

    let list = orrery(&["orb", "list", "--orb-dir", orbs], root);
    assert_eq!(stdout(&list), "acme/hello 1.2.0\n");

    write(
        root,
        "use.yml",
        "version: 2.1\norbs:\n  hello: acme/hello@1\nworkflows:\n  main:\n    jobs: [hello/greet]\n",
    );
    let processed = orrery(&["config", "process", "use.yml", "--orb-dir", orbs], root);
    assert_eq!(processed.status.code(), Some(0), "{}", stderr(&processed));
    let text = stdout(&processed);
    assert!(
        text.starts_with("# Orb 'acme/hello@1' resolved to 'acme/hello@1.2.0'\n"),
        "{text}"
    );
    assert!(text.contains("  hello/greet:\n"), "{text}");

    // The orb directory from the environment, and a missing orb's hint.
    let out = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .args(["config", "validate", "use.yml"])
        .current_dir(root)
        .env("ORRERY_ORB_DIR", orbs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    write(
        root,
        "missing.yml",
        "version: 2.1\norbs:\n  hello: acme/hello@2.0.0\nworkflows:\n  main:\n    jobs: [hello/greet]\n",
    );
    let missing = orrery(
        &["config", "validate", "missing.yml", "--orb-dir", orbs],
        root,
    );
    assert_eq!(missing.status.code(), Some(1));
    let err = stderr(&missing);
    assert!(
        err.contains("Cannot find orb acme/hello@2.0.0: orb not found"),
        "{err}"
    );
    assert!(err.contains("available versions: 1.2.0"), "{err}");
    assert!(err.contains("orrery orb import acme/hello@2.0.0"), "{err}");
}

#[test]
fn orb_pack_reports_problems() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "src/@orb.yml", "version: 2.1\n");
    write(
        dir.path(),
        "src/commands/x.yml",
        "steps:\n  - run: echo <<include(missing.sh)>>\n",
    );
    let out = orrery(&["orb", "pack", "src"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("entire string must be include statement"),
        "{}",
        stderr(&out)
    );
    let not_dir = orrery(&["orb", "pack", "nope"], dir.path());
    assert_eq!(not_dir.status.code(), Some(2));
}

#[test]
fn orrerys_own_ci_config_is_valid() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = orrery(&["config", "validate", ".circleci/config.yml"], &repo);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn template_in_flow_sequence_gets_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "c.yml",
        "version: 2.1\njobs:\n  build:\n    docker: [{image: x}]\n    steps:\n      - restore_cache: {keys: [k-{{ .Branch }}]}\n",
    );
    let out = orrery(&["config", "validate", "c.yml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("quote values that hold `{{ ... }}` templates"),
        "{}",
        stderr(&out)
    );
}
