//! Status values, spelled as CircleCI's API spells them.

use std::fmt;

use orrery_config::RequiredStatus;
use serde::{Deserialize, Serialize};

/// A job's status (CircleCI API v2 job status list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Success,
    Running,
    NotRun,
    Failed,
    Retried,
    Queued,
    NotRunning,
    InfrastructureFail,
    Timedout,
    OnHold,
    #[serde(rename = "terminated-unknown")]
    TerminatedUnknown,
    Blocked,
    Canceled,
    Unauthorized,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Success => "success",
            JobStatus::Running => "running",
            JobStatus::NotRun => "not_run",
            JobStatus::Failed => "failed",
            JobStatus::Retried => "retried",
            JobStatus::Queued => "queued",
            JobStatus::NotRunning => "not_running",
            JobStatus::InfrastructureFail => "infrastructure_fail",
            JobStatus::Timedout => "timedout",
            JobStatus::OnHold => "on_hold",
            JobStatus::TerminatedUnknown => "terminated-unknown",
            JobStatus::Blocked => "blocked",
            JobStatus::Canceled => "canceled",
            JobStatus::Unauthorized => "unauthorized",
        }
    }

    /// Whether the job will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Success
                | JobStatus::NotRun
                | JobStatus::Failed
                | JobStatus::Retried
                | JobStatus::InfrastructureFail
                | JobStatus::Timedout
                | JobStatus::TerminatedUnknown
                | JobStatus::Canceled
                | JobStatus::Unauthorized
        )
    }

    /// Whether this is a failure of the job itself (what makes a workflow fail).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            JobStatus::Failed
                | JobStatus::InfrastructureFail
                | JobStatus::Timedout
                | JobStatus::TerminatedUnknown
        )
    }

    /// The status a `requires` entry compares against, for terminal statuses.
    pub fn as_required(self) -> Option<RequiredStatus> {
        match self {
            JobStatus::Success => Some(RequiredStatus::Success),
            s if s.is_failure() => Some(RequiredStatus::Failed),
            JobStatus::Canceled => Some(RequiredStatus::Canceled),
            JobStatus::Unauthorized => Some(RequiredStatus::Unauthorized),
            JobStatus::NotRun => Some(RequiredStatus::NotRun),
            _ => None,
        }
    }

    /// A job's status from its tasks' (one per parallel node): the worst wins.
    pub fn combine(tasks: impl IntoIterator<Item = JobStatus>) -> JobStatus {
        let rank = |s: JobStatus| match s {
            JobStatus::Canceled => 7,
            JobStatus::InfrastructureFail => 6,
            JobStatus::Timedout => 5,
            JobStatus::Failed => 4,
            JobStatus::TerminatedUnknown => 3,
            JobStatus::Running | JobStatus::Queued | JobStatus::NotRunning => 2,
            JobStatus::Success => 1,
            _ => 0,
        };
        tasks
            .into_iter()
            .max_by_key(|s| rank(*s))
            .unwrap_or(JobStatus::Success)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workflow's status (CircleCI API v2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStatus {
    Success,
    Running,
    NotRun,
    Failed,
    Error,
    Failing,
    OnHold,
    Canceled,
    Unauthorized,
}

impl WorkflowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Success => "success",
            WorkflowStatus::Running => "running",
            WorkflowStatus::NotRun => "not_run",
            WorkflowStatus::Failed => "failed",
            WorkflowStatus::Error => "error",
            WorkflowStatus::Failing => "failing",
            WorkflowStatus::OnHold => "on_hold",
            WorkflowStatus::Canceled => "canceled",
            WorkflowStatus::Unauthorized => "unauthorized",
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            WorkflowStatus::Running | WorkflowStatus::Failing | WorkflowStatus::OnHold
        )
    }
}

impl fmt::Display for WorkflowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one step ended. Every way a step can end is its own variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StepOutcome {
    Success,
    /// The command exited with a non-zero code.
    ExitCode {
        code: i32,
    },
    /// The command was killed by a signal it did not send itself.
    Signal {
        signal: i32,
    },
    /// The job ran out of time during this step.
    Timeout,
    /// The step printed nothing for its `no_output_timeout`.
    NoOutputTimeout {
        after_secs: u64,
    },
    /// The step could not start (no shell in the image, a bad working directory).
    FailedToStart {
        reason: String,
    },
    Canceled,
    /// Something outside the step broke (the container died, storage failed).
    InfrastructureFailure {
        reason: String,
    },
    /// The step did not run because an earlier step failed (or `when` ruled it out).
    Skipped,
}

impl StepOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, StepOutcome::Success | StepOutcome::Skipped)
    }

    /// The exit code to show (`Exited with code exit status N`), if any.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            StepOutcome::Success => Some(0),
            StepOutcome::ExitCode { code } => Some(*code),
            _ => None,
        }
    }

    /// The job status a step ending this way gives its job.
    pub fn job_status(&self) -> JobStatus {
        match self {
            StepOutcome::Success | StepOutcome::Skipped => JobStatus::Success,
            StepOutcome::ExitCode { .. }
            | StepOutcome::Signal { .. }
            | StepOutcome::FailedToStart { .. } => JobStatus::Failed,
            StepOutcome::Timeout | StepOutcome::NoOutputTimeout { .. } => JobStatus::Timedout,
            StepOutcome::Canceled => JobStatus::Canceled,
            StepOutcome::InfrastructureFailure { .. } => JobStatus::InfrastructureFail,
        }
    }

    /// CircleCI's v1.1 action status for the step.
    pub fn action_status(&self) -> &'static str {
        match self {
            StepOutcome::Success | StepOutcome::Skipped => "success",
            StepOutcome::ExitCode { .. }
            | StepOutcome::Signal { .. }
            | StepOutcome::FailedToStart { .. } => "failed",
            StepOutcome::Timeout | StepOutcome::NoOutputTimeout { .. } => "timedout",
            StepOutcome::Canceled => "canceled",
            StepOutcome::InfrastructureFailure { .. } => "infrastructure_fail",
        }
    }

    /// The line CircleCI prints under a step that did not succeed.
    pub fn message(&self) -> Option<String> {
        match self {
            StepOutcome::Success | StepOutcome::Skipped => None,
            StepOutcome::ExitCode { code } => Some(format!("Exited with code exit status {code}")),
            StepOutcome::Signal { signal } => Some(format!("Killed by signal {signal}")),
            StepOutcome::Timeout => Some("Too long: the job reached its maximum run time".into()),
            StepOutcome::NoOutputTimeout { after_secs } => Some(format!(
                "Too long with no output (exceeded {}): context deadline exceeded",
                go_duration(*after_secs)
            )),
            StepOutcome::FailedToStart { reason } => {
                Some(format!("The step could not start: {reason}"))
            }
            StepOutcome::Canceled => Some("Canceled".into()),
            StepOutcome::InfrastructureFailure { reason } => {
                Some(format!("Infrastructure failure: {reason}"))
            }
        }
    }
}

/// Formats seconds the way Go prints a duration (`10m0s`, `1h0m0s`, `5s`).
pub fn go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_serialize_as_circleci_spells_them() {
        let json = serde_json_like(&[
            JobStatus::NotRun,
            JobStatus::TerminatedUnknown,
            JobStatus::InfrastructureFail,
        ]);
        assert_eq!(
            json,
            ["not_run", "terminated-unknown", "infrastructure_fail"]
        );
        assert_eq!(WorkflowStatus::OnHold.as_str(), "on_hold");
    }

    fn serde_json_like(s: &[JobStatus]) -> Vec<&'static str> {
        s.iter().map(|s| s.as_str()).collect()
    }

    #[test]
    fn worst_task_wins() {
        assert_eq!(
            JobStatus::combine([JobStatus::Success, JobStatus::Failed, JobStatus::Success]),
            JobStatus::Failed
        );
        assert_eq!(
            JobStatus::combine([JobStatus::Timedout, JobStatus::Failed]),
            JobStatus::Timedout
        );
        assert_eq!(
            JobStatus::combine([JobStatus::Success, JobStatus::Success]),
            JobStatus::Success
        );
        assert_eq!(
            JobStatus::combine([JobStatus::Failed, JobStatus::Canceled]),
            JobStatus::Canceled
        );
    }

    #[test]
    fn step_messages() {
        assert_eq!(
            StepOutcome::ExitCode { code: 3 }.message().unwrap(),
            "Exited with code exit status 3"
        );
        assert_eq!(
            StepOutcome::NoOutputTimeout { after_secs: 600 }
                .message()
                .unwrap(),
            "Too long with no output (exceeded 10m0s): context deadline exceeded"
        );
        assert_eq!(
            StepOutcome::NoOutputTimeout { after_secs: 1 }.job_status(),
            JobStatus::Timedout
        );
        assert_eq!(go_duration(3661), "1h1m1s");
    }
}
