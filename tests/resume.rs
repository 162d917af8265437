//! Resume of every learner state with its timers: profiles are written straight
//! into sled (as an earlier run would have left them), then a real agent starts
//! on that database against the fake Tetragon. A restart may move a learner only
//! by the documented rules (Stable → Learning on a new executable, Learning →
//! Stable once quiet), never moves Locked, never forgets an executable or a
//! deviation, and keeps `created_at` and every `first_seen`.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{agent_when_unlocked, config, fake, record, store_when_unlocked_async, wait_until};
use tetragon_learner::agent::Agent;
use tetragon_learner::fake::scenario::Scenario;
use tetragon_learner::learner::config::LearnerConfig;
use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::learner::observation::FactSource;
use tetragon_learner::learner::profile::{ExecutableRecord, PartialReason, Profile};
use tetragon_learner::learner::state::LearnerState;
use tetragon_learner::store::Store;
use tetragon_learner::time::{now_ms, UnixMillis};

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

/// Keys seen by the scenario (workload fields given, so the key is explicit).
fn stable_key() -> LearnerKey {
    LearnerKey::new("res", "Deployment", "stable-app", "main")
}
fn locked_key() -> LearnerKey {
    LearnerKey::new("res", "Deployment", "locked-app", "main")
}
fn due_key() -> LearnerKey {
    LearnerKey::new("res", "Deployment", "due-app", "main")
}
/// Keys the scenario never shows.
fn young_key() -> LearnerKey {
    LearnerKey::new("res", "Deployment", "young-app", "main")
}
fn quiet_key() -> LearnerKey {
    LearnerKey::new("res", "StatefulSet", "quiet-db", "db")
}

/// Two rounds of: a new executable for the Stable key, a new one and an
/// already-recorded deviation and a known executable for the Locked key. The
/// snapshot shows each container's running (known) entrypoint.
const SCENARIO: &str = r#"
node_name: resume-node
kernel_threads: 2
host_processes: [/usr/bin/kubelet]
containers:
  - {namespace: res, pod: stable-app-6b7f9c8d5-aaaaa, workload: stable-app, workload_kind: Deployment,
     container: main, running: [{binary: /app/server}], execs: [{binary: /usr/bin/new-tool}]}
  - {namespace: res, pod: locked-app-6b7f9c8d5-bbbbb, workload: locked-app, workload_kind: Deployment,
     container: main, running: [{binary: /app/locked-server}],
     execs: [{binary: /usr/bin/intruder}, {binary: /bin/old-deviation}, {binary: /app/locked-helper}]}
  - {namespace: res, pod: due-app-6b7f9c8d5-ccccc, workload: due-app, workload_kind: Deployment,
     container: main, running: [{binary: /app/due}]}
activity: {rate_per_sec: 200, total_execs: 8}
"#;
/// Each exec of the scenario runs this many times per run (8 execs, plan of 4).
const ROUNDS: u64 = 2;

/// Seen first in a snapshot, then in events.
fn rec(path: &str, first_seen: UnixMillis, last_seen: UnixMillis, count: u64) -> ExecutableRecord {
    record(path)
        .source(FactSource::Snapshot)
        .also_from(FactSource::Event)
        .seen(first_seen, last_seen, count)
        .build()
}

fn records(recs: Vec<ExecutableRecord>) -> BTreeMap<String, ExecutableRecord> {
    recs.into_iter().map(|r| (r.path.clone(), r)).collect()
}

/// What an earlier run left on disk, with timestamps relative to `now`.
fn seed(now: UnixMillis) -> Vec<Profile> {
    let created = now - 3 * DAY;
    let stable = Profile {
        key: stable_key(),
        state: LearnerState::Stable,
        created_at: created,
        learning_since: created,
        last_new_at: created + HOUR,
        executables: records(vec![
            rec("/app/server", created, now - HOUR, 40),
            rec("/bin/sh", created + HOUR, now - 2 * HOUR, 3),
        ]),
        deviations: BTreeMap::new(),
        drift_count: 2,
        partial_reasons: BTreeSet::new(),
        tracking: Default::default(),
        pod_labels: Default::default(),
    };
    let locked = Profile {
        key: locked_key(),
        state: LearnerState::Locked,
        created_at: created + 1,
        learning_since: created + 1,
        last_new_at: created + 2 * HOUR,
        executables: records(vec![
            rec("/app/locked-server", created + 1, now - HOUR, 10),
            rec("/app/locked-helper", created + HOUR, now - HOUR, 5),
        ]),
        deviations: records(vec![rec("/bin/old-deviation", now - DAY, now - DAY, 1)]),
        drift_count: 1,
        partial_reasons: BTreeSet::from([PartialReason::StartedBeforeAgent]),
        tracking: Default::default(),
        pod_labels: Default::default(),
    };
    // Learning, but both windows elapsed long ago: the first tick makes it Stable.
    let due = Profile {
        key: due_key(),
        state: LearnerState::Learning,
        created_at: created + 2,
        learning_since: now - 2 * HOUR,
        last_new_at: now - HOUR,
        executables: records(vec![rec("/app/due", created + 2, now - HOUR, 7)]),
        deviations: BTreeMap::new(),
        drift_count: 1,
        partial_reasons: BTreeSet::new(),
        tracking: Default::default(),
        pod_labels: Default::default(),
    };
    // Learning for a moment only: must stay Learning (windows in `cfg`).
    let young = Profile {
        key: young_key(),
        state: LearnerState::Learning,
        created_at: now - 2_000,
        learning_since: now - 2_000,
        last_new_at: now - 1_000,
        executables: records(vec![rec("/app/young", now - 2_000, now - 1_000, 2)]),
        deviations: BTreeMap::new(),
        drift_count: 0,
        partial_reasons: BTreeSet::new(),
        tracking: Default::default(),
        pod_labels: Default::default(),
    };
    // Stable and never observed: must come back bit for bit.
    let quiet = Profile {
        key: quiet_key(),
        state: LearnerState::Stable,
        created_at: created + 3,
        learning_since: created + 3,
        last_new_at: created + 4,
        executables: records(vec![rec("/usr/bin/postgres", created + 3, now - DAY, 99)]),
        deviations: records(vec![rec("/bin/leftover", created + 5, created + 6, 1)]),
        drift_count: 4,
        partial_reasons: BTreeSet::from([PartialReason::EventsDropped]),
        tracking: Default::default(),
        pod_labels: Default::default(),
    };
    vec![stable, locked, due, young, quiet]
}

fn write_seed(db: &Path, profiles: &[Profile]) {
    let store = Store::open(db).expect("seed database opens");
    store.write_durably(profiles).expect("seed written");
    assert_eq!(store.len(), profiles.len());
}

fn by_key(profiles: Vec<Profile>) -> BTreeMap<LearnerKey, Profile> {
    profiles.into_iter().map(|p| (p.key.clone(), p)).collect()
}

/// Waits until the learners' in-memory counts show every sighting this run
/// must make (so a shutdown hands all of them to the final checkpoint).
async fn wait_counts(agent: &Agent, expect: &[(LearnerKey, &str, u64)]) {
    let start = Instant::now();
    loop {
        let now = by_key(agent.current_profiles().await);
        let missing: Vec<String> = expect
            .iter()
            .filter(|(key, path, min)| {
                let count = now.get(key).and_then(|p| {
                    p.executables
                        .get(*path)
                        .or_else(|| p.deviations.get(*path))
                        .map(|r| r.count)
                });
                count.unwrap_or(0) < *min
            })
            .map(|(key, path, min)| format!("{key} {path} >= {min}"))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for counts: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One record carried across a restart: same identity and first sighting,
/// counters and last-seen only move forward.
fn assert_record_kept(what: &str, before: &ExecutableRecord, after: Option<&ExecutableRecord>) {
    let after = after.unwrap_or_else(|| panic!("{what} {} was forgotten", before.path));
    assert_eq!(
        after.first_seen, before.first_seen,
        "{what} {} first_seen",
        before.path
    );
    assert_eq!(after.source, before.source, "{what} {} source", before.path);
    assert!(
        after.count >= before.count,
        "{what} {} count went back",
        before.path
    );
    assert!(
        after.last_seen >= before.last_seen,
        "{what} {} last_seen went back",
        before.path
    );
    assert!(
        after.sources.is_superset(&before.sources),
        "{what} {} sources",
        before.path
    );
}

/// The invariants of a restart, for any pair (before it, after a run on it).
/// `cfg` decides whether Learning → Stable was allowed.
fn assert_resumed(before: &Profile, after: &Profile, cfg: &LearnerConfig) {
    let key = &before.key;
    assert_eq!(after.key, *key);
    assert_eq!(after.created_at, before.created_at, "{key}: created_at");
    for r in before.executables.values() {
        assert_record_kept(
            &format!("{key} executable"),
            r,
            after.executables.get(&r.path),
        );
    }
    for r in before.deviations.values() {
        assert_record_kept(
            &format!("{key} deviation"),
            r,
            after.deviations.get(&r.path),
        );
    }
    assert!(
        after.drift_count >= before.drift_count,
        "{key}: drift_count went back"
    );
    assert!(
        after.partial_reasons.is_superset(&before.partial_reasons),
        "{key}: a partial reason was forgotten"
    );
    assert!(
        after.learning_since >= before.learning_since,
        "{key}: learning_since went back"
    );
    assert!(
        after.last_new_at >= before.last_new_at,
        "{key}: last_new_at went back"
    );
    use LearnerState::*;
    match (before.state, after.state) {
        (Locked, Locked) => assert_eq!(
            after.executables.keys().collect::<Vec<_>>(),
            before.executables.keys().collect::<Vec<_>>(),
            "{key}: a locked profile gained or lost executables"
        ),
        (Locked, s) => panic!("{key}: locked moved to {s} without an operator"),
        // Stable → Learning only on drift: a new executable, counted.
        (Stable, Learning) => {
            assert!(
                after.drift_count > before.drift_count,
                "{key}: left Stable without drift"
            );
            assert!(
                after.executables.len() > before.executables.len(),
                "{key}: drift without a new executable"
            );
        }
        (Stable, Stable) if after.drift_count == before.drift_count => assert_eq!(
            after.executables.len(),
            before.executables.len(),
            "{key}: learned while Stable without drifting"
        ),
        (Learning | Stable, Stable) => assert!(
            after.is_quiet_at(now_ms(), cfg),
            "{key}: Stable while not quiet"
        ),
        (Learning, Learning) => {}
        (from, to) => panic!("{key}: {from} -> {to} is not a documented move"),
    }
}

#[actix_rt::test]
async fn resume_of_each_learner_state_with_its_timers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let seeded = by_key(seed(now_ms()));
    write_seed(&db, &seeded.values().cloned().collect::<Vec<_>>());

    let scenario = Scenario::from_yaml(SCENARIO, "resume").unwrap();
    let mut fake = fake(dir.path(), scenario, None).await;
    let mut cfg = config(&fake, &db);
    // Long enough that the drifted learner visibly stays Learning for the whole
    // test, and that `young` stays Learning; `due` is hours past both.
    cfg.learner = LearnerConfig {
        stability_window_ms: 20_000,
        min_learning_ms: 20_000,
        ..LearnerConfig::default()
    };
    cfg.tick = Duration::from_millis(200);
    let learner_cfg = cfg.learner;
    let agent = agent_when_unlocked(cfg).await;
    assert_eq!(agent.resumed, seeded.len());
    // Nothing changed by loading: the durable view is exactly the seed.
    assert_eq!(by_key(agent.durable_profiles()), seeded);

    fake.activity_done().await;
    wait_until(
        "drift, deviation and quiet learner durable",
        Duration::from_secs(20),
        || {
            let d = by_key(agent.durable_profiles());
            d[&stable_key()]
                .executables
                .contains_key("/usr/bin/new-tool")
                && d[&locked_key()]
                    .deviations
                    .contains_key("/usr/bin/intruder")
                && d[&due_key()].state == LearnerState::Stable
        },
    )
    .await;
    wait_counts(
        &agent,
        &[
            (stable_key(), "/usr/bin/new-tool", ROUNDS),
            (locked_key(), "/usr/bin/intruder", ROUNDS),
            (locked_key(), "/bin/old-deviation", 1 + ROUNDS),
            (locked_key(), "/app/locked-helper", 5 + ROUNDS),
        ],
    )
    .await;
    agent.shutdown().await.unwrap();
    let after = by_key(agent.durable_profiles());
    fake.stop().await;

    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        seeded.keys().collect::<Vec<_>>()
    );
    for (key, before) in &seeded {
        assert_resumed(before, &after[key], &learner_cfg);
    }

    // Stable + new executable: drift, back to Learning, learning period restarted.
    let (b, a) = (&seeded[&stable_key()], &after[&stable_key()]);
    assert_eq!(a.state, LearnerState::Learning);
    assert_eq!(
        a.drift_count,
        b.drift_count + 1,
        "one drift, however many sightings"
    );
    assert_eq!(
        a.learning_since,
        a.executables["/usr/bin/new-tool"].first_seen
    );
    assert_eq!(a.executables["/usr/bin/new-tool"].count, ROUNDS);
    assert_eq!(
        a.executables["/app/server"].count,
        b.executables["/app/server"].count + 1
    );

    // Locked + new executable: a deviation; the profile itself is frozen.
    let (b, a) = (&seeded[&locked_key()], &after[&locked_key()]);
    assert_eq!(a.state, LearnerState::Locked);
    assert_eq!(a.executables.len(), b.executables.len());
    assert!(!a.executables.contains_key("/usr/bin/intruder"));
    assert_eq!(a.deviations["/usr/bin/intruder"].count, ROUNDS);
    assert_eq!(a.deviations["/bin/old-deviation"].count, 1 + ROUNDS);
    assert_eq!(a.executables["/app/locked-helper"].count, 5 + ROUNDS);
    assert_eq!(
        (a.learning_since, a.last_new_at),
        (b.learning_since, b.last_new_at)
    );
    assert_eq!(a.drift_count, b.drift_count);

    // Learning past both windows: Stable after the first tick, timers untouched
    // (a known executable seen again does not restart the stability window).
    let (b, a) = (&seeded[&due_key()], &after[&due_key()]);
    assert_eq!(a.state, LearnerState::Stable);
    assert_eq!(
        (a.learning_since, a.last_new_at),
        (b.learning_since, b.last_new_at)
    );
    assert_eq!(a.drift_count, b.drift_count);
    assert_eq!(
        a.executables["/app/due"].count,
        b.executables["/app/due"].count + 1
    );

    // Learning within its windows: stays Learning, unchanged.
    assert_eq!(after[&young_key()], seeded[&young_key()]);
    // Resumed keys are not "started before agent": their history is on disk.
    assert!(after[&stable_key()].partial_reasons.is_empty());
    // Stable and never observed: bit for bit what was on disk.
    assert_eq!(after[&quiet_key()], seeded[&quiet_key()]);

    // And the disk holds exactly what the agent reported as durable.
    drop(agent);
    let store = store_when_unlocked_async(&db)
        .await
        .unwrap_or_else(|e| panic!("database does not reopen: {e}"));
    let on_disk = by_key(store.load_all().unwrap());
    assert_eq!(on_disk, after);
}

#[actix_rt::test]
async fn restarting_twice_keeps_every_count_monotonic() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let seeded = by_key(seed(now_ms()));
    write_seed(&db, &seeded.values().cloned().collect::<Vec<_>>());
    let scenario = Scenario::from_yaml(SCENARIO, "resume").unwrap();
    // Short windows: a drifted learner becomes Stable again within the run.
    let learner_cfg = LearnerConfig {
        stability_window_ms: 1_000,
        min_learning_ms: 1_000,
        ..LearnerConfig::default()
    };

    let mut previous = seeded.clone();
    for run in 1..=3u64 {
        let run_dir = dir.path().join(format!("run{run}"));
        std::fs::create_dir(&run_dir).unwrap();
        let mut fake = fake(&run_dir, scenario.clone(), None).await;
        let mut cfg = config(&fake, &db);
        cfg.learner = learner_cfg;
        cfg.tick = Duration::from_millis(200);
        let agent = agent_when_unlocked(cfg).await;
        // What was loaded is exactly what the previous run left (or the seed).
        assert_eq!(
            by_key(agent.durable_profiles()),
            previous,
            "run {run}: loaded state"
        );

        fake.activity_done().await;
        // Every sighting of this run reached its learner...
        let count = |key: LearnerKey, path: &'static str, base: u64| (key, path, base);
        let p = &previous;
        let prev_count = |key: &LearnerKey, path: &str| {
            p.get(key)
                .and_then(|pr| pr.executables.get(path).or_else(|| pr.deviations.get(path)))
                .map_or(0, |r| r.count)
        };
        wait_counts(
            &agent,
            &[
                count(
                    stable_key(),
                    "/usr/bin/new-tool",
                    prev_count(&stable_key(), "/usr/bin/new-tool") + ROUNDS,
                ),
                count(
                    stable_key(),
                    "/app/server",
                    prev_count(&stable_key(), "/app/server") + 1,
                ),
                count(
                    locked_key(),
                    "/usr/bin/intruder",
                    prev_count(&locked_key(), "/usr/bin/intruder") + ROUNDS,
                ),
                count(
                    locked_key(),
                    "/bin/old-deviation",
                    prev_count(&locked_key(), "/bin/old-deviation") + ROUNDS,
                ),
                count(
                    locked_key(),
                    "/app/locked-helper",
                    prev_count(&locked_key(), "/app/locked-helper") + ROUNDS,
                ),
                count(
                    due_key(),
                    "/app/due",
                    prev_count(&due_key(), "/app/due") + 1,
                ),
            ],
        )
        .await;
        // ...and every unlocked learner is quiet again (the drift of run 1 too).
        wait_until("unlocked learners stable", Duration::from_secs(20), || {
            let d = by_key(agent.durable_profiles());
            [stable_key(), due_key(), young_key(), quiet_key()]
                .iter()
                .all(|k| d[k].state == LearnerState::Stable)
        })
        .await;
        agent.shutdown().await.unwrap();
        let after = by_key(agent.durable_profiles());
        fake.stop().await;
        drop(agent);

        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            previous.keys().collect::<Vec<_>>()
        );
        for (key, before) in &previous {
            assert_resumed(before, &after[key], &learner_cfg);
        }
        // Counts strictly grow for what this run saw; the drift happened once,
        // in run 1, and is not counted again by a restart.
        for (key, path) in [
            (stable_key(), "/usr/bin/new-tool"),
            (locked_key(), "/usr/bin/intruder"),
            (locked_key(), "/bin/old-deviation"),
            (locked_key(), "/app/locked-helper"),
            (due_key(), "/app/due"),
        ] {
            let a = &after[&key];
            let now = a
                .executables
                .get(path)
                .or_else(|| a.deviations.get(path))
                .unwrap()
                .count;
            assert!(
                now > prev_count(&key, path),
                "run {run}: {key} {path} count did not grow"
            );
        }
        assert_eq!(
            after[&stable_key()].drift_count,
            seeded[&stable_key()].drift_count + 1
        );
        assert_eq!(
            after[&stable_key()].executables["/usr/bin/new-tool"].first_seen,
            previous
                .get(&stable_key())
                .and_then(|p| p.executables.get("/usr/bin/new-tool"))
                .map_or(
                    after[&stable_key()].executables["/usr/bin/new-tool"].first_seen,
                    |r| r.first_seen
                ),
        );
        assert_eq!(after[&locked_key()].state, LearnerState::Locked);
        assert!(!after[&locked_key()]
            .executables
            .contains_key("/usr/bin/intruder"));
        assert_eq!(
            after[&quiet_key()].executables,
            seeded[&quiet_key()].executables
        );
        assert_eq!(
            after[&quiet_key()].deviations,
            seeded[&quiet_key()].deviations
        );
        previous = after;
    }
}
