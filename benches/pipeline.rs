//! Event throughput of the whole agent against the wire: the pipeline next to a
//! plain tonic client that fully decodes every frame, on the same stored frames,
//! as a ratio measured in one run.
//!
//! Method. The feed (`wire::feed`: 1,000 containers with full pod info, a
//! GetDebug dump of every container's baseline, 1,000,000 exec/exit events of
//! 1.2-1.7 KB with a parent, exits as often as execs, about one new executable
//! per 1,000 execs, the last event the exec of a new executable) is generated
//! and encoded once, before any clock starts, into length-delimited frames. A
//! server (`wire::server`) streams the stored bytes without re-encoding them,
//! so each consumer is bounded only by its own work. Each consumer gets its own
//! fresh server:
//! - pipeline: the real agent (snapshot source `debug-api`, a fresh sled
//!   directory), from `Agent::start` until the last event's executable is
//!   durable in its learner's profile (what "learned" means to the agent);
//! - raw: a tonic client of the generated API that calls GetDebug, then
//!   GetEvents, decodes every frame into the prost types and drops it, until it
//!   has all events.
//!
//! The server runs in this process on its own thread (a current-thread tokio
//! runtime), so its CPU is measured apart (`RUSAGE_THREAD`) and the consumer's
//! CPU is the process's minus the server's. RSS at the start includes the
//! stored feed; growth is the peak (VmHWM) above it, and the RSS at the end
//! above it.
//!
//! Run: `cargo bench --bench pipeline`. Environment: `PIPELINE_BENCH_EVENTS`
//! (default 1,000,000), `PIPELINE_BENCH_CONTAINERS` (1,000),
//! `PIPELINE_BENCH_LIVE` (processes alive before exits start, default 5,000;
//! `700000` is the lagging-exits variant), `PIPELINE_BENCH_ONLY=pipeline|raw`
//! (one consumer only, e.g. under a profiler), `PIPELINE_BENCH_HOOK_EVENTS=1`
//! (every exec also brings the agent's two observe-policy events, kprobe before
//! and tracepoint after: the ingest cost of the hook views; the pipeline must
//! then also tie them, the raw client decodes them).
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tetragon_learner::agent::Agent;
use tetragon_learner::agent::AgentConfig;
use tetragon_learner::cli::run_cmd::RunArgs;
use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::snapshot::debug_api::dump_request;
use tetragon_learner::tetragon::client::{client, connect};
use tetragon_learner::tetragon::connection::actor::events_request;
use tokio_stream::StreamExt;

mod common;
mod wire;

use common::{cpu_time, reset_peak_rss, vm_hwm_kib, vm_rss_kib};
use wire::feed::{Feed, FeedParams};
use wire::server::WireServer;

// The binary's allocator (src/main.rs), for both consumers.
#[global_allocator]
static GLOBAL: tetragon_learner::GlobalAllocator = tetragon_learner::GLOBAL_ALLOCATOR;

/// Give up on a run that does not finish within this long.
const RUN_TIMEOUT: Duration = Duration::from_secs(1_800);

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}

fn main() -> BenchResult<()> {
    // As the binary does (src/main.rs). SAFETY: no other thread runs yet.
    unsafe { tetragon_learner::tune_allocator() };
    let params = FeedParams {
        events: env_or("PIPELINE_BENCH_EVENTS", 1_000_000u64).max(1),
        containers: env_or("PIPELINE_BENCH_CONTAINERS", 1_000usize).max(1),
        live: env_or("PIPELINE_BENCH_LIVE", 5_000usize),
        hook_events: env_or("PIPELINE_BENCH_HOOK_EVENTS", 0u8) == 1,
    };
    let only = std::env::var("PIPELINE_BENCH_ONLY").unwrap_or_default();
    println!(
        "pipeline bench (wire-speed reference); load average {}",
        load_average()
    );
    let t0 = Instant::now();
    let feed = Arc::new(wire::feed::build(params));
    println!(
        "feed: {} containers, GetDebug dump of {} processes ({} KiB), {} events ({} execs, {} exits, \
         {} alive at the end, at most {} alive before exits start), {:.0} bytes/event on average \
         ({}-{}), {} executables to learn; {} MiB stored, built and encoded once in {:.1} s; \
         RSS now {} MiB; observe-policy events: {}",
        params.containers,
        feed.snapshot_processes,
        feed.debug.len() / 1024,
        feed.events.len(),
        feed.execs,
        feed.exits,
        feed.alive_at_end,
        params.live,
        feed.mean_event_bytes(),
        feed.min_event_bytes,
        feed.max_event_bytes,
        feed.expected_executables,
        feed.stored.len() >> 20,
        t0.elapsed().as_secs_f64(),
        vm_rss_kib() / 1024,
        if params.hook_events { "2 per exec" } else { "none" }
    );
    tetragon_learner::cli::actor_system().block_on(async move {
        let dir = tempfile::Builder::new()
            .prefix("tetragon-learner-bench")
            .tempdir()?;
        let pipe = if only.is_empty() || only == "pipeline" {
            let m = run_pipeline(dir.path(), feed.clone()).await?;
            m.print("pipeline (agent)");
            Some(m)
        } else {
            None
        };
        let raw = if only.is_empty() || only == "raw" {
            let m = run_raw(dir.path(), feed.clone()).await?;
            m.print("raw full-decode client");
            Some(m)
        } else {
            None
        };
        if let (Some(pipe), Some(raw)) = (&pipe, &raw) {
            println!(
                "ratio pipeline/raw: {:.2} (events/s; target >= 1.0, never below 0.8); \
                 CPU per event {:.2}x the raw client's; load average {}",
                pipe.events_per_sec() / raw.events_per_sec(),
                pipe.cpu_ns_per_event() / raw.cpu_ns_per_event(),
                load_average()
            );
        }
        Ok(())
    })
}

struct Measured {
    events: u64,
    wall: Duration,
    /// Whole process CPU during the run.
    process_cpu: Duration,
    /// The server thread's CPU during the run.
    server_cpu: Duration,
    rss_at_start_kib: u64,
    peak_kib: u64,
    rss_at_end_kib: u64,
    /// What the consumer ended with, for the sanity line.
    detail: String,
}

impl Measured {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }

    fn consumer_cpu(&self) -> Duration {
        self.process_cpu.saturating_sub(self.server_cpu)
    }

    fn cpu_ns_per_event(&self) -> f64 {
        self.consumer_cpu().as_nanos() as f64 / self.events.max(1) as f64
    }

    fn print(&self, name: &str) {
        println!(
            "{name}: {} events in {:.2} s = {:.0} events/s; CPU {:.2} s = {:.2} us/event ({:.2} cores \
             busy); server thread {:.2} s; RSS at start {} MiB (stored feed included), growth: \
             peak +{} MiB, at the end +{} MiB; {}",
            self.events,
            self.wall.as_secs_f64(),
            self.events_per_sec(),
            self.consumer_cpu().as_secs_f64(),
            self.cpu_ns_per_event() / 1_000.0,
            self.consumer_cpu().as_secs_f64() / self.wall.as_secs_f64(),
            self.server_cpu.as_secs_f64(),
            self.rss_at_start_kib / 1024,
            self.peak_kib.saturating_sub(self.rss_at_start_kib) / 1024,
            self.rss_at_end_kib.saturating_sub(self.rss_at_start_kib) / 1024,
            self.detail,
        );
    }
}

/// Sum of `tetragon_learner_events_total{kind=...}`: what the ingester handled.
fn events_total(rendered: &str) -> u64 {
    rendered
        .lines()
        .filter(|l| l.starts_with("tetragon_learner_events_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The agent as `tetragon-learner run` configures it with its defaults (tick,
/// checkpoint interval, process table cap, ...), given only what a DaemonSet
/// sets: the address, the database, the snapshot source; the dump's size and
/// time limits are raised for the generated dump. (`TETRAGON_LEARNER_*`
/// variables in the environment still apply, as they would to `run`.)
fn run_config(address: &str, db: &Path) -> BenchResult<AgentConfig> {
    #[derive(clap::Parser)]
    struct Run {
        #[command(flatten)]
        args: RunArgs,
    }
    let db = db.to_str().ok_or("the bench directory is not UTF-8")?;
    let run = Run::try_parse_from([
        "run",
        "--tetragon-address",
        address,
        "--db",
        db,
        "--snapshot-source",
        "debug-api",
        "--timeout",
        "120s",
        "--max-message-size",
        "1073741824",
    ])?;
    Ok(run.args.agent_config())
}

async fn run_pipeline(dir: &Path, feed: Arc<Feed>) -> BenchResult<Measured> {
    let server = WireServer::start(&dir.join("pipeline.sock"), feed.clone())?;
    let cfg = run_config(&server.address.to_string(), &dir.join("db"))?;
    let (ns, workload, container, binary) = feed.last.clone();
    let key = LearnerKey::new(&ns, "Deployment", &workload, &container);

    reset_peak_rss();
    let rss_at_start_kib = vm_rss_kib();
    let server_cpu0 = server.cpu().await;
    let cpu0 = cpu_time(libc::RUSAGE_SELF);
    let start = Instant::now();
    let agent = Agent::start(cfg).await?;
    loop {
        let learned = agent
            .durable
            .read()
            .get(&key)
            .is_some_and(|p| p.executables.contains_key(&binary));
        if learned {
            break;
        }
        if start.elapsed() > RUN_TIMEOUT {
            return Err(format!(
                "the agent had not learned {binary:?} for {key} after {RUN_TIMEOUT:?}; \
                 it handled {} events",
                events_total(&agent.metrics.render())
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let wall = start.elapsed();
    let process_cpu = cpu_time(libc::RUSAGE_SELF).saturating_sub(cpu0);
    let server_cpu = server.cpu().await.saturating_sub(server_cpu0);
    let peak_kib = vm_hwm_kib();
    let rss_at_end_kib = vm_rss_kib();
    let handled = events_total(&agent.metrics.render());
    agent.shutdown().await?;
    let profiles = agent.durable_profiles();
    let executables: usize = profiles.iter().map(|p| p.executables.len()).sum();
    server.stop();
    let detail = format!(
        "the ingester handled {handled} events; after shutdown {} profiles (expected {}), \
         {executables} executables (expected {})",
        profiles.len(),
        feed.expected_profiles,
        feed.expected_executables
    );
    if profiles.len() != feed.expected_profiles || executables != feed.expected_executables {
        return Err(format!("the agent did not learn the feed: {detail}").into());
    }
    Ok(Measured {
        events: feed.events.len() as u64,
        wall,
        process_cpu,
        server_cpu,
        rss_at_start_kib,
        peak_kib,
        rss_at_end_kib,
        detail,
    })
}

async fn run_raw(dir: &Path, feed: Arc<Feed>) -> BenchResult<Measured> {
    let server = WireServer::start(&dir.join("raw.sock"), feed.clone())?;
    let wanted = feed.events.len() as u64;

    reset_peak_rss();
    let rss_at_start_kib = vm_rss_kib();
    let server_cpu0 = server.cpu().await;
    let cpu0 = cpu_time(libc::RUSAGE_SELF);
    let start = Instant::now();
    let channel = connect(&server.address, Duration::from_secs(5)).await?;
    let mut c = client(channel, 1 << 30);
    // Decoded by tonic/prost into the full types, then dropped.
    let dump = c.get_debug(dump_request()).await?.into_inner();
    drop(dump);
    let mut stream = c.get_events(events_request(&[])).await?.into_inner();
    let mut received = 0u64;
    while received < wanted {
        match tokio::time::timeout_at((start + RUN_TIMEOUT).into(), stream.next()).await {
            Ok(Some(Ok(ev))) => {
                drop(ev);
                received += 1;
            }
            Ok(Some(Err(status))) => return Err(format!("GetEvents failed: {status}").into()),
            Ok(None) => return Err("GetEvents ended early".into()),
            Err(_) => {
                return Err(format!("raw client: {received} events after {RUN_TIMEOUT:?}").into())
            }
        }
    }
    let wall = start.elapsed();
    let process_cpu = cpu_time(libc::RUSAGE_SELF).saturating_sub(cpu0);
    let server_cpu = server.cpu().await.saturating_sub(server_cpu0);
    let peak_kib = vm_hwm_kib();
    let rss_at_end_kib = vm_rss_kib();
    drop(stream);
    drop(c);
    server.stop();
    Ok(Measured {
        events: received,
        wall,
        process_cpu,
        server_cpu,
        rss_at_start_kib,
        peak_kib,
        rss_at_end_kib,
        detail: "GetDebug dump decoded too".to_string(),
    })
}
