//! A workflow run: the state machine over a workflow's DAG.
//!
//! Built from a compiled [`orrery_config::Workflow`] and the git ref being built:
//! jobs whose filters rule them out are left out; a requirement on a left-out job
//! is ignored, and a job whose requirements were all left out is left out too
//! (which is also how a tag build drops jobs downstream of jobs without a tags
//! filter). Then:
//!
//! - a job with no (remaining) requirements is ready (`not_running`), an approval
//!   job waits for a person (`on_hold`), every other job is `blocked`;
//! - when a job ends, each dependent whose requirements are all met becomes
//!   ready; a dependent with a requirement that ended in a status it does not
//!   accept becomes `not_run`, and so do its dependents, transitively;
//! - the workflow's status derives from its jobs' (see [`WorkflowRun::status`]).

use orrery_config::filters::job_admits;
use orrery_config::{GitRef, RequiredStatus, Workflow, WorkflowJobType};
use serde::{Deserialize, Serialize};

use crate::status::{JobStatus, WorkflowStatus};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Build,
    Approval,
}

/// One job of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunJob {
    pub name: String,
    pub kind: JobKind,
    /// Indexes of required jobs in this run, and the statuses each accepts.
    pub requires: Vec<(usize, Vec<RequiredStatus>)>,
    pub status: JobStatus,
}

/// Why an action on a run was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("the workflow has no job named `{0}`")]
    NoSuchJob(String),
    #[error("`{0}` is not an approval job")]
    NotAnApproval(String),
    #[error("`{0}` is {1}, not on hold")]
    NotOnHold(String, JobStatus),
}

/// A workflow being run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowRun {
    pub name: String,
    pub jobs: Vec<RunJob>,
    canceled: bool,
    errored: bool,
}

impl WorkflowRun {
    /// Starts a run of `workflow` for a pipeline building `git_ref`.
    pub fn new(name: &str, workflow: &Workflow, git_ref: GitRef<'_>) -> WorkflowRun {
        let n = workflow.jobs.len();
        let index = |name: &str| workflow.jobs.iter().position(|j| j.name == name);
        let mut included: Vec<bool> = workflow
            .jobs
            .iter()
            .map(|j| job_admits(j.filters.as_ref(), git_ref))
            .collect();
        // Leave out jobs whose requirements were all left out, until nothing
        // changes (requirements may be listed before the jobs they name).
        loop {
            let mut changed = false;
            for (i, job) in workflow.jobs.iter().enumerate() {
                if !included[i] || job.requires.is_empty() {
                    continue;
                }
                let any = job
                    .requires
                    .iter()
                    .any(|r| index(&r.job).is_some_and(|d| included[d]));
                if !any {
                    included[i] = false;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut new_index = vec![usize::MAX; n];
        let mut k = 0;
        for i in 0..n {
            if included[i] {
                new_index[i] = k;
                k += 1;
            }
        }
        let jobs = workflow
            .jobs
            .iter()
            .enumerate()
            .filter(|(i, _)| included[*i])
            .map(|(_, j)| {
                let requires: Vec<(usize, Vec<RequiredStatus>)> = j
                    .requires
                    .iter()
                    .filter_map(|r| {
                        let d = index(&r.job)?;
                        included[d].then(|| (new_index[d], r.statuses.clone()))
                    })
                    .collect();
                let kind = match j.job_type {
                    WorkflowJobType::Build => JobKind::Build,
                    WorkflowJobType::Approval => JobKind::Approval,
                };
                let status = match (requires.is_empty(), kind) {
                    (true, JobKind::Build) => JobStatus::NotRunning,
                    (true, JobKind::Approval) => JobStatus::OnHold,
                    (false, _) => JobStatus::Blocked,
                };
                RunJob {
                    name: j.name.clone(),
                    kind,
                    requires,
                    status,
                }
            })
            .collect();
        WorkflowRun {
            name: name.to_string(),
            jobs,
            canceled: false,
            errored: false,
        }
    }

    pub fn job(&self, name: &str) -> Option<(usize, &RunJob)> {
        self.jobs.iter().enumerate().find(|(_, j)| j.name == name)
    }

    fn index_of(&self, name: &str) -> Result<usize, WorkflowError> {
        self.job(name)
            .map(|(i, _)| i)
            .ok_or_else(|| WorkflowError::NoSuchJob(name.to_string()))
    }

    /// Build jobs that may start now (`not_running`).
    pub fn ready(&self) -> Vec<usize> {
        if self.canceled {
            return Vec::new();
        }
        self.jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| j.kind == JobKind::Build && j.status == JobStatus::NotRunning)
            .map(|(i, _)| i)
            .collect()
    }

    /// Records a job's new status and moves its dependents on.
    pub fn set_status(&mut self, idx: usize, status: JobStatus) {
        self.jobs[idx].status = status;
        if status.is_terminal() {
            self.propagate();
        }
    }

    /// Approves an approval job that is on hold.
    pub fn approve(&mut self, name: &str) -> Result<(), WorkflowError> {
        let idx = self.index_of(name)?;
        let job = &self.jobs[idx];
        if job.kind != JobKind::Approval {
            return Err(WorkflowError::NotAnApproval(name.to_string()));
        }
        if job.status != JobStatus::OnHold {
            return Err(WorkflowError::NotOnHold(name.to_string(), job.status));
        }
        self.set_status(idx, JobStatus::Success);
        Ok(())
    }

    /// Cancels the run: running jobs become `canceled` (the caller stops them),
    /// everything that had not started becomes `not_run`. Returns the jobs the
    /// caller must stop.
    pub fn cancel(&mut self) -> Vec<usize> {
        self.canceled = true;
        let mut to_stop = Vec::new();
        for (i, job) in self.jobs.iter_mut().enumerate() {
            match job.status {
                JobStatus::Running | JobStatus::Queued => {
                    job.status = JobStatus::Canceled;
                    to_stop.push(i);
                }
                JobStatus::OnHold if job.kind == JobKind::Approval => {
                    job.status = JobStatus::Canceled
                }
                s if !s.is_terminal() => job.status = JobStatus::NotRun,
                _ => {}
            }
        }
        to_stop
    }

    /// Marks the run as errored (a job could not be started for internal
    /// reasons); it ends `error` once nothing runs.
    pub fn mark_error(&mut self) {
        self.errored = true;
    }

    fn propagate(&mut self) {
        loop {
            let mut changed = false;
            for i in 0..self.jobs.len() {
                if self.jobs[i].status != JobStatus::Blocked {
                    continue;
                }
                let mut all_met = true;
                let mut broken = false;
                for (d, accepted) in &self.jobs[i].requires {
                    let dep = self.jobs[*d].status;
                    if !dep.is_terminal() {
                        all_met = false;
                        continue;
                    }
                    let ok = dep.as_required().is_some_and(|s| accepted.contains(&s));
                    if !ok {
                        broken = true;
                    }
                }
                let next = if broken {
                    Some(JobStatus::NotRun)
                } else if all_met {
                    Some(match self.jobs[i].kind {
                        JobKind::Build => JobStatus::NotRunning,
                        JobKind::Approval => JobStatus::OnHold,
                    })
                } else {
                    None
                };
                if let Some(s) = next {
                    self.jobs[i].status = s;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// The workflow's status, derived from its jobs':
    /// - while jobs run or wait on other jobs: `running`, or `failing` once a
    ///   job failed;
    /// - when only approvals are left waiting: `on_hold` (`failing` if a job
    ///   failed);
    /// - at the end: `canceled` if canceled, else `unauthorized`, `failed`,
    ///   `error`, `canceled` (a job was), `not_run` (nothing ran), `success`.
    pub fn status(&self) -> WorkflowStatus {
        // Blocked jobs wait on something active or on an approval, so they
        // need no count of their own.
        let active = self.jobs.iter().any(|j| {
            matches!(
                j.status,
                JobStatus::Running | JobStatus::Queued | JobStatus::NotRunning
            )
        });
        let holding = self.jobs.iter().any(|j| j.status == JobStatus::OnHold);
        let failed = self.jobs.iter().any(|j| j.status.is_failure());
        if self.canceled {
            return WorkflowStatus::Canceled;
        }
        if active || holding {
            return if failed {
                WorkflowStatus::Failing
            } else if active {
                WorkflowStatus::Running
            } else {
                WorkflowStatus::OnHold
            };
        }
        if self
            .jobs
            .iter()
            .any(|j| j.status == JobStatus::Unauthorized)
        {
            WorkflowStatus::Unauthorized
        } else if failed {
            WorkflowStatus::Failed
        } else if self.errored {
            WorkflowStatus::Error
        } else if self.jobs.iter().any(|j| j.status == JobStatus::Canceled) {
            WorkflowStatus::Canceled
        } else if self.jobs.iter().all(|j| j.status == JobStatus::NotRun) {
            WorkflowStatus::NotRun
        } else {
            WorkflowStatus::Success
        }
    }

    pub fn is_finished(&self) -> bool {
        self.status().is_terminal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orrery_config::{CompileOptions, NoOrbs, compile};

    fn run(config_workflow: &str, git_ref: GitRef<'_>) -> WorkflowRun {
        let jobs: String = ["a", "b", "c", "d", "e", "tagged"]
            .iter()
            .map(|j| format!("  {j}:\n    docker: [{{image: x}}]\n    steps: [checkout]\n"))
            .collect();
        let text = format!("version: 2.1\njobs:\n{jobs}workflows:\n  w:\n{config_workflow}");
        let compiled = compile(&text, &CompileOptions::new("c.yml"), &NoOrbs);
        let plan = compiled
            .plan
            .unwrap_or_else(|| panic!("{:#?}", compiled.diagnostics));
        WorkflowRun::new("w", &plan.workflows["w"], git_ref)
    }

    fn statuses(r: &WorkflowRun) -> Vec<(&str, &str)> {
        r.jobs
            .iter()
            .map(|j| (j.name.as_str(), j.status.as_str()))
            .collect()
    }

    fn finish(r: &mut WorkflowRun, name: &str, s: JobStatus) {
        let (i, _) = r.job(name).unwrap();
        r.set_status(i, s);
    }

    const FAN: &str = "    jobs:\n      - a\n      - b: {requires: [a]}\n      - c: {requires: [a]}\n      - d: {requires: [b, c]}\n";

    #[test]
    fn fan_out_and_fan_in() {
        let mut r = run(FAN, GitRef::Branch("main"));
        assert_eq!(
            statuses(&r),
            [
                ("a", "not_running"),
                ("b", "blocked"),
                ("c", "blocked"),
                ("d", "blocked")
            ]
        );
        assert_eq!(r.ready(), [0]);
        finish(&mut r, "a", JobStatus::Running);
        assert_eq!(r.status(), WorkflowStatus::Running);
        finish(&mut r, "a", JobStatus::Success);
        assert_eq!(r.ready(), [1, 2]);
        finish(&mut r, "b", JobStatus::Success);
        assert_eq!(r.ready(), [2], "d waits for c");
        finish(&mut r, "c", JobStatus::Success);
        assert_eq!(r.ready(), [3]);
        finish(&mut r, "d", JobStatus::Success);
        assert_eq!(r.status(), WorkflowStatus::Success);
    }

    #[test]
    fn failure_blocks_downstream_and_fails_the_workflow() {
        let mut r = run(FAN, GitRef::Branch("main"));
        finish(&mut r, "a", JobStatus::Success);
        finish(&mut r, "b", JobStatus::Failed);
        assert_eq!(r.status(), WorkflowStatus::Failing, "c may still run");
        assert_eq!(r.job("d").unwrap().1.status, JobStatus::NotRun);
        finish(&mut r, "c", JobStatus::Success);
        assert_eq!(r.status(), WorkflowStatus::Failed);
    }

    #[test]
    fn flexible_requires_accept_failure() {
        let wf = "    jobs:\n      - a\n      - b: {requires: [{a: [failed, success]}]}\n      - c: {requires: [{a: terminal}]}\n";
        let mut r = run(wf, GitRef::Branch("main"));
        finish(&mut r, "a", JobStatus::Timedout);
        assert_eq!(r.ready(), [1, 2]);
    }

    #[test]
    fn approvals_hold_then_release() {
        let wf = "    jobs:\n      - a\n      - hold: {type: approval, requires: [a]}\n      - b: {requires: [hold]}\n";
        let mut r = run(wf, GitRef::Branch("main"));
        finish(&mut r, "a", JobStatus::Success);
        assert_eq!(r.status(), WorkflowStatus::OnHold);
        assert_eq!(
            r.approve("a"),
            Err(WorkflowError::NotAnApproval("a".into()))
        );
        r.approve("hold").unwrap();
        assert_eq!(r.ready(), [2]);
        assert!(r.approve("hold").is_err(), "already approved");
    }

    #[test]
    fn filters_drop_jobs_and_their_dependents_on_tags() {
        let wf = "    jobs:\n      - a\n      - tagged:\n          requires: [a]\n          filters: {tags: {only: /v.*/}}\n      - b:\n          filters: {tags: {only: /v.*/}, branches: {ignore: /.*/}}\n";
        let branch = run(wf, GitRef::Branch("main"));
        assert_eq!(
            statuses(&branch),
            [("a", "not_running"), ("tagged", "blocked")]
        );
        // On a tag, `a` has no tags filter: it is left out, so is `tagged`, which
        // only required `a`; `b` runs.
        let tag = run(wf, GitRef::Tag("v1.0"));
        assert_eq!(statuses(&tag), [("b", "not_running")]);
    }

    #[test]
    fn requirement_on_filtered_job_is_ignored() {
        let wf = "    jobs:\n      - a: {filters: {branches: {only: main}}}\n      - b\n      - c: {requires: [a, b]}\n";
        let mut r = run(wf, GitRef::Branch("dev"));
        assert_eq!(statuses(&r), [("b", "not_running"), ("c", "blocked")]);
        finish(&mut r, "b", JobStatus::Success);
        assert_eq!(r.ready(), [1]);
    }

    #[test]
    fn cancel_stops_running_and_skips_pending() {
        let mut r = run(FAN, GitRef::Branch("main"));
        finish(&mut r, "a", JobStatus::Success);
        finish(&mut r, "b", JobStatus::Running);
        let stop = r.cancel();
        assert_eq!(stop, [1]);
        assert_eq!(
            statuses(&r),
            [
                ("a", "success"),
                ("b", "canceled"),
                ("c", "not_run"),
                ("d", "not_run")
            ]
        );
        assert_eq!(r.status(), WorkflowStatus::Canceled);
        assert!(r.ready().is_empty());
    }

    #[test]
    fn unauthorized_and_error() {
        let mut r = run("    jobs: [a, b]\n", GitRef::Branch("main"));
        finish(&mut r, "a", JobStatus::Unauthorized);
        finish(&mut r, "b", JobStatus::Success);
        assert_eq!(r.status(), WorkflowStatus::Unauthorized);
        let mut r = run("    jobs: [a]\n", GitRef::Branch("main"));
        r.mark_error();
        finish(&mut r, "a", JobStatus::NotRun);
        assert_eq!(r.status(), WorkflowStatus::Error);
    }
}
