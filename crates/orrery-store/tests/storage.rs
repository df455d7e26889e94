//! The storage index's insights and retention queries on a real SQLite file:
//! which failures make a test flaky, and the cache deletion that hides a
//! cache before its object goes.

use orrery_store::*;

async fn store(dir: &tempfile::TempDir) -> Store {
    let url = format!("sqlite://{}", dir.path().join("orrery.db").display());
    Store::connect(&url).await.unwrap()
}

fn row(job: &str, revision: &str, name: &str, file: Option<&str>, result: &str) -> TestRow {
    TestRow {
        project_id: "p".into(),
        job_id: job.into(),
        job_name: "test".into(),
        workflow_name: "main".into(),
        node_index: 0,
        branch: "main".into(),
        revision: revision.into(),
        classname: "suite".into(),
        name: name.into(),
        file: file.map(str::to_string),
        result: result.into(),
        run_time: 0.5,
        message: None,
        source: "junit.xml".into(),
        created_at: now_ms(),
    }
}

#[tokio::test]
async fn flaky_means_failed_and_passed_on_one_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let since = now_ms() - 3_600_000;
    // Job j1 on revision r1: `flaky` fails, `broken` fails, `moved` fails
    // (its file differs in the pass), `errs` errors, `late` fails.
    s.set_test_results(
        "j1",
        0,
        &[
            row("j1", "r1", "flaky", Some("t/a"), "failure"),
            row("j1", "r1", "broken", None, "failure"),
            row("j1", "r1", "moved", Some("t/old"), "failure"),
            row("j1", "r1", "errs", None, "error"),
            row("j1", "r1", "late", None, "failure"),
        ],
    )
    .await
    .unwrap();
    // Job j2, the same revision: they pass except `broken`; `moved` passes
    // in another file.
    s.set_test_results(
        "j2",
        0,
        &[
            row("j2", "r1", "flaky", Some("t/a"), "success"),
            row("j2", "r1", "broken", None, "failure"),
            row("j2", "r1", "moved", Some("t/new"), "success"),
            row("j2", "r1", "errs", None, "success"),
        ],
    )
    .await
    .unwrap();
    // `late` passes only on another revision; a job of another name passes
    // `broken` on r1.
    s.set_test_results("j3", 0, &[row("j3", "r2", "late", None, "success")])
        .await
        .unwrap();
    let mut other = row("j4", "r1", "broken", None, "success");
    other.job_name = "lint".into();
    s.set_test_results("j4", 0, &[other]).await.unwrap();

    let flakes = s.flaky_failures("p", since, 100).await.unwrap();
    let mut names: Vec<(&str, &str)> = flakes
        .iter()
        .map(|r| (r.name.as_str(), r.result.as_str()))
        .collect();
    names.sort();
    assert_eq!(names, [("errs", "error"), ("flaky", "failure")]);
    assert!(flakes.iter().all(|r| r.job_id == "j1"));
    // Outside the window, or of another project, nothing.
    assert!(
        s.flaky_failures("p", now_ms() + 1000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.flaky_failures("q", since, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_cache_being_deleted_is_gone_for_lookups_and_saves() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    assert!(s.claim_cache("p", "deps-v1", "caches/p/1").await.unwrap());
    s.finish_cache("p", "deps-v1", "caches/p/1", 10, "ab")
        .await
        .unwrap();
    let later = now_ms() + 1000;
    // Not if it is another object now, nor if used since the cut-off.
    assert!(
        !s.mark_cache_deleting("p", "deps-v1", "caches/p/0", later)
            .await
            .unwrap()
    );
    assert!(
        !s.mark_cache_deleting("p", "deps-v1", "caches/p/1", now_ms() - 60_000)
            .await
            .unwrap()
    );
    assert!(
        s.mark_cache_deleting("p", "deps-v1", "caches/p/1", later)
            .await
            .unwrap()
    );
    // Hidden from lookups, and the key cannot be saved meanwhile.
    assert_eq!(s.find_cache("p", "deps").await.unwrap(), None);
    assert!(s.unused_caches(later, 10).await.unwrap().is_empty());
    assert!(!s.claim_cache("p", "deps-v1", "caches/p/2").await.unwrap());
    let deleting = s.deleting_caches(10).await.unwrap();
    assert_eq!(deleting.len(), 1);
    assert_eq!(deleting[0].object, "caches/p/1");
    assert_eq!(s.storage_usage("p").await.unwrap().caches, 0);
    // Then the row goes, and the key is free again.
    assert!(
        s.delete_cache_row("p", "deps-v1", "caches/p/1")
            .await
            .unwrap()
    );
    assert!(s.deleting_caches(10).await.unwrap().is_empty());
    assert!(s.claim_cache("p", "deps-v1", "caches/p/2").await.unwrap());
    // A claim left `saving` is stale only before the cut-off.
    assert!(
        s.stale_cache_claims(now_ms() - 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let stale = s.stale_cache_claims(later, 10).await.unwrap();
    assert_eq!(stale.len(), 1);
    assert!(
        s.delete_cache_claim("p", "deps-v1", "caches/p/2", later)
            .await
            .unwrap()
    );
    assert_eq!(s.cache("p", "deps-v1").await.unwrap(), None);
}
