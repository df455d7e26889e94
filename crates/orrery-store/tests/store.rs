//! The store on a real SQLite file: every operation, its edge cases, and that
//! everything survives reopening the database.

use orrery_store::*;

async fn store(dir: &tempfile::TempDir) -> Store {
    let url = format!("sqlite://{}", dir.path().join("orrery.db").display());
    Store::connect(&url).await.unwrap()
}

fn new_project(slug: &str) -> NewProject {
    NewProject {
        org_name: "acme".into(),
        vcs_type: "github".into(),
        name: slug.rsplit('/').next().unwrap().into(),
        slug: slug.into(),
        vcs_provider: "github".into(),
        repo_url: "file:///tmp/repo".into(),
        default_branch: "main".into(),
        webhook_secret: b"encrypted-secret".to_vec(),
        vcs_token: None,
    }
}

fn new_pipeline() -> NewPipeline {
    NewPipeline {
        state: "created".into(),
        trigger_type: "api".into(),
        trigger_actor: "admin".into(),
        received_at: now_ms(),
        branch: Some("main".into()),
        revision: "a".repeat(40),
        origin_repo_url: "file:///tmp/repo".into(),
        parameters: "{}".into(),
        ..Default::default()
    }
}

fn workflow(project: &Project, pipeline: &Pipeline) -> Workflow {
    Workflow {
        id: new_id(),
        pipeline_id: pipeline.id.clone(),
        project_id: project.id.clone(),
        name: "main".into(),
        status: "running".into(),
        tag: None,
        created_at: now_ms(),
        stopped_at: None,
        started_by: "admin".into(),
        canceled_by: None,
        workspace_id: new_id(),
        rerun_of: None,
        plan: "{}".into(),
        run_state: "{}".into(),
        version: 0,
    }
}

fn job(w: &Workflow, name: &str, job_type: &str) -> Job {
    Job {
        id: new_id(),
        workflow_id: w.id.clone(),
        pipeline_id: w.pipeline_id.clone(),
        project_id: w.project_id.clone(),
        name: name.into(),
        number: None,
        job_type: job_type.into(),
        status: "blocked".into(),
        parallelism: 1,
        job: "null".into(),
        contexts: "[]".into(),
        dependencies: "[]".into(),
        created_at: now_ms(),
        queued_at: None,
        started_at: None,
        stopped_at: None,
        approved_by: None,
        approval_request_id: None,
        canceled_by: None,
        position: 0,
    }
}

fn task(job: &Job, class: &str) -> Task {
    Task {
        id: new_id(),
        job_id: job.id.clone(),
        node_index: 0,
        attempt: 1,
        state: "queued".into(),
        result: None,
        resource_class: class.into(),
        runner_id: None,
        lease_until: None,
        cancel_requested: false,
        created_at: now_ms(),
        claimed_at: None,
        finished_at: None,
    }
}

#[tokio::test]
async fn users_tokens_projects_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    assert_eq!(s.count_users().await.unwrap(), 0);
    let admin = s.create_user("admin", "Admin", Role::Admin).await.unwrap();
    assert!(matches!(
        s.create_user("admin", "x", Role::Viewer).await,
        Err(StoreError::Conflict(_))
    ));
    s.create_token(&admin.id, "hash-1", "cli").await.unwrap();
    assert_eq!(
        s.user_by_token_hash("hash-1").await.unwrap().unwrap().id,
        admin.id
    );
    assert!(s.user_by_token_hash("hash-2").await.unwrap().is_none());

    let p = s.create_project(new_project("gh/acme/app")).await.unwrap();
    assert!(matches!(
        s.create_project(new_project("gh/acme/app")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.project_by_slug("gh/acme/app").await.unwrap().unwrap().id,
        p.id
    );
    s.set_env(&p.id, "TOKEN", b"enc-1").await.unwrap();
    s.set_env(&p.id, "TOKEN", b"enc-2").await.unwrap();
    s.set_env(&p.id, "A", b"enc-a").await.unwrap();
    let env = s.env(&p.id).await.unwrap();
    assert_eq!(
        env.iter()
            .map(|e| (e.name.as_str(), e.value.as_slice()))
            .collect::<Vec<_>>(),
        [("A", &b"enc-a"[..]), ("TOKEN", &b"enc-2"[..])]
    );
    assert!(s.delete_env(&p.id, "A").await.unwrap());
    assert!(!s.delete_env(&p.id, "A").await.unwrap());
}

#[tokio::test]
async fn pipeline_numbers_are_unique_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let p = s.create_project(new_project("gh/acme/app")).await.unwrap();
    let mut handles = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        let pid = p.id.clone();
        handles.push(tokio::spawn(async move {
            s.create_pipeline(&pid, new_pipeline())
                .await
                .unwrap()
                .number
        }));
    }
    let mut numbers = Vec::new();
    for h in handles {
        numbers.push(h.await.unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, (1..=20).collect::<Vec<_>>());
    let page = s.pipelines(Some(&p.id), None, None, 5).await.unwrap();
    assert_eq!(page.len(), 5);
    let last = page.last().unwrap();
    let next = s
        .pipelines(
            Some(&p.id),
            None,
            Some((last.created_at, last.id.clone())),
            100,
        )
        .await
        .unwrap();
    assert_eq!(next.len(), 15);
    assert!(
        next.iter().all(|p| !page.iter().any(|q| q.id == p.id)),
        "pages do not overlap"
    );
    assert!(
        s.pipelines(Some(&p.id), Some("other"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn workflows_jobs_and_optimistic_updates() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let p = s.create_project(new_project("gh/acme/app")).await.unwrap();
    let pl = s.create_pipeline(&p.id, new_pipeline()).await.unwrap();
    let w = workflow(&p, &pl);
    let mut jobs = vec![
        job(&w, "build", "build"),
        job(&w, "hold", "approval"),
        job(&w, "deploy", "build"),
    ];
    let t = task(&jobs[0], "orrery/default");
    s.insert_workflow(&w, &mut jobs, std::slice::from_ref(&t))
        .await
        .unwrap();
    assert_eq!(jobs[0].number, Some(1));
    assert_eq!(jobs[1].number, None, "approvals have no number");
    assert_eq!(jobs[2].number, Some(2));
    assert_eq!(
        s.job_by_number(&p.id, 2).await.unwrap().unwrap().name,
        "deploy"
    );

    let update = JobUpdate {
        id: jobs[0].id.clone(),
        status: "success".into(),
        stopped_at: Some(now_ms()),
        ..Default::default()
    };
    assert!(
        s.update_workflow(
            &w.id,
            0,
            "running",
            Some("{\"v\":1}"),
            None,
            None,
            std::slice::from_ref(&update),
            &[]
        )
        .await
        .unwrap()
    );
    // A second writer that read version 0 loses and changes nothing.
    assert!(
        !s.update_workflow(&w.id, 0, "failed", Some("{\"v\":2}"), None, None, &[], &[])
            .await
            .unwrap()
    );
    let w2 = s.workflow(&w.id).await.unwrap().unwrap();
    assert_eq!(
        (w2.version, w2.status.as_str(), w2.run_state.as_str()),
        (1, "running", "{\"v\":1}")
    );
    assert_eq!(s.job(&jobs[0].id).await.unwrap().unwrap().status, "success");
}

#[tokio::test]
async fn queue_claims_leases_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let p = s.create_project(new_project("gh/acme/app")).await.unwrap();
    let pl = s.create_pipeline(&p.id, new_pipeline()).await.unwrap();
    let w = workflow(&p, &pl);
    let mut jobs = vec![job(&w, "a", "build"), job(&w, "b", "build")];
    let ta = task(&jobs[0], "orrery/default");
    let tb = task(&jobs[1], "team/gpu");
    s.insert_workflow(&w, &mut jobs, &[ta.clone(), tb.clone()])
        .await
        .unwrap();
    let now = now_ms();
    // Only matching resource classes are claimed, each task once.
    let c = s
        .claim_task("r1", &["orrery/default".into()], now + 1000, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.task.id, ta.id);
    assert_eq!(c.job.name, "a");
    assert!(
        s.claim_task("r2", &["orrery/default".into()], now + 1000, now)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.queue_depth().await.unwrap(),
        [("team/gpu".to_string(), 1)]
    );
    // Heartbeats extend only the holder's lease.
    assert!(
        s.heartbeat(&ta.id, "r2", now + 5000)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.heartbeat(&ta.id, "r1", now + 5000)
            .await
            .unwrap()
            .unwrap()
            .lease_until,
        Some(now + 5000)
    );
    // Output chunks are idempotent.
    assert!(s.append_output(&ta.id, 2, 0, b"hello ").await.unwrap());
    assert!(s.append_output(&ta.id, 2, 1, b"world").await.unwrap());
    assert!(!s.append_output(&ta.id, 2, 1, b"world").await.unwrap());
    let out: Vec<u8> = s
        .output(&ta.id, 2, 0)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|(_, d)| d)
        .collect();
    assert_eq!(out, b"hello world");
    assert_eq!(s.output_marks(&ta.id).await.unwrap(), [(2, 1)]);
    // A lost lease shows up as expired; a new attempt is queued.
    assert_eq!(s.expired_tasks(now + 6000).await.unwrap().len(), 1);
    assert!(
        s.finish_task(&ta.id, Some("r2"), "success", now)
            .await
            .unwrap()
            .is_none(),
        "not the holder"
    );
    assert!(
        s.finish_task(&ta.id, None, "infrastructure_fail", now)
            .await
            .unwrap()
            .is_some()
    );
    let retry = s
        .requeue(&s.task(&ta.id).await.unwrap().unwrap())
        .await
        .unwrap();
    assert_eq!(retry.attempt, 2);
    let again = s
        .claim_task("r1", &["orrery/default".into()], now + 1000, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.task.id, retry.id);
    // Cancel ends queued tasks and flags running ones.
    s.request_cancel(&jobs[1].id, now).await.unwrap();
    assert_eq!(
        s.task(&tb.id).await.unwrap().unwrap().result.as_deref(),
        Some("canceled")
    );
    s.request_cancel(&jobs[0].id, now).await.unwrap();
    assert!(
        s.heartbeat(&retry.id, "r1", now + 9000)
            .await
            .unwrap()
            .unwrap()
            .cancel_requested
    );
}

#[tokio::test]
async fn concurrent_claims_never_double_claim() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let p = s.create_project(new_project("gh/acme/app")).await.unwrap();
    let pl = s.create_pipeline(&p.id, new_pipeline()).await.unwrap();
    let w = workflow(&p, &pl);
    let mut jobs: Vec<Job> = (0..50)
        .map(|i| job(&w, &format!("j{i}"), "build"))
        .collect();
    let tasks: Vec<Task> = jobs.iter().map(|j| task(j, "orrery/default")).collect();
    s.insert_workflow(&w, &mut jobs, &tasks).await.unwrap();
    let mut handles = Vec::new();
    for r in 0..8 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(c) = s
                .claim_task(
                    &format!("r{r}"),
                    &["orrery/default".into()],
                    now_ms() + 60_000,
                    now_ms(),
                )
                .await
                .unwrap()
            {
                mine.push(c.task.id);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, 50);
    assert_eq!(all.len(), 50);
}

#[tokio::test]
async fn continuation_keys_and_schedules_are_single_use() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let p = s.create_project(new_project("gh/acme/app")).await.unwrap();
    let pl = s.create_pipeline(&p.id, new_pipeline()).await.unwrap();
    let now = now_ms();
    s.set_continuation(&pl.id, Some("key-hash"), Some(now + 1000))
        .await
        .unwrap();
    assert!(
        s.take_continuation("key-hash", now + 2000)
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert_eq!(
        s.take_continuation("key-hash", now)
            .await
            .unwrap()
            .unwrap()
            .id,
        pl.id
    );
    assert!(
        s.take_continuation("key-hash", now)
            .await
            .unwrap()
            .is_none(),
        "used"
    );
    assert!(
        s.claim_schedule_fire(&p.id, "nightly", "main", 42)
            .await
            .unwrap()
    );
    assert!(
        !s.claim_schedule_fire(&p.id, "nightly", "main", 42)
            .await
            .unwrap()
    );
    assert!(
        s.claim_schedule_fire(&p.id, "nightly", "main", 43)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let pid = {
        let s = store(&dir).await;
        let p = s.create_project(new_project("gh/acme/app")).await.unwrap();
        s.create_pipeline(&p.id, new_pipeline()).await.unwrap();
        s.set_setting("admin_created", "yes").await.unwrap();
        p.id
    };
    let s = store(&dir).await;
    assert_eq!(
        s.pipeline_by_number(&pid, 1)
            .await
            .unwrap()
            .unwrap()
            .branch
            .as_deref(),
        Some("main")
    );
    assert_eq!(
        s.setting("admin_created").await.unwrap().as_deref(),
        Some("yes")
    );
    assert_eq!(
        s.create_pipeline(&pid, new_pipeline())
            .await
            .unwrap()
            .number,
        2
    );
}
