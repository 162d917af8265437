//! Completeness that heals and exits that teach, against the fake Tetragon
//! over a real unix socket with a real sled directory.
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{config, fake, start_agent, wait_until};
use tetragon_learner::agent::{Agent, AgentConfig};
use tetragon_learner::fake::node::FakeNode;
use tetragon_learner::fake::replay::Replay;
use tetragon_learner::fake::scenario::{ContainerSpec, ExecSpec, Scenario};
use tetragon_learner::fake::{FakeSource, FakeTetragon};
use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::learner::observation::FactSource;
use tetragon_learner::learner::profile::{PartialReason, Profile};
use tetragon_learner::tetragon::address::TetragonAddress;
use tetragon_learner::time::now_ms;

const MIN_LEARNING_MS: u64 = 2_000;

/// Two Deployments already running when the agent starts: `api` will be
/// rolled out, `db` keeps its old instance.
const SCENARIO: &str = r#"
node_name: n
containers:
  - {namespace: shop, pod: api-old-aaaaa, workload: api, workload_kind: Deployment, container: api,
     running: [{binary: /app/api}]}
  - {namespace: shop, pod: db-0, workload: db, workload_kind: StatefulSet, container: db,
     running: [{binary: /usr/bin/postgres}]}
"#;

fn api() -> LearnerKey {
    LearnerKey::new("shop", "Deployment", "api", "api")
}

fn db() -> LearnerKey {
    LearnerKey::new("shop", "StatefulSet", "db", "db")
}

fn new_api_pod() -> ContainerSpec {
    ContainerSpec {
        namespace: "shop".into(),
        pod: "api-new-bbbbb".into(),
        workload: "api".into(),
        workload_kind: "Deployment".into(),
        container: "api".into(),
        running: vec![ExecSpec {
            binary: "/app/api".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn cfg(fake: &FakeTetragon, db: &std::path::Path) -> AgentConfig {
    let mut cfg = config(fake, db);
    cfg.learner.min_learning_ms = MIN_LEARNING_MS;
    cfg.learner.stability_window_ms = 500;
    // Snapshots keep judging which instances live.
    cfg.connection.resnapshot_interval = Some(Duration::from_millis(700));
    cfg
}

fn durable(agent: &Agent, key: &LearnerKey) -> Option<Profile> {
    agent.durable_profiles().into_iter().find(|p| &p.key == key)
}

fn partial_for(agent: &Agent, key: &LearnerKey, reason: PartialReason) -> bool {
    durable(agent, key).is_some_and(|p| p.partial_reasons.contains(&reason))
}

async fn both_partial(agent: &Agent) {
    wait_until("both learners partial", Duration::from_secs(20), || {
        partial_for(agent, &api(), PartialReason::StartedBeforeAgent)
            && partial_for(agent, &db(), PartialReason::StartedBeforeAgent)
    })
    .await;
}

#[actix_rt::test]
async fn a_rollout_heals_started_before_agent_and_a_key_whose_old_instance_runs_stays_partial() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::from_yaml(SCENARIO, "rollout").unwrap();
    let fake = fake(dir.path(), scenario, None).await;
    let agent = start_agent(cfg(&fake, &dir.path().join("db"))).await;
    both_partial(&agent).await;
    // Give the agent's stream a moment: the new instance starts after it is live.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rolled_at = now_ms();
    fake.rollout("shop", "api-old-aaaaa", new_api_pod());
    wait_until("api healed", Duration::from_secs(20), || {
        !partial_for(&agent, &api(), PartialReason::StartedBeforeAgent)
    })
    .await;
    let api = durable(&agent, &api()).unwrap();
    let healed = api.tracking.healed_at[&PartialReason::StartedBeforeAgent];
    assert!(
        healed >= rolled_at + MIN_LEARNING_MS,
        "healed {} ms after the rollout, before min_learning",
        healed - rolled_at
    );
    assert!(api.partial_reasons.is_empty(), "{:?}", api.partial_reasons);
    let live: Vec<_> = api
        .tracking
        .instances
        .values()
        .filter(|i| i.is_live())
        .collect();
    assert_eq!(live.len(), 1);
    assert!(live[0].seen_from_start);
    assert_eq!(
        api.tracking.instances.len(),
        2,
        "the old one is kept as gone"
    );
    // The database keeps its old instance: still partial, long after.
    tokio::time::sleep(Duration::from_millis(MIN_LEARNING_MS)).await;
    assert!(partial_for(
        &agent,
        &db(),
        PartialReason::StartedBeforeAgent
    ));
    let m = agent.metrics.render();
    assert!(
        m.contains(r#"tetragon_learner_partial_reasons_total{reason="started-before-agent",change="healed"} 1"#),
        "{m}"
    );
    agent.shutdown().await.unwrap();
    fake.stop().await;
}

#[actix_rt::test]
async fn an_agent_restart_between_the_rollout_and_the_healing_keeps_the_tracking() {
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("db");
    let scenario = Scenario::from_yaml(SCENARIO, "rollout").unwrap();
    let fake = fake(dir.path(), scenario, None).await;
    let agent = start_agent(cfg(&fake, &db_dir)).await;
    both_partial(&agent).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.rollout("shop", "api-old-aaaaa", new_api_pod());
    wait_until(
        "the new instance is durable, seen from its start",
        Duration::from_secs(20),
        || {
            durable(&agent, &api()).is_some_and(|p| {
                p.tracking
                    .instances
                    .values()
                    .any(|i| i.is_live() && i.seen_from_start)
                    && p.tracking.instances.values().any(|i| !i.is_live())
            })
        },
    )
    .await;
    assert!(partial_for(
        &agent,
        &api(),
        PartialReason::StartedBeforeAgent
    ));
    agent.shutdown().await.unwrap();
    drop(agent);
    // A second run on the same database: the new instance started before it,
    // but the first run saw it from its start, and that is in sled.
    let mut agent = None;
    for _ in 0..50 {
        match Agent::start(cfg(&fake, &db_dir)).await {
            Ok(a) => {
                agent = Some(a);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let agent = agent.expect("the database reopens");
    assert!(partial_for(
        &agent,
        &api(),
        PartialReason::StartedBeforeAgent
    ));
    wait_until(
        "api healed after the restart",
        Duration::from_secs(20),
        || !partial_for(&agent, &api(), PartialReason::StartedBeforeAgent),
    )
    .await;
    assert!(partial_for(
        &agent,
        &db(),
        PartialReason::StartedBeforeAgent
    ));
    agent.shutdown().await.unwrap();
    fake.stop().await;
}

#[actix_rt::test]
async fn an_exit_whose_exec_was_lost_teaches_its_binary_and_marks_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::from_yaml(SCENARIO, "exits").unwrap();
    let fake = fake(dir.path(), scenario, None).await;
    let agent = start_agent(cfg(&fake, &dir.path().join("db"))).await;
    both_partial(&agent).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // db (container 1) runs a vacuum whose exec Tetragon dropped, and a
    // backup whose exec came through.
    fake.exec_in(1, "/usr/bin/vacuumdb", true);
    fake.exec_in(1, "/usr/bin/pg_dump", false);
    wait_until("both learned", Duration::from_secs(20), || {
        durable(&agent, &db())
            .is_some_and(|p| p.knows("/usr/bin/vacuumdb") && p.knows("/usr/bin/pg_dump"))
    })
    .await;
    let p = durable(&agent, &db()).unwrap();
    assert_eq!(p.executables["/usr/bin/vacuumdb"].source, FactSource::Exit);
    assert_eq!(p.executables["/usr/bin/vacuumdb"].count, 1);
    // The exit of pg_dump added nothing: one sighting, from its exec.
    assert_eq!(p.executables["/usr/bin/pg_dump"].source, FactSource::Event);
    assert_eq!(p.executables["/usr/bin/pg_dump"].count, 1);
    assert!(p.partial_reasons.contains(&PartialReason::EventsDropped));
    assert!(!partial_for(&agent, &api(), PartialReason::EventsDropped));
    assert!(agent
        .metrics
        .render()
        .contains("tetragon_learner_learned_from_exits_total 1"));
    agent.shutdown().await.unwrap();
    fake.stop().await;
}

/// A feed of `n` short-lived processes with distinct binaries in one
/// container, each exec then exit, every `k`-th exec lost.
fn lossy_feed(n: usize, k: usize) -> (Replay, BTreeSet<String>) {
    let spec = Scenario::from_yaml(
        "node_name: n\ncontainers:\n- {namespace: ns, pod: busy, container: c}\n",
        "feed",
    )
    .unwrap();
    let mut node = FakeNode::new(&spec, 0);
    let start = now_ms();
    let mut feed = Vec::new();
    let mut with_exec = BTreeSet::new();
    for i in 0..n {
        let binary = format!("/bin/p{i:03}");
        let exec = node.exec(
            0,
            &ExecSpec {
                binary: binary.clone(),
                ..Default::default()
            },
            start + i as u64,
        );
        let id = match exec.event.as_ref() {
            Some(tetragon_learner::tetragon::proto::get_events_response::Event::ProcessExec(x)) => {
                x.process.as_ref().unwrap().exec_id.clone()
            }
            _ => unreachable!(),
        };
        if i % k != k - 1 {
            feed.push(exec);
            with_exec.insert(binary);
        }
        feed.extend(node.exit(&id, start + i as u64));
    }
    let replay = Replay {
        node_name: "n".into(),
        feed,
        ..Default::default()
    };
    (replay, with_exec)
}

async fn learned_from(replay: Replay, learn_from_exits: bool, want: usize) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let addr = TetragonAddress::Unix(dir.path().join("t.sock"));
    let mut fake = FakeTetragon::start(
        &addr,
        FakeSource::Replay {
            replay,
            rate_per_sec: 2_000,
            faults: Default::default(),
            export_deny_namespaces: Vec::new(),
        },
        None,
    )
    .await
    .unwrap();
    let mut cfg = config(&fake, &dir.path().join("db"));
    cfg.ingest.learn_from_exits = learn_from_exits;
    let agent = start_agent(cfg).await;
    fake.activity_done().await;
    let key = LearnerKey::new("ns", "Pod", "busy", "c");
    let count = || durable(&agent, &key).map_or(0, |p| p.executables.len());
    wait_until("the feed learned", Duration::from_secs(30), || {
        count() >= want
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let learned = durable(&agent, &key)
        .map(|p| p.executables.keys().cloned().collect())
        .unwrap_or_default();
    agent.shutdown().await.unwrap();
    fake.stop().await;
    learned
}

/// The measurement the issue asks for: with a known share of execs lost, the
/// share of executables learned with and without exits teaching.
#[actix_rt::test]
async fn exits_teach_what_lost_execs_hid() {
    const N: usize = 200;
    const K: usize = 4; // every 4th exec lost: 25 %
    let (replay, with_exec) = lossy_feed(N, K);
    let all: BTreeSet<String> = (0..N).map(|i| format!("/bin/p{i:03}")).collect();
    assert_eq!(with_exec.len(), N - N / K);
    let (replay2, _) = lossy_feed(N, K);
    let without = learned_from(replay, false, with_exec.len()).await;
    let with = learned_from(replay2, true, N).await;
    println!(
        "execs lost: {:.0} %; executables learned without exits teaching: {}/{N} ({:.0} %), with: {}/{N} ({:.0} %)",
        100.0 / K as f64,
        without.len(),
        100.0 * without.len() as f64 / N as f64,
        with.len(),
        100.0 * with.len() as f64 / N as f64,
    );
    assert_eq!(without, with_exec);
    assert_eq!(with, all);
}

/// GetDebug fails and there is no export log: nothing already running was
/// seen, so every learner says so, and so does the export.
#[actix_rt::test]
async fn without_a_snapshot_since_connecting_learners_are_partial_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::from_yaml(
        "node_name: n\ncontainers:\n- {namespace: ns, pod: busy, container: c, running: [{binary: /entrypoint}], execs: [{binary: /bin/a}]}\n",
        "no-snapshot",
    )
    .unwrap();
    scenario.faults.getdebug = tetragon_learner::fake::scenario::DebugFault::Error;
    scenario.activity.rate_per_sec = 20;
    scenario.activity.total_execs = 0;
    let fake = fake(dir.path(), scenario, None).await;
    let agent = start_agent(config(&fake, &dir.path().join("db"))).await;
    let key = LearnerKey::new("ns", "Pod", "busy", "c");
    wait_until("no-snapshot mark", Duration::from_secs(20), || {
        partial_for(&agent, &key, PartialReason::NoSnapshot)
    })
    .await;
    let p = durable(&agent, &key).unwrap();
    assert!(p.knows("/bin/a"));
    assert!(!p.knows("/entrypoint"), "only a snapshot could show it");
    let warning = tetragon_learner::export::warnings::not_ready(&[&p])
        .expect("a warning")
        .lines(true)
        .join("\n");
    assert!(warning.contains("no-snapshot"), "{warning}");
    agent.shutdown().await.unwrap();
    fake.stop().await;
}
