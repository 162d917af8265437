//! `tetragon-learner run`: the agent.
use crate::tetragon::observe::policy::HookViewChoice;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::agent::{Agent, AgentConfig};
use crate::api::admin;
use crate::api::health;
use crate::backfill::BackfillConfig;
use crate::ingest::facts::IngestConfig;
use crate::learner::config::LearnerConfig;
use crate::tetragon::connection::actor::ConnectionConfig;
use crate::tetragon::connection::machine::BackoffPolicy;

use super::agent_args::TetragonArgs;

/// `--backfill on|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub tetragon: TetragonArgs,
    /// Directory of the sled database (a hostPath or local volume in Kubernetes).
    #[arg(long, env = "TETRAGON_LEARNER_DB")]
    pub db: PathBuf,
    /// Move a corrupt database aside (timestamped) and start fresh, instead of failing.
    #[arg(long, env = "TETRAGON_LEARNER_QUARANTINE_CORRUPT_DB")]
    pub quarantine_corrupt_db: bool,
    /// `learning` becomes `stable` after this long without a new executable...
    #[arg(long, env = "TETRAGON_LEARNER_STABILITY_WINDOW", default_value = "30m", value_parser = duration)]
    pub stability_window: Duration,
    /// ...and at least this long after learning started.
    #[arg(long, env = "TETRAGON_LEARNER_MIN_LEARNING", default_value = "1h", value_parser = duration)]
    pub min_learning: Duration,
    /// Re-snapshot this often to repair events Tetragon dropped (0 disables).
    #[arg(long, env = "TETRAGON_LEARNER_RESNAPSHOT_INTERVAL", default_value = "10m", value_parser = duration)]
    pub resnapshot_interval: Duration,
    /// Snapshot this long after connecting when no event arrives (an idle node).
    #[arg(long, env = "TETRAGON_LEARNER_SNAPSHOT_GRACE", default_value = "2s", value_parser = duration)]
    pub snapshot_grace: Duration,
    /// Longest wait between reconnection attempts.
    #[arg(long, env = "TETRAGON_LEARNER_BACKOFF_CAP", default_value = "2m", value_parser = duration)]
    pub backoff_cap: Duration,
    /// A profile keeps at most this many executables (and deviations); beyond,
    /// it is marked partial: a container cannot grow the agent without bound.
    #[arg(long, env = "TETRAGON_LEARNER_MAX_EXECUTABLES_PER_PROFILE", default_value_t = crate::learner::config::DEFAULT_MAX_EXECUTABLES)]
    pub max_executables_per_profile: usize,
    /// Cap of the live process table; beyond it the oldest entries are evicted
    /// (counted in tetragon_learner_process_table_evictions_total), so lost
    /// exits cannot grow memory without limit.
    #[arg(long, env = "TETRAGON_LEARNER_MAX_LIVE_PROCESSES", default_value_t = crate::ingest::facts::DEFAULT_MAX_LIVE_PROCESSES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_live_processes: usize,
    /// Also learn processes outside pods, as one learner per node (kind Host).
    #[arg(long, env = "TETRAGON_LEARNER_LEARN_HOST_PROCESSES")]
    pub learn_host_processes: bool,
    /// Only learn these namespaces (comma-separated; default: all).
    #[arg(
        long,
        env = "TETRAGON_LEARNER_INCLUDE_NAMESPACES",
        value_delimiter = ','
    )]
    pub include_namespaces: Vec<String>,
    /// Never learn these namespaces (comma-separated).
    #[arg(
        long,
        env = "TETRAGON_LEARNER_EXCLUDE_NAMESPACES",
        value_delimiter = ','
    )]
    pub exclude_namespaces: Vec<String>,
    /// Serve the local admin API on this unix socket (profiles, status, snapshot,
    /// lock/unlock/reset; read by `debug --admin-socket` and `admin`).
    #[arg(long, env = "TETRAGON_LEARNER_ADMIN_SOCKET")]
    pub admin_socket: Option<PathBuf>,
    /// Serve /healthz, /readyz and /metrics here (e.g. 0.0.0.0:9090).
    #[arg(long, env = "TETRAGON_LEARNER_METRICS_ADDRESS")]
    pub metrics_address: Option<SocketAddr>,
    /// Longest time the drain on SIGTERM may take before the agent gives up
    /// (keep it below the pod's terminationGracePeriodSeconds).
    #[arg(long, env = "TETRAGON_LEARNER_SHUTDOWN_GRACE", default_value = "20s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// At start, learn from the history in Tetragon's export log (every exec
    /// and exit since Tetragon's most recent startup, rotated files included;
    /// then only what is new). Needs --export-log; skipped when it is not readable.
    #[arg(
        long,
        env = "TETRAGON_LEARNER_BACKFILL",
        value_enum,
        default_value = "on"
    )]
    pub backfill: Switch,
    /// How often counters and last-seen times are written (new executables are
    /// always written before they are reported).
    #[arg(long, env = "TETRAGON_LEARNER_CHECKPOINT_INTERVAL", default_value = "5s", value_parser = duration)]
    pub checkpoint_interval: Duration,
    /// Which hook views to learn through the agent's own observe-only Tetragon
    /// policies: all (opened: kprobe, else LSM; loaded: raw tracepoint), opened,
    /// loaded, or off (exported lists then hold only event paths: warned).
    #[arg(
        long,
        env = "TETRAGON_LEARNER_HOOK_VIEW",
        value_enum,
        default_value = "all"
    )]
    pub hook_view: HookViewChoice,
}

impl RunArgs {
    pub fn agent_config(&self) -> AgentConfig {
        AgentConfig {
            db: self.db.clone(),
            quarantine_corrupt_db: self.quarantine_corrupt_db,
            connection: ConnectionConfig {
                address: self.tetragon.tetragon_address.clone(),
                connect_timeout: self.tetragon.timeout,
                backoff: BackoffPolicy {
                    base: Duration::from_millis(500),
                    cap: self.backoff_cap,
                },
                grace: self.snapshot_grace,
                resnapshot_interval: (!self.resnapshot_interval.is_zero())
                    .then_some(self.resnapshot_interval),
                // A failed snapshot is retried after 30 s, or sooner when the
                // periodic re-snapshot is more frequent (0 disables that, not this).
                snapshot_retry: match self.resnapshot_interval {
                    d if d.is_zero() => Duration::from_secs(30),
                    d => d.min(Duration::from_secs(30)),
                },
                policy_names: self.hook_view.policy_names(),
                followed_policies: None,
            },
            snapshot: self.tetragon.snapshot_options(),
            ingest: IngestConfig {
                learn_host_processes: self.learn_host_processes,
                include_namespaces: self.include_namespaces.clone(),
                exclude_namespaces: self.exclude_namespaces.clone(),
                max_live_processes: self.max_live_processes,
                learn_from_exits: true,
            },
            learner: LearnerConfig {
                stability_window_ms: u64::try_from(self.stability_window.as_millis())
                    .unwrap_or(u64::MAX),
                min_learning_ms: u64::try_from(self.min_learning.as_millis()).unwrap_or(u64::MAX),
                max_executables: self.max_executables_per_profile,
            },
            tick: Duration::from_secs(1),
            lazy_checkpoint: self.checkpoint_interval,
            backfill: match (self.backfill, &self.tetragon.export_log) {
                (Switch::On, Some(path)) => Some(BackfillConfig::new(path.clone())),
                _ => None,
            },
            hook_view: self.hook_view,
            hook_view_interval: Duration::from_secs(60),
        }
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut signals =
        super::signals::ShutdownSignals::install().context("installing signal handlers")?;
    // Everything that can fail on the command line's account is checked before
    // the agent starts: a taken port or socket path stops it at once, cleanly.
    let metrics_listener = match args.metrics_address {
        Some(addr) => Some(health::bind(addr).await.with_context(|| {
            format!("cannot listen on --metrics-address {addr}; pick a free port")
        })?),
        None => None,
    };
    let admin_listener = match &args.admin_socket {
        Some(path) => Some(admin::bind(path).await?),
        None => None,
    };
    // Whatever the agent creates (database files, markers) is owner-only.
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(0o077) };
    // sled can hang or panic on a damaged database: open a copy in a child
    // process first, and quarantine the untouched original when asked to.
    {
        let db = args.db.clone();
        let quarantine = args.quarantine_corrupt_db;
        tokio::task::spawn_blocking(move || {
            crate::store::preflight::check_or_quarantine(
                &crate::store::preflight::Checker::current(),
                &db,
                quarantine,
                crate::time::now_ms(),
            )
        })
        .await
        .context("database check stopped")??;
    }
    let mut config = args.agent_config();
    if let Some(bf) = &config.backfill {
        if let Err(reason) = backfill_readable(&bf.export_log) {
            tracing::warn!(export_log = %bf.export_log.display(), reason = %reason,
                "backfill skipped: the export log is not readable (pass --backfill off to silence this)");
            config.backfill = None;
        }
    }
    let agent = Agent::start(config).await?;
    tracing::info!(
        tetragon = %args.tetragon.tetragon_address,
        db = %args.db.display(),
        resumed_learners = agent.resumed,
        "agent started"
    );
    if let Some(listener) = metrics_listener {
        let state = agent.health_state();
        tokio::spawn(async move {
            if let Err(e) = health::serve(listener, state).await {
                tracing::error!(error = %e, "health/metrics server stopped");
            }
        });
    }
    let admin = admin_listener.map(|listener| {
        let state = agent.admin_state();
        tokio::spawn(async move {
            if let Err(e) = admin::serve(listener, state).await {
                tracing::error!(error = %e, "admin socket server stopped");
            }
        })
    });
    let mut gave_up = agent.store.storage().gave_up();
    let signal = tokio::select! {
        signal = signals.wait() => signal,
        _ = gave_up.wait_for(|g| *g) => {
            // sled keeps a write error (ENOSPC) until the database is reopened:
            // a restart by the supervisor is the reopen. Learned state that
            // was reported is durable; the rest is re-learned from the snapshot.
            anyhow::bail!(
                "database {} kept failing writes after the disk took writes again; exiting so the agent is restarted and reopens it",
                args.db.display()
            );
        }
    };
    tracing::info!(
        signal,
        "shutting down: draining and writing the final checkpoint"
    );
    if let Some(task) = admin {
        task.abort();
        if let Some(path) = &args.admin_socket {
            let _ = std::fs::remove_file(path);
        }
    }
    match tokio::time::timeout(args.shutdown_grace, agent.shutdown()).await {
        Ok(result) => result?,
        Err(_) => anyhow::bail!(
            "shutdown did not finish within --shutdown-grace {:?}; executables already reported as learned are durable, counters since the last checkpoint may be lost",
            args.shutdown_grace
        ),
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Whether the export log (or a rotated sibling) can be listed and opened.
fn backfill_readable(path: &std::path::Path) -> Result<(), String> {
    use crate::snapshot::export_log::files::{list_file_set, open_all};
    let set = list_file_set(path)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no such file, and no rotated sibling".to_string())?;
    let (opened, _) = open_all(&set).map_err(|e| e.to_string())?;
    if opened.is_empty() {
        return Err("its files vanished while being opened".into());
    }
    Ok(())
}
