//! `orrery local execute`: a whole workflow from the working tree, on this
//! machine, with the agent code the server uses.
//!
//! Jobs run in parallel as each workflow's DAG allows (at most `--jobs` tasks at
//! once), their output is shown live, prefixed by job when several can run,
//! caches, workspaces, artifacts and test results are kept under the data
//! directory, and Ctrl-C cancels cleanly: running steps are stopped and every
//! container is removed before the command exits.

use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use indexmap::IndexMap;
use orrery_agent::{
    CancellationToken, CheckoutSource, LocalBackend, LocalTask, TaskEvent, TaskResult, TaskSpec,
    run_task,
};
use orrery_config::{CompileOptions, GitRef, Plan, Workflow, compile};
use orrery_core::{JobKind, JobStatus, StepOutcome, WorkflowRun, WorkflowStatus};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::orb_dir::DirOrbSource;

#[derive(Subcommand, Debug)]
pub enum LocalCommand {
    /// Run a workflow (or one job) from the working tree, on this machine
    Execute(ExecuteArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Args, Debug)]
pub struct ExecuteArgs {
    /// The config file
    #[arg(long, short = 'c', default_value = ".circleci/config.yml")]
    config: PathBuf,
    /// Run only this job (its `requires` are ignored)
    #[arg(long, conflicts_with = "workflow")]
    job: Option<String>,
    /// Run this workflow (default: every workflow a push of the current branch runs)
    #[arg(long)]
    workflow: Option<String>,
    /// How many tasks may run at once (default: the number of CPUs)
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Approve approval jobs without asking: all of them, or the ones named
    #[arg(long, value_name = "JOB", num_args = 0.., value_delimiter = ',')]
    approve: Option<Vec<String>>,
    /// Project environment variables, `NAME=value` (repeatable); masked in output
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Pipeline parameters as a JSON object, or @FILE holding one
    #[arg(long, value_name = "JSON")]
    pipeline_parameters: Option<String>,
    /// Where caches, workspaces, artifacts and test results are kept
    #[arg(long, env = "ORRERY_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Directory of imported orbs
    #[arg(long, env = "ORRERY_ORB_DIR", value_name = "DIR")]
    orb_dir: Option<PathBuf>,
    /// Colour the output
    #[arg(long, value_enum, default_value = "auto")]
    color: Color,
}

pub fn run(cmd: LocalCommand) -> anyhow::Result<ExitCode> {
    let LocalCommand::Execute(args) = cmd;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(execute(args))
}

fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/share/orrery")
    })
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
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
}

/// What the working tree is: where, which branch or tag, which revision.
struct Checkout {
    root: PathBuf,
    branch: Option<String>,
    tag: Option<String>,
    revision: String,
    remote: Option<String>,
    org: String,
    repo: String,
}

fn inspect_checkout(config: &Path) -> Checkout {
    let config_dir = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let root = git(&config_dir, &["rev-parse", "--show-toplevel"])
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // A config at <root>/.circleci/config.yml.
            let abs = std::fs::canonicalize(&config_dir).unwrap_or(config_dir.clone());
            if abs.file_name().is_some_and(|n| n == ".circleci") {
                abs.parent().map(Path::to_path_buf).unwrap_or(abs)
            } else {
                abs
            }
        });
    let remote = git(&root, &["remote", "get-url", "origin"]);
    let (org, repo) = remote
        .as_deref()
        .and_then(|url| {
            let trimmed = url.trim_end_matches(".git").trim_end_matches('/');
            let mut parts = trimmed.rsplit(['/', ':']);
            let repo = parts.next()?.to_string();
            let org = parts.next()?.to_string();
            Some((org, repo))
        })
        .unwrap_or_else(|| {
            let name = root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "project".into());
            ("local".into(), name)
        });
    Checkout {
        branch: git(&root, &["symbolic-ref", "--short", "-q", "HEAD"]),
        tag: git(&root, &["describe", "--tags", "--exact-match"]),
        revision: git(&root, &["rev-parse", "HEAD"]).unwrap_or_else(|| "0".repeat(40)),
        remote,
        org,
        repo,
        root,
    }
}

/// One workflow being run.
struct WorkflowState {
    name: String,
    run: WorkflowRun,
    id: String,
    workspace_id: String,
    /// Per job: node results so far, start time, and end time.
    nodes: HashMap<usize, Vec<Option<JobStatus>>>,
    started: HashMap<usize, Instant>,
    durations: HashMap<usize, Duration>,
}

/// A task waiting for a slot.
struct Pending {
    wf: usize,
    job: usize,
    node: u32,
}

/// Terminal styling.
#[derive(Clone, Copy)]
struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

const PREFIX_COLORS: [&str; 6] = ["36", "35", "33", "34", "32", "96"];

/// Events of all tasks, tagged with the label shown for them.
struct Tagged {
    label: String,
    color: &'static str,
    event: TaskEvent,
}

async fn execute(args: ExecuteArgs) -> anyhow::Result<ExitCode> {
    let style = Style {
        color: match args.color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        },
    };
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read config file {}", args.config.display()))?;
    let checkout = inspect_checkout(&args.config);
    let mut options = CompileOptions::new(args.config.display().to_string());
    let values = &mut options.pipeline_values;
    values.set("pipeline.git.revision", checkout.revision.clone());
    if let Some(b) = &checkout.branch {
        values.set("pipeline.git.branch", b.clone());
    }
    if let Some(t) = &checkout.tag {
        values.set("pipeline.git.tag", t.clone());
    }
    if let Some(r) = &checkout.remote {
        values.set("pipeline.project.git_url", r.clone());
    }
    values.set(
        "pipeline.project.slug",
        format!("local/{}/{}", checkout.org, checkout.repo),
    );
    if let Some(p) = &args.pipeline_parameters {
        options.pipeline_parameters = super::config::parse_parameters(p)?;
    }
    let orbs = DirOrbSource::new(super::orb_dir(args.orb_dir.clone()));
    let compiled = compile(&text, &options, &orbs);
    for d in &compiled.diagnostics {
        eprintln!("{d}");
    }
    let Some(plan) = compiled.plan else {
        eprintln!(
            "\nconfig {} is not valid; nothing ran",
            args.config.display()
        );
        return Ok(ExitCode::from(1));
    };
    let mut project_env = Vec::new();
    for pair in &args.env {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("--env `{pair}`: expected NAME=VALUE"))?;
        project_env.push((k.to_string(), v.to_string()));
    }

    let git_ref = match (&checkout.tag, &checkout.branch) {
        (Some(t), None) => GitRef::Tag(t),
        (_, Some(b)) => GitRef::Branch(b),
        (None, None) => GitRef::Branch("HEAD"),
    };
    let mut workflows = select_workflows(&plan, &args, git_ref)?;
    if workflows.is_empty() {
        bail!(
            "no workflow runs for {}: every workflow is filtered out, scheduled or disabled by `when`",
            describe(git_ref)
        );
    }

    let data = data_dir(args.data_dir.clone()).join("local");
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let run_id = new_id();
    println!(
        "Run {run_id} of {} at {}",
        args.config.display(),
        &checkout.revision[..checkout.revision.len().min(12)]
    );
    let pipeline_id = new_id();
    let project = format!("local/{}/{}", checkout.org, checkout.repo);
    let slots = args
        .jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
        .max(1);
    let kill_grace = std::env::var("ORRERY_KILL_GRACE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(10));
    let total_tasks: usize = workflows
        .iter()
        .flat_map(|w| w.run.jobs.iter())
        .map(|j| {
            plan.jobs
                .get(&j.name)
                .map_or(1, |job| job.task_count() as usize)
        })
        .sum();
    let prefixed = total_tasks > 1;

    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<Tagged>();
    let printer = tokio::spawn(async move {
        let mut partial: HashMap<(String, usize), Vec<u8>> = HashMap::new();
        let mut names: HashMap<(String, usize), String> = HashMap::new();
        let mut out = std::io::stdout();
        while let Some(t) = rx.recv().await {
            let prefix = if prefixed {
                format!("{} ", style.paint(t.color, &format!("[{}]", t.label)))
            } else {
                String::new()
            };
            match t.event {
                TaskEvent::StepStarted {
                    index,
                    name,
                    background,
                } => {
                    let mark = if background {
                        "▶ (background)"
                    } else {
                        "▶"
                    };
                    let _ = writeln!(
                        out,
                        "{prefix}{}",
                        style.paint("1", &format!("{mark} {}", first_line(&name)))
                    );
                    partial.remove(&(t.label.clone(), index));
                    names.insert((t.label.clone(), index), first_line(&name).to_string());
                }
                TaskEvent::Output { index, data } => {
                    let buf = partial.entry((t.label.clone(), index)).or_default();
                    buf.extend_from_slice(&data);
                    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        let _ = write!(out, "{prefix}  {}", String::from_utf8_lossy(&line));
                    }
                }
                TaskEvent::StepFinished {
                    index,
                    outcome,
                    duration,
                } => {
                    if let Some(rest) = partial.remove(&(t.label.clone(), index))
                        && !rest.is_empty()
                    {
                        let _ = writeln!(out, "{prefix}  {}", String::from_utf8_lossy(&rest));
                    }
                    let took = format!("{:.1}s", duration.as_secs_f64());
                    let name = names.remove(&(t.label.clone(), index)).unwrap_or_default();
                    let line = if outcome.is_success() {
                        style.paint("32", &format!("✔ {name} ({took})"))
                    } else {
                        style.paint(
                            "31",
                            &format!("✘ {name}: {} ({took})", outcome_word(&outcome)),
                        )
                    };
                    let _ = writeln!(out, "{prefix}{line}");
                }
            }
            let _ = out.flush();
        }
    });

    // Ctrl-C cancels; a second one leaves at once.
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "\nCanceling: stopping running steps and removing containers (Ctrl-C again to leave now)"
                );
                cancel.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }

    let approve_all = args.approve.as_ref().is_some_and(|a| a.is_empty());
    let approve_named: Vec<String> = args.approve.clone().unwrap_or_default();
    let interactive = std::io::stdin().is_terminal();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut running: JoinSet<(usize, usize, u32, TaskResult)> = JoinSet::new();
    let mut build_num = next_build_num(&data, 0);
    let mut label_color: HashMap<String, &'static str> = HashMap::new();
    let mut canceled = false;

    loop {
        if cancel.is_cancelled() && !canceled {
            canceled = true;
            pending.clear();
            for w in workflows.iter_mut() {
                w.run.cancel();
            }
        }
        if !canceled {
            // Queue the tasks of jobs that became ready, and decide approvals.
            for (wi, w) in workflows.iter_mut().enumerate() {
                for ji in w.run.ready() {
                    w.run.set_status(ji, JobStatus::Queued);
                    let total = plan
                        .jobs
                        .get(&w.run.jobs[ji].name)
                        .map_or(1, |j| j.task_count());
                    w.nodes.insert(ji, vec![None; total as usize]);
                    for node in 0..total {
                        pending.push_back(Pending {
                            wf: wi,
                            job: ji,
                            node,
                        });
                    }
                }
                let holds: Vec<String> = w
                    .run
                    .jobs
                    .iter()
                    .filter(|j| j.kind == JobKind::Approval && j.status == JobStatus::OnHold)
                    .map(|j| j.name.clone())
                    .collect();
                for hold in holds {
                    if approve_all || approve_named.contains(&hold) {
                        println!(
                            "{}",
                            style.paint(
                                "33",
                                &format!("Approved `{hold}` in workflow `{}` (--approve)", w.name)
                            )
                        );
                        let _ = w.run.approve(&hold);
                    } else if interactive && running.is_empty() && pending.is_empty() {
                        let yes = ask(&format!(
                            "Approve `{hold}` in workflow `{}`? [y/N] ",
                            w.name
                        ));
                        if yes {
                            let _ = w.run.approve(&hold);
                        } else if let Some((i, _)) = w.run.job(&hold) {
                            w.run.set_status(i, JobStatus::Canceled);
                        }
                    }
                }
            }
        }
        while running.len() < slots
            && let Some(p) = pending.pop_front()
        {
            let w = &mut workflows[p.wf];
            let name = w.run.jobs[p.job].name.clone();
            let job = plan.jobs[&name].clone();
            w.run.set_status(p.job, JobStatus::Running);
            w.started.entry(p.job).or_insert_with(Instant::now);
            let label = if job.task_count() > 1 {
                format!("{name}/{}", p.node)
            } else {
                name.clone()
            };
            let n = label_color.len();
            let color = *label_color
                .entry(label.clone())
                .or_insert(PREFIX_COLORS[n % PREFIX_COLORS.len()]);
            build_num = next_build_num(&data, build_num);
            let job_id = new_id();
            let mut builtin = IndexMap::new();
            if let Some(b) = &checkout.branch {
                builtin.insert("CIRCLE_BRANCH".to_string(), b.clone());
            }
            if let Some(t) = &checkout.tag {
                builtin.insert("CIRCLE_TAG".to_string(), t.clone());
            }
            builtin.insert("CIRCLE_SHA1".into(), checkout.revision.clone());
            builtin.insert("CIRCLE_BUILD_NUM".into(), build_num.to_string());
            builtin.insert("CIRCLE_BUILD_URL".into(), String::new());
            builtin.insert("CIRCLE_PIPELINE_ID".into(), pipeline_id.clone());
            builtin.insert("CIRCLE_WORKFLOW_ID".into(), w.id.clone());
            builtin.insert(
                "CIRCLE_WORKFLOW_WORKSPACE_ID".into(),
                w.workspace_id.clone(),
            );
            builtin.insert("CIRCLE_WORKFLOW_JOB_ID".into(), job_id);
            builtin.insert("CIRCLE_PROJECT_USERNAME".into(), checkout.org.clone());
            builtin.insert("CIRCLE_PROJECT_REPONAME".into(), checkout.repo.clone());
            builtin.insert(
                "CIRCLE_REPOSITORY_URL".into(),
                checkout.remote.clone().unwrap_or_default(),
            );
            builtin.insert(
                "CIRCLE_USERNAME".into(),
                std::env::var("USER").unwrap_or_default(),
            );
            let upstream = upstream_jobs(&w.run, p.job);
            let task_id = format!("{}-{}-{}", &run_id[..8], sanitize(&name), p.node);
            let spec = TaskSpec {
                task_id,
                job_name: name.clone(),
                job,
                node_index: p.node,
                node_total: plan.jobs[&name].task_count(),
                builtin_env: builtin,
                context_env: Vec::new(),
                project_env: project_env.clone(),
                checkout: CheckoutSource::WorkingTree(checkout.root.clone()),
                ssh_keys: Vec::new(),
                max_run_time: Duration::from_secs(5 * 3600),
                work_root: data.join("tasks"),
                workspace_upstream: upstream,
                kill_grace,
            };
            let backend = Arc::new(LocalBackend::new(
                &data,
                LocalTask {
                    project: project.clone(),
                    workspace_id: w.workspace_id.clone(),
                    run_id: run_id.clone(),
                    job: name.clone(),
                    node: p.node,
                },
            ));
            let (task_tx, mut task_rx) = mpsc::unbounded_channel::<TaskEvent>();
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(event) = task_rx.recv().await {
                    let _ = tx.send(Tagged {
                        label: label.clone(),
                        color,
                        event,
                    });
                }
            });
            let cancel = cancel.clone();
            let (wf, ji, node) = (p.wf, p.job, p.node);
            running.spawn(
                async move { (wf, ji, node, run_task(spec, backend, task_tx, cancel).await) },
            );
        }
        if running.is_empty() {
            break;
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (wi, ji, node, result) = match joined {
            Ok(r) => r,
            Err(e) => bail!("a task crashed: {e}"),
        };
        let w = &mut workflows[wi];
        if let Some(nodes) = w.nodes.get_mut(&ji) {
            nodes[node as usize] = Some(result.status);
            if nodes.iter().all(Option::is_some) {
                let status = JobStatus::combine(nodes.iter().flatten().copied());
                if let Some(start) = w.started.get(&ji) {
                    w.durations.insert(ji, start.elapsed());
                }
                if !canceled {
                    w.run.set_status(ji, status);
                } else {
                    w.run.jobs[ji].status = status;
                }
            }
        }
    }
    drop(tx);
    let _ = printer.await;

    // The summary.
    println!();
    println!(
        "{}",
        style.paint(
            "1",
            &format!(
                "{:<20} {:<28} {:<20} {}",
                "WORKFLOW", "JOB", "STATUS", "DURATION"
            )
        )
    );
    let mut ok = true;
    for w in &workflows {
        let status = w.run.status();
        ok &= status == WorkflowStatus::Success;
        for (ji, job) in w.run.jobs.iter().enumerate() {
            let took = w
                .durations
                .get(&ji)
                .map(|d| format!("{:.1}s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into());
            let color = status_color(job.status.as_str());
            println!(
                "{:<20} {:<28} {} {}",
                w.name,
                job.name,
                style.paint(color, &format!("{:<20}", job.status.as_str())),
                took
            );
        }
        println!(
            "{:<20} {:<28} {}",
            w.name,
            "(workflow)",
            style.paint(status_color(status.as_str()), status.as_str())
        );
        if status == WorkflowStatus::OnHold {
            println!("  approval jobs are waiting: run again with --approve to approve them");
        }
    }
    println!("\nArtifacts, test results and caches: {}", data.display());
    Ok(if canceled {
        ExitCode::from(130)
    } else if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn describe(r: GitRef<'_>) -> String {
    match r {
        GitRef::Branch(b) => format!("branch {b}"),
        GitRef::Tag(t) => format!("tag {t}"),
    }
}

/// The workflows to run: the one named, a one-job workflow for `--job`, or
/// every enabled, unscheduled workflow a push would run.
fn select_workflows(
    plan: &Plan,
    args: &ExecuteArgs,
    git_ref: GitRef<'_>,
) -> anyhow::Result<Vec<WorkflowState>> {
    let state = |name: &str, workflow: Workflow| {
        let run = WorkflowRun::new(name, &workflow, git_ref);
        WorkflowState {
            name: name.to_string(),
            run,
            id: new_id(),
            workspace_id: new_id(),
            nodes: HashMap::new(),
            started: HashMap::new(),
            durations: HashMap::new(),
        }
    };
    if let Some(job) = &args.job {
        if !plan.jobs.contains_key(job) {
            let names: Vec<&str> = plan.jobs.keys().map(String::as_str).collect();
            bail!("the config has no job `{job}`; jobs: {}", names.join(", "));
        }
        let workflow = Workflow {
            enabled: true,
            jobs: vec![orrery_config::WorkflowJob {
                name: job.clone(),
                job_type: orrery_config::WorkflowJobType::Build,
                requires: Vec::new(),
                context: Vec::new(),
                filters: None,
                serial_group: None,
            }],
            triggers: Vec::new(),
            max_auto_reruns: None,
        };
        // A single job runs whatever its filters say.
        let run = WorkflowRun::new(job, &workflow, GitRef::Branch("local"));
        let mut s = state(job, workflow);
        s.run = run;
        return Ok(vec![s]);
    }
    if let Some(name) = &args.workflow {
        let Some(w) = plan.workflows.get(name) else {
            let names: Vec<&str> = plan.workflows.keys().map(String::as_str).collect();
            bail!(
                "the config has no workflow `{name}`; workflows: {}",
                names.join(", ")
            );
        };
        return Ok(vec![state(name, w.clone())]);
    }
    Ok(plan
        .workflows
        .iter()
        .filter(|(_, w)| w.enabled && !w.is_scheduled())
        .map(|(n, w)| state(n, w.clone()))
        .filter(|s| !s.run.jobs.is_empty())
        .collect())
}

/// The jobs upstream of `job` (transitively), in the order their workspace
/// layers apply.
fn upstream_jobs(run: &WorkflowRun, job: usize) -> Vec<String> {
    let mut seen = vec![false; run.jobs.len()];
    let mut order = Vec::new();
    fn visit(run: &WorkflowRun, i: usize, seen: &mut Vec<bool>, order: &mut Vec<String>) {
        for (d, _) in &run.jobs[i].requires {
            if !seen[*d] {
                seen[*d] = true;
                visit(run, *d, seen, order);
                order.push(run.jobs[*d].name.clone());
            }
        }
    }
    visit(run, job, &mut seen, &mut order);
    order
}

fn ask(question: &str) -> bool {
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok()
        && matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
}

fn status_color(status: &str) -> &'static str {
    match status {
        "success" => "32",
        "failed" | "timedout" | "infrastructure_fail" | "error" | "failing" => "31",
        "on_hold" | "canceled" => "33",
        _ => "90",
    }
}

fn outcome_word(outcome: &StepOutcome) -> String {
    match outcome {
        StepOutcome::ExitCode { code } => format!("failed (exit code {code})"),
        StepOutcome::Signal { signal } => format!("killed by signal {signal}"),
        StepOutcome::Timeout => "timed out".into(),
        StepOutcome::NoOutputTimeout { .. } => "timed out with no output".into(),
        StepOutcome::FailedToStart { .. } => "could not start".into(),
        StepOutcome::Canceled => "canceled".into(),
        StepOutcome::InfrastructureFailure { .. } => "infrastructure failure".into(),
        StepOutcome::Success | StepOutcome::Skipped => "done".into(),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The next job number of local runs, kept in the data directory.
fn next_build_num(data: &Path, current: u64) -> u64 {
    let path = data.join("build-num");
    let stored: u64 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let next = stored.max(current) + 1;
    let _ = std::fs::write(&path, next.to_string());
    next
}
