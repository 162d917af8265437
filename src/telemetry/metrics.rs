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

pub struct Metrics {
    registry: Registry,
    pub(super) events: Family<Labels, Counter>,
    pub(super) skipped: Family<Labels, Counter>,
    pub(super) dropped_by_tetragon: Counter,
    pub(super) missed_execs: Counter,
    pub(super) process_table_evictions: Counter,
    pub(super) snapshots: Family<Labels, Counter>,
    pub(super) snapshot_processes: Gauge,
    pub(super) snapshot_duration_ms: Gauge,
    pub(super) reconnects: Counter,
    pub(super) learned_executables: Counter,
    pub(super) deviations: Counter,
    pub(super) learners: Family<Labels, Gauge>,
    pub(super) checkpoint_lag_ms: Gauge,
    pub(super) checkpoint_flushes: Counter,
    pub(super) checkpoint_errors: Counter,
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
            learned_executables: Counter::default(),
            deviations: Counter::default(),
            learners: Family::default(),
            checkpoint_lag_ms: Gauge::default(),
            checkpoint_flushes: Counter::default(),
            checkpoint_errors: Counter::default(),
            registry: Registry::default(),
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
        Self { registry, ..m }
    }

    pub(super) fn event(&self, kind: &str) {
        self.events.get_or_create(&labels(&[("kind", kind)])).inc();
    }

    pub(super) fn skip(&self, reason: &str) {
        self.skipped
            .get_or_create(&labels(&[("reason", reason)]))
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
        m.event("process_exec");
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
}
