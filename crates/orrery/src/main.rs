//! `orrery`: the command line.
//!
//! Exit codes: 0 success (a valid config), 1 invalid input (a config or orb with
//! errors), 2 usage errors (bad flags, missing files).

mod cli;
mod orb_dir;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
