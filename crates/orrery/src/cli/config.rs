//! `orrery config validate|process`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indexmap::IndexMap;
use orrery_config::{CompileOptions, Compiled, InputValue, PipelineValues, compile, print};

use crate::orb_dir::DirOrbSource;

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check a config; print every error with its file, line, column and path
    Validate(ConfigArgs),
    /// Print the compiled config, as `circleci config process` does
    Process(ConfigArgs),
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// The config file (`-` reads standard input)
    #[arg(default_value = ".circleci/config.yml")]
    path: PathBuf,
    /// Directory of imported orbs (`<namespace>/<name>@<version>.yml`)
    #[arg(long, env = "ORRERY_ORB_DIR", value_name = "DIR")]
    orb_dir: Option<PathBuf>,
    /// Pipeline parameters as a JSON object, or @FILE holding one
    #[arg(long, value_name = "JSON")]
    pipeline_parameters: Option<String>,
    /// Set a pipeline value, e.g. `pipeline.git.branch=main` (repeatable)
    #[arg(long = "pipeline-value", value_name = "NAME=VALUE")]
    pipeline_values: Vec<String>,
    /// Print diagnostics (and, for process, the output) as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    let (args, process) = match cmd {
        ConfigCommand::Validate(a) => (a, false),
        ConfigCommand::Process(a) => (a, true),
    };
    let text = read_config(&args.path)?;
    let mut options = CompileOptions::new(args.path.display().to_string());
    options.pipeline_values = local_pipeline_values(&args.path);
    for pv in &args.pipeline_values {
        let (name, value) = pv
            .split_once('=')
            .with_context(|| format!("--pipeline-value `{pv}`: expected NAME=VALUE"))?;
        if !name.starts_with("pipeline.") {
            bail!(
                "--pipeline-value `{pv}`: names start with `pipeline.`, e.g. pipeline.git.branch=main"
            );
        }
        options.pipeline_values.set(name, typed_value(value));
    }
    if let Some(p) = &args.pipeline_parameters {
        options.pipeline_parameters = parse_parameters(p)?;
    }
    let orbs = DirOrbSource::new(super::orb_dir(args.orb_dir.clone()));
    let compiled = compile(&text, &options, &orbs);
    report(&args, process, &text, &compiled)
}

fn read_config(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the config from standard input")?;
        return Ok(text);
    }
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    String::from_utf8(bytes)
        .with_context(|| format!("config file {} is not UTF-8 text", path.display()))
}

fn typed_value(text: &str) -> InputValue {
    match text {
        "true" => InputValue::Bool(true),
        "false" => InputValue::Bool(false),
        _ => match text.parse::<i64>() {
            Ok(i) if !(text.starts_with('+') || text.len() > 1 && text.starts_with('0')) => {
                InputValue::Integer(i)
            }
            _ => InputValue::String(text.to_string()),
        },
    }
}

pub(crate) fn parse_parameters(arg: &str) -> anyhow::Result<IndexMap<String, InputValue>> {
    let text = match arg.strip_prefix('@') {
        Some(file) => {
            std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?
        }
        None => arg.to_string(),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).context("--pipeline-parameters: not valid JSON")?;
    let serde_json::Value::Object(map) = value else {
        bail!("--pipeline-parameters: expected a JSON object such as {{\"deploy\": true}}");
    };
    let mut out = IndexMap::new();
    for (k, v) in map {
        let v = match v {
            serde_json::Value::Bool(b) => InputValue::Bool(b),
            serde_json::Value::String(s) => InputValue::String(s),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => InputValue::Integer(i),
                None => {
                    bail!("--pipeline-parameters: `{k}` must be a whole number, string or boolean")
                }
            },
            _ => bail!("--pipeline-parameters: `{k}` must be a string, whole number or boolean"),
        };
        out.insert(k, v);
    }
    Ok(out)
}

/// Pipeline values for a local run: CircleCI's placeholders, with the branch,
/// revision, tag and remote of the git checkout the config is in, when it is in one.
fn local_pipeline_values(config: &Path) -> PipelineValues {
    let mut values = PipelineValues::default();
    let dir = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    if let Some(rev) = git(&["rev-parse", "HEAD"]) {
        values.set("pipeline.git.revision", rev.clone());
        values.set("pipeline.git.base_revision", rev);
    }
    if let Some(branch) = git(&["symbolic-ref", "--short", "-q", "HEAD"]) {
        values.set("pipeline.git.branch", branch);
    }
    if let Some(tag) = git(&["describe", "--tags", "--exact-match"]) {
        values.set("pipeline.git.tag", tag);
    }
    if let Some(url) = git(&["remote", "get-url", "origin"]) {
        values.set("pipeline.project.git_url", url);
    }
    values
}

fn report(
    args: &ConfigArgs,
    process: bool,
    text: &str,
    compiled: &Compiled,
) -> anyhow::Result<ExitCode> {
    let output = compiled
        .plan
        .as_ref()
        .filter(|_| process)
        .map(|plan| print::render(plan, text));
    if args.json {
        let mut doc = serde_json::json!({
            "valid": compiled.is_valid(),
            "diagnostics": compiled.diagnostics,
        });
        if process {
            doc["output"] = serde_json::json!(output);
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for d in &compiled.diagnostics {
            eprintln!("{d}");
        }
        match (&output, compiled.is_valid()) {
            (Some(out), _) => print!("{out}"),
            (None, true) => println!("Config file at {} is valid.", args.path.display()),
            (None, false) => {
                let n = compiled.errors().count();
                eprintln!(
                    "\nconfig {} has {n} error{}",
                    args.path.display(),
                    if n == 1 { "" } else { "s" }
                );
            }
        }
    }
    Ok(if compiled.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
