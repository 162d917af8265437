//! `debug` through its library functions (the `render_*` functions return the
//! exact text printed) on a real database with three profiles, one of which
//! holds a hostile path.
mod common;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde_json::Value;
use tempfile::TempDir;
use tetragon_learner::cli::debug_cmd::{
    check_outcome, load, open_for_debug, render_check, render_dump, render_list, render_show,
    render_stats, run, DebugArgs, DebugCommand, DebugError, Format,
};
use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::learner::observation::FactSource;
use tetragon_learner::learner::profile::{PartialReason, Profile};
use tetragon_learner::learner::state::LearnerState;
use tetragon_learner::store::inspect::DbScan;
use tetragon_learner::store::{Store, StoreError};

use common::{record, with, HOSTILE};

fn profiles() -> Vec<Profile> {
    let mut web = with(
        Profile::new(LearnerKey::new("shop", "Deployment", "web", "nginx"), 1_000),
        vec![
            record("/usr/sbin/nginx")
                .source(FactSource::Snapshot)
                .build(),
            record(HOSTILE).at(3_000).build(),
        ],
    );
    web.last_new_at = 3_000;
    web.partial_reasons
        .insert(PartialReason::StartedBeforeAgent);

    let mut db = with(
        Profile::new(
            LearnerKey::new("shop", "StatefulSet", "db", "postgres"),
            1_000,
        ),
        vec![record("/usr/bin/postgres")
            .source(FactSource::ExportLog)
            .build()],
    );
    let sh = record("/bin/sh").at(9_000).build();
    db.deviations.insert(sh.path.clone(), sh);
    db.state = LearnerState::Locked;

    let mut agent = with(
        Profile::new(
            LearnerKey::new("kube-system", "DaemonSet", "agent", "agent"),
            1_000,
        ),
        vec![record("/bin/health").probe(true).build()],
    );
    agent.state = LearnerState::Stable;
    agent.drift_count = 2;
    vec![web, db, agent]
}

/// A stopped agent's database: written, closed, and ready for `debug`.
fn fixture() -> (TempDir, PathBuf) {
    let tmp = TempDir::new().expect("tempdir");
    let dir = tmp.path().join("db");
    let store = Store::open(&dir).expect("open");
    store.write_durably(&profiles()).expect("write");
    drop(store);
    (tmp, dir)
}

/// `debug`'s open, once the writer's handle released sled's lock.
fn open(dir: &Path) -> Store {
    common::open_when_unlocked(
        std::time::Duration::from_secs(5),
        || open_for_debug(Some(dir)),
        |e| matches!(e, DebugError::Store(StoreError::Locked { .. })),
    )
    .expect("debug opens a stopped agent's database")
}

fn loaded(store: &Store) -> Vec<Profile> {
    let (good, bad) = store.scan().expect("scan");
    assert!(bad.is_empty(), "{bad:?}");
    good
}

/// No raw line break or bidi/format character may survive in table output:
/// only the table's own `\n` line ends.
fn assert_terminal_safe(text: &str) {
    for c in text.chars() {
        let bad = (c.is_control() && c != '\n')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        assert!(!bad, "raw {c:?} in table output:\n{text}");
    }
    assert!(
        !text.lines().any(|l| l.starts_with("{{")),
        "forged line:\n{text}"
    );
}

const ESCAPED: &str = "/bin/evil\\n{{ x }}\\u{202e}%n\"quote";

#[test]
fn list_table_has_one_row_per_learner() {
    let (_tmp, dir) = fixture();
    let store = open(&dir);
    let text = render_list(&loaded(&store), Format::Table).expect("render");
    assert_terminal_safe(&text);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("KEY") && lines[0].contains("LAST CHANGE"));
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "KEY",
            "STATE",
            "COMPLETENESS",
            "READY",
            "EXECUTABLES",
            "DEVIATIONS",
            "DRIFT",
            "LAST",
            "CHANGE",
            "UNVERIFIED",
            "VIOLATIONS"
        ]
    );
    let db_row = lines
        .iter()
        .find(|l| l.starts_with("shop/StatefulSet/db/postgres"))
        .expect("db row");
    let cells: Vec<&str> = db_row.split_whitespace().collect();
    // Locked and complete: ready.
    assert_eq!(&cells[1..7], ["locked", "complete", "yes", "1", "1", "0"]);
    let web_row = lines
        .iter()
        .find(|l| l.starts_with("shop/Deployment/web/nginx"))
        .expect("web row");
    assert!(web_row.contains("partial") && web_row.contains("1970-01-01T00:00:03.000Z"));
    // Learning and partial: not ready; the probe-only agent is stable and complete.
    let cells = |row: &str| row.split_whitespace().nth(3).map(str::to_owned);
    assert_eq!(cells(web_row).as_deref(), Some("no"));
    let agent_row = lines
        .iter()
        .find(|l| l.starts_with("kube-system/DaemonSet/agent/agent"))
        .expect("agent row");
    assert_eq!(cells(agent_row).as_deref(), Some("yes"));
}

#[test]
fn list_json_counts_executables_and_deviations() {
    let (_tmp, dir) = fixture();
    let store = open(&dir);
    let v: Value =
        serde_json::from_str(&render_list(&loaded(&store), Format::Json).expect("render"))
            .expect("json");
    let arr = v.as_array().expect("array");
    assert_eq!(arr.len(), 3);
    let db = arr
        .iter()
        .find(|e| e["key"]["workload"] == "db")
        .expect("db entry");
    assert_eq!(db["key"]["workload_kind"], "StatefulSet");
    assert_eq!(db["state"], "locked");
    assert_eq!(db["completeness"], "complete");
    assert_eq!(db["ready"], true);
    assert_eq!(db["executables"], 1);
    assert_eq!(db["deviations"], 1);
    assert_eq!(db["id"], "shop/StatefulSet/db/postgres");
}

#[test]
fn show_table_escapes_the_hostile_path_and_marks_rows() {
    let (_tmp, dir) = fixture();
    let store = open(&dir);
    let web = render_show(
        &DbScan::read(&store).expect("scan"),
        "shop/Deployment/web/nginx",
        Format::Table,
    )
    .expect("show");
    assert_terminal_safe(&web);
    assert!(web.contains(ESCAPED), "{web}");
    assert!(web.contains("partial (started-before-agent)"));
    let ready = web
        .lines()
        .find(|l| l.starts_with("ready"))
        .expect("ready row");
    assert_eq!(
        ready.split_whitespace().collect::<Vec<_>>(),
        ["ready", "no"]
    );
    assert!(web.contains("PATH") && web.contains("FIRST SEEN") && web.contains("MARKS"));
    let db = render_show(
        &DbScan::read(&store).expect("scan"),
        "shop/StatefulSet/db/postgres",
        Format::Table,
    )
    .expect("show");
    let sh = db
        .lines()
        .find(|l| l.starts_with("/bin/sh"))
        .expect("deviation row");
    assert!(sh.ends_with("deviation"), "{sh}");
    let agent = render_show(
        &DbScan::read(&store).expect("scan"),
        "kube-system/DaemonSet/agent/agent",
        Format::Table,
    )
    .expect("show");
    let health = agent
        .lines()
        .find(|l| l.starts_with("/bin/health"))
        .expect("row");
    assert!(
        health.contains("event") && health.ends_with("exec-probe"),
        "{health}"
    );
}

#[test]
fn show_json_is_the_documented_view() {
    let (_tmp, dir) = fixture();
    let store = open(&dir);
    let text = render_show(
        &DbScan::read(&store).expect("scan"),
        "shop/Deployment/web/nginx",
        Format::Json,
    )
    .expect("show");
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        v,
        serde_json::to_value(profiles()[0].to_view()).expect("view")
    );
    assert!(v["executables"]
        .as_array()
        .expect("array")
        .iter()
        .any(|e| e["path"] == HOSTILE));
}

#[test]
fn show_unknown_or_malformed_key_is_a_clear_error() {
    let (_tmp, dir) = fixture();
    let store = open(&dir);
    let err = render_show(
        &DbScan::read(&store).expect("scan"),
        "shop/Deployment/nope/app",
        Format::Table,
    )
    .expect_err("unknown");
    let msg = err.to_string();
    assert!(
        msg.contains("shop/Deployment/nope/app") && msg.contains("debug list"),
        "{msg}"
    );
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    let err = render_show(
        &DbScan::read(&store).expect("scan"),
        "not-a-key",
        Format::Json,
    )
    .expect_err("malformed");
    assert!(err.to_string().contains("debug list"), "{err}");
}

#[test]
fn dump_json_is_the_documented_array_with_the_exact_path() {
    let (_tmp, dir) = fixture();
    let store = open(&dir);
    let text = render_dump(&loaded(&store), Format::Json).expect("dump");
    let v: Value = serde_json::from_str(&text).expect("json");
    let arr = v.as_array().expect("array");
    assert_eq!(arr.len(), 3);
    for p in arr {
        let obj = p.as_object().expect("object");
        let fields: Vec<&str> = obj.keys().map(String::as_str).collect();
        for want in ["key", "state", "executables", "deviations"] {
            assert!(fields.contains(&want), "{fields:?}");
        }
        for k in ["namespace", "workload_kind", "workload", "container"] {
            assert!(p["key"][k].is_string(), "{p}");
        }
        for e in p["executables"].as_array().expect("executables") {
            for f in ["path", "first_seen", "last_seen", "count", "source"] {
                assert!(!e[f].is_null(), "{e}");
            }
        }
    }
    let paths: Vec<&str> = arr
        .iter()
        .flat_map(|p| p["executables"].as_array().into_iter().flatten())
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(paths.contains(&HOSTILE), "{paths:?}");
    // The contract's field order holds in the text.
    let first = text.find("\"key\"").expect("key");
    assert!(first < text.find("\"state\"").expect("state"));
    assert!(text.find("\"executables\"") < text.find("\"deviations\""));
}

#[test]
fn dump_table_shows_every_profile_safely() {
    let (_tmp, dir) = fixture();
    let store = open(&dir);
    let text = render_dump(&loaded(&store), Format::Table).expect("dump");
    assert_terminal_safe(&text);
    assert_eq!(text.matches("LEARNER").count(), 3);
    assert!(text.contains(ESCAPED));
    assert!(!text.contains(HOSTILE));
}

#[test]
fn stats_table_and_json() {
    let (_tmp, dir) = fixture();
    let store = open(&dir);
    let stats = DbScan::read(&store).expect("scan").stats();
    let v: Value =
        serde_json::from_str(&render_stats(&stats, Format::Json).expect("json")).expect("parse");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["learners"], 3);
    assert_eq!(
        v["learners_by_state"],
        serde_json::json!({"learning": 1, "locked": 1, "stable": 1})
    );
    assert_eq!(v["executables"], 4);
    assert_eq!(v["deviations"], 1);
    assert_eq!(v["partial_learners"], 1);
    assert!(v["size_on_disk_bytes"].as_u64().unwrap_or(0) > 0);
    let table = render_stats(&stats, Format::Table).expect("table");
    for want in [
        "schema version",
        "learners",
        "executables",
        "deviations",
        "partial learners",
        "size on disk",
    ] {
        assert!(table.contains(want), "{table}");
    }
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .map(|l| l.split_whitespace().last())
    };
    assert_eq!(row("executables"), Some(Some("4")));
    assert_eq!(row("locked"), Some(Some("1")));
}

#[test]
fn check_reports_clean_and_bad_records() {
    let (_tmp, dir) = fixture();
    {
        let store = open(&dir);
        let (good, bad) = store.scan().expect("scan");
        let text = render_check(good.len(), &bad, Format::Table).expect("check");
        assert_eq!(text, "checked 3 records: 3 good, 0 bad\n");
        assert!(check_outcome(store.path(), good.len(), bad.len()).is_ok());
    }
    // Garbage under a hostile key, written with raw sled.
    let hostile_key = "shop/Pod/x\u{1b}[2J\n/c";
    for _ in 0..500 {
        match sled::Config::new().path(&dir).open() {
            Ok(db) => {
                let tree = db.open_tree("profiles").expect("tree");
                tree.insert(hostile_key, &b"\x01not json"[..])
                    .expect("insert");
                db.flush().expect("flush");
                break;
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    let store = open(&dir);
    let (good, bad) = store.scan().expect("scan");
    assert_eq!((good.len(), bad.len()), (3, 1));
    let text = render_check(good.len(), &bad, Format::Table).expect("check");
    assert_terminal_safe(&text);
    assert!(
        text.starts_with("checked 4 records: 3 good, 1 bad\n"),
        "{text}"
    );
    assert!(
        text.contains("shop/Pod/x\\u{1b}[2J\\n/c") && text.contains("invalid v1 profile"),
        "{text}"
    );
    let v: Value =
        serde_json::from_str(&render_check(good.len(), &bad, Format::Json).expect("json"))
            .expect("parse");
    assert_eq!(v["bad"][0]["key"], hostile_key);
    assert_eq!(v["records"], 4);
    let err = check_outcome(store.path(), good.len(), bad.len()).expect_err("exit 1");
    assert!(err.to_string().contains("1 of 4 records"), "{err}");
}

#[test]
fn open_refuses_a_missing_db_and_never_creates_one_and_names_a_dead_socket() {
    let tmp = TempDir::new().expect("tempdir");
    let missing = tmp.path().join("typo");
    let err = load(None, Some(&tmp.path().join("nobody.sock"))).expect_err("socket");
    assert!(
        err.to_string().contains("nobody.sock") && err.to_string().contains("--admin-socket"),
        "{err}"
    );
    let err = open_for_debug(Some(&missing)).err().expect("missing");
    assert!(err.to_string().contains("typo"), "{err}");
    assert!(!missing.exists(), "debug created a database");
    assert!(matches!(open_for_debug(None), Err(DebugError::NoSource)));
}

#[test]
fn running_agent_gives_locked_pointing_at_the_admin_socket() {
    let (_tmp, dir) = fixture();
    // The agent opens the database itself (debug readers open a private copy,
    // so they do not lock it).
    let _agent = common::open_when_unlocked(
        std::time::Duration::from_secs(5),
        || Store::open(&dir),
        |e| matches!(e, StoreError::Locked { .. }),
    )
    .expect("agent opens its database");
    let err = open_for_debug(Some(&dir)).err().expect("locked");
    assert!(
        matches!(err, DebugError::Store(StoreError::Locked { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("--admin-socket"), "{err}");
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    Debug(DebugArgs),
}

#[test]
fn arguments_parse_with_global_flags_after_the_subcommand() {
    let Cli {
        command: Top::Debug(args),
    } = Cli::try_parse_from([
        "tl",
        "debug",
        "show",
        "a/Pod/b/c",
        "--db",
        "/var/lib/tl",
        "--format",
        "json",
    ])
    .expect("parse");
    assert!(matches!(args.command, DebugCommand::Show { ref key } if key == "a/Pod/b/c"));
    assert_eq!(args.db.as_deref(), Some(Path::new("/var/lib/tl")));
    assert_eq!(args.format, Format::Json);
    assert!(
        Cli::try_parse_from(["tl", "debug", "show"]).is_err(),
        "KEY is required"
    );
    assert!(Cli::try_parse_from(["tl", "debug", "list", "--format", "yaml"]).is_err());
}

#[test]
fn run_succeeds_on_a_clean_database() {
    let (_tmp, dir) = fixture();
    drop(open(&dir)); // waits for the writer's lock to go
    let args = |command| DebugArgs {
        command,
        db: Some(dir.clone()),
        admin_socket: None,
        format: Format::Json,
    };
    let mut last = Ok(());
    for _ in 0..500 {
        last = run(args(DebugCommand::Stats));
        if last
            .as_ref()
            .err()
            .is_none_or(|e| !e.to_string().contains("locked"))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(last.is_ok(), "{last:?}");
}
