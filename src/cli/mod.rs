//! The command line (a contract: scripts and tests drive it). Every flag also
//! has an environment variable. Exit codes: 0 ok, 2 usage, 1 runtime error.
pub mod admin_cmd;
pub mod agent_args;
pub mod debug_cmd;
pub mod debug_violations;
pub mod demo;
pub mod escape;
pub mod export_cmd;
pub mod fake_cmd;
pub mod logging;
pub mod run_cmd;
pub mod signals;
pub mod snapshot_cmd;

use clap::{Parser, Subcommand};

/// A command-line mistake found after parsing: the binary exits with 2, as for
/// clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

use logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "tetragon-learner",
    version,
    about = "Learns which executables each container runs, from Cilium Tetragon"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "TETRAGON_LEARNER_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    pub log_format: LogFormat,
    /// Log filter, e.g. info, debug, tetragon_learner=debug.
    #[arg(
        long,
        global = true,
        env = "TETRAGON_LEARNER_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: snapshot, stream, learn, checkpoint.
    Run(run_cmd::RunArgs),
    /// Take one process snapshot and print it.
    Snapshot(snapshot_cmd::SnapshotArgs),
    /// Serve a fake Tetragon (scenario or replay, with faults).
    FakeTetragon(fake_cmd::FakeArgs),
    /// Inspect learned state (list, show KEY, dump, stats, check): a stopped agent's --db, or a running agent's --admin-socket.
    Debug(debug_cmd::DebugArgs),
    /// Operator commands for a running agent (lock, unlock, reset, status) via its admin socket.
    Admin(admin_cmd::AdminArgs),
    /// Export learned profiles (--db, --admin-socket, or several nodes' JSON merged with --input) as JSON, policy proposals or Tetragon TracingPolicyNamespaced (monitor mode by default).
    Export(export_cmd::ExportArgs),
    /// Fake Tetragon + agent in one process; prints what was learned.
    Demo(demo::DemoArgs),
    /// Internal: open and scan a database copy, print the verdict as JSON (run
    /// by the agent itself in a child process, where a hang can be killed).
    #[command(name = "__check-db", hide = true)]
    CheckDb { dir: std::path::PathBuf },
}

/// An actix System on a multi-threaded tokio runtime: actors need the System,
/// tonic and sled's blocking work want the threads.
pub fn actor_system() -> actix::SystemRunner {
    actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the async runtime: {e}"))
    })
}

/// Runs a parsed command. Actors need an actix System, so everything runs in
/// one, on a multi-threaded tokio runtime.
pub fn execute(cli: Cli) -> anyhow::Result<()> {
    if let Command::CheckDb { dir } = &cli.command {
        // No logging, no runtime: only sled's open and a scan, then one line.
        return crate::store::preflight::child_main(dir);
    }
    // One-shot commands print their result (or one error line); routine logs
    // would only get in the way.
    let quiet = matches!(
        cli.command,
        Command::Demo(_)
            | Command::Snapshot(_)
            | Command::Debug(_)
            | Command::Export(_)
            | Command::Admin(_)
    );
    let level = if quiet && cli.log_level == "info" {
        "warn"
    } else {
        cli.log_level.as_str()
    };
    if matches!(cli.command, Command::Debug(_) | Command::Export(_)) {
        // Output commands end like any Unix filter when their reader goes away
        // (`debug dump | head`): killed by SIGPIPE, quietly, instead of Rust's
        // panic on a failed print. Not the agent, nor commands that stream
        // from Tetragon over a unix socket: a peer closing must be an error.
        // SAFETY: resetting a signal disposition to its default.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    logging::init(cli.log_format, level);
    actor_system().block_on(async move {
        match cli.command {
            Command::Run(a) => run_cmd::run(a).await,
            Command::Snapshot(a) => snapshot_cmd::run(a).await,
            Command::FakeTetragon(a) => fake_cmd::run(a).await,
            Command::Demo(a) => demo::run(a).await,
            Command::Debug(a) => debug_cmd::run(a),
            Command::Admin(a) => admin_cmd::run(a),
            Command::Export(a) => export_cmd::run(a),
            Command::CheckDb { .. } => Ok(()),
        }
    })
}
