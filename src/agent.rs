//! Wiring: load learners from sled, then snapshot, then stream. Starts the
//! actors and hands back what the shells (CLI, API, tests) need.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use parking_lot::RwLock;
use thiserror::Error;

use crate::backfill::position::decode_position;
use crate::backfill::{run_backfill, BackfillConfig, BackfillReport, BackfillSinks};
use crate::ingest::facts::IngestConfig;
use crate::ingest::ingester::{CurrentProfiles, EventIngester, StopAll};
use crate::learner::config::LearnerConfig;
use crate::learner::profile::Profile;
use crate::learner::state::LearnerState;
use crate::snapshot::builder::{SnapshotBuilder, SnapshotStatus};
use crate::snapshot::policy::SnapshotOptions;
use crate::store::checkpointer::{
    CheckpointError, Checkpointer, DurableView, FlushAll, Stop as StopCheckpointer,
};
use crate::store::{quarantine, Store, StoreError};
use crate::telemetry::events::{Emit, LearnersInState};
use crate::telemetry::metrics::Metrics;
use crate::tetragon::connection::actor::{
    ConnectionConfig, ConnectionStatus, Shutdown, TetragonConnection,
};
use crate::tetragon::observe::enforcing::OwnPolicies;
use crate::tetragon::observe::policy::HookViewChoice;
use crate::tetragon::observe::runner::{EnforcingWatch, HookViewStatus, ObserveConfig};
use crate::time::now_ms;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub db: PathBuf,
    pub quarantine_corrupt_db: bool,
    pub connection: ConnectionConfig,
    pub snapshot: SnapshotOptions,
    pub ingest: IngestConfig,
    pub learner: LearnerConfig,
    /// How often learners check their timers (learning -> stable).
    pub tick: Duration,
    /// How often lazy changes (counters, last seen) are written.
    pub lazy_checkpoint: Duration,
    /// Learn from the export log's history at start (`--backfill`); `None`: off.
    pub backfill: Option<BackfillConfig>,
    /// Which hook views the agent's observe policies report (`--hook-view`).
    pub hook_view: HookViewChoice,
    /// How often Tetragon's policy list is read: the observe policies are
    /// kept loaded, the agent's exported policies followed (their events,
    /// state and mode).
    pub policy_refresh: Duration,
}

#[derive(Debug, Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("final checkpoint failed: {0}; the last counters may be lost, learned executables were already durable")]
    FinalFlush(#[source] CheckpointError),
}

pub struct Agent {
    pub connection: Addr<TetragonConnection>,
    /// The connection's own thread: reading and decoding the event stream
    /// (and the HTTP/2 connection under it) runs beside the ingester and the
    /// learners instead of taking turns with them on the System thread.
    connection_thread: ArbiterHandle,
    pub ingester: Addr<EventIngester>,
    pub checkpointer: Addr<Checkpointer>,
    pub durable: DurableView,
    pub metrics: Arc<Metrics>,
    pub connection_status: Arc<RwLock<ConnectionStatus>>,
    pub snapshot_status: Arc<RwLock<SnapshotStatus>>,
    pub resumed: usize,
    /// For readers that want what is on disk (admin socket); the Checkpointer
    /// remains the only writer.
    pub store: Store,
    pub snapshot_options: SnapshotOptions,
    /// What the backfill at start contributed (`None`: off or failed).
    pub backfill: Option<BackfillReport>,
    /// Each hook view's observe policy: loaded, pending, or why not.
    pub hook_views: HookViewStatus,
    /// The agent's exported policies Tetragon lists on this node.
    pub own_policies: OwnPolicies,
    stop_observe: tokio::sync::watch::Sender<bool>,
}

/// Opens the store; a corrupt one is moved aside only when asked to.
pub fn open_store(db: &std::path::Path, quarantine_corrupt: bool) -> Result<Store, StoreError> {
    match Store::open(db) {
        Err(StoreError::Corrupt { path, reason }) if quarantine_corrupt => {
            let moved = quarantine(&path, now_ms())?;
            tracing::error!(path = %path.display(), moved_to = %moved.display(), reason = %reason,
                "CORRUPT DATABASE MOVED ASIDE: starting with an empty database; learned state is in the moved directory");
            Store::open(db)
        }
        other => other,
    }
}

impl Agent {
    /// Must run inside an actix `System`.
    pub async fn start(cfg: AgentConfig) -> Result<Self, AgentError> {
        let metrics = Arc::new(Metrics::new());
        let store = open_store(&cfg.db, cfg.quarantine_corrupt_db)?;
        let loaded = {
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.load_all())
                .await
                .map_err(|e| StoreError::Io {
                    path: cfg.db.clone(),
                    reason: e.to_string(),
                })??
        };
        let resumed = loaded.len();
        tracing::info!(db = %cfg.db.display(), learners = resumed, "resumed learners from the database");
        let durable: DurableView = Arc::new(RwLock::new(
            loaded.iter().map(|p| (p.key.clone(), p.clone())).collect(),
        ));
        let checkpointer = Checkpointer::new(
            store.clone(),
            durable.clone(),
            metrics.clone(),
            cfg.lazy_checkpoint,
        )
        .start();
        let enforcing_modes = OwnPolicies::default();
        let (enforcing_names, followed_names) = tokio::sync::watch::channel(Vec::new());
        let ingester = EventIngester::new(
            cfg.ingest.clone(),
            cfg.learner,
            checkpointer.clone().recipient(),
            metrics.clone(),
            loaded,
            cfg.tick,
        )
        .with_enforcing(enforcing_modes.clone())
        .start();
        // The backfill runs to its end before the stream and the first
        // snapshot, not after: that snapshot decides which learners are
        // `started-before-agent`, and a container the backfill saw from its
        // start is not. It delays the stream by the read (a few hundred ms
        // for Tetragon's default 6 x 10 MB of log); what starts and ends in
        // that moment is in the log past the saved position, read at the next
        // start. Events are never lost to it: it reads to the end of the files.
        let backfill = match &cfg.backfill {
            Some(bf) => {
                backfill_at_start(bf, &store, &ingester, &checkpointer, &durable, &metrics).await
            }
            None => None,
        };
        let snapshot_status = Arc::new(RwLock::new(SnapshotStatus::default()));
        let snapshots = SnapshotBuilder::new(
            cfg.snapshot.clone(),
            ingester.clone().recipient(),
            metrics.clone(),
            snapshot_status.clone(),
        )
        .with_failures(ingester.clone().recipient())
        .start();
        let connection_status = Arc::new(RwLock::new(ConnectionStatus::default()));
        let mut connection_cfg = cfg.connection.clone();
        connection_cfg.followed_policies = Some(followed_names);
        let actor = TetragonConnection::new(
            connection_cfg,
            ingester.clone().recipient(),
            snapshots.recipient(),
            metrics.clone(),
            connection_status.clone(),
        );
        let connection_thread = Arbiter::new().handle();
        let connection = TetragonConnection::start_in_arbiter(&connection_thread, |_| actor);
        let hook_views = HookViewStatus::default();
        let own_policies = enforcing_modes.clone();
        let (stop_observe, stopped) = tokio::sync::watch::channel(false);
        actix::spawn(crate::tetragon::observe::runner::run(
            ObserveConfig {
                address: cfg.connection.address.clone(),
                choice: cfg.hook_view,
                connect_timeout: cfg.connection.connect_timeout,
                interval: cfg.policy_refresh,
            },
            hook_views.clone(),
            EnforcingWatch {
                modes: enforcing_modes,
                names: enforcing_names,
            },
            metrics.clone(),
            stopped,
        ));
        let agent = Self {
            connection,
            connection_thread,
            ingester,
            checkpointer,
            durable,
            metrics,
            connection_status,
            snapshot_status,
            resumed,
            store,
            snapshot_options: cfg.snapshot.clone(),
            backfill,
            hook_views,
            own_policies,
            stop_observe,
        };
        agent.spawn_learner_gauges();
        Ok(agent)
    }

    fn spawn_learner_gauges(&self) {
        let durable = self.durable.clone();
        let metrics = self.metrics.clone();
        actix::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let view = durable.read();
                for state in LearnerState::ALL {
                    let n = view.values().filter(|p| p.state == state).count();
                    LearnersInState {
                        state: state.as_str(),
                        count: n,
                    }
                    .emit(&metrics);
                }
            }
        });
    }

    /// The admin API's view of this agent.
    pub fn admin_state(&self) -> crate::api::admin::AdminState {
        crate::api::admin::AdminState {
            store: self.store.clone(),
            durable: self.durable.clone(),
            operate: self.ingester.clone().recipient(),
            snapshot: self.snapshot_options.clone(),
            connection_status: self.connection_status.clone(),
            snapshot_status: self.snapshot_status.clone(),
            policies: self.own_policies.clone(),
        }
    }

    /// What `/healthz`, `/readyz` and `/metrics` report on this agent.
    pub fn health_state(&self) -> crate::api::health::HealthState {
        crate::api::health::HealthState {
            metrics: self.metrics.clone(),
            connection: self.connection_status.clone(),
            snapshot: self.snapshot_status.clone(),
            storage: Some(self.store.storage().clone()),
            hook_views: Some(self.hook_views.clone()),
            policies: Some(self.own_policies.clone()),
        }
    }

    /// Profiles as they are on disk (what the agent may report as learned).
    pub fn durable_profiles(&self) -> Vec<Profile> {
        self.durable.read().values().cloned().collect()
    }

    pub async fn current_profiles(&self) -> Vec<Profile> {
        self.ingester
            .send(CurrentProfiles)
            .await
            .unwrap_or_default()
    }

    /// Drains in order: stop the stream (and wait until no event can arrive),
    /// write every learner durably and stop it, flush the rest, release sled.
    pub async fn shutdown(&self) -> Result<(), AgentError> {
        let _ = self.stop_observe.send(true);
        let _ = self.connection.send(Shutdown).await;
        self.connection_thread.stop();
        // Only logged: what failed here stays pending in the Checkpointer, and
        // the final flush below writes it.
        let drained = self.ingester.send(StopAll).await;
        let flushed = match self.checkpointer.send(FlushAll).await {
            // A learner whose last write failed stays pending in the Checkpointer,
            // which this flush wrote: everything is on disk after all.
            Ok(Ok(())) => {
                match drained {
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "some learners' last writes failed during the drain, but the final flush wrote them")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the learners could not be drained, but the final flush wrote what they had sent")
                    }
                    Ok(Ok(())) => {}
                }
                Ok(())
            }
            Ok(Err(e)) => Err(AgentError::FinalFlush(e)),
            Err(e) => Err(AgentError::FinalFlush(e.into())),
        };
        let _ = self.checkpointer.send(StopCheckpointer).await;
        flushed
    }
}

impl Drop for Agent {
    /// An agent dropped without `shutdown` (a test, an error path) must not
    /// leave its connection thread behind.
    fn drop(&mut self) {
        self.connection_thread.stop();
    }
}

/// Loads the stored position and runs the backfill; a failure is logged (the
/// agent runs on: the snapshot and the stream still teach).
async fn backfill_at_start(
    cfg: &BackfillConfig,
    store: &Store,
    ingester: &Addr<EventIngester>,
    checkpointer: &Addr<Checkpointer>,
    durable: &DurableView,
    metrics: &Arc<Metrics>,
) -> Option<BackfillReport> {
    let s = store.clone();
    let record = match tokio::task::spawn_blocking(move || s.backfill_position()).await {
        Ok(Ok(record)) => record,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the backfill position; backfill skipped");
            return None;
        }
        Err(e) => {
            tracing::error!(error = %e, "backfill position reader stopped; backfill skipped");
            return None;
        }
    };
    let stored = match record.as_deref().map(decode_position).transpose() {
        Ok(stored) => stored,
        Err(reason) => {
            tracing::error!(db = %store.path().display(), reason = %reason,
                "the backfill position record cannot be read; backfill skipped and the record left as it is (run the agent version that wrote it, or move the database aside)");
            return None;
        }
    };
    let sinks = BackfillSinks {
        ingester: ingester.clone().recipient(),
        flush: checkpointer.clone().recipient(),
        save: checkpointer.clone().recipient(),
        durable: durable.clone(),
        metrics: metrics.clone(),
    };
    match run_backfill(cfg, stored, &sinks).await {
        Ok(report) => Some(report),
        Err(e) => {
            tracing::error!(error = %e, export_log = %cfg.export_log.display(), "backfill from the export log failed");
            None
        }
    }
}
