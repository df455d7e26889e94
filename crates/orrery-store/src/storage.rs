//! What is in object storage, and for whom: the index of caches, workspace
//! layers, artifacts and test results. The bytes are in `orrery-blob`; the
//! rows here say which object holds what, so that lookups (a cache by key
//! prefix, a job's artifacts) are queries, and so that cache keys are claimed
//! atomically: the first save of a key wins, whichever runner makes it.

use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;

use crate::{Millis, Result, Store, get, now_ms};

/// A cache: `state` is `saving` while its first saver uploads, then `ready`;
/// `deleting` while the retention sweeper removes it.
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
    /// Every object the index names: caches in any state, workspace layers
    /// and artifacts (what the orphan sweep must keep).
    pub async fn referenced_objects(&self) -> Result<std::collections::HashSet<String>> {
        let rows = sqlx::query(
            "SELECT object FROM caches UNION SELECT object FROM workspace_layers UNION SELECT object FROM artifacts",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| get(r, "object")).collect()
    }

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

/// A workflow run as insights read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowRunRow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub created_at: Millis,
    pub stopped_at: Option<Millis>,
    pub pipeline_number: i64,
    pub branch: Option<String>,
}

/// A build job run as insights read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRunRow {
    pub id: String,
    pub name: String,
    pub number: Option<i64>,
    pub status: String,
    pub workflow_id: String,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub stopped_at: Option<Millis>,
    pub branch: Option<String>,
}

/// `columns` (a comma-separated list) of table alias `alias`, keeping their names.
fn of_alias(alias: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Job statuses of the v1.1 `filter` values.
pub fn job_filter_statuses(filter: &str) -> Option<&'static [&'static str]> {
    Some(match filter {
        "completed" => &[
            "success",
            "failed",
            "canceled",
            "infrastructure_fail",
            "timedout",
            "not_run",
            "terminated-unknown",
            "unauthorized",
        ],
        "successful" => &["success"],
        "failed" => &["failed", "infrastructure_fail", "timedout"],
        "running" => &["running"],
        _ => return None,
    })
}

/// Insights and retention queries.
impl Store {
    /// Runs of a project's workflows created since `since`, newest first;
    /// of one workflow name and one branch when given.
    pub async fn workflow_runs(
        &self,
        project_id: &str,
        name: Option<&str>,
        branch: Option<&str>,
        since: Millis,
        limit: i64,
    ) -> Result<Vec<WorkflowRunRow>> {
        let mut sql = String::from(
            "SELECT w.id, w.name, w.status, w.created_at, w.stopped_at, p.number AS pipeline_number, p.branch FROM workflows w JOIN pipelines p ON p.id = w.pipeline_id WHERE w.project_id = $1 AND w.created_at >= $2",
        );
        let mut n = 2;
        if name.is_some() {
            n += 1;
            sql.push_str(&format!(" AND w.name = ${n}"));
        }
        if branch.is_some() {
            n += 1;
            sql.push_str(&format!(" AND p.branch = ${n}"));
        }
        n += 1;
        sql.push_str(&format!(
            " ORDER BY w.created_at DESC, w.id DESC LIMIT ${n}"
        ));
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(project_id).bind(since);
        if let Some(v) = name {
            q = q.bind(v);
        }
        if let Some(b) = branch {
            q = q.bind(b);
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(WorkflowRunRow {
                    id: get(r, "id")?,
                    name: get(r, "name")?,
                    status: get(r, "status")?,
                    created_at: get(r, "created_at")?,
                    stopped_at: get(r, "stopped_at")?,
                    pipeline_number: get(r, "pipeline_number")?,
                    branch: get(r, "branch")?,
                })
            })
            .collect()
    }

    /// Build jobs that ran (a runner started them) in workflows named
    /// `workflow_name` created since `since`, newest first; of one job name
    /// and one branch when given. Jobs a rerun carried over did not run.
    pub async fn job_runs(
        &self,
        project_id: &str,
        workflow_name: &str,
        job_name: Option<&str>,
        branch: Option<&str>,
        since: Millis,
        limit: i64,
    ) -> Result<Vec<JobRunRow>> {
        let mut sql = String::from(
            "SELECT j.id, j.name, j.number, j.status, j.workflow_id, j.created_at, j.started_at, j.stopped_at, p.branch FROM jobs j JOIN workflows w ON w.id = j.workflow_id JOIN pipelines p ON p.id = j.pipeline_id WHERE j.project_id = $1 AND w.name = $2 AND j.created_at >= $3 AND j.job_type = 'build' AND j.started_at IS NOT NULL",
        );
        let mut n = 3;
        if job_name.is_some() {
            n += 1;
            sql.push_str(&format!(" AND j.name = ${n}"));
        }
        if branch.is_some() {
            n += 1;
            sql.push_str(&format!(" AND p.branch = ${n}"));
        }
        n += 1;
        sql.push_str(&format!(
            " ORDER BY j.created_at DESC, j.id DESC LIMIT ${n}"
        ));
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(project_id)
            .bind(workflow_name)
            .bind(since);
        if let Some(j) = job_name {
            q = q.bind(j);
        }
        if let Some(b) = branch {
            q = q.bind(b);
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(JobRunRow {
                    id: get(r, "id")?,
                    name: get(r, "name")?,
                    number: get(r, "number")?,
                    status: get(r, "status")?,
                    workflow_id: get(r, "workflow_id")?,
                    created_at: get(r, "created_at")?,
                    started_at: get(r, "started_at")?,
                    stopped_at: get(r, "stopped_at")?,
                    branch: get(r, "branch")?,
                })
            })
            .collect()
    }

    /// Whether a project has a workflow of this name (and, given, a build
    /// job of that name in one).
    pub async fn has_workflow_named(
        &self,
        project_id: &str,
        workflow_name: &str,
        job_name: Option<&str>,
    ) -> Result<bool> {
        let row = match job_name {
            None => {
                sqlx::query("SELECT COUNT(*) AS n FROM (SELECT 1 FROM workflows WHERE project_id = $1 AND name = $2 LIMIT 1) x")
                    .bind(project_id)
                    .bind(workflow_name)
                    .fetch_one(&self.pool)
                    .await?
            }
            Some(j) => {
                sqlx::query("SELECT COUNT(*) AS n FROM (SELECT 1 FROM jobs j JOIN workflows w ON w.id = j.workflow_id WHERE j.project_id = $1 AND w.name = $2 AND j.name = $3 LIMIT 1) x")
                    .bind(project_id)
                    .bind(workflow_name)
                    .bind(j)
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        Ok(get::<i64>(&row, "n")? > 0)
    }

    /// The test cases reported by a workflow's jobs.
    pub async fn test_results_of_workflow(&self, workflow_id: &str) -> Result<Vec<TestRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM test_cases t JOIN jobs j ON j.id = t.job_id WHERE j.workflow_id = $1 ORDER BY t.job_id, t.node_index, t.seq",
            of_alias("t", TEST_COLUMNS)
        )))
        .bind(workflow_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(test_row).collect()
    }

    /// Failed runs (`failure`, `error`) since `since` of tests that also
    /// passed on the same revision in a job of the same name: flaky tests'
    /// flakes, newest first.
    pub async fn flaky_failures(
        &self,
        project_id: &str,
        since: Millis,
        limit: i64,
    ) -> Result<Vec<TestRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM test_cases t WHERE t.project_id = $1 AND t.created_at >= $2 AND t.result IN ('failure', 'error') AND EXISTS (SELECT 1 FROM test_cases s WHERE s.project_id = t.project_id AND s.job_name = t.job_name AND s.created_at >= $2 AND s.revision = t.revision AND s.classname = t.classname AND s.name = t.name AND COALESCE(s.file, '') = COALESCE(t.file, '') AND s.result = 'success') ORDER BY t.created_at DESC, t.job_id, t.node_index, t.seq LIMIT $3",
            of_alias("t", TEST_COLUMNS)
        )))
        .bind(project_id)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(test_row).collect()
    }

    /// The number of a project's latest build job, of a branch and with one
    /// of `statuses` when given.
    pub async fn latest_job_number(
        &self,
        project_id: &str,
        branch: Option<&str>,
        statuses: Option<&[&str]>,
    ) -> Result<Option<i64>> {
        let mut sql = String::from(
            "SELECT j.number AS number FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id WHERE j.project_id = $1 AND j.job_type = 'build' AND j.number IS NOT NULL",
        );
        let mut n = 1;
        if branch.is_some() {
            n += 1;
            sql.push_str(&format!(" AND p.branch = ${n}"));
        }
        if let Some(list) = statuses {
            let marks: Vec<String> = list
                .iter()
                .map(|_| {
                    n += 1;
                    format!("${n}")
                })
                .collect();
            sql.push_str(&format!(" AND j.status IN ({})", marks.join(", ")));
        }
        sql.push_str(" ORDER BY j.number DESC LIMIT 1");
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(project_id);
        if let Some(b) = branch {
            q = q.bind(b);
        }
        for s in statuses.unwrap_or_default() {
            q = q.bind(*s);
        }
        let row = q.fetch_optional(&self.pool).await?;
        row.map(|r| get(&r, "number")).transpose()
    }

    // ---- retention ----

    /// Cache claims (`saving`) made before `before` whose saver never
    /// finished.
    pub async fn stale_cache_claims(&self, before: Millis, limit: i64) -> Result<Vec<CacheEntry>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CACHE_COLUMNS} FROM caches WHERE state = 'saving' AND created_at < $1 ORDER BY created_at LIMIT $2"
        )))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(cache_row).collect()
    }

    /// Deletes a claim if it still is the stale one for `object`.
    pub async fn delete_cache_claim(
        &self,
        project_id: &str,
        key: &str,
        object: &str,
        before: Millis,
    ) -> Result<bool> {
        let done = sqlx::query("DELETE FROM caches WHERE project_id = $1 AND key = $2 AND object = $3 AND state = 'saving' AND created_at < $4")
            .bind(project_id)
            .bind(key)
            .bind(object)
            .bind(before)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks a ready cache `deleting` if it still is `object` and unused
    /// since `before`: lookups and saves no longer see it.
    pub async fn mark_cache_deleting(
        &self,
        project_id: &str,
        key: &str,
        object: &str,
        before: Millis,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE caches SET state = 'deleting' WHERE project_id = $1 AND key = $2 AND object = $3 AND state = 'ready' AND last_used_at < $4")
            .bind(project_id)
            .bind(key)
            .bind(object)
            .bind(before)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Caches marked `deleting` whose deletion has not finished.
    pub async fn deleting_caches(&self, limit: i64) -> Result<Vec<CacheEntry>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CACHE_COLUMNS} FROM caches WHERE state = 'deleting' ORDER BY last_used_at LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(cache_row).collect()
    }

    /// Deletes the row of a cache marked `deleting`.
    pub async fn delete_cache_row(
        &self,
        project_id: &str,
        key: &str,
        object: &str,
    ) -> Result<bool> {
        let done = sqlx::query("DELETE FROM caches WHERE project_id = $1 AND key = $2 AND object = $3 AND state = 'deleting'")
            .bind(project_id)
            .bind(key)
            .bind(object)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes an artifact's row if it still names `object`.
    pub async fn delete_artifact_object(&self, a: &Artifact) -> Result<bool> {
        let done = sqlx::query("DELETE FROM artifacts WHERE job_id = $1 AND node_index = $2 AND path = $3 AND object = $4")
            .bind(&a.job_id)
            .bind(a.node_index)
            .bind(&a.path)
            .bind(&a.object)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether a workspace is (again) in use: a workflow of it is running or
    /// ended at or after `before`, or a layer was added since.
    pub async fn workspace_in_use(&self, workspace_id: &str, before: Millis) -> Result<bool> {
        let row = sqlx::query("SELECT (SELECT COUNT(*) FROM workflows WHERE workspace_id = $1 AND (stopped_at IS NULL OR stopped_at >= $2)) + (SELECT COUNT(*) FROM workspace_layers WHERE workspace_id = $1 AND created_at >= $2) AS n")
            .bind(workspace_id)
            .bind(before)
            .fetch_one(&self.pool)
            .await?;
        Ok(get::<i64>(&row, "n")? > 0)
    }

    /// Tasks that finished before `before` and still have step output.
    pub async fn tasks_with_output_before(
        &self,
        before: Millis,
        limit: i64,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT t.id AS id FROM tasks t WHERE t.finished_at IS NOT NULL AND t.finished_at < $1 AND EXISTS (SELECT 1 FROM output o WHERE o.task_id = t.id) ORDER BY t.finished_at LIMIT $2")
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| get(r, "id")).collect()
    }

    /// Deletes a task's step output; the bytes deleted.
    pub async fn delete_output(&self, task_id: &str) -> Result<i64> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(
            "SELECT COALESCE(SUM(LENGTH(data)), 0) AS n FROM output WHERE task_id = $1",
        )
        .bind(task_id)
        .fetch_one(&mut *tx)
        .await?;
        let bytes: i64 = get(&row, "n")?;
        sqlx::query("DELETE FROM output WHERE task_id = $1")
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(bytes)
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
