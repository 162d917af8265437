//! Store errors: each names the database path and what the operator can do.
use std::path::PathBuf;

use thiserror::Error;

/// Serializable: the child process that checks a database reports it as JSON.
#[derive(Debug, Clone, Error, serde::Serialize, serde::Deserialize)]
pub enum StoreError {
    #[error("database {path} is locked by another process (is an agent already running on it?); stop it, or read a running agent's state with `debug --admin-socket PATH`")]
    Locked { path: PathBuf },
    #[error("database {path} cannot be opened: {reason}; the files were left untouched. Restore it, point --db at another directory, or start fresh with --quarantine-corrupt-db (moves it aside)")]
    Corrupt { path: PathBuf, reason: String },
    #[error("database {path} is not a tetragon-learner database ({reason}); point --db at an empty or tetragon-learner directory")]
    Foreign { path: PathBuf, reason: String },
    #[error("database {path} has schema version {found}, newer than this agent understands ({supported}); run a newer tetragon-learner")]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("database {path}: record {key:?} cannot be decoded: {reason}")]
    BadRecord {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error(
        "database {path}: I/O failed: {reason}; check the disk and the volume mounted for --db"
    )]
    Io { path: PathBuf, reason: String },
    #[error("moving corrupt database {path} aside to {to} failed: {reason}")]
    Quarantine {
        path: PathBuf,
        to: PathBuf,
        reason: String,
    },
}

impl StoreError {
    /// The same error about `path` (a check ran on a copy; the operator knows
    /// the original).
    pub fn at_path(self, to: &std::path::Path) -> Self {
        let mut e = self;
        match &mut e {
            Self::Locked { path }
            | Self::Corrupt { path, .. }
            | Self::Foreign { path, .. }
            | Self::NewerSchema { path, .. }
            | Self::BadRecord { path, .. }
            | Self::Io { path, .. }
            | Self::Quarantine { path, .. } => *path = to.to_path_buf(),
        }
        e
    }
}
