//! Resume time and on-disk size of a large learner database.
//!
//! Creates a sled database with `RESUME_BENCH_LEARNERS` learners (default
//! 10,000) of `RESUME_BENCH_EXECS_PER` executables each (default 50: 500k
//! executables), written in batches through `Store::write_durably` as the
//! Checkpointer does, closes it, then measures in the same run:
//!
//! - resume: `Store::open` + `Store::load_all` (what `Agent::start` does first);
//! - on-disk size: the sum of the files under the directory, and sled's own
//!   `size_on_disk`;
//! - logical size: path bytes plus a fixed estimate of the per-record fields
//!   (times, count, source, flags) and per-profile fields, and the bytes actually
//!   encoded (keys + values, v1 JSON and v2 binary);
//!
//! and prints their ratios. Then it rewrites every profile once (a lazy
//! checkpoint after one more sighting each, as a running agent does), and
//! measures again: sled appends, so the second figure is closer to a database
//! that has lived for a while.
//!
//! It does this twice, in the same run: first for a database of v1 values (as
//! written before v2, straight into sled), whose rewrite through the store is
//! the v1 -> v2 migration of a running agent; then for a fresh database written
//! by the store (v2 values). `RESUME_BENCH_V1=0` skips the v1 database.
//!
//! Run: `cargo bench --bench resume`
//! (`RESUME_BENCH_LEARNERS=1000 RESUME_BENCH_EXECS_PER=20` for a quick run).
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::learner::observation::FactSource;
use tetragon_learner::learner::profile::{ExecutableRecord, PartialReason, Profile};
use tetragon_learner::learner::state::LearnerState;
use tetragon_learner::store::codec::{encode_profile, encode_profile_v1};
use tetragon_learner::store::preflight::tree_size;
use tetragon_learner::store::{Store, StoreError};

/// Profiles per `write_durably` call (one group commit each).
const BATCH: usize = 200;
const MIB: f64 = 1024.0 * 1024.0;
/// Fixed fields of one executable record, packed: first_seen, last_seen, count
/// (8 bytes each), source + sources bitset (1 each), probe/session flags (1).
const RECORD_FIXED: usize = 8 + 8 + 8 + 1 + 1 + 1;
/// Fixed fields of one profile: state (1), created_at, learning_since,
/// last_new_at, drift_count (8 each), partial reasons bitset (1).
const PROFILE_FIXED: usize = 1 + 8 * 4 + 1;

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

const DIRS: [&str; 8] = [
    "/usr/local/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/jvm/java-17-openjdk/bin",
    "/opt/app/node_modules/.bin",
    "/usr/local/lib/python3.12/bin",
    "/usr/libexec/git-core",
    "/usr/local/sbin",
    "/srv/app/current/bin",
];
const NAMES: [&str; 10] = [
    "nginx-worker",
    "python3.12",
    "entrypoint.sh",
    "healthcheck",
    "git-remote-https",
    "java",
    "busybox",
    "curl",
    "node",
    "envoy-sidecar",
];

/// A realistic path of about 40 bytes, distinct per (learner, index).
fn path(learner: usize, i: usize) -> String {
    let dir = DIRS[(learner + i) % DIRS.len()];
    let name = NAMES[(learner * 7 + i) % NAMES.len()];
    format!("{dir}/{name}-{:02}.{i:03}", learner % 100)
}

fn profile(n: usize, execs_per: usize, base: u64) -> Profile {
    let key = LearnerKey::new(
        &format!("team-{:03}", n % 300),
        if n.is_multiple_of(5) {
            "StatefulSet"
        } else {
            "Deployment"
        },
        &format!("service-{n:05}"),
        if n.is_multiple_of(3) {
            "sidecar"
        } else {
            "app"
        },
    );
    let created = base + n as u64;
    let mut p = Profile::new(key, created);
    p.state = [
        LearnerState::Stable,
        LearnerState::Learning,
        LearnerState::Locked,
    ][n % 3];
    p.last_new_at = created + 3_600_000;
    p.drift_count = (n % 4) as u64;
    if n.is_multiple_of(10) {
        p.partial_reasons.insert(PartialReason::StartedBeforeAgent);
    }
    for i in 0..execs_per {
        let path = path(n, i);
        let source = if i == 0 {
            FactSource::Snapshot
        } else {
            FactSource::Event
        };
        let rec = ExecutableRecord {
            path: path.clone(),
            first_seen: created + i as u64 * 60_000,
            last_seen: created + 86_400_000 + i as u64,
            count: 1 + (n * 31 + i * 17) as u64 % 5_000,
            source,
            sources: BTreeSet::from([source]),
            exec_probe: i % 13 == 0,
            exec_session: false,
            views: Default::default(),
        };
        p.executables.insert(path, rec);
    }
    p
}

/// Sizes of a profile set: path bytes, logical estimate, and the encoded keys
/// + values in each value version.
#[derive(Clone, Copy)]
struct Sizes {
    paths: u64,
    logical: u64,
    v1: u64,
    v2: u64,
}

fn sizes(profiles: &[Profile]) -> Sizes {
    let mut out = Sizes {
        paths: 0,
        logical: 0,
        v1: 0,
        v2: 0,
    };
    for p in profiles {
        let key_len = p.key.to_string().len() as u64;
        out.logical += key_len + PROFILE_FIXED as u64;
        for r in p.executables.values().chain(p.deviations.values()) {
            out.paths += r.path.len() as u64;
            out.logical += (r.path.len() + RECORD_FIXED) as u64;
        }
        out.v1 += key_len + encode_profile_v1(p).len() as u64;
        out.v2 += key_len + encode_profile(p).len() as u64;
    }
    out
}

/// Opens the store, retrying while sled still holds the previous handle's lock.
fn open_when_unlocked(path: &Path) -> Result<(Store, Duration), StoreError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = Instant::now();
        match Store::open(path) {
            Ok(s) => return Ok((s, t.elapsed())),
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes v1 values straight into sled, as an agent before v2 did (same mode,
/// same tree, one flushed batch per `BATCH`), on a database `Store` created.
fn write_all_v1(db: &Path, profiles: &[Profile]) -> Result<Duration, Box<dyn std::error::Error>> {
    drop(Store::open(db)?);
    let deadline = Instant::now() + Duration::from_secs(30);
    let sled = loop {
        match sled::Config::new()
            .path(db)
            .mode(sled::Mode::LowSpace)
            .open()
        {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.into()),
        }
    };
    let tree = sled.open_tree("profiles")?;
    let t = Instant::now();
    for chunk in profiles.chunks(BATCH) {
        let mut batch = sled::Batch::default();
        for p in chunk {
            batch.insert(p.key.to_string().as_bytes(), encode_profile_v1(p));
        }
        tree.apply_batch(batch)?;
        sled.flush()?;
    }
    Ok(t.elapsed())
}

fn write_all(store: &Store, profiles: &[Profile]) -> Result<Duration, StoreError> {
    let t = Instant::now();
    for chunk in profiles.chunks(BATCH) {
        store.write_durably(chunk)?;
    }
    Ok(t.elapsed())
}

/// Reopens, resumes, and prints time and sizes next to the logical size.
fn measure(
    label: &str,
    db: &Path,
    expected: &[Profile],
    values: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let (store, open_time) = open_when_unlocked(db)?;
    let t = Instant::now();
    let loaded = store.load_all()?;
    let load_time = t.elapsed();
    assert_eq!(loaded.len(), expected.len(), "every learner resumes");
    assert!(
        loaded.iter().zip(expected).all(|(a, b)| a == b),
        "resumed profiles equal what was written"
    );
    let execs: usize = loaded.iter().map(|p| p.executables.len()).sum();
    let files = tree_size(db)?;
    let sled_size = store.size_on_disk();
    drop(store);
    let Sizes {
        paths,
        logical,
        v1,
        v2,
    } = sizes(expected);
    let encoded = if values == "v1" { v1 } else { v2 };
    let resume = open_time + load_time;
    println!("{label}:");
    println!(
        "  resume: {:.3} s (open {:.3} s + load_all {:.3} s) for {} learners / {execs} executables = {:.0} executables/s",
        resume.as_secs_f64(),
        open_time.as_secs_f64(),
        load_time.as_secs_f64(),
        loaded.len(),
        execs as f64 / resume.as_secs_f64()
    );
    println!(
        "  on disk: files {:.1} MiB, sled size_on_disk {:.1} MiB",
        files as f64 / MIB,
        sled_size as f64 / MIB
    );
    println!(
        "  logical: paths {:.1} MiB, paths + fixed fields {:.1} MiB; encoded keys + values: v1 JSON {:.1} MiB ({:.2}x logical), v2 binary {:.1} MiB ({:.2}x logical); this database holds {values}",
        paths as f64 / MIB,
        logical as f64 / MIB,
        v1 as f64 / MIB,
        v1 as f64 / logical as f64,
        v2 as f64 / MIB,
        v2 as f64 / logical as f64
    );
    println!(
        "  ratios: files/logical {:.2}x, files/encoded {:.2}x, encoded/logical {:.2}x, sled size_on_disk/logical {:.2}x",
        files as f64 / logical as f64,
        files as f64 / encoded as f64,
        encoded as f64 / logical as f64,
        sled_size as f64 / logical as f64
    );
    Ok(())
}

/// One more sighting of every learner's first executable, to be checkpointed.
fn one_more_sighting(profiles: &mut [Profile]) {
    for p in profiles {
        if let Some(r) = p.executables.values_mut().next() {
            r.count += 1;
            r.last_seen += 1_000;
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let learners = env_usize("RESUME_BENCH_LEARNERS", 10_000);
    let execs_per = env_usize("RESUME_BENCH_EXECS_PER", 50);
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("db");
    let base = 1_764_000_000_000;
    let mut profiles: Vec<Profile> = (0..learners).map(|n| profile(n, execs_per, base)).collect();
    profiles.sort_by(|a, b| a.key.cmp(&b.key));
    let avg_path = profiles
        .iter()
        .flat_map(|p| p.executables.keys())
        .map(String::len)
        .sum::<usize>() as f64
        / (learners * execs_per).max(1) as f64;
    println!(
        "resume bench: {learners} learners x {execs_per} executables = {} (average path {avg_path:.1} bytes), batches of {BATCH}",
        learners * execs_per
    );

    if env_usize("RESUME_BENCH_V1", 1) != 0 {
        let db = dir.path().join("db-v1");
        let mut profiles = profiles.clone();
        let write = write_all_v1(&db, &profiles)?;
        println!(
            "  v1 values written in {:.1} s ({} durable batches)",
            write.as_secs_f64(),
            learners.div_ceil(BATCH)
        );
        measure("v1 database (before v2)", &db, &profiles, "v1")?;
        one_more_sighting(&mut profiles);
        let (store, _) = open_when_unlocked(&db)?;
        let write = write_all(&store, &profiles)?;
        println!(
            "  every profile rewritten once (now v2) in {:.1} s",
            write.as_secs_f64()
        );
        drop(store);
        measure(
            "v1 database after one rewrite of every profile (migrated to v2)",
            &db,
            &profiles,
            "v2",
        )?;
    }

    let store = Store::open(&db)?;
    let write = write_all(&store, &profiles)?;
    println!(
        "  written in {:.1} s ({} durable batches)",
        write.as_secs_f64(),
        learners.div_ceil(BATCH)
    );
    drop(store);
    measure("fresh v2 database", &db, &profiles, "v2")?;

    one_more_sighting(&mut profiles);
    let (store, _) = open_when_unlocked(&db)?;
    let write = write_all(&store, &profiles)?;
    println!(
        "  every profile rewritten once in {:.1} s",
        write.as_secs_f64()
    );
    drop(store);
    measure(
        "v2 database after one rewrite of every profile",
        &db,
        &profiles,
        "v2",
    )?;
    Ok(())
}
