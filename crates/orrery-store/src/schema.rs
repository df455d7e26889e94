//! The schema, as numbered migrations applied in order at start.
//!
//! Written in the SQL that SQLite and Postgres share: `TEXT`, `BIGINT`,
//! `BLOB`/`BYTEA` through the driver's type mapping, times as Unix
//! milliseconds, ids as UUID text, `$N` placeholders in queries.

pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    vcs_type TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    token_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    vcs_provider TEXT NOT NULL,
    repo_url TEXT NOT NULL,
    default_branch TEXT NOT NULL,
    webhook_secret BLOB NOT NULL,
    vcs_token BLOB,
    settings TEXT NOT NULL,
    pipeline_counter BIGINT NOT NULL,
    job_counter BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE project_env (
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    value BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, name)
);
CREATE TABLE pipelines (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    number BIGINT NOT NULL,
    state TEXT NOT NULL,
    trigger_type TEXT NOT NULL,
    trigger_actor TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    branch TEXT,
    tag TEXT,
    revision TEXT NOT NULL,
    commit_subject TEXT,
    commit_body TEXT,
    origin_repo_url TEXT NOT NULL,
    review_id TEXT,
    review_url TEXT,
    parameters TEXT NOT NULL,
    config_source TEXT,
    config_compiled TEXT,
    setup_config_source TEXT,
    setup_config_compiled TEXT,
    errors TEXT NOT NULL,
    continuation_key_hash TEXT,
    continuation_expires_at BIGINT,
    UNIQUE (project_id, number)
);
CREATE INDEX pipelines_by_project ON pipelines (project_id, number);
CREATE TABLE workflows (
    id TEXT PRIMARY KEY,
    pipeline_id TEXT NOT NULL REFERENCES pipelines(id),
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    tag TEXT,
    created_at BIGINT NOT NULL,
    stopped_at BIGINT,
    started_by TEXT NOT NULL,
    canceled_by TEXT,
    workspace_id TEXT NOT NULL,
    rerun_of TEXT,
    plan TEXT NOT NULL,
    run_state TEXT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX workflows_by_pipeline ON workflows (pipeline_id);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL REFERENCES workflows(id),
    pipeline_id TEXT NOT NULL REFERENCES pipelines(id),
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    number BIGINT,
    job_type TEXT NOT NULL,
    status TEXT NOT NULL,
    parallelism BIGINT NOT NULL,
    job TEXT NOT NULL,
    contexts TEXT NOT NULL,
    dependencies TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    queued_at BIGINT,
    started_at BIGINT,
    stopped_at BIGINT,
    approved_by TEXT,
    approval_request_id TEXT,
    canceled_by TEXT,
    position BIGINT NOT NULL,
    UNIQUE (project_id, number)
);
CREATE INDEX jobs_by_workflow ON jobs (workflow_id);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs(id),
    node_index BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    resource_class TEXT NOT NULL,
    runner_id TEXT,
    lease_until BIGINT,
    cancel_requested BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    claimed_at BIGINT,
    finished_at BIGINT
);
CREATE INDEX tasks_queued ON tasks (state, resource_class, created_at);
CREATE INDEX tasks_by_job ON tasks (job_id);
CREATE TABLE steps (
    task_id TEXT NOT NULL REFERENCES tasks(id),
    step_index BIGINT NOT NULL,
    name TEXT NOT NULL,
    background BIGINT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT,
    started_at BIGINT NOT NULL,
    stopped_at BIGINT,
    PRIMARY KEY (task_id, step_index)
);
CREATE TABLE output (
    task_id TEXT NOT NULL REFERENCES tasks(id),
    step_index BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (task_id, step_index, seq)
);
CREATE TABLE resource_classes (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE runner_tokens (
    id TEXT PRIMARY KEY,
    resource_class TEXT NOT NULL REFERENCES resource_classes(name),
    token_hash TEXT NOT NULL UNIQUE,
    nickname TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE runners (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    resource_class TEXT NOT NULL,
    hostname TEXT NOT NULL,
    version TEXT NOT NULL,
    first_connected BIGINT NOT NULL,
    last_connected BIGINT NOT NULL
);
CREATE TABLE schedule_fires (
    project_id TEXT NOT NULL,
    workflow TEXT NOT NULL,
    branch TEXT NOT NULL,
    slot BIGINT NOT NULL,
    PRIMARY KEY (project_id, workflow, branch, slot)
);
CREATE TABLE scheduled_workflows (
    project_id TEXT NOT NULL,
    branch TEXT NOT NULL,
    workflow TEXT NOT NULL,
    cron TEXT NOT NULL,
    revision TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, branch, workflow)
);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    ),
    (
        2,
        // A workflow's plan (every job's compiled config; hundreds of KB for
        // big workflows) never changes: in a table of its own, the updates
        // of the run state on every job result do not rewrite it. And the
        // pipeline lists' order (newest first) gets its indexes.
        r#"
CREATE TABLE workflow_plans (
    workflow_id TEXT PRIMARY KEY REFERENCES workflows(id),
    plan TEXT NOT NULL
);
INSERT INTO workflow_plans (workflow_id, plan) SELECT id, plan FROM workflows;
UPDATE workflows SET plan = '';
CREATE INDEX pipelines_by_project_created ON pipelines (project_id, created_at, id);
CREATE INDEX pipelines_by_created ON pipelines (created_at, id)
"#,
    ),
    (
        3,
        // A claim takes the oldest queued task of a class that is not being
        // canceled, by (created_at, id). All tasks a change queues share
        // their created_at, so an index without `id` (and
        // `cancel_requested`) made each claim visit every task queued with
        // the oldest one (a thousand for a big workflow) and sort them; this
        // one finds it at once. It also serves what the old one did (queue
        // depth, leases by state).
        r#"
CREATE INDEX tasks_claim ON tasks (state, resource_class, cancel_requested, created_at, id);
DROP INDEX tasks_queued
"#,
    ),
    // The index of what is in object storage (numbered apart from the
    // engine's migrations; applied by number, in any order).
    (10, crate::storage::MIGRATION),
    // Passwords and web sessions.
    (11, crate::accounts::MIGRATION),
    // Test cases: the retention sweep deletes by age, and flaky detection
    // looks for the same test on the same revision.
    (
        12,
        r#"
CREATE INDEX test_cases_by_age ON test_cases (created_at);
CREATE INDEX test_cases_by_test ON test_cases (project_id, classname, name, revision)
"#,
    ),
    // When each output chunk arrived (timestamps on the job page).
    (13, "ALTER TABLE output ADD COLUMN received_at BIGINT"),
];
