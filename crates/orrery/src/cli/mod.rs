//! Command definitions and dispatch.

mod config;
mod local;
mod orb;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "orrery",
    version,
    about = "Orrery: run CircleCI configs on your own machines",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate and compile `.circleci/config.yml` files
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Pack, import and list orbs
    #[command(subcommand)]
    Orb(orb::OrbCommand),
    /// Run workflows on this machine, from the working tree
    #[command(subcommand)]
    Local(local::LocalCommand),
    /// Start the server: API, webhooks, the engine and an embedded runner
    Server(server::ServerArgs),
    /// Run jobs for a server, on this host
    Runner(server::RunnerArgs),
    /// Manage projects on a server
    #[command(subcommand)]
    Project(server::ProjectCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config(c) => config::run(c),
        Command::Orb(c) => orb::run(c),
        Command::Local(c) => local::run(c),
        Command::Server(a) => server::server(a),
        Command::Runner(a) => server::runner(a),
        Command::Project(c) => server::project(c),
    }
}

/// `--orb-dir`, else `ORRERY_ORB_DIR` (clap reads it), else
/// `~/.local/share/orrery/orbs`.
fn orb_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/share/orrery/orbs")
    })
}
