//! Snapshot source of last resort: Tetragon's JSON export log, used when the
//! GetDebug process-cache dump is unavailable.
//!
//! At startup Tetragon logs one `process_exec` flagged `procFS` per process it
//! finds in `/proc`, pid 0 `<kernel>` first. The snapshot is that scan, from the
//! *most recent* startup, completed with the execs and exits logged after it:
//! what was alive at the end of the log. The scan may start in a rotated file
//! and continue in newer ones, so all files are read as one stream, oldest first.
//!
//! - [`files`]: where the log is, its rotated siblings and their order;
//! - [`lines`]: bounded-memory line reading over plain and gzip files;
//! - [`parse`]: one line to one event (or a counted reason to skip it);
//! - [`light`]: the fast decode of only what the fold needs (the full decode
//!   runs on the processes alive at the end, and on lines it does not accept);
//! - [`generation`]: the pure fold from events to the live set;
//! - `live_set`: the fold's live processes and their indexes;
//! - [`reader`]: the shell that ties them together.
//!
//! The startup is found by pid 0's procFS exec when the log has it. Tetragon's
//! Helm chart exports no host process by default (`exportDenyList` namespace
//! `""`), `<kernel>` included: then the startup is *inferred* from the procFS
//! lines themselves (see [`generation`]), reported as
//! [`ExportLogStats::startup_marker`] `inferred` and logged as a warning, since
//! without the marker a scan whose beginning was rotated away cannot be told
//! from a complete one (its lost part is silently missing), and a restart is
//! only recognized when the new scan re-reports a process of the previous one.
//! With no procFS line at all the read fails with
//! [`ExportLogError::NoStartupFound`].
//!
//! Limits: the log says nothing about processes whose exit Tetragon dropped
//! or never exported (filters, rate limits), and it may be stale: see
//! [`ExportLogStats::newest_event_time`].
pub mod error;
pub mod files;
pub mod generation;
pub mod light;
pub mod lines;
mod live_set;
pub mod parse;
pub mod reader;
pub mod stats;

pub use error::ExportLogError;
pub use files::{ExportLogLocation, EXPORT_LOG_PATH, LEGACY_EXPORT_LOG_PATH};
pub use generation::{
    Applied, CompletedGeneration, FoldEvent, FoldProcess, Generation, GenerationCounts, InferredBy,
    LinePos, StartupMarker,
};
pub use reader::{read_file_set, read_snapshot};
pub use stats::ExportLogStats;
