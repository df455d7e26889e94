//! Retention and garbage collection of task storage.
//!
//! Each kind has a retention period ([`Retention`]), CircleCI's defaults
//! unless configured: artifacts 30 days after they were stored, workspaces
//! 15 days after their workflows last ran, caches 15 days after they were
//! last saved or restored, test results 90 days (what insights and timings
//! look at), step output kept unless a period is set.
//!
//! [`run`] sweeps every [`Retention::sweep_every`]; [`sweep`] is one pass,
//! for a given "now" (tests pass one in the future). A pass deletes objects
//! first and their rows after, so a failed deletion is retried by the next
//! pass and never leaves a row naming a missing object. It never takes what a
//! running job may still use:
//!
//! - a workspace goes only when none of the workflows sharing it (reruns
//!   share it) is running or on hold, or ended within the period; it is
//!   checked again right before its layers go;
//! - a cache is first marked `deleting` in one conditional update (only if
//!   it is still the same object and still unused since the cut-off, and
//!   never within [`CACHE_GRACE`] of a restore), which hides it from lookups
//!   and saves; then its object goes, then its row. A pass that fails half
//!   way leaves `deleting` rows that the next pass finishes;
//! - a cache claim whose saver died (`saving` for over [`STALE_CLAIM`]) is
//!   removed with whatever it uploaded.
//!
//! Once a day [`sweep_orphans`] removes objects no row names that are older
//! than [`ORPHAN_AGE`]: uploads whose row was never written because the
//! server stopped in between.

use std::sync::Arc;
use std::time::Duration;

use orrery_store::{Millis, StoreError, now_ms};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::AppState;

pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// A cache restored (or saved) within this long is never deleted, whatever
/// its retention.
pub const CACHE_GRACE: Duration = Duration::from_secs(3600);

/// A cache claim older than this belongs to a saver that died.
pub const STALE_CLAIM: Duration = Duration::from_secs(2 * 3600);

/// Rows read per query of a pass.
const BATCH: i64 = 500;
/// Batches of one kind per pass (the rest waits for the next pass).
const MAX_BATCHES: usize = 200;

/// How long each kind is kept; `None` keeps it forever.
#[derive(Clone, Debug, PartialEq)]
pub struct Retention {
    pub artifacts: Option<Duration>,
    pub workspaces: Option<Duration>,
    pub caches: Option<Duration>,
    pub test_results: Option<Duration>,
    pub output: Option<Duration>,
    /// How often the sweeper runs.
    pub sweep_every: Duration,
}

impl Default for Retention {
    /// CircleCI's defaults; step output is kept.
    fn default() -> Self {
        Retention {
            artifacts: Some(DAY * 30),
            workspaces: Some(DAY * 15),
            caches: Some(DAY * 15),
            test_results: Some(DAY * 90),
            output: None,
            sweep_every: Duration::from_secs(300),
        }
    }
}

/// A number of days (fractions allowed) as a duration.
pub fn days(n: f64) -> Duration {
    Duration::from_secs_f64(n.max(0.0) * DAY.as_secs_f64())
}

/// Parses a retention setting: a number of days, or `forever`.
pub fn parse_days(s: &str) -> Result<Option<Duration>, String> {
    let s = s.trim();
    if matches!(s, "forever" | "never" | "keep") {
        return Ok(None);
    }
    match s.parse::<f64>() {
        Ok(n) if (0.0..=100_000.0).contains(&n) => Ok(Some(days(n))),
        _ => Err(format!(
            "`{s}` is not a number of days (0 or more) or `forever`"
        )),
    }
}

fn as_days(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.as_secs_f64() / DAY.as_secs_f64()))
}

impl Retention {
    /// The periods in days (`null`: kept forever), for the API.
    pub fn to_json(&self) -> Value {
        json!({
            "artifacts": as_days(self.artifacts),
            "workspaces": as_days(self.workspaces),
            "caches": as_days(self.caches),
            "test_results": as_days(self.test_results),
            "output": as_days(self.output),
        })
    }
}

/// What a pass removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    pub artifacts: u64,
    pub artifact_bytes: u64,
    pub caches: u64,
    pub cache_bytes: u64,
    pub cache_claims: u64,
    pub workspaces: u64,
    pub workspace_layers: u64,
    pub workspace_bytes: u64,
    pub test_results: u64,
    pub output_tasks: u64,
    pub output_bytes: u64,
    /// Objects that could not be deleted (left for the next pass).
    pub errors: u64,
}

impl Swept {
    pub fn is_empty(&self) -> bool {
        *self == Swept::default()
    }
}

fn cutoff(now: Millis, keep: Duration) -> Millis {
    now.saturating_sub(keep.as_millis().min(i64::MAX as u128) as i64)
}

/// Objects older than this that no row names are removed by
/// [`sweep_orphans`]; an upload writes its row right after its object.
pub const ORPHAN_AGE: Duration = DAY;

/// Removes the objects under task storage's prefixes that are older than
/// [`ORPHAN_AGE`] at `now` and that no row names; how many.
pub async fn sweep_orphans(state: &AppState, now: Millis) -> Result<u64, StoreError> {
    let before = cutoff(now, ORPHAN_AGE);
    let mut removed = 0;
    for prefix in ["caches", "workspaces", "artifacts"] {
        let listed = match state.blobs.list(prefix).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(prefix, error = %e, "cannot list objects; the next orphan sweep retries");
                continue;
            }
        };
        let old: Vec<_> = listed.into_iter().filter(|o| o.modified < before).collect();
        if old.is_empty() {
            continue;
        }
        // Read after the listing: a row written meanwhile is seen.
        let named = state.store.referenced_objects().await?;
        for o in old.iter().filter(|o| !named.contains(&o.key)) {
            match state.blobs.delete(&o.key).await {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(object = %o.key, error = %e, "cannot delete an orphaned object")
                }
            }
        }
    }
    Ok(removed)
}

/// One pass over every kind, as of `now`.
pub async fn sweep(
    state: &AppState,
    retention: &Retention,
    now: Millis,
) -> Result<Swept, StoreError> {
    let mut out = Swept::default();
    if let Some(keep) = retention.artifacts {
        sweep_artifacts(state, cutoff(now, keep), &mut out).await?;
    }
    if let Some(keep) = retention.caches {
        sweep_caches(state, cutoff(now, keep.max(CACHE_GRACE)), &mut out).await?;
    }
    // Half-finished deletions and dead savers, whatever the settings.
    finish_cache_deletions(state, &mut out).await?;
    sweep_stale_claims(state, cutoff(now, STALE_CLAIM), &mut out).await?;
    if let Some(keep) = retention.workspaces {
        sweep_workspaces(state, cutoff(now, keep), &mut out).await?;
    }
    if let Some(keep) = retention.test_results {
        out.test_results += state
            .store
            .delete_test_results_before(cutoff(now, keep))
            .await?;
    }
    if let Some(keep) = retention.output {
        sweep_output(state, cutoff(now, keep), &mut out).await?;
    }
    Ok(out)
}

/// Deletes an object; `false` (logged, counted) when that failed.
async fn delete_object(state: &AppState, object: &str, out: &mut Swept) -> bool {
    match state.blobs.delete(object).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(object, error = %e, "cannot delete an expired object; the next sweep retries");
            out.errors += 1;
            false
        }
    }
}

async fn sweep_artifacts(
    state: &AppState,
    before: Millis,
    out: &mut Swept,
) -> Result<(), StoreError> {
    for _ in 0..MAX_BATCHES {
        let batch = state.store.expired_artifacts(before, BATCH).await?;
        let mut progress = false;
        for a in &batch {
            if delete_object(state, &a.object, out).await
                && state.store.delete_artifact_object(a).await?
            {
                out.artifacts += 1;
                out.artifact_bytes += a.size.max(0) as u64;
                progress = true;
            }
        }
        if (batch.len() as i64) < BATCH || !progress {
            break;
        }
    }
    Ok(())
}

async fn sweep_caches(state: &AppState, before: Millis, out: &mut Swept) -> Result<(), StoreError> {
    for _ in 0..MAX_BATCHES {
        let batch = state.store.unused_caches(before, BATCH).await?;
        let mut progress = false;
        for c in &batch {
            if !state
                .store
                .mark_cache_deleting(&c.project_id, &c.key, &c.object, before)
                .await?
            {
                continue; // restored meanwhile, or saved anew
            }
            progress = true;
            if delete_object(state, &c.object, out).await
                && state
                    .store
                    .delete_cache_row(&c.project_id, &c.key, &c.object)
                    .await?
            {
                out.caches += 1;
                out.cache_bytes += c.size.max(0) as u64;
            }
        }
        if (batch.len() as i64) < BATCH || !progress {
            break;
        }
    }
    Ok(())
}

async fn finish_cache_deletions(state: &AppState, out: &mut Swept) -> Result<(), StoreError> {
    for _ in 0..MAX_BATCHES {
        let batch = state.store.deleting_caches(BATCH).await?;
        let mut progress = false;
        for c in &batch {
            if delete_object(state, &c.object, out).await
                && state
                    .store
                    .delete_cache_row(&c.project_id, &c.key, &c.object)
                    .await?
            {
                out.caches += 1;
                out.cache_bytes += c.size.max(0) as u64;
                progress = true;
            }
        }
        if (batch.len() as i64) < BATCH || !progress {
            break;
        }
    }
    Ok(())
}

async fn sweep_stale_claims(
    state: &AppState,
    before: Millis,
    out: &mut Swept,
) -> Result<(), StoreError> {
    for _ in 0..MAX_BATCHES {
        let batch = state.store.stale_cache_claims(before, BATCH).await?;
        let mut progress = false;
        for c in &batch {
            if delete_object(state, &c.object, out).await
                && state
                    .store
                    .delete_cache_claim(&c.project_id, &c.key, &c.object, before)
                    .await?
            {
                out.cache_claims += 1;
                progress = true;
            }
        }
        if (batch.len() as i64) < BATCH || !progress {
            break;
        }
    }
    Ok(())
}

async fn sweep_workspaces(
    state: &AppState,
    before: Millis,
    out: &mut Swept,
) -> Result<(), StoreError> {
    for _ in 0..MAX_BATCHES {
        let batch = state.store.expired_workspaces(before, BATCH).await?;
        let mut progress = false;
        for id in &batch {
            if state.store.workspace_in_use(id, before).await? {
                continue;
            }
            let mut whole = true;
            for layer in state.store.layers_of_workspace(id).await? {
                if delete_object(state, &layer.object, out).await {
                    state
                        .store
                        .delete_workspace_layer(&layer.workspace_id, &layer.job_name, layer.seq)
                        .await?;
                    out.workspace_layers += 1;
                    out.workspace_bytes += layer.size.max(0) as u64;
                    progress = true;
                } else {
                    whole = false;
                }
            }
            if whole {
                out.workspaces += 1;
            }
        }
        if (batch.len() as i64) < BATCH || !progress {
            break;
        }
    }
    Ok(())
}

async fn sweep_output(state: &AppState, before: Millis, out: &mut Swept) -> Result<(), StoreError> {
    for _ in 0..MAX_BATCHES {
        let batch = state.store.tasks_with_output_before(before, BATCH).await?;
        for task in &batch {
            out.output_bytes += state.store.delete_output(task).await?.max(0) as u64;
            out.output_tasks += 1;
        }
        if (batch.len() as i64) < BATCH {
            break;
        }
    }
    Ok(())
}

/// Sweeps every [`Retention::sweep_every`], the first time one interval
/// after the start, until `shutdown`; a pass in progress stops there too
/// (what it did not reach waits for the next pass).
pub async fn run(state: Arc<AppState>, shutdown: CancellationToken) {
    let every = state.retention.sweep_every.max(Duration::from_secs(1));
    let mut next = tokio::time::Instant::now() + every;
    let mut orphans_next = tokio::time::Instant::now() + every;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let pass = sweep(&state, &state.retention, now_ms());
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = pass => r,
        };
        match result {
            Ok(swept) if swept.is_empty() => tracing::debug!("retention sweep: nothing expired"),
            Ok(swept) => tracing::info!(?swept, "retention sweep"),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; retrying next time"),
        }
        if tokio::time::Instant::now() >= orphans_next {
            let pass = sweep_orphans(&state, now_ms());
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = pass => r,
            };
            match result {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "orphaned objects removed"),
                Err(e) => tracing::warn!(error = %e, "orphan sweep failed; retrying tomorrow"),
            }
            orphans_next = tokio::time::Instant::now() + DAY;
        }
        next = tokio::time::Instant::now() + every;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        assert_eq!(parse_days("30"), Ok(Some(DAY * 30)));
        assert_eq!(parse_days("0"), Ok(Some(Duration::ZERO)));
        assert_eq!(parse_days("0.5"), Ok(Some(DAY / 2)));
        assert_eq!(parse_days("forever"), Ok(None));
        assert!(parse_days("-1").is_err());
        assert!(parse_days("soon").is_err());
        let r = Retention::default();
        assert_eq!(
            r.to_json(),
            json!({"artifacts": 30.0, "workspaces": 15.0, "caches": 15.0, "test_results": 90.0, "output": null})
        );
    }
}
