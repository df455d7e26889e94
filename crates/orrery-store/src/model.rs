//! The rows the store keeps, as plain data.

use serde::{Deserialize, Serialize};

/// Unix milliseconds.
pub type Millis = i64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    /// Whether the role may change things (trigger, cancel, approve, edit).
    pub fn can_write(self) -> bool {
        matches!(self, Role::Admin | Role::Member)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub login: String,
    pub name: String,
    pub role: Role,
    pub created_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub vcs_type: String,
    pub created_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub id: String,
    pub org_id: String,
    pub name: String,
    /// `gh/org/repo` style: vcs slug, organization, repository.
    pub slug: String,
    /// `github`, `gitlab`, `gitea` or `git`.
    pub vcs_provider: String,
    pub repo_url: String,
    pub default_branch: String,
    /// Encrypted by the server; the store never sees it in clear.
    pub webhook_secret: Vec<u8>,
    pub vcs_token: Option<Vec<u8>>,
    /// Project settings as JSON.
    pub settings: String,
    pub created_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProject {
    pub org_name: String,
    pub vcs_type: String,
    pub name: String,
    pub slug: String,
    pub vcs_provider: String,
    pub repo_url: String,
    pub default_branch: String,
    pub webhook_secret: Vec<u8>,
    pub vcs_token: Option<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    /// Encrypted by the server.
    pub value: Vec<u8>,
    pub created_at: Millis,
}

/// A pipeline's state in CircleCI's words: `created`, `errored`,
/// `setup-pending`, `setup`, `pending`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    pub id: String,
    pub project_id: String,
    pub number: i64,
    pub state: String,
    /// `webhook`, `api`, `scheduled_pipeline`, `explicit`.
    pub trigger_type: String,
    pub trigger_actor: String,
    pub received_at: Millis,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub revision: String,
    pub commit_subject: Option<String>,
    pub commit_body: Option<String>,
    pub origin_repo_url: String,
    pub review_id: Option<String>,
    pub review_url: Option<String>,
    /// Pipeline parameters as a JSON object.
    pub parameters: String,
    pub config_source: Option<String>,
    pub config_compiled: Option<String>,
    pub setup_config_source: Option<String>,
    pub setup_config_compiled: Option<String>,
    /// `[{type, message}]` as JSON.
    pub errors: String,
    pub continuation_key_hash: Option<String>,
    pub continuation_expires_at: Option<Millis>,
}

/// What a trigger knows when it creates a pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewPipeline {
    pub state: String,
    pub trigger_type: String,
    pub trigger_actor: String,
    pub received_at: Millis,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub revision: String,
    pub commit_subject: Option<String>,
    pub commit_body: Option<String>,
    pub origin_repo_url: String,
    pub review_id: Option<String>,
    pub review_url: Option<String>,
    pub parameters: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    pub id: String,
    pub pipeline_id: String,
    pub project_id: String,
    pub name: String,
    pub status: String,
    /// `setup` for the workflow of a setup config.
    pub tag: Option<String>,
    pub created_at: Millis,
    pub stopped_at: Option<Millis>,
    pub started_by: String,
    pub canceled_by: Option<String>,
    pub workspace_id: String,
    pub rerun_of: Option<String>,
    /// The compiled workflow (JSON of `orrery_config::Workflow`).
    pub plan: String,
    /// The run state machine (JSON of `orrery_core::WorkflowRun`).
    pub run_state: String,
    /// Bumped by every state change; updates check it (optimistic locking).
    pub version: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub workflow_id: String,
    pub pipeline_id: String,
    pub project_id: String,
    pub name: String,
    /// The project's job number; approvals have none.
    pub number: Option<i64>,
    /// `build` or `approval`.
    pub job_type: String,
    pub status: String,
    pub parallelism: i64,
    /// The compiled job (JSON of `orrery_config::Job`), `null` for approvals.
    pub job: String,
    /// Context names as a JSON array.
    pub contexts: String,
    /// Ids of the jobs this one requires, as a JSON array.
    pub dependencies: String,
    pub created_at: Millis,
    pub queued_at: Option<Millis>,
    pub started_at: Option<Millis>,
    pub stopped_at: Option<Millis>,
    pub approved_by: Option<String>,
    pub approval_request_id: Option<String>,
    pub canceled_by: Option<String>,
    /// The job's place in its workflow.
    pub position: i64,
}

/// A change to a job made together with a workflow's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobUpdate {
    pub id: String,
    pub status: String,
    pub queued_at: Option<Millis>,
    pub started_at: Option<Millis>,
    pub stopped_at: Option<Millis>,
    pub approved_by: Option<String>,
    pub canceled_by: Option<String>,
}

/// One task: one parallel node of a job, one attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub job_id: String,
    pub node_index: i64,
    pub attempt: i64,
    /// `queued`, `running`, `finished`.
    pub state: String,
    /// The job status this task ended with.
    pub result: Option<String>,
    pub resource_class: String,
    pub runner_id: Option<String>,
    pub lease_until: Option<Millis>,
    pub cancel_requested: bool,
    pub created_at: Millis,
    pub claimed_at: Option<Millis>,
    pub finished_at: Option<Millis>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub task_id: String,
    pub step_index: i64,
    pub name: String,
    pub background: bool,
    /// `running`, `success`, `failed`, `timedout`, `canceled`, `infrastructure_fail`.
    pub status: String,
    /// JSON of `orrery_core::StepOutcome` once finished.
    pub outcome: Option<String>,
    pub started_at: Millis,
    pub stopped_at: Option<Millis>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceClass {
    pub name: String,
    pub description: String,
    pub created_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerToken {
    pub id: String,
    pub resource_class: String,
    pub nickname: String,
    pub created_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    pub id: String,
    pub name: String,
    pub resource_class: String,
    pub hostname: String,
    pub version: String,
    pub first_connected: Millis,
    pub last_connected: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledWorkflow {
    pub project_id: String,
    pub branch: String,
    pub workflow: String,
    pub cron: String,
    pub revision: String,
    pub registered_at: Millis,
}
