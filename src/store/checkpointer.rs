//! The Checkpointer: the only writer of sled. Learners send whole profiles; the
//! newest per key wins. Changes that must be durable before they are reported
//! (new executables, deviations, state changes) are written in group commits: all
//! that arrived while the previous flush ran go to disk in one batch and one
//! flush, off the actix arbiter. Counters and last-seen times are written lazily.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use parking_lot::RwLock;
use tokio::sync::oneshot;

use crate::learner::key::LearnerKey;
use crate::learner::machine::Durability;
use crate::learner::persist::{Persist, PersistError};
use crate::learner::profile::Profile;
use crate::telemetry::events::{CheckpointFailed, CheckpointFlushed, CheckpointLag, Emit};
use crate::telemetry::metrics::Metrics;
use crate::time::{now_ms, UnixMillis};

use super::error::StoreError;
use super::health::StorageState;

mod backfill;
use super::sled_store::Store;
pub use backfill::SaveBackfillPosition;

/// What is on disk: the agent reports (API, debug, logs of new learning) only
/// from here, so whatever it reports as learned survives a crash.
pub type DurableView = Arc<RwLock<BTreeMap<LearnerKey, Profile>>>;

/// Why a profile is not (yet) on disk. Cloned to every writer that waited for
/// the same group commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("checkpoint writer stopped: {0}")]
    WriterStopped(#[source] Arc<tokio::task::JoinError>),
    /// The Checkpointer stopped before the write was done (shutdown).
    #[error("checkpointer stopped")]
    Stopped,
    /// The Checkpointer could not be asked (its mailbox is closed).
    #[error(transparent)]
    Unreachable(#[from] MailboxError),
}

/// Write everything pending now (shutdown); resolves when durable.
#[derive(Message)]
#[rtype(result = "Result<(), CheckpointError>")]
pub struct FlushAll;

/// Stop after everything is written (shutdown); releases the database lock.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

pub struct Checkpointer {
    store: Store,
    durable: DurableView,
    metrics: Arc<Metrics>,
    pending: BTreeMap<LearnerKey, Profile>,
    /// Newest revision accepted per key.
    revisions: std::collections::HashMap<LearnerKey, u64>,
    /// Pending entries that must not wait for the lazy interval.
    urgent: bool,
    oldest_pending: Option<UnixMillis>,
    waiters: Vec<oneshot::Sender<Result<(), CheckpointError>>>,
    flushing: bool,
    /// A write failed: wait for the scheduled retry (backoff), whatever arrives.
    holdoff: bool,
    lazy_interval: Duration,
}

impl Checkpointer {
    pub fn new(
        store: Store,
        durable: DurableView,
        metrics: Arc<Metrics>,
        lazy_interval: Duration,
    ) -> Self {
        Self {
            store,
            durable,
            metrics,
            pending: BTreeMap::new(),
            revisions: std::collections::HashMap::new(),
            urgent: false,
            oldest_pending: None,
            waiters: Vec::new(),
            flushing: false,
            holdoff: false,
            lazy_interval,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.holdoff || (self.pending.is_empty() && self.waiters.is_empty()) {
            return;
        }
        if self.pending.is_empty() {
            // Nothing to write and no write in flight: everything sent before
            // is durable already. No empty commit (a sled flush and a marker
            // rename) for a waiter that polls.
            for w in std::mem::take(&mut self.waiters) {
                let _ = w.send(Ok(()));
            }
            self.urgent = false;
            return;
        }
        self.flushing = true;
        let batch: Vec<Profile> = std::mem::take(&mut self.pending).into_values().collect();
        let waiters = std::mem::take(&mut self.waiters);
        self.urgent = false;
        // Kept until the batch is on disk: the lag is measured from the oldest
        // change not yet written, across failed retries.
        let batch_oldest = self.oldest_pending.take();
        let store = self.store.clone();
        let to_write = batch.clone();
        let write = tokio::task::spawn_blocking(move || store.write_durably(&to_write));
        ctx.spawn(write.into_actor(self).map(move |res, act, ctx| {
            act.flushing = false;
            let res = match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(CheckpointError::Store(e)),
                Err(e) => Err(CheckpointError::WriterStopped(Arc::new(e))),
            };
            match &res {
                Ok(()) => {
                    let mut view = act.durable.write();
                    for p in batch {
                        view.insert(p.key.clone(), p);
                    }
                    drop(view);
                    let storage = act.store.storage();
                    let recovered = match storage.state() {
                        StorageState::Failing {
                            since, failures, ..
                        } => Some((now_ms().saturating_sub(since), failures)),
                        _ => None,
                    };
                    CheckpointFlushed { recovered }.emit(&act.metrics);
                    storage.set_state(storage.state().on_success());
                }
                Err(e) => {
                    // Keep what failed, unless a newer version arrived meanwhile.
                    for p in batch {
                        act.pending.entry(p.key.clone()).or_insert(p);
                    }
                    act.urgent = true;
                    act.oldest_pending = match (batch_oldest, act.oldest_pending) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b).or(Some(now_ms())),
                    };
                    act.on_write_failure(e, ctx);
                }
            }
            act.update_lag();
            for w in waiters {
                let _ = w.send(res.clone());
            }
            if act.urgent && res.is_ok() {
                act.flush(ctx);
            }
        }));
    }

    /// A failed write: one log line per backoff step, a retry after it, and
    /// (once failures persist) a probe of whether the disk takes writes again.
    fn on_write_failure(&mut self, error: &CheckpointError, ctx: &mut Context<Self>) {
        let storage = self.store.storage().clone();
        let (state, after) = storage.state().on_failure(now_ms(), &error.to_string());
        if let StorageState::Failing {
            failures, since, ..
        } = &state
        {
            CheckpointFailed {
                error,
                failures: *failures,
                failing_for_ms: now_ms().saturating_sub(*since),
                retry_in_ms: u64::try_from(after.retry_in.as_millis()).unwrap_or(u64::MAX),
                pending: self.pending.len(),
            }
            .emit(&self.metrics);
        }
        storage.set_state(state);
        self.holdoff = true;
        ctx.run_later(after.retry_in, |act, ctx| {
            act.holdoff = false;
            act.flush(ctx);
        });
        if after.probe {
            let store = self.store.clone();
            let probe = tokio::task::spawn_blocking(move || store.probe_space());
            ctx.spawn(probe.into_actor(self).map(|res, act, _| {
                if !matches!(res, Ok(Ok(()))) {
                    return;
                }
                let storage = act.store.storage();
                let next = storage.state().on_probe_ok();
                if let StorageState::GaveUp { last_error, .. } = &next {
                    tracing::error!(error = %last_error, db = %act.store.path().display(),
                        "the disk takes writes again but the database still fails (sled keeps the error until it is reopened): exiting so the agent restarts and reopens it");
                }
                storage.set_state(next);
            }));
        }
    }

    fn update_lag(&self) {
        let lag = self
            .oldest_pending
            .map(|t| now_ms().saturating_sub(t))
            .unwrap_or(0);
        CheckpointLag { lag_ms: lag }.emit(&self.metrics);
    }
}

impl Actor for Checkpointer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        ctx.run_interval(self.lazy_interval, |act, ctx| {
            act.update_lag();
            act.flush(ctx);
        });
    }
}

/// A learner's write: the profile goes into the next group commit (`Flush`
/// waits for it), or the next lazy one.
impl Handler<Persist> for Checkpointer {
    type Result = ResponseFuture<Result<(), PersistError>>;

    fn handle(&mut self, msg: Persist, ctx: &mut Self::Context) -> Self::Result {
        let newest = self.revisions.entry(msg.profile.key.clone()).or_insert(0);
        if msg.revision >= *newest {
            *newest = msg.revision;
            self.oldest_pending.get_or_insert(now_ms());
            self.pending.insert(msg.profile.key.clone(), msg.profile);
        }
        if msg.durability < Durability::Flush {
            return Box::pin(async { Ok(()) });
        }
        self.urgent = true;
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        self.flush(ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or(Err(CheckpointError::Stopped))
                .map_err(PersistError::writer)
        })
    }
}

impl Handler<FlushAll> for Checkpointer {
    type Result = ResponseFuture<Result<(), CheckpointError>>;

    fn handle(&mut self, _: FlushAll, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        self.urgent = true;
        self.flush(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(CheckpointError::Stopped)) })
    }
}

impl Handler<Stop> for Checkpointer {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
