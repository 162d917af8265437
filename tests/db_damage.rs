//! A damaged database can neither hang nor panic a command, and nothing that
//! inspects it changes it. sled 0.34 spins for ever or panics on some damaged
//! files; the binary opens a copy in a child process with a deadline.
//!
//! - the fixture `corrupt-sled/hang-after-kill` (on a copy): `debug check`,
//!   `debug dump`, `export --db` and `run` end in one error naming the path,
//!   `run --quarantine-corrupt-db` moves the untouched bytes aside and starts;
//! - generated damage: a database written by a real agent and SIGKILLed, then
//!   random bit flips, byte smears, truncations and lost snapshot files; every
//!   variant ends in a clean open or one clear error within its deadline, never
//!   a hang, a panic or a changed file.
//!
//! `DB_DAMAGE_VARIANTS` (default 24) sets the number of variants,
//! `DB_DAMAGE_SEED` replays a run (the seed is printed).
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tetragon_learner::store::preflight::deadline_for;

const BIN: &str = env!("CARGO_BIN_EXE_tetragon-learner");
/// Beyond the deadline: process start and teardown on a loaded CI machine.
const MARGIN: Duration = Duration::from_secs(15);

type Bytes = BTreeMap<PathBuf, Vec<u8>>;

/// Every file under `dir` with its bytes (relative paths).
fn read_tree(dir: &Path) -> Bytes {
    fn walk(root: &Path, dir: &Path, out: &mut Bytes) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let e = e.expect("entry");
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = Bytes::new();
    walk(dir, dir, &mut out);
    out
}

fn write_tree(dir: &Path, files: &Bytes) {
    for (rel, bytes) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
    }
}

fn size(files: &Bytes) -> u64 {
    files.values().map(|b| b.len() as u64).sum()
}

/// Runs the binary to completion, killing it (and failing) past `limit`.
fn run_bounded(args: &[&std::ffi::OsStr], limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            let out = child.wait_with_output().expect("output");
            return (out, start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{args:?} hung: still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Exit 0, or exit 1 with exactly one error line naming `dir`; never a panic.
fn assert_clean_outcome(what: &str, out: &Output, dir: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_no_panic(what, out);
    match out.status.code() {
        Some(0) => {}
        Some(1) => {
            let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
            assert_eq!(errors.len(), 1, "{what}: one error line expected: {stderr}");
            assert!(
                errors[0].contains(&dir.display().to_string()),
                "{what}: the error names the database: {stderr}"
            );
        }
        other => panic!("{what}: exit {other:?} (status {}): {stderr}", out.status),
    }
}

/// The command itself did not panic (its error may quote the panic sled had in
/// the child that checked the database).
fn assert_no_panic(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{what}: panic: {stderr}");
    assert!(
        !stderr.lines().any(|l| l.starts_with("thread '")),
        "{what}: panic: {stderr}"
    );
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

fn fixture() -> Bytes {
    read_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corrupt-sled/hang-after-kill"),
    )
}

/// An agent started on `db` with an unreachable Tetragon: it either starts (and
/// is stopped with SIGTERM: exit 0) or exits 1 with one error.
fn run_agent(db: &Path, quarantine: bool, limit: Duration) -> (Output, bool) {
    let mut cmd = Command::new(BIN);
    cmd.args(["--log-format", "json", "run", "--snapshot-source", "none"])
        .args(["--tetragon-address", "unix:///nonexistent/tetragon.sock"])
        .arg("--db")
        .arg(db)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if quarantine {
        cmd.arg("--quarantine-corrupt-db");
    }
    let mut child: Child = cmd.spawn().expect("agent starts");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("\"agent started\"") {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    let start = Instant::now();
    let mut started = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if !started && rx.try_recv().is_ok() {
            started = true;
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("agent on {} hung past {limit:?}", db.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines = reader.join().expect("reader");
    let stderr = lines.join("\n").into_bytes();
    (
        Output {
            status,
            stdout: Vec::new(),
            stderr,
        },
        started,
    )
}

fn quarantined_beside(db: &Path) -> Vec<PathBuf> {
    let name = db.file_name().expect("name").to_string_lossy().into_owned();
    let mut found: Vec<PathBuf> = std::fs::read_dir(db.parent().expect("parent"))
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}.corrupt-")))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn the_fixture_that_hung_every_command_is_one_clear_error_and_stays_untouched() {
    let original = fixture();
    let tmp = tempfile::tempdir().expect("tempdir");
    let limit = deadline_for(size(&original)) + MARGIN;
    let commands: Vec<(&str, Vec<&str>)> = vec![
        ("debug check", vec!["debug", "check"]),
        ("debug dump", vec!["debug", "dump", "--format", "json"]),
        ("export", vec!["export", "--format", "json"]),
    ];
    std::thread::scope(|s| {
        for (i, (what, args)) in commands.iter().enumerate() {
            let dir = tmp.path().join(format!("db{i}"));
            write_tree(&dir, &original);
            let original = &original;
            s.spawn(move || {
                let mut argv: Vec<&std::ffi::OsStr> = args.iter().map(|a| os(a)).collect();
                argv.push(os("--db"));
                argv.push(dir.as_os_str());
                let (out, took) = run_bounded(&argv, limit);
                assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
                assert_clean_outcome(what, &out, &dir);
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(stderr.contains("cannot be opened"), "{what}: {stderr}");
                assert!(out.stdout.is_empty(), "{what}: printed {:?}", out.stdout);
                assert_eq!(&read_tree(&dir), original, "{what} changed the database");
                eprintln!("{what}: clear error after {took:?}");
            });
        }
    });

    // The agent without the flag: the same error, files untouched.
    let dir = tmp.path().join("agent");
    write_tree(&dir, &original);
    let (out, started) = run_agent(&dir, false, limit);
    assert!(!started);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_clean_outcome("run", &out, &dir);
    assert_eq!(read_tree(&dir), original, "run changed the database");

    // With the flag: the original bytes are moved aside, a fresh database starts.
    let (out, started) = run_agent(&dir, true, limit);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(started, "agent did not start after quarantine: {stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("CORRUPT DATABASE MOVED ASIDE"), "{stderr}");
    let aside = quarantined_beside(&dir);
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        read_tree(&aside[0]),
        original,
        "quarantine moved changed bytes"
    );
    // The fresh database opens (through debug, on a copy) and is empty.
    let (out, _) = run_bounded(
        &[
            os("debug"),
            os("stats"),
            os("--format"),
            os("json"),
            os("--db"),
            dir.as_os_str(),
        ],
        limit,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats json");
    assert_eq!(stats["learners"], 0);
}

/// A database written by a real agent under load, SIGKILLed mid-write.
fn killed_database(root: &Path) -> Bytes {
    let scenario = root.join("scenario.yaml");
    let mut y = String::from("node_name: damage-node\ncontainers:\n");
    for c in 0..24 {
        y.push_str(&format!(
            "  - namespace: ns{c}\n    pod: app{c}-5d8f7c6b9d-abc{c}x\n    workload: app{c}\n    \
             workload_kind: Deployment\n    container: main\n    \
             running: [{{binary: /app/server-{c}}}]\n    execs:\n"
        ));
        for e in 0..60 {
            y.push_str(&format!("      - {{binary: /usr/bin/tool-{c}-{e}}}\n"));
        }
    }
    y.push_str("activity: {rate_per_sec: 400, total_execs: 0, start: on-first-client}\n");
    std::fs::write(&scenario, y).expect("scenario");
    let socket = root.join("tetragon.sock");
    let mut fake = Command::new(BIN)
        .args(["fake-tetragon", "--listen"])
        .arg(format!("unix://{}", socket.display()))
        .arg("--scenario")
        .arg(&scenario)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("fake starts");
    let mut line = String::new();
    BufReader::new(fake.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("fake says where it listens");
    let addr = line
        .trim()
        .strip_prefix("fake-tetragon listening on ")
        .unwrap_or_else(|| panic!("unexpected fake output {line:?}"))
        .to_string();
    let db = root.join("killed");
    let mut agent = Command::new(BIN)
        .args(["--log-format", "json", "run", "--tetragon-address", &addr])
        .arg("--db")
        .arg(&db)
        .args([
            "--snapshot-grace",
            "200ms",
            "--checkpoint-interval",
            "200ms",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent starts");
    let stderr = agent.stderr.take().expect("stderr");
    let mut learned = 0;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if line.contains("\"learned executable\"") {
            learned += 1;
            if learned >= 600 {
                break;
            }
        }
    }
    // SIGKILL mid-write: what a crash, an OOM kill or a node reset leaves.
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = fake.kill();
    let _ = fake.wait();
    assert!(
        learned >= 600,
        "agent learned only {learned} before its log ended"
    );
    read_tree(&db)
}

#[derive(Debug)]
enum Damage {
    FlipBits {
        file: PathBuf,
        bits: Vec<u64>,
    },
    Smear {
        file: PathBuf,
        offset: u64,
        len: u64,
    },
    Truncate {
        file: PathBuf,
        to: u64,
    },
    Remove {
        file: PathBuf,
    },
}

fn pick_damage(rng: &mut StdRng, base: &Bytes) -> Damage {
    let files: Vec<&PathBuf> = base.keys().filter(|p| !base[*p].is_empty()).collect();
    // Mostly sled's own files: the `db` log and its snapshots.
    let sled_files: Vec<&PathBuf> = files
        .iter()
        .copied()
        .filter(|p| {
            let n = p.to_string_lossy();
            n == "db" || n.starts_with("snap.")
        })
        .collect();
    let file = (*if rng.random_bool(0.9) && !sled_files.is_empty() {
        &sled_files[rng.random_range(0..sled_files.len())]
    } else {
        &files[rng.random_range(0..files.len())]
    })
    .clone();
    let len = base[&file].len() as u64;
    match rng.random_range(0..10) {
        0..=4 => Damage::FlipBits {
            bits: (0..rng.random_range(1..=16))
                .map(|_| rng.random_range(0..len * 8))
                .collect(),
            file,
        },
        5..=6 => {
            let span = rng.random_range(1..=64).min(len);
            Damage::Smear {
                offset: rng.random_range(0..=len - span),
                len: span,
                file,
            }
        }
        7..=8 => Damage::Truncate {
            to: rng.random_range(0..len),
            file,
        },
        _ => Damage::Remove { file },
    }
}

fn apply(base: &Bytes, damage: &Damage) -> Bytes {
    let mut out = base.clone();
    match damage {
        Damage::FlipBits { file, bits } => {
            let b = out.get_mut(file).expect("file");
            for bit in bits {
                b[(bit / 8) as usize] ^= 1 << (bit % 8);
            }
        }
        Damage::Smear { file, offset, len } => {
            let b = out.get_mut(file).expect("file");
            for x in &mut b[*offset as usize..(*offset + *len) as usize] {
                *x ^= 0xA5;
            }
        }
        Damage::Truncate { file, to } => out.get_mut(file).expect("file").truncate(*to as usize),
        Damage::Remove { file } => {
            out.remove(file);
        }
    }
    out
}

#[test]
fn damaged_killed_databases_end_in_a_clean_open_or_one_clear_error() {
    let variants: usize = std::env::var("DB_DAMAGE_VARIANTS")
        .ok()
        .map(|v| v.parse().expect("DB_DAMAGE_VARIANTS is a number"))
        .unwrap_or(24);
    let seed: u64 = std::env::var("DB_DAMAGE_SEED")
        .ok()
        .map(|v| v.parse().expect("DB_DAMAGE_SEED is a number"))
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        });
    eprintln!("DB_DAMAGE_SEED={seed} DB_DAMAGE_VARIANTS={variants}");
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = killed_database(tmp.path());
    eprintln!(
        "killed database: {} files, {} bytes",
        base.len(),
        size(&base)
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let plans: Vec<(usize, Damage)> = (0..variants)
        .map(|i| (i, pick_damage(&mut rng, &base)))
        .collect();
    let outcomes = std::sync::Mutex::new(BTreeMap::<String, usize>::new());
    // Two at a time: CI has two cores.
    for pair in plans.chunks(2) {
        std::thread::scope(|s| {
            for (i, damage) in pair {
                let base = &base;
                let outcomes = &outcomes;
                let root = tmp.path();
                s.spawn(move || {
                    let damaged = apply(base, damage);
                    let dir = root.join(format!("v{i}"));
                    std::fs::create_dir_all(&dir).expect("mkdir");
                    write_tree(&dir, &damaged);
                    let limit = deadline_for(size(&damaged)) + MARGIN;
                    let what = format!("variant {i} ({damage:?})");
                    let (out, took) = run_bounded(
                        &[os("debug"), os("check"), os("--db"), dir.as_os_str()],
                        limit,
                    );
                    assert_clean_outcome(&what, &out, &dir);
                    assert_eq!(
                        read_tree(&dir),
                        damaged,
                        "{what}: debug check changed the database"
                    );
                    let verdict = match out.status.code() {
                        Some(0) => "opened".to_string(),
                        _ => {
                            let e = String::from_utf8_lossy(&out.stderr);
                            if e.contains("did not finish within") {
                                "timeout".into()
                            } else if e.contains("sled panicked") {
                                "panic".into()
                            } else {
                                "error".into()
                            }
                        }
                    };
                    // Every fourth variant also starts the agent with quarantine.
                    if i % 4 == 0 {
                        let (out, started) = run_agent(&dir, true, limit);
                        let stderr = String::from_utf8_lossy(&out.stderr);
                        assert_no_panic(&what, &out);
                        let aside = quarantined_beside(&dir);
                        if let Some(moved) = aside.first() {
                            assert_eq!(
                                read_tree(moved),
                                damaged,
                                "{what}: quarantine moved changed bytes"
                            );
                            assert!(started, "{what}: no fresh start after quarantine: {stderr}");
                        }
                        if !started {
                            assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
                            assert_eq!(
                                read_tree(&dir),
                                damaged,
                                "{what}: a refused run changed it"
                            );
                        } else {
                            assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
                        }
                    }
                    eprintln!("{what}: {verdict} after {took:?}");
                    *outcomes.lock().unwrap().entry(verdict).or_default() += 1;
                });
            }
        });
    }
    eprintln!("outcomes: {:?}", outcomes.lock().unwrap());
}
