//! The EventIngester actor: turns events and snapshots into facts (pure
//! `facts`), keeps the live process table, and routes observations to one
//! Learner actor per key, created on demand. It never touches the disk: sends
//! to learners are awaited (bounded mailboxes = backpressure), and the
//! Checkpointer does the I/O.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::api::metrics::Metrics;
use crate::learner::actor::{GetProfile, LearnerActor, MarkPartial, Observe, Operate, StopLearner};
use crate::learner::config::LearnerConfig;
use crate::learner::key::LearnerKey;
use crate::learner::machine::LearnerInput;
use crate::learner::observation::{FactSource, Observation};
use crate::learner::profile::{PartialReason, Profile};
use crate::snapshot::model::{ProcessSnapshot, SnapshotSource};
use crate::store::checkpointer::Checkpointer;
use crate::tetragon::proto::{get_events_response::Event, GetEventsResponse};
use crate::time::now_ms;

use super::facts::{fact_from_event, learnable, Fact, IngestConfig};
use super::process_table::ProcessTable;

/// Events from one read of the stream.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EventBatch(pub Vec<GetEventsResponse>);

/// A snapshot to learn from.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SnapshotTaken(pub ProcessSnapshot);

/// Operator command for one learner; creates nothing.
#[derive(Message)]
#[rtype(result = "Result<Profile, String>")]
pub struct OperateOn {
    pub key: LearnerKey,
    pub input: LearnerInput,
}

/// Shutdown: stop every learner, then the ingester.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAll;

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
}

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
            cfg,
            learner_cfg,
            checkpointer,
            metrics,
            learners: HashMap::new(),
            table: ProcessTable::default(),
            tick,
            resumed: resumed_keys,
            first_snapshot_done: false,
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
        tracing::info!(key = %key, source = ?source, "new learner");
        (self.spawn_learner(profile), true)
    }

    /// Groups observations per key, preserving order within a key.
    fn route(
        &mut self,
        facts: Vec<(LearnerKey, Observation)>,
    ) -> Vec<(Addr<LearnerActor>, Vec<Observation>, bool)> {
        let mut grouped: BTreeMap<LearnerKey, Vec<Observation>> = BTreeMap::new();
        for (k, o) in facts {
            grouped.entry(k).or_default().push(o);
        }
        grouped
            .into_iter()
            .map(|(k, obs)| {
                let source = obs.first().map(|o| o.source).unwrap_or(FactSource::Event);
                let (addr, created) = self.learner(&k, source);
                (addr, obs, created)
            })
            .collect()
    }

    fn mark_all_partial(&self, reason: PartialReason) {
        for addr in self.learners.values() {
            // Rare, tiny and idempotent: shedding it under a full mailbox is safe,
            // but count it.
            if addr.try_send(MarkPartial(reason)).is_err() {
                self.metrics.shed.inc();
            }
        }
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

async fn deliver(batches: Vec<(Addr<LearnerActor>, Vec<Observation>, bool)>) {
    for (addr, obs, _) in batches {
        // Awaiting a bounded mailbox is the backpressure; an error means the
        // learner stopped (shutdown), and there is nobody left to tell.
        let _ = addr.send(Observe(obs)).await;
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
        let now = now_ms();
        let mut learnables = Vec::new();
        for ev in &msg.0 {
            self.metrics.event(event_kind(ev));
            match fact_from_event(ev, now, &self.cfg) {
                Fact::Exec(l) => {
                    self.table.exec(l.exec_id.clone(), l.key.clone());
                    learnables.push((l.key, l.observation));
                }
                Fact::Exit { exec_id } => {
                    self.table.exit(&exec_id);
                }
                Fact::Dropped { count } => {
                    self.metrics.dropped_by_tetragon.inc_by(count);
                    tracing::warn!(dropped = count, "Tetragon reports dropped events; every learner is marked partial (events-dropped), the next re-snapshot repairs what still runs");
                    self.mark_all_partial(PartialReason::EventsDropped);
                }
                Fact::Skip(reason) => {
                    self.metrics.skip(reason.label());
                    tracing::debug!(reason = reason.label(), "event skipped");
                }
            }
        }
        let batches = self.route(learnables);
        AtomicResponse::new(Box::pin(deliver(batches).into_actor(self)))
    }
}

impl Handler<SnapshotTaken> for EventIngester {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: SnapshotTaken, _: &mut Self::Context) -> Self::Result {
        let now = now_ms();
        let source = match msg.0.source {
            SnapshotSource::ExportLog => FactSource::ExportLog,
            _ => FactSource::Snapshot,
        };
        let mut learnables = Vec::new();
        let mut live = Vec::new();
        for p in &msg.0.processes {
            match learnable(p, source, now, &self.cfg) {
                Ok(l) => {
                    live.push((l.exec_id.clone(), l.key.clone()));
                    learnables.push((l.key, l.observation));
                }
                Err(reason) => self.metrics.skip(reason.label()),
            }
        }
        let batches = self.route(learnables);
        if !self.first_snapshot_done {
            // The first snapshot of this run shows containers that were running
            // before the agent connected, even those whose learner an early event
            // created a moment ago: their past is unknown.
            self.first_snapshot_done = true;
            let keys: std::collections::BTreeSet<&LearnerKey> =
                live.iter().map(|(_, k)| k).collect();
            for key in keys.into_iter().filter(|k| !self.resumed.contains(*k)) {
                if let Some(addr) = self.learners.get(key) {
                    // Delivered before the observations below (same mailbox, FIFO).
                    let _ = addr.try_send(MarkPartial(PartialReason::StartedBeforeAgent));
                }
            }
        }
        self.table.replace(live);
        let created = batches.iter().filter(|b| b.2).count();
        tracing::info!(
            source = msg.0.source.as_str(),
            processes = msg.0.processes.len(),
            learners = self.learners.len(),
            created,
            "snapshot ingested"
        );
        AtomicResponse::new(Box::pin(deliver(batches).into_actor(self)))
    }
}

impl Handler<OperateOn> for EventIngester {
    type Result = ResponseFuture<Result<Profile, String>>;
    fn handle(&mut self, msg: OperateOn, _: &mut Self::Context) -> Self::Result {
        let Some(addr) = self.learners.get(&msg.key).cloned() else {
            let key = msg.key.to_string();
            return Box::pin(async move { Err(format!("no learner {key}; see `debug list`")) });
        };
        Box::pin(async move {
            addr.send(Operate(msg.input))
                .await
                .map_err(|e| e.to_string())?
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
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: StopAll, _: &mut Self::Context) -> Self::Result {
        let addrs: Vec<_> = self.learners.drain().map(|(_, a)| a).collect();
        Box::pin(
            async move {
                for a in addrs {
                    let _ = a.send(StopLearner).await;
                }
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}
