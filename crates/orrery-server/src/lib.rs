//! Orrery's server: the HTTP face of the engine.
//!
//! [`Server::start`] opens the store (migrating it), loads the secret key,
//! creates the admin account on first start, starts the engine's background
//! work (lease sweeps, schedules), the commit-status notifier and the embedded
//! runner, and serves:
//!
//! - CircleCI API v2 ([`api::v2`]) and v1.1 ([`api::v1`]) under `/api/...`,
//!   authorized by personal API tokens ([`auth`]);
//! - the runner protocol over HTTP ([`api::runner`]) under `/runner/v1/...`,
//!   authorized by runner tokens;
//! - VCS webhooks ([`api::hooks`]) under `/hooks/{provider}/{project_id}`,
//!   authorized by their signatures;
//! - live output as Server-Sent Events ([`api::live`]);
//! - artifacts, test results, insights and storage usage
//!   ([`api::artifacts`], [`api::testresults`], [`api::insights`],
//!   [`api::usage`]); the retention sweeper ([`retention`]) removes what
//!   expired;
//! - `/healthz` and the OpenAPI document at `/api/v2/openapi.json`.
//!
//! Every handler returns [`error::ApiError`] on failure, which becomes
//! CircleCI's `{"message": ...}` with a 4xx status (5xx only for faults of the
//! server itself, logged with their details).

pub mod api;
pub mod auth;
pub mod client;
pub mod embedded;
pub mod error;
pub mod retention;
pub mod secrets;
pub mod statuses;
pub mod storage;
pub mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use orrery_config::OrbSource;
use orrery_engine::{Engine, EngineConfig};
use orrery_store::{Role, Store};
use tokio_util::sync::CancellationToken;

pub use crate::retention::Retention;
use crate::secrets::{Cipher, hash_token, new_token};

/// Everything the handlers share.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub store: Store,
    pub cipher: Arc<Cipher>,
    /// The server's public URL, without a trailing slash.
    pub base_url: String,
    pub data_dir: PathBuf,
    pub orbs: Arc<dyn OrbSource + Send + Sync>,
    /// Cancelled when the server stops: long polls and live streams end.
    pub shutdown: CancellationToken,
    /// Caches, workspaces, artifacts (object storage).
    pub blobs: Arc<orrery_blob::Blobs>,
    /// How long task storage is kept.
    pub retention: Retention,
    /// The address the server listens on, its embedded runner's slots and
    /// when it started (the admin area shows them).
    pub listen: SocketAddr,
    pub embedded_slots: usize,
    pub started_at: std::time::Instant,
    /// Failed sign-ins per login, for throttling ([`web::session`]).
    pub signin_failures: web::session::Failures,
}

/// How to run a server.
#[derive(Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The URL users and runners reach the server at; derived from `listen`
    /// when not set.
    pub base_url: Option<String>,
    /// `sqlite://...`; a database in the data directory when not set.
    pub database_url: Option<String>,
    /// Object storage (a directory, `s3://bucket/prefix`, `gs://`, `az://`);
    /// `<data dir>/blobs` when not set.
    pub blob_url: Option<String>,
    /// Options for the object store's builder (after the environment).
    pub blob_options: Vec<(String, String)>,
    /// Embedded runner slots; 0 disables the embedded runner.
    pub embedded_slots: usize,
    /// On first start, the admin's API token (else a random one is made).
    pub admin_token: Option<String>,
    pub orbs: Arc<dyn OrbSource + Send + Sync>,
    pub lease: Duration,
    pub heartbeat: Duration,
    pub max_run_time: Duration,
    pub kill_grace: Duration,
    /// How long artifacts, workspaces, caches, test results and step output
    /// are kept, and how often the sweeper runs.
    pub retention: Retention,
}

impl ServerConfig {
    /// Defaults for a data directory: 127.0.0.1:8080, an embedded runner
    /// with a slot per core, 30 s leases with 5 s heartbeats, 5 hour jobs.
    pub fn new(data_dir: PathBuf, orbs: Arc<dyn OrbSource + Send + Sync>) -> ServerConfig {
        ServerConfig {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            base_url: None,
            database_url: None,
            blob_url: None,
            blob_options: Vec::new(),
            embedded_slots: std::thread::available_parallelism().map_or(2, |n| n.get()),
            admin_token: None,
            orbs,
            lease: Duration::from_secs(20),
            heartbeat: Duration::from_secs(5),
            max_run_time: Duration::from_secs(5 * 3600),
            kill_grace: Duration::from_secs(10),
            retention: Retention::default(),
        }
    }
}

/// What the first start created: the admin account's credentials, shown once.
#[derive(Clone, Debug)]
pub struct FirstStart {
    pub login: String,
    /// The admin's API token; `None` when it came from `ORRERY_ADMIN_TOKEN`.
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database: {0}")]
    Store(#[from] orrery_store::StoreError),
    #[error("{0}")]
    Io(String),
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub base_url: String,
    pub first_start: Option<FirstStart>,
    pub state: Arc<AppState>,
    shutdown: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
}

/// The embedded runner's name; its runner id is `orrery/default/embedded`.
pub const EMBEDDED_RUNNER: &str = "embedded";

impl Server {
    pub async fn start(config: ServerConfig) -> Result<Server, StartError> {
        let started = std::time::Instant::now();
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            StartError::Io(format!(
                "cannot create the data directory {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let database_url = config
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", config.data_dir.join("orrery.db").display()));
        let store = Store::connect(&database_url).await?;
        let cipher = Arc::new(
            Cipher::load_or_create(&config.data_dir.join("secret.key"))
                .map_err(|e| StartError::Io(format!("the secret key: {e}")))?,
        );
        let first_start = bootstrap(&store, config.admin_token.as_deref()).await?;
        let blob_url = config
            .blob_url
            .clone()
            .unwrap_or_else(|| config.data_dir.join("blobs").display().to_string());
        let blobs = Arc::new(
            orrery_blob::Blobs::open(&blob_url, &config.blob_options)
                .map_err(|e| StartError::Config(e.to_string()))?,
        );

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|error| StartError::Listen {
                addr: config.listen,
                error,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Io(e.to_string()))?;
        let base_url = config
            .base_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_string();

        let engine = Engine::new(
            store.clone(),
            EngineConfig {
                data_dir: config.data_dir.clone(),
                base_url: base_url.clone(),
                lease: config.lease,
                heartbeat: config.heartbeat,
                max_run_time: config.max_run_time,
                max_attempts: 2,
            },
            Arc::clone(&config.orbs),
            Arc::clone(&cipher) as Arc<dyn orrery_engine::Secrets>,
        );
        let shutdown = CancellationToken::new();
        let state = Arc::new(AppState {
            engine: Arc::clone(&engine),
            store: store.clone(),
            cipher,
            base_url: base_url.clone(),
            data_dir: config.data_dir.clone(),
            orbs: Arc::clone(&config.orbs),
            shutdown: shutdown.clone(),
            blobs,
            retention: config.retention.clone(),
            listen: addr,
            embedded_slots: config.embedded_slots,
            started_at: started,
            signin_failures: web::session::Failures::default(),
        });

        let mut tasks = tokio::task::JoinSet::new();

        // The engine's background work.
        {
            let (tx, rx) = tokio::sync::watch::channel(false);
            let engine = Arc::clone(&engine);
            let stop = shutdown.clone();
            tasks.spawn(async move {
                let bg = tokio::spawn(engine.run_background(rx));
                stop.cancelled().await;
                let _ = tx.send(true);
                let _ = bg.await;
            });
        }
        tasks.spawn(statuses::run_notifier(Arc::clone(&state), shutdown.clone()));
        tasks.spawn(retention::run(Arc::clone(&state), shutdown.clone()));

        // The embedded runner: its tasks from before a restart are lost.
        if config.embedded_slots > 0 {
            let runner = store
                .touch_runner(
                    EMBEDDED_RUNNER,
                    orrery_engine::DEFAULT_CLASS,
                    &hostname(),
                    env!("CARGO_PKG_VERSION"),
                )
                .await?;
            let abandoned = engine
                .abandon_runner_tasks(&runner.id)
                .await
                .map_err(|e| StartError::Io(e.to_string()))?;
            if abandoned > 0 {
                tracing::warn!(
                    abandoned,
                    "tasks of the embedded runner were cut off by the last stop; they are retried"
                );
            }
            tasks.spawn(embedded::run(
                Arc::clone(&state),
                runner.id,
                embedded::Options {
                    slots: config.embedded_slots,
                    work_root: config.data_dir.join("work"),
                    kill_grace: config.kill_grace,
                },
                shutdown.child_token(),
            ));
        }

        let app = api::router(Arc::clone(&state));
        {
            let stop = shutdown.clone();
            // No Nagle: small writes (live output events, responses on a
            // kept-alive connection) would otherwise wait for the client's
            // delayed ACK, 40 ms.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            tasks.spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "the HTTP server stopped");
                }
            });
        }
        tracing::info!(
            %addr,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Orrery is listening"
        );
        Ok(Server {
            addr,
            base_url,
            first_start,
            state,
            shutdown,
            tasks,
        })
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server has stopped (after [`Server::shutdown_token`]
    /// was cancelled): the listener closed, the embedded runner's jobs
    /// stopped and their containers removed.
    pub async fn wait(mut self) {
        self.shutdown.cancelled().await;
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Creates the admin account on first start.
async fn bootstrap(
    store: &Store,
    admin_token: Option<&str>,
) -> Result<Option<FirstStart>, StartError> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    // The token is checked before the account is made: an account without a
    // token would lock everyone out, since later starts see a user and skip this.
    let (token, shown) = match admin_token {
        Some(t) if t.trim().len() < 16 => {
            return Err(StartError::Config(
                "ORRERY_ADMIN_TOKEN must be at least 16 characters".into(),
            ));
        }
        Some(t) => (t.trim().to_string(), None),
        None => {
            let t = new_token();
            (t.clone(), Some(t))
        }
    };
    let admin = store
        .create_user("admin", "Administrator", Role::Admin)
        .await?;
    store
        .create_token(&admin.id, &hash_token(&token), "first start")
        .await?;
    Ok(Some(FirstStart {
        login: admin.login,
        token: shown,
    }))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
