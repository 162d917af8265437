//! The live pipeline against the fake Tetragon over a real unix socket, with a
//! real sled directory: what is learned equals what the scenario implies.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use common::{config, fake, paths, start_agent, wait_until};
use tetragon_learner::cli::demo::{learned_all, learner_key};
use tetragon_learner::fake::scenario::{DebugFault, Scenario};
use tetragon_learner::fake::{FakeSource, FakeTetragon};
use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::learner::observation::FactSource;
use tetragon_learner::learner::profile::PartialReason;
use tetragon_learner::snapshot::policy::SourcePolicy;
use tetragon_learner::tetragon::address::TetragonAddress;

const SCENARIO: &str = r#"
node_name: node-a
kernel_threads: 5
host_processes: [/usr/bin/containerd, /usr/bin/kubelet]
containers:
  - {namespace: web, pod: api-7d9f8c6b5-q2w3e, workload: api, workload_kind: Deployment, container: api,
     expect_key: web/Deployment/api/api, running: [{binary: /app/api}], execs: [{binary: /bin/sh, probe: true}, {binary: /usr/bin/curl}]}
  - {namespace: web, pod: api-7d9f8c6b5-zzzzz, workload: api, workload_kind: Deployment, container: api,
     expect_key: web/Deployment/api/api, running: [{binary: /app/api}]}
  - {namespace: jobs, pod: report-28800000-abcde, workload: report, workload_kind: CronJob, container: main,
     expect_key: jobs/CronJob/report/main, execs: [{binary: /usr/local/bin/report}]}
  - {namespace: legacy, pod: shop-5d8f7c6b9d-abcde, labels: {pod-template-hash: 5d8f7c6b9d}, container: shop,
     expect_key: legacy/Deployment/shop/shop, running: [{binary: /srv/shop}], execs: [{binary: /bin/bash, session: true}]}
  - {namespace: idle, pod: only-entrypoint, container: app, expect_key: idle/Pod/only-entrypoint/app,
     running: [{binary: /hardened/entrypoint}]}
activity: {rate_per_sec: 500, total_execs: 30}
"#;

fn learned(agent: &tetragon_learner::agent::Agent) -> BTreeMap<LearnerKey, BTreeSet<String>> {
    agent
        .durable_profiles()
        .into_iter()
        .map(|p| (p.key.clone(), p.executables.keys().cloned().collect()))
        .collect()
}

#[actix_rt::test]
async fn learns_exactly_what_the_scenario_implies() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::from_yaml(SCENARIO, "test").unwrap();
    let mut fake = fake(dir.path(), scenario.clone(), None).await;
    let agent = start_agent(config(&fake, &dir.path().join("db"))).await;
    fake.activity_done().await;
    let done = fake.execs_done();
    wait_until("scenario learned", Duration::from_secs(20), || {
        learned_all(
            &agent.durable_profiles(),
            &scenario.expected_profiles(done).unwrap(),
        )
    })
    .await;
    // Nothing more than the oracle: no host processes, kernel threads or <kernel>.
    let expected: BTreeMap<LearnerKey, BTreeSet<String>> = scenario
        .expected_profiles(done)
        .unwrap()
        .iter()
        .map(|(k, paths)| (learner_key(k), paths.clone()))
        .collect();
    assert_eq!(learned(&agent), expected);
    let profiles = agent.durable_profiles();
    let legacy = profiles
        .iter()
        .find(|p| p.key == LearnerKey::new("legacy", "Deployment", "shop", "shop"))
        .expect("legacy pod keyed by its Deployment");
    assert!(legacy.executables["/bin/bash"].exec_session);
    let idle = profiles
        .iter()
        .find(|p| p.key.namespace == "idle")
        .expect("snapshot-only container learned");
    assert_eq!(paths(idle), vec!["/hardened/entrypoint"]);
    assert_eq!(
        idle.executables["/hardened/entrypoint"].source,
        FactSource::Snapshot
    );
    assert!(idle
        .partial_reasons
        .contains(&PartialReason::StartedBeforeAgent));
    let api = profiles
        .iter()
        .find(|p| p.key == LearnerKey::new("web", "Deployment", "api", "api"))
        .unwrap();
    assert!(api.executables["/bin/sh"].exec_probe);
    // Replicas share one profile.
    assert_eq!(api.executables["/app/api"].count, 2);
    let metrics = agent.metrics.render();
    assert!(metrics.contains("reason=\"kernel_thread\""), "{metrics}");
    assert!(metrics.contains("reason=\"host_process\""), "{metrics}");
    agent.shutdown().await.unwrap();
    fake.stop().await;
}

#[actix_rt::test]
async fn host_processes_are_learned_only_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::from_yaml(SCENARIO, "test").unwrap();
    let fake = fake(dir.path(), scenario, None).await;
    let mut cfg = config(&fake, &dir.path().join("db"));
    cfg.ingest.learn_host_processes = true;
    let agent = start_agent(cfg).await;
    let host = LearnerKey::host("node-a");
    wait_until("host learner", Duration::from_secs(20), || {
        learned(&agent)
            .get(&host)
            .is_some_and(|s| s.contains("/usr/bin/kubelet"))
    })
    .await;
    assert!(!learned(&agent)[&host]
        .iter()
        .any(|p| p.starts_with('[') || p == "<kernel>"));
    agent.shutdown().await.unwrap();
    fake.stop().await;
}

#[actix_rt::test]
async fn a_new_snapshot_is_taken_after_every_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::from_yaml(SCENARIO, "test").unwrap();
    scenario.activity.total_execs = 0; // forever
    scenario.activity.rate_per_sec = 200;
    scenario.faults.abort_stream_after = Some(10);
    let fake = fake(dir.path(), scenario, None).await;
    let agent = start_agent(config(&fake, &dir.path().join("db"))).await;
    wait_until(
        "three streams and three snapshots",
        Duration::from_secs(30),
        || fake.streams_opened() >= 3 && fake.debug_calls() >= 3,
    )
    .await;
    assert!(agent
        .metrics
        .render()
        .contains("tetragon_learner_reconnects_total"));
    agent.shutdown().await.unwrap();
    fake.stop().await;
}

#[actix_rt::test]
async fn getdebug_unavailable_falls_back_to_the_export_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::from_yaml(SCENARIO, "test").unwrap();
    scenario.faults.getdebug = DebugFault::Unimplemented;
    let log = dir.path().join("tetragon.log");
    let fake = fake(dir.path(), scenario, Some(&log)).await;
    let mut cfg = config(&fake, &dir.path().join("db"));
    cfg.snapshot.policy = SourcePolicy::Auto;
    cfg.snapshot.export_log = Some(log);
    let agent = start_agent(cfg).await;
    let idle = LearnerKey::new("idle", "Pod", "only-entrypoint", "app");
    wait_until(
        "idle container from the export log",
        Duration::from_secs(20),
        || learned(&agent).contains_key(&idle),
    )
    .await;
    let p = agent
        .durable_profiles()
        .into_iter()
        .find(|p| p.key == idle)
        .unwrap();
    assert_eq!(
        p.executables["/hardened/entrypoint"].source,
        FactSource::ExportLog
    );
    let status = agent.snapshot_status.read().clone();
    let report = status.last_report.expect("a snapshot report");
    assert!(report
        .fallback_reason
        .unwrap_or_default()
        .contains("not implemented"));
    agent.shutdown().await.unwrap();
    fake.stop().await;
}

#[actix_rt::test]
async fn malformed_events_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let replay_path = dir.path().join("replay.jsonl");
    let mut f = std::fs::File::create(&replay_path).unwrap();
    let good = r#"{"process_exec":{"process":{"exec_id":"bjoxOjE=","pid":1,"binary":"/bin/ok","flags":"execve","pod":{"namespace":"ns","name":"p","container":{"id":"c","name":"app"}}}},"node_name":"n"}"#;
    for line in [
        "this is not json",
        r#"{"process_exec":{},"node_name":"n"}"#,
        r#"{"process_exec":{"process":{"exec_id":"eA==","binary":"/bin/x","pod":{"namespace":"ns","name":"p"}}},"node_name":"n"}"#,
        r#"{"process_exec":{"process":{"exec_id":"eQ==","binary":"","pod":{"namespace":"ns","name":"p","container":{"name":"app"}}}},"node_name":"n"}"#,
        good,
    ] {
        writeln!(f, "{line}").unwrap();
    }
    drop(f);
    let replay = tetragon_learner::fake::replay::load(&replay_path).unwrap();
    assert_eq!(replay.skipped_lines, 1);
    let addr = TetragonAddress::Unix(dir.path().join("t.sock"));
    let fake = FakeTetragon::start(
        &addr,
        FakeSource::Replay {
            replay,
            rate_per_sec: 50,
            faults: Default::default(),
            export_deny_namespaces: Vec::new(),
        },
        None,
    )
    .await
    .unwrap();
    let agent = start_agent(config(&fake, &dir.path().join("db"))).await;
    let key = LearnerKey::new("ns", "Pod", "p", "app");
    wait_until("the one good event", Duration::from_secs(20), || {
        learned(&agent).contains_key(&key)
    })
    .await;
    assert_eq!(
        learned(&agent)[&key],
        BTreeSet::from(["/bin/ok".to_string()])
    );
    let m = agent.metrics.render();
    for reason in ["no_process", "pod_without_container", "empty_binary"] {
        assert!(
            m.contains(&format!("reason=\"{reason}\"")),
            "{reason} not counted in {m}"
        );
    }
    agent.shutdown().await.unwrap();
    fake.stop().await;
}

#[actix_rt::test]
async fn a_restart_resumes_learned_state() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let scenario = Scenario::from_yaml(SCENARIO, "test").unwrap();
    let mut fake = fake(dir.path(), scenario.clone(), None).await;
    let agent = start_agent(config(&fake, &db)).await;
    fake.activity_done().await;
    let done = fake.execs_done();
    wait_until("learned", Duration::from_secs(20), || {
        learned_all(
            &agent.durable_profiles(),
            &scenario.expected_profiles(done).unwrap(),
        )
    })
    .await;
    let before = learned(&agent);
    agent.shutdown().await.unwrap();
    fake.stop().await;
    drop(agent);
    // sled releases its lock when the last handle is gone; give actors a moment.
    let mut resumed = None;
    for _ in 0..50 {
        match tetragon_learner::store::Store::open(&db) {
            Ok(store) => {
                resumed = Some(store.load_all().unwrap());
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let resumed = resumed.expect("database reopens after shutdown");
    let after: BTreeMap<_, BTreeSet<String>> = resumed
        .iter()
        .map(|p| (p.key.clone(), p.executables.keys().cloned().collect()))
        .collect();
    assert_eq!(after, before);
}

#[actix_rt::test]
async fn a_tetragon_that_disappears_and_comes_back_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let first = Scenario::from_yaml(SCENARIO, "test").unwrap();
    let fake1 = fake(dir.path(), first, None).await;
    let agent = start_agent(config(&fake1, &dir.path().join("db"))).await;
    let idle = LearnerKey::new("idle", "Pod", "only-entrypoint", "app");
    wait_until("first Tetragon learned", Duration::from_secs(20), || {
        learned(&agent).contains_key(&idle)
    })
    .await;
    fake1.stop().await;
    // Down for a while: the agent backs off and keeps what it learned.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(learned(&agent).contains_key(&idle));
    // Tetragon restarts on the same socket with a different process cache.
    let second = Scenario::from_yaml(
        "node_name: node-a\ncontainers:\n- {namespace: late, pod: newcomer, container: c, running: [{binary: /opt/new}]}\n",
        "restart",
    )
    .unwrap();
    let fake2 = fake(dir.path(), second, None).await;
    let late = LearnerKey::new("late", "Pod", "newcomer", "c");
    wait_until(
        "reconnected and re-snapshotted",
        Duration::from_secs(20),
        || learned(&agent).contains_key(&late),
    )
    .await;
    assert!(fake2.debug_calls() >= 1);
    assert!(
        learned(&agent).contains_key(&idle),
        "nothing learned before is lost"
    );
    agent.shutdown().await.unwrap();
    fake2.stop().await;
}

/// Tetragon (grpc-go) sends the GetEvents response headers with the first event:
/// on a node where nothing happens, the agent must still take its snapshot
/// (grace timer) and learn what runs.
#[actix_rt::test]
async fn an_idle_node_still_gets_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let idle_node = Scenario::from_yaml(
        "node_name: quiet\ncontainers:\n- {namespace: ns, pod: only, container: c, running: [{binary: /entrypoint}]}\n",
        "idle",
    )
    .unwrap();
    let fake = fake(dir.path(), idle_node, None).await;
    let agent = start_agent(config(&fake, &dir.path().join("db"))).await;
    let key = LearnerKey::new("ns", "Pod", "only", "c");
    wait_until("snapshot on an idle node", Duration::from_secs(20), || {
        learned(&agent).contains_key(&key)
    })
    .await;
    assert_eq!(fake.debug_calls(), 1);
    let state = agent.connection_status.read().state;
    assert_eq!(
        state,
        tetragon_learner::tetragon::connection::machine::ConnState::Live
    );
    agent.shutdown().await.unwrap();
    fake.stop().await;
}

/// Tetragon never tells a gRPC client what it dropped; the agent finds out from
/// the next snapshots: processes alive whose exec never came through the stream.
#[actix_rt::test]
async fn execs_missed_while_the_stream_was_down_mark_learners_partial() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::from_yaml(
        "node_name: n\ncontainers:\n- {namespace: ns, pod: busy, container: c, execs: [{binary: /bin/a}, {binary: /bin/b}]}\n",
        "gap",
    )
    .unwrap();
    scenario.activity.rate_per_sec = 100;
    scenario.activity.total_execs = 0;
    scenario.activity.exit_after_exec = false; // they stay alive for the next snapshot
    scenario.faults.abort_stream_after = Some(20);
    let fake = fake(dir.path(), scenario, None).await;
    let mut cfg = config(&fake, &dir.path().join("db"));
    cfg.connection.backoff.base = Duration::from_millis(300);
    cfg.connection.resnapshot_interval = Some(Duration::from_millis(2500));
    let agent = start_agent(cfg).await;
    let key = LearnerKey::new("ns", "Pod", "busy", "c");
    wait_until("events-dropped mark", Duration::from_secs(30), || {
        agent
            .durable_profiles()
            .iter()
            .any(|p| p.key == key && p.partial_reasons.contains(&PartialReason::EventsDropped))
    })
    .await;
    assert!(agent
        .metrics
        .render()
        .contains("tetragon_learner_missed_exec_events_total"));
    agent.shutdown().await.unwrap();
    fake.stop().await;
}

#[actix_rt::test]
async fn a_healthy_stream_is_never_reported_as_dropping() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::from_yaml(
        "node_name: n\ncontainers:\n- {namespace: ns, pod: busy, container: c, execs: [{binary: /bin/a}, {binary: /bin/b}]}\n",
        "steady",
    )
    .unwrap();
    scenario.activity.rate_per_sec = 50;
    scenario.activity.total_execs = 150;
    scenario.activity.exit_after_exec = false;
    let mut fake = fake(dir.path(), scenario, None).await;
    let mut cfg = config(&fake, &dir.path().join("db"));
    cfg.connection.resnapshot_interval = Some(Duration::from_millis(400));
    let agent = start_agent(cfg).await;
    fake.activity_done().await;
    // Two more re-snapshots after the last exec.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(fake.debug_calls() >= 4, "re-snapshots happened");
    let profiles = agent.durable_profiles();
    assert!(!profiles.is_empty());
    assert!(
        profiles
            .iter()
            .all(|p| !p.partial_reasons.contains(&PartialReason::EventsDropped)),
        "{profiles:?}"
    );
    agent.shutdown().await.unwrap();
    fake.stop().await;
}
