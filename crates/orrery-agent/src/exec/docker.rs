//! The Docker executor, on a real Docker Engine.
//!
//! The first image is the primary container: steps run in it (as `docker
//! exec`), and its main process is the in-job `circleci agent serve` under
//! Docker's init, which runs the runner's commands sent over a Unix socket in
//! the shared task directory (much cheaper than a `docker exec` per command).
//! When the config gives the primary an entrypoint or command, commands go
//! through `docker exec` instead. The
//! other images are service containers that share the primary's network
//! namespace, so everything they listen on is reachable on `localhost`; each
//! service's `name` is an extra host name for 127.0.0.1. The host task directory
//! is mounted at [`TASK_DATA`]. Every container carries the label
//! `orrery.task=<task id>` and is removed (with its volumes) at the end,
//! whatever happened.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use orrery_config::{CommandLine, DockerImage};

use super::{Chunk, Cmd, Proc, StartError, Waiter};

/// Where the task directory appears inside the primary container.
pub const TASK_DATA: &str = "/.circleci-task-data";

/// The label every container of a task carries.
pub const TASK_LABEL: &str = "orrery.task";
/// The work root of the runner that started a container, so that a runner
/// restarted after a crash removes what its previous process left.
pub const OWNER_LABEL: &str = "orrery.work-root";

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a Docker environment is started from.
pub struct DockerStart<'a> {
    pub task_id: &'a str,
    pub images: &'a [DockerImage],
    pub resource_class: Option<&'a str>,
    /// The host task directory, mounted at [`TASK_DATA`].
    pub task_dir: &'a Path,
    /// Mount the engine's socket for `setup_remote_docker`.
    pub docker_socket: bool,
    /// The runner's work root ([`OWNER_LABEL`]).
    pub owner: &'a str,
}

pub struct DockerEnv {
    docker: Docker,
    containers: Vec<(String, String)>,
    primary: String,
    /// The host path of the in-container server's socket, when it runs one.
    socket: Option<std::path::PathBuf>,
    user: Option<String>,
    home: String,
    path: String,
}

/// Connects to the local engine (`DOCKER_HOST` or the default socket) and
/// agrees on an API version it speaks.
pub async fn connect() -> Result<Docker, StartError> {
    let docker = Docker::connect_with_local_defaults()
        .map_err(|e| StartError::Infrastructure(format!("cannot reach the Docker engine: {e}")))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| StartError::Infrastructure(format!("cannot reach the Docker engine: {e}")))
}

/// CPUs and memory (bytes) of a CircleCI Docker resource class.
fn resources(class: Option<&str>) -> (f64, i64) {
    let gb = 1024 * 1024 * 1024;
    match class.unwrap_or("medium") {
        "small" => (1.0, 2 * gb),
        "medium+" => (3.0, 6 * gb),
        "large" => (4.0, 8 * gb),
        "xlarge" => (8.0, 16 * gb),
        "2xlarge" => (16.0, 32 * gb),
        "2xlarge+" => (20.0, 40 * gb),
        _ => (2.0, 4 * gb),
    }
}

fn command_line(c: &CommandLine) -> Vec<String> {
    match c {
        CommandLine::List(items) => items.clone(),
        // A string runs as Docker runs a string command: through a shell.
        CommandLine::String(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
    }
}

fn env_list(env: &indexmap::IndexMap<String, String>) -> Vec<String> {
    env.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

impl DockerEnv {
    pub fn task_data(&self) -> &str {
        TASK_DATA
    }

    pub fn home(&self) -> &str {
        &self.home
    }

    pub fn set_home(&mut self, home: String) {
        self.home = home;
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Pulls what is missing, creates and starts the containers. `log` gets
    /// the lines shown under "Spin up environment".
    pub async fn start(
        docker: Docker,
        start: DockerStart<'_>,
        log: &mut (dyn FnMut(String) + Send),
    ) -> Result<DockerEnv, StartError> {
        let Some(primary_image) = start.images.first() else {
            return Err(StartError::Job(
                "the docker executor needs at least one image".into(),
            ));
        };
        let mut env = DockerEnv {
            docker: docker.clone(),
            containers: Vec::new(),
            primary: String::new(),
            socket: None,
            user: primary_image.user.clone(),
            home: "/root".into(),
            path: DEFAULT_PATH.into(),
        };
        match env.start_inner(&start, log).await {
            Ok(()) => Ok(env),
            Err(e) => {
                env.stop().await;
                Err(e)
            }
        }
    }

    async fn start_inner(
        &mut self,
        start: &DockerStart<'_>,
        log: &mut (dyn FnMut(String) + Send),
    ) -> Result<(), StartError> {
        let mut image_paths = Vec::new();
        for image in start.images {
            let config_path = self.ensure_image(image, log).await?;
            image_paths.push(config_path);
        }
        let (cpus, memory) = resources(start.resource_class);
        let (host_cpus, host_memory) = engine_capacity(&self.docker).await?;
        let nano_cpus = (cpus.min(host_cpus) * 1e9) as i64;
        let memory = memory.min(host_memory);
        let extra_hosts: Vec<String> = start
            .images
            .iter()
            .filter_map(|i| i.name.as_ref())
            .map(|n| format!("{n}:127.0.0.1"))
            .collect();
        let labels: HashMap<String, String> = [
            (TASK_LABEL.to_string(), start.task_id.to_string()),
            (OWNER_LABEL.to_string(), start.owner.to_string()),
        ]
        .into();

        // The primary container.
        let primary = &start.images[0];
        let mut binds = vec![format!("{}:{TASK_DATA}", start.task_dir.display())];
        if start.docker_socket {
            binds.push("/var/run/docker.sock:/var/run/docker.sock".into());
        }
        let keepalive = vec![
            format!("{TASK_DATA}/bin/circleci"),
            "agent".into(),
            "serve".into(),
            "--socket".into(),
            format!("{TASK_DATA}/agent.sock"),
        ];
        let (entrypoint, cmd) = match (&primary.entrypoint, &primary.command) {
            (None, None) => (Some(keepalive), None),
            (e, c) => (
                e.as_ref().map(command_line),
                c.as_ref().map(|c| match c {
                    CommandLine::List(items) => items.clone(),
                    CommandLine::String(s) => vec![s.clone()],
                }),
            ),
        };
        let body = ContainerCreateBody {
            image: Some(primary.image.clone()),
            entrypoint,
            cmd,
            env: Some(env_list(&primary.environment)),
            user: primary.user.clone(),
            labels: Some(labels.clone()),
            host_config: Some(HostConfig {
                binds: Some(binds),
                init: Some(true),
                nano_cpus: Some(nano_cpus),
                memory: Some(memory),
                extra_hosts: Some(extra_hosts.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!("orrery-{}-0", start.task_id);
        let id = self.create_and_start(&name, body, &primary.image).await?;
        self.primary = id.clone();
        log(format!(
            "Started primary container {} ({})",
            primary.image,
            short(&id)
        ));

        // Service containers, in the primary's network namespace.
        for (i, service) in start.images.iter().enumerate().skip(1) {
            let body = ContainerCreateBody {
                image: Some(service.image.clone()),
                entrypoint: service.entrypoint.as_ref().map(command_line),
                cmd: service.command.as_ref().map(|c| match c {
                    CommandLine::List(items) => items.clone(),
                    CommandLine::String(s) => vec![s.clone()],
                }),
                env: Some(env_list(&service.environment)),
                user: service.user.clone(),
                labels: Some(labels.clone()),
                host_config: Some(HostConfig {
                    network_mode: Some(format!("container:{id}")),
                    init: Some(true),
                    nano_cpus: Some(nano_cpus),
                    memory: Some(memory),
                    extra_hosts: None,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let name = format!("orrery-{}-{i}", start.task_id);
            let sid = self.create_and_start(&name, body, &service.image).await?;
            log(format!(
                "Started service container {} ({})",
                service.image,
                short(&sid)
            ));
        }
        // A service that exited at once will not serve this job.
        for (cid, image) in self.containers.iter().skip(1) {
            if let Some(message) = self.exited(cid, image).await {
                return Err(StartError::Job(message));
            }
        }
        // The in-container server is ready when its socket appears.
        if primary.entrypoint.is_none() && primary.command.is_none() {
            let socket = start.task_dir.join("agent.sock");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(StartError::Infrastructure(
                        "the job's container did not start its command server within 30 seconds"
                            .into(),
                    ));
                }
                if let Some(message) = self.exited(&self.primary, &primary.image).await {
                    return Err(StartError::Job(message));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            self.socket = Some(socket);
        } else if let Some(message) = self.exited(&self.primary, &primary.image).await {
            return Err(StartError::Job(message));
        }

        // The environment steps see.
        let image_path = image_paths[0].clone();
        self.path = format!(
            "{TASK_DATA}/bin:{}",
            image_path.unwrap_or_else(|| DEFAULT_PATH.into())
        );
        Ok(())
    }

    /// A message for each service container that is no longer running.
    pub async fn dead_services(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (id, image) in self.containers.iter().skip(1) {
            if let Some(message) = self.exited(id, image).await {
                out.push(format!("Service {message}"));
            }
        }
        out
    }

    /// Why a container is no longer running, if it is not.
    pub async fn exited(&self, id: &str, image: &str) -> Option<String> {
        let info = self.docker.inspect_container(id, None).await.ok()?;
        let state = info.state?;
        if state.running == Some(true) {
            return None;
        }
        let code = state.exit_code.unwrap_or(-1);
        let logs = self.logs(id).await;
        Some(format!(
            "container {image} exited with code {code}{}",
            if logs.is_empty() {
                String::new()
            } else {
                format!("; its last output:\n{logs}")
            }
        ))
    }

    async fn logs(&self, id: &str) -> String {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail("20")
            .build();
        let mut stream = self.docker.logs(id, Some(options));
        let mut out = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        out.trim_end().to_string()
    }

    /// Makes sure an image is present, pulling it only when absent. Returns
    /// the image's `PATH`.
    async fn ensure_image(
        &self,
        image: &DockerImage,
        log: &mut (dyn FnMut(String) + Send),
    ) -> Result<Option<String>, StartError> {
        let path_of = |inspect: &bollard::models::ImageInspect| {
            inspect
                .config
                .as_ref()
                .and_then(|c| c.env.as_ref())
                .and_then(|env| {
                    env.iter()
                        .find_map(|e| e.strip_prefix("PATH=").map(str::to_string))
                })
        };
        if let Ok(found) = self.docker.inspect_image(&image.image).await {
            log(format!("Using image {} (present locally)", image.image));
            return Ok(path_of(&found));
        }
        log(format!("Pulling image {}", image.image));
        let credentials = image.auth.as_ref().map(|a| DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.clone()),
            ..Default::default()
        });
        let options = CreateImageOptionsBuilder::new()
            .from_image(&image.image)
            .build();
        let mut pull = self.docker.create_image(Some(options), None, credentials);
        while let Some(item) = pull.next().await {
            if let Err(e) = item {
                return Err(StartError::Job(format!(
                    "image {} is not on this machine and could not be pulled: {}",
                    image.image,
                    clean_error(&e)
                )));
            }
        }
        match self.docker.inspect_image(&image.image).await {
            Ok(found) => Ok(path_of(&found)),
            Err(e) => Err(StartError::Job(format!(
                "image {} could not be pulled: {}",
                image.image,
                clean_error(&e)
            ))),
        }
    }

    async fn create_and_start(
        &mut self,
        name: &str,
        body: ContainerCreateBody,
        image: &str,
    ) -> Result<String, StartError> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| {
                StartError::Job(format!(
                    "cannot create a container for {image}: {}",
                    clean_error(&e)
                ))
            })?;
        self.containers
            .push((created.id.clone(), image.to_string()));
        self.docker
            .start_container(&created.id, None)
            .await
            .map_err(|e| {
                StartError::Job(format!(
                    "cannot start the container for {image}: {}",
                    clean_error(&e)
                ))
            })?;
        Ok(created.id)
    }

    pub async fn spawn(&self, cmd: Cmd) -> std::io::Result<Proc> {
        if let Some(socket) = &self.socket {
            return self.spawn_on_socket(socket, cmd).await;
        }
        let mut env: Vec<String> = cmd.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !cmd.env.iter().any(|(k, _)| k == "PATH") {
            env.push(format!("PATH={}", self.path));
        }
        let options = CreateExecOptions {
            cmd: Some(cmd.argv.clone()),
            env: Some(env),
            working_dir: cmd.cwd.clone(),
            user: self.user.clone(),
            attach_stdin: Some(cmd.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(&self.primary, options)
            .await
            .map_err(|e| std::io::Error::other(clean_error(&e)))?;
        let started = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| std::io::Error::other(clean_error(&e)))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(std::io::Error::other("the exec did not attach"));
        };
        let output = output.map(|item| {
            item.map(|log| match log {
                LogOutput::StdErr { message } => Chunk {
                    stderr: true,
                    data: message.to_vec(),
                },
                LogOutput::StdOut { message }
                | LogOutput::Console { message }
                | LogOutput::StdIn { message } => Chunk {
                    stderr: false,
                    data: message.to_vec(),
                },
            })
            .map_err(|e| std::io::Error::other(clean_error(&e)))
        });
        Ok(Proc {
            output: Box::pin(output),
            stdin: cmd.stdin.then_some(input),
            waiter: Waiter::Docker(self.docker.clone(), exec.id),
        })
    }

    /// Runs a command through the in-container server.
    async fn spawn_on_socket(&self, socket: &Path, cmd: Cmd) -> std::io::Result<Proc> {
        use orrery_task::serve::{EXIT, Request, STDERR, STDIN, STDIN_EOF, STDOUT};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut env = cmd.env.clone();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), self.path.clone()));
        }
        let request = Request {
            argv: cmd.argv,
            env,
            cwd: cmd.cwd,
            stdin: cmd.stdin,
        };
        let stream = tokio::net::UnixStream::connect(socket).await?;
        let (mut read_half, mut write_half) = stream.into_split();
        write_half.write_all(&request.encode()).await?;
        // Stdin: what the caller writes is framed and sent; its end is an EOF frame.
        let stdin = if cmd.stdin {
            let (user_side, mut our_side) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match our_side.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut frame = Vec::with_capacity(n + 5);
                            frame.push(STDIN);
                            frame.extend_from_slice(&(n as u32).to_be_bytes());
                            frame.extend_from_slice(&buf[..n]);
                            if write_half.write_all(&frame).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = write_half.write_all(&[STDIN_EOF, 0, 0, 0, 0]).await;
                let _ = write_half.shutdown().await;
            });
            Some(Box::pin(user_side) as super::Stdin)
        } else {
            drop(write_half);
            None
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Chunk>>(64);
        let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let result: std::io::Result<i32> = async {
                loop {
                    let mut header = [0u8; 5];
                    read_half.read_exact(&mut header).await?;
                    let len =
                        u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
                    let mut data = vec![0u8; len];
                    read_half.read_exact(&mut data).await?;
                    match header[0] {
                        EXIT if len == 4 => {
                            return Ok(i32::from_be_bytes([data[0], data[1], data[2], data[3]]));
                        }
                        kind @ (STDOUT | STDERR) => {
                            if tx
                                .send(Ok(Chunk {
                                    stderr: kind == STDERR,
                                    data,
                                }))
                                .await
                                .is_err()
                            {
                                // The reader is gone; keep draining for the exit code.
                            }
                        }
                        _ => {
                            return Err(std::io::Error::other(
                                "unexpected frame from the job's container",
                            ));
                        }
                    }
                }
            }
            .await;
            if let Err(e) = &result {
                let _ = tx
                    .send(Err(std::io::Error::new(e.kind(), e.to_string())))
                    .await;
            }
            let _ = exit_tx.send(result);
        });
        Ok(Proc {
            output: Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            })),
            stdin,
            waiter: Waiter::Socket(exit_rx),
        })
    }

    /// Removes every container of the task, with its volumes.
    pub async fn stop(&mut self) {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        // Services first, then the primary whose network they use.
        for (id, _) in self.containers.iter().rev() {
            if let Err(e) = self
                .docker
                .remove_container(id, Some(options.clone()))
                .await
            {
                tracing::warn!(container = %id, error = %e, "could not remove container");
            }
        }
        self.containers.clear();
    }
}

/// CPUs and memory of the engine's host, asked once per process.
async fn engine_capacity(docker: &Docker) -> Result<(f64, i64), StartError> {
    static CAPACITY: tokio::sync::OnceCell<(f64, i64)> = tokio::sync::OnceCell::const_new();
    CAPACITY
        .get_or_try_init(|| async {
            let info = docker.info().await.map_err(|e| {
                StartError::Infrastructure(format!("cannot query the Docker engine: {e}"))
            })?;
            Ok((
                info.ncpu.unwrap_or(1) as f64,
                info.mem_total.unwrap_or(i64::MAX),
            ))
        })
        .await
        .copied()
}

/// The exit code of a finished exec. Docker may report the exec as running
/// for a moment after its output ends.
pub(crate) async fn exit_code(docker: &Docker, exec_id: &str) -> std::io::Result<i32> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let inspect = docker
            .inspect_exec(exec_id)
            .await
            .map_err(|e| std::io::Error::other(clean_error(&e)))?;
        if inspect.running != Some(true) {
            return Ok(inspect.exit_code.unwrap_or(-1) as i32);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(std::io::Error::other(
                "the command's output ended but Docker still reports it running",
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Removes the containers a runner with work root `owner` left behind (it
/// was killed); returns how many. Quietly 0 when Docker is not reachable.
pub async fn remove_owned(owner: &str) -> usize {
    let Ok(docker) = Docker::connect_with_local_defaults() else {
        return 0;
    };
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![format!("{OWNER_LABEL}={owner}")]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let Ok(list) = docker.list_containers(Some(options)).await else {
        return 0;
    };
    let mut removed = 0;
    for id in list.into_iter().filter_map(|c| c.id) {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        if docker.remove_container(&id, Some(options)).await.is_ok() {
            removed += 1;
        }
    }
    removed
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Docker's error text without bollard's wrapping.
fn clean_error(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
