//! Options shared by `run` and `snapshot`: where Tetragon is and how to snapshot.
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::snapshot::debug_api::DEFAULT_MAX_MESSAGE_SIZE;
use crate::snapshot::policy::{SnapshotOptions, SourcePolicy};
use crate::tetragon::address::TetragonAddress;

#[derive(Debug, Clone, Args)]
pub struct TetragonArgs {
    /// Tetragon's gRPC server: unix:///var/run/tetragon/tetragon.sock, http://host:port or host:port.
    #[arg(
        long,
        env = "TETRAGON_LEARNER_TETRAGON_ADDRESS",
        default_value = "localhost:54321"
    )]
    pub tetragon_address: TetragonAddress,
    /// Where the process snapshot comes from.
    #[arg(
        long,
        alias = "source",
        env = "TETRAGON_LEARNER_SNAPSHOT_SOURCE",
        value_enum,
        default_value = "auto"
    )]
    pub snapshot_source: SourcePolicy,
    /// Tetragon's JSON export log (default: look in /var/run/cilium/tetragon/tetragon.log and /var/log/tetragon/tetragon.log).
    #[arg(long, env = "TETRAGON_LEARNER_EXPORT_LOG")]
    pub export_log: Option<PathBuf>,
    /// Timeout for connecting and for one GetDebug call (e.g. 10s, 500ms).
    #[arg(long, env = "TETRAGON_LEARNER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Largest GetDebug answer accepted, in bytes.
    #[arg(long, env = "TETRAGON_LEARNER_MAX_MESSAGE_SIZE", default_value_t = DEFAULT_MAX_MESSAGE_SIZE)]
    pub max_message_size: usize,
}

impl TetragonArgs {
    pub fn snapshot_options(&self) -> SnapshotOptions {
        SnapshotOptions {
            policy: self.snapshot_source,
            address: self.tetragon_address.clone(),
            timeout: self.timeout,
            max_message_size: self.max_message_size,
            export_log: self.export_log.clone(),
        }
    }
}
