//! Orrery's domain model, with CircleCI's own status values.
//!
//! - [`status`]: job, workflow and step states in CircleCI's words (the API and
//!   the UI speak the same ones).
//! - [`workflow`]: a workflow run as a state machine over its DAG: filters,
//!   `requires` (with flexible statuses), approvals, failure propagation, cancel.
//!
//! - [`protocol`]: the runner protocol's messages.
//!
//! Everything here is pure: no clocks, no I/O, no randomness. The engine and
//! `orrery local execute` drive these types with the events they observe.

pub mod protocol;
pub mod status;
pub mod workflow;

pub use status::{JobStatus, StepOutcome, WorkflowStatus};
pub use workflow::{JobKind, RunJob, WorkflowError, WorkflowRun};
