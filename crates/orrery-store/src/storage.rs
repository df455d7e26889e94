//! What is in object storage, and for whom: the index of caches, workspace
//! layers, artifacts and test results. The bytes are in `orrery-blob`; the
//! rows here say which object holds what, so that lookups (a cache by key
//! prefix, a job's artifacts) are queries, and so that cache keys are claimed
//! atomically: the first save of a key wins, whichever runner makes it.

use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;

use crate::{Millis, Result, Store, get, now_ms};

/// A cache: `state` is `saving` while its first saver uploads, then `ready`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub project_id: String,
    pub key: String,
    pub object: String,
    pub size: i64,
    pub sha256: String,
    pub state: String,
    pub created_at: Millis,
    pub last_used_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceLayer {
    pub workspace_id: String,
    pub job_name: String,
    pub seq: i64,
    pub project_id: String,
    pub object: String,
    pub size: i64,
    pub created_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub job_id: String,
    pub node_index: i64,
    /// The artifact's path as the job named it (`prefix/file`).
    pub path: String,
    pub project_id: String,
    pub object: String,
    pub size: i64,
    pub created_at: Millis,
}

/// One test case of one job node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestRow {
    pub project_id: String,
    pub job_id: String,
    pub job_name: String,
    pub workflow_name: String,
    pub node_index: i64,
    pub branch: String,
    pub revision: String,
    pub classname: String,
    pub name: String,
    pub file: Option<String>,
    /// `success`, `failure`, `error`, `skipped`.
    pub result: String,
    pub run_time: f64,
    pub message: Option<String>,
    pub source: String,
    pub created_at: Millis,
}

/// Bytes stored per kind for a project.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageUsage {
    pub caches: i64,
    pub workspaces: i64,
    pub artifacts: i64,
    pub output: i64,
}

/// A `saving` claim older than this belongs to a saver that died.
const STALE_SAVE_MS: i64 = 3600 * 1000;

const CACHE_COLUMNS: &str =
    "project_id, key, object, size, sha256, state, created_at, last_used_at";
const TEST_COLUMNS: &str = "project_id, job_id, job_name, workflow_name, node_index, branch, revision, classname, name, file, result, run_time, message, source, created_at";

fn cache_row(r: &sqlx::any::AnyRow) -> Result<CacheEntry> {
    Ok(CacheEntry {
        project_id: get(r, "project_id")?,
        key: get(r, "key")?,
        object: get(r, "object")?,
        size: get(r, "size")?,
        sha256: get(r, "sha256")?,
        state: get(r, "state")?,
        created_at: get(r, "created_at")?,
        last_used_at: get(r, "last_used_at")?,
    })
}

fn test_row(r: &sqlx::any::AnyRow) -> Result<TestRow> {
    Ok(TestRow {
        project_id: get(r, "project_id")?,
        job_id: get(r, "job_id")?,
        job_name: get(r, "job_name")?,
        workflow_name: get(r, "workflow_name")?,
        node_index: get(r, "node_index")?,
        branch: get(r, "branch")?,
        revision: get(r, "revision")?,
        classname: get(r, "classname")?,
        name: get(r, "name")?,
        file: get(r, "file")?,
        result: get(r, "result")?,
        run_time: get(r, "run_time")?,
        message: get(r, "message")?,
        source: get(r, "source")?,
        created_at: get(r, "created_at")?,
    })
}

impl Store {
    // ---- caches ----

    /// Claims a cache key for saving into `object`. `false` when the key is
    /// taken (saved, or being saved by a live saver): the caller skips.
    pub async fn claim_cache(&self, project_id: &str, key: &str, object: &str) -> Result<bool> {
        let now = now_ms();
        let inserted = sqlx::query("INSERT INTO caches (project_id, key, object, size, sha256, state, created_at, last_used_at) VALUES ($1, $2, $3, 0, '', 'saving', $4, $4) ON CONFLICT (project_id, key) DO NOTHING")
            .bind(project_id)
            .bind(key)
            .bind(object)
            .bind(now)
            .execute(&self.writer)
            .await?;
        if inserted.rows_affected() > 0 {
            return Ok(true);
        }
        // A claim whose saver died long ago is taken over.
        let taken = sqlx::query("UPDATE caches SET object = $3, created_at = $4, last_used_at = $4 WHERE project_id = $1 AND key = $2 AND state = 'saving' AND created_at < $5")
            .bind(project_id)
            .bind(key)
            .bind(object)
            .bind(now)
            .bind(now - STALE_SAVE_MS)
            .execute(&self.writer)
            .await?;
        Ok(taken.rows_affected() > 0)
    }

    /// Marks a claimed cache saved.
    pub async fn finish_cache(
        &self,
        project_id: &str,
        key: &str,
        object: &str,
        size: i64,
        sha256: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE caches SET state = 'ready', size = $4, sha256 = $5, created_at = $6, last_used_at = $6 WHERE project_id = $1 AND key = $2 AND object = $3")
            .bind(project_id)
            .bind(key)
            .bind(object)
            .bind(size)
            .bind(sha256)
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Drops a claim whose save failed, so that another save can try.
    pub async fn abandon_cache(&self, project_id: &str, key: &str, object: &str) -> Result<()> {
        sqlx::query("DELETE FROM caches WHERE project_id = $1 AND key = $2 AND object = $3 AND state = 'saving'")
            .bind(project_id)
            .bind(key)
            .bind(object)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// The most recently saved ready cache whose key starts with `prefix`.
    pub async fn find_cache(&self, project_id: &str, prefix: &str) -> Result<Option<CacheEntry>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CACHE_COLUMNS} FROM caches WHERE project_id = $1 AND state = 'ready' AND substr(key, 1, $2) = $3 ORDER BY created_at DESC, key DESC LIMIT 1"
        )))
        .bind(project_id)
        .bind(prefix.chars().count() as i64)
        .bind(prefix)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| cache_row(&r)).transpose()
    }

    pub async fn cache(&self, project_id: &str, key: &str) -> Result<Option<CacheEntry>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CACHE_COLUMNS} FROM caches WHERE project_id = $1 AND key = $2"
        )))
        .bind(project_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| cache_row(&r)).transpose()
    }

    /// Records a restore, which keeps the cache from expiring.
    pub async fn touch_cache(&self, project_id: &str, key: &str) -> Result<()> {
        sqlx::query("UPDATE caches SET last_used_at = $3 WHERE project_id = $1 AND key = $2")
            .bind(project_id)
            .bind(key)
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Ready caches not used since `before` (for the sweeper).
    pub async fn unused_caches(&self, before: Millis, limit: i64) -> Result<Vec<CacheEntry>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CACHE_COLUMNS} FROM caches WHERE state = 'ready' AND last_used_at < $1 ORDER BY last_used_at LIMIT $2"
        )))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(cache_row).collect()
    }

    /// Deletes a cache's row if it still is `object` and unused since `before`.
    pub async fn delete_cache(
        &self,
        project_id: &str,
        key: &str,
        object: &str,
        before: Millis,
    ) -> Result<bool> {
        let done = sqlx::query("DELETE FROM caches WHERE project_id = $1 AND key = $2 AND object = $3 AND last_used_at < $4")
            .bind(project_id)
            .bind(key)
            .bind(object)
            .bind(before)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // ---- workspaces ----

    /// Adds a layer to a job's workspace; returns it with its sequence number.
    pub async fn add_workspace_layer(
        &self,
        workspace_id: &str,
        job_name: &str,
        project_id: &str,
        object: &str,
        size: i64,
    ) -> Result<WorkspaceLayer> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query("SELECT COALESCE(MAX(seq), -1) AS seq FROM workspace_layers WHERE workspace_id = $1 AND job_name = $2")
            .bind(workspace_id)
            .bind(job_name)
            .fetch_one(&mut *tx)
            .await?;
        let seq: i64 = get::<i64>(&row, "seq")? + 1;
        let layer = WorkspaceLayer {
            workspace_id: workspace_id.to_string(),
            job_name: job_name.to_string(),
            seq,
            project_id: project_id.to_string(),
            object: object.to_string(),
            size,
            created_at: now_ms(),
        };
        sqlx::query("INSERT INTO workspace_layers (workspace_id, job_name, seq, project_id, object, size, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&layer.workspace_id)
            .bind(&layer.job_name)
            .bind(layer.seq)
            .bind(&layer.project_id)
            .bind(&layer.object)
            .bind(layer.size)
            .bind(layer.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(layer)
    }

    /// A job's workspace layers, in the order they were saved.
    pub async fn workspace_layers(
        &self,
        workspace_id: &str,
        job_name: &str,
    ) -> Result<Vec<WorkspaceLayer>> {
        let rows = sqlx::query("SELECT workspace_id, job_name, seq, project_id, object, size, created_at FROM workspace_layers WHERE workspace_id = $1 AND job_name = $2 ORDER BY seq")
            .bind(workspace_id)
            .bind(job_name)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(WorkspaceLayer {
                    workspace_id: get(r, "workspace_id")?,
                    job_name: get(r, "job_name")?,
                    seq: get(r, "seq")?,
                    project_id: get(r, "project_id")?,
                    object: get(r, "object")?,
                    size: get(r, "size")?,
                    created_at: get(r, "created_at")?,
                })
            })
            .collect()
    }

    /// Workspaces none of whose workflows has run since `before` and none of
    /// whose workflows is still running: their layers can go.
    pub async fn expired_workspaces(&self, before: Millis, limit: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT l.workspace_id AS id FROM workspace_layers l GROUP BY l.workspace_id HAVING MAX(l.created_at) < $1 AND NOT EXISTS (SELECT 1 FROM workflows w WHERE w.workspace_id = l.workspace_id AND (w.stopped_at IS NULL OR w.stopped_at >= $1)) LIMIT $2")
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| get(r, "id")).collect()
    }

    /// All layers of a workspace (any job).
    pub async fn layers_of_workspace(&self, workspace_id: &str) -> Result<Vec<WorkspaceLayer>> {
        let rows = sqlx::query("SELECT workspace_id, job_name, seq, project_id, object, size, created_at FROM workspace_layers WHERE workspace_id = $1 ORDER BY job_name, seq")
            .bind(workspace_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(WorkspaceLayer {
                    workspace_id: get(r, "workspace_id")?,
                    job_name: get(r, "job_name")?,
                    seq: get(r, "seq")?,
                    project_id: get(r, "project_id")?,
                    object: get(r, "object")?,
                    size: get(r, "size")?,
                    created_at: get(r, "created_at")?,
                })
            })
            .collect()
    }

    pub async fn delete_workspace_layer(
        &self,
        workspace_id: &str,
        job_name: &str,
        seq: i64,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM workspace_layers WHERE workspace_id = $1 AND job_name = $2 AND seq = $3",
        )
        .bind(workspace_id)
        .bind(job_name)
        .bind(seq)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    // ---- artifacts ----

    pub async fn add_artifact(&self, a: &Artifact) -> Result<()> {
        sqlx::query("INSERT INTO artifacts (job_id, node_index, path, project_id, object, size, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (job_id, node_index, path) DO UPDATE SET object = excluded.object, size = excluded.size, created_at = excluded.created_at")
            .bind(&a.job_id)
            .bind(a.node_index)
            .bind(&a.path)
            .bind(&a.project_id)
            .bind(&a.object)
            .bind(a.size)
            .bind(a.created_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn artifacts_of_job(&self, job_id: &str) -> Result<Vec<Artifact>> {
        let rows = sqlx::query("SELECT job_id, node_index, path, project_id, object, size, created_at FROM artifacts WHERE job_id = $1 ORDER BY node_index, path")
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(artifact_row).collect()
    }

    pub async fn artifact(
        &self,
        job_id: &str,
        node_index: i64,
        path: &str,
    ) -> Result<Option<Artifact>> {
        let row = sqlx::query("SELECT job_id, node_index, path, project_id, object, size, created_at FROM artifacts WHERE job_id = $1 AND node_index = $2 AND path = $3")
            .bind(job_id)
            .bind(node_index)
            .bind(path)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| artifact_row(&r)).transpose()
    }

    pub async fn expired_artifacts(&self, before: Millis, limit: i64) -> Result<Vec<Artifact>> {
        let rows = sqlx::query("SELECT job_id, node_index, path, project_id, object, size, created_at FROM artifacts WHERE created_at < $1 ORDER BY created_at LIMIT $2")
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(artifact_row).collect()
    }

    pub async fn delete_artifact(&self, job_id: &str, node_index: i64, path: &str) -> Result<()> {
        sqlx::query("DELETE FROM artifacts WHERE job_id = $1 AND node_index = $2 AND path = $3")
            .bind(job_id)
            .bind(node_index)
            .bind(path)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    // ---- test results ----

    /// Stores a node's test cases (replacing what a previous attempt of the
    /// node stored).
    pub async fn set_test_results(
        &self,
        job_id: &str,
        node_index: i64,
        rows: &[TestRow],
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM test_cases WHERE job_id = $1 AND node_index = $2")
            .bind(job_id)
            .bind(node_index)
            .execute(&mut *tx)
            .await?;
        for (seq, t) in rows.iter().enumerate() {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO test_cases ({TEST_COLUMNS}, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            )))
            .bind(&t.project_id)
            .bind(&t.job_id)
            .bind(&t.job_name)
            .bind(&t.workflow_name)
            .bind(t.node_index)
            .bind(&t.branch)
            .bind(&t.revision)
            .bind(&t.classname)
            .bind(&t.name)
            .bind(&t.file)
            .bind(&t.result)
            .bind(t.run_time)
            .bind(&t.message)
            .bind(&t.source)
            .bind(t.created_at)
            .bind(seq as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A job's test cases, node by node, in the order they were reported.
    pub async fn test_results_of_job(&self, job_id: &str) -> Result<Vec<TestRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TEST_COLUMNS} FROM test_cases WHERE job_id = $1 ORDER BY node_index, seq"
        )))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(test_row).collect()
    }

    /// Test cases of a project's job (by name) since `since`, newest first;
    /// of one branch when given. For timings and insights.
    pub async fn test_history(
        &self,
        project_id: &str,
        job_name: Option<&str>,
        branch: Option<&str>,
        since: Millis,
        limit: i64,
    ) -> Result<Vec<TestRow>> {
        let mut sql = format!(
            "SELECT {TEST_COLUMNS} FROM test_cases WHERE project_id = $1 AND created_at >= $2"
        );
        let mut n = 2;
        if job_name.is_some() {
            n += 1;
            sql.push_str(&format!(" AND job_name = ${n}"));
        }
        if branch.is_some() {
            n += 1;
            sql.push_str(&format!(" AND branch = ${n}"));
        }
        n += 1;
        sql.push_str(&format!(
            " ORDER BY created_at DESC, job_id, node_index, seq LIMIT ${n}"
        ));
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(project_id).bind(since);
        if let Some(j) = job_name {
            q = q.bind(j);
        }
        if let Some(b) = branch {
            q = q.bind(b);
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(test_row).collect()
    }

    pub async fn delete_test_results_before(&self, before: Millis) -> Result<u64> {
        let done = sqlx::query("DELETE FROM test_cases WHERE created_at < $1")
            .bind(before)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }

    // ---- usage ----

    pub async fn storage_usage(&self, project_id: &str) -> Result<StorageUsage> {
        let sum = |sql: &'static str| async move {
            let row = sqlx::query(sql)
                .bind(project_id)
                .fetch_one(&self.pool)
                .await?;
            get::<i64>(&row, "n")
        };
        Ok(StorageUsage {
            caches: sum("SELECT COALESCE(SUM(size), 0) AS n FROM caches WHERE project_id = $1 AND state = 'ready'").await?,
            workspaces: sum("SELECT COALESCE(SUM(size), 0) AS n FROM workspace_layers WHERE project_id = $1").await?,
            artifacts: sum("SELECT COALESCE(SUM(size), 0) AS n FROM artifacts WHERE project_id = $1").await?,
            output: sum("SELECT COALESCE(SUM(LENGTH(o.data)), 0) AS n FROM output o JOIN tasks t ON t.id = o.task_id JOIN jobs j ON j.id = t.job_id WHERE j.project_id = $1").await?,
        })
    }
}

fn artifact_row(r: &sqlx::any::AnyRow) -> Result<Artifact> {
    Ok(Artifact {
        job_id: get(r, "job_id")?,
        node_index: get(r, "node_index")?,
        path: get(r, "path")?,
        project_id: get(r, "project_id")?,
        object: get(r, "object")?,
        size: get(r, "size")?,
        created_at: get(r, "created_at")?,
    })
}

/// The migration that creates these tables.
pub(crate) const MIGRATION: &str = r#"
CREATE TABLE caches (
    project_id TEXT NOT NULL,
    key TEXT NOT NULL,
    object TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, key)
);
CREATE INDEX caches_by_use ON caches (state, last_used_at);
CREATE TABLE workspace_layers (
    workspace_id TEXT NOT NULL,
    job_name TEXT NOT NULL,
    seq BIGINT NOT NULL,
    project_id TEXT NOT NULL,
    object TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, job_name, seq)
);
CREATE TABLE artifacts (
    job_id TEXT NOT NULL,
    node_index BIGINT NOT NULL,
    path TEXT NOT NULL,
    project_id TEXT NOT NULL,
    object TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, node_index, path)
);
CREATE INDEX artifacts_by_age ON artifacts (created_at);
CREATE TABLE test_cases (
    job_id TEXT NOT NULL,
    node_index BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    project_id TEXT NOT NULL,
    job_name TEXT NOT NULL,
    workflow_name TEXT NOT NULL,
    branch TEXT NOT NULL,
    revision TEXT NOT NULL,
    classname TEXT NOT NULL,
    name TEXT NOT NULL,
    file TEXT,
    result TEXT NOT NULL,
    run_time DOUBLE PRECISION NOT NULL,
    message TEXT,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, node_index, seq)
);
CREATE INDEX test_cases_by_project ON test_cases (project_id, job_name, created_at)
"#;
