//! A flood of violations from one workload: memory and database size stay
//! bounded. The fake Tetragon (in process, real socket) holds one of the
//! agent's exported policies for the workload, in monitor mode, flagging every
//! exec outside its list; the workload then execs `VIOLATIONS_BENCH_EVENTS`
//! (default 100,000) distinct unlisted paths, each a would-deny violation. The
//! bench waits until the agent has recorded every one (kept + evicted), then
//! prints the agent's RSS growth, the profile's violation count and the
//! database size, next to the same agent after 1,000 (the per-learner bounds:
//! 100 violations kept, `max_executables` executables).
//!
//! Run: `cargo bench --bench violations`.
use std::time::{Duration, Instant};

use tetragon_learner::agent::Agent;
use tetragon_learner::cli::demo::demo_agent_config;
use tetragon_learner::export::tracing_policy::policies;
use tetragon_learner::export::{ExportOptions, PolicyHook, PolicyMode};
use tetragon_learner::fake::scenario::{ExecSpec, Scenario};
use tetragon_learner::fake::{FakeSource, FakeTetragon};
use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::tetragon::address::TetragonAddress;
use tetragon_learner::tetragon::client::{client, connect};
use tetragon_learner::tetragon::proto::AddTracingPolicyRequest;

mod common;

use common::{vm_hwm_kib, vm_rss_kib};

#[global_allocator]
static GLOBAL: tetragon_learner::GlobalAllocator = tetragon_learner::GLOBAL_ALLOCATOR;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const SCENARIO: &str = r#"
node_name: bench-node
containers:
  - namespace: shop
    pod: web-0
    workload: web
    workload_kind: Deployment
    labels: {tetragon-learner.io/workload: web}
    container: app
    running: [{binary: /usr/bin/sleep, arguments: 1d}]
"#;

fn dir_bytes(path: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn recorded(agent: &Agent, key: &LearnerKey) -> (usize, u64) {
    agent
        .durable_profiles()
        .into_iter()
        .find(|p| &p.key == key)
        .map(|p| {
            let seen: u64 = p.violations.by_id.values().map(|v| v.count).sum();
            (p.violations.by_id.len(), seen + p.violations.evicted)
        })
        .unwrap_or((0, 0))
}

async fn flood(fake: &FakeTetragon, agent: &Agent, from: u64, to: u64) -> BenchResult<()> {
    let key = LearnerKey::new("shop", "Deployment", "web", "app");
    for i in from..to {
        let spec = ExecSpec {
            binary: format!("/tmp/flood/bin-{i:06}"),
            ..Default::default()
        };
        fake.exec_spec_in(0, &spec, false);
        if i % 500 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    // Each exec is one would-deny violation (decided at its exit).
    while recorded(agent, &key).1 < to {
        if Instant::now() > deadline {
            return Err(format!(
                "only {:?} of {to} violations recorded",
                recorded(agent, &key)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn main() -> BenchResult<()> {
    unsafe { tetragon_learner::tune_allocator() };
    let events: u64 = std::env::var("VIOLATIONS_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    tetragon_learner::cli::actor_system().block_on(async move {
        let dir = tempfile::tempdir()?;
        let scenario = Scenario::from_yaml(SCENARIO, "bench")?;
        let addr = TetragonAddress::Unix(dir.path().join("tetragon.sock"));
        let fake = FakeTetragon::start(&addr, FakeSource::Scenario(scenario), None).await?;
        let db = dir.path().join("db");
        let agent = Agent::start(demo_agent_config(fake.address.clone(), db.clone())).await?;
        let key = LearnerKey::new("shop", "Deployment", "web", "app");
        fake.exec_spec_in(
            0,
            &ExecSpec {
                binary: "/usr/bin/true".into(),
                ..Default::default()
            },
            false,
        );
        while !agent.durable_profiles().iter().any(|p| p.key == key) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = agent
            .durable_profiles()
            .into_iter()
            .find(|p| p.key == key)
            .ok_or("no profile")?;
        let opts = ExportOptions {
            mode: PolicyMode::Monitor,
            hook: PolicyHook::Tracepoint,
            ..Default::default()
        };
        let exported = policies(std::slice::from_ref(&profile), &opts)?;
        let mut api = client(connect(&fake.address, Duration::from_secs(5)).await?, 1 << 20);
        api.add_tracing_policy(AddTracingPolicyRequest {
            yaml: serde_yaml::to_string(&exported.policies[0])?,
            domain: String::new(),
        })
        .await?;
        while !agent
            .own_policies
            .read()
            .values()
            .any(|p| p.state == "enabled")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;

        let rss0 = vm_rss_kib();
        let first = 1_000.min(events);
        let t = Instant::now();
        flood(&fake, &agent, 0, first).await?;
        let (kept1, seen1) = recorded(&agent, &key);
        let rss1 = vm_rss_kib();
        let db1 = dir_bytes(&db);
        println!(
            "after {seen1} violations: {kept1} kept, RSS +{} MiB, database {} KiB",
            rss1.saturating_sub(rss0) / 1024,
            db1 / 1024
        );
        flood(&fake, &agent, first, events).await?;
        let (kept, seen) = recorded(&agent, &key);
        let rss = vm_rss_kib();
        let db2 = dir_bytes(&db);
        let p = agent
            .durable_profiles()
            .into_iter()
            .find(|p| p.key == key)
            .ok_or("no profile")?;
        println!(
            "after {seen} violations ({:.1} s, {:.0}/s through the fake and the agent): {kept} kept, {} evicted, \
             {} executables in the profile (partial: {:?}); RSS +{} MiB now, peak {} MiB; database {} KiB \
             (was {} KiB after {seen1})",
            t.elapsed().as_secs_f64(),
            seen as f64 / t.elapsed().as_secs_f64(),
            p.violations.evicted,
            p.executables.len(),
            p.partial_reasons,
            rss.saturating_sub(rss0) / 1024,
            vm_hwm_kib() / 1024,
            db2 / 1024,
            db1 / 1024,
        );
        agent.shutdown().await?;
        Ok(())
    })
}
