//! `orrery server`, `orrery runner` and `orrery project add`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use orrery_agent::worker::{WorkerConfig, run_worker};
use orrery_server::client::{HttpBackends, HttpRunner, api_call};
use orrery_server::{Server, ServerConfig};

use crate::orb_dir::DirOrbSource;

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Where the database, keys, repositories and blobs live
    #[arg(long, env = "ORRERY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The address to listen on
    #[arg(long, env = "ORRERY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The URL users and runners reach this server at (for links and webhooks)
    #[arg(long, env = "ORRERY_URL")]
    url: Option<String>,
    /// A database URL (`sqlite://path`); default: orrery.db in the data directory
    #[arg(long, env = "ORRERY_DATABASE_URL")]
    database_url: Option<String>,
    /// Object storage for caches, workspaces, artifacts: a directory,
    /// `s3://bucket/prefix` (AWS_* variables configure it), `gs://...` or
    /// `az://...`; default: `blobs` in the data directory
    #[arg(long, env = "ORRERY_BLOB_URL")]
    blob_url: Option<String>,
    /// Embedded runner slots (0: no embedded runner); default: one per core
    #[arg(long, env = "ORRERY_RUNNER_SLOTS")]
    runner_slots: Option<usize>,
    /// Where orbs are looked up; default ~/.local/share/orrery/orbs
    #[arg(long, env = "ORRERY_ORB_DIR")]
    orb_dir: Option<PathBuf>,
    /// How long a runner may go without a heartbeat before its task is lost
    #[arg(long, env = "ORRERY_LEASE_SECS", default_value_t = 20)]
    lease_secs: u64,
    /// Days artifacts are kept (`forever`: never deleted)
    #[arg(long, env = "ORRERY_RETAIN_ARTIFACTS_DAYS", value_parser = retain_days, value_name = "DAYS")]
    retain_artifacts_days: Option<RetainDays>,
    /// Days a workspace is kept after its workflows last ran
    #[arg(long, env = "ORRERY_RETAIN_WORKSPACES_DAYS", value_parser = retain_days, value_name = "DAYS")]
    retain_workspaces_days: Option<RetainDays>,
    /// Days a cache is kept after it was last saved or restored
    #[arg(long, env = "ORRERY_RETAIN_CACHES_DAYS", value_parser = retain_days, value_name = "DAYS")]
    retain_caches_days: Option<RetainDays>,
    /// Days test results are kept (insights, test splitting timings)
    #[arg(long, env = "ORRERY_RETAIN_TEST_RESULTS_DAYS", value_parser = retain_days, value_name = "DAYS")]
    retain_test_results_days: Option<RetainDays>,
    /// Days step output is kept after its job ended; default: forever
    #[arg(long, env = "ORRERY_RETAIN_OUTPUT_DAYS", value_parser = retain_days, value_name = "DAYS")]
    retain_output_days: Option<RetainDays>,
    /// A config file (`key = value` lines with the flag names; flags and
    /// ORRERY_* variables win)
    #[arg(long, env = "ORRERY_CONFIG")]
    config: Option<PathBuf>,
}

/// A retention setting: a number of days, or `forever` (`None`).
#[derive(Clone, Copy, Debug, PartialEq)]
struct RetainDays(Option<Duration>);

fn retain_days(s: &str) -> Result<RetainDays, String> {
    orrery_server::retention::parse_days(s).map(RetainDays)
}

#[derive(Args, Debug)]
pub struct RunnerArgs {
    /// The server's URL
    #[arg(long, env = "ORRERY_URL")]
    url: String,
    /// A runner token (POST /api/v3/runner/token)
    #[arg(long, env = "ORRERY_RUNNER_TOKEN", hide_env_values = true)]
    token: String,
    /// This runner's name, unique within its resource class; default: the host name
    #[arg(long, env = "ORRERY_RUNNER_NAME")]
    name: Option<String>,
    /// Tasks run at once
    #[arg(long, env = "ORRERY_RUNNER_SLOTS", default_value_t = 1)]
    slots: usize,
    /// Where tasks run and what they store (caches, workspaces, artifacts)
    #[arg(long, env = "ORRERY_RUNNER_DIR")]
    work_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ProjectCommand {
    /// Add a project from a git URL; prints its slug, webhook URL and secret
    Add(ProjectAddArgs),
}

#[derive(Args, Debug)]
pub struct ProjectAddArgs {
    /// The repository to clone (https://, ssh://, git@host:path, file://, a path)
    git_url: String,
    /// The project slug, `gh/org/repo`; default `git/local/<repository name>`
    #[arg(long)]
    slug: Option<String>,
    #[arg(long)]
    default_branch: Option<String>,
    /// The server's URL
    #[arg(
        long = "server",
        env = "ORRERY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// An API token
    #[arg(long, env = "ORRERY_TOKEN", hide_env_values = true)]
    token: String,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORRERY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Applies `key = value` lines of a config file to settings not given.
fn apply_config_file(args: &mut ServerArgs) -> anyhow::Result<()> {
    let Some(path) = &args.config else {
        return Ok(());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!("{}:{}: expected `key = value`", path.display(), n + 1);
        };
        let (key, value) = (key.trim(), value.trim().trim_matches('"'));
        let bad = |what: &str| anyhow::anyhow!("{}:{}: {key}: {what}", path.display(), n + 1);
        match key {
            "data-dir" | "data_dir" => {
                args.data_dir.get_or_insert_with(|| PathBuf::from(value));
            }
            "url" => {
                args.url.get_or_insert_with(|| value.to_string());
            }
            "database-url" | "database_url" => {
                args.database_url.get_or_insert_with(|| value.to_string());
            }
            "blob-url" | "blob_url" => {
                args.blob_url.get_or_insert_with(|| value.to_string());
            }
            "runner-slots" | "runner_slots" => {
                if args.runner_slots.is_none() {
                    args.runner_slots = Some(value.parse().map_err(|_| bad("not a number"))?);
                }
            }
            "orb-dir" | "orb_dir" => {
                args.orb_dir.get_or_insert_with(|| PathBuf::from(value));
            }
            "retain-artifacts-days" | "retain_artifacts_days" => {
                if args.retain_artifacts_days.is_none() {
                    args.retain_artifacts_days = Some(retain_days(value).map_err(|e| bad(&e))?);
                }
            }
            "retain-workspaces-days" | "retain_workspaces_days" => {
                if args.retain_workspaces_days.is_none() {
                    args.retain_workspaces_days = Some(retain_days(value).map_err(|e| bad(&e))?);
                }
            }
            "retain-caches-days" | "retain_caches_days" => {
                if args.retain_caches_days.is_none() {
                    args.retain_caches_days = Some(retain_days(value).map_err(|e| bad(&e))?);
                }
            }
            "retain-test-results-days" | "retain_test_results_days" => {
                if args.retain_test_results_days.is_none() {
                    args.retain_test_results_days = Some(retain_days(value).map_err(|e| bad(&e))?);
                }
            }
            "retain-output-days" | "retain_output_days" => {
                if args.retain_output_days.is_none() {
                    args.retain_output_days = Some(retain_days(value).map_err(|e| bad(&e))?);
                }
            }
            // `listen` and `lease-secs` have defaults, so the file only
            // applies when neither the flag nor the variable was given.
            "listen" => {
                if std::env::var_os("ORRERY_LISTEN").is_none()
                    && !std::env::args().any(|a| a.starts_with("--listen"))
                {
                    args.listen = value.parse().map_err(|_| bad("not an address"))?;
                }
            }
            "lease-secs" | "lease_secs" => {
                if std::env::var_os("ORRERY_LEASE_SECS").is_none()
                    && !std::env::args().any(|a| a.starts_with("--lease-secs"))
                {
                    args.lease_secs = value.parse().map_err(|_| bad("not a number"))?;
                }
            }
            other => bail!("{}:{}: unknown setting `{other}`", path.display(), n + 1),
        }
    }
    Ok(())
}

pub fn server(mut args: ServerArgs) -> anyhow::Result<ExitCode> {
    apply_config_file(&mut args)?;
    init_logging();
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| home().join(".local/share/orrery/server"));
    let orbs = DirOrbSource::new(crate::cli::orb_dir(args.orb_dir.clone()));
    if args.lease_secs < 5 {
        bail!("--lease-secs must be at least 5");
    }
    let mut config = ServerConfig::new(data_dir.clone(), Arc::new(orbs));
    config.listen = args.listen;
    config.base_url = args.url.clone();
    config.database_url = args.database_url.clone();
    config.blob_url = args.blob_url.clone();
    if let Some(n) = args.runner_slots {
        config.embedded_slots = n;
    }
    let retention = &mut config.retention;
    for (setting, value) in [
        (&mut retention.artifacts, args.retain_artifacts_days),
        (&mut retention.workspaces, args.retain_workspaces_days),
        (&mut retention.caches, args.retain_caches_days),
        (&mut retention.test_results, args.retain_test_results_days),
        (&mut retention.output, args.retain_output_days),
    ] {
        if let Some(RetainDays(days)) = value {
            *setting = days;
        }
    }
    config.admin_token = std::env::var("ORRERY_ADMIN_TOKEN").ok();
    config.lease = Duration::from_secs(args.lease_secs);
    config.heartbeat = Duration::from_secs((args.lease_secs / 4).max(1));
    if let Ok(g) = std::env::var("ORRERY_KILL_GRACE_SECS") {
        config.kill_grace = Duration::from_secs(g.parse().context("ORRERY_KILL_GRACE_SECS")?);
    }
    runtime()?.block_on(async move {
        let server = Server::start(config).await?;
        println!(
            "Orrery {} is listening on {}",
            env!("CARGO_PKG_VERSION"),
            server.base_url
        );
        println!("Data directory: {}", data_dir.display());
        if let Some(first) = &server.first_start {
            println!("First start: created the admin account `{}`.", first.login);
            match &first.token {
                Some(t) => {
                    println!("Its API token (shown once, keep it): {t}");
                    println!(
                        "Try: curl -H 'Circle-Token: {t}' {}/api/v2/me",
                        server.base_url
                    );
                }
                None => println!("Its API token is the ORRERY_ADMIN_TOKEN you set."),
            }
        }
        let stop = server.shutdown_token();
        tokio::spawn(async move {
            shutdown_signal().await;
            eprintln!("Stopping: finishing requests, stopping the embedded runner's jobs...");
            stop.cancel();
        });
        server.wait().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

pub fn runner(args: RunnerArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let name = args.name.clone().unwrap_or_else(orrery_server::hostname);
    if !orrery_server::api::runner::valid_runner_name(&name) {
        bail!("runner name `{name}` may only hold letters, digits, `-`, `_` and `.`");
    }
    if args.slots == 0 {
        bail!("--slots must be at least 1");
    }
    let work = args
        .work_dir
        .clone()
        .unwrap_or_else(|| home().join(".local/share/orrery/runner"));
    // Uploads a killed predecessor was spooling are of no use now.
    let _ = std::fs::remove_dir_all(work.join("spool"));
    runtime()?.block_on(async move {
        let api = HttpRunner::new(&args.url, &args.token, &name).map_err(|e| anyhow::anyhow!(e))?;
        let id = api
            .register(&orrery_server::hostname())
            .await
            .map_err(|e| anyhow::anyhow!("cannot register with {}: {e}", args.url))?;
        println!(
            "Runner {id} connected to {}, {} slot(s)",
            args.url, args.slots
        );
        let shutdown = orrery_agent::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            eprintln!("Stopping: the running jobs are stopped and left to the server");
            stop.cancel();
        });
        run_worker(
            Arc::new(api),
            // Caches, workspaces, artifacts and test results go through the
            // server, so every runner host sees the same ones.
            Arc::new(
                HttpBackends::new(&args.url, &args.token, &name, work.join("spool"))
                    .map_err(|e| anyhow::anyhow!(e))?,
            ),
            WorkerConfig {
                slots: args.slots,
                work_root: work.join("work"),
                kill_grace: Duration::from_secs(10),
                claim_wait: Duration::from_secs(30),
            },
            shutdown,
        )
        .await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn project(cmd: ProjectCommand) -> anyhow::Result<ExitCode> {
    let ProjectCommand::Add(args) = cmd;
    let slug = match &args.slug {
        Some(s) => s.clone(),
        None => {
            let name = args
                .git_url
                .trim_end_matches('/')
                .rsplit(['/', ':'])
                .next()
                .unwrap_or_default()
                .trim_end_matches(".git")
                .to_string();
            if name.is_empty() {
                bail!(
                    "cannot name a project after `{}`: give --slug",
                    args.git_url
                );
            }
            format!("git/local/{name}")
        }
    };
    if slug.split('/').count() != 3 {
        bail!("--slug `{slug}` must be `vcs/org/repo`, e.g. gh/acme/app");
    }
    let mut body = serde_json::json!({"repo_url": args.git_url});
    if let Some(b) = &args.default_branch {
        body["default_branch"] = serde_json::json!(b);
    }
    let answer = runtime()?.block_on(api_call(
        &args.server,
        &args.token,
        orrery_server::client::Method::POST,
        &format!("/api/v2/project/{slug}"),
        Some(&body),
    ));
    match answer {
        Ok(v) => {
            println!("{}", v["slug"].as_str().unwrap_or(&slug));
            eprintln!(
                "webhook URL:    {}",
                v["webhook"]["url"].as_str().unwrap_or_default()
            );
            eprintln!(
                "webhook secret: {}",
                v["webhook"]["secret"].as_str().unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
