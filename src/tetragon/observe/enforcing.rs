//! The agent's exported allow-list policies as Tetragon lists them on this
//! node: which are loaded and in which mode. Their events reach the agent (the
//! stream is re-subscribed when the set changes), and a kill by one of them in
//! enforce mode is not learned (only `ListTracingPolicies` tells enforce from
//! monitor: a monitor-mode event carries the same action).
use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use serde::Serialize;

use crate::tetragon::proto::{TracingPolicyMode, TracingPolicyState, TracingPolicyStatus};

/// The export's names: `<kind>-<workload>` (lowercased) for a workload's
/// `TracingPolicyNamespaced`, `tetragon-learner-host-...` for a host's
/// `TracingPolicy` (see `export/names.rs`).
const WORKLOAD_KINDS: [&str; 9] = [
    "pod",
    "deployment",
    "statefulset",
    "daemonset",
    "replicaset",
    "job",
    "cronjob",
    "replicationcontroller",
    "namespace",
];

/// Whether a listed policy is one the agent exported (by its naming rule).
pub fn is_agents_policy(name: &str, namespace: &str) -> bool {
    if name.starts_with("tetragon-learner-observe-") {
        return false;
    }
    if name.starts_with("tetragon-learner-") {
        return true;
    }
    !namespace.is_empty()
        && WORKLOAD_KINDS.iter().any(|k| {
            name.len() > k.len() + 1 && name.starts_with(k) && name.as_bytes()[k.len()] == b'-'
        })
}

/// One of the agent's policies as Tetragon lists it on this node (`debug
/// policies`, `/metrics`, `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnPolicy {
    pub name: String,
    /// Empty for a cluster-wide `TracingPolicy`.
    pub namespace: String,
    /// `enabled`, `load_error`, ... (Tetragon's state, lowercased).
    pub state: String,
    /// `enforce`, `monitor`, ... (Tetragon's mode, lowercased).
    pub mode: String,
    /// Why it failed to load.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    pub kernel_memory_bytes: u64,
    /// Denials enforced / monitored (overrides and kills).
    pub enforced: u64,
    pub monitored: u64,
}

impl OwnPolicy {
    pub fn from_status(p: &TracingPolicyStatus) -> Self {
        let lower = |s: &str, prefix: &str| s.trim_start_matches(prefix).to_ascii_lowercase();
        let state = TracingPolicyState::try_from(p.state)
            .map(|s| lower(s.as_str_name(), "TP_STATE_"))
            .unwrap_or_else(|_| format!("state-{}", p.state));
        let mode = TracingPolicyMode::try_from(p.mode)
            .map(|m| lower(m.as_str_name(), "TP_MODE_"))
            .unwrap_or_else(|_| format!("mode-{}", p.mode));
        let c = p.stats.as_ref().and_then(|s| s.action_counters.as_ref());
        Self {
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            state,
            mode,
            error: p.error.clone(),
            kernel_memory_bytes: p.kernel_memory_bytes,
            enforced: c.map(|c| c.r#override + c.signal).unwrap_or(0),
            monitored: c
                .map(|c| c.monitor_override + c.monitor_signal)
                .unwrap_or(0),
        }
    }
}

/// The agent's loaded policies, by name.
pub type OwnPolicies = Arc<RwLock<BTreeMap<String, OwnPolicy>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exports_names_are_recognised() {
        assert!(is_agents_policy("tetragon-learner-host-node-1", ""));
        assert!(is_agents_policy("deployment-web", "shop"));
        assert!(is_agents_policy("statefulset-orders-db", "shop"));
        assert!(
            !is_agents_policy("deployment-web", ""),
            "a workload's policy is namespaced"
        );
        assert!(!is_agents_policy(
            "tetragon-learner-observe-exec-loaded",
            ""
        ));
        assert!(!is_agents_policy("block-crypto-miners", "shop"));
        assert!(!is_agents_policy("deployment", "shop"));
    }
}
