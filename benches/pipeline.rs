//! Event throughput of the whole pipeline (fake Tetragon -> gRPC -> connection
//! -> ingester -> learners) next to a raw decode-and-drop client on the same
//! feed, as a ratio measured in one run.
//!
//! Method. Each consumer gets its own fresh fake Tetragon serving the same
//! scenario (50 containers x 20 distinct executables, every exec followed by its
//! exit, a fixed `PIPELINE_BENCH_EXECS` execs, default 200,000 = 400,000
//! events). The events are prebuilt with `FakeNode` on the fake's thread before
//! the clock starts and served as a `FakeSource::Replay` with `rate_per_sec: 0`:
//! from the moment the consumer subscribes, the fake only publishes them (in
//! bursts, see `fake::feed::BURST`) and encodes them for the client. Like
//! Tetragon it drops events for a client that reads too slowly, so the figure is
//! what the consumer actually *received and processed* per second of wall time,
//! from the moment it starts connecting until the fake's activity is over and
//! every published event is either processed or counted as dropped by the fake.
//! The drops are printed for each consumer: a consumer with drops was the
//! bottleneck (its figure is its capacity); one without drops kept up with the
//! fake (its figure is a lower bound of its capacity, bounded by the fake's
//! publishing rate). Peak RSS includes the prebuilt feed, so the RSS when the
//! clock started and the growth during the run are printed too.
//!
//! The fake runs in this process but on its own OS thread (a current-thread
//! tokio runtime), so its CPU time is measured apart (`RUSAGE_THREAD`) and the
//! consumer's CPU is the process's minus the fake's. The consumer runs in an
//! actix System on a multi-threaded tokio runtime, as the CLI does. The
//! pipeline's count is the ingester's `tetragon_learner_events_total` (all
//! kinds), read from the agent's metrics; its snapshot source is `none` (the
//! event path only).
//!
//! Run: `cargo bench --bench pipeline` (`PIPELINE_BENCH_EXECS=50000` for a quick run).
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tetragon_learner::agent::Agent;
use tetragon_learner::cli::demo::demo_agent_config;
use tetragon_learner::fake::node::FakeNode;
use tetragon_learner::fake::replay::Replay;
use tetragon_learner::fake::scenario::{ContainerSpec, ExecSpec, Scenario};
use tetragon_learner::fake::state::FakeState;
use tetragon_learner::fake::{FakeSource, FakeTetragon};
use tetragon_learner::snapshot::policy::SourcePolicy;
use tetragon_learner::tetragon::address::TetragonAddress;
use tetragon_learner::tetragon::client::{client, connect};
use tetragon_learner::tetragon::connection::actor::events_request;
use tetragon_learner::tetragon::proto::get_events_response::Event;
use tetragon_learner::time::now_ms;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;

const CONTAINERS: usize = 50;
const EXECS_PER_CONTAINER: usize = 20;
/// Give up on a run that does not drain within this long.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

mod common;
use common::{cpu_time, reset_peak_rss, vm_hwm_kib, vm_rss_kib};

fn main() -> BenchResult<()> {
    let execs: u64 = std::env::var("PIPELINE_BENCH_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let scenario = scenario();
    println!(
        "pipeline bench: {CONTAINERS} containers x {EXECS_PER_CONTAINER} executables, \
         {execs} execs + exits = {} events per run, prebuilt before the clock starts and \
         replayed at rate 0 (as fast as possible)",
        execs * 2
    );
    println!(
        "method: each consumer on its own fresh fake; events/s = events the consumer \
         processed / wall time from connect until the fake is done and every published \
         event is processed or dropped; drops = the fake's dropped_for_slow_clients"
    );
    tetragon_learner::cli::actor_system().block_on(async move {
        let dir = tempfile::Builder::new()
            .prefix("tetragon-learner-bench")
            .tempdir()?;

        let raw = run_raw(dir.path(), &scenario, execs).await?;
        let raw_hwm = vm_hwm_kib();
        raw.print("raw decode-and-drop");

        let (pipe, profiles, executables) = run_pipeline(dir.path(), &scenario, execs).await?;
        let pipe_hwm = vm_hwm_kib();
        pipe.print("pipeline (agent)");

        println!(
            "ratio pipeline/raw: {:.3} (events/s), CPU per event {:.2}x",
            pipe.events_per_sec() / raw.events_per_sec(),
            pipe.consumer_cpu_ns_per_event() / raw.consumer_cpu_ns_per_event()
        );
        for (name, m) in [("raw", &raw), ("pipeline", &pipe)] {
            if m.dropped == 0 {
                println!(
                    "note: {name} had no drops: it kept up with the fake, so its events/s is the \
                     fake's publishing rate (a lower bound of its capacity); compare CPU per event"
                );
            }
        }
        println!(
            "peak RSS (VmHWM, whole process incl. the fake and its prebuilt feed): raw run {} MiB, \
             pipeline run {} MiB; RSS when the clock started (prebuilt feed in memory): {} / {} MiB; \
             growth during the run: {} / {} MiB",
            raw_hwm / 1024,
            pipe_hwm / 1024,
            raw.rss_at_start_kib / 1024,
            pipe.rss_at_start_kib / 1024,
            raw_hwm.saturating_sub(raw.rss_at_start_kib) / 1024,
            pipe_hwm.saturating_sub(pipe.rss_at_start_kib) / 1024,
        );
        println!(
            "sanity: {profiles} learned profiles (expected {CONTAINERS}), \
             {executables} durable executables (expected {})",
            CONTAINERS * EXECS_PER_CONTAINER
        );
        if profiles != CONTAINERS {
            return Err(format!("expected {CONTAINERS} profiles, got {profiles}").into());
        }
        Ok(())
    })
}

/// The node and its containers; the activity is prebuilt by `prebuilt_replay`.
fn scenario() -> Scenario {
    let containers = (0..CONTAINERS)
        .map(|i| ContainerSpec {
            namespace: "bench".to_string(),
            pod: format!("app-{i}-7c9d8b5f4-x2x9z"),
            workload: format!("app-{i}"),
            workload_kind: "Deployment".to_string(),
            labels: [("app".to_string(), format!("app-{i}"))].into(),
            container: "main".to_string(),
            expect_key: None,
            image: format!("registry.example/app-{i}:1.0"),
            running: vec![ExecSpec {
                binary: "/app/server".to_string(),
                ..Default::default()
            }],
            execs: (0..EXECS_PER_CONTAINER)
                .map(|j| ExecSpec {
                    binary: format!("/usr/bin/tool-{j}"),
                    arguments: format!("--check {j}"),
                    probe: j == 0,
                    ..Default::default()
                })
                .collect(),
        })
        .collect();
    Scenario {
        node_name: "bench-node".to_string(),
        kernel_threads: 4,
        host_processes: vec!["/usr/bin/kubelet".to_string()],
        containers,
        ..Default::default()
    }
}

/// The scenario's activity built offline, before any clock starts, with the
/// same `FakeNode` the fake's live scenario feed uses: `execs` execs round
/// robin over the containers' executables, each `process_exec` followed by its
/// `process_exit`. The startup is the node's procFS /proc scan. Served as a
/// `FakeSource::Replay` at rate 0, the fake only publishes and serves these.
fn prebuilt_replay(scenario: &Scenario, execs: u64) -> BenchResult<Replay> {
    let t0 = Instant::now();
    let boot = now_ms();
    let mut node = FakeNode::new(scenario, boot);
    let startup = node.startup_events(boot);
    let plan = scenario.exec_plan();
    let mut feed = Vec::with_capacity(2 * execs as usize);
    for step in 0..execs {
        let (ci, ei) = plan[(step % plan.len() as u64) as usize];
        let now = now_ms();
        let exec = node.exec(ci, &scenario.containers[ci].execs[ei], now);
        let id = match exec.event.as_ref() {
            Some(Event::ProcessExec(e)) => e.process.as_ref().map(|p| p.exec_id.clone()),
            _ => None,
        }
        .ok_or("FakeNode::exec built no process_exec")?;
        let exit = node
            .exit(&id, now)
            .ok_or("FakeNode::exit found no process")?;
        feed.push(exec);
        feed.push(exit);
    }
    println!(
        "prebuilt {} startup + {} feed events in {:.2} s",
        startup.len(),
        feed.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(Replay {
        node_name: node.node_name().to_string(),
        startup,
        feed,
        skipped_lines: 0,
    })
}

/// A fake Tetragon on its own thread and current-thread runtime.
struct Fake {
    address: TetragonAddress,
    state: Arc<FakeState>,
    done: Arc<AtomicBool>,
    /// CPU time of the fake's thread, on request.
    cpu: mpsc::Sender<oneshot::Sender<Duration>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fake {
    /// Builds the feed on the fake's thread (its allocations are then freed
    /// where they were made, not across glibc arenas), then serves it.
    fn start(socket: &Path, scenario: &Scenario, execs: u64) -> BenchResult<Self> {
        let listen = TetragonAddress::Unix(socket.to_path_buf());
        let scenario = scenario.clone();
        let done = Arc::new(AtomicBool::new(false));
        let done_in = done.clone();
        let (cpu_tx, mut cpu_rx) = mpsc::channel::<oneshot::Sender<Duration>>(4);
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fake-tetragon".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake runtime");
                rt.block_on(async move {
                    let replay = match prebuilt_replay(&scenario, execs) {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let source = FakeSource::Replay {
                        replay,
                        rate_per_sec: 0,
                        faults: Default::default(),
                        export_deny_namespaces: Vec::new(),
                    };
                    let mut fake = match FakeTetragon::start(&listen, source, None).await {
                        Ok(f) => f,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok((fake.address.clone(), fake.state.clone())));
                    // Everything here runs on this thread: RUSAGE_THREAD is the fake's CPU.
                    tokio::spawn(async move {
                        while let Some(reply) = cpu_rx.recv().await {
                            let _ = reply.send(cpu_time(libc::RUSAGE_THREAD));
                        }
                    });
                    tokio::select! {
                        () = fake.activity_done() => {
                            done_in.store(true, Ordering::SeqCst);
                            let _ = (&mut stop_rx).await;
                        }
                        _ = &mut stop_rx => {}
                    }
                    fake.stop().await;
                });
            })?;
        let (address, state) = ready_rx.recv()??;
        Ok(Self {
            address,
            state,
            done,
            cpu: cpu_tx,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    async fn cpu(&self) -> Duration {
        let (tx, rx) = oneshot::channel();
        if self.cpu.send(tx).await.is_err() {
            return Duration::ZERO;
        }
        rx.await.unwrap_or_default()
    }

    fn published(&self) -> u64 {
        self.state.counters.events_published.load(Ordering::SeqCst)
    }

    fn dropped(&self) -> u64 {
        self.state
            .counters
            .dropped_for_slow_clients
            .load(Ordering::SeqCst)
    }

    /// The fake is done and every event it published was received or dropped.
    fn drained(&self, received: u64) -> bool {
        self.done.load(Ordering::SeqCst) && received + self.dropped() >= self.published()
    }

    fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Measured {
    events: u64,
    published: u64,
    dropped: u64,
    wall: Duration,
    /// Whole process CPU during the run.
    process_cpu: Duration,
    /// The fake's thread CPU during the run.
    fake_cpu: Duration,
    /// When the fake finished publishing, from the start of the run.
    fake_wall: Duration,
    /// Resident memory when the clock started (the prebuilt feed included).
    rss_at_start_kib: u64,
}

impl Measured {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }

    fn consumer_cpu_ns_per_event(&self) -> f64 {
        self.process_cpu.saturating_sub(self.fake_cpu).as_nanos() as f64 / self.events as f64
    }

    fn print(&self, name: &str) {
        let consumer_cpu = self.process_cpu.saturating_sub(self.fake_cpu);
        println!(
            "{name}: {} events in {:.2} s = {:.0} events/s; dropped by the fake for this slow \
             client: {} of {} published ({:.1}%); fake published for {:.2} s ({:.0} events/s)",
            self.events,
            self.wall.as_secs_f64(),
            self.events_per_sec(),
            self.dropped,
            self.published,
            100.0 * self.dropped as f64 / self.published.max(1) as f64,
            self.fake_wall.as_secs_f64(),
            self.published as f64 / self.fake_wall.as_secs_f64(),
        );
        println!(
            "    CPU: consumer {:.2} s = {:.0} ns/event ({:.2} cores busy); fake thread {:.2} s = {:.0} ns/event",
            consumer_cpu.as_secs_f64(),
            self.consumer_cpu_ns_per_event(),
            consumer_cpu.as_secs_f64() / self.wall.as_secs_f64(),
            self.fake_cpu.as_secs_f64(),
            self.fake_cpu.as_nanos() as f64 / self.published.max(1) as f64,
        );
    }
}

/// Polls `received` until the fake is drained; returns the wall time and the
/// fake's publishing time, both from `start`.
async fn wait_drained(
    fake: &Fake,
    start: Instant,
    mut received: impl FnMut() -> u64,
) -> BenchResult<(Duration, Duration)> {
    let mut fake_wall = None;
    loop {
        if fake_wall.is_none() && fake.done.load(Ordering::SeqCst) {
            fake_wall = Some(start.elapsed());
        }
        if fake.drained(received()) {
            return Ok((
                start.elapsed(),
                fake_wall.unwrap_or_else(|| start.elapsed()),
            ));
        }
        if start.elapsed() > DRAIN_TIMEOUT {
            return Err(format!(
                "not drained after {DRAIN_TIMEOUT:?}: received {}, dropped {}, published {}",
                received(),
                fake.dropped(),
                fake.published()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn run_raw(dir: &Path, scenario: &Scenario, execs: u64) -> BenchResult<Measured> {
    let fake = Fake::start(&dir.join("raw.sock"), scenario, execs)?;
    reset_peak_rss();
    let rss_at_start_kib = vm_rss_kib();
    let count = Arc::new(AtomicU64::new(0));
    let fake_cpu0 = fake.cpu().await;
    let cpu0 = cpu_time(libc::RUSAGE_SELF);
    let start = Instant::now();
    let channel = connect(&fake.address, Duration::from_secs(5)).await?;
    let mut stream = client(channel, 16 * 1024 * 1024)
        .get_events(events_request())
        .await?
        .into_inner();
    let counter = count.clone();
    let reader = tokio::spawn(async move {
        // Decoded by tonic/prost into GetEventsResponse, then dropped.
        while let Some(item) = stream.next().await {
            if item.is_err() {
                break;
            }
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let (wall, fake_wall) = wait_drained(&fake, start, || count.load(Ordering::Relaxed)).await?;
    let process_cpu = cpu_time(libc::RUSAGE_SELF).saturating_sub(cpu0);
    let fake_cpu = fake.cpu().await.saturating_sub(fake_cpu0);
    let m = Measured {
        events: count.load(Ordering::Relaxed),
        published: fake.published(),
        dropped: fake.dropped(),
        wall,
        process_cpu,
        fake_cpu,
        fake_wall,
        rss_at_start_kib,
    };
    reader.abort();
    fake.stop();
    Ok(m)
}

/// Sum of `tetragon_learner_events_total{kind=...}`: what the ingester handled.
fn events_total(rendered: &str) -> u64 {
    rendered
        .lines()
        .filter(|l| l.starts_with("tetragon_learner_events_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn run_pipeline(
    dir: &Path,
    scenario: &Scenario,
    execs: u64,
) -> BenchResult<(Measured, usize, usize)> {
    let fake = Fake::start(&dir.join("pipeline.sock"), scenario, execs)?;
    reset_peak_rss();
    let rss_at_start_kib = vm_rss_kib();
    let mut cfg = demo_agent_config(fake.address.clone(), dir.join("db"));
    cfg.snapshot.policy = SourcePolicy::None;
    let fake_cpu0 = fake.cpu().await;
    let cpu0 = cpu_time(libc::RUSAGE_SELF);
    let start = Instant::now();
    let agent = Agent::start(cfg).await?;
    let metrics = agent.metrics.clone();
    let (wall, fake_wall) = wait_drained(&fake, start, || events_total(&metrics.render())).await?;
    let process_cpu = cpu_time(libc::RUSAGE_SELF).saturating_sub(cpu0);
    let fake_cpu = fake.cpu().await.saturating_sub(fake_cpu0);
    let m = Measured {
        events: events_total(&metrics.render()),
        published: fake.published(),
        dropped: fake.dropped(),
        wall,
        process_cpu,
        fake_cpu,
        fake_wall,
        rss_at_start_kib,
    };
    agent.shutdown().await?;
    let profiles = agent.durable_profiles();
    let executables = profiles.iter().map(|p| p.executables.len()).sum();
    fake.stop();
    Ok((m, profiles.len(), executables))
}
