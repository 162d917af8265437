//! Prometheus metrics, in one place, so every counted thing has one name. Only
//! `events` counts: a site emits an event, which logs and counts together.
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Counters of a family already looked up, by label value: the per-event path
/// (`event`, `skip`) then neither builds a label set (a Vec and a String) nor
/// hashes it, which it did once per event. Label values here are a small fixed
/// set (event kinds, skip reasons), so a short list is enough.
#[derive(Default)]
struct Resolved(parking_lot::RwLock<Vec<(String, Counter)>>);

impl Resolved {
    fn inc(&self, family: &Family<Labels, Counter>, name: &'static str, value: &str) {
        self.add(family, name, value, 1);
    }

    fn add(&self, family: &Family<Labels, Counter>, name: &'static str, value: &str, n: u64) {
        if let Some((_, c)) = self.0.read().iter().find(|(v, _)| v == value) {
            c.inc_by(n);
            return;
        }
        let mut list = self.0.write();
        let counter = match list.iter().find(|(v, _)| v == value) {
            Some((_, c)) => c.clone(),
            None => {
                let c = family.get_or_create(&labels(&[(name, value)])).clone();
                list.push((value.to_string(), c.clone()));
                c
            }
        };
        counter.inc_by(n);
    }
}

pub struct Metrics {
    registry: Registry,
    events_resolved: Resolved,
    skipped_resolved: Resolved,
    pub(super) events: Family<Labels, Counter>,
    pub(super) skipped: Family<Labels, Counter>,
    pub(super) dropped_by_tetragon: Counter,
    pub(super) missed_execs: Counter,
    pub(super) process_table_evictions: Counter,
    pub(super) snapshots: Family<Labels, Counter>,
    pub(super) snapshot_processes: Gauge,
    pub(super) snapshot_duration_ms: Gauge,
    pub(super) reconnects: Counter,
    pub(super) tetragon_connected: Gauge,
    pub(super) connect_attempts: Family<Labels, Counter>,
    pub(super) learned_executables: Counter,
    pub(super) deviations: Counter,
    pub(super) learners: Family<Labels, Gauge>,
    pub(super) checkpoint_lag_ms: Gauge,
    pub(super) checkpoint_flushes: Counter,
    pub(super) checkpoint_errors: Counter,
    pub(super) backfill_lines: Counter,
    pub(super) backfill_execs: Counter,
    pub(super) backfill_exits: Counter,
    pub(super) backfill_new_executables: Counter,
    /// Partial reasons made durable, by reason (marked, healed).
    pub(super) partial_reasons: Family<Labels, Counter>,
    pub(super) learned_from_exits: Counter,
    /// 1 while the observe policy of a hook view is loaded, by view and shape.
    pub(super) hook_view_active: Family<Labels, Gauge>,
    /// Policy events of the observe policies tied to an exec, by view.
    pub(super) hook_paths_seen: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tetragon_learner");
        let m = Self {
            events: Family::default(),
            skipped: Family::default(),
            dropped_by_tetragon: Counter::default(),
            missed_execs: Counter::default(),
            process_table_evictions: Counter::default(),
            snapshots: Family::default(),
            snapshot_processes: Gauge::default(),
            snapshot_duration_ms: Gauge::default(),
            reconnects: Counter::default(),
            tetragon_connected: Gauge::default(),
            connect_attempts: Family::default(),
            learned_executables: Counter::default(),
            deviations: Counter::default(),
            learners: Family::default(),
            checkpoint_lag_ms: Gauge::default(),
            checkpoint_flushes: Counter::default(),
            checkpoint_errors: Counter::default(),
            backfill_lines: Counter::default(),
            backfill_execs: Counter::default(),
            backfill_exits: Counter::default(),
            backfill_new_executables: Counter::default(),
            partial_reasons: Family::default(),
            learned_from_exits: Counter::default(),
            hook_view_active: Family::default(),
            hook_paths_seen: Family::default(),
            registry: Registry::default(),
            events_resolved: Resolved::default(),
            skipped_resolved: Resolved::default(),
        };
        registry.register(
            "events",
            "Tetragon events received, by kind",
            m.events.clone(),
        );
        registry.register(
            "skipped",
            "Events and snapshot entries that taught nothing, by reason",
            m.skipped.clone(),
        );
        registry.register(
            "tetragon_dropped_events",
            "Events Tetragon reported as dropped (rate_limit_info)",
            m.dropped_by_tetragon.clone(),
        );
        registry.register(
            "missed_exec_events",
            "Live processes a snapshot showed whose exec never came through the stream",
            m.missed_execs.clone(),
        );
        registry.register(
            "process_table_evictions",
            "Live-process entries evicted beyond --max-live-processes (their exits were lost, \
             or the node runs more processes than the cap)",
            m.process_table_evictions.clone(),
        );
        registry.register(
            "snapshots",
            "Snapshots taken, by source and result",
            m.snapshots.clone(),
        );
        registry.register(
            "snapshot_processes",
            "Processes in the last snapshot",
            m.snapshot_processes.clone(),
        );
        registry.register(
            "snapshot_duration_milliseconds",
            "Duration of the last snapshot",
            m.snapshot_duration_ms.clone(),
        );
        registry.register(
            "reconnects",
            "Connections to Tetragon re-established",
            m.reconnects.clone(),
        );
        registry.register(
            "tetragon_connected",
            "1 while Tetragon answers on the event stream, else 0",
            m.tetragon_connected.clone(),
        );
        registry.register(
            "tetragon_connect_attempts",
            "Attempts to connect to Tetragon, by outcome (connected, failed)",
            m.connect_attempts.clone(),
        );
        registry.register(
            "learned_executables",
            "New executables made durable",
            m.learned_executables.clone(),
        );
        registry.register(
            "deviations",
            "Executables seen in locked profiles (made durable)",
            m.deviations.clone(),
        );
        registry.register("learners", "Learners by state", m.learners.clone());
        registry.register(
            "checkpoint_lag_milliseconds",
            "Age of the oldest change not yet on disk",
            m.checkpoint_lag_ms.clone(),
        );
        registry.register(
            "checkpoint_flushes",
            "Group commits to sled",
            m.checkpoint_flushes.clone(),
        );
        registry.register(
            "checkpoint_errors",
            "Failed sled writes",
            m.checkpoint_errors.clone(),
        );
        registry.register(
            "partial_reasons",
            "Partial reasons marked or healed (made durable), by reason and change",
            m.partial_reasons.clone(),
        );
        registry.register(
            "learned_from_exits",
            "Executables first learned from a process_exit (their exec was missed)",
            m.learned_from_exits.clone(),
        );
        registry.register(
            "backfill_lines",
            "Export-log lines read by the backfill",
            m.backfill_lines.clone(),
        );
        registry.register(
            "backfill_execs",
            "process_exec lines read by the backfill",
            m.backfill_execs.clone(),
        );
        registry.register(
            "backfill_exits",
            "process_exit lines read by the backfill",
            m.backfill_exits.clone(),
        );
        registry.register(
            "backfill_new_executables",
            "Executables first learned from the backfill (made durable)",
            m.backfill_new_executables.clone(),
        );
        registry.register(
            "hook_view_active",
            "1 while the agent's observe policy for a hook view is loaded in Tetragon, else 0 (by view: opened, loaded)",
            m.hook_view_active.clone(),
        );
        registry.register(
            "hook_paths_seen",
            "Observe-policy events tied to the exec they belong to, by view",
            m.hook_paths_seen.clone(),
        );
        Self { registry, ..m }
    }

    pub(super) fn set_hook_view(&self, view: &str, active: bool) {
        self.hook_view_active
            .get_or_create(&labels(&[("view", view)]))
            .set(i64::from(active));
    }

    pub(super) fn hook_paths_seen(&self, view: &str, n: u64) {
        if n > 0 {
            self.hook_paths_seen
                .get_or_create(&labels(&[("view", view)]))
                .inc_by(n);
        }
    }

    /// A partial reason was marked or healed (`change`), durably.
    pub(super) fn partial_reason(&self, reason: &str, change: &str) {
        self.partial_reasons
            .get_or_create(&labels(&[("reason", reason), ("change", change)]))
            .inc();
    }

    pub(super) fn events(&self, kind: &str, n: u64) {
        self.events_resolved.add(&self.events, "kind", kind, n);
    }

    pub(super) fn skip(&self, reason: &str) {
        self.skipped_resolved.inc(&self.skipped, "reason", reason);
    }

    pub(super) fn connect_attempt(&self, outcome: &str) {
        self.connect_attempts
            .get_or_create(&labels(&[("outcome", outcome)]))
            .inc();
    }

    pub(super) fn snapshot(&self, source: &str, result: &str) {
        self.snapshots
            .get_or_create(&labels(&[("source", source), ("result", result)]))
            .inc();
    }

    pub(super) fn set_learners(&self, state: &str, n: i64) {
        self.learners
            .get_or_create(&labels(&[("state", state)]))
            .set(n);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_named_metrics() {
        let m = Metrics::new();
        m.events("process_exec", 1);
        m.skip("kernel_thread");
        let text = m.render();
        assert!(
            text.contains("tetragon_learner_events_total{kind=\"process_exec\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tetragon_learner_skipped_total{reason=\"kernel_thread\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn repeated_labels_count_on_the_same_series() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.events("process_exec", 1);
        }
        m.events("process_exit", 1);
        m.skip("host_process");
        m.skip("host_process");
        let text = m.render();
        for line in [
            "tetragon_learner_events_total{kind=\"process_exec\"} 3",
            "tetragon_learner_events_total{kind=\"process_exit\"} 1",
            "tetragon_learner_skipped_total{reason=\"host_process\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }
}
