//! The step loop: spin up the environment, run each step in order (honouring
//! `when`, halts, timeouts and cancellation), stop everything, report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use indexmap::IndexMap;
use orrery_config::{Executor, Job, Step, StepWhen};
use orrery_core::{JobStatus, StepOutcome};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{BackendError, ByteStream, TaskBackend};
use crate::exec::docker::{self, DockerStart};
use crate::exec::machine::MachineEnv;
use crate::exec::{Cmd, Environment, StartError};
use crate::mask::Masker;
use crate::spec::{CheckoutSource, StepRecord, TaskEvent, TaskResult, TaskSpec};
use crate::{host, taskbin, template};

/// Runs one task to its end. Never panics on a job's content; every way a
/// step can end is reported as its [`StepOutcome`].
pub async fn run_task<B: TaskBackend>(
    spec: TaskSpec,
    backend: Arc<B>,
    events: mpsc::UnboundedSender<TaskEvent>,
    cancel: CancellationToken,
) -> TaskResult {
    let task_dir = spec.work_root.join(format!("task-{}", spec.task_id));
    let mut run = Run {
        masker_secrets: spec
            .project_env
            .iter()
            .chain(spec.context_env.iter())
            .map(|(_, v)| v.clone())
            .collect(),
        deadline: Instant::now() + spec.max_run_time,
        spec,
        backend,
        events,
        cancel,
        task_dir,
        env: None,
        records: Vec::new(),
        index: 0,
        failed: false,
        stopped: false,
        default_shell: "/bin/sh -eo pipefail".into(),
        extra_env: Vec::new(),
        background: Vec::new(),
    };
    run.run().await;
    run.finish().await
}

struct Background {
    index: usize,
    cancel_file: PathBuf,
    handle: tokio::task::JoinHandle<StepOutcome>,
}

struct Run<B> {
    spec: TaskSpec,
    backend: Arc<B>,
    events: mpsc::UnboundedSender<TaskEvent>,
    cancel: CancellationToken,
    task_dir: PathBuf,
    env: Option<Environment>,
    records: Vec<StepRecord>,
    index: usize,
    failed: bool,
    /// Canceled, timed out or halted: no further step runs.
    stopped: bool,
    masker_secrets: Vec<String>,
    deadline: Instant,
    default_shell: String,
    /// Variables later steps get (DOCKER_HOST after `setup_remote_docker`).
    extra_env: Vec<(String, String)>,
    background: Vec<Background>,
}

/// Drains a process: exit code, stdout, stderr.
async fn collect(
    proc: std::io::Result<crate::exec::Proc>,
) -> std::io::Result<(i32, String, String)> {
    let mut proc = proc?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some(chunk) = proc.output.next().await {
        let chunk = chunk?;
        if chunk.stderr {
            err.extend(chunk.data);
        } else {
            out.extend(chunk.data);
        }
    }
    let code = proc.wait().await?;
    Ok((
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    ))
}

/// The result of one step's work, before it is recorded.
type StepResult = Result<(), StepOutcome>;

fn fail(message: impl Into<String>) -> StepOutcome {
    StepOutcome::FailedToStart {
        reason: message.into(),
    }
}

impl<B: TaskBackend> Run<B> {
    fn emit(&self, event: TaskEvent) {
        let _ = self.events.send(event);
    }

    fn out(&self, text: impl AsRef<str>) {
        let mut data = text.as_ref().as_bytes().to_vec();
        if !data.ends_with(b"\n") {
            data.push(b'\n');
        }
        self.emit(TaskEvent::Output {
            index: self.index,
            data,
        });
    }

    fn env(&self) -> &Environment {
        self.env.as_ref().expect("the environment is running")
    }

    fn job(&self) -> &Job {
        &self.spec.job
    }

    /// Host path of a file in the task directory, and the same path as commands
    /// in the environment see it.
    fn task_file(&self, name: &str) -> (PathBuf, String) {
        (
            self.task_dir.join(name),
            format!("{}/{name}", self.env().task_data()),
        )
    }

    fn circleci(&self) -> String {
        format!("{}/bin/circleci", self.env().task_data())
    }

    async fn run(&mut self) {
        if !self.spin_up().await {
            return;
        }
        self.prepare_env_step();
        let steps = self.job().steps.clone();
        for step in steps.iter() {
            if self.stopped {
                break;
            }
            if self.cancel.is_cancelled() {
                self.stopped = true;
                break;
            }
            let runs = match step.when() {
                StepWhen::OnSuccess => !self.failed,
                StepWhen::OnFail => self.failed,
                StepWhen::Always => true,
            };
            if !runs {
                continue;
            }
            self.index += 1;
            let started = Instant::now();
            let background = matches!(step, Step::Run(r) if r.background == Some(true));
            self.emit(TaskEvent::StepStarted {
                index: self.index,
                name: step.display_name(),
                background,
            });
            let outcome = match self.step(step).await {
                Ok(()) => StepOutcome::Success,
                Err(outcome) => {
                    // A step that failed may have failed because a service died:
                    // say so where the failure is shown.
                    if let Some(Environment::Docker(d)) = &self.env {
                        for message in d.dead_services().await {
                            self.out(message);
                        }
                    }
                    outcome
                }
            };
            self.record(step.display_name(), outcome, started);
            if self.task_dir.join("halt").exists() {
                let _ = std::fs::remove_file(self.task_dir.join("halt"));
                self.stopped = true;
            }
        }
    }

    fn record(&mut self, name: String, outcome: StepOutcome, started: Instant) {
        let duration = started.elapsed();
        if let Some(message) = outcome.message() {
            self.out(message);
        }
        if !outcome.is_success() {
            self.failed = true;
        }
        if matches!(
            outcome,
            StepOutcome::Canceled
                | StepOutcome::Timeout
                | StepOutcome::InfrastructureFailure { .. }
        ) {
            self.stopped = true;
        }
        self.emit(TaskEvent::StepFinished {
            index: self.index,
            outcome: outcome.clone(),
            duration,
        });
        self.records.push(StepRecord {
            name,
            outcome,
            duration,
        });
    }

    async fn finish(mut self) -> TaskResult {
        // Background steps end with the job.
        for bg in std::mem::take(&mut self.background) {
            let _ = std::fs::write(&bg.cancel_file, b"");
            let grace = self.spec.kill_grace + Duration::from_secs(5);
            let outcome = match tokio::time::timeout(grace, bg.handle).await {
                Ok(Ok(outcome)) => outcome,
                _ => StepOutcome::Canceled,
            };
            tracing::debug!(step = bg.index, ?outcome, "background step ended");
        }
        if let Some(env) = self.env.as_mut() {
            env.stop().await;
        }
        let _ = tokio::fs::remove_dir_all(&self.task_dir).await;
        let status = if self.cancel.is_cancelled() {
            JobStatus::Canceled
        } else {
            JobStatus::combine(self.records.iter().map(|r| r.outcome.job_status()))
        };
        TaskResult {
            status,
            steps: self.records,
        }
    }

    /// The implicit first step: the task directory, the environment, the job's
    /// working directory.
    async fn spin_up(&mut self) -> bool {
        let started = Instant::now();
        self.emit(TaskEvent::StepStarted {
            index: 0,
            name: "Spin up environment".into(),
            background: false,
        });
        let result = self.spin_up_inner().await;
        let ok = result.is_ok();
        let outcome = match result {
            Ok(()) => StepOutcome::Success,
            Err(StartError::Job(reason)) => StepOutcome::FailedToStart { reason },
            Err(StartError::Infrastructure(reason)) => {
                StepOutcome::InfrastructureFailure { reason }
            }
        };
        if !ok {
            self.stopped = true;
        }
        self.record("Spin up environment".into(), outcome, started);
        ok
    }

    async fn spin_up_inner(&mut self) -> Result<(), StartError> {
        let infra =
            |what: &str, e: std::io::Error| StartError::Infrastructure(format!("{what}: {e}"));
        let dir = self.task_dir.clone();
        for sub in ["bin", "steps", "tmp"] {
            tokio::fs::create_dir_all(dir.join(sub))
                .await
                .map_err(|e| infra("cannot create the task directory", e))?;
        }
        taskbin::install(&dir.join("bin"), &self.spec.work_root.join("bin"))
            .map_err(|e| infra("cannot install the in-job circleci binary", e))?;
        tokio::fs::write(dir.join("bash_env"), b"")
            .await
            .map_err(|e| infra("cannot write BASH_ENV", e))?;
        // Everything in it must be usable by a job user that is not root.
        host::open_permissions(&dir)
            .map_err(|e| infra("cannot set permissions on the task directory", e))?;
        match self.backend.timings().await {
            Ok(cases) if !cases.is_empty() => {
                let tsv = orrery_testresults::timings_tsv(&cases);
                let _ = tokio::fs::write(dir.join("timings.tsv"), tsv).await;
            }
            Ok(_) => {}
            Err(e) => self.out(format!("Warning: no timing data for test splitting: {e}")),
        }

        let job = self.spec.job.clone();
        let env = match &job.executor {
            Some(Executor::Docker(images)) => {
                let docker = docker::connect().await?;
                let wants_socket = job
                    .steps
                    .iter()
                    .any(|s| matches!(s, Step::SetupRemoteDocker(_)));
                let events = self.events.clone();
                let mut log = move |line: String| {
                    let _ = events.send(TaskEvent::Output {
                        index: 0,
                        data: format!("{line}\n").into_bytes(),
                    });
                };
                let start = DockerStart {
                    task_id: &self.spec.task_id,
                    images,
                    resource_class: job.resource_class.as_deref(),
                    task_dir: &dir,
                    docker_socket: wants_socket,
                    owner: &self.spec.work_root.display().to_string(),
                };
                Environment::Docker(docker::DockerEnv::start(docker, start, &mut log).await?)
            }
            Some(Executor::Machine(_)) => {
                self.out(format!(
                    "Machine executor: running on this host in {}",
                    dir.display()
                ));
                Environment::Machine(MachineEnv::start(&dir, false).await?)
            }
            Some(Executor::Macos(_)) => {
                return Err(StartError::Job(
                    "the macos executor needs a macOS runner; this runner is Linux".into(),
                ));
            }
            None => return Err(StartError::Job("the job has no executor".into())),
        };
        self.env = Some(env);
        // One command learns the home, whether bash is there, and creates the
        // working directory.
        let job_wd = self.job().effective_working_directory().to_string();
        let wd_spec = if job_wd == "~" {
            ".".to_string()
        } else if let Some(rest) = job_wd.strip_prefix("~/") {
            rest.to_string()
        } else {
            job_wd.clone()
        };
        let env_ref = self.env.as_ref().expect("started");
        let prepare = Cmd {
            argv: vec![
                format!("{}/bin/circleci", env_ref.task_data()),
                "agent".into(),
                "prepare".into(),
                "--mkdir".into(),
                wd_spec,
                "/bin/bash".into(),
            ],
            env: vec![("PATH".into(), env_ref.path().to_string())],
            cwd: None,
            stdin: false,
        };
        let (code, out, err) = collect(env_ref.spawn(prepare).await)
            .await
            .map_err(|e| StartError::Job(format!("cannot run commands in the environment: {e}")))?;
        if code != 0 {
            return Err(StartError::Job(format!(
                "cannot prepare the working directory {job_wd}: {}",
                err.trim()
            )));
        }
        let mut has_bash = false;
        for line in out.lines() {
            if let Some(home) = line.strip_prefix("home=") {
                if let Some(env) = self.env.as_mut() {
                    env.set_home(home.to_string());
                }
            } else if line == "exists=/bin/bash" {
                has_bash = true;
            }
        }
        self.default_shell = if has_bash {
            "/bin/bash -eo pipefail"
        } else {
            "/bin/sh -eo pipefail"
        }
        .into();
        Ok(())
    }

    /// The implicit second step: the environment variables, secrets masked.
    fn prepare_env_step(&mut self) {
        self.index = 1;
        let started = Instant::now();
        self.emit(TaskEvent::StepStarted {
            index: 1,
            name: "Preparing environment variables".into(),
            background: false,
        });
        let mut text = String::from("Using build environment variables:\n");
        for (k, v) in self.builtin_env() {
            text.push_str(&format!("  {k}={v}\n"));
        }
        if !self.spec.project_env.is_empty() {
            text.push_str("\nUsing environment variables from project settings:\n");
            for (k, v) in &self.spec.project_env {
                text.push_str(&format!("  {k}={}\n", crate::mask::masked_value(v)));
            }
        }
        if !self.spec.context_env.is_empty() {
            text.push_str("\nUsing environment variables from contexts:\n");
            for (k, v) in &self.spec.context_env {
                text.push_str(&format!("  {k}={}\n", crate::mask::masked_value(v)));
            }
        }
        self.out(text);
        self.record(
            "Preparing environment variables".into(),
            StepOutcome::Success,
            started,
        );
    }

    fn builtin_env(&self) -> IndexMap<String, String> {
        let env = self.env();
        let mut out = IndexMap::new();
        out.insert("CI".into(), "true".into());
        out.insert("CIRCLECI".into(), "true".into());
        for (k, v) in &self.spec.builtin_env {
            out.insert(k.clone(), v.clone());
        }
        out.insert("CIRCLE_JOB".into(), self.spec.job_name.clone());
        out.insert("CIRCLE_NODE_INDEX".into(), self.spec.node_index.to_string());
        out.insert("CIRCLE_NODE_TOTAL".into(), self.spec.node_total.to_string());
        out.insert(
            "CIRCLE_INTERNAL_TASK_DATA".into(),
            env.task_data().to_string(),
        );
        out.insert(
            "CIRCLE_WORKING_DIRECTORY".into(),
            self.job().effective_working_directory().to_string(),
        );
        out.insert("BASH_ENV".into(), format!("{}/bash_env", env.task_data()));
        out
    }

    /// The environment of a step, lowest precedence first: project variables,
    /// context variables, built-in values, the job's (and executor's)
    /// environment, the step's own.
    fn step_env(&self, step_env: &IndexMap<String, String>) -> Vec<(String, String)> {
        let mut env: IndexMap<String, String> = IndexMap::new();
        for (k, v) in self
            .spec
            .project_env
            .iter()
            .chain(self.spec.context_env.iter())
        {
            env.insert(k.clone(), v.clone());
        }
        env.extend(self.builtin_env());
        env.insert("HOME".into(), self.env().home().to_string());
        env.insert("PATH".into(), self.env().path().to_string());
        for (k, v) in &self.extra_env {
            env.insert(k.clone(), v.clone());
        }
        env.extend(self.job().environment.clone());
        env.extend(step_env.clone());
        env.into_iter().collect()
    }

    /// Resolves `~` and relative paths against the home and the job's working
    /// directory, as the environment sees them.
    fn resolve(&self, path: &str) -> String {
        let home = self.env().home();
        if path == "~" {
            return home.to_string();
        }
        if let Some(rest) = path.strip_prefix("~/") {
            return format!("{}/{rest}", home.trim_end_matches('/'));
        }
        if path.starts_with('/') {
            return path.to_string();
        }
        let wd = self.working_directory(None);
        if path == "." || path.is_empty() {
            wd
        } else {
            format!(
                "{}/{}",
                wd.trim_end_matches('/'),
                path.trim_start_matches("./")
            )
        }
    }

    fn working_directory(&self, step_wd: Option<&str>) -> String {
        let home = self.env().home();
        let job_wd = self.job().effective_working_directory();
        let base = if job_wd == "~" {
            home.to_string()
        } else if let Some(rest) = job_wd.strip_prefix("~/") {
            format!("{}/{rest}", home.trim_end_matches('/'))
        } else if job_wd.starts_with('/') {
            job_wd.to_string()
        } else {
            format!("{}/{job_wd}", home.trim_end_matches('/'))
        };
        match step_wd {
            None | Some("") | Some(".") => base,
            Some(wd) if wd.starts_with('/') => wd.to_string(),
            Some(wd) if wd.starts_with("~") => wd.replacen('~', home, 1),
            Some(wd) => format!("{}/{}", base.trim_end_matches('/'), wd),
        }
    }

    /// Runs an internal command to its end: exit code, stdout, stderr.
    async fn capture(
        &self,
        argv: Vec<String>,
        cwd: Option<String>,
    ) -> std::io::Result<(i32, String, String)> {
        let proc = self
            .env()
            .spawn(Cmd {
                argv,
                env: self.step_env(&IndexMap::new()),
                cwd,
                stdin: false,
            })
            .await;
        collect(proc).await
    }

    /// Runs an internal command with `input` on its stdin; returns its exit
    /// code and what it printed.
    async fn pipe_into(
        &self,
        argv: Vec<String>,
        input: impl AsyncRead + Unpin + Send,
    ) -> std::io::Result<(i32, String)> {
        let mut proc = self
            .env()
            .spawn(Cmd {
                argv,
                env: self.step_env(&IndexMap::new()),
                cwd: None,
                stdin: true,
            })
            .await?;
        let mut stdin = proc.stdin.take().expect("stdin was asked for");
        let mut input = input;
        let feed = async move {
            // Large writes (a decompressed archive is gigabytes, and
            // `tokio::io::copy`'s 8 KiB writes cost a syscall each), and
            // reading (decompressing) goes on while a write waits for the
            // command to drain its pipe: up to 8 chunks ahead.
            let (tx, mut rx) = mpsc::channel::<Vec<u8>>(8);
            let produce = async move {
                loop {
                    let mut buf = vec![0u8; ARCHIVE_BUF];
                    let n = input.read(&mut buf).await?;
                    if n == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                    buf.truncate(n);
                    if tx.send(buf).await.is_err() {
                        // The writer failed; it reports why.
                        return Ok(());
                    }
                }
            };
            let consume = async move {
                let mut total = 0u64;
                while let Some(chunk) = rx.recv().await {
                    stdin.write_all(&chunk).await?;
                    total += chunk.len() as u64;
                }
                let _ = stdin.shutdown().await;
                Ok::<_, std::io::Error>(total)
            };
            let (produced, consumed) = tokio::join!(produce, consume);
            produced.and(consumed)
        };
        let mut output =
            std::mem::replace(&mut proc.output, Box::pin(futures_util::stream::empty()));
        let drain = async move {
            let mut text = Vec::new();
            while let Some(chunk) = output.next().await {
                text.extend(chunk?.data);
            }
            Ok::<_, std::io::Error>(text)
        };
        let (fed, text) = tokio::join!(feed, drain);
        let text = text?;
        let code = proc.wait().await?;
        if let Err(e) = fed
            && code == 0
        {
            return Err(e);
        }
        Ok((code, String::from_utf8_lossy(&text).into_owned()))
    }

    /// Runs an internal command whose stdout is data: returns a reader of it,
    /// which fails (so nothing half-written is kept) when the command fails,
    /// and a handle giving the command's messages.
    async fn pipe_out(
        &self,
        argv: Vec<String>,
    ) -> std::io::Result<(ChannelReader, tokio::task::JoinHandle<String>)> {
        let mut proc = self
            .env()
            .spawn(Cmd {
                argv,
                env: self.step_env(&IndexMap::new()),
                cwd: None,
                stdin: false,
            })
            .await?;
        let (tx, rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(16);
        let handle = tokio::spawn(async move {
            let mut messages = Vec::new();
            while let Some(chunk) = proc.output.next().await {
                match chunk {
                    Ok(c) if c.stderr => messages.extend(c.data),
                    Ok(c) => {
                        if tx.send(Ok(c.data)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&messages).trim().to_string();
            match proc.wait().await {
                Ok(0) => {}
                Ok(code) => {
                    let _ = tx
                        .send(Err(std::io::Error::other(format!(
                            "exit code {code}: {text}"
                        ))))
                        .await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
            text
        });
        Ok((ChannelReader::new(rx), handle))
    }

    async fn step(&mut self, step: &Step) -> StepResult {
        match step {
            Step::Run(run) => self.run_step(run).await,
            Step::Checkout(c) => self.checkout(c.path.as_deref()).await,
            Step::SetupRemoteDocker(_) => self.setup_remote_docker(),
            Step::SaveCache(c) => self.save_cache(&c.key, &c.paths).await,
            Step::RestoreCache(c) => self.restore_cache(&c.keys).await,
            Step::StoreArtifacts(a) => {
                self.store_artifacts(&a.path, a.destination.as_deref())
                    .await
            }
            Step::StoreTestResults(t) => self.store_test_results(&t.path).await,
            Step::PersistToWorkspace(p) => self.persist_to_workspace(&p.root, &p.paths).await,
            Step::AttachWorkspace(a) => self.attach_workspace(&a.at).await,
            Step::AddSshKeys(k) => self.add_ssh_keys(&k.fingerprints).await,
        }
    }

    async fn run_step(&mut self, run: &orrery_config::Run) -> StepResult {
        let index = self.index;
        let (script_host, script) = self.task_file(&format!("steps/{index}.sh"));
        tokio::fs::write(&script_host, &run.command)
            .await
            .map_err(|e| StepOutcome::InfrastructureFailure {
                reason: format!("cannot write the step script: {e}"),
            })?;
        host::open_permissions(&script_host).ok();
        let shell = run
            .shell
            .clone()
            .or_else(|| self.job().shell.clone())
            .unwrap_or_else(|| self.default_shell.clone());
        let (cancel_host, cancel_file) = self.task_file(&format!("steps/{index}.cancel"));
        let (_, pgid_file) = self.task_file(&format!("steps/{index}.pgid"));
        let (error_host, error_file) = self.task_file(&format!("steps/{index}.error"));
        let mut argv = vec![
            self.circleci(),
            "agent".into(),
            "exec".into(),
            "--cancel-file".into(),
            cancel_file,
            "--pgid-file".into(),
            pgid_file,
            "--error-file".into(),
            error_file,
            "--grace".into(),
            self.spec.kill_grace.as_secs().max(1).to_string(),
            "--".into(),
        ];
        argv.extend(shell.split_whitespace().map(str::to_string));
        argv.push(script);
        let cwd = self.working_directory(run.working_directory.as_deref());
        let cmd = Cmd {
            argv,
            env: self.step_env(&run.environment),
            cwd: Some(cwd.clone()),
            stdin: false,
        };
        let proc = match self.env().spawn(cmd).await {
            Ok(p) => p,
            Err(e) => return Err(fail(format!("cannot start `{shell}` in {cwd}: {e}"))),
        };
        let watch = Watch {
            index,
            events: self.events.clone(),
            secrets: self.masker_secrets.clone(),
            no_output_timeout: run.no_output_timeout_duration(),
            deadline: self.deadline,
            cancel: self.cancel.clone(),
            cancel_host: cancel_host.clone(),
            error_host,
            grace: self.spec.kill_grace,
        };
        if run.background == Some(true) {
            let handle = tokio::spawn(async move { watch.run(proc).await });
            self.background.push(Background {
                index,
                cancel_file: cancel_host,
                handle,
            });
            return Ok(());
        }
        match watch.run(proc).await {
            StepOutcome::Success => Ok(()),
            other => Err(other),
        }
    }

    async fn checkout(&mut self, path: Option<&str>) -> StepResult {
        let dest = self.resolve(path.unwrap_or("."));
        let tar_path = self.task_dir.join("tmp/checkout.tar");
        let source = self.spec.checkout.clone();
        let scratch = self.task_dir.join("tmp/checkout-src");
        let (summary, tar_path) =
            tokio::task::spawn_blocking(move || -> Result<(String, PathBuf), String> {
                let (root, summary) = match &source {
                    CheckoutSource::WorkingTree(dir) => (
                        dir.clone(),
                        format!("Copying the working tree of {}", dir.display()),
                    ),
                    CheckoutSource::Git {
                        url,
                        revision,
                        branch,
                        tag,
                    } => {
                        host::clone_at(url, revision, branch.as_deref(), tag.as_deref(), &scratch)?;
                        (scratch.clone(), format!("Cloned {url} at {revision}"))
                    }
                };
                let files = host::archive_tree(&root, &tar_path)?;
                Ok((format!("{summary} ({files} files)"), tar_path))
            })
            .await
            .map_err(|e| StepOutcome::InfrastructureFailure {
                reason: e.to_string(),
            })?
            .map_err(fail)?;
        self.out(format!("{summary} into {dest}"));
        let file = tokio::fs::File::open(&tar_path).await.map_err(|e| {
            StepOutcome::InfrastructureFailure {
                reason: e.to_string(),
            }
        })?;
        let (code, text) = self
            .pipe_into(
                vec![
                    self.circleci(),
                    "agent".into(),
                    "untar".into(),
                    dest.clone(),
                ],
                file,
            )
            .await
            .map_err(|e| fail(format!("cannot copy the code into {dest}: {e}")))?;
        let _ = tokio::fs::remove_file(&tar_path).await;
        let _ = tokio::fs::remove_dir_all(self.task_dir.join("tmp/checkout-src")).await;
        if code != 0 {
            return Err(fail(format!(
                "checkout into {dest} failed: {}",
                text.trim()
            )));
        }
        Ok(())
    }

    fn setup_remote_docker(&mut self) -> StepResult {
        if !self.env().is_docker() {
            return Err(fail(
                "setup_remote_docker is not available in machine jobs (the machine already has Docker if the host does)",
            ));
        }
        self.extra_env
            .push(("DOCKER_HOST".into(), "unix:///var/run/docker.sock".into()));
        self.out(
            "Remote Docker engine ready: DOCKER_HOST=unix:///var/run/docker.sock\n\
             Note: this is the runner's own Docker engine; the job can control every container on it.",
        );
        Ok(())
    }

    /// Renders a cache key, computing the checksums it asks for.
    async fn cache_key(&self, template_text: &str) -> Result<String, StepOutcome> {
        let parts = template::parse(template_text).map_err(fail)?;
        let mut sums = Vec::new();
        for file in template::checksum_files(&parts) {
            let path = self.resolve(file);
            let sum = match self
                .capture(
                    vec![self.circleci(), "agent".into(), "checksum".into(), path],
                    None,
                )
                .await
            {
                Ok((0, out, _)) => Some(out.trim().to_string()),
                _ => None,
            };
            sums.push((file.to_string(), sum));
        }
        let env: IndexMap<String, String> = self.step_env(&IndexMap::new()).into_iter().collect();
        let env_fn = |name: &str| env.get(name).cloned();
        let sum_fn = |file: &str| {
            sums.iter()
                .find(|(f, _)| f == file)
                .and_then(|(_, s)| s.clone())
        };
        let epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let arch = template::host_arch();
        template::render(
            &parts,
            &template::Values {
                env: &env_fn,
                checksums: &sum_fn,
                epoch,
                arch: &arch,
            },
        )
        .map_err(fail)
    }

    /// Whether an archive whose upload ended with `saved` is made and sent
    /// again: when storage was unavailable (not when it refused), up to
    /// [`ARCHIVE_ATTEMPTS`] times, after a pause that grows.
    async fn again<T>(&mut self, saved: &Result<T, BackendError>, attempt: u32) -> bool {
        match saved {
            Err(BackendError::Unavailable(why)) if attempt < ARCHIVE_ATTEMPTS => {
                tracing::warn!(error = %why, "an upload failed; making the archive again");
                self.out(format!(
                    "The upload failed ({why}); trying again ({}/{ARCHIVE_ATTEMPTS})",
                    attempt + 1
                ));
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                true
            }
            _ => false,
        }
    }

    async fn save_cache(&mut self, key_template: &str, paths: &[String]) -> StepResult {
        let key = self.cache_key(key_template).await?;
        if key.len() > 900 {
            return Err(fail(format!(
                "the cache key is {} characters long; the limit is 900",
                key.len()
            )));
        }
        if let Ok(Some(hit)) = self.backend.cache_find(&key).await
            && hit.key == key
        {
            self.out(format!(
                "Skipping cache generation, cache already exists for key: {key}"
            ));
            return Ok(());
        }
        let root = self.env().confinement_root().to_string();
        let mut argv = vec![
            self.circleci(),
            "agent".into(),
            "tar".into(),
            "--root".into(),
            root.clone(),
        ];
        for p in paths {
            let abs = self.resolve(p);
            if root != "/" && !abs.starts_with(&format!("{}/", root.trim_end_matches('/'))) {
                return Err(fail(format!(
                    "cache path {p} is outside the job directory; the machine executor caches paths inside {root} only"
                )));
            }
            argv.push(abs);
        }
        self.out(format!("Creating cache archive of {}", paths.join(", ")));
        let mut attempt = 0;
        let saved = loop {
            attempt += 1;
            let (reader, messages) = self
                .pipe_out(argv.clone())
                .await
                .map_err(|e| fail(format!("cannot archive the cache paths: {e}")))?;
            let compressed: ByteStream = Box::pin(archive_encoder(reader));
            let saved = self.backend.cache_save(&key, compressed).await;
            let messages = messages.await.unwrap_or_default();
            if !messages.is_empty() {
                self.out(&messages);
            }
            if !self.again(&saved, attempt).await {
                break saved;
            }
        };
        match saved {
            Ok(true) => {
                self.out(format!("Stored Cache to {key}"));
                Ok(())
            }
            Ok(false) => {
                self.out(format!(
                    "Skipping cache generation, cache already exists for key: {key}"
                ));
                Ok(())
            }
            Err(e) => Err(fail(format!(
                "cannot save the cache {key}: {}",
                short_error(&e)
            ))),
        }
    }

    async fn restore_cache(&mut self, keys: &[String]) -> StepResult {
        for template_text in keys {
            let key = self.cache_key(template_text).await?;
            let hit = match self.backend.cache_find(&key).await {
                Ok(Some(hit)) => hit,
                Ok(None) => continue,
                Err(e) => return Err(fail(format!("cannot look up caches: {}", short_error(&e)))),
            };
            self.out(format!("Found a cache at {} ({} bytes)", hit.key, hit.size));
            let data = self.backend.cache_open(&hit.key).await.map_err(|e| {
                fail(format!(
                    "cannot download the cache {}: {}",
                    hit.key,
                    short_error(&e)
                ))
            })?;
            let decoded = archive_decoder(data);
            let root = self.env().confinement_root().to_string();
            let (code, text) = self
                .pipe_into(
                    vec![self.circleci(), "agent".into(), "untar".into(), root],
                    decoded,
                )
                .await
                .map_err(|e| fail(format!("cannot restore the cache {}: {e}", hit.key)))?;
            if code != 0 {
                return Err(fail(format!(
                    "cannot restore the cache {}: {}",
                    hit.key,
                    text.trim()
                )));
            }
            self.out(format!("Restored the cache {}", hit.key));
            return Ok(());
        }
        self.out(format!("No cache is found for keys: {}", keys.join(", ")));
        Ok(())
    }

    async fn persist_to_workspace(&mut self, root: &str, paths: &[String]) -> StepResult {
        let root = self.resolve(root);
        let mut argv = vec![
            self.circleci(),
            "agent".into(),
            "tar".into(),
            "--root".into(),
            root.clone(),
            "--glob".into(),
        ];
        argv.extend(paths.iter().cloned());
        let mut attempt = 0;
        let saved = loop {
            attempt += 1;
            let (reader, messages) = self
                .pipe_out(argv.clone())
                .await
                .map_err(|e| fail(format!("cannot archive the workspace: {e}")))?;
            let compressed: ByteStream = Box::pin(archive_encoder(reader));
            let saved = self.backend.workspace_save(compressed).await;
            let messages = messages.await.unwrap_or_default();
            if !messages.is_empty() {
                self.out(&messages);
            }
            if !self.again(&saved, attempt).await {
                break saved;
            }
        };
        saved.map_err(|e| {
            fail(format!(
                "cannot persist to the workspace: {}",
                short_error(&e)
            ))
        })?;
        self.out(format!(
            "Persisted {} from {root} to the workspace",
            paths.join(", ")
        ));
        Ok(())
    }

    async fn attach_workspace(&mut self, at: &str) -> StepResult {
        let at = self.resolve(at);
        let mut layers = 0;
        for job in self.spec.workspace_upstream.clone() {
            let streams = self.backend.workspace_layers(&job).await.map_err(|e| {
                fail(format!(
                    "cannot download the workspace of {job}: {}",
                    short_error(&e)
                ))
            })?;
            for data in streams {
                let decoded = archive_decoder(data);
                let (code, text) = self
                    .pipe_into(
                        vec![self.circleci(), "agent".into(), "untar".into(), at.clone()],
                        decoded,
                    )
                    .await
                    .map_err(|e| fail(format!("cannot attach the workspace of {job}: {e}")))?;
                if code != 0 {
                    return Err(fail(format!(
                        "cannot attach the workspace of {job}: {}",
                        text.trim()
                    )));
                }
                layers += 1;
            }
        }
        self.out(format!("Attached {layers} workspace layer(s) at {at}"));
        Ok(())
    }

    /// Copies a file or directory out of the environment into a host tar file,
    /// its content named under `name`.
    async fn collect(&self, path: &str, name: &str) -> Result<PathBuf, StepOutcome> {
        let abs = self.resolve(path);
        let (reader, messages) = self
            .pipe_out(vec![
                self.circleci(),
                "agent".into(),
                "tar".into(),
                "--map".into(),
                abs.clone(),
                name.to_string(),
            ])
            .await
            .map_err(|e| fail(format!("cannot read {abs}: {e}")))?;
        let target = self
            .task_dir
            .join(format!("tmp/collect-{}.tar", self.index));
        let mut file = tokio::fs::File::create(&target).await.map_err(|e| {
            StepOutcome::InfrastructureFailure {
                reason: e.to_string(),
            }
        })?;
        let mut reader = reader;
        let copied = tokio::io::copy(&mut reader, &mut file).await;
        let messages = messages.await.unwrap_or_default();
        if let Err(e) = copied {
            return Err(fail(format!(
                "cannot read {abs}: {}",
                if messages.is_empty() {
                    e.to_string()
                } else {
                    messages
                }
            )));
        }
        Ok(target)
    }

    async fn store_artifacts(&mut self, path: &str, destination: Option<&str>) -> StepResult {
        let prefix = destination.map(str::to_string).unwrap_or_else(|| {
            path.trim_start_matches("~/")
                .trim_start_matches("./")
                .trim_start_matches('/')
                .to_string()
        });
        let prefix = prefix.trim_matches('/').to_string();
        let tar = self.collect(path, "artifact").await?;
        let stored = self
            .backend
            .artifacts_save(&prefix, &tar)
            .await
            .map_err(|e| fail(format!("cannot upload artifacts: {}", short_error(&e))));
        let _ = tokio::fs::remove_file(&tar).await;
        let stored = stored?;
        self.out(format!("Uploaded {} artifact(s) from {path}", stored.len()));
        for p in stored.iter().take(50) {
            self.out(format!("  {p}"));
        }
        Ok(())
    }

    async fn store_test_results(&mut self, path: &str) -> StepResult {
        let tar = self.collect(path, "results").await?;
        let parsed = tokio::task::spawn_blocking(
            move || -> Result<(Vec<orrery_testresults::TestCase>, Vec<String>), String> {
                let result = host::read_test_results(&tar);
                let _ = std::fs::remove_file(&tar);
                result
            },
        )
        .await
        .map_err(|e| StepOutcome::InfrastructureFailure {
            reason: e.to_string(),
        })?
        .map_err(fail)?;
        let (cases, problems) = parsed;
        for p in &problems {
            self.out(format!("Warning: {p}"));
        }
        let summary = orrery_testresults::summarize(&cases);
        self.out(format!(
            "Found {} test(s): {} failed, {} errors, {} skipped, {:.2}s",
            summary.tests, summary.failures, summary.errors, summary.skipped, summary.run_time
        ));
        self.backend
            .test_results_save(cases)
            .await
            .map_err(|e| fail(format!("cannot store test results: {}", short_error(&e))))
    }

    async fn add_ssh_keys(&mut self, fingerprints: &[String]) -> StepResult {
        let keys: Vec<&crate::spec::SshKey> = self
            .spec
            .ssh_keys
            .iter()
            .filter(|k| fingerprints.is_empty() || fingerprints.contains(&k.fingerprint))
            .collect();
        if keys.is_empty() {
            self.out("No additional SSH keys are configured for this project.");
            return Ok(());
        }
        let tar_path = self.task_dir.join("tmp/ssh.tar");
        host::ssh_keys_tar(&keys, &tar_path)
            .map_err(|e| StepOutcome::InfrastructureFailure { reason: e })?;
        let home = self.env().home().to_string();
        let file = tokio::fs::File::open(&tar_path).await.map_err(|e| {
            StepOutcome::InfrastructureFailure {
                reason: e.to_string(),
            }
        })?;
        let (code, text) = self
            .pipe_into(
                vec![self.circleci(), "agent".into(), "untar".into(), home],
                file,
            )
            .await
            .map_err(|e| fail(format!("cannot install SSH keys: {e}")))?;
        let _ = tokio::fs::remove_file(&tar_path).await;
        if code != 0 {
            return Err(fail(format!("cannot install SSH keys: {}", text.trim())));
        }
        self.out(format!("Installed {} SSH key(s) in ~/.ssh", keys.len()));
        Ok(())
    }
}

fn short_error(e: &BackendError) -> String {
    e.to_string()
}

/// Watches a running step: streams its masked output, enforces the
/// no-output timeout, the job deadline and cancellation.
struct Watch {
    index: usize,
    events: mpsc::UnboundedSender<TaskEvent>,
    secrets: Vec<String>,
    no_output_timeout: Duration,
    deadline: Instant,
    cancel: CancellationToken,
    cancel_host: PathBuf,
    error_host: PathBuf,
    grace: Duration,
}

impl Watch {
    async fn run(self, mut proc: crate::exec::Proc) -> StepOutcome {
        let mut masker = Masker::new(self.secrets.iter().map(String::as_str));
        let mut reason: Option<StepOutcome> = None;
        let mut last_output = tokio::time::Instant::now();
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let mut stop_requested_at: Option<tokio::time::Instant> = None;
        loop {
            let silence_ends = last_output + self.no_output_timeout;
            let hard_stop = stop_requested_at.map(|t| t + self.grace + Duration::from_secs(10));
            tokio::select! {
                chunk = proc.output.next() => match chunk {
                    Some(Ok(chunk)) => {
                        last_output = tokio::time::Instant::now();
                        let data = masker.feed(&chunk.data);
                        if !data.is_empty() {
                            let _ = self.events.send(TaskEvent::Output { index: self.index, data });
                        }
                    }
                    Some(Err(e)) => {
                        reason.get_or_insert(StepOutcome::InfrastructureFailure { reason: format!("lost the step's output: {e}") });
                        break;
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(silence_ends), if reason.is_none() => {
                    reason = Some(StepOutcome::NoOutputTimeout { after_secs: self.no_output_timeout.as_secs() });
                    stop_requested_at = Some(self.request_stop());
                }
                _ = tokio::time::sleep_until(deadline), if reason.is_none() => {
                    reason = Some(StepOutcome::Timeout);
                    stop_requested_at = Some(self.request_stop());
                }
                _ = self.cancel.cancelled(), if reason.is_none() => {
                    reason = Some(StepOutcome::Canceled);
                    stop_requested_at = Some(self.request_stop());
                }
                _ = async { tokio::time::sleep_until(hard_stop.unwrap_or(deadline)).await }, if hard_stop.is_some() => {
                    // The step ignored the stop; its output is abandoned.
                    break;
                }
            }
        }
        let rest = masker.finish();
        if !rest.is_empty() {
            let _ = self.events.send(TaskEvent::Output {
                index: self.index,
                data: rest,
            });
        }
        let code = proc.wait().await;
        if let Some(reason) = reason {
            return reason;
        }
        if let Ok(error) = std::fs::read_to_string(&self.error_host) {
            return StepOutcome::FailedToStart {
                reason: error.trim().to_string(),
            };
        }
        match code {
            Ok(0) => StepOutcome::Success,
            Ok(code) => StepOutcome::ExitCode { code },
            Err(e) => StepOutcome::InfrastructureFailure {
                reason: format!("lost the step's exit status: {e}"),
            },
        }
    }

    fn request_stop(&self) -> tokio::time::Instant {
        if let Err(e) = std::fs::write(&self.cancel_host, b"") {
            tracing::warn!(error = %e, "cannot ask the step to stop");
        }
        tokio::time::Instant::now()
    }
}

/// How many times an archive is made and sent when storage is unavailable.
const ARCHIVE_ATTEMPTS: u32 = 3;

/// Buffers of archive streams (caches, workspaces).
const ARCHIVE_BUF: usize = 256 * 1024;

/// Compresses a tar stream for a cache or workspace: zstd level 1 (what
/// `zstd -1` gives, the speed/size point CI caches want) with one worker
/// thread per core (`zstd -T0`), driven from a blocking thread.
///
/// Not `async_compression`'s encoder: it flushes whenever its input is not
/// ready (every time the archiver's pipe runs dry), which makes small
/// frames and, multithreaded, blocks on every flush until all workers are
/// done. Memory stays bounded: the workers hold a few jobs of a few MiB,
/// and at most 8 chunks wait in the channel.
fn archive_encoder(reader: impl AsyncRead + Unpin + Send + 'static) -> ChannelReader {
    struct ChannelWriter(mpsc::Sender<std::io::Result<Vec<u8>>>);
    impl std::io::Write for ChannelWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .blocking_send(Ok(buf.to_vec()))
                .map_err(|_| std::io::Error::other("the archive's reader is gone"))?;
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (tx, rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(8);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let errors = tx.clone();
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let compressed = (|| {
            // Output in chunks of ARCHIVE_BUF.
            let out = std::io::BufWriter::with_capacity(ARCHIVE_BUF, ChannelWriter(tx));
            let mut encoder = zstd::stream::write::Encoder::new(out, 1)?;
            encoder.multithread(workers)?;
            let mut buf = vec![0u8; ARCHIVE_BUF];
            loop {
                let n = runtime.block_on(reader.read(&mut buf))?;
                if n == 0 {
                    break;
                }
                std::io::Write::write_all(&mut encoder, &buf[..n])?;
            }
            let mut out = encoder.finish()?;
            std::io::Write::flush(&mut out)
        })();
        if let Err(e) = compressed {
            let _ = errors.blocking_send(Err(e));
        }
    });
    ChannelReader::new(rx)
}

/// Decompresses a cache or workspace archive on a blocking thread, so that
/// decompressing goes on while the extracting command drains what came
/// before (at most 8 chunks of [`ARCHIVE_BUF`] wait in the channel).
fn archive_decoder(reader: impl AsyncRead + Unpin + Send + 'static) -> ChannelReader {
    /// The async reader, read from the blocking thread.
    struct Blocking<R> {
        inner: R,
        runtime: tokio::runtime::Handle,
    }
    impl<R: AsyncRead + Unpin> std::io::Read for Blocking<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.runtime.block_on(self.inner.read(buf))
        }
    }
    let (tx, rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(8);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let input = std::io::BufReader::with_capacity(
            ARCHIVE_BUF,
            Blocking {
                inner: reader,
                runtime,
            },
        );
        let decoded = (|| {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(input)?;
            loop {
                let mut buf = vec![0u8; ARCHIVE_BUF];
                let n = std::io::Read::read(&mut decoder, &mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                if tx.blocking_send(Ok(buf)).is_err() {
                    // The reader is gone; it says why.
                    return Ok(());
                }
            }
        })();
        if let Err(e) = decoded {
            let _ = tx.blocking_send(Err(e));
        }
    });
    ChannelReader::new(rx)
}

/// An `AsyncRead` over chunks from a channel; an error in the channel fails
/// the read.
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
}

/// A reader over a channel of chunks (see [`ChannelReader`]).
#[cfg(test)]
pub(crate) fn channel_reader(rx: mpsc::Receiver<std::io::Result<Vec<u8>>>) -> ChannelReader {
    ChannelReader::new(rx)
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<std::io::Result<Vec<u8>>>) -> Self {
        ChannelReader {
            rx,
            current: Vec::new(),
            pos: 0,
        }
    }
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        loop {
            if self.pos < self.current.len() {
                let n = buf.remaining().min(self.current.len() - self.pos);
                let start = self.pos;
                buf.put_slice(&self.current[start..start + n]);
                self.pos += n;
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    self.current = data;
                    self.pos = 0;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
