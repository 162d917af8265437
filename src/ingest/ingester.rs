//! The EventIngester actor: turns events and snapshots into facts (pure
//! `facts`), keeps the live process table, and routes observations to one
//! Learner actor per key, created on demand. It never touches the disk: each
//! learner gets its inputs in its bounded mailbox, a full one is waited on
//! (backpressure: the next batch is not taken meanwhile), and the Checkpointer
//! does the I/O.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::learner::actor::{
    Apply, Drain, DrainError, GetProfile, LearnerActor, Operate, OperateError, OperateOn,
};
use crate::learner::completeness::InstanceSighting;
use crate::learner::config::LearnerConfig;
use crate::learner::key::LearnerKey;
use crate::learner::machine::LearnerInput;
use crate::learner::observation::FactSource;
use crate::learner::persist::Persist;
use crate::learner::profile::{PartialReason, Profile};
use crate::snapshot::builder::{SnapshotFailed, SnapshotTaken};
use crate::snapshot::model::SnapshotSource;
use crate::telemetry::events::{
    Emit, EventSkipped, EventsReceived, LearnerCreated, MissedExecs, ProcessTableEvicted,
    TetragonDroppedEvents,
};
use crate::telemetry::metrics::Metrics;
use crate::tetragon::connection::messages::EventBatch;
use crate::tetragon::proto::lean::{get_events_response::Event, GetEventsResponse};
use crate::time::{now_ms, UnixMillis};

use super::facts::{
    exit_learnable, fact_from_lean_event, learn, learnable, Fact, IngestConfig, InstanceRef,
    SkipReason,
};
use super::hook_tie::{HookTie, Tie};
use super::policy_outcome::{Decided, Pending, PolicyOutcomes};
use super::process_table::{ProcessTable, SnapshotEntry};
use super::process_view::{LabelsRef, PolicyEventKind, PolicyEventView};
use crate::learner::hook_view::HookView;
use crate::learner::violation::{ViolationMode, ViolationSeen};
use crate::telemetry::events::HookPathsSeen;
use crate::telemetry::events::PolicyViolationSeen;
use crate::tetragon::observe::enforcing::OwnPolicies;
use crate::tetragon::observe::policy::ObserveShape;

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
    /// Where learners write their profiles (the Checkpointer).
    writer: Recipient<Persist>,
    metrics: Arc<Metrics>,
    /// Each learner's id: its place in `slots`.
    learners: crate::FastMap<LearnerKey, LearnerId>,
    slots: Vec<Slot>,
    table: ProcessTable<LearnerId>,
    tick: Duration,
    /// Keys loaded from the database: their history started before this run.
    resumed: std::collections::HashSet<LearnerKey>,
    first_snapshot_done: bool,
    /// When the previous snapshot was taken (to judge which execs were missed).
    last_snapshot_at: Option<UnixMillis>,
    /// When this run's stream was first live (first events, or first snapshot,
    /// whichever came first): a container instance that started later is seen
    /// from its start.
    stream_live_at: Option<UnixMillis>,
    /// A snapshot asked for after the latest (re)connect failed and none has
    /// succeeded since: every learner is partial (`no-snapshot`).
    no_snapshot: bool,
    /// Set by `StopAll`: later events and snapshots are dropped, so nothing can
    /// create a fresh learner over a drained one.
    stopping: bool,
    backfill: backfill::BackfillMemory,
    /// `opened` hook events waiting for their exec, and execs for their hook.
    hooks: HookTie<LearnerId>,
    /// The agent's exported policies loaded on this node, and their modes.
    enforcing: OwnPolicies,
    /// Their events, until what followed tells what they did.
    outcomes: PolicyOutcomes<LearnerId>,
}

/// A learner of this run, by its place in `EventIngester::slots`: what the
/// process table and a delivery hold instead of its key, so no key is copied
/// per process or per input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct LearnerId(usize);

struct Slot {
    key: LearnerKey,
    addr: Addr<LearnerActor>,
}

/// Inputs per learner, in order, for one delivery (learners are independent:
/// the order among them does not matter, the order of each one's inputs does).
type Delivery = crate::FastMap<LearnerId, Vec<LearnerInput>>;

impl EventIngester {
    pub fn new(
        cfg: IngestConfig,
        learner_cfg: LearnerConfig,
        writer: Recipient<Persist>,
        metrics: Arc<Metrics>,
        resumed: Vec<Profile>,
        tick: Duration,
    ) -> Self {
        let resumed_keys = resumed.iter().map(|p| p.key.clone()).collect();
        let mut me = Self {
            table: ProcessTable::with_cap(cfg.max_live_processes),
            cfg,
            learner_cfg,
            writer,
            metrics,
            learners: crate::FastMap::default(),
            slots: Vec::new(),
            tick,
            resumed: resumed_keys,
            first_snapshot_done: false,
            last_snapshot_at: None,
            stream_live_at: None,
            no_snapshot: false,
            stopping: false,
            backfill: backfill::BackfillMemory::default(),
            hooks: HookTie::default(),
            enforcing: OwnPolicies::default(),
            outcomes: PolicyOutcomes::default(),
        };
        for p in resumed {
            me.spawn_learner(p);
        }
        me
    }

    /// Where the modes of the agent's own loaded policies are kept current.
    pub fn with_enforcing(mut self, modes: OwnPolicies) -> Self {
        self.enforcing = modes;
        self
    }

    fn spawn_learner(&mut self, profile: Profile) -> LearnerId {
        let key = profile.key.clone();
        let addr = LearnerActor::new(
            profile,
            self.learner_cfg,
            self.writer.clone(),
            self.metrics.clone(),
            self.tick,
        )
        .start();
        let id = LearnerId(self.slots.len());
        self.slots.push(Slot {
            key: key.clone(),
            addr,
        });
        self.learners.insert(key, id);
        id
    }

    /// The learner for `key`, created when first seen. A learner born from a
    /// snapshot belongs to a container that ran before the agent saw it: its
    /// past is unknown, so it is partial.
    fn learner(&mut self, key: &LearnerKey, source: FactSource) -> LearnerId {
        if let Some(id) = self.learners.get(key) {
            return *id;
        }
        let mut profile = Profile::new(key.clone(), now_ms());
        if matches!(source, FactSource::Snapshot | FactSource::ExportLog) {
            profile
                .partial_reasons
                .insert(PartialReason::StartedBeforeAgent);
        }
        if self.no_snapshot {
            profile.partial_reasons.insert(PartialReason::NoSnapshot);
        }
        LearnerCreated {
            key,
            source: &source,
        }
        .emit(&self.metrics);
        self.spawn_learner(profile)
    }

    /// Counts (and, the first time, logs) what the process table evicted.
    fn count_evictions(&mut self) {
        ProcessTableEvicted {
            evicted: self.table.take_evicted(),
            cap: self.cfg.max_live_processes,
        }
        .emit(&self.metrics);
    }

    /// Whether an instance (or process) that started at `start` was seen
    /// from its start: it started after this run's stream was first live.
    fn after_live(&self, start: Option<UnixMillis>) -> bool {
        matches!((start, self.stream_live_at), (Some(s), Some(live)) if s >= live)
    }

    fn sighting(&self, inst: &InstanceRef, at: UnixMillis) -> InstanceSighting {
        InstanceSighting {
            id: inst.id.clone(),
            started_at: inst.started_at,
            seen_from_start: self.after_live(inst.started_at),
            at,
        }
    }

    /// Queues `input` for every learner.
    fn push_all(&self, out: &mut Delivery, input: impl Fn() -> LearnerInput) {
        for id in (0..self.slots.len()).map(LearnerId) {
            push(out, id, input());
        }
    }

    /// Queues `input` for the learner of `key` (created on demand).
    fn push(
        &mut self,
        out: &mut Delivery,
        key: &LearnerKey,
        input: LearnerInput,
        source: FactSource,
    ) {
        let id = self.learner(key, source);
        push(out, id, input);
    }

    /// Hands each learner its inputs. A learner with room in its mailbox
    /// takes them at once (no answer to wait for: its mailbox keeps them in
    /// order, ahead of anything sent to it later). The returned future waits
    /// for room in the mailboxes that were full: that is the backpressure
    /// (nothing is shed), and whoever awaits it sends nothing to a learner
    /// meanwhile, so each learner's inputs stay in order. A closed mailbox
    /// means the learner stopped (shutdown), and nobody is left to tell.
    fn hand_over(&self, out: Delivery) -> impl std::future::Future<Output = ()> + 'static {
        let mut full = Vec::new();
        for (id, inputs) in out {
            let addr = &self.slots[id.0].addr;
            if let Err(SendError::Full(msg)) = addr.try_send(Apply(inputs)) {
                full.push((addr.clone(), msg));
            }
        }
        async move {
            for (addr, msg) in full {
                let _ = addr.send(msg).await;
            }
        }
    }

    /// Hands `out` to the learners; the ingester takes nothing else until
    /// every learner took its inputs.
    fn deliver(&self, out: Delivery) -> AtomicResponse<Self, ()> {
        AtomicResponse::new(Box::pin(self.hand_over(out).into_actor(self)))
    }
}

/// Queues `input` for learner `id`.
fn push(out: &mut Delivery, id: LearnerId, input: LearnerInput) {
    out.entry(id).or_default().push(input);
}

fn event_kind(ev: &GetEventsResponse) -> &'static str {
    match ev.event {
        Some(Event::ProcessExec(_)) => "process_exec",
        Some(Event::ProcessExit(_)) => "process_exit",
        Some(Event::RateLimitInfo(_)) => "rate_limit_info",
        Some(Event::ProcessKprobe(_)) => "process_kprobe",
        Some(Event::ProcessTracepoint(_)) => "process_tracepoint",
        Some(Event::ProcessLsm(_)) => "process_lsm",
        None => "other",
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
        self.stream_live_at.get_or_insert(now);
        let mut out = Delivery::default();
        let mut received = EventsReceived::default();
        let mut hook_paths = HookPathsSeen {
            opened: 0,
            loaded: 0,
        };
        for ev in &msg.0 {
            received.count(event_kind(ev));
            match fact_from_lean_event(ev, now, &self.cfg) {
                Fact::Exec(l) => {
                    let id = self.learner(&l.key, FactSource::Event);
                    let tie = match (l.pid, l.started_at) {
                        (0, _) | (_, None) => None,
                        (pid, Some(start)) => {
                            if let Some(d) = self.outcomes.exec(pid, start) {
                                self.decide(d, &mut out, now);
                            }
                            self.hooks.exec(pid, start, id, &l.observation.path, now)
                        }
                    };
                    let new_instance = self.table.exec(
                        &l.exec_id,
                        id,
                        l.link,
                        now,
                        l.instance.as_ref().map(|i| i.id.as_str()),
                    );
                    push(&mut out, id, LearnerInput::Observe(l.observation));
                    if let Some(tie) = tie {
                        hook_paths.opened += 1;
                        push_hook_seen(&mut out, tie, HookView::Opened);
                    }
                    if let (true, Some(inst)) = (new_instance, &l.instance) {
                        push(
                            &mut out,
                            id,
                            LearnerInput::InstanceSeen(self.sighting(inst, now)),
                        );
                        // A new container instance: its pod's labels, read
                        // from the event only now (most execs skip this).
                        if let Some(input) = pod_labels_of(ev) {
                            push(&mut out, id, input);
                        }
                    }
                }
                Fact::Policy(p) => match self.policy_event(&p, now) {
                    Ok(Some((tie, view))) => {
                        match view {
                            HookView::Opened => hook_paths.opened += 1,
                            HookView::Loaded => hook_paths.loaded += 1,
                        }
                        push_hook_seen(&mut out, tie, view);
                    }
                    Ok(None) => {}
                    Err(reason) => EventSkipped {
                        reason: reason.label(),
                    }
                    .emit(&self.metrics),
                },
                Fact::Exit { exec_id } => {
                    if self.outcomes.awaits_exit(exec_id) {
                        if let Some(d) = self.outcomes.exit(exec_id, &exit_signal(ev)) {
                            self.decide(d, &mut out, now);
                        }
                    }
                    let exited = self.table.exit(exec_id);
                    // Only an exit whose exec the table never held teaches: a
                    // seen exec already taught its binary, and an exit of a
                    // binary the profile did not keep (over capacity, a reset
                    // since) is no sign of a lost event.
                    let missed = exited.is_none() && self.cfg.learn_from_exits;
                    let teaches = match missed.then(|| exit_learnable(ev, now, &self.cfg)) {
                        Some(Ok(l)) => l,
                        Some(Err(reason)) => {
                            EventSkipped {
                                reason: reason.label(),
                            }
                            .emit(&self.metrics);
                            None
                        }
                        None => None,
                    };
                    if let Some(l) = teaches {
                        // Learned only if the profile lacks the binary: then its
                        // exec was missed, and if the process started while the
                        // stream was live, that is a gap.
                        let gap = self.after_live(l.started_at);
                        if !gap && !self.learners.contains_key(&l.key) {
                            // The first sign of this container is the exit of a
                            // process that ran before the stream: its past is
                            // unknown, as for a learner born from a snapshot.
                            let mark = LearnerInput::MarkPartial {
                                reason: PartialReason::StartedBeforeAgent,
                                at: now,
                            };
                            self.push(&mut out, &l.key, mark, FactSource::Exit);
                        }
                        let input = LearnerInput::ExitSeen {
                            observation: l.observation,
                            gap,
                        };
                        self.push(&mut out, &l.key, input, FactSource::Exit);
                    }
                    if let Some(crate::ingest::process_table::Exited {
                        key,
                        instance_gone: Some(instance),
                    }) = exited
                    {
                        let id = instance.to_string();
                        push(&mut out, key, LearnerInput::InstanceGone { id, at: now });
                    }
                }
                Fact::Dropped { count } => {
                    TetragonDroppedEvents { count }.emit(&self.metrics);
                    self.push_all(&mut out, || LearnerInput::MarkPartial {
                        reason: PartialReason::EventsDropped,
                        at: now,
                    });
                }
                Fact::Skip(reason) => {
                    EventSkipped {
                        reason: reason.label(),
                    }
                    .emit(&self.metrics);
                }
            }
        }
        if !self.outcomes.is_empty() {
            for d in self.outcomes.expire(now) {
                self.decide(d, &mut out, now);
            }
        }
        received.emit(&self.metrics);
        hook_paths.emit(&self.metrics);
        self.count_evictions();
        self.deliver(out)
    }
}

/// An exit's signal ("SIGKILL", or empty).
fn exit_signal(ev: &GetEventsResponse) -> String {
    match &ev.event {
        Some(Event::ProcessExit(e)) => String::from_utf8_lossy(&e.signal).into_owned(),
        _ => String::new(),
    }
}

/// The pod labels an exec event carries, as a learner input (`None`
/// outside pods, or for labels no Kubernetes pod could have).
fn pod_labels_of(ev: &GetEventsResponse) -> Option<LearnerInput> {
    let crate::ingest::process_view::EventView::Exec(Some(p)) =
        crate::ingest::process_view::EventView::of_lean(ev).ok()?
    else {
        return None;
    };
    let pod = p.pod?;
    Some(LearnerInput::PodLabelsSeen {
        labels: pod.labels.learnable()?,
        pod: pod.name.to_owned(),
    })
}

/// Queues what a hook compared for an exec, for that exec's learner.
fn push_hook_seen(out: &mut Delivery, tie: Tie<LearnerId>, view: HookView) {
    push(
        out,
        tie.learner,
        LearnerInput::HookSeen {
            path: tie.path,
            view,
            hook_path: tie.hook_path,
        },
    );
}

/// `KprobeAction::KPROBE_ACTION_SIGKILL`.
const ACTION_SIGKILL: i32 = 3;
/// `KprobeAction::KPROBE_ACTION_OVERRIDE`.
const ACTION_OVERRIDE: i32 = 5;

impl EventIngester {
    /// An event of one of the agent's exported policies (listed by Tetragon
    /// on this node): a violation of the learner its process belongs to,
    /// decided by what follows (`policy_outcome.rs`).
    fn own_policy_event(
        &mut self,
        p: &PolicyEventView<'_>,
        now: UnixMillis,
    ) -> Result<(), SkipReason> {
        if !self.enforcing.read().contains_key(p.policy_name) {
            return Err(SkipReason::ForeignPolicy);
        }
        let (Some(path), Some(process)) = (p.binprm_path, p.process.as_ref()) else {
            return Err(SkipReason::PolicyEventIncomplete);
        };
        let l = learn(process, FactSource::Event, now, &self.cfg)?;
        let learner = self
            .learners
            .get(&l.key)
            .copied()
            .ok_or(SkipReason::PolicyEventUntied)?;
        let mut pending = Pending {
            learner,
            policy: p.policy_name.to_owned(),
            path: path.to_owned(),
            caller: l.observation.path.clone(),
            exec_path: None,
            exec_started_at: None,
            event_time: p.time.unwrap_or(now),
            seen_at: now,
            node: process.node_name.to_string(),
        };
        match (p.kind, p.action) {
            // The tracepoint's process is the exec it killed (or would have).
            (PolicyEventKind::Tracepoint, ACTION_SIGKILL) => {
                pending.exec_path = Some(l.observation.path);
                pending.exec_started_at = l.started_at;
                self.outcomes.sigkill(process.exec_id, pending);
            }
            // The kprobe/LSM hook's process is the caller, before the exec.
            (PolicyEventKind::Kprobe | PolicyEventKind::Lsm, ACTION_OVERRIDE | ACTION_SIGKILL) => {
                self.outcomes.overridden(process.pid, pending);
            }
            _ => return Err(SkipReason::OwnPolicyEvent),
        }
        Ok(())
    }

    /// A decided policy event: counted, recorded on its learner, and for a
    /// kill the exec it brought is taken out of the profile again.
    fn decide(&self, d: Decided<LearnerId>, out: &mut Delivery, now: UnixMillis) {
        let p = d.pending;
        let key = &self.slots[p.learner.0].key;
        PolicyViolationSeen {
            namespace: &key.namespace,
            workload: &key.workload,
            mode: d.mode.as_str(),
            node: &p.node,
        }
        .emit(&self.metrics);
        if let (ViolationMode::Denied, Some(exec_path), Some(started)) =
            (d.mode, &p.exec_path, p.exec_started_at)
        {
            tracing::info!(
                learner = %key,
                path = %crate::log_quote::name(exec_path),
                policy = p.policy.as_str(),
                "exec killed by the agent's enforcing policy: not learned"
            );
            push(
                out,
                p.learner,
                LearnerInput::Denied {
                    path: exec_path.clone(),
                    exec_started_at: started,
                },
            );
        }
        push(
            out,
            p.learner,
            LearnerInput::PolicyViolation(ViolationSeen {
                policy: p.policy,
                path: p.path,
                caller: p.caller,
                mode: d.mode,
                at: now,
            }),
        );
    }

    /// What a policy event means: for one of the agent's observe policies,
    /// the hook path of an exec (now, or once its exec comes); any other
    /// policy's event is skipped.
    fn policy_event(
        &mut self,
        p: &PolicyEventView<'_>,
        now: UnixMillis,
    ) -> Result<Option<(Tie<LearnerId>, HookView)>, SkipReason> {
        let Some(shape) = ObserveShape::of_policy_name(p.policy_name) else {
            return self.own_policy_event(p, now).map(|()| None);
        };
        let (Some(hook_path), Some(process)) = (p.binprm_path, p.process.as_ref()) else {
            return Err(SkipReason::PolicyEventIncomplete);
        };
        match shape.view() {
            // The tracepoint fires in the new image: its process is the exec.
            HookView::Loaded => {
                let l = learn(process, FactSource::Event, now, &self.cfg)?;
                let learner = *self
                    .learners
                    .get(&l.key)
                    .ok_or(SkipReason::PolicyEventUntied)?;
                Ok(Some((
                    Tie {
                        learner,
                        path: l.observation.path,
                        hook_path: hook_path.to_owned(),
                    },
                    HookView::Loaded,
                )))
            }
            // The kprobe/LSM hook names the caller before the exec.
            HookView::Opened => {
                // A caller outside pods execs outside pods: never tied when
                // host processes are not learned (most of a node's execs).
                if process.pod.is_none() && !self.cfg.learn_host_processes {
                    return Err(SkipReason::HostProcess);
                }
                let (pid, Some(time)) = (process.pid, p.time) else {
                    return Err(SkipReason::PolicyEventIncomplete);
                };
                Ok(self
                    .hooks
                    .hook(pid, time, hook_path, now)
                    .map(|tie| (tie, HookView::Opened)))
            }
        }
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
            SnapshotSource::DebugApi => FactSource::Snapshot,
            // `--snapshot-source none`: nothing was seen of what already ran,
            // and nothing may be judged gone.
            SnapshotSource::None => {
                let mut out = Delivery::default();
                self.snapshot_failed(&mut out, true, now);
                return self.deliver(out);
            }
        };
        let before = self.learners.len();
        let mut learnables = Vec::new();
        let mut entries = Vec::new();
        let mut containers: std::collections::BTreeMap<
            LearnerKey,
            std::collections::BTreeSet<String>,
        > = std::collections::BTreeMap::new();
        let snapshot_source = msg.0.source;
        // The pods' labels, once per pod, delivered with the observations.
        let mut out_labels = Delivery::default();
        let processes = msg.0.processes.len();
        let taken_at = crate::time::parse_rfc3339_ms(&msg.0.taken_at).unwrap_or(now);
        // Taken by value: each entry is dropped once its facts are drawn, so
        // the snapshot and its facts are not all held at once.
        let mut labelled: std::collections::HashSet<String> = std::collections::HashSet::new();
        for p in msg.0.processes {
            match learnable(&p, source, now, &self.cfg) {
                Ok(l) => {
                    if let Some(pod) = p
                        .pod
                        .as_ref()
                        .filter(|pod| labelled.insert(pod.name.clone()))
                    {
                        if let Some(labels) = LabelsRef::Sorted(&pod.labels).learnable() {
                            let input = LearnerInput::PodLabelsSeen {
                                labels,
                                pod: pod.name.clone(),
                            };
                            self.push(&mut out_labels, &l.key, input, source);
                        }
                    }
                    if let Some(c) = &p.container {
                        containers
                            .entry(l.key.clone())
                            .or_default()
                            .insert(c.id.clone());
                    }
                    let id = self.learner(&l.key, source);
                    entries.push(SnapshotEntry {
                        exec_id: l.exec_id.clone(),
                        key: id,
                        link: l.link.clone(),
                        start: l.started_at,
                        instance: l.instance.as_ref().map(|i| i.id.clone()),
                    });
                    learnables.push(l);
                }
                Err(reason) => EventSkipped {
                    reason: reason.label(),
                }
                .emit(&self.metrics),
            }
        }
        self.stream_live_at.get_or_insert(taken_at);
        let missed = self.table.reconcile(
            entries,
            self.last_snapshot_at,
            taken_at,
            IN_FLIGHT_MARGIN_MS,
        );
        self.last_snapshot_at = Some(taken_at);
        self.count_evictions();
        let mut out = Delivery::default();
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
                    LearnerInput::MarkPartial {
                        reason: PartialReason::StartedBeforeAgent,
                        at: taken_at,
                    },
                    source,
                );
            }
        }
        MissedExecs {
            learners: missed.len(),
        }
        .emit(&self.metrics);
        for id in &missed {
            push(
                &mut out,
                *id,
                LearnerInput::MarkPartial {
                    reason: PartialReason::EventsDropped,
                    at: taken_at,
                },
            );
        }
        let mut starts: crate::FastMap<String, InstanceRef> = crate::FastMap::default();
        for l in learnables {
            if let Some(i) = &l.instance {
                starts.entry(i.id.clone()).or_insert_with(|| i.clone());
            }
            // Tetragon's `/proc` scan names a process by `readlink
            // /proc/PID/exe`: the file loaded, which is the tracepoint's view.
            let procfs_path = l.procfs.then(|| l.observation.path.clone());
            self.push(
                &mut out,
                &l.key,
                LearnerInput::Observe(l.observation),
                source,
            );
            if let Some(path) = procfs_path {
                let input = LearnerInput::HookSeen {
                    hook_path: path.clone(),
                    path,
                    view: HookView::Loaded,
                };
                self.push(&mut out, &l.key, input, source);
            }
        }
        // Which instances live is what the table now holds: the snapshot's
        // processes (replaced images dropped) and execs still in flight.
        let live = self.table.live_instances();
        for (learner, ids) in &live {
            for id in ids {
                let inst = starts.get(id).cloned().unwrap_or(InstanceRef {
                    id: id.clone(),
                    started_at: None,
                });
                let seen = LearnerInput::InstanceSeen(self.sighting(&inst, taken_at));
                push(&mut out, *learner, seen);
            }
        }
        for (learner, inputs) in out_labels {
            out.entry(learner).or_default().extend(inputs);
        }
        self.push_all(&mut out, || LearnerInput::SnapshotSucceeded {
            at: taken_at,
        });
        for (learner, inputs) in out.iter_mut() {
            let ids = live.get(learner).cloned().unwrap_or_default();
            inputs.push(LearnerInput::InstancesLive { ids, at: taken_at });
        }
        self.no_snapshot = false;
        tracing::info!(
            source = snapshot_source.as_str(),
            processes,
            learners = self.learners.len(),
            created = self.learners.len() - before,
            "snapshot ingested"
        );
        self.deliver(out)
    }
}

impl EventIngester {
    /// No snapshot this time. After a (re)connect (or with snapshots off) no
    /// snapshot has succeeded since connecting: every learner is partial
    /// (`no-snapshot`) until one does, and so is every learner created meanwhile.
    fn snapshot_failed(&mut self, out: &mut Delivery, after_connect: bool, now: UnixMillis) {
        if after_connect && !self.no_snapshot {
            self.no_snapshot = true;
            tracing::warn!(
                learners = self.learners.len(),
                "no snapshot since connecting to Tetragon: what was already running is unseen; every learner is marked partial (no-snapshot) until a snapshot succeeds"
            );
        }
        if self.no_snapshot {
            self.push_all(out, || LearnerInput::MarkPartial {
                reason: PartialReason::NoSnapshot,
                at: now,
            });
        }
    }
}

impl Handler<SnapshotFailed> for EventIngester {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: SnapshotFailed, _: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        let mut out = Delivery::default();
        self.snapshot_failed(&mut out, msg.after_connect, now_ms());
        self.deliver(out)
    }
}

impl Handler<OperateOn> for EventIngester {
    type Result = ResponseFuture<Result<Profile, OperateError>>;
    fn handle(&mut self, msg: OperateOn, _: &mut Self::Context) -> Self::Result {
        let Some(addr) = self
            .learners
            .get(&msg.key)
            .map(|id| self.slots[id.0].addr.clone())
        else {
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
        let addrs: Vec<_> = self.slots.iter().map(|s| s.addr.clone()).collect();
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
        self.learners.clear();
        let addrs: Vec<_> = self.slots.drain(..).map(|s| s.addr).collect();
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
