//! The unit of a proposal or a tracing policy is a workload: profiles grouped
//! by (namespace, kind, workload), with the workload's least settled state and
//! its completeness. Host and namespace-less profiles are set apart.
use std::collections::BTreeMap;

use crate::learner::key::HOST_KIND;
use crate::learner::profile::{Completeness, Profile};
use crate::learner::state::LearnerState;

/// One workload of a namespace: the unit of a proposal or a tracing policy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkloadId {
    pub namespace: String,
    pub kind: String,
    pub workload: String,
}

impl WorkloadId {
    /// A host learner's id: no namespace, kind `Host`, the node as workload.
    pub fn of_host(p: &Profile) -> Self {
        Self {
            namespace: p.key.namespace.clone(),
            kind: p.key.workload_kind.clone(),
            workload: p.key.workload.clone(),
        }
    }
}

/// A workload and its learners, one per container, sorted by container name.
#[derive(Debug, Clone)]
pub struct Workload<'a> {
    pub id: WorkloadId,
    pub profiles: Vec<&'a Profile>,
}

/// Why a profile cannot be exported as a Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Host processes (`--learn-host-processes`) belong to no namespace.
    Host,
    /// No namespace: a namespaced object cannot be placed.
    NoNamespace,
}

/// Groups profiles by (namespace, kind, workload) in a stable order. Host and
/// namespace-less profiles are returned apart: a namespaced object cannot hold
/// them.
pub fn group_by_workload(profiles: &[Profile]) -> (Vec<Workload<'_>>, Vec<(&Profile, Skip)>) {
    let mut groups: BTreeMap<WorkloadId, Vec<&Profile>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for p in profiles {
        if p.key.workload_kind == HOST_KIND {
            skipped.push((p, Skip::Host));
            continue;
        }
        if p.key.namespace.is_empty() {
            skipped.push((p, Skip::NoNamespace));
            continue;
        }
        let id = WorkloadId {
            namespace: p.key.namespace.clone(),
            kind: p.key.workload_kind.clone(),
            workload: p.key.workload.clone(),
        };
        groups.entry(id).or_default().push(p);
    }
    let workloads = groups
        .into_iter()
        .map(|(id, mut profiles)| {
            profiles.sort_by(|a, b| a.key.container.cmp(&b.key.container));
            Workload { id, profiles }
        })
        .collect();
    (workloads, skipped)
}

/// Keeps the profiles of one namespace (all when `None`).
pub fn in_namespace(profiles: Vec<Profile>, namespace: Option<&str>) -> Vec<Profile> {
    profiles
        .into_iter()
        .filter(|p| namespace.is_none_or(|ns| p.key.namespace == ns))
        .collect()
}

/// The least settled state of a workload's learners: `learning` if any is
/// learning, else `stable` if any is stable, else `locked`.
pub fn workload_state(w: &Workload<'_>) -> LearnerState {
    let states = || w.profiles.iter().map(|p| p.state);
    if states().any(|s| s == LearnerState::Learning) {
        LearnerState::Learning
    } else if states().any(|s| s == LearnerState::Stable) {
        LearnerState::Stable
    } else {
        LearnerState::Locked
    }
}

/// `partial` when any container's profile is partial.
pub fn workload_completeness(w: &Workload<'_>) -> Completeness {
    if w.profiles
        .iter()
        .any(|p| p.completeness() == Completeness::Partial)
    {
        Completeness::Partial
    } else {
        Completeness::Complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::key::LearnerKey;

    #[test]
    fn grouping_puts_containers_of_a_workload_together_and_skips_host() {
        let ps = vec![
            Profile::new(LearnerKey::new("a", "Deployment", "w", "z"), 0),
            Profile::new(LearnerKey::host("node"), 0),
            Profile::new(LearnerKey::new("a", "Deployment", "w", "b"), 0),
            Profile::new(LearnerKey::new("a", "StatefulSet", "w", "b"), 0),
        ];
        let (ws, skipped) = group_by_workload(&ps);
        assert_eq!(ws.len(), 2);
        let names: Vec<&str> = ws[0]
            .profiles
            .iter()
            .map(|p| p.key.container.as_str())
            .collect();
        assert_eq!(names, ["b", "z"]);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].1, Skip::Host);
    }
}
