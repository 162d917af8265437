//! What the agent tells about itself, one type per event: each logs its line
//! and counts its metric in one `emit`, so no site can do one and forget the
//! other (vector's `internal_events`). Fields are plain data (`&dyn Display`
//! for keys), so this module stays on the ground floor and imports no layer.
use std::fmt::Display;

use super::metrics::Metrics;
use crate::log_quote;

/// Something the agent can tell: a log line, a metric, or both.
pub trait Emit {
    fn emit(self, metrics: &Metrics);
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Tetragon events received, a batch at a time (counted by kind; too many to
/// log, and one count per batch rather than per event).
#[derive(Default)]
pub struct EventsReceived {
    /// Events per kind; a handful of kinds, so a short list.
    by_kind: Vec<(&'static str, u64)>,
}

impl EventsReceived {
    /// One more event of `kind`.
    pub fn count(&mut self, kind: &'static str) {
        match self.by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.by_kind.push((kind, 1)),
        }
    }
}

impl Emit for EventsReceived {
    fn emit(self, metrics: &Metrics) {
        for (kind, n) in self.by_kind {
            metrics.events(kind, n);
        }
    }
}

/// An event or a snapshot entry that taught nothing (a kernel thread, a host
/// process, ...).
pub struct EventSkipped {
    pub reason: &'static str,
}

impl Emit for EventSkipped {
    fn emit(self, metrics: &Metrics) {
        metrics.skip(self.reason);
        tracing::debug!(reason = self.reason, "event skipped");
    }
}

/// Tetragon said it dropped events (rate_limit_info).
pub struct TetragonDroppedEvents {
    pub count: u64,
}

impl Emit for TetragonDroppedEvents {
    fn emit(self, metrics: &Metrics) {
        metrics.dropped_by_tetragon.inc_by(self.count);
        tracing::warn!(
            dropped = self.count,
            "Tetragon reports dropped events; every learner is marked partial (events-dropped); \
             re-snapshots repair what still runs"
        );
    }
}

/// The live process table evicted its oldest entries. Logged only the first
/// time: afterwards the counter tells how often.
pub struct ProcessTableEvicted {
    pub evicted: u64,
    pub cap: usize,
}

impl Emit for ProcessTableEvicted {
    fn emit(self, metrics: &Metrics) {
        if self.evicted == 0 {
            return;
        }
        if metrics.process_table_evictions.get() == 0 {
            tracing::warn!(
                cap = self.cap,
                "live process table full: oldest entries evicted (exits lost, or more processes \
                 than --max-live-processes); processes started before an eviction are no longer \
                 checked for lost execs"
            );
        }
        metrics.process_table_evictions.inc_by(self.evicted);
    }
}

/// A snapshot showed live processes whose exec never came through the stream.
pub struct MissedExecs {
    pub learners: usize,
}

impl Emit for MissedExecs {
    fn emit(self, metrics: &Metrics) {
        if self.learners == 0 {
            return;
        }
        metrics.missed_execs.inc_by(self.learners as u64);
        tracing::warn!(
            learners = self.learners,
            "the snapshot shows processes whose exec never came through the stream (Tetragon \
             drops events for a slow client, or the stream was down): their learners are marked \
             partial (events-dropped)"
        );
    }
}

/// A connection to Tetragon is up and the event stream requested; every
/// connection after the first is a reconnect.
pub struct Connected<'a> {
    pub address: &'a dyn Display,
    pub reconnect: bool,
}

impl Emit for Connected<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.connect_attempt("connected");
        if self.reconnect {
            metrics.reconnects.inc();
        }
        tracing::info!(address = %self.address, "connected; event stream requested");
    }
}

/// Tetragon could not be reached; the connection backs off and tries again.
pub struct ConnectFailed<'a> {
    pub address: &'a dyn Display,
    pub error: &'a dyn Display,
}

impl Emit for ConnectFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.connect_attempt("failed");
        tracing::warn!(address = %self.address, error = %self.error, "cannot reach Tetragon; backing off");
    }
}

/// Whether the event stream is live now (the `tetragon_connected` gauge).
pub struct StreamLive {
    pub live: bool,
}

impl Emit for StreamLive {
    fn emit(self, metrics: &Metrics) {
        metrics.tetragon_connected.set(i64::from(self.live));
    }
}

/// A learner was created for a key seen for the first time.
pub struct LearnerCreated<'a> {
    pub key: &'a dyn Display,
    /// Where the key was first seen (event, snapshot, export log).
    pub source: &'a dyn std::fmt::Debug,
}

impl Emit for LearnerCreated<'_> {
    fn emit(self, _: &Metrics) {
        tracing::info!(key = %log_quote::display(&self.key), source = ?self.source, "new learner");
    }
}

/// A new executable is durable in a learning profile.
pub struct ExecutableLearned<'a> {
    pub key: &'a dyn Display,
    pub path: &'a str,
    /// How it was first learned.
    pub source: &'a dyn std::fmt::Debug,
    /// Learned from a `process_exit`: its exec was missed.
    pub from_exit: bool,
}

impl Emit for ExecutableLearned<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.learned_executables.inc();
        if self.from_exit {
            metrics.learned_from_exits.inc();
        }
        tracing::info!(key = %log_quote::display(&self.key), path = %log_quote::name(self.path), source = ?self.source, "learned executable");
    }
}

/// A partial reason is durable in a profile.
pub struct PartialReasonMarked<'a> {
    pub key: &'a dyn Display,
    pub reason: &'a str,
}

impl Emit for PartialReasonMarked<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.partial_reason(self.reason, "marked");
        // Info, not warn: every learner of a running node starts partial
        // (started-before-agent); lost events have their own warning.
        tracing::info!(key = %log_quote::display(&self.key), reason = self.reason, "profile marked partial");
    }
}

/// A partial reason cleared by its healing rule, durably.
pub struct PartialReasonHealed<'a> {
    pub key: &'a dyn Display,
    pub reason: &'a str,
    /// When it healed (Unix ms).
    pub at: u64,
    /// No reason is left: the profile is complete.
    pub complete: bool,
}

impl Emit for PartialReasonHealed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.partial_reason(self.reason, "healed");
        tracing::info!(key = %log_quote::display(&self.key), reason = self.reason, healed_at = self.at, complete = self.complete, "partial reason healed");
    }
}

/// An executable outside a locked profile is durable.
pub struct DeviationSeen<'a> {
    pub key: &'a dyn Display,
    pub path: &'a str,
}

impl Emit for DeviationSeen<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.deviations.inc();
        tracing::warn!(key = %log_quote::display(&self.key), path = %log_quote::name(self.path), "deviation from locked profile");
    }
}

/// A learner's state change is durable (the gauge follows from the durable view).
pub struct LearnerStateChanged<'a> {
    pub key: &'a dyn Display,
    pub from: &'a str,
    pub to: &'a str,
    pub reason: &'a str,
}

impl Emit for LearnerStateChanged<'_> {
    fn emit(self, _: &Metrics) {
        tracing::info!(key = %log_quote::display(&self.key), from = self.from, to = self.to, reason = self.reason, "learner state changed");
    }
}

/// How many learners are in `state` now.
pub struct LearnersInState<'a> {
    pub state: &'a str,
    pub count: usize,
}

impl Emit for LearnersInState<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.set_learners(self.state, gauge_value(self.count as u64));
    }
}

/// A snapshot was taken and handed on.
pub struct SnapshotSucceeded<'a> {
    /// Why it was taken (connect, periodic, retry).
    pub reason: &'a str,
    pub source: &'a str,
    pub processes: usize,
    pub duration_ms: u64,
    /// Why the preferred source (GetDebug) was not used, if it was not.
    pub fallback_reason: Option<&'a dyn Display>,
}

impl Emit for SnapshotSucceeded<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.snapshot(self.source, "ok");
        metrics
            .snapshot_processes
            .set(gauge_value(self.processes as u64));
        metrics
            .snapshot_duration_ms
            .set(gauge_value(self.duration_ms));
        if let Some(why) = self.fallback_reason {
            tracing::warn!(reason = self.reason, source = self.source, processes = self.processes, fallback_reason = %why, "snapshot taken from the fallback source: GetDebug unavailable");
        } else {
            tracing::info!(
                reason = self.reason,
                source = self.source,
                processes = self.processes,
                duration_ms = self.duration_ms,
                "snapshot taken"
            );
        }
    }
}

/// No snapshot could be taken; learning from events goes on.
pub struct SnapshotFailed<'a> {
    pub reason: &'a str,
    /// The source policy asked for (counted as the `source` label).
    pub policy: &'a str,
    /// Low-cardinality cause (counted as the `result` label).
    pub label: &'a str,
    pub error: &'a dyn Display,
}

impl Emit for SnapshotFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.snapshot(self.policy, self.label);
        tracing::warn!(reason = self.reason, error = %self.error, "snapshot failed; learning from events goes on, it will be retried");
    }
}

/// One chunk of the export log's history is durable in the learners.
pub struct BackfillChunkRead {
    pub lines: u64,
    pub execs: u64,
    pub exits: u64,
    pub new_executables: u64,
}

impl Emit for BackfillChunkRead {
    fn emit(self, metrics: &Metrics) {
        metrics.backfill_lines.inc_by(self.lines);
        metrics.backfill_execs.inc_by(self.execs);
        metrics.backfill_exits.inc_by(self.exits);
        metrics
            .backfill_new_executables
            .inc_by(self.new_executables);
        tracing::debug!(
            lines = self.lines,
            execs = self.execs,
            exits = self.exits,
            new_executables = self.new_executables,
            "export-log history chunk learned"
        );
    }
}

/// A group commit reached the disk.
pub struct CheckpointFlushed {
    /// Set when checkpoints had been failing: how long, and how often.
    pub recovered: Option<(u64, u32)>,
}

impl Emit for CheckpointFlushed {
    fn emit(self, metrics: &Metrics) {
        metrics.checkpoint_flushes.inc();
        if let Some((failed_for_ms, failures)) = self.recovered {
            tracing::info!(
                failed_for_ms,
                failures,
                "checkpoints work again: the database takes writes"
            );
        }
    }
}

/// A group commit failed; it is retried after `retry_in_ms`.
pub struct CheckpointFailed<'a> {
    pub error: &'a dyn Display,
    pub failures: u32,
    pub failing_for_ms: u64,
    pub retry_in_ms: u64,
    /// Profiles waiting to be written.
    pub pending: usize,
}

impl Emit for CheckpointFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.checkpoint_errors.inc();
        tracing::error!(error = %self.error, failures = self.failures, failing_for_ms = self.failing_for_ms,
            retry_in_ms = self.retry_in_ms, pending = self.pending,
            "checkpoint failed; nothing new is reported as learned until the database takes writes again");
    }
}

/// How old the oldest change not yet on disk is.
pub struct CheckpointLag {
    pub lag_ms: u64,
}

impl Emit for CheckpointLag {
    fn emit(self, metrics: &Metrics) {
        metrics.checkpoint_lag_ms.set(gauge_value(self.lag_ms));
    }
}

/// A hook view's observe policy changed status (loaded, refused, pending):
/// logged once per change, with why when it cannot load.
pub struct HookViewChanged<'a> {
    pub view: &'a str,
    pub active: bool,
    /// `active`, `pending` or `unavailable`.
    pub status: &'a str,
    pub detail: &'a str,
}

impl Emit for HookViewChanged<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.set_hook_view(self.view, self.active);
        if self.status == "unavailable" {
            tracing::warn!(
                view = self.view,
                reason = self.detail,
                "hook view unavailable: Tetragon cannot load its observe policy here; executables stay unverified for the policy shapes of this view (see README, Hook views); learning goes on"
            );
        } else {
            tracing::info!(
                view = self.view,
                status = self.status,
                detail = self.detail,
                "hook view"
            );
        }
    }
}

/// Observe-policy events tied to their exec in one batch, per view.
pub struct HookPathsSeen {
    pub opened: u64,
    pub loaded: u64,
}

impl Emit for HookPathsSeen {
    fn emit(self, metrics: &Metrics) {
        metrics.hook_paths_seen("opened", self.opened);
        metrics.hook_paths_seen("loaded", self.loaded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_counts_under_its_metric_name() {
        let m = Metrics::new();
        EventSkipped {
            reason: "kernel_thread",
        }
        .emit(&m);
        ProcessTableEvicted {
            evicted: 3,
            cap: 10,
        }
        .emit(&m);
        ProcessTableEvicted {
            evicted: 2,
            cap: 10,
        }
        .emit(&m);
        SnapshotFailed {
            reason: "connect",
            policy: "auto",
            label: "timeout",
            error: &"GetDebug did not answer",
        }
        .emit(&m);
        let text = m.render();
        for line in [
            "tetragon_learner_skipped_total{reason=\"kernel_thread\"} 1",
            "tetragon_learner_process_table_evictions_total 5",
            "tetragon_learner_snapshots_total{source=\"auto\",result=\"timeout\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
