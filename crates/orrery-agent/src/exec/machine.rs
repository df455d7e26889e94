//! The machine executor: steps run on the runner's host, in a fresh job
//! directory, with only the job's environment.
//!
//! The task directory holds the in-job `circleci` binary (`bin/`), step
//! scripts, and the job's home (`home/`, so `~/project` is inside it). Each
//! command is started in its own process group; the in-job binary's `agent
//! exec` puts the step's shell in a group of its own and stops that group when
//! asked (SIGTERM, a grace period, SIGKILL). Whatever is left when the task
//! stops is killed by process group, and the directory is removed.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::mpsc;

use super::{Chunk, Cmd, Proc, StartError, Waiter};

pub struct MachineEnv {
    task_dir: PathBuf,
    task_data: String,
    home: String,
    path: String,
    keep: bool,
}

impl MachineEnv {
    /// Prepares the job directory inside `task_dir`.
    pub async fn start(task_dir: &Path, keep: bool) -> Result<MachineEnv, StartError> {
        let home = task_dir.join("home");
        tokio::fs::create_dir_all(&home).await.map_err(|e| {
            StartError::Infrastructure(format!(
                "cannot create the job directory {}: {e}",
                home.display()
            ))
        })?;
        let host_path =
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        Ok(MachineEnv {
            task_data: task_dir.display().to_string(),
            home: home.display().to_string(),
            path: format!("{}:{host_path}", task_dir.join("bin").display()),
            task_dir: task_dir.to_path_buf(),
            keep,
        })
    }

    pub fn task_data(&self) -> &str {
        &self.task_data
    }

    pub fn home(&self) -> &str {
        &self.home
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn job_dir(&self) -> &str {
        &self.task_data
    }

    pub async fn spawn(&self, cmd: Cmd) -> std::io::Result<Proc> {
        let Some((program, args)) = cmd.argv.split_first() else {
            return Err(std::io::Error::other("empty command"));
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", &self.path)
            .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(cmd.cwd.as_deref().unwrap_or(&self.home))
            .stdin(if cmd.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C at the terminal reaches Orrery,
            // which stops steps in order, not the steps directly.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let (tx, rx) = mpsc::channel::<std::io::Result<Chunk>>(64);
        if let Some(mut out) = child.stdout.take() {
            let tx = tx.clone();
            tokio::spawn(async move { pump(&mut out, false, tx).await });
        }
        if let Some(mut err) = child.stderr.take() {
            let tx = tx.clone();
            tokio::spawn(async move { pump(&mut err, true, tx).await });
        }
        drop(tx);
        let stdin = child.stdin.take().map(|s| Box::pin(s) as super::Stdin);
        Ok(Proc {
            output: Box::pin(tokio_stream_from(rx)),
            stdin,
            waiter: Waiter::Machine(child),
        })
    }

    /// Kills what is left of the task's processes and removes the directory.
    pub async fn stop(&mut self) {
        kill_leftover_groups(&self.task_dir);
        if !self.keep
            && let Err(e) = tokio::fs::remove_dir_all(&self.task_dir).await
        {
            tracing::warn!(dir = %self.task_dir.display(), error = %e, "could not remove the job directory");
        }
    }
}

async fn pump(
    reader: &mut (impl AsyncReadExt + Unpin),
    stderr: bool,
    tx: mpsc::Sender<std::io::Result<Chunk>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if tx
                    .send(Ok(Chunk {
                        stderr,
                        data: buf[..n].to_vec(),
                    }))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                break;
            }
        }
    }
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<std::io::Result<Chunk>>,
) -> impl futures_util::Stream<Item = std::io::Result<Chunk>> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Kills the process groups the in-job binary recorded (`*.pgid` files in the
/// task directory) that are still alive.
pub fn kill_leftover_groups(task_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(task_dir.join("steps")) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "pgid")
            && let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(pgid) = text.trim().parse::<i32>()
            && let Some(pgid) = rustix::process::Pid::from_raw(pgid)
        {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}
