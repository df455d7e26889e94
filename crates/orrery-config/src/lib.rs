//! The CircleCI config compiler.
//!
//! Input: config text (version 2, 2.0 or 2.1), pipeline values and parameters, and
//! an [`OrbSource`]. Output: a typed [`Plan`] and [`Diagnostic`]s. The crate does no
//! I/O and never panics on input: every problem in a config is a diagnostic with a
//! file, line, column and config path.
//!
//! ```
//! use orrery_config::{compile, CompileOptions, NoOrbs};
//!
//! let config = "version: 2.1\njobs:\n  build:\n    docker: [{image: busybox}]\n    steps: [checkout]\n";
//! let compiled = compile(config, &CompileOptions::new("config.yml"), &NoOrbs);
//! let plan = compiled.plan.expect("valid");
//! assert_eq!(plan.jobs.len(), 1);
//! ```
//!
//! Stages: [`yaml`] reads the text into a tree with positions; `compile` resolves
//! pipeline parameters, orbs and definitions per scope; `job` expands jobs
//! (executors, commands, parameters, conditions); `workflow` expands invocations
//! (matrix, renames) and checks each DAG; [`print`] renders a plan as `process`
//! output; [`pack`] packs an orb source tree.

mod compile;
pub mod diag;
pub mod emit;
pub mod expr;
pub mod filters;
mod job;
mod logic;
pub mod orbs;
pub mod pack;
mod params;
pub mod plan;
pub mod print;
pub mod values;
mod workflow;
pub mod yaml;

pub use compile::{CompileOptions, Compiled, compile};
pub use diag::{Diagnostic, Severity};
pub use filters::{Filters, GitRef, Pattern, PatternFilter};
pub use orbs::{FetchedOrb, NoOrbs, OrbFetchError, OrbRef, OrbRegistry, OrbSource};
pub use plan::*;
pub use values::{InputValue, PipelineValues};
pub use workflow::{IMPLICIT_WORKFLOW, check_cron};
