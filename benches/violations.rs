//! A flood of violations from one workload: the agent's memory and database
//! stay bounded. The agent runs as `run` does (its own sled directory), and
//! is fed, as the connection would feed it, `VIOLATIONS_BENCH_EVENTS` (default
//! 100,000) execs of unlisted paths by one workload — twice, with a fresh agent
//! each: 50 paths over and over (a denied cron job), then every path distinct
//! (the worst case) — each followed by
//! the raw-tracepoint `Sigkill` event of that workload's policy (one of the
//! agent's, listed in monitor mode) and the process's normal exit: each one a
//! `would-deny` violation, and (monitor mode: the exec ran) a new executable.
//! Prints the agent's RSS growth, what the profile kept (violations: the newest
//! 100, the rest counted; executables: `--max-executables-per-profile`) and the
//! database size, after the first 1,000 and after all.
//!
//! No Tetragon, no fake: the events go straight to the ingester in batches of
//! 256 (the connection's own batch size), each batch waited for (backpressure),
//! so what is measured is the agent's own bound, not a transport.
//!
//! Run: `cargo bench --bench violations`.
use std::time::{Duration, Instant};

use clap::Parser;
use prost::bytes::Bytes;
use tetragon_learner::agent::Agent;
use tetragon_learner::cli::run_cmd::RunArgs;
use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::tetragon::connection::messages::EventBatch;
use tetragon_learner::tetragon::observe::enforcing::OwnPolicy;
use tetragon_learner::tetragon::proto::lean;

mod common;

use common::{vm_hwm_kib, vm_rss_kib};

#[global_allocator]
static GLOBAL: tetragon_learner::GlobalAllocator = tetragon_learner::GLOBAL_ALLOCATOR;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const POLICY: &str = "deployment-web";
const BOOT: i64 = 1_800_000_000;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn ts(ms: i64) -> lean::Timestamp {
    lean::Timestamp {
        seconds: BOOT + ms / 1_000,
        nanos: ((ms % 1_000) * 1_000_000) as i32,
    }
}

fn process(i: u64, binary: &str) -> lean::Process {
    lean::Process {
        exec_id: b(&format!("bench:{i}")),
        pid: Some(lean::UInt32Value {
            value: 10_000 + i as u32,
        }),
        binary: b(binary),
        flags: b("execve clone"),
        start_time: Some(ts(i as i64)),
        pod: Some(lean::Pod {
            namespace: b("shop"),
            name: b("web-5d8f7c6b9d-abcde"),
            container: Some(lean::Container {
                id: b("containerd://0123456789abcdef"),
                name: b("app"),
                start_time: Some(ts(0)),
                maybe_exec_probe: false,
            }),
            pod_labels: vec![lean::LabelEntry {
                key: b("app"),
                value: b("web"),
            }],
            workload: b("web"),
            workload_kind: b("Deployment"),
        }),
        parent_exec_id: b("bench:parent"),
        in_init_tree: Some(lean::BoolValue { value: true }),
    }
}

fn event(e: lean::get_events_response::Event, ms: i64) -> lean::GetEventsResponse {
    lean::GetEventsResponse {
        event: Some(e),
        node_name: b("bench-node"),
        time: Some(ts(ms)),
    }
}

/// Exec `i`, its policy's Sigkill event (monitor mode), its normal exit;
/// `paths` distinct paths in turn (0: every one distinct).
fn flood_events(i: u64, paths: u64) -> [lean::GetEventsResponse; 3] {
    use lean::get_events_response::Event;
    let n = if paths == 0 { i } else { i % paths };
    let path = format!("/tmp/flood/bin-{n:06}");
    let p = process(i, &path);
    let tp = lean::ProcessTracepoint {
        process: Some(p.clone()),
        subsys: b("sched"),
        event: b("sched_process_exec"),
        args: vec![lean::KprobeArgument {
            linux_binprm_arg: Some(lean::KprobeLinuxBinprm { path: b(&path) }),
        }],
        policy_name: b(POLICY),
        action: 3,
    };
    [
        event(
            Event::ProcessExec(lean::ProcessExec {
                process: Some(p.clone()),
            }),
            i as i64,
        ),
        event(Event::ProcessTracepoint(tp), i as i64),
        event(
            Event::ProcessExit(lean::ProcessExit {
                process: Some(p),
                signal: Bytes::new(),
            }),
            i as i64 + 1,
        ),
    ]
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// (violations kept, violations seen: counts + evicted, executables).
fn recorded(agent: &Agent, key: &LearnerKey) -> (usize, u64, usize) {
    agent
        .durable_profiles()
        .into_iter()
        .find(|p| &p.key == key)
        .map(|p| {
            let seen: u64 = p.violations.by_id.values().map(|v| v.count).sum();
            (
                p.violations.by_id.len(),
                seen + p.violations.evicted,
                p.executables.len(),
            )
        })
        .unwrap_or((0, 0, 0))
}

async fn flood(agent: &Agent, key: &LearnerKey, from: u64, to: u64, paths: u64) -> BenchResult<()> {
    let mut batch = Vec::with_capacity(256);
    for i in from..to {
        batch.extend(flood_events(i, paths));
        if batch.len() >= 255 || i + 1 == to {
            agent
                .ingester
                .send(EventBatch(std::mem::take(&mut batch)))
                .await?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while recorded(agent, key).1 < to {
        if Instant::now() > deadline {
            return Err(format!(
                "only {:?} of {to} violations recorded",
                recorded(agent, key)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn main() -> BenchResult<()> {
    // SAFETY: no other thread runs yet.
    unsafe { tetragon_learner::tune_allocator() };
    let events: u64 = std::env::var("VIOLATIONS_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    for (what, paths) in [("50 paths over and over", 50), ("every path distinct", 0)] {
        println!("{events} violation events, {what}:");
        run(events, paths)?;
    }
    Ok(())
}

fn run(events: u64, paths: u64) -> BenchResult<()> {
    tetragon_learner::cli::actor_system().block_on(async move {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("db");
        // The agent as `run` configures it (nothing listens at the address:
        // the connection retries, the events come from here).
        #[derive(clap::Parser)]
        struct Run {
            #[command(flatten)]
            args: RunArgs,
        }
        let run = Run::try_parse_from([
            "run",
            "--tetragon-address",
            "unix:///nonexistent/tetragon.sock",
            "--db",
            db.to_str().ok_or("tempdir is not UTF-8")?,
            "--snapshot-source",
            "none",
            "--hook-view",
            "off",
        ])?;
        let agent = Agent::start(run.args.agent_config()).await?;
        agent.own_policies.write().insert(
            POLICY.to_string(),
            OwnPolicy {
                name: POLICY.into(),
                namespace: "shop".into(),
                state: "enabled".into(),
                mode: "monitor".into(),
                error: String::new(),
                kernel_memory_bytes: 0,
                enforced: 0,
                monitored: 0,
            },
        );
        let key = LearnerKey::new("shop", "Deployment", "web", "app");
        let rss0 = vm_rss_kib();
        let first = 1_000.min(events);
        let t = Instant::now();
        flood(&agent, &key, 0, first, paths).await?;
        let (kept1, seen1, exes1) = recorded(&agent, &key);
        let rss1 = vm_rss_kib();
        let db1 = dir_bytes(&db);
        println!(
            "after {seen1} violations: {kept1} kept, {exes1} executables; RSS +{:.1} MiB; database {} KiB",
            rss1.saturating_sub(rss0) as f64 / 1024.0,
            db1 / 1024
        );
        flood(&agent, &key, first, events, paths).await?;
        let secs = t.elapsed().as_secs_f64();
        let (kept, seen, exes) = recorded(&agent, &key);
        let rss = vm_rss_kib();
        let db2 = dir_bytes(&db);
        let evicted = agent
            .durable_profiles()
            .into_iter()
            .find(|p| p.key == key)
            .map(|p| p.violations.evicted)
            .unwrap_or(0);
        println!(
            "after {seen} violations ({secs:.1} s, {:.0} violation events/s): {kept} kept, {evicted} evicted, \
             {exes} executables; RSS +{:.1} MiB (+{:.1} MiB over the first 1,000), peak {} MiB; \
             database {} KiB (+{} KiB over the first 1,000)",
            seen as f64 / secs,
            rss.saturating_sub(rss0) as f64 / 1024.0,
            rss.saturating_sub(rss1) as f64 / 1024.0,
            vm_hwm_kib() / 1024,
            db2 / 1024,
            db2.saturating_sub(db1) / 1024,
        );
        agent.shutdown().await?;
        Ok(())
    })
}
