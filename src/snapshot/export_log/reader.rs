//! The shell around the pure parts: opens the files, streams their lines through
//! the parser into the [`Generation`] fold, counts everything, logs a summary.
//!
//! Lines go through the [`light`](super::light) decode; only lines it does not
//! accept are decoded fully on the spot (to be classified exactly as the full
//! decode classifies them). The fold keeps the raw line of each live process,
//! and only the processes alive at the end are fully decoded into
//! [`SnapshotProcess`]: memory stays bounded by the live set.
use tracing::{error, info, warn};

use super::error::ExportLogError;
use super::files::{discover, open_all, ExportFileSet, ExportLogLocation, OpenedFile};
use super::generation::{
    snapshot_of_exec, Applied, CompletedGeneration, FoldEvent, Generation, InferredBy, LinePos,
    StartupMarker,
};
use super::light::{decode_light, LightEvent};
use super::lines::{file_lines, Line};
use super::parse::{line_text, parse_text, ParsedLine};
use super::stats::ExportLogStats;
use crate::snapshot::model::{ProcessSnapshot, SnapshotProcess, SnapshotSource};
use crate::tetragon::proto::get_events_response::Event;
use crate::time::{now_ms, rfc3339_from_parts, rfc3339_ms};

/// How lines are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decode {
    /// The light decode, the full one only where it does not accept a line.
    Light,
    /// Every line fully decoded: the former reader, kept as the reference the
    /// fast one is tested against.
    #[cfg_attr(not(test), allow(dead_code))]
    Full,
}

/// What the fold keeps of a live process.
#[derive(Debug)]
enum Payload {
    /// Its exec line, accepted by the light decode: decoded fully at the end.
    Line(Box<str>),
    /// Already decoded (the line needed the full decode).
    Decoded(Box<SnapshotProcess>),
}

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
    read_with(set, Decode::Light)
}

/// The former reader, decoding every line fully: the reference for the fast one.
#[cfg(test)]
pub(crate) fn read_file_set_full(
    set: &ExportFileSet,
) -> Result<(ProcessSnapshot, ExportLogStats), ExportLogError> {
    read_with(set, Decode::Full)
}

fn read_with(
    set: &ExportFileSet,
    decode: Decode,
) -> Result<(ProcessSnapshot, ExportLogStats), ExportLogError> {
    let (opened, vanished) = open_all(set)?;
    let mut stats = ExportLogStats {
        files_ignored: set.ignored.clone(),
        files_vanished: vanished,
        ..ExportLogStats::default()
    };
    let mut fold = Generation::<Payload>::default();
    let mut newest = None;
    for (index, file) in opened.into_iter().enumerate() {
        stats.files_read.push(file.path.clone());
        read_file(index, file, decode, &mut fold, &mut stats, &mut newest);
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
            carried_over = stats.startup_counts.carried_over,
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
        procfs_execs = stats.startup_counts.procfs_execs,
        processes = snapshot.processes.len(),
        "snapshot built from Tetragon export log"
    );
    Ok((snapshot, stats))
}

fn finish_stats(done: CompletedGeneration<Payload>, stats: &mut ExportLogStats) -> ProcessSnapshot {
    stats.startup_file = stats.files_read.get(done.started_at.file_index).cloned();
    stats.startup_line = Some(done.started_at.line_no);
    stats.startup_marker = Some(done.marker);
    stats.startup_inferred_by = done.inferred_by;
    stats.startup_counts = done.counts.clone();
    ProcessSnapshot {
        source: SnapshotSource::ExportLog,
        taken_at: rfc3339_ms(now_ms()),
        processes: done.processes.into_iter().filter_map(resolve).collect(),
    }
}

/// The full decode of a process alive at the end.
fn resolve(payload: Payload) -> Option<SnapshotProcess> {
    let line = match payload {
        Payload::Decoded(p) => return Some(*p),
        Payload::Line(line) => line,
    };
    let process = match parse_text(&line) {
        ParsedLine::Event(event) => snapshot_of_exec(&event),
        _ => None,
    };
    if process.is_none() {
        // The light decode accepts only lines the full one accepts (tested).
        debug_assert!(
            false,
            "light-accepted exec line fails the full decode: {line}"
        );
        error!(line = %crate::log_quote::name(&line), "export log line accepted by the light decode fails the full one; process left out");
    }
    process
}

/// Reads one file to its end. A read error (I/O, corrupt gzip) ends this file
/// only: the lines before it were valid, and later files may hold the startup.
fn read_file(
    index: usize,
    file: OpenedFile,
    decode: Decode,
    fold: &mut Generation<Payload>,
    stats: &mut ExportLogStats,
    newest: &mut Option<(i64, i32)>,
) {
    let path = file.path;
    let mut lines = file_lines(file.file, file.compressed);
    let bytes_before = stats.bytes;
    loop {
        // `next_line` counts every line it returns (and the line borrows `lines`).
        let line_no = lines.line_no() + 1;
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
        let text = match line_text(bytes) {
            Ok(text) => text,
            Err(ParsedLine::NonUtf8) => {
                stats.skipped_non_utf8 += 1;
                continue;
            }
            Err(_) => {
                stats.skipped_blank += 1;
                continue;
            }
        };
        let pos = LinePos {
            file_index: index,
            line_no,
        };
        let light = match decode {
            Decode::Light => decode_light(text),
            Decode::Full => None,
        };
        let applied = if let Some(light) = light {
            let (exec, exit) = match &light.event {
                LightEvent::Exec(_) => (true, false),
                LightEvent::Exit(_) => (false, true),
                LightEvent::Other => (false, false),
            };
            count_event(stats, newest, exec, exit, light.time);
            fold.apply(pos, light.event.fold_event(), || Payload::Line(text.into()))
        } else {
            let event = match parse_text(text) {
                ParsedLine::Event(e) => e,
                ParsedLine::Malformed if !terminated => {
                    stats.skipped_truncated += 1;
                    continue;
                }
                _ => {
                    stats.skipped_malformed += 1;
                    continue;
                }
            };
            count_event(
                stats,
                newest,
                matches!(event.event, Some(Event::ProcessExec(_))),
                matches!(event.event, Some(Event::ProcessExit(_))),
                event.time.map(|t| (t.seconds, t.nanos)),
            );
            fold.apply(pos, FoldEvent::of(&event), || {
                Payload::Decoded(Box::new(
                    snapshot_of_exec(&event).expect("the fold keeps only execs with a process"),
                ))
            })
        };
        match applied {
            Applied::OtherKind => stats.skipped_other_kinds += 1,
            Applied::Incomplete => stats.skipped_incomplete += 1,
            _ => {}
        }
    }
    stats.lines += lines.line_no();
    stats.bytes = bytes_before + lines.bytes();
}

/// Counts a decoded event's kind and keeps the newest `time`.
fn count_event(
    stats: &mut ExportLogStats,
    newest: &mut Option<(i64, i32)>,
    exec: bool,
    exit: bool,
    time: Option<(i64, i32)>,
) {
    stats.execs += u64::from(exec);
    stats.exits += u64::from(exit);
    if let Some(t) = time {
        if newest.is_none_or(|n| t > n) {
            *newest = Some(t);
        }
    }
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

/// The fast reader against the former full-decode one, on the fixture logs and
/// on mutations of them: same snapshot, same stats, same errors.
#[cfg(test)]
mod differential_tests {
    use std::io::Read;
    use std::path::{Path, PathBuf};

    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/export-log");

    /// Reads `path` (and its rotated siblings) both ways and compares.
    fn same_both_ways(path: &Path) -> Result<(ProcessSnapshot, ExportLogStats), String> {
        let set = discover(&ExportLogLocation::Path(path.to_path_buf())).expect("discover");
        let fast = read_file_set(&set);
        let full = read_file_set_full(&set);
        match (fast, full) {
            (Ok((fast_snap, fast_stats)), Ok((full_snap, full_stats))) => {
                assert_eq!(
                    fast_stats,
                    full_stats,
                    "stats differ for {}",
                    path.display()
                );
                assert_eq!(fast_snap.source, full_snap.source);
                assert_eq!(
                    fast_snap.processes,
                    full_snap.processes,
                    "snapshots differ for {}",
                    path.display()
                );
                Ok((fast_snap, fast_stats))
            }
            (Err(fast), Err(full)) => {
                assert_eq!(format!("{fast:?}"), format!("{full:?}"));
                Err(format!("{fast:?}"))
            }
            (fast, full) => panic!(
                "fast {:?} vs full {:?} for {}",
                fast.map(|(_, s)| s),
                full.map(|(_, s)| s),
                path.display()
            ),
        }
    }

    /// Every line of the fixtures: the rotation directory oldest first, then the
    /// single-startup export.
    fn fixture_lines() -> (Vec<String>, Vec<String>) {
        let dir = PathBuf::from(FIXTURES).join("real-rotation");
        let mut rotated: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("fixture dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "gz"))
            .collect();
        rotated.sort();
        let mut text = String::new();
        for gz in rotated {
            flate2::read::GzDecoder::new(std::fs::File::open(gz).expect("open"))
                .read_to_string(&mut text)
                .expect("gunzip");
        }
        text.push_str(&std::fs::read_to_string(dir.join("tetragon.log")).expect("read"));
        let single =
            std::fs::read_to_string(PathBuf::from(FIXTURES).join("real/tetragon-export.jsonl"))
                .expect("read");
        let lines = |t: &str| t.lines().map(str::to_owned).collect::<Vec<_>>();
        (lines(&text), lines(&single))
    }

    fn write_log(dir: &Path, lines: &[String], trailing_newline: bool) -> PathBuf {
        let path = dir.join("tetragon.log");
        let mut text = lines.join("\n");
        if trailing_newline {
            text.push('\n');
        }
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn fixture_logs_read_the_same_both_ways() {
        let rotation = PathBuf::from(FIXTURES).join("real-rotation/tetragon.log");
        let (_, stats) = same_both_ways(&rotation).expect("rotation reads");
        assert_eq!(stats.startups, 3);
        let single = PathBuf::from(FIXTURES).join("real/tetragon-export.jsonl");
        same_both_ways(&single).expect("single reads");
    }

    #[test]
    fn the_light_decode_takes_every_fixture_line() {
        let (rotation, single) = fixture_lines();
        for line in rotation.iter().chain(&single) {
            if matches!(parse_text(line), ParsedLine::Event(_)) {
                assert!(decode_light(line).is_some(), "light decode refused {line}");
            }
        }
    }

    #[test]
    fn fixtures_without_kernel_or_bash_lines_read_the_same_both_ways() {
        let (rotation, single) = fixture_lines();
        let dir = tempfile::tempdir().expect("tempdir");
        for lines in [rotation, single] {
            let no_kernel: Vec<String> = lines
                .iter()
                .filter(|l| !l.contains("\"<kernel>\""))
                .cloned()
                .collect();
            let (_, stats) =
                same_both_ways(&write_log(dir.path(), &no_kernel, true)).expect("inferred");
            assert_eq!(stats.startup_marker, Some(StartupMarker::Inferred));
            let no_bash: Vec<String> = no_kernel
                .iter()
                .filter(|l| !l.contains("\"binary\":\"/usr/bin/bash\""))
                .cloned()
                .collect();
            same_both_ways(&write_log(dir.path(), &no_bash, true)).expect("inferred");
        }
    }

    #[test]
    fn fixtures_with_clone_execs_logged_last_read_the_same_both_ways() {
        // Every chain head (`execve clone`) after its re-execs (`execve`), as
        // Tetragon may log them: the exec-chain rule must agree both ways.
        let (_, single) = fixture_lines();
        let (clones, rest): (Vec<String>, Vec<String>) = single.into_iter().partition(|l| {
            l.contains("\"process_exec\"") && l.contains("\"flags\":\"execve clone\"")
        });
        assert!(clones.len() > 200);
        let dir = tempfile::tempdir().expect("tempdir");
        let lines: Vec<String> = rest.into_iter().chain(clones).collect();
        let (_, stats) = same_both_ways(&write_log(dir.path(), &lines, true)).expect("reads");
        assert!(stats.startup_counts.superseded > 200);
    }

    /// Edits of a line that keep it JSON but may make it an invalid event, or
    /// valid in a form the light decode leaves to the full one.
    fn mutate(line: &str, which: usize) -> String {
        let once = |from: &str, to: &str| line.replacen(from, to, 1);
        match which % 24 {
            0 => once("\"exec_id\":\"", "\"execId\":\""),
            1 => once("\"uid\":", "\"uid\":\"x\",\"cwd\":"),
            2 => once("\"exec_id\":", "\"exec_id\":\"dup\",\"exec_id\":"),
            3 => once(
                "\"process_exec\":{",
                "\"process_exec\":null,\"process_exit\":{",
            ),
            4 => once(
                "\"process_exit\":{",
                "\"process_exit\":null,\"process_exec\":{",
            ),
            5 => once("{", "{\"process_kprobe\":{\"args\":[1,{\"a\":null}]},"),
            6 => once("\"exec_id\":\"", "\"exec_id\":\"\\u0041"),
            7 => line[..line.len() / 2].to_owned(),
            8 => once("\"pid\":", "\"pid\":\"1\",\"tid\":"),
            9 => once("\"pod_labels\":{", "\"pod_labels\":{\"n\":1,"),
            10 => once("\"node_name\":\"", "\"node_name\":7,\"x\":\""),
            11 => once("\"time\":\"", "\"time\":\"not a time\",\"y\":\""),
            12 => once("\"parent\":{", "\"parent\":{\"refcnt\":\"many\","),
            13 => once("\"process\":{", "\"process\":{\"pid\":null,"),
            14 => once("\"flags\":\"", "\"flags\":null,\"z\":\""),
            15 => once("\"process\":{", "\"ancestors\":null,\"process\":{"),
            16 => once("\"process\":{", "\"process\":null,\"q\":{"),
            17 => once("\"in_init_tree\":", "\"in_init_tree\":\"yes\",\"w\":"),
            18 => once("\"start_time\":\"", "\"startTime\":\""),
            19 => once("\"exec_id\":\"", "\"exec_id\":\"\","),
            20 => once("\"process_exec\":", "\"processExec\":"),
            21 => once("{", "["),
            22 => once("\"pid\":", "\"pid\":-1,\"tid\":"),
            _ => once("\"container\":{", "\"container\":{\"maybe_exec_probe\":1,"),
        }
    }

    #[test]
    fn mutated_fixture_lines_read_the_same_both_ways() {
        let (rotation, single) = fixture_lines();
        let dir = tempfile::tempdir().expect("tempdir");
        for (lines, drop_kernel) in [(&rotation, false), (&rotation, true), (&single, false)] {
            for variant in 0..6 {
                let mutated: Vec<String> = lines
                    .iter()
                    .filter(|l| !(drop_kernel && l.contains("\"<kernel>\"")))
                    .enumerate()
                    .map(|(i, l)| {
                        if (i * 7 + variant) % 3 == 0 {
                            mutate(l, i / 3 + variant * 5)
                        } else {
                            l.clone()
                        }
                    })
                    .collect();
                let path = write_log(dir.path(), &mutated, variant % 2 == 0);
                same_both_ways(&path).ok();
            }
        }
    }

    #[test]
    fn edge_case_lines_read_the_same_both_ways() {
        let exec = |id: &str, pid: u32, flags: &str| {
            format!(
                r#"{{"process_exec":{{"process":{{"exec_id":"{id}","pid":{pid},"binary":"/b","flags":"{flags}"}}}},"node_name":"n1","time":"2026-11-29T15:00:00Z"}}"#
            )
        };
        let exit = |id: &str, pid: u32| {
            format!(
                r#"{{"process_exit":{{"process":{{"exec_id":"{id}","pid":{pid},"flags":"procFS"}}}},"time":"2026-11-29T15:00:01Z"}}"#
            )
        };
        let lines = vec![
            exec("before", 4, "execve"),
            exec("k", 0, "procFS"),
            "not json".to_owned(),
            String::new(),
            "   ".to_owned(),
            "[1,2,3]".to_owned(),
            "null".to_owned(),
            "{}".to_owned(),
            r#"{"process_exec":{"process":{"pid":"seven"}}}"#.to_owned(),
            r#"{"process_exec":{}}"#.to_owned(),
            r#"{"process_exec":null}"#.to_owned(),
            r#"{"process_exit":{"process":{"pid":3}}}"#.to_owned(),
            r#"{"rate_limit_info":{"number_of_dropped_process_events":3}}"#.to_owned(),
            r#"{"process_kprobe":{"function_name":"tcp_connect"},"node_name":"n1"}"#.to_owned(),
            exec("a", 10, "procFS"),
            exec("b", 11, "procFS"),
            exec("b-again", 11, "execve"),
            exit("a", 10),
            // Exits that are valid JSON but not valid events: skipped, `b` stays.
            r#"{"process_exit":{"process":{"exec_id":"b-again","pid":11},"status":"x"}}"#.to_owned(),
            r#"{"process_exit":{"process":{"exec_id":"b-again","uid":"x"}}}"#.to_owned(),
            r#"{"process_exit":{"process":{"exec_id":"b-again"},"ancestors":null}}"#.to_owned(),
            // Valid forms the light decode leaves to the full one.
            r#"{"process_exec":null,"process_exec":{"process":{"exec_id":"c","pid":12,"flags":"execve"}}}"#.to_owned(),
            r#"{"process_exec":{"process":{"pid":null,"pid":13,"exec_id":"d","flags":"execve"}}}"#.to_owned(),
            r#"{"processExec":{"process":{"execId":"e","pid":"14","flags":"execve"}},"nodeName":"n2"}"#.to_owned(),
            r#"{"process_exec":{"process":{"exec_id":"f\u0041","pid":15,"flags":"execve"}},"time":"2026-11-29T16:00:00.5Z"}"#.to_owned(),
            exec("late", 30, "execve")[..20].to_owned(),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let (snap, stats) =
            same_both_ways(&write_log(dir.path(), &lines, false)).expect("startup found");
        let ids: Vec<&str> = snap.processes.iter().map(|p| p.exec_id.as_str()).collect();
        assert_eq!(ids, ["k", "b-again", "c", "d", "e", "fA"]);
        assert_eq!(stats.skipped_truncated, 1);
        let mut bytes = lines[..3].join("\n").into_bytes();
        bytes.extend_from_slice(b"\n{\"process_exec\":\xff\xfe}\n");
        std::fs::write(dir.path().join("tetragon.log"), bytes).expect("write");
        same_both_ways(&dir.path().join("tetragon.log")).expect("startup found");
        let none = write_log(dir.path(), &lines[2..14], true);
        assert!(same_both_ways(&none).is_err());
    }
}
