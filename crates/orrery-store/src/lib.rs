//! Orrery's persistence.
//!
//! One [`Store`] over sqlx's `Any` driver: SQLite by default (a file in the
//! data directory, WAL mode), and the same queries run on Postgres, whose
//! driver the next step adds. Everything the server needs after a restart is
//! here: users and tokens (hashed), projects and their (encrypted) variables,
//! pipelines, workflows with their run state, jobs, the task queue with leases,
//! step records and step output in sequenced chunks.
//!
//! Conventions: ids are UUID text, times are Unix milliseconds, JSON is stored
//! as text, queries use `$N` placeholders (both databases accept them), and
//! every multi-row change happens in one transaction. A workflow's state is
//! changed only through [`Store::update_workflow`], which checks the version
//! it read (optimistic locking), so concurrent task completions never lose an
//! update.

mod accounts;
pub mod model;
mod schema;
pub mod storage;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row};

pub use model::*;
pub use storage::{Artifact, CacheEntry, StorageUsage, TestRow, WorkspaceLayer};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The current time in Unix milliseconds.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[derive(Clone)]
pub struct Store {
    /// Reads.
    pool: AnyPool,
    /// Writes: one connection on SQLite, the same pool on Postgres.
    writer: writer::Writer,
}

fn get<T>(row: &AnyRow, col: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get::<T, _>(col)
        .map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

fn flag(row: &AnyRow, col: &str) -> Result<bool> {
    Ok(get::<i64>(row, col)? != 0)
}

/// Column `col` of a row in which a table's columns may carry a prefix
/// (joined reads name them `j_id`, `p_id`, ...).
fn getp<T>(row: &AnyRow, prefix: &str, col: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    if prefix.is_empty() {
        get(row, col)
    } else {
        get(row, &format!("{prefix}{col}"))
    }
}

/// `columns` (a `*_COLUMNS` list) of table alias `alias`, each named
/// `{alias}_{column}`.
fn prefixed(alias: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{alias}.{c} AS {alias}_{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const PROJECT_COLUMNS: &str = "id, org_id, name, slug, vcs_provider, repo_url, default_branch, webhook_secret, vcs_token, settings, created_at";
const PIPELINE_COLUMNS: &str = "id, project_id, number, state, trigger_type, trigger_actor, received_at, created_at, updated_at, branch, tag, revision, commit_subject, commit_body, origin_repo_url, review_id, review_url, parameters, config_source, config_compiled, setup_config_source, setup_config_compiled, errors, continuation_key_hash, continuation_expires_at";
const WORKFLOW_COLUMNS: &str = "id, pipeline_id, project_id, name, status, tag, created_at, stopped_at, started_by, canceled_by, workspace_id, rerun_of, plan, run_state, version";
/// Workflows with their plans (kept in `workflow_plans`).
const WORKFLOW_SELECT: &str = "SELECT w.id, w.pipeline_id, w.project_id, w.name, w.status, w.tag, w.created_at, w.stopped_at, w.started_by, w.canceled_by, w.workspace_id, w.rerun_of, COALESCE(p.plan, w.plan) AS plan, w.run_state, w.version FROM workflows w LEFT JOIN workflow_plans p ON p.workflow_id = w.id";
const JOB_COLUMNS: &str = "id, workflow_id, pipeline_id, project_id, name, number, job_type, status, parallelism, job, contexts, dependencies, created_at, queued_at, started_at, stopped_at, approved_by, approval_request_id, canceled_by, position";
const TASK_COLUMNS: &str = "id, job_id, node_index, attempt, state, result, resource_class, runner_id, lease_until, cancel_requested, created_at, claimed_at, finished_at";

fn project_row(row: &AnyRow) -> Result<Project> {
    project_row_p(row, "")
}

fn project_row_p(row: &AnyRow, p: &str) -> Result<Project> {
    Ok(Project {
        id: getp(row, p, "id")?,
        org_id: getp(row, p, "org_id")?,
        name: getp(row, p, "name")?,
        slug: getp(row, p, "slug")?,
        vcs_provider: getp(row, p, "vcs_provider")?,
        repo_url: getp(row, p, "repo_url")?,
        default_branch: getp(row, p, "default_branch")?,
        webhook_secret: getp(row, p, "webhook_secret")?,
        vcs_token: getp(row, p, "vcs_token")?,
        settings: getp(row, p, "settings")?,
        created_at: getp(row, p, "created_at")?,
    })
}

fn pipeline_row(row: &AnyRow) -> Result<Pipeline> {
    pipeline_row_p(row, "")
}

fn pipeline_row_p(row: &AnyRow, p: &str) -> Result<Pipeline> {
    Ok(Pipeline {
        id: getp(row, p, "id")?,
        project_id: getp(row, p, "project_id")?,
        number: getp(row, p, "number")?,
        state: getp(row, p, "state")?,
        trigger_type: getp(row, p, "trigger_type")?,
        trigger_actor: getp(row, p, "trigger_actor")?,
        received_at: getp(row, p, "received_at")?,
        created_at: getp(row, p, "created_at")?,
        updated_at: getp(row, p, "updated_at")?,
        branch: getp(row, p, "branch")?,
        tag: getp(row, p, "tag")?,
        revision: getp(row, p, "revision")?,
        commit_subject: getp(row, p, "commit_subject")?,
        commit_body: getp(row, p, "commit_body")?,
        origin_repo_url: getp(row, p, "origin_repo_url")?,
        review_id: getp(row, p, "review_id")?,
        review_url: getp(row, p, "review_url")?,
        parameters: getp(row, p, "parameters")?,
        config_source: getp(row, p, "config_source")?,
        config_compiled: getp(row, p, "config_compiled")?,
        setup_config_source: getp(row, p, "setup_config_source")?,
        setup_config_compiled: getp(row, p, "setup_config_compiled")?,
        errors: getp(row, p, "errors")?,
        continuation_key_hash: getp(row, p, "continuation_key_hash")?,
        continuation_expires_at: getp(row, p, "continuation_expires_at")?,
    })
}

fn workflow_row(row: &AnyRow) -> Result<Workflow> {
    workflow_row_p(row, "")
}

fn workflow_row_p(row: &AnyRow, p: &str) -> Result<Workflow> {
    Ok(Workflow {
        id: getp(row, p, "id")?,
        pipeline_id: getp(row, p, "pipeline_id")?,
        project_id: getp(row, p, "project_id")?,
        name: getp(row, p, "name")?,
        status: getp(row, p, "status")?,
        tag: getp(row, p, "tag")?,
        created_at: getp(row, p, "created_at")?,
        stopped_at: getp(row, p, "stopped_at")?,
        started_by: getp(row, p, "started_by")?,
        canceled_by: getp(row, p, "canceled_by")?,
        workspace_id: getp(row, p, "workspace_id")?,
        rerun_of: getp(row, p, "rerun_of")?,
        plan: getp(row, p, "plan")?,
        run_state: getp(row, p, "run_state")?,
        version: getp(row, p, "version")?,
    })
}

fn job_row(row: &AnyRow) -> Result<Job> {
    job_row_p(row, "")
}

fn job_row_p(row: &AnyRow, p: &str) -> Result<Job> {
    Ok(Job {
        id: getp(row, p, "id")?,
        workflow_id: getp(row, p, "workflow_id")?,
        pipeline_id: getp(row, p, "pipeline_id")?,
        project_id: getp(row, p, "project_id")?,
        name: getp(row, p, "name")?,
        number: getp(row, p, "number")?,
        job_type: getp(row, p, "job_type")?,
        status: getp(row, p, "status")?,
        parallelism: getp(row, p, "parallelism")?,
        job: getp(row, p, "job")?,
        contexts: getp(row, p, "contexts")?,
        dependencies: getp(row, p, "dependencies")?,
        created_at: getp(row, p, "created_at")?,
        queued_at: getp(row, p, "queued_at")?,
        started_at: getp(row, p, "started_at")?,
        stopped_at: getp(row, p, "stopped_at")?,
        approved_by: getp(row, p, "approved_by")?,
        approval_request_id: getp(row, p, "approval_request_id")?,
        canceled_by: getp(row, p, "canceled_by")?,
        position: getp(row, p, "position")?,
    })
}

fn task_row(row: &AnyRow) -> Result<Task> {
    Ok(Task {
        id: get(row, "id")?,
        job_id: get(row, "job_id")?,
        node_index: get(row, "node_index")?,
        attempt: get(row, "attempt")?,
        state: get(row, "state")?,
        result: get(row, "result")?,
        resource_class: get(row, "resource_class")?,
        runner_id: get(row, "runner_id")?,
        lease_until: get(row, "lease_until")?,
        cancel_requested: flag(row, "cancel_requested")?,
        created_at: get(row, "created_at")?,
        claimed_at: get(row, "claimed_at")?,
        finished_at: get(row, "finished_at")?,
    })
}

fn user_row(row: &AnyRow) -> Result<User> {
    let role: String = get(row, "role")?;
    Ok(User {
        id: get(row, "id")?,
        login: get(row, "login")?,
        name: get(row, "name")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
        created_at: get(row, "created_at")?,
    })
}

fn step_row(row: &AnyRow) -> Result<Step> {
    Ok(Step {
        task_id: get(row, "task_id")?,
        step_index: get(row, "step_index")?,
        name: get(row, "name")?,
        background: flag(row, "background")?,
        status: get(row, "status")?,
        outcome: get(row, "outcome")?,
        started_at: get(row, "started_at")?,
        stopped_at: get(row, "stopped_at")?,
    })
}

/// What running a claimed task needs (see [`Store::task_context`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskContext {
    pub job: Job,
    /// Without its plan, and without its run state and version (0) unless
    /// asked for.
    pub workflow: Workflow,
    /// Without its configs and what follows them (`config_*`,
    /// `setup_config_*` and `continuation_*` are `None`, `errors` is `[]`).
    pub pipeline: Pipeline,
    pub project: Project,
}

/// A task a runner claimed, with what it needs to run it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    pub task: Task,
    pub job: Job,
}

impl Store {
    /// Opens (creating if needed) the database at `url` (`sqlite://path` or a
    /// Postgres URL) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        let url = if is_sqlite && !url.contains("mode=") {
            format!("{url}{}mode=rwc", if url.contains('?') { "&" } else { "?" })
        } else {
            url.to_string()
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(30))
            // A SQLite connection is a file handle in this process: there is
            // nothing to test before each use (a round trip to its worker
            // thread on every read).
            .test_before_acquire(!is_sqlite)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if is_sqlite {
                        use sqlx::Executor;
                        conn.execute(writer::SQLITE_PRAGMAS).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?;
        // SQLite takes one writer at a time, and a writer that finds the
        // database locked sleeps (1 ms, then longer) before it tries again:
        // this process's writes queue for one connection instead.
        let writer = if is_sqlite {
            writer::Writer::sqlite(options).await?
        } else {
            writer::Writer::Pool(pool.clone())
        };
        let store = Store { pool, writer };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .execute(&self.writer)
            .await?;
        for (version, sql) in schema::MIGRATIONS {
            let applied = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(*version)
                .fetch_optional(&self.writer)
                .await?;
            if applied.is_some() {
                continue;
            }
            let mut tx = self.writer.begin().await?;
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    // ---- settings ----

    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| get(&r, "value")).transpose()
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    // ---- users and tokens ----

    pub async fn create_user(&self, login: &str, name: &str, role: Role) -> Result<User> {
        let user = User {
            id: new_id(),
            login: login.to_string(),
            name: name.to_string(),
            role,
            created_at: now_ms(),
        };
        let done = sqlx::query("INSERT INTO users (id, login, name, role, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (login) DO NOTHING")
            .bind(&user.id)
            .bind(&user.login)
            .bind(&user.name)
            .bind(user.role.as_str())
            .bind(user.created_at)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("a user named {login} exists")));
        }
        Ok(user)
    }

    pub async fn count_users(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?;
        get(&row, "n")
    }

    pub async fn user(&self, id: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT id, login, name, role, created_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| user_row(&r)).transpose()
    }

    pub async fn user_by_login(&self, login: &str) -> Result<Option<User>> {
        let row =
            sqlx::query("SELECT id, login, name, role, created_at FROM users WHERE login = $1")
                .bind(login)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| user_row(&r)).transpose()
    }

    /// Stores a token by its hash (the server hashes; the token itself is
    /// never stored).
    pub async fn create_token(
        &self,
        user_id: &str,
        token_hash: &str,
        label: &str,
    ) -> Result<String> {
        let id = new_id();
        sqlx::query("INSERT INTO api_tokens (id, user_id, token_hash, label, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&id)
            .bind(user_id)
            .bind(token_hash)
            .bind(label)
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        Ok(id)
    }

    pub async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT u.id, u.login, u.name, u.role, u.created_at FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| user_row(&r)).transpose()
    }

    // ---- orgs and projects ----

    pub async fn ensure_org(&self, name: &str, vcs_type: &str) -> Result<Org> {
        sqlx::query("INSERT INTO orgs (id, name, vcs_type, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING")
            .bind(new_id())
            .bind(name)
            .bind(vcs_type)
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        let row = sqlx::query("SELECT id, name, vcs_type, created_at FROM orgs WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(Org {
            id: get(&row, "id")?,
            name: get(&row, "name")?,
            vcs_type: get(&row, "vcs_type")?,
            created_at: get(&row, "created_at")?,
        })
    }

    pub async fn org(&self, id: &str) -> Result<Option<Org>> {
        let row = sqlx::query("SELECT id, name, vcs_type, created_at FROM orgs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(Org {
                id: get(&row, "id")?,
                name: get(&row, "name")?,
                vcs_type: get(&row, "vcs_type")?,
                created_at: get(&row, "created_at")?,
            })
        })
        .transpose()
    }

    pub async fn create_project(&self, p: NewProject) -> Result<Project> {
        let org = self.ensure_org(&p.org_name, &p.vcs_type).await?;
        let id = new_id();
        let done = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO projects ({PROJECT_COLUMNS}, pipeline_counter, job_counter) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, 0) ON CONFLICT (slug) DO NOTHING"
        )))
        .bind(&id)
        .bind(&org.id)
        .bind(&p.name)
        .bind(&p.slug)
        .bind(&p.vcs_provider)
        .bind(&p.repo_url)
        .bind(&p.default_branch)
        .bind(&p.webhook_secret)
        .bind(&p.vcs_token)
        .bind("{}")
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("project {} exists", p.slug)));
        }
        self.project(&id)
            .await?
            .ok_or_else(|| StoreError::NotFound("project".into()))
    }

    pub async fn project(&self, id: &str) -> Result<Option<Project>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| project_row(&r)).transpose()
    }

    pub async fn project_by_slug(&self, slug: &str) -> Result<Option<Project>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE slug = $1"
        )))
        .bind(slug)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| project_row(&r)).transpose()
    }

    pub async fn projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROJECT_COLUMNS} FROM projects ORDER BY slug"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(project_row).collect()
    }

    pub async fn set_env(&self, project_id: &str, name: &str, value: &[u8]) -> Result<EnvVar> {
        let now = now_ms();
        sqlx::query("INSERT INTO project_env (project_id, name, value, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (project_id, name) DO UPDATE SET value = excluded.value, created_at = excluded.created_at")
            .bind(project_id)
            .bind(name)
            .bind(value)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(EnvVar {
            name: name.to_string(),
            value: value.to_vec(),
            created_at: now,
        })
    }

    pub async fn env(&self, project_id: &str) -> Result<Vec<EnvVar>> {
        let rows = sqlx::query(
            "SELECT name, value, created_at FROM project_env WHERE project_id = $1 ORDER BY name",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EnvVar {
                    name: get(r, "name")?,
                    value: get(r, "value")?,
                    created_at: get(r, "created_at")?,
                })
            })
            .collect()
    }

    /// The variables of the project of job `job_id`.
    pub async fn env_of_job(&self, job_id: &str) -> Result<Vec<EnvVar>> {
        let rows = sqlx::query(
            "SELECT name, value, created_at FROM project_env WHERE project_id = (SELECT project_id FROM jobs WHERE id = $1) ORDER BY name",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EnvVar {
                    name: get(r, "name")?,
                    value: get(r, "value")?,
                    created_at: get(r, "created_at")?,
                })
            })
            .collect()
    }

    pub async fn delete_env(&self, project_id: &str, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM project_env WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // ---- pipelines ----

    /// Creates a pipeline with the project's next number.
    pub async fn create_pipeline(&self, project_id: &str, p: NewPipeline) -> Result<Pipeline> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query("UPDATE projects SET pipeline_counter = pipeline_counter + 1 WHERE id = $1 RETURNING pipeline_counter")
            .bind(project_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("project {project_id}")))?;
        let number: i64 = get(&row, "pipeline_counter")?;
        let id = new_id();
        let now = now_ms();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO pipelines ({PIPELINE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, NULL, NULL, NULL, NULL, '[]', NULL, NULL)"
        )))
        .bind(&id)
        .bind(project_id)
        .bind(number)
        .bind(&p.state)
        .bind(&p.trigger_type)
        .bind(&p.trigger_actor)
        .bind(p.received_at)
        .bind(now)
        .bind(now)
        .bind(&p.branch)
        .bind(&p.tag)
        .bind(&p.revision)
        .bind(&p.commit_subject)
        .bind(&p.commit_body)
        .bind(&p.origin_repo_url)
        .bind(&p.review_id)
        .bind(&p.review_url)
        .bind(&p.parameters)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.pipeline(&id)
            .await?
            .ok_or_else(|| StoreError::NotFound("pipeline".into()))
    }

    /// Records a pipeline's compiled config (or its errors) and state.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_pipeline_config(
        &self,
        id: &str,
        state: &str,
        source: Option<&str>,
        compiled: Option<&str>,
        errors: &str,
        setup: bool,
    ) -> Result<()> {
        let (src_col, compiled_col) = if setup {
            ("setup_config_source", "setup_config_compiled")
        } else {
            ("config_source", "config_compiled")
        };
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE pipelines SET state = $1, {src_col} = $2, {compiled_col} = $3, errors = $4, updated_at = $5 WHERE id = $6"
        )))
        .bind(state)
        .bind(source)
        .bind(compiled)
        .bind(errors)
        .bind(now_ms())
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn set_pipeline_state(&self, id: &str, state: &str) -> Result<()> {
        sqlx::query("UPDATE pipelines SET state = $1, updated_at = $2 WHERE id = $3")
            .bind(state)
            .bind(now_ms())
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn set_continuation(
        &self,
        id: &str,
        key_hash: Option<&str>,
        expires_at: Option<Millis>,
    ) -> Result<()> {
        sqlx::query("UPDATE pipelines SET continuation_key_hash = $1, continuation_expires_at = $2 WHERE id = $3")
            .bind(key_hash)
            .bind(expires_at)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Uses up a continuation key: returns the pipeline if the key was valid
    /// and unused and not expired, and clears it in the same statement.
    pub async fn take_continuation(&self, key_hash: &str, now: Millis) -> Result<Option<Pipeline>> {
        let row = sqlx::query("UPDATE pipelines SET continuation_key_hash = NULL WHERE continuation_key_hash = $1 AND continuation_expires_at > $2 RETURNING id")
            .bind(key_hash)
            .bind(now)
            .fetch_optional(&self.writer)
            .await?;
        match row {
            Some(r) => self.pipeline(&get::<String>(&r, "id")?).await,
            None => Ok(None),
        }
    }

    pub async fn pipeline(&self, id: &str) -> Result<Option<Pipeline>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| pipeline_row(&r)).transpose()
    }

    pub async fn pipeline_by_number(
        &self,
        project_id: &str,
        number: i64,
    ) -> Result<Option<Pipeline>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE project_id = $1 AND number = $2"
        )))
        .bind(project_id)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| pipeline_row(&r)).transpose()
    }

    /// Pipelines newest first, `limit` of them, below `before` (a pipeline
    /// number), optionally of one branch; all projects when `project_id` is
    /// `None`.
    pub async fn pipelines(
        &self,
        project_id: Option<&str>,
        branch: Option<&str>,
        before: Option<(Millis, String)>,
        limit: i64,
    ) -> Result<Vec<Pipeline>> {
        let mut sql = format!("SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if project_id.is_some() {
            sql.push_str(&format!(" AND project_id = {}", next()));
        }
        if branch.is_some() {
            sql.push_str(&format!(" AND branch = {}", next()));
        }
        if before.is_some() {
            let (a, b, c) = (next(), next(), next());
            sql.push_str(&format!(
                " AND (created_at < {a} OR (created_at = {b} AND id < {c}))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY created_at DESC, id DESC LIMIT {}",
            next()
        ));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(p) = project_id {
            q = q.bind(p);
        }
        if let Some(b) = branch {
            q = q.bind(b);
        }
        if let Some((t, id)) = before {
            q = q.bind(t).bind(t).bind(id);
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(pipeline_row).collect()
    }

    // ---- workflows and jobs ----

    /// Inserts a workflow with its jobs (build jobs get the project's next job
    /// numbers) and the first tasks, in one transaction.
    pub async fn insert_workflow(
        &self,
        w: &Workflow,
        jobs: &mut [Job],
        tasks: &[Task],
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO workflows ({WORKFLOW_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        )))
        .bind(&w.id)
        .bind(&w.pipeline_id)
        .bind(&w.project_id)
        .bind(&w.name)
        .bind(&w.status)
        .bind(&w.tag)
        .bind(w.created_at)
        .bind(w.stopped_at)
        .bind(&w.started_by)
        .bind(&w.canceled_by)
        .bind(&w.workspace_id)
        .bind(&w.rerun_of)
        .bind("")
        .bind(&w.run_state)
        .bind(w.version)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO workflow_plans (workflow_id, plan) VALUES ($1, $2)")
            .bind(&w.id)
            .bind(&w.plan)
            .execute(&mut *tx)
            .await?;
        for job in jobs.iter_mut() {
            if job.job_type == "build" && job.number.is_none() {
                let row = sqlx::query("UPDATE projects SET job_counter = job_counter + 1 WHERE id = $1 RETURNING job_counter")
                    .bind(&job.project_id)
                    .fetch_one(&mut *tx)
                    .await?;
                job.number = Some(get(&row, "job_counter")?);
            }
            insert_job(&mut tx, job).await?;
        }
        for task in tasks {
            insert_task(&mut tx, task).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn workflow(&self, id: &str) -> Result<Option<Workflow>> {
        let row = sqlx::query(AssertSqlSafe(format!("{WORKFLOW_SELECT} WHERE w.id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| workflow_row(&r)).transpose()
    }

    /// A workflow without its plan (`plan` is empty): what changes of its run
    /// need, without reading every job's compiled config.
    pub async fn workflow_head(&self, id: &str) -> Result<Option<Workflow>> {
        let row = sqlx::query("SELECT id, pipeline_id, project_id, name, status, tag, created_at, stopped_at, started_by, canceled_by, workspace_id, rerun_of, '' AS plan, run_state, version FROM workflows WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| workflow_row(&r)).transpose()
    }

    /// A workflow without its plan and run state (both empty).
    pub async fn workflow_summary(&self, id: &str) -> Result<Option<Workflow>> {
        let row = sqlx::query("SELECT id, pipeline_id, project_id, name, status, tag, created_at, stopped_at, started_by, canceled_by, workspace_id, rerun_of, '' AS plan, '' AS run_state, version FROM workflows WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| workflow_row(&r)).transpose()
    }

    /// The workflows of some pipelines, without their plans and run states
    /// (what lists show), oldest first.
    pub async fn workflow_summaries(&self, pipeline_ids: &[String]) -> Result<Vec<Workflow>> {
        if pipeline_ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (1..=pipeline_ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, pipeline_id, project_id, name, status, tag, created_at, stopped_at, started_by, canceled_by, workspace_id, rerun_of, '' AS plan, '' AS run_state, version FROM workflows WHERE pipeline_id IN ({}) ORDER BY created_at, id",
            marks.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in pipeline_ids {
            q = q.bind(id);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(workflow_row).collect()
    }

    /// A workflow's plan.
    pub async fn workflow_plan(&self, id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT COALESCE(p.plan, w.plan) AS plan FROM workflows w LEFT JOIN workflow_plans p ON p.workflow_id = w.id WHERE w.id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| get(&r, "plan")).transpose()
    }

    pub async fn workflows_of_pipeline(&self, pipeline_id: &str) -> Result<Vec<Workflow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{WORKFLOW_SELECT} WHERE w.pipeline_id = $1 ORDER BY w.created_at, w.id"
        )))
        .bind(pipeline_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(workflow_row).collect()
    }

    /// Workflows that have not ended.
    pub async fn active_workflows(&self) -> Result<Vec<Workflow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{WORKFLOW_SELECT} WHERE w.stopped_at IS NULL ORDER BY w.created_at"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(workflow_row).collect()
    }

    pub async fn job(&self, id: &str) -> Result<Option<Job>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| job_row(&r)).transpose()
    }

    pub async fn job_by_number(&self, project_id: &str, number: i64) -> Result<Option<Job>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE project_id = $1 AND number = $2"
        )))
        .bind(project_id)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| job_row(&r)).transpose()
    }

    pub async fn jobs_of_workflow(&self, workflow_id: &str) -> Result<Vec<Job>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE workflow_id = $1 ORDER BY position"
        )))
        .bind(workflow_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_row).collect()
    }

    /// The status of each job of a workflow: (job id, status).
    pub async fn job_statuses(&self, workflow_id: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT id, status FROM jobs WHERE workflow_id = $1")
            .bind(workflow_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((get(r, "id")?, get(r, "status")?)))
            .collect()
    }

    /// Recent jobs of a project (or all projects), newest first.
    pub async fn recent_jobs(&self, project_id: Option<&str>, limit: i64) -> Result<Vec<Job>> {
        let rows = match project_id {
            Some(p) => sqlx::query(AssertSqlSafe(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE project_id = $1 AND job_type = 'build' ORDER BY created_at DESC, number DESC LIMIT $2")))
                .bind(p)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
            None => sqlx::query(AssertSqlSafe(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_type = 'build' ORDER BY created_at DESC LIMIT $1")))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
        };
        rows.iter().map(job_row).collect()
    }

    /// Applies a workflow state change if the workflow is still at
    /// `expected_version`: its status and run state (kept as it is when
    /// `None`), job changes, new jobs and new tasks. Returns `false` (and
    /// changes nothing) when another change came first; the caller reloads
    /// and retries.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_workflow(
        &self,
        workflow_id: &str,
        expected_version: i64,
        status: &str,
        run_state: Option<&str>,
        stopped_at: Option<Millis>,
        canceled_by: Option<&str>,
        job_updates: &[JobUpdate],
        new_tasks: &[Task],
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query("UPDATE workflows SET status = $1, run_state = COALESCE($2, run_state), stopped_at = $3, canceled_by = COALESCE($4, canceled_by), version = version + 1 WHERE id = $5 AND version = $6")
            .bind(status)
            .bind(run_state)
            .bind(stopped_at)
            .bind(canceled_by)
            .bind(workflow_id)
            .bind(expected_version)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        for u in job_updates {
            sqlx::query("UPDATE jobs SET status = $1, queued_at = COALESCE($2, queued_at), started_at = COALESCE($3, started_at), stopped_at = COALESCE($4, stopped_at), approved_by = COALESCE($5, approved_by), canceled_by = COALESCE($6, canceled_by) WHERE id = $7")
                .bind(&u.status)
                .bind(u.queued_at)
                .bind(u.started_at)
                .bind(u.stopped_at)
                .bind(&u.approved_by)
                .bind(&u.canceled_by)
                .bind(&u.id)
                .execute(&mut *tx)
                .await?;
        }
        for t in new_tasks {
            insert_task(&mut tx, t).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Marks a queued job running (its first task was claimed); `true` when
    /// this call did.
    pub async fn start_job(&self, job_id: &str, now: Millis) -> Result<bool> {
        let done = sqlx::query("UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, $1) WHERE id = $2 AND status = 'queued'")
            .bind(now)
            .bind(job_id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn update_workflow_job_approver(&self, job_id: &str, user: &str) -> Result<()> {
        sqlx::query("UPDATE jobs SET approved_by = $1 WHERE id = $2")
            .bind(user)
            .bind(job_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    // ---- the task queue ----

    /// Claims the oldest queued task of one of `classes` for `runner_id`, with
    /// a lease until `lease_until`.
    pub async fn claim_task(
        &self,
        runner_id: &str,
        classes: &[String],
        lease_until: Millis,
        now: Millis,
    ) -> Result<Option<Claimed>> {
        let Some(task) = self
            .claim_next_task(runner_id, classes, lease_until, now)
            .await?
        else {
            return Ok(None);
        };
        let job = self
            .job(&task.job_id)
            .await?
            .ok_or_else(|| StoreError::NotFound("job".into()))?;
        Ok(Some(Claimed { task, job }))
    }

    /// [`Store::claim_task`] without reading the job: the claimed task.
    pub async fn claim_next_task(
        &self,
        runner_id: &str,
        classes: &[String],
        lease_until: Millis,
        now: Millis,
    ) -> Result<Option<Task>> {
        for class in classes {
            let row = sqlx::query(AssertSqlSafe(format!(
                "UPDATE tasks SET state = 'running', runner_id = $1, lease_until = $2, claimed_at = $3 WHERE id = (SELECT id FROM tasks WHERE state = 'queued' AND resource_class = $4 AND cancel_requested = 0 ORDER BY created_at, id LIMIT 1) AND state = 'queued' RETURNING {TASK_COLUMNS}"
            )))
            .bind(runner_id)
            .bind(lease_until)
            .bind(now)
            .bind(class)
            .fetch_optional(&self.writer)
            .await?;
            if let Some(row) = row {
                return task_row(&row).map(Some);
            }
        }
        Ok(None)
    }

    /// What running a task of job `job_id` needs, in one read: the job, its
    /// workflow (without its plan; without its run state unless
    /// `with_run_state`), pipeline and project.
    pub async fn task_context(
        &self,
        job_id: &str,
        with_run_state: bool,
    ) -> Result<Option<TaskContext>> {
        static SQL: [std::sync::OnceLock<String>; 2] =
            [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
        let sql = SQL[usize::from(with_run_state)].get_or_init(|| {
            // The pipeline's configs (the source and the compiled one, each
            // as big as the config) are left out, and so is what is stored
            // after them in its row (reading that would walk their overflow
            // pages).
            let pipeline_columns = prefixed("pl", PIPELINE_COLUMNS);
            let pipeline_columns = [
                "config_source",
                "config_compiled",
                "setup_config_source",
                "setup_config_compiled",
                "continuation_key_hash",
                "continuation_expires_at",
            ]
            .iter()
            .fold(pipeline_columns, |cols, c| {
                cols.replace(&format!("pl.{c} AS"), "NULL AS")
            })
            .replace("pl.errors AS", "'[]' AS");
            // Nor is the workflow's version read without its run state: it
            // is stored after the run state, which for a big workflow spans
            // many overflow pages that reading it would walk.
            format!(
                "SELECT {}, {}, '' AS w_plan, {}, {}, {} FROM jobs j JOIN workflows w ON w.id = j.workflow_id JOIN pipelines pl ON pl.id = j.pipeline_id JOIN projects pr ON pr.id = j.project_id WHERE j.id = $1",
                prefixed("j", JOB_COLUMNS),
                prefixed("w", &WORKFLOW_COLUMNS.replace(", plan, run_state, version", "")),
                if with_run_state {
                    "w.run_state AS w_run_state, w.version AS w_version"
                } else {
                    "'' AS w_run_state, 0 AS w_version"
                },
                pipeline_columns,
                prefixed("pr", PROJECT_COLUMNS),
            )
        });
        let row = sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(TaskContext {
                job: job_row_p(&r, "j_")?,
                workflow: workflow_row_p(&r, "w_")?,
                pipeline: pipeline_row_p(&r, "pl_")?,
                project: project_row_p(&r, "pr_")?,
            })
        })
        .transpose()
    }

    /// Extends a running task's lease; `None` when the runner no longer holds it.
    pub async fn heartbeat(
        &self,
        task_id: &str,
        runner_id: &str,
        lease_until: Millis,
    ) -> Result<Option<Task>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE tasks SET lease_until = $1 WHERE id = $2 AND runner_id = $3 AND state = 'running' RETURNING {TASK_COLUMNS}"
        )))
        .bind(lease_until)
        .bind(task_id)
        .bind(runner_id)
        .fetch_optional(&self.writer)
        .await?;
        row.map(|r| task_row(&r)).transpose()
    }

    /// Ends a task the runner holds (or, with `runner_id` `None`, any running
    /// or queued task). Returns the task when this call ended it.
    pub async fn finish_task(
        &self,
        task_id: &str,
        runner_id: Option<&str>,
        result: &str,
        now: Millis,
    ) -> Result<Option<Task>> {
        let row = match runner_id {
            Some(r) => sqlx::query(AssertSqlSafe(format!(
                "UPDATE tasks SET state = 'finished', result = $1, finished_at = $2, lease_until = NULL WHERE id = $3 AND runner_id = $4 AND state = 'running' RETURNING {TASK_COLUMNS}"
            )))
            .bind(result)
            .bind(now)
            .bind(task_id)
            .bind(r)
            .fetch_optional(&self.writer)
            .await?,
            None => sqlx::query(AssertSqlSafe(format!(
                "UPDATE tasks SET state = 'finished', result = $1, finished_at = $2, lease_until = NULL WHERE id = $3 AND state <> 'finished' RETURNING {TASK_COLUMNS}"
            )))
            .bind(result)
            .bind(now)
            .bind(task_id)
            .fetch_optional(&self.writer)
            .await?,
        };
        row.map(|r| task_row(&r)).transpose()
    }

    /// Running tasks whose lease ran out.
    pub async fn expired_tasks(&self, now: Millis) -> Result<Vec<Task>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE state = 'running' AND lease_until < $1"
        )))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_row).collect()
    }

    /// Tasks held by a runner that are still running (after a restart).
    pub async fn running_tasks_of(&self, runner_id: &str) -> Result<Vec<Task>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE state = 'running' AND runner_id = $1"
        )))
        .bind(runner_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_row).collect()
    }

    pub async fn task(&self, id: &str) -> Result<Option<Task>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| task_row(&r)).transpose()
    }

    pub async fn tasks_of_job(&self, job_id: &str) -> Result<Vec<Task>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE job_id = $1 ORDER BY node_index, attempt"
        )))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_row).collect()
    }

    /// Asks the runners of a job's tasks to stop; queued tasks end at once.
    pub async fn request_cancel(&self, job_id: &str, now: Millis) -> Result<()> {
        sqlx::query(
            "UPDATE tasks SET cancel_requested = 1 WHERE job_id = $1 AND state <> 'finished'",
        )
        .bind(job_id)
        .execute(&self.writer)
        .await?;
        sqlx::query("UPDATE tasks SET state = 'finished', result = 'canceled', finished_at = $1 WHERE job_id = $2 AND state = 'queued'")
            .bind(now)
            .bind(job_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Queues a new attempt of a task.
    pub async fn requeue(&self, task: &Task) -> Result<Task> {
        let next = Task {
            id: new_id(),
            attempt: task.attempt + 1,
            state: "queued".into(),
            result: None,
            runner_id: None,
            lease_until: None,
            cancel_requested: false,
            created_at: now_ms(),
            claimed_at: None,
            finished_at: None,
            ..task.clone()
        };
        let mut tx = self.writer.begin().await?;
        insert_task(&mut tx, &next).await?;
        tx.commit().await?;
        Ok(next)
    }

    pub async fn queue_depth(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT resource_class, COUNT(*) AS n FROM tasks WHERE state = 'queued' GROUP BY resource_class ORDER BY resource_class")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((get(r, "resource_class")?, get(r, "n")?)))
            .collect()
    }

    // ---- steps and output ----

    pub async fn upsert_step(&self, s: &Step) -> Result<()> {
        sqlx::query("INSERT INTO steps (task_id, step_index, name, background, status, outcome, started_at, stopped_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (task_id, step_index) DO UPDATE SET status = excluded.status, outcome = COALESCE(excluded.outcome, steps.outcome), stopped_at = COALESCE(excluded.stopped_at, steps.stopped_at)")
            .bind(&s.task_id)
            .bind(s.step_index)
            .bind(&s.name)
            .bind(i64::from(s.background))
            .bind(&s.status)
            .bind(&s.outcome)
            .bind(s.started_at)
            .bind(s.stopped_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Ends a started step: its status, outcome and end time (each kept
    /// when `None`). `false` when the task has no such step.
    pub async fn finish_step(
        &self,
        task_id: &str,
        step_index: i64,
        status: &str,
        outcome: Option<&str>,
        stopped_at: Option<Millis>,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE steps SET status = $1, outcome = COALESCE($2, outcome), stopped_at = COALESCE($3, stopped_at) WHERE task_id = $4 AND step_index = $5")
            .bind(status)
            .bind(outcome)
            .bind(stopped_at)
            .bind(task_id)
            .bind(step_index)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn steps_of_task(&self, task_id: &str) -> Result<Vec<Step>> {
        let rows = sqlx::query("SELECT task_id, step_index, name, background, status, outcome, started_at, stopped_at FROM steps WHERE task_id = $1 ORDER BY step_index")
            .bind(task_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(step_row).collect()
    }

    /// Stores an output chunk; a chunk sent again (same sequence number) is
    /// ignored, so runners may resend after a network failure.
    pub async fn append_output(
        &self,
        task_id: &str,
        step_index: i64,
        seq: i64,
        data: &[u8],
    ) -> Result<bool> {
        let done = sqlx::query("INSERT INTO output (task_id, step_index, seq, data, received_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (task_id, step_index, seq) DO NOTHING")
            .bind(task_id)
            .bind(step_index)
            .bind(seq)
            .bind(data)
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A step's output chunks from sequence number `from_seq` on.
    pub async fn output(
        &self,
        task_id: &str,
        step_index: i64,
        from_seq: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>> {
        self.output_page(task_id, step_index, from_seq, i64::MAX, i64::MAX)
            .await
    }

    /// At most `limit` output chunks of a step with `from_seq <= seq <
    /// until_seq`, in order: a page of a long output, so it can be streamed
    /// without holding all of it.
    pub async fn output_page(
        &self,
        task_id: &str,
        step_index: i64,
        from_seq: i64,
        until_seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>> {
        let rows = sqlx::query("SELECT seq, data FROM output WHERE task_id = $1 AND step_index = $2 AND seq >= $3 AND seq < $4 ORDER BY seq LIMIT $5")
            .bind(task_id)
            .bind(step_index)
            .bind(from_seq)
            .bind(until_seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((get(r, "seq")?, get(r, "data")?)))
            .collect()
    }

    /// The sizes of a step's output chunks below `until_seq`, in order, and
    /// when each arrived (`None` for output stored before that was kept).
    pub async fn output_times(
        &self,
        task_id: &str,
        step_index: i64,
        until_seq: i64,
    ) -> Result<Vec<(i64, Option<Millis>)>> {
        let rows = sqlx::query("SELECT length(data) AS n, received_at FROM output WHERE task_id = $1 AND step_index = $2 AND seq < $3 ORDER BY seq")
            .bind(task_id)
            .bind(step_index)
            .bind(until_seq)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((get(r, "n")?, get(r, "received_at")?)))
            .collect()
    }

    /// The highest sequence number stored for each step of a task.
    pub async fn output_marks(&self, task_id: &str) -> Result<Vec<(i64, i64)>> {
        // A skip scan: two index lookups per step, not a walk over every
        // chunk of a long output.
        let rows = sqlx::query("WITH RECURSIVE st(i) AS (SELECT MIN(step_index) FROM output WHERE task_id = $1 UNION ALL SELECT (SELECT MIN(o.step_index) FROM output o WHERE o.task_id = $1 AND o.step_index > st.i) FROM st WHERE st.i IS NOT NULL) SELECT st.i AS step_index, (SELECT MAX(o.seq) FROM output o WHERE o.task_id = $1 AND o.step_index = st.i) AS seq FROM st WHERE st.i IS NOT NULL ORDER BY st.i")
            .bind(task_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((get(r, "step_index")?, get(r, "seq")?)))
            .collect()
    }

    // ---- runners ----

    pub async fn create_resource_class(
        &self,
        name: &str,
        description: &str,
    ) -> Result<ResourceClass> {
        let rc = ResourceClass {
            name: name.to_string(),
            description: description.to_string(),
            created_at: now_ms(),
        };
        let done = sqlx::query("INSERT INTO resource_classes (name, description, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(&rc.name)
            .bind(&rc.description)
            .bind(rc.created_at)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "resource class {name} exists"
            )));
        }
        Ok(rc)
    }

    pub async fn resource_classes(&self) -> Result<Vec<ResourceClass>> {
        let rows =
            sqlx::query("SELECT name, description, created_at FROM resource_classes ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(ResourceClass {
                    name: get(r, "name")?,
                    description: get(r, "description")?,
                    created_at: get(r, "created_at")?,
                })
            })
            .collect()
    }

    pub async fn create_runner_token(
        &self,
        resource_class: &str,
        token_hash: &str,
        nickname: &str,
    ) -> Result<RunnerToken> {
        let t = RunnerToken {
            id: new_id(),
            resource_class: resource_class.to_string(),
            nickname: nickname.to_string(),
            created_at: now_ms(),
        };
        sqlx::query("INSERT INTO runner_tokens (id, resource_class, token_hash, nickname, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&t.id)
            .bind(&t.resource_class)
            .bind(token_hash)
            .bind(&t.nickname)
            .bind(t.created_at)
            .execute(&self.writer)
            .await?;
        Ok(t)
    }

    pub async fn runner_token_class(&self, token_hash: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT resource_class FROM runner_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| get(&r, "resource_class")).transpose()
    }

    /// Records that a runner connected (creating it on first contact).
    /// Notes that a runner asked for work (at most a write every 15 s per
    /// runner): what "online" in the admin area is based on.
    pub async fn runner_seen(&self, id: &str) -> Result<()> {
        let now = now_ms();
        sqlx::query("UPDATE runners SET last_connected = $1 WHERE id = $2 AND last_connected < $3")
            .bind(now)
            .bind(id)
            .bind(now - 15_000)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn touch_runner(
        &self,
        name: &str,
        resource_class: &str,
        hostname: &str,
        version: &str,
    ) -> Result<Runner> {
        let now = now_ms();
        let id = format!("{resource_class}/{name}");
        sqlx::query("INSERT INTO runners (id, name, resource_class, hostname, version, first_connected, last_connected) VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO UPDATE SET last_connected = excluded.last_connected, hostname = excluded.hostname, version = excluded.version")
            .bind(&id)
            .bind(name)
            .bind(resource_class)
            .bind(hostname)
            .bind(version)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(Runner {
            id,
            name: name.to_string(),
            resource_class: resource_class.to_string(),
            hostname: hostname.to_string(),
            version: version.to_string(),
            first_connected: now,
            last_connected: now,
        })
    }

    pub async fn runners(&self) -> Result<Vec<Runner>> {
        let rows = sqlx::query("SELECT id, name, resource_class, hostname, version, first_connected, last_connected FROM runners ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Runner {
                    id: get(r, "id")?,
                    name: get(r, "name")?,
                    resource_class: get(r, "resource_class")?,
                    hostname: get(r, "hostname")?,
                    version: get(r, "version")?,
                    first_connected: get(r, "first_connected")?,
                    last_connected: get(r, "last_connected")?,
                })
            })
            .collect()
    }

    // ---- schedules ----

    pub async fn register_schedule(&self, s: &ScheduledWorkflow) -> Result<()> {
        sqlx::query("INSERT INTO scheduled_workflows (project_id, branch, workflow, cron, revision, registered_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (project_id, branch, workflow) DO UPDATE SET cron = excluded.cron, revision = excluded.revision, registered_at = excluded.registered_at")
            .bind(&s.project_id)
            .bind(&s.branch)
            .bind(&s.workflow)
            .bind(&s.cron)
            .bind(&s.revision)
            .bind(s.registered_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn unregister_schedules(
        &self,
        project_id: &str,
        branch: &str,
        keep: &[String],
    ) -> Result<()> {
        let existing = self.schedules().await?;
        for s in existing.iter().filter(|s| {
            s.project_id == project_id && s.branch == branch && !keep.contains(&s.workflow)
        }) {
            sqlx::query("DELETE FROM scheduled_workflows WHERE project_id = $1 AND branch = $2 AND workflow = $3")
                .bind(&s.project_id)
                .bind(&s.branch)
                .bind(&s.workflow)
                .execute(&self.writer)
                .await?;
        }
        Ok(())
    }

    pub async fn schedules(&self) -> Result<Vec<ScheduledWorkflow>> {
        let rows = sqlx::query("SELECT project_id, branch, workflow, cron, revision, registered_at FROM scheduled_workflows ORDER BY project_id, branch, workflow")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ScheduledWorkflow {
                    project_id: get(r, "project_id")?,
                    branch: get(r, "branch")?,
                    workflow: get(r, "workflow")?,
                    cron: get(r, "cron")?,
                    revision: get(r, "revision")?,
                    registered_at: get(r, "registered_at")?,
                })
            })
            .collect()
    }

    /// Claims one firing of a schedule (identified by its minute); `false` when
    /// it already fired, so a restart never fires it twice.
    pub async fn claim_schedule_fire(
        &self,
        project_id: &str,
        workflow: &str,
        branch: &str,
        slot: i64,
    ) -> Result<bool> {
        let done = sqlx::query("INSERT INTO schedule_fires (project_id, workflow, branch, slot) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(project_id)
            .bind(workflow)
            .bind(branch)
            .bind(slot)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

async fn insert_job(conn: &mut AnyConnection, job: &Job) -> Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
    )))
    .bind(&job.id)
    .bind(&job.workflow_id)
    .bind(&job.pipeline_id)
    .bind(&job.project_id)
    .bind(&job.name)
    .bind(job.number)
    .bind(&job.job_type)
    .bind(&job.status)
    .bind(job.parallelism)
    .bind(&job.job)
    .bind(&job.contexts)
    .bind(&job.dependencies)
    .bind(job.created_at)
    .bind(job.queued_at)
    .bind(job.started_at)
    .bind(job.stopped_at)
    .bind(&job.approved_by)
    .bind(&job.approval_request_id)
    .bind(&job.canceled_by)
    .bind(job.position)
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_task(conn: &mut AnyConnection, t: &Task) -> Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    )))
    .bind(&t.id)
    .bind(&t.job_id)
    .bind(t.node_index)
    .bind(t.attempt)
    .bind(&t.state)
    .bind(&t.result)
    .bind(&t.resource_class)
    .bind(&t.runner_id)
    .bind(t.lease_until)
    .bind(i64::from(t.cancel_requested))
    .bind(t.created_at)
    .bind(t.claimed_at)
    .bind(t.finished_at)
    .execute(conn)
    .await?;
    Ok(())
}
