//! The primary snapshot source: Tetragon's process cache through
//! `FineGuidanceSensors.GetDebug` with `CONFIG_FLAG_DUMP_PROCESS_CACHE`.
use std::time::Duration;

use thiserror::Error;
use tonic::transport::Channel;
use tonic::Code;

use crate::tetragon::client::client;
use crate::tetragon::proto::{
    get_debug_request, get_debug_response, ConfigFlag, DumpProcessCacheReqArgs, GetDebugRequest,
};

use super::convert::process_to_snapshot;
use super::model::SnapshotProcess;

/// Large enough for tens of thousands of cached processes on a busy node.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum DebugApiError {
    #[error("GetDebug is not implemented by this Tetragon (older than v1.3 has no process-cache dump); use --snapshot-source export-log")]
    Unimplemented,
    #[error(
        "GetDebug did not answer within {0:?}; raise --timeout or use --snapshot-source export-log"
    )]
    Timeout(Duration),
    #[error("GetDebug answer is larger than --max-message-size ({limit} bytes): {message}; raise --max-message-size")]
    TooLarge { limit: usize, message: String },
    #[error("GetDebug failed with {code:?}: {message}")]
    Status { code: Code, message: String },
    #[error("GetDebug answered flag {0} instead of CONFIG_FLAG_DUMP_PROCESS_CACHE; this Tetragon does not support the process-cache dump")]
    WrongFlag(i32),
    #[error("GetDebug answer carries no process list; this Tetragon does not support the process-cache dump")]
    NoProcessList,
    #[error(
        "GetDebug returned an empty process cache (Tetragon run with --disable-process-cache?)"
    )]
    EmptyCache,
}

impl DebugApiError {
    /// Short label for metrics and the snapshot report.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unimplemented => "unimplemented",
            Self::Timeout(_) => "timeout",
            Self::TooLarge { .. } => "too_large",
            Self::Status { .. } => "error",
            Self::WrongFlag(_) | Self::NoProcessList => "unsupported",
            Self::EmptyCache => "empty",
        }
    }
}

pub fn dump_request() -> GetDebugRequest {
    GetDebugRequest {
        flag: ConfigFlag::DumpProcessCache as i32,
        arg: Some(get_debug_request::Arg::Dump(DumpProcessCacheReqArgs {
            skip_zero_refcnt: true,
            exclude_execve_map_processes: false,
        })),
    }
}

fn classify(status: tonic::Status, limit: usize) -> DebugApiError {
    let message = status.message().to_string();
    match status.code() {
        Code::Unimplemented => DebugApiError::Unimplemented,
        Code::ResourceExhausted | Code::OutOfRange
            if message.contains("message length too large") || message.contains("too large") =>
        {
            DebugApiError::TooLarge { limit, message }
        }
        code => DebugApiError::Status { code, message },
    }
}

/// One GetDebug call, converted to snapshot entries.
pub async fn fetch(
    channel: Channel,
    timeout: Duration,
    max_message_size: usize,
) -> Result<Vec<SnapshotProcess>, DebugApiError> {
    let mut c = client(channel, max_message_size);
    let call = c.get_debug(dump_request());
    let response = match tokio::time::timeout(timeout, call).await {
        Err(_) => return Err(DebugApiError::Timeout(timeout)),
        Ok(Err(status)) => return Err(classify(status, max_message_size)),
        Ok(Ok(r)) => r.into_inner(),
    };
    if response.flag != ConfigFlag::DumpProcessCache as i32 {
        return Err(DebugApiError::WrongFlag(response.flag));
    }
    let Some(get_debug_response::Arg::Processes(list)) = response.arg else {
        return Err(DebugApiError::NoProcessList);
    };
    if list.processes.is_empty() {
        return Err(DebugApiError::EmptyCache);
    }
    // Each decoded process is dropped once converted: its memory is reused
    // for the next entries instead of both lists being held at once.
    Ok(list
        .processes
        .into_iter()
        .filter_map(|entry| entry.process)
        .map(|p| process_to_snapshot(&p, ""))
        .collect())
}
