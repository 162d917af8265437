//! What to do about the observe policies, from what Tetragon lists: pure, so
//! every case (loaded, refused by the kernel, disabled, an old Tetragon) is a
//! unit test. The runner lists, calls `plan`, adds what it says, and lists
//! again at its next round.
use std::collections::BTreeMap;

use serde::Serialize;

use super::policy::{HookViewChoice, ObserveShape};
use crate::learner::hook_view::HookView;

/// One of Tetragon's listed policies, as far as the plan cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub state: ListedState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListedState {
    Enabled,
    /// Tetragon could not load it (its `error`): the kernel lacks the hook or
    /// the helper. It stays listed until deleted.
    LoadError(String),
    /// Loading, disabled, ...: Tetragon's state name.
    Other(String),
}

/// Where one view stands, for the log, `/readyz` and the metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ViewStatus {
    /// Its policy is loaded: Tetragon reports this view for every exec.
    Active { shape: ObserveShape, policy: String },
    /// Being added, or listed in a transient state.
    Pending { shape: ObserveShape, detail: String },
    /// No shape of this view can load here; why, per shape tried.
    Unavailable { reason: String },
}

impl ViewStatus {
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Active { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Policies to add now, at most one per view.
    pub add: Vec<ObserveShape>,
    pub views: BTreeMap<HookView, ViewStatus>,
}

/// The plan for `choice`, given Tetragon's list and the adds that failed
/// without leaving a listed entry (their gRPC error).
pub fn plan(
    choice: HookViewChoice,
    listed: &[Listed],
    failed_adds: &BTreeMap<ObserveShape, String>,
) -> Plan {
    let mut out = Plan::default();
    for (view, shapes) in choice.candidates() {
        let mut refused = Vec::new();
        let mut status = None;
        for shape in shapes {
            let name = shape.policy_name();
            match listed.iter().find(|l| l.name == name).map(|l| &l.state) {
                Some(ListedState::Enabled) => {
                    status = Some(ViewStatus::Active {
                        shape,
                        policy: name.to_string(),
                    });
                }
                Some(ListedState::LoadError(e)) => {
                    refused.push(format!("{} ({name}) failed to load: {e}", shape.as_str()));
                    continue;
                }
                Some(ListedState::Other(state)) => {
                    status = Some(ViewStatus::Pending {
                        shape,
                        detail: format!("{name} is {state}"),
                    });
                }
                None => match failed_adds.get(&shape) {
                    Some(e) => {
                        refused.push(format!("{} ({name}) was refused: {e}", shape.as_str()));
                        continue;
                    }
                    None => {
                        out.add.push(shape);
                        status = Some(ViewStatus::Pending {
                            shape,
                            detail: format!("adding {name}"),
                        });
                    }
                },
            }
            break;
        }
        let status = status.unwrap_or_else(|| ViewStatus::Unavailable {
            reason: refused.join("; "),
        });
        out.views.insert(view, status);
    }
    out
}

/// Every wanted view unavailable for one reason (Tetragon cannot be asked).
pub fn all_unavailable(choice: HookViewChoice, reason: &str) -> BTreeMap<HookView, ViewStatus> {
    choice
        .candidates()
        .into_iter()
        .map(|(view, _)| {
            (
                view,
                ViewStatus::Unavailable {
                    reason: reason.to_string(),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, state: ListedState) -> Listed {
        Listed {
            name: name.into(),
            state,
        }
    }

    #[test]
    fn nothing_listed_adds_the_first_shape_of_each_view() {
        let p = plan(HookViewChoice::All, &[], &BTreeMap::new());
        assert_eq!(p.add, vec![ObserveShape::Kprobe, ObserveShape::Tracepoint]);
        assert!(p
            .views
            .values()
            .all(|v| matches!(v, ViewStatus::Pending { .. })));
    }

    #[test]
    fn loaded_policies_are_active_and_not_added_again() {
        let l = [
            listed("tetragon-learner-observe-exec-loaded", ListedState::Enabled),
            listed(
                "tetragon-learner-observe-exec-opened-kprobe",
                ListedState::Enabled,
            ),
            listed("someone-elses", ListedState::Enabled),
        ];
        let p = plan(HookViewChoice::All, &l, &BTreeMap::new());
        assert!(p.add.is_empty());
        assert!(p.views.values().all(ViewStatus::is_active));
    }

    #[test]
    fn a_kprobe_the_kernel_refuses_falls_back_to_lsm_then_says_why() {
        let kprobe_err = "could not find BPF programs: bpf_generic_kprobe_v61.o";
        let l = [listed(
            "tetragon-learner-observe-exec-opened-kprobe",
            ListedState::LoadError(kprobe_err.into()),
        )];
        let p = plan(HookViewChoice::Opened, &l, &BTreeMap::new());
        assert_eq!(p.add, vec![ObserveShape::Lsm]);
        // LSM refused too (its add failed): unavailable, both reasons kept.
        let failed = BTreeMap::from([(
            ObserveShape::Lsm,
            "does you kernel support the bpf LSM?".to_string(),
        )]);
        let p = plan(HookViewChoice::Opened, &l, &failed);
        assert!(p.add.is_empty());
        let ViewStatus::Unavailable { reason } = &p.views[&HookView::Opened] else {
            panic!("{:?}", p.views);
        };
        assert!(
            reason.contains(kprobe_err) && reason.contains("bpf LSM"),
            "{reason}"
        );
    }

    #[test]
    fn off_loads_nothing_and_a_disabled_policy_is_pending() {
        assert_eq!(
            plan(HookViewChoice::Off, &[], &BTreeMap::new()),
            Plan::default()
        );
        let l = [listed(
            "tetragon-learner-observe-exec-loaded",
            ListedState::Other("TP_STATE_DISABLED".into()),
        )];
        let p = plan(HookViewChoice::Loaded, &l, &BTreeMap::new());
        assert!(p.add.is_empty());
        assert!(matches!(
            p.views[&HookView::Loaded],
            ViewStatus::Pending { .. }
        ));
    }
}
