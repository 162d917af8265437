//! The agent's exported allow-list policies as Tetragon lists them on this
//! node: which are loaded and in which mode. Their events reach the agent (the
//! stream is re-subscribed when the set changes), and a kill by one of them in
//! enforce mode is not learned (only `ListTracingPolicies` tells enforce from
//! monitor: a monitor-mode event carries the same action).
use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::tetragon::proto::TracingPolicyMode;

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

/// Mode of each of the agent's loaded policies, by name.
pub type EnforcingModes = Arc<RwLock<BTreeMap<String, TracingPolicyMode>>>;

/// True when `name` is the agent's and Tetragon lists it in enforce mode.
pub fn enforces(modes: &EnforcingModes, name: &str) -> bool {
    modes.read().get(name) == Some(&TracingPolicyMode::TpModeEnforce)
}

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
