//! The export-log snapshot source against real Tetragon export files (copied
//! into tests/fixtures/export-log, see its README) and synthetic edge cases.
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::Value;
use tempfile::TempDir;
use tetragon_learner::snapshot::export_log::files::list_file_set;
use tetragon_learner::snapshot::export_log::lines::{file_lines, Line};
use tetragon_learner::snapshot::export_log::parse::{parse_line, ParsedLine};
use tetragon_learner::snapshot::export_log::{
    read_file_set, read_snapshot, ExportLogError, ExportLogLocation, ExportLogStats, Generation,
    InferredBy, StartupMarker,
};
use tetragon_learner::snapshot::model::{ProcessSnapshot, SnapshotSource};
use tetragon_learner::tetragon::proto::get_events_response::Event;

const ROTATION: &str = "tests/fixtures/export-log/real-rotation";
const ACTIVE: &str = "tetragon.log";
const ROTATED: [&str; 4] = [
    "tetragon-2026-11-29T15-37-22.558.log.gz",
    "tetragon-2026-11-29T15-38-00.978.log.gz",
    "tetragon-2026-11-29T15-38-01.750.log.gz",
    "tetragon-2026-11-29T15-38-02.431.log.gz",
];
/// pid 0, pid 1, two `/memfd` processes, two long-lived lab shells and the
/// daemon: startup 3's procFS processes that never exit (README "expected.json").
const NEVER_EXITED: [&str; 7] = [
    "dm06MTow",
    "dm06Mjc3MjE4MDAwMDAwMDoxMjY4",
    "dm06NDEzNDAwMDAwMDA6MTQwMQ==",
    "dm06MjUwMDAwMDAwOjE=",
    "dm06Mjc3MjE4MDAwMDAwMDoxMjY3",
    "dm06NDEzMzAwMDAwMDA6MTQwMA==",
    "dm06MzEwMTY0MDAwMDAwMDo2NTcx",
];

fn rotation_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(ROTATION)
}

fn expected() -> Value {
    let text = fs::read_to_string(rotation_dir().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json is JSON")
}

/// `[exec_id, binary]` of startup 3's procFS execs, binary `""` for JSON null.
fn expected_last_startup() -> Vec<(String, String)> {
    expected()["active_file"]["last_startup_procfs"]
        .as_array()
        .expect("list")
        .iter()
        .map(|pair| {
            let id = pair[0].as_str().expect("exec_id").to_string();
            (id, pair[1].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

fn read(path: &Path) -> Result<(ProcessSnapshot, ExportLogStats), ExportLogError> {
    read_snapshot(&ExportLogLocation::Path(path.to_path_buf()))
}

fn ids(s: &ProcessSnapshot) -> Vec<&str> {
    s.processes.iter().map(|p| p.exec_id.as_str()).collect()
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect()
}

/// Copies the chosen rotation files into a fresh directory.
fn copy_rotation(files: &[&str]) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in files {
        fs::copy(rotation_dir().join(f), dir.path().join(f)).expect("copy fixture");
    }
    dir
}

fn active_lines() -> Vec<String> {
    let text = fs::read_to_string(rotation_dir().join(ACTIVE)).expect("tetragon.log");
    text.lines().map(str::to_string).collect()
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let file = fs::File::open(path).expect("open gz");
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(file), &mut out).expect("gunzip");
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

fn exec_line(exec_id: &str, pid: u32, binary: &str, flags: &str) -> String {
    serde_json::json!({
        "process_exec": {"process": {"exec_id": exec_id, "pid": pid, "binary": binary, "flags": flags}},
        "node_name": "n1", "time": "2026-11-29T15:00:00Z"
    })
    .to_string()
}

fn exit_line(exec_id: &str, pid: u32, flags: &str) -> String {
    serde_json::json!({
        "process_exit": {"process": {"exec_id": exec_id, "pid": pid, "flags": flags}},
        "node_name": "n1", "time": "2026-11-29T15:00:01Z"
    })
    .to_string()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).expect("write log");
}

#[test]
fn real_rotation_reads_all_files_in_order_and_uses_startup_3() {
    let (snap, stats) = read(&rotation_dir().join(ACTIVE)).expect("snapshot");
    let mut order: Vec<&str> = ROTATED.to_vec();
    order.push(ACTIVE);
    assert_eq!(names(&stats.files_read), order);
    let whole = &expected()["whole_set"];
    assert_eq!(Some(stats.lines), whole["lines"].as_u64());
    assert_eq!(Some(stats.execs), whole["process_exec_lines"].as_u64());
    assert_eq!(Some(stats.exits), whole["process_exit_lines"].as_u64());
    assert_eq!(stats.skipped(), 0);
    assert_eq!(stats.startups, 3);
    assert_eq!(
        names(&stats.startup_file.into_iter().collect::<Vec<_>>()),
        [ACTIVE]
    );
    assert_eq!(stats.startup_line, Some(347));
    assert_eq!(stats.startup_marker, Some(StartupMarker::Kernel));
    assert_eq!(stats.startup_inferred_by, None);
    assert_eq!(stats.startup_counts.procfs_execs, 313);
    assert_eq!(snap.source, SnapshotSource::ExportLog);
    assert_eq!(
        stats.newest_event_time.as_deref().map(|t| &t[..10]),
        Some("2026-11-29")
    );
}

#[test]
fn real_rotation_remaining_procfs_set_is_the_seven_never_exited() {
    let (snap, _) = read(&rotation_dir().join(ACTIVE)).expect("snapshot");
    let expected = expected_last_startup();
    let procfs: Vec<_> = snap
        .processes
        .iter()
        .filter(|p| p.has_flag("procFS"))
        .collect();
    let got: Vec<&str> = procfs.iter().map(|p| p.exec_id.as_str()).collect();
    assert_eq!(got, NEVER_EXITED);
    assert_eq!(
        Some(procfs.len() as u64),
        expected_json_count("last_startup_procfs_not_exited_at_end_of_file")
    );
    for p in procfs {
        assert!(
            expected.contains(&(p.exec_id.clone(), p.binary.clone())),
            "{} {} not in startup 3's procFS list",
            p.exec_id,
            p.binary
        );
        assert_eq!(p.node_name, "vm");
    }
    // Besides those, only the live exec whose exit the stopped daemon never logged.
    let live: Vec<&str> = snap
        .processes
        .iter()
        .filter(|p| !p.has_flag("procFS"))
        .map(|p| p.binary.as_str())
        .collect();
    assert_eq!(live, ["/opt/lab/tetragon-lab/rot-run/stop.sh"]);
}

fn expected_json_count(key: &str) -> Option<u64> {
    expected()["active_file"][key].as_u64()
}

/// Drives the pure fold line by line over the active file, leaving exits out,
/// so the full procFS scan of the last startup is visible.
#[test]
fn fold_finds_the_313_procfs_execs_of_the_last_startup_in_file_order() {
    let file = fs::File::open(rotation_dir().join(ACTIVE)).expect("open");
    let mut lines = file_lines(file, false);
    let mut fold = Generation::new();
    while let Some(Line::Complete(bytes)) = lines.next_line().expect("read") {
        if let ParsedLine::Event(e) = parse_line(bytes) {
            if matches!(e.event, Some(Event::ProcessExec(_))) {
                fold.push(0, lines.line_no(), &e);
            }
        }
    }
    let done = fold.finish().expect("startup found");
    assert_eq!(done.startups, 2);
    assert_eq!(done.started_at.line_no, 347);
    let procfs: Vec<(String, String)> = done
        .processes
        .iter()
        .filter(|p| p.has_flag("procFS"))
        .map(|p| (p.exec_id.clone(), p.binary.clone()))
        .collect();
    assert_eq!(procfs, expected_last_startup());
}

#[test]
fn several_startups_in_one_file_the_latest_wins() {
    let lines = active_lines();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ACTIVE);
    // Up to the end of startup 2 (line 346): startup 2 is the latest.
    write_lines(&path, &lines[..346]);
    let (snap2, stats2) = read(&path).expect("startup 2");
    assert_eq!((stats2.startups, stats2.startup_line), (1, Some(109)));
    assert_eq!(stats2.startup_counts.procfs_execs, 10);
    // The whole file: startup 3 replaces startup 2 entirely.
    write_lines(&path, &lines);
    let (snap3, stats3) = read(&path).expect("startup 3");
    assert_eq!((stats3.startups, stats3.startup_line), (2, Some(347)));
    assert_eq!(stats3.startup_counts.procfs_execs, 313);
    let ids2 = ids(&snap2);
    let only_in_3 = ids(&snap3)
        .into_iter()
        .filter(|id| !ids2.contains(id))
        .count();
    // pid 0 keeps its exec_id across restarts; later ones are re-reported.
    assert!(ids2.contains(&"dm06MTow") && only_in_3 > 0);
}

#[test]
fn a_startup_that_begins_in_a_rotated_file_continues_in_the_active_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rotated = dir.path().join("tetragon-2026-11-29T15-00-00.000.log.gz");
    let first = [
        exec_line("old", 9, "/old", "execve"),
        exec_line("k", 0, "<kernel>", "procFS"),
        exec_line("a", 10, "/a", "procFS"),
        exec_line("b", 11, "/b", "procFS"),
    ]
    .join("\n")
        + "\n";
    fs::write(&rotated, gzip(first.as_bytes())).expect("write gz");
    write_lines(
        &dir.path().join(ACTIVE),
        &[
            exec_line("c", 12, "/c", "procFS"),
            exit_line("a", 10, "procFS"),
            exec_line("d", 13, "/d", "execve clone"),
            exit_line("old", 9, "execve"),
        ],
    );
    let (snap, stats) = read(&dir.path().join(ACTIVE)).expect("snapshot");
    assert_eq!(ids(&snap), ["k", "b", "c", "d"]);
    assert_eq!(
        names(&stats.startup_file.into_iter().collect::<Vec<_>>()),
        ["tetragon-2026-11-29T15-00-00.000.log.gz"]
    );
    assert_eq!(
        (
            stats.startup_counts.procfs_execs,
            stats.startup_counts.live_execs
        ),
        (4, 1)
    );
    assert_eq!(
        (
            stats.startup_counts.exits_applied,
            stats.startup_counts.exits_unmatched
        ),
        (1, 1)
    );
}

#[test]
fn truncated_last_line_and_garbage_are_counted_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ACTIVE);
    let cut = exec_line("late", 30, "/late", "execve");
    let mut data = [
        exec_line("k", 0, "<kernel>", "procFS"),
        "not json at all".to_string(),
        String::new(),
        "[1,2,3]".to_string(),
        r#"{"process_exec":{"process":{"pid":"seven"}}}"#.to_string(),
        r#"{"process_kprobe":{"function_name":"tcp_connect"},"node_name":"n1"}"#.to_string(),
        r#"{"rate_limit_info":{"number_of_dropped_process_events":3}}"#.to_string(),
        r#"{"process_exec":{}}"#.to_string(),
        exec_line("a", 10, "/a", "procFS"),
    ]
    .join("\n")
    .into_bytes();
    data.extend_from_slice(b"\n{\"process_exec\":\xff\xfe}\n");
    data.extend_from_slice(&cut.as_bytes()[..cut.len() / 2]);
    fs::write(&path, data).expect("write");
    let (snap, stats) = read(&path).expect("snapshot despite garbage");
    assert_eq!(ids(&snap), ["k", "a"]);
    assert_eq!(stats.lines, 11);
    assert_eq!(stats.skipped_malformed, 3);
    assert_eq!(stats.skipped_blank, 1);
    assert_eq!(stats.skipped_other_kinds, 2);
    assert_eq!(stats.skipped_incomplete, 1);
    assert_eq!(stats.skipped_non_utf8, 1);
    assert_eq!(stats.skipped_truncated, 1);
    assert_eq!(stats.skipped(), 9);
}

#[test]
fn a_valid_last_line_without_newline_is_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ACTIVE);
    let text = exec_line("k", 0, "<kernel>", "procFS") + "\n" + &exec_line("a", 1, "/a", "procFS");
    fs::write(&path, text).expect("write");
    let (snap, stats) = read(&path).expect("snapshot");
    assert_eq!(ids(&snap), ["k", "a"]);
    assert_eq!(stats.skipped(), 0);
}

#[test]
fn a_plain_and_gz_pair_of_the_same_rotation_is_read_once_and_tmp_is_ignored() {
    let mut all: Vec<&str> = ROTATED.to_vec();
    all.push(ACTIVE);
    let reference = read(&rotation_dir().join(ACTIVE)).expect("reference");
    let dir = copy_rotation(&all);
    // Compression in progress: the plain file is still there next to its .gz,
    // and the next rotation's compression has only written a .gz.tmp.
    let twin = dir.path().join(ROTATED[3].trim_end_matches(".gz"));
    fs::write(&twin, gunzip(&dir.path().join(ROTATED[3]))).expect("write plain twin");
    let tmp = dir.path().join(format!("{}.tmp", ROTATED[2]));
    fs::write(&tmp, b"\x1f\x8b partial").expect("write tmp");
    let (snap, stats) = read(&dir.path().join(ACTIVE)).expect("snapshot");
    let read_names = names(&stats.files_read);
    assert_eq!(read_names[3], "tetragon-2026-11-29T15-38-02.431.log");
    assert_eq!(read_names.len(), 5);
    let mut ignored = names(&stats.files_ignored);
    ignored.sort();
    assert_eq!(
        ignored,
        [ROTATED[2].to_string() + ".tmp", ROTATED[3].to_string()]
    );
    assert_eq!(stats.lines, reference.1.lines);
    assert_eq!(snap.processes, reference.0.processes);
}

#[test]
fn a_plain_file_removed_after_listing_is_read_from_its_gz_twin() {
    let dir = copy_rotation(&[ROTATED[3], ACTIVE]);
    let plain = dir.path().join(ROTATED[3].trim_end_matches(".gz"));
    fs::write(&plain, gunzip(&dir.path().join(ROTATED[3]))).expect("write plain");
    let set = list_file_set(&dir.path().join(ACTIVE))
        .expect("list")
        .expect("set");
    fs::remove_file(&plain).expect("compression finished");
    let (_, stats) = read_file_set(&set).expect("snapshot");
    assert_eq!(names(&stats.files_read), [ROTATED[3], ACTIVE]);
    assert!(stats.files_vanished.is_empty());
}

#[test]
fn a_corrupt_gz_stops_that_file_only() {
    let dir = copy_rotation(&[ACTIVE]);
    let bad = dir.path().join(ROTATED[0]);
    let mut gz = fs::read(rotation_dir().join(ROTATED[0])).expect("read gz");
    gz.truncate(gz.len() / 2);
    fs::write(&bad, gz).expect("write");
    let (_, stats) = read(&dir.path().join(ACTIVE)).expect("snapshot from the active file");
    assert_eq!(stats.files_failed.len(), 1);
    assert_eq!(stats.startup_line, Some(347));
}

#[test]
fn real_single_startup_export() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/export-log/real/tetragon-export.jsonl");
    let (snap, stats) = read(&path).expect("snapshot");
    assert_eq!(names(&stats.files_read), ["tetragon-export.jsonl"]);
    assert_eq!((stats.lines, stats.execs, stats.exits), (2006, 947, 1059));
    assert_eq!((stats.startups, stats.startup_line), (1, Some(1)));
    assert_eq!(stats.startup_counts.procfs_execs, 10);
    assert_eq!(snap.processes.len(), 9);
    assert_eq!(
        snap.processes
            .iter()
            .filter(|p| p.has_flag("procFS"))
            .count(),
        7
    );
    assert_eq!(snap.processes[0].binary, "<kernel>");
}

#[test]
fn no_procfs_line_is_an_error_naming_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ACTIVE);
    write_lines(
        &path,
        &[
            exec_line("b", 11, "/b", "execve"),
            exit_line("a", 10, "procFS"),
        ],
    );
    let err = read(&path).expect_err("no procFS exec");
    assert!(matches!(
        err,
        ExportLogError::NoStartupFound { lines: 2, .. }
    ));
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn missing_log_names_the_paths_and_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("nope/tetragon.log");
    let b = dir.path().join("tetragon.log");
    let err = read_snapshot(&ExportLogLocation::Search(vec![a.clone(), b.clone()]))
        .expect_err("nothing there");
    let msg = err.to_string();
    assert!(msg.contains(&a.display().to_string()) && msg.contains(&b.display().to_string()));
    assert!(msg.contains("--export-log PATH"), "{msg}");
}

#[test]
fn default_search_uses_the_most_recently_written_log() {
    let old = tempfile::tempdir().expect("tempdir");
    let new = tempfile::tempdir().expect("tempdir");
    write_lines(
        &old.path().join(ACTIVE),
        &[
            exec_line("k", 0, "<kernel>", "procFS"),
            exec_line("old", 5, "/old", "procFS"),
        ],
    );
    write_lines(
        &new.path().join(ACTIVE),
        &[
            exec_line("k", 0, "<kernel>", "procFS"),
            exec_line("new", 5, "/new", "procFS"),
        ],
    );
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(old.path().join(ACTIVE))
        .and_then(|f| f.set_modified(past))
        .expect("set mtime");
    let both = ExportLogLocation::Search(vec![new.path().join(ACTIVE), old.path().join(ACTIVE)]);
    assert_eq!(
        ids(&read_snapshot(&both).expect("snapshot").0),
        ["k", "new"]
    );
    let reversed =
        ExportLogLocation::Search(vec![old.path().join(ACTIVE), new.path().join(ACTIVE)]);
    assert_eq!(
        ids(&read_snapshot(&reversed).expect("snapshot").0),
        ["k", "new"]
    );
}

// --- Without the pid 0 marker (Tetragon's Helm default export deny list) ---

/// The real rotation set with every line `drop` selects removed (the rotated
/// files re-gzipped), as if Tetragon's export deny list had filtered them.
fn filtered_rotation(drop: impl Fn(&Value) -> bool) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut all: Vec<&str> = ROTATED.to_vec();
    all.push(ACTIVE);
    for f in all {
        let src = rotation_dir().join(f);
        let data = if f.ends_with(".gz") {
            gunzip(&src)
        } else {
            fs::read(&src).expect("read")
        };
        let kept: String = String::from_utf8(data)
            .expect("utf8")
            .lines()
            .filter(|l| !drop(&serde_json::from_str(l).expect("json line")))
            .map(|l| format!("{l}\n"))
            .collect();
        let out = if f.ends_with(".gz") {
            gzip(kept.as_bytes())
        } else {
            kept.into_bytes()
        };
        fs::write(dir.path().join(f), out).expect("write");
    }
    dir
}

fn process_of(line: &Value) -> &Value {
    if line["process_exec"].is_object() {
        &line["process_exec"]["process"]
    } else {
        &line["process_exit"]["process"]
    }
}

fn is_kernel(line: &Value) -> bool {
    process_of(line)["binary"] == "<kernel>"
}

fn is_bash(line: &Value) -> bool {
    process_of(line)["binary"] == "/usr/bin/bash"
}

fn is_exit(line: &Value) -> bool {
    line["process_exit"].is_object()
}

fn procfs_pairs(s: &ProcessSnapshot) -> Vec<(String, String)> {
    s.processes
        .iter()
        .filter(|p| p.has_flag("procFS"))
        .map(|p| (p.exec_id.clone(), p.binary.clone()))
        .collect()
}

/// Startup 3's procFS pairs without the binaries a deny list dropped.
fn expected_without(binaries: &[&str]) -> Vec<(String, String)> {
    expected_last_startup()
        .into_iter()
        .filter(|(_, b)| !binaries.contains(&b.as_str()))
        .collect()
}

#[test]
fn without_kernel_lines_the_startups_are_inferred_and_startup_3_is_found() {
    // Exits left out: the whole scan stays visible.
    let dir = filtered_rotation(|l| is_kernel(l) || is_exit(l));
    let (snap, stats) = read(&dir.path().join(ACTIVE)).expect("inferred snapshot");
    assert_eq!(stats.startup_marker, Some(StartupMarker::Inferred));
    assert_eq!(stats.startup_inferred_by, Some(InferredBy::RepeatedExecId));
    assert_eq!(stats.startups, 3);
    assert_eq!(
        names(&stats.startup_file.clone().into_iter().collect::<Vec<_>>()),
        [ACTIVE]
    );
    // Recognized at startup 3's first kept line: pid 1268, re-reported from
    // startup 2 (line 348 of the unfiltered file).
    let text = fs::read_to_string(dir.path().join(ACTIVE)).expect("read");
    let line = stats.startup_line.expect("line") as usize;
    let first: Value =
        serde_json::from_str(text.lines().nth(line - 1).expect("line")).expect("json");
    assert_eq!(first["process_exec"]["process"]["pid"], 1268);
    assert_eq!(
        first["process_exec"]["process"]["exec_id"],
        "dm06Mjc3MjE4MDAwMDAwMDoxMjY4"
    );
    assert_eq!(procfs_pairs(&snap), expected_without(&["<kernel>"]));
    assert_eq!(stats.startup_counts.procfs_execs, 312);
    // Startup 2's procFS processes logged after its pid 1268 line were carried
    // and dropped again as startup 3 re-reported later ones (or confirmed).
    assert_eq!(
        (
            stats.startup_counts.carried_over,
            stats.startup_counts.carried_dropped
        ),
        (0, 5)
    );
}

#[test]
fn without_kernel_lines_the_remaining_set_matches_the_marked_read() {
    let dir = filtered_rotation(is_kernel);
    let (snap, stats) = read(&dir.path().join(ACTIVE)).expect("inferred snapshot");
    let (marked, _) = read(&rotation_dir().join(ACTIVE)).expect("marked snapshot");
    assert_eq!(stats.startup_marker, Some(StartupMarker::Inferred));
    assert_eq!(stats.startups, 3);
    let want: Vec<_> = marked
        .processes
        .iter()
        .filter(|p| p.binary != "<kernel>")
        .cloned()
        .collect();
    assert_eq!(snap.processes, want);
    assert_eq!(
        ids(&snap)
            .into_iter()
            .filter(|id| NEVER_EXITED.contains(id))
            .count(),
        6
    );
}

/// Without `<kernel>` and bash, startup 3's first re-reported process (pid 1)
/// comes after its 300 new sleeps: they are carried over, and the previous
/// scan's dead daemon (logged before the re-reported memfd) is dropped again.
#[test]
fn without_kernel_and_bash_lines_new_processes_before_the_first_re_report_are_kept() {
    let dir = filtered_rotation(|l| is_kernel(l) || is_bash(l) || is_exit(l));
    let (snap, stats) = read(&dir.path().join(ACTIVE)).expect("inferred snapshot");
    assert_eq!(stats.startup_marker, Some(StartupMarker::Inferred));
    assert_eq!(stats.startups, 3);
    assert_eq!(
        procfs_pairs(&snap),
        expected_without(&["<kernel>", "/usr/bin/bash"])
    );
    assert_eq!(stats.startup_counts.procfs_execs, 305);
    // 300 sleeps + a python carried (the other 4 came after the re-report);
    // startup 2's python and daemon, without exits here, dropped again.
    assert_eq!(
        (
            stats.startup_counts.carried_over,
            stats.startup_counts.carried_dropped
        ),
        (301, 2)
    );

    // With the exits: the same never-exited set as the marked read, minus
    // what was dropped.
    let dir = filtered_rotation(|l| is_kernel(l) || is_bash(l));
    let (snap, _) = read(&dir.path().join(ACTIVE)).expect("inferred snapshot");
    let (marked, _) = read(&rotation_dir().join(ACTIVE)).expect("marked snapshot");
    let want: Vec<&str> = marked
        .processes
        .iter()
        .filter(|p| p.binary != "<kernel>" && p.binary != "/usr/bin/bash")
        .map(|p| p.exec_id.as_str())
        .collect();
    assert_eq!(ids(&snap), want);
}

/// Pod processes (with pod info) in two startups without any host line: the
/// second startup is used, and a live exec whose exit the stopped Tetragon never
/// logged is gone with the first.
#[test]
fn pod_only_log_with_two_startups_uses_the_second() {
    let pod_exec = |id: &str, pid: u32, bin: &str, flags: &str| -> String {
        let mut v: Value = serde_json::from_str(&exec_line(id, pid, bin, flags)).expect("json");
        v["process_exec"]["process"]["pod"] =
            serde_json::json!({"namespace": "shop", "name": "web-1", "container": {"name": "web"}});
        v.to_string()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ACTIVE);
    write_lines(
        &path,
        &[
            // Startup 1.
            pod_exec("nginx", 100, "/usr/sbin/nginx", "procFS"),
            pod_exec("worker", 101, "/usr/sbin/nginx", "procFS"),
            pod_exec("curl", 200, "/usr/bin/curl", "execve clone"),
            exit_line("curl", 200, "execve clone"),
            pod_exec("sh", 201, "/bin/sh", "execve clone"),
            // Startup 2 (sh died while Tetragon was down); the new `app`
            // comes before the first re-reported process.
            pod_exec("app", 300, "/app", "procFS"),
            pod_exec("nginx", 100, "/usr/sbin/nginx", "procFS"),
            exit_line("worker", 101, "procFS"),
            pod_exec("worker", 101, "/usr/sbin/nginx", "procFS"),
            pod_exec("ls", 301, "/bin/ls", "execve clone"),
        ],
    );
    let (snap, stats) = read(&path).expect("snapshot");
    assert_eq!(stats.startups, 2);
    assert_eq!(stats.startup_marker, Some(StartupMarker::Inferred));
    assert_eq!(stats.startup_inferred_by, Some(InferredBy::RepeatedExecId));
    assert_eq!(stats.startup_line, Some(7));
    assert_eq!(ids(&snap), ["app", "nginx", "worker", "ls"]);
    assert!(snap
        .processes
        .iter()
        .all(|p| p.pod.as_ref().is_some_and(|pod| pod.namespace == "shop")));
    // The exit of startup 2's worker came before its procFS line: that exit
    // was applied to the startup-1 entry, the re-report adds it again.
    assert_eq!(
        (
            stats.startup_counts.procfs_execs,
            stats.startup_counts.carried_over
        ),
        (4, 1)
    );
}

/// A restart whose scan re-reports no process of the previous one cannot be
/// recognized: both scans form one generation, the union minus logged exits.
#[test]
fn a_restart_sharing_no_process_with_the_previous_scan_gives_the_union() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ACTIVE);
    write_lines(
        &path,
        &[
            exec_line("a", 10, "/a", "procFS"),
            exec_line("b", 11, "/b", "procFS"),
            exec_line("x", 20, "/x", "execve clone"),
            exit_line("a", 10, "procFS"),
            // Restart; b and x died while Tetragon was down (no exit logged).
            exec_line("c", 30, "/c", "procFS"),
            exec_line("d", 31, "/d", "procFS"),
            exit_line("c", 30, "procFS"),
        ],
    );
    let (snap, stats) = read(&path).expect("snapshot");
    assert_eq!(stats.startups, 1);
    assert_eq!(stats.startup_inferred_by, Some(InferredBy::FirstProcfs));
    assert_eq!(stats.startup_line, Some(1));
    assert_eq!(ids(&snap), ["b", "x", "d"]);
    assert_eq!(stats.startup_counts.procfs_execs, 4);
}

/// The real single-startup export's exec chains (pyenv shims: an `execve
/// clone` line, then `execve` re-execs in the same pid), found by a rule of
/// the test's own: a re-exec is an exec whose flag words hold `execve` and not
/// `clone` and whose `parent` object has its pid; the exec_id it names as
/// `parent_exec_id` is a replaced image. Returns the lines, the replaced
/// exec_ids, and for each chain head (a replaced image that is no re-exec)
/// the index of its line and of its chain's last image's line.
fn real_export_chains() -> (Vec<String>, Vec<String>, Vec<(usize, usize)>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/export-log/real/tetragon-export.jsonl");
    let lines: Vec<String> = fs::read_to_string(path)
        .expect("fixture")
        .lines()
        .map(str::to_owned)
        .collect();
    let mut line_of = std::collections::HashMap::new();
    let mut successor = std::collections::HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        let v: Value = serde_json::from_str(line).expect("fixture line");
        let Some(exec) = v.get("process_exec") else {
            continue;
        };
        let p = &exec["process"];
        let id = p["exec_id"].as_str().expect("exec_id").to_owned();
        let words: Vec<&str> = p["flags"].as_str().unwrap_or("").split(' ').collect();
        if words.contains(&"execve")
            && !words.contains(&"clone")
            && exec["parent"]["pid"] == p["pid"]
        {
            let parent = p["parent_exec_id"].as_str().expect("parent").to_owned();
            successor.insert(parent, id.clone());
        }
        line_of.insert(id, i);
    }
    let replaced: Vec<String> = successor.keys().cloned().collect();
    let mut heads = Vec::new();
    for head in successor
        .keys()
        .filter(|h| !successor.values().any(|s| s == *h))
    {
        let mut last = head;
        while let Some(next) = successor.get(last) {
            last = next;
        }
        heads.push((line_of[head], line_of[last]));
    }
    heads.sort();
    (lines, replaced, heads)
}

fn read_lines(lines: &[String]) -> ProcessSnapshot {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ACTIVE);
    write_lines(&path, lines);
    read(&path).expect("snapshot").0
}

/// Moves the line at each `from` to just after the line at its `after`.
fn move_lines(lines: &[String], moves: &[(usize, usize)]) -> Vec<String> {
    let moved: std::collections::HashMap<usize, usize> = moves.iter().copied().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if !moved.contains_key(&i) {
            out.push(line.clone());
        }
        for (from, _) in moves.iter().filter(|(_, after)| *after == i) {
            out.push(lines[*from].clone());
        }
    }
    out
}

#[test]
fn real_exec_chains_leave_only_their_last_image_whatever_the_order() {
    let (lines, replaced, heads) = real_export_chains();
    // What the fixture holds (see tests/fixtures/export-log/README.md): 201 chains, 272
    // re-execs; no replaced image ever gets an exit.
    assert_eq!((heads.len(), replaced.len()), (201, 272));
    let in_order = read_lines(&lines);
    // The chain head logged just after its last image, before that image's exit.
    let head_late = read_lines(&move_lines(&lines, &heads));
    // The chain head logged after everything, the last image's exit included.
    let end = lines.len() - 1;
    let at_end: Vec<(usize, usize)> = heads.iter().map(|(h, _)| (*h, end)).collect();
    let head_last = read_lines(&move_lines(&lines, &at_end));
    for snap in [&in_order, &head_late, &head_last] {
        assert_eq!(ids(snap), ids(&in_order));
        assert_eq!(snap.processes.len(), 9);
        assert!(ids(snap).iter().all(|id| !replaced.iter().any(|r| r == id)));
    }
}

#[test]
fn a_chain_logged_in_reverse_keeps_only_the_image_that_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(ACTIVE);
    let re_exec = |id: &str, binary: &str, flags: &str, parent: &str| {
        serde_json::json!({
            "process_exec": {
                "process": {"exec_id": id, "pid": 70, "binary": binary, "flags": flags,
                            "parent_exec_id": parent},
                "parent": {"exec_id": parent, "pid": 70}
            },
            "node_name": "n1", "time": "2026-11-29T15:00:00Z"
        })
        .to_string()
    };
    write_lines(
        &path,
        &[
            exec_line("k", 0, "<kernel>", "procFS"),
            re_exec("app", "/usr/bin/app", "execve", "bash"),
            re_exec("bash", "/usr/bin/bash", "execve", "shim"),
            re_exec("shim", "/shims/app", "execve clone", "k"),
            exec_line("other", 71, "/other", "execve clone"),
        ],
    );
    let (snap, stats) = read(&path).expect("snapshot");
    assert_eq!(ids(&snap), ["k", "app", "other"]);
    assert_eq!(stats.startup_counts.superseded, 2);
}
