//! Executors: where a job's commands run.
//!
//! Both executors offer the same small surface: start the environment, spawn
//! a command (with its output as a stream, stdin if asked for, and its exit
//! code), stop everything. Everything else (scripts, archives, checksums) goes
//! through the in-job `circleci` binary, which runs inside the environment as
//! the job's user, so caches, workspaces and checkouts behave the same on
//! both executors and files get the job user's ownership.

pub mod docker;
pub mod machine;

use std::pin::Pin;

use futures_util::Stream;
use tokio::io::AsyncWrite;

/// A chunk of a command's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub stderr: bool,
    pub data: Vec<u8>,
}

/// A command to run in the environment.
#[derive(Clone, Debug, Default)]
pub struct Cmd {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Working directory as the environment sees it; `None` for the default.
    pub cwd: Option<String>,
    pub stdin: bool,
}

pub type OutputStream = Pin<Box<dyn Stream<Item = std::io::Result<Chunk>> + Send>>;
pub type Stdin = Pin<Box<dyn AsyncWrite + Send>>;

/// A running command.
pub struct Proc {
    pub output: OutputStream,
    pub stdin: Option<Stdin>,
    pub(crate) waiter: Waiter,
}

pub(crate) enum Waiter {
    Docker(bollard::Docker, String),
    Socket(tokio::sync::oneshot::Receiver<std::io::Result<i32>>),
    Machine(tokio::process::Child),
}

impl Proc {
    /// Waits for the command to end (its output must have been drained) and
    /// returns its exit code.
    pub async fn wait(self) -> std::io::Result<i32> {
        match self.waiter {
            Waiter::Docker(docker, exec_id) => docker::exit_code(&docker, &exec_id).await,
            Waiter::Socket(rx) => rx.await.unwrap_or_else(|_| {
                Err(std::io::Error::other(
                    "the connection to the job's container ended without an exit code",
                ))
            }),
            Waiter::Machine(mut child) => {
                let status = child.wait().await?;
                use std::os::unix::process::ExitStatusExt;
                Ok(status
                    .code()
                    .or_else(|| status.signal().map(|s| 128 + s))
                    .unwrap_or(-1))
            }
        }
    }
}

/// Why an environment could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The job's own configuration is at fault (a missing image, a service that
    /// exits): the job fails.
    #[error("{0}")]
    Job(String),
    /// The runner's infrastructure is at fault: `infrastructure_fail`.
    #[error("{0}")]
    Infrastructure(String),
}

/// A started environment.
pub enum Environment {
    Docker(docker::DockerEnv),
    Machine(machine::MachineEnv),
}

impl Environment {
    /// The path of the task directory as commands in the environment see it.
    pub fn task_data(&self) -> &str {
        match self {
            Environment::Docker(d) => d.task_data(),
            Environment::Machine(m) => m.task_data(),
        }
    }

    /// `$HOME` of the job's user.
    pub fn home(&self) -> &str {
        match self {
            Environment::Docker(d) => d.home(),
            Environment::Machine(m) => m.home(),
        }
    }

    /// Records the job user's home, as `circleci agent prepare` found it.
    pub fn set_home(&mut self, home: String) {
        match self {
            Environment::Docker(d) => d.set_home(home),
            Environment::Machine(_) => {}
        }
    }

    /// The `PATH` commands get, with the task's `bin` first.
    pub fn path(&self) -> &str {
        match self {
            Environment::Docker(d) => d.path(),
            Environment::Machine(m) => m.path(),
        }
    }

    /// Whether cache paths must stay inside this directory (the machine
    /// executor keeps jobs inside their job directory).
    pub fn confinement_root(&self) -> &str {
        match self {
            Environment::Docker(_) => "/",
            Environment::Machine(m) => m.job_dir(),
        }
    }

    pub async fn spawn(&self, cmd: Cmd) -> std::io::Result<Proc> {
        match self {
            Environment::Docker(d) => d.spawn(cmd).await,
            Environment::Machine(m) => m.spawn(cmd).await,
        }
    }

    /// Stops every process and removes every container and volume.
    pub async fn stop(&mut self) {
        match self {
            Environment::Docker(d) => d.stop().await,
            Environment::Machine(m) => m.stop().await,
        }
    }

    pub fn is_docker(&self) -> bool {
        matches!(self, Environment::Docker(_))
    }
}
