//! Binary edge: parse the command line, run, turn errors into one clear line
//! and an exit code (0 ok, 1 runtime error, 2 usage error from clap).
use std::process::ExitCode;

use clap::Parser;
use tetragon_learner::cli::{execute, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes joined.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}
