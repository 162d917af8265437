//! Errors of the export-log snapshot source. Each message names what failed and
//! what the operator can do about it, because this source is a fallback that is
//! usually reached when something else is already wrong.
use std::path::PathBuf;

use thiserror::Error;

/// Shows a list of paths in an error message as `a, b`.
pub(crate) fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Error)]
pub enum ExportLogError {
    /// Neither the active file nor any rotated sibling exists at any candidate.
    #[error(
        "no Tetragon export log found (tried {}); enable Tetragon's JSON export \
         (--export-filename) and pass its path with --export-log PATH, or mount its \
         directory read-only into the agent",
        join_paths(.tried)
    )]
    NotFound { tried: Vec<PathBuf> },

    /// A directory that should hold the export log could not be listed.
    #[error(
        "cannot list export log directory {}: {source}; check that it is mounted and \
         readable by the agent, or pass another path with --export-log PATH",
        .dir.display()
    )]
    ListDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A listed export file could not be opened (other than vanishing to rotation).
    #[error(
        "cannot open export log file {}: {source}; Tetragon writes it with mode 0600 \
         (--export-file-perm), so the agent needs to run as its owner or the mode must \
         allow reading",
        .path.display()
    )]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The files were read but hold no procFS exec at all (no startup scan, with
    /// or without its pid 0 marker), so they cannot say what was running.
    #[error(
        "no Tetragon startup found in the export log ({} lines read from {}; no procFS \
         lines): the startup scan was rotated away or Tetragon never started while \
         exporting; use the debug-api snapshot source or raise --export-file-max-backups",
        .lines,
        join_paths(.files)
    )]
    NoStartupFound { files: Vec<PathBuf>, lines: u64 },
}

impl ExportLogError {
    /// A low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::ListDir { .. } => "list_dir",
            Self::Open { .. } => "open",
            Self::NoStartupFound { .. } => "no_startup",
        }
    }
}
