//! Backfill from Tetragon's export log: the real rotated export files of the
//! fixtures (tests/fixtures/export-log/real-rotation, see its README), read in
//! chunks, across a restart and across a rotation during reading, then the
//! agent in-process against the fake Tetragon.
//!
//! The oracle is a plain scan of the JSON lines (serde_json `Value`, files in
//! name order, the active file last): the lines after the last procFS exec of
//! pid 0 `<kernel>` (Tetragon's most recent startup), their exec and exit
//! counts, and the binaries they name.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{config, fake};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::Value;
use tetragon_learner::agent::Agent;
use tetragon_learner::backfill::position::Start;
use tetragon_learner::backfill::reader::read_chunk;
use tetragon_learner::backfill::{BackfillConfig, Position};
use tetragon_learner::fake::scenario::Scenario;
use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::learner::observation::FactSource;
use tetragon_learner::learner::profile::PartialReason;
use tetragon_learner::tetragon::proto::get_events_response::Event;
use tetragon_learner::tetragon::proto::GetEventsResponse;

const ROTATION: &str = "tests/fixtures/export-log/real-rotation";
const ROTATED: [&str; 4] = [
    "tetragon-2026-11-29T15-37-22.558.log.gz",
    "tetragon-2026-11-29T15-38-00.978.log.gz",
    "tetragon-2026-11-29T15-38-01.750.log.gz",
    "tetragon-2026-11-29T15-38-02.431.log.gz",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(ROTATION)
        .join(name)
}

fn active_lines() -> Vec<String> {
    fs::read_to_string(fixture("tetragon.log"))
        .expect("read fixture")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every line of the set, oldest file first.
fn all_lines() -> Vec<String> {
    let mut text = String::new();
    for gz in ROTATED {
        GzDecoder::new(fs::File::open(fixture(gz)).expect("open"))
            .read_to_string(&mut text)
            .expect("gunzip");
    }
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.extend(active_lines());
    lines
}

/// The oracle: what Tetragon logged since its most recent startup.
#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    lines: u64,
    execs: u64,
    exits: u64,
    /// (kind, exec_id) of every exec and exit, with how often each was logged.
    events: BTreeMap<(String, String), u64>,
    /// Binaries a host learner learns: not empty, not `<kernel>` or `[kthread]`.
    binaries: BTreeSet<String>,
}

fn expected_since_last_startup(lines: &[String]) -> Expected {
    let values: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("fixture line is JSON"))
        .collect();
    let last_startup = values
        .iter()
        .rposition(|v| {
            let p = &v["process_exec"]["process"];
            p["pid"].as_u64() == Some(0)
                && p["flags"]
                    .as_str()
                    .is_some_and(|f| f.split(' ').any(|w| w == "procFS"))
        })
        .expect("a startup marker");
    let mut e = Expected::default();
    for v in &values[last_startup..] {
        e.lines += 1;
        let (kind, p) = if v.get("process_exec").is_some() {
            e.execs += 1;
            ("exec", &v["process_exec"]["process"])
        } else if v.get("process_exit").is_some() {
            e.exits += 1;
            ("exit", &v["process_exit"]["process"])
        } else {
            continue;
        };
        let id = p["exec_id"].as_str().unwrap_or_default().to_string();
        *e.events.entry((kind.to_string(), id)).or_default() += 1;
        let binary = p["binary"].as_str().unwrap_or_default();
        let kernel = binary == "<kernel>" || (binary.starts_with('[') && binary.ends_with(']'));
        if !binary.is_empty() && !kernel {
            e.binaries.insert(binary.to_string());
        }
    }
    e
}

/// What the reader under test handed over, in the oracle's terms.
#[derive(Debug, Default)]
struct Got {
    lines: u64,
    execs: u64,
    exits: u64,
    events: BTreeMap<(String, String), u64>,
}

impl Got {
    fn add(&mut self, events: &[GetEventsResponse]) {
        for ev in events {
            let (kind, p) = match &ev.event {
                Some(Event::ProcessExec(e)) => ("exec", e.process.as_ref()),
                Some(Event::ProcessExit(e)) => ("exit", e.process.as_ref()),
                _ => continue,
            };
            let id = p.map(|p| p.exec_id.clone()).unwrap_or_default();
            *self.events.entry((kind.to_string(), id)).or_default() += 1;
        }
    }
}

/// Reads chunks of `max` lines until nothing is left; returns the position.
fn read_all(active: &Path, mut pos: Option<Position>, max: u64, got: &mut Got) -> Option<Position> {
    loop {
        let chunk = read_chunk(active, pos.as_ref(), max).expect("read");
        got.lines += chunk.lines;
        got.execs += chunk.execs;
        got.exits += chunk.exits;
        got.add(&chunk.events);
        pos = chunk.position;
        if !chunk.more || chunk.lines == 0 {
            return pos;
        }
    }
}

fn copy_fixture_set(dir: &Path) -> PathBuf {
    for name in ROTATED.iter().chain(&["tetragon.log"]) {
        fs::copy(fixture(name), dir.join(name)).expect("copy fixture");
    }
    dir.join("tetragon.log")
}

#[test]
fn fixture_history_is_read_once_in_chunks_and_not_again() {
    let expected = expected_since_last_startup(&all_lines());
    // Startup 3 of the fixture (README): tetragon.log from line 347 on.
    assert_eq!(expected.lines, 1058 - 346);
    let dir = tempfile::tempdir().unwrap();
    let active = copy_fixture_set(dir.path());

    let mut got = Got::default();
    let first = read_chunk(&active, None, 100).expect("read");
    assert_eq!(first.start, Some(Start::Fresh));
    got.lines += first.lines;
    got.execs += first.execs;
    got.exits += first.exits;
    got.add(&first.events);
    let pos = read_all(&active, first.position, 100, &mut got);
    assert_eq!(
        (got.lines, got.execs, got.exits),
        (expected.lines, expected.execs, expected.exits)
    );
    assert_eq!(got.events, expected.events);

    // A restart: nothing new.
    let again = read_chunk(&active, pos.as_ref(), 100).expect("read");
    let size = fs::metadata(&active).expect("stat").len();
    assert_eq!(
        again.start,
        Some(Start::Continue {
            file: 4,
            offset: size
        })
    );
    assert_eq!((again.lines, again.events.len()), (0, 0));
    assert_eq!(again.position, pos);
}

fn write_lines(path: &Path, lines: &[String], append: bool) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(path)
        .expect("open");
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
}

/// lumberjack's rotation: rename the active file, start a new one; then
/// compress in the background: `.gz.tmp`, renamed to `.gz`, plain removed.
fn rotate(dir: &Path, time: &str) -> PathBuf {
    let rotated = dir.join(format!("tetragon-{time}.log"));
    fs::rename(dir.join("tetragon.log"), &rotated).expect("rename");
    fs::File::create(dir.join("tetragon.log")).expect("new active file");
    rotated
}

fn compress(rotated: &Path, keep_plain: bool) {
    let gz = PathBuf::from(format!("{}.gz", rotated.display()));
    let tmp = PathBuf::from(format!("{}.gz.tmp", rotated.display()));
    let mut enc = GzEncoder::new(fs::File::create(&tmp).expect("tmp"), Compression::default());
    enc.write_all(&fs::read(rotated).expect("read"))
        .expect("gzip");
    enc.finish().expect("gzip end");
    fs::rename(&tmp, &gz).expect("rename gz");
    if !keep_plain {
        fs::remove_file(rotated).expect("remove plain");
    }
}

#[test]
fn a_rotation_during_reading_loses_nothing_and_repeats_nothing() {
    let lines = active_lines();
    let dir = tempfile::tempdir().unwrap();
    let active = copy_fixture_set(dir.path());
    // Tetragon had written 700 lines of the active file so far.
    write_lines(&active, &lines[..700], false);
    let mut got = Got::default();

    // Read part of it (a stop, or a crash after the position was saved).
    let chunk = read_chunk(&active, None, 200).expect("read");
    assert!(chunk.more);
    got.lines += chunk.lines;
    got.execs += chunk.execs;
    got.exits += chunk.exits;
    got.add(&chunk.events);
    let pos = chunk.position;

    // Tetragon writes on and rotates; compression has begun but the plain
    // file is still there: the same data twice.
    write_lines(&active, &lines[700..900], true);
    let rotated = rotate(dir.path(), "2026-11-29T15-39-40.000");
    write_lines(&active, &lines[900..950], true);
    compress(&rotated, true);
    let chunk = read_chunk(&active, pos.as_ref(), 150).expect("read");
    assert!(matches!(chunk.start, Some(Start::Continue { .. })));
    got.lines += chunk.lines;
    got.execs += chunk.execs;
    got.exits += chunk.exits;
    got.add(&chunk.events);
    let pos = chunk.position;

    // Compression ends (plain removed) and another rotation comes.
    fs::remove_file(&rotated).expect("remove plain");
    let rotated2 = rotate(dir.path(), "2026-11-29T15-39-45.000");
    compress(&rotated2, false);
    write_lines(&active, &lines[950..], true);
    let pos = read_all(&active, pos, 64, &mut got);

    let expected = expected_since_last_startup(&all_lines());
    assert_eq!(
        (got.lines, got.execs, got.exits),
        (expected.lines, expected.execs, expected.exits)
    );
    assert_eq!(got.events, expected.events);
    let again = read_chunk(&active, pos.as_ref(), 100).expect("read");
    assert_eq!(again.lines, 0);
}

#[test]
fn a_position_rotated_away_reads_every_file_left() {
    let dir = tempfile::tempdir().unwrap();
    let active = copy_fixture_set(dir.path());
    let stored = Position {
        prefix: b"{\"process_exec\":{\"process\":{\"exec_id\":\"gone\"}}}\n".to_vec(),
        offset: 50,
        history: Default::default(),
    };
    let chunk = read_chunk(&active, Some(&stored), 1_000_000).expect("read");
    assert_eq!(chunk.start, Some(Start::Lost));
    assert_eq!(chunk.lines, all_lines().len() as u64);
}

fn host_vm() -> LearnerKey {
    LearnerKey::host("vm")
}

const IDLE: &str = r#"
node_name: fake-node
containers: []
"#;

async fn agent_with_backfill(
    dir: &Path,
    active: &Path,
    chunk_lines: u64,
) -> (Agent, tetragon_learner::fake::FakeTetragon) {
    let fake = fake(dir, Scenario::from_yaml(IDLE, "idle").unwrap(), None).await;
    let mut cfg = config(&fake, &dir.join("db"));
    cfg.ingest.learn_host_processes = true;
    let mut bf = BackfillConfig::new(active.to_path_buf());
    bf.chunk_lines = chunk_lines;
    cfg.backfill = Some(bf);
    (Agent::start(cfg).await.expect("agent starts"), fake)
}

#[actix_rt::test]
async fn the_agent_learns_every_binary_of_the_history_once_and_only_new_lines_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let active = copy_fixture_set(&logs);
    let expected = expected_since_last_startup(&all_lines());

    let (agent, fake) = agent_with_backfill(dir.path(), &active, 500).await;
    let report = agent.backfill.clone().expect("backfill ran");
    assert_eq!(report.start, Some("fresh"));
    assert_eq!(
        (report.lines, report.execs, report.exits),
        (expected.lines, expected.execs, expected.exits)
    );
    assert_eq!(report.new_executables, expected.binaries.len() as u64);
    let profiles = agent.durable_profiles();
    let host = profiles
        .iter()
        .find(|p| p.key == host_vm())
        .expect("host learner");
    let learned: BTreeSet<String> = host.executables.keys().cloned().collect();
    assert_eq!(learned, expected.binaries);
    assert!(host
        .executables
        .values()
        .all(|r| r.source == FactSource::Backfill));
    // A host learner has no container start to judge: partial.
    assert!(host
        .partial_reasons
        .contains(&PartialReason::StartedBeforeAgent));
    let m = agent.metrics.render();
    assert!(
        m.contains(&format!(
            "tetragon_learner_backfill_lines_total {}",
            expected.lines
        )),
        "{m}"
    );
    assert!(m.contains(&format!(
        "tetragon_learner_backfill_new_executables_total {}",
        expected.binaries.len()
    )));
    agent.shutdown().await.expect("shutdown");
    drop(agent);
    fake.stop().await;

    // Restart: nothing new in the files, nothing read.
    let (agent, fake) = agent_with_backfill(dir.path(), &active, 500).await;
    let report = agent.backfill.clone().expect("backfill ran");
    assert_eq!(
        (report.start, report.lines, report.new_executables),
        (Some("continue"), 0, 0)
    );
    // Tetragon writes on: only that is read.
    write_lines(&active, &active_lines()[..3], true);
    agent.shutdown().await.expect("shutdown");
    drop(agent);
    fake.stop().await;
    let (agent, fake) = agent_with_backfill(dir.path(), &active, 500).await;
    let report = agent.backfill.clone().expect("backfill ran");
    assert_eq!((report.lines, report.new_executables), (3, 0));
    agent.shutdown().await.expect("shutdown");
    fake.stop().await;
}

/// Short-lived processes that ran and ended before the agent started are in
/// the fake Tetragon's export log only: the backfill learns them.
const BUSY: &str = r#"
node_name: bf-node
containers:
  - {namespace: shop, pod: web-6b7f9c8d5-aaaaa, workload: web, workload_kind: Deployment,
     container: main, running: [{binary: /app/web}],
     execs: [{binary: /usr/bin/curl}, {binary: /bin/date}, {binary: "/tmp/odd \"name\"\n"}]}
activity: {rate_per_sec: 0, total_execs: 9, start: immediately}
"#;

#[actix_rt::test]
async fn the_agent_learns_from_the_fake_tetragons_export_log_what_ended_before_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tetragon.log");
    let scenario = Scenario::from_yaml(BUSY, "busy").unwrap();
    let mut fake = fake(dir.path(), scenario, Some(&log)).await;
    tokio::time::timeout(Duration::from_secs(20), fake.activity_done())
        .await
        .expect("activity ends");
    let mut cfg = config(&fake, &dir.path().join("db"));
    cfg.backfill = Some(BackfillConfig::new(log.clone()));
    let agent = Agent::start(cfg).await.expect("agent starts");
    let report = agent.backfill.clone().expect("backfill ran");
    assert!(report.execs >= 9, "{report:?}");
    assert!(report.exits >= 9, "{report:?}");
    let key = LearnerKey::new("shop", "Deployment", "web", "main");
    let profile = agent
        .durable_profiles()
        .into_iter()
        .find(|p| p.key == key)
        .expect("learner from the backfill");
    for path in ["/usr/bin/curl", "/bin/date", "/tmp/odd \"name\"\n"] {
        let rec = profile.executables.get(path).expect(path);
        assert_eq!(rec.source, FactSource::Backfill, "{path}");
    }
    agent.shutdown().await.expect("shutdown");
    fake.stop().await;
}
