//! `circleci` (also installed as `circleci-agent`): the in-job command.
//!
//! Everything happens in [`orrery_task::run`]; this file connects it to the
//! process's arguments, streams and environment.

#![forbid(unsafe_code)]

use std::io::{BufWriter, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let env = orrery_task::Env::from_process();
    let stdin = std::io::stdin();
    let mut stdout = BufWriter::new(std::io::stdout().lock());
    let mut stderr = std::io::stderr().lock();
    let code = orrery_task::run(&args, &mut stdin.lock(), &mut stdout, &mut stderr, &env);
    // `run` flushes its output; a late failure here has nowhere to be reported.
    let _ = stdout.flush();
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
