//! What a task is given and what it reports.

use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use orrery_config::Job;
use orrery_core::{JobStatus, StepOutcome};

/// Where `checkout` gets the code from.
#[derive(Clone, Debug)]
pub enum CheckoutSource {
    /// The working tree of a local checkout, as it is (uncommitted changes
    /// included, ignored files left out): `orrery local execute`.
    WorkingTree(PathBuf),
    /// A repository at a revision: the server.
    Git {
        url: String,
        revision: String,
        branch: Option<String>,
        tag: Option<String>,
    },
}

/// An SSH key `add_ssh_keys` installs.
#[derive(Clone, Debug)]
pub struct SshKey {
    pub fingerprint: String,
    pub private_key: String,
}

/// One task: one parallel node of one job.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    /// Unique among running tasks; names containers and the task directory.
    pub task_id: String,
    pub job_name: String,
    pub job: Job,
    pub node_index: u32,
    pub node_total: u32,
    /// The built-in `CIRCLE_*` values the caller knows (branch, SHA, build
    /// number, workflow ids, ...). The agent adds `CIRCLE_NODE_*`,
    /// `CIRCLE_INTERNAL_TASK_DATA`, `CIRCLE_WORKING_DIRECTORY` and `BASH_ENV`.
    pub builtin_env: IndexMap<String, String>,
    /// Context variables, in context order (later wins); masked in output.
    pub context_env: Vec<(String, String)>,
    /// Project variables; masked in output.
    pub project_env: Vec<(String, String)>,
    pub checkout: CheckoutSource,
    pub ssh_keys: Vec<SshKey>,
    /// The longest the job may run (CircleCI Server's default is 5 hours).
    pub max_run_time: Duration,
    /// A host directory for the task's own files (scripts, the in-job
    /// `circleci` binary, the machine executor's job directory).
    pub work_root: PathBuf,
    /// For `attach_workspace`: the jobs upstream of this one whose workspace
    /// layers apply, in the order they are applied.
    pub workspace_upstream: Vec<String>,
    /// How long a stopped step's processes get between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
}

/// Something a running task reports.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskEvent {
    StepStarted {
        index: usize,
        name: String,
        background: bool,
    },
    Output {
        index: usize,
        data: Vec<u8>,
    },
    StepFinished {
        index: usize,
        outcome: StepOutcome,
        duration: Duration,
    },
}

/// How a step ended, for the record.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    pub name: String,
    pub outcome: StepOutcome,
    pub duration: Duration,
}

/// The result of a task.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskResult {
    pub status: JobStatus,
    pub steps: Vec<StepRecord>,
}
