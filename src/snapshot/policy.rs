//! Which source serves a snapshot: GetDebug first, the export log as fallback.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde::Serialize;
use thiserror::Error;

use crate::tetragon::address::TetragonAddress;
use crate::tetragon::client::{connect, ConnectError};
use crate::time::{now_ms, rfc3339_ms};

use super::debug_api::{self, DebugApiError};
use super::export_log::{read_snapshot, ExportLogError, ExportLogLocation, ExportLogStats};
use super::model::{ProcessSnapshot, SnapshotSource};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourcePolicy {
    /// GetDebug, falling back to the export log when GetDebug is unavailable.
    #[default]
    Auto,
    DebugApi,
    ExportLog,
    /// No snapshot: learn from events only.
    None,
}

#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    pub policy: SourcePolicy,
    pub address: TetragonAddress,
    pub timeout: Duration,
    pub max_message_size: usize,
    pub export_log: Option<PathBuf>,
}

impl SnapshotOptions {
    pub fn policy_name(&self) -> &'static str {
        match self.policy {
            SourcePolicy::Auto => "auto",
            SourcePolicy::DebugApi => "debug-api",
            SourcePolicy::ExportLog => "export-log",
            SourcePolicy::None => "none",
        }
    }
}

/// How a snapshot was obtained, for logs, health and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    pub source: SnapshotSource,
    pub processes: usize,
    pub duration_ms: u64,
    /// Why GetDebug was not used, when `auto` fell back.
    pub fallback_reason: Option<String>,
    pub export_log: Option<ExportLogStats>,
}

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("snapshot from Tetragon at {address} failed: {source}")]
    Connect {
        address: String,
        #[source]
        source: ConnectError,
    },
    #[error("snapshot from Tetragon at {address} failed: {source}")]
    DebugApi {
        address: String,
        #[source]
        source: DebugApiError,
    },
    #[error("snapshot from the export log failed: {0}")]
    ExportLog(#[source] ExportLogError),
    #[error("snapshot failed: GetDebug at {address}: {debug}; then the export log: {log}")]
    BothFailed {
        address: String,
        debug: String,
        log: String,
    },
    #[error("export log reader stopped unexpectedly: {0}")]
    Join(String),
}

impl SnapshotError {
    /// The cause alone, without the address prefix (for fallback reasons).
    pub fn cause(&self) -> String {
        match self {
            Self::Connect { source, .. } => source.to_string(),
            Self::DebugApi { source, .. } => source.to_string(),
            Self::ExportLog(e) => e.to_string(),
            other => other.to_string(),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::DebugApi { source, .. } => source.label(),
            Self::ExportLog(_) | Self::BothFailed { .. } => "export_log",
            Self::Join(_) => "internal",
        }
    }
}

async fn from_debug_api(opts: &SnapshotOptions) -> Result<ProcessSnapshot, SnapshotError> {
    let address = opts.address.to_string();
    let channel = connect(&opts.address, opts.timeout)
        .await
        .map_err(|source| SnapshotError::Connect {
            address: address.clone(),
            source,
        })?;
    let processes = debug_api::fetch(channel, opts.timeout, opts.max_message_size)
        .await
        .map_err(|source| SnapshotError::DebugApi { address, source })?;
    Ok(ProcessSnapshot {
        source: SnapshotSource::DebugApi,
        taken_at: rfc3339_ms(now_ms()),
        processes,
    })
}

async fn from_export_log(
    opts: &SnapshotOptions,
) -> Result<(ProcessSnapshot, ExportLogStats), SnapshotError> {
    let location = ExportLogLocation::from_option(opts.export_log.clone());
    // Reading files is blocking I/O: keep it off the async workers.
    match tokio::task::spawn_blocking(move || read_snapshot(&location)).await {
        Ok(result) => result.map_err(SnapshotError::ExportLog),
        Err(e) => Err(SnapshotError::Join(e.to_string())),
    }
}

/// Takes one snapshot under `opts.policy`.
pub async fn take(
    opts: &SnapshotOptions,
) -> Result<(ProcessSnapshot, SnapshotReport), SnapshotError> {
    let started = Instant::now();
    let report = |snap: &ProcessSnapshot,
                  fallback_reason: Option<String>,
                  export_log: Option<ExportLogStats>| SnapshotReport {
        source: snap.source,
        processes: snap.processes.len(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        fallback_reason,
        export_log,
    };
    match opts.policy {
        SourcePolicy::None => {
            let snap = ProcessSnapshot {
                source: SnapshotSource::None,
                taken_at: rfc3339_ms(now_ms()),
                processes: vec![],
            };
            let r = report(&snap, None, None);
            Ok((snap, r))
        }
        SourcePolicy::DebugApi => {
            let snap = from_debug_api(opts).await?;
            let r = report(&snap, None, None);
            Ok((snap, r))
        }
        SourcePolicy::ExportLog => {
            let (snap, stats) = from_export_log(opts).await?;
            let r = report(&snap, None, Some(stats));
            Ok((snap, r))
        }
        SourcePolicy::Auto => match from_debug_api(opts).await {
            Ok(snap) => {
                let r = report(&snap, None, None);
                Ok((snap, r))
            }
            Err(debug_err) => {
                let reason = debug_err.cause();
                tracing::info!(source = "debug-api", error = %reason, "GetDebug snapshot unavailable, falling back to the export log");
                match from_export_log(opts).await {
                    Ok((snap, stats)) => {
                        let r = report(&snap, Some(reason), Some(stats));
                        Ok((snap, r))
                    }
                    Err(log) => Err(SnapshotError::BothFailed {
                        address: opts.address.to_string(),
                        debug: reason,
                        log: log.cause(),
                    }),
                }
            }
        },
    }
}
