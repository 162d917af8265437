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
//! - [`generation`]: the pure fold from events to the live set;
//! - [`reader`]: the shell that ties them together.
//!
//! Without any startup marker the read fails with
//! [`ExportLogError::NoStartupFound`] instead of guessing from procFS lines
//! whose scan was partly rotated away: a partial scan would silently miss
//! processes, and the caller can fall back or report it.
//!
//! Limits: the log says nothing about processes whose exit Tetragon dropped
//! or never exported (filters, rate limits), and it may be stale: see
//! [`ExportLogStats::newest_event_time`].
pub mod error;
pub mod files;
pub mod generation;
pub mod lines;
pub mod parse;
pub mod reader;
pub mod stats;

pub use error::ExportLogError;
pub use files::{ExportLogLocation, EXPORT_LOG_PATH, LEGACY_EXPORT_LOG_PATH};
pub use generation::{Applied, CompletedGeneration, Generation, GenerationCounts, LinePos};
pub use reader::{read_file_set, read_snapshot};
pub use stats::ExportLogStats;
