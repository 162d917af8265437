//! Binary edge: parse the command line, run, turn errors into one clear line
//! and an exit code (0 ok, 1 runtime error, 2 usage error from clap).
use std::process::ExitCode;

use clap::Parser;
use tetragon_learner::cli::{execute, Cli};

#[global_allocator]
static GLOBAL: tetragon_learner::GlobalAllocator = tetragon_learner::GLOBAL_ALLOCATOR;

fn main() -> ExitCode {
    // SAFETY: first thing in main: no other thread runs yet.
    unsafe { tetragon_learner::tune_allocator() };
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = one_line(&e);
            eprintln!("error: {msg}");
            if e.downcast_ref::<tetragon_learner::cli::UsageError>()
                .is_some()
            {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// The error and its causes on one line. Our error messages already quote their
/// cause, so a cause whose text is already shown is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    msg.replace('\n', " ")
}
