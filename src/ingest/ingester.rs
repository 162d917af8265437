//! The EventIngester actor: turns events and snapshots into facts (pure
//! `facts`), keeps the live process table, and routes observations to one
//! Learner actor per key, created on demand. It never touches the disk: sends
//! to learners are awaited (bounded mailboxes = backpressure), and the
//! Checkpointer does the I/O.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::learner::actor::{
    Apply, Drain, DrainError, GetProfile, LearnerActor, Operate, OperateError, OperateOn,
};
use crate::learner::config::LearnerConfig;
use crate::learner::key::LearnerKey;
use crate::learner::machine::LearnerInput;
use crate::learner::observation::FactSource;
use crate::learner::profile::{PartialReason, Profile};
use crate::snapshot::builder::SnapshotTaken;
use crate::snapshot::model::SnapshotSource;
use crate::store::checkpointer::Checkpointer;
use crate::telemetry::events::{
    Emit, EventReceived, EventSkipped, LearnerCreated, MissedExecs, ProcessTableEvicted,
    TetragonDroppedEvents,
};
use crate::telemetry::metrics::Metrics;
use crate::tetragon::connection::messages::EventBatch;
use crate::tetragon::proto::{get_events_response::Event, GetEventsResponse};
use crate::time::now_ms;

use super::facts::{fact_from_event, learnable, Fact, IngestConfig};
use super::process_table::{ProcessTable, SnapshotEntry};

mod backfill;

/// Exec events of processes that started this shortly before a snapshot may
/// still be on their way; such processes are judged at the next snapshot.
const IN_FLIGHT_MARGIN_MS: u64 = 2_000;

/// Shutdown: stop taking events and snapshots, write every learner durably and
/// stop it, then stop the ingester.
#[derive(Message)]
#[rtype(result = "Result<(), LearnersNotWritten>")]
pub struct StopAll;

/// Learners whose last write failed during `StopAll` (each names its key).
#[derive(Debug, thiserror::Error)]
#[error("{} learners could not be written: {}", .0.len(), join(.0))]
pub struct LearnersNotWritten(pub Vec<DrainError>);

fn join(errors: &[DrainError]) -> String {
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    texts.join("; ")
}

/// Every learner's current in-memory profile (not necessarily durable yet).
#[derive(Message)]
#[rtype(result = "Vec<Profile>")]
pub struct CurrentProfiles;

pub struct EventIngester {
    cfg: IngestConfig,
    learner_cfg: LearnerConfig,
    checkpointer: Addr<Checkpointer>,
    metrics: Arc<Metrics>,
    learners: HashMap<LearnerKey, Addr<LearnerActor>>,
    table: ProcessTable,
    tick: Duration,
    /// Keys loaded from the database: their history started before this run.
    resumed: std::collections::HashSet<LearnerKey>,
    first_snapshot_done: bool,
    /// When the previous snapshot was taken (to judge which execs were missed).
    last_snapshot_at: Option<crate::time::UnixMillis>,
    /// Set by `StopAll`: later events and snapshots are dropped, so nothing can
    /// create a fresh learner over a drained one.
    stopping: bool,
    backfill: backfill::BackfillMemory,
}

/// Inputs per learner, in order, for one delivery.
type Delivery = BTreeMap<LearnerKey, (Addr<LearnerActor>, Vec<LearnerInput>)>;

impl EventIngester {
    pub fn new(
        cfg: IngestConfig,
        learner_cfg: LearnerConfig,
        checkpointer: Addr<Checkpointer>,
        metrics: Arc<Metrics>,
        resumed: Vec<Profile>,
        tick: Duration,
    ) -> Self {
        let resumed_keys = resumed.iter().map(|p| p.key.clone()).collect();
        let mut me = Self {
            table: ProcessTable::with_cap(cfg.max_live_processes),
            cfg,
            learner_cfg,
            checkpointer,
            metrics,
            learners: HashMap::new(),
            tick,
            resumed: resumed_keys,
            first_snapshot_done: false,
            last_snapshot_at: None,
            stopping: false,
            backfill: backfill::BackfillMemory::default(),
        };
        for p in resumed {
            me.spawn_learner(p);
        }
        me
    }

    fn spawn_learner(&mut self, profile: Profile) -> Addr<LearnerActor> {
        let key = profile.key.clone();
        let addr = LearnerActor::new(
            profile,
            self.learner_cfg,
            self.checkpointer.clone(),
            self.metrics.clone(),
            self.tick,
        )
        .start();
        self.learners.insert(key, addr.clone());
        addr
    }

    /// The learner for `key`, created when first seen. A learner born from a
    /// snapshot belongs to a container that ran before the agent saw it: its
    /// past is unknown, so it is partial.
    fn learner(&mut self, key: &LearnerKey, source: FactSource) -> (Addr<LearnerActor>, bool) {
        if let Some(a) = self.learners.get(key) {
            return (a.clone(), false);
        }
        let mut profile = Profile::new(key.clone(), now_ms());
        if source != FactSource::Event {
            profile
                .partial_reasons
                .insert(PartialReason::StartedBeforeAgent);
        }
        LearnerCreated {
            key,
            source: &source,
        }
        .emit(&self.metrics);
        (self.spawn_learner(profile), true)
    }

    /// Counts (and, the first time, logs) what the process table evicted.
    fn count_evictions(&mut self) {
        ProcessTableEvicted {
            evicted: self.table.take_evicted(),
            cap: self.cfg.max_live_processes,
        }
        .emit(&self.metrics);
    }

    /// Queues `input` for the learner of `key` (created on demand).
    fn push(
        &mut self,
        out: &mut Delivery,
        key: &LearnerKey,
        input: LearnerInput,
        source: FactSource,
    ) {
        if let Some((_, inputs)) = out.get_mut(key) {
            inputs.push(input);
            return;
        }
        let (addr, _) = self.learner(key, source);
        out.insert(key.clone(), (addr, vec![input]));
    }
}

fn event_kind(ev: &GetEventsResponse) -> &'static str {
    match ev.event {
        Some(Event::ProcessExec(_)) => "process_exec",
        Some(Event::ProcessExit(_)) => "process_exit",
        Some(Event::RateLimitInfo(_)) => "rate_limit_info",
        None => "other",
    }
}

async fn deliver(out: Delivery) {
    for (_, (addr, inputs)) in out {
        // Awaiting a bounded mailbox is the backpressure (nothing is shed); an
        // error means the learner stopped (shutdown), and nobody is left to tell.
        let _ = addr.send(Apply(inputs)).await;
    }
}

impl Actor for EventIngester {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
    }
}

impl Handler<EventBatch> for EventIngester {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: EventBatch, _: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        let now = now_ms();
        let mut out = Delivery::new();
        for ev in &msg.0 {
            EventReceived {
                kind: event_kind(ev),
            }
            .emit(&self.metrics);
            match fact_from_event(ev, now, &self.cfg) {
                Fact::Exec(l) => {
                    self.table
                        .exec(l.exec_id.clone(), l.key.clone(), l.link.clone(), now);
                    self.push(
                        &mut out,
                        &l.key,
                        LearnerInput::Observe(l.observation),
                        FactSource::Event,
                    );
                }
                Fact::Exit { exec_id } => {
                    self.table.exit(&exec_id);
                }
                Fact::Dropped { count } => {
                    TetragonDroppedEvents { count }.emit(&self.metrics);
                    let keys: Vec<LearnerKey> = self.learners.keys().cloned().collect();
                    for key in keys {
                        self.push(
                            &mut out,
                            &key,
                            LearnerInput::MarkPartial(PartialReason::EventsDropped),
                            FactSource::Event,
                        );
                    }
                }
                Fact::Skip(reason) => {
                    EventSkipped {
                        reason: reason.label(),
                    }
                    .emit(&self.metrics);
                }
            }
        }
        self.count_evictions();
        AtomicResponse::new(Box::pin(deliver(out).into_actor(self)))
    }
}

impl Handler<SnapshotTaken> for EventIngester {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: SnapshotTaken, _: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        let now = now_ms();
        let source = match msg.0.source {
            SnapshotSource::ExportLog => FactSource::ExportLog,
            _ => FactSource::Snapshot,
        };
        let mut learnables = Vec::new();
        let mut entries = Vec::new();
        let mut containers: BTreeMap<LearnerKey, std::collections::BTreeSet<String>> =
            BTreeMap::new();
        for p in &msg.0.processes {
            match learnable(p, source, now, &self.cfg) {
                Ok(l) => {
                    if let Some(c) = &p.container {
                        containers
                            .entry(l.key.clone())
                            .or_default()
                            .insert(c.id.clone());
                    }
                    entries.push(SnapshotEntry {
                        exec_id: l.exec_id.clone(),
                        key: l.key.clone(),
                        link: l.link.clone(),
                        start: p
                            .start_time
                            .as_deref()
                            .and_then(crate::time::parse_rfc3339_ms),
                    });
                    learnables.push(l);
                }
                Err(reason) => EventSkipped {
                    reason: reason.label(),
                }
                .emit(&self.metrics),
            }
        }
        let taken_at = crate::time::parse_rfc3339_ms(&msg.0.taken_at).unwrap_or(now);
        let missed = self.table.reconcile(
            entries,
            self.last_snapshot_at,
            taken_at,
            IN_FLIGHT_MARGIN_MS,
        );
        self.last_snapshot_at = Some(taken_at);
        self.count_evictions();
        let before = self.learners.len();
        let mut out = Delivery::new();
        if !self.first_snapshot_done {
            // The first snapshot of this run shows containers that were running
            // before the agent connected, even those whose learner an early event
            // created a moment ago: their past is unknown. Marked before the
            // observations, in the same delivery.
            self.first_snapshot_done = true;
            let keys: std::collections::BTreeSet<LearnerKey> =
                learnables.iter().map(|l| l.key.clone()).collect();
            let fresh: Vec<LearnerKey> = keys
                .into_iter()
                .filter(|k| !self.resumed.contains(k))
                // Every instance started inside the backfilled history: seen
                // from its start.
                .filter(|k| {
                    !containers
                        .get(k)
                        .is_some_and(|c| self.backfill.saw_all_from_start(c))
                })
                .collect();
            for key in fresh {
                self.push(
                    &mut out,
                    &key,
                    LearnerInput::MarkPartial(PartialReason::StartedBeforeAgent),
                    source,
                );
            }
        }
        MissedExecs {
            learners: missed.len(),
        }
        .emit(&self.metrics);
        for key in &missed {
            self.push(
                &mut out,
                key,
                LearnerInput::MarkPartial(PartialReason::EventsDropped),
                source,
            );
        }
        for l in learnables {
            self.push(
                &mut out,
                &l.key,
                LearnerInput::Observe(l.observation),
                source,
            );
        }
        tracing::info!(
            source = msg.0.source.as_str(),
            processes = msg.0.processes.len(),
            learners = self.learners.len(),
            created = self.learners.len() - before,
            "snapshot ingested"
        );
        AtomicResponse::new(Box::pin(deliver(out).into_actor(self)))
    }
}

impl Handler<OperateOn> for EventIngester {
    type Result = ResponseFuture<Result<Profile, OperateError>>;
    fn handle(&mut self, msg: OperateOn, _: &mut Self::Context) -> Self::Result {
        let Some(addr) = self.learners.get(&msg.key).cloned() else {
            let key = msg.key.to_string();
            return Box::pin(async move { Err(OperateError::NoLearner(key)) });
        };
        Box::pin(async move {
            addr.send(Operate(msg.input))
                .await
                .map_err(|e| OperateError::NotDurable(e.into()))?
        })
    }
}

impl Handler<CurrentProfiles> for EventIngester {
    type Result = ResponseFuture<Vec<Profile>>;
    fn handle(&mut self, _: CurrentProfiles, _: &mut Self::Context) -> Self::Result {
        let addrs: Vec<_> = self.learners.values().cloned().collect();
        Box::pin(async move {
            let mut out = Vec::new();
            for a in addrs {
                if let Ok(p) = a.send(GetProfile).await {
                    out.push(p);
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            out
        })
    }
}

impl Handler<StopAll> for EventIngester {
    type Result = AtomicResponse<Self, Result<(), LearnersNotWritten>>;
    fn handle(&mut self, _: StopAll, _: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        let addrs: Vec<_> = self.learners.drain().map(|(_, a)| a).collect();
        let drain = async move {
            // All at once: the Checkpointer writes them in a few group commits
            // instead of one flush per learner.
            let results = futures::future::join_all(addrs.iter().map(|a| a.send(Drain))).await;
            let failures: Vec<DrainError> = results
                .into_iter()
                .filter_map(|r| r.map_err(DrainError::from).and_then(|r| r).err())
                .collect();
            if failures.is_empty() {
                Ok(())
            } else {
                Err(LearnersNotWritten(failures))
            }
        };
        AtomicResponse::new(Box::pin(drain.into_actor(self).map(|res, _, ctx| {
            ctx.stop();
            res
        })))
    }
}
