//! The `mesh-authz` command line: serve, check-config, check, keygen, mint.
//!
//! `serve` builds its own runtime once the config is read, with `server.worker_threads` threads;
//! every other subcommand runs on a small one.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    cli::main(cli::Cli::parse())
}
