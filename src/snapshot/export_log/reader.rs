//! The shell around the pure parts: opens the files, streams their lines through
//! the parser into the [`Generation`] fold, counts everything, logs a summary.
use tracing::{info, warn};

use super::error::ExportLogError;
use super::files::{discover, open_all, ExportFileSet, ExportLogLocation, OpenedFile};
use super::generation::{Applied, CompletedGeneration, Generation, InferredBy, StartupMarker};
use super::lines::{file_lines, Line};
use super::parse::{parse_line, ParsedLine};
use super::stats::ExportLogStats;
use crate::snapshot::model::{ProcessSnapshot, SnapshotSource};
use crate::tetragon::proto::get_events_response::Event;
use crate::time::{now_ms, rfc3339_from_parts, rfc3339_ms};

/// Builds a snapshot from the export log at `location`: the processes alive at
/// the end of the log, as seen since Tetragon's most recent startup.
///
/// Blocking file I/O: call it from `spawn_blocking` in async code.
pub fn read_snapshot(
    location: &ExportLogLocation,
) -> Result<(ProcessSnapshot, ExportLogStats), ExportLogError> {
    read_file_set(&discover(location)?)
}

/// As [`read_snapshot`], for an already listed file set.
pub fn read_file_set(
    set: &ExportFileSet,
) -> Result<(ProcessSnapshot, ExportLogStats), ExportLogError> {
    let (opened, vanished) = open_all(set)?;
    let mut stats = ExportLogStats {
        files_ignored: set.ignored.clone(),
        files_vanished: vanished,
        ..ExportLogStats::default()
    };
    let mut fold = Generation::new();
    let mut newest = None;
    for (index, file) in opened.into_iter().enumerate() {
        stats.files_read.push(file.path.clone());
        read_file(index, file, &mut fold, &mut stats, &mut newest);
    }
    stats.newest_event_time = newest.and_then(|(s, n)| rfc3339_from_parts(s, n));
    stats.startups = fold.startups();
    let Some(done) = fold.finish() else {
        warn_skips(&stats);
        return Err(ExportLogError::NoStartupFound {
            files: stats.files_read.clone(),
            lines: stats.lines,
        });
    };
    let snapshot = finish_stats(done, &mut stats);
    warn_skips(&stats);
    if stats.startup_marker == Some(StartupMarker::Inferred) {
        warn!(
            file = ?stats.startup_file,
            line = stats.startup_line,
            inferred_by = stats.startup_inferred_by.map(InferredBy::as_str),
            carried_over = stats.carried_over,
            "Tetragon export log has no startup marker (pid 0 <kernel> not exported, as with \
             the Helm chart's default export deny list); startup inferred from procFS lines: \
             a scan whose beginning was rotated away cannot be told from a complete one"
        );
    }
    info!(
        files = stats.files_read.len(),
        lines = stats.lines,
        bytes = stats.bytes,
        startups = stats.startups,
        startup_marker = stats.startup_marker.map(StartupMarker::as_str),
        procfs_execs = stats.procfs_execs,
        processes = snapshot.processes.len(),
        "snapshot built from Tetragon export log"
    );
    Ok((snapshot, stats))
}

fn finish_stats(done: CompletedGeneration, stats: &mut ExportLogStats) -> ProcessSnapshot {
    stats.startup_file = stats.files_read.get(done.started_at.file_index).cloned();
    stats.startup_line = Some(done.started_at.line_no);
    stats.startup_marker = Some(done.marker);
    stats.startup_inferred_by = done.inferred_by;
    stats.carried_over = done.counts.carried_over;
    stats.carried_dropped = done.counts.carried_dropped;
    stats.procfs_execs = done.counts.procfs_execs;
    stats.live_execs = done.counts.live_execs;
    stats.exits_applied = done.counts.exits_applied;
    stats.exits_unmatched = done.counts.exits_unmatched;
    stats.superseded = done.counts.superseded;
    ProcessSnapshot {
        source: SnapshotSource::ExportLog,
        taken_at: rfc3339_ms(now_ms()),
        processes: done.processes,
    }
}

/// Reads one file to its end. A read error (I/O, corrupt gzip) ends this file
/// only: the lines before it were valid, and later files may hold the startup.
fn read_file(
    index: usize,
    file: OpenedFile,
    fold: &mut Generation,
    stats: &mut ExportLogStats,
    newest: &mut Option<(i64, i32)>,
) {
    let path = file.path;
    let mut lines = file_lines(file.file, file.compressed);
    let bytes_before = stats.bytes;
    loop {
        let line = match lines.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                warn!(file = %path.display(), line = lines.line_no() + 1, error = %e,
                      "stopped reading export log file early");
                stats.files_failed.push((path.clone(), e.to_string()));
                break;
            }
        };
        let (bytes, terminated) = match line {
            Line::Complete(b) => (b, true),
            Line::Unterminated(b) => (b, false),
            Line::TooLong { .. } => {
                stats.skipped_too_long += 1;
                continue;
            }
        };
        let event = match parse_line(bytes) {
            ParsedLine::Event(e) => e,
            ParsedLine::Blank => {
                stats.skipped_blank += 1;
                continue;
            }
            ParsedLine::NonUtf8 => {
                stats.skipped_non_utf8 += 1;
                continue;
            }
            ParsedLine::Malformed if !terminated => {
                stats.skipped_truncated += 1;
                continue;
            }
            ParsedLine::Malformed => {
                stats.skipped_malformed += 1;
                continue;
            }
        };
        match &event.event {
            Some(Event::ProcessExec(_)) => stats.execs += 1,
            Some(Event::ProcessExit(_)) => stats.exits += 1,
            _ => {}
        }
        if let Some(t) = &event.time {
            let t = (t.seconds, t.nanos);
            if newest.is_none_or(|n| t > n) {
                *newest = Some(t);
            }
        }
        match fold.push(index, lines.line_no(), &event) {
            Applied::OtherKind => stats.skipped_other_kinds += 1,
            Applied::Incomplete => stats.skipped_incomplete += 1,
            _ => {}
        }
    }
    stats.lines += lines.line_no();
    stats.bytes = bytes_before + lines.bytes();
}

/// One warning with all skip counts, instead of one per line.
fn warn_skips(stats: &ExportLogStats) {
    if stats.skipped() > stats.skipped_other_kinds {
        warn!(
            malformed = stats.skipped_malformed,
            non_utf8 = stats.skipped_non_utf8,
            truncated = stats.skipped_truncated,
            too_long = stats.skipped_too_long,
            blank = stats.skipped_blank,
            incomplete = stats.skipped_incomplete,
            "skipped unreadable lines in Tetragon export log"
        );
    }
    if !stats.files_vanished.is_empty() || !stats.files_ignored.is_empty() {
        info!(
            vanished = ?stats.files_vanished,
            ignored = ?stats.files_ignored,
            "export log files changed by rotation or left out as duplicates"
        );
    }
}
