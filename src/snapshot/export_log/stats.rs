//! What a read of the export log saw: for health output, metrics and the one
//! summary log line (skips are counted, never logged per line).
use std::path::PathBuf;

use serde::Serialize;

use super::generation::{InferredBy, StartupMarker};

/// Counters of one export-log read. Line counters cover every file read;
/// `procfs_execs` .. `superseded` describe only the startup that was used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportLogStats {
    /// Files read, oldest first (the active file last).
    pub files_read: Vec<PathBuf>,
    /// Present but deliberately not read: `.gz.tmp`, `.gz` twins of a plain file.
    pub files_ignored: Vec<PathBuf>,
    /// Listed but gone before they could be opened (rotation pruned them).
    pub files_vanished: Vec<PathBuf>,
    /// Files whose reading stopped early (I/O error, corrupt gzip), with why.
    pub files_failed: Vec<(PathBuf, String)>,
    pub lines: u64,
    /// Bytes of line data (decompressed), newlines included.
    pub bytes: u64,
    /// All `process_exec` lines.
    pub execs: u64,
    /// All `process_exit` lines.
    pub exits: u64,
    /// Startup generations found (marked by pid 0's procFS exec, or inferred).
    pub startups: u64,
    /// How the used startup was found: `kernel` (pid 0 `<kernel>`'s procFS
    /// exec) or `inferred` (no marker in the log, e.g. Tetragon's Helm default
    /// export deny list; see the module docs for what that cannot tell).
    pub startup_marker: Option<StartupMarker>,
    /// For an inferred startup: `first_procfs`, `repeated_exec_id` or `repeated_pid`.
    pub startup_inferred_by: Option<InferredBy>,
    /// Where the used startup begins (an inferred one: where it was recognized).
    pub startup_file: Option<PathBuf>,
    pub startup_line: Option<u64>,
    /// The used startup's own counters (procFS execs, live execs, exits,
    /// superseded and carried entries), flattened into the JSON.
    #[serde(flatten)]
    pub startup_counts: super::generation::GenerationCounts,
    /// Not JSON, or JSON that is not a `GetEventsResponse`.
    pub skipped_malformed: u64,
    pub skipped_non_utf8: u64,
    /// A last line without newline that does not parse (cut mid-write).
    pub skipped_truncated: u64,
    pub skipped_too_long: u64,
    pub skipped_blank: u64,
    /// Events that are neither exec nor exit.
    pub skipped_other_kinds: u64,
    /// Execs/exits without a process or exec_id.
    pub skipped_incomplete: u64,
    /// Newest top-level event `time` (RFC 3339): how fresh the log is. The max,
    /// since procFS lines carry process start times and go backwards.
    pub newest_event_time: Option<String>,
}

impl ExportLogStats {
    /// Lines skipped for any reason.
    pub fn skipped(&self) -> u64 {
        self.skipped_malformed
            + self.skipped_non_utf8
            + self.skipped_truncated
            + self.skipped_too_long
            + self.skipped_blank
            + self.skipped_other_kinds
            + self.skipped_incomplete
    }
}
