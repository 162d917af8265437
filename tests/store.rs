//! The sled store against real directories: round trip, and every way a
//! database can be refused (newer schema, foreign, corrupt, locked, bad record).
//! A refused database must be named in the error and left byte-for-byte alone.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;
use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::learner::observation::{FactSource, Observation};
use tetragon_learner::learner::profile::{ExecutableRecord, PartialReason, Profile};
use tetragon_learner::learner::state::LearnerState;
use tetragon_learner::store::codec::encode_profile_v1;
use tetragon_learner::store::{quarantine, Store, StoreError, SCHEMA_VERSION};

// The on-disk layout this test pins (sled_store.rs keeps them private).
const META_TREE: &str = "meta";
const PROFILES_TREE: &str = "profiles";
const SCHEMA_KEY: &[u8] = b"schema_version";

fn profile(workload: &str, paths: &[&str]) -> Profile {
    let mut p = Profile::new(
        LearnerKey::new("shop", "Deployment", workload, "app"),
        1_000,
    );
    for (i, path) in paths.iter().enumerate() {
        let obs = Observation {
            path: path.to_string(),
            at: 2_000 + i as u64,
            source: FactSource::Event,
            exec_probe: false,
            exec_session: false,
        };
        p.executables
            .insert(path.to_string(), ExecutableRecord::first(&obs));
    }
    p
}

fn sample() -> Vec<Profile> {
    let mut locked = profile("db", &["/usr/bin/postgres"]);
    locked.state = LearnerState::Locked;
    locked
        .partial_reasons
        .insert(PartialReason::StartedBeforeAgent);
    vec![
        profile(
            "web",
            &["/usr/sbin/nginx", "/bin/evil\n{{ x }}\u{202e}%n\"quote"],
        ),
        locked,
    ]
}

/// A database directory holding `sample()`, closed again.
fn written_db(tmp: &TempDir) -> PathBuf {
    let dir = tmp.path().join("db");
    let store = Store::open(&dir).expect("fresh database opens");
    store.write_durably(&sample()).expect("write");
    drop(store);
    wait_until_released(&dir);
    dir
}

/// Every file under `dir` with its length and a hash of its bytes, to prove a
/// refused open changed nothing (and to keep a failing assert readable).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (usize, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("readable dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("readable file");
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                out.insert(path.clone(), (bytes.len(), h.finish()));
            }
        }
    }
    out
}

/// sled 0.34 releases its directory lock some time after the last handle is
/// dropped (the file is freed by deferred, epoch-based cleanup), so a reopen
/// right after a close can see `Locked`. Waits, without touching the files,
/// until nobody holds the lock on `<dir>/db`.
fn wait_until_released(dir: &Path) {
    use std::os::fd::AsRawFd;
    let Ok(file) = std::fs::File::open(dir.join("db")) else {
        return;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // SAFETY: flock on a descriptor we own; the lock is dropped with `file`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 || std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `Store::open` after an earlier handle in this process was closed.
fn reopen(dir: &Path) -> Result<Store, StoreError> {
    wait_until_released(dir);
    Store::open(dir)
}

fn raw_sled(dir: &Path) -> sled::Db {
    wait_until_released(dir);
    sled::Config::new().path(dir).open().expect("raw sled open")
}

#[test]
fn write_then_reopen_round_trips() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = written_db(&tmp);
    let store = reopen(&dir).expect("reopen");
    let mut loaded = store.load_all().expect("load");
    loaded.sort_by(|a, b| a.key.cmp(&b.key));
    let mut want = sample();
    want.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(loaded, want);
    assert_eq!(store.len(), 2);
    assert_eq!(store.schema_version(), SCHEMA_VERSION);
    assert!(store.size_on_disk() > 0);
    assert_eq!(
        store.get(&want[0].key).expect("get").as_ref(),
        Some(&want[0])
    );
    let absent = LearnerKey::new("x", "Pod", "y", "z");
    assert_eq!(store.get(&absent).expect("get"), None);
}

#[test]
fn newer_schema_is_refused_with_the_path() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = written_db(&tmp);
    {
        let db = raw_sled(&dir);
        let meta = db.open_tree(META_TREE).expect("meta tree");
        meta.insert(SCHEMA_KEY, &(SCHEMA_VERSION + 1).to_be_bytes())
            .expect("insert");
        db.flush().expect("flush");
    }
    let err = reopen(&dir).err().expect("must refuse");
    match &err {
        StoreError::NewerSchema {
            path,
            found,
            supported,
        } => {
            assert_eq!(
                (path, *found, *supported),
                (&dir, SCHEMA_VERSION + 1, SCHEMA_VERSION)
            );
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.display().to_string()) && msg.contains("newer"),
        "{msg}"
    );
    // sled itself writes while opening (recovery, a snapshot file) before the
    // schema can be read, so the bytes change; the records must not.
    let db = raw_sled(&dir);
    let meta = db.open_tree(META_TREE).expect("meta tree");
    let version = meta.get(SCHEMA_KEY).expect("get").map(|v| v.to_vec());
    assert_eq!(version, Some((SCHEMA_VERSION + 1).to_be_bytes().to_vec()));
    assert_eq!(db.open_tree(PROFILES_TREE).expect("profiles").len(), 2);
}

#[test]
fn foreign_directory_is_refused_and_untouched() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("notes.txt"), "someone else's data").expect("write");
    std::fs::write(dir.join("state.bin"), [0u8, 1, 2, 3]).expect("write");
    let before = snapshot(&dir);
    let err = Store::open(&dir).err().expect("must refuse");
    assert!(
        matches!(err, StoreError::Foreign { ref path, .. } if path == &dir),
        "{err:?}"
    );
    assert!(err.to_string().contains(&dir.display().to_string()));
    assert_eq!(snapshot(&dir), before, "foreign directory was modified");
}

#[test]
fn foreign_sled_database_is_refused() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = tmp.path().join("other-app");
    {
        let db = raw_sled(&dir);
        db.insert(b"user:1", b"alice").expect("insert");
        db.flush().expect("flush");
    }
    let err = reopen(&dir).err().expect("must refuse");
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
    assert_eq!(
        raw_sled(&dir).get(b"user:1").expect("get").as_deref(),
        Some(&b"alice"[..])
    );
}

/// sled 0.34 validates its `conf` file at open (UTF-8 `key: value` lines):
/// garbage there is the corruption it reports instead of silently resetting.
#[test]
fn corrupt_database_is_refused_untouched_then_quarantined() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = written_db(&tmp);
    std::fs::write(dir.join("conf"), "this is not a sled config\n").expect("write");
    let before = snapshot(&dir);
    let err = Store::open(&dir).err().expect("must refuse");
    assert!(
        matches!(err, StoreError::Corrupt { ref path, .. } if path == &dir),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.display().to_string()) && msg.contains("untouched"),
        "{msg}"
    );
    assert_eq!(snapshot(&dir), before, "corrupt database was modified");

    // Binary garbage (not UTF-8) is refused too.
    std::fs::write(dir.join("conf"), [0xffu8; 64]).expect("write");
    assert!(matches!(Store::open(&dir), Err(StoreError::Corrupt { .. })));

    let aside = quarantine(&dir, 1_700_000_000_000).expect("quarantine");
    assert_eq!(aside, tmp.path().join("db.corrupt-1700000000000"));
    assert!(!dir.exists());
    assert!(aside.join("db").is_file(), "quarantined files are kept");
    let fresh = Store::open(&dir).expect("fresh database after quarantine");
    assert!(fresh.is_empty());
}

#[test]
fn quarantine_of_a_missing_directory_names_both_paths() {
    let tmp = TempDir::new().expect("tempdir");
    let missing = tmp.path().join("nope");
    let err = quarantine(&missing, 5).expect_err("must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("nope") && msg.contains("nope.corrupt-5"),
        "{msg}"
    );
}

/// sled 0.34 does not report damage inside its `db` file: a flipped byte opens
/// "successfully" with fewer (or no) records. The store's marker file (records
/// written so far) turns that into a Corrupt error instead of a silent reset.
#[test]
fn damaged_db_file_is_reported_not_reset() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = written_db(&tmp);
    let mut bytes = std::fs::read(dir.join("db")).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(dir.join("db"), &bytes).expect("write");
    let got = Store::open(&dir).map(|s| s.len());
    assert!(matches!(got, Err(StoreError::Corrupt { .. })), "{got:?}");
}

#[test]
fn second_open_in_process_is_locked_with_a_clear_message() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = written_db(&tmp);
    let _agent = Store::open(&dir).expect("first open");
    let err = Store::open(&dir).err().expect("second open must fail");
    assert!(
        matches!(err, StoreError::Locked { ref path } if path == &dir),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.display().to_string()) && msg.contains("--admin-socket"),
        "{msg}"
    );
}

/// Child side of `open_held_by_another_process_is_locked`: holds the store open
/// until its stdin closes. Does nothing when run on its own.
#[test]
#[ignore = "helper run by open_held_by_another_process_is_locked"]
fn helper_hold_lock() {
    let Some(dir) = std::env::var_os("HOLD_LOCK_DIR") else {
        return;
    };
    let _store = Store::open(Path::new(&dir)).expect("child opens the store");
    println!("HOLDING");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn open_held_by_another_process_is_locked() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = written_db(&tmp);
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "helper_hold_lock",
            "--nocapture",
            "--ignored",
            "--test-threads=1",
        ])
        .env("HOLD_LOCK_DIR", &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let held = lines.any(|l| l.contains("HOLDING"));
    let result = Store::open(&dir).map(|_| ());
    drop(child.stdin.take()); // lets the helper return
    lines.for_each(drop); // drain, so the helper never writes to a closed pipe
    let _ = child.wait();
    assert!(held, "helper never opened the store");
    let err = result.expect_err("must be locked");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("--admin-socket"));
    reopen(&dir).expect("opens once the other process is gone");
}

#[test]
fn bad_records_are_found_by_scan_and_refused_by_load_all() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = written_db(&tmp);
    let good = sample();
    {
        let db = raw_sled(&dir);
        let profiles = db.open_tree(PROFILES_TREE).expect("profiles tree");
        profiles
            .insert("shop/Pod/garbage/app", &b"\x01{not json"[..])
            .expect("insert");
        profiles
            .insert("shop/Pod/future/app", &b"\x09{}"[..])
            .expect("insert");
        profiles
            .insert("shop/Pod/empty/app", &b""[..])
            .expect("insert");
        let mut moved = Vec::from([1u8]);
        serde_json::to_writer(&mut moved, &good[0]).expect("json");
        profiles
            .insert("shop/Pod/moved/app", moved)
            .expect("insert");
        db.flush().expect("flush");
    }
    let store = reopen(&dir).expect("a bad record does not stop open");
    let (ok, bad) = store.scan().expect("scan");
    assert_eq!(ok.len(), good.len());
    let bad: BTreeMap<String, String> = bad.into_iter().collect();
    assert_eq!(bad.len(), 4, "{bad:?}");
    assert!(bad["shop/Pod/garbage/app"].contains("invalid v1 profile"));
    assert!(bad["shop/Pod/future/app"].contains("version 9"));
    assert!(bad["shop/Pod/empty/app"].contains("empty"));
    assert!(bad["shop/Pod/moved/app"].contains("shop/Deployment/web/app"));
    let err = store.load_all().expect_err("load_all refuses");
    assert!(matches!(err, StoreError::BadRecord { .. }), "{err:?}");
    assert!(err.to_string().contains(&dir.display().to_string()));
}

#[test]
fn v1_records_load_and_are_rewritten_as_v5_when_written() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = written_db(&tmp);
    let want = sample();
    {
        // A database as an agent before v2 left it: every value is v1 JSON.
        let db = raw_sled(&dir);
        let profiles = db.open_tree(PROFILES_TREE).expect("profiles tree");
        for p in &want {
            profiles
                .insert(p.key.to_string(), encode_profile_v1(p))
                .expect("insert");
        }
        db.flush().expect("flush");
    }
    let version_bytes = |dir: &Path| -> BTreeMap<String, u8> {
        let db = raw_sled(dir);
        let profiles = db.open_tree(PROFILES_TREE).expect("profiles tree");
        profiles
            .iter()
            .map(|kv| {
                let (k, v) = kv.expect("record");
                (String::from_utf8_lossy(&k).into_owned(), v[0])
            })
            .collect()
    };
    assert!(version_bytes(&dir).values().all(|&v| v == 1));

    let store = reopen(&dir).expect("a v1 database opens");
    let mut loaded = store.load_all().expect("v1 records load");
    loaded.sort_by(|a, b| a.key.cmp(&b.key));
    let mut sorted = want.clone();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(loaded, sorted);
    assert_eq!(store.schema_version(), 1, "value versions are per record");

    // Only the learner that changed is rewritten, and as v5 (the current encoding).
    let mut changed = want[0].clone();
    changed.drift_count += 1;
    store
        .write_durably(std::slice::from_ref(&changed))
        .expect("write");
    drop(store);
    let versions = version_bytes(&dir);
    assert_eq!(versions[&want[0].key.to_string()], 5);
    assert_eq!(versions[&want[1].key.to_string()], 1);

    let store = reopen(&dir).expect("a mixed database opens");
    assert_eq!(store.get(&changed.key).expect("get"), Some(changed));
    assert_eq!(store.get(&want[1].key).expect("get"), Some(want[1].clone()));
    assert_eq!(store.load_all().expect("load").len(), want.len());
}
