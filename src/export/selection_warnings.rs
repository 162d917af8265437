//! The stderr warnings about how policies select pods and pack workloads:
//! workloads left on the workload-label selector (and why), what
//! `--group namespace` adds to each workload's list, and namespace policies
//! that select every pod. Same form as `warnings`: one summary line each,
//! the items under `--verbose`.
use std::collections::BTreeMap;

use super::grouping::WorkloadId;
use super::packing::Gain;
use super::selector::Choice;
use super::warnings::Warning;

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// Workloads whose labels could not select them: one summary with the count
/// per reason, one `Kind ns/name: reason` detail each.
pub fn selector_fallbacks(
    choices: &BTreeMap<WorkloadId, Choice>,
    workload_label: &str,
) -> Option<Warning> {
    let fallbacks: Vec<_> = choices
        .iter()
        .filter_map(|(id, c)| match c {
            Choice::Fallback(f) => Some((id, f)),
            Choice::Learned(_) => None,
        })
        .collect();
    let n = fallbacks.len();
    if n == 0 {
        return None;
    }
    let mut per_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, f) in &fallbacks {
        *per_kind.entry(f.kind()).or_default() += 1;
    }
    let counts: Vec<String> = per_kind.iter().map(|(k, c)| format!("{c} {k}")).collect();
    Some(Warning {
        summary: format!(
            "{n} of {} {} no learned pod selector and {} the workload label {workload_label} ({}): until {} pod {} {workload_label}=<workload name>, {} nothing",
            choices.len(),
            plural(n, "workload has", "workloads have"),
            plural(n, "falls back to", "fall back to"),
            counts.join(", "),
            plural(n, "its", "their"),
            plural(n, "template carries", "templates carry"),
            plural(n, "its policy enforces", "their policies enforce"),
        ),
        details: fallbacks
            .into_iter()
            .map(|(id, f)| format!("{} {}/{}: {}", id.kind, id.namespace, id.workload, f.reason()))
            .collect(),
    })
}

/// `--group namespace`: workloads whose namespace list is longer than their
/// own, with how many entries each gains.
pub fn gains(gains: &[Gain]) -> Option<Warning> {
    let gaining: Vec<&Gain> = gains.iter().filter(|g| g.union > g.own).collect();
    let n = gaining.len();
    if n == 0 {
        return None;
    }
    let max = gaining.iter().map(|g| g.union - g.own).max().unwrap_or(0);
    let total: usize = gaining.iter().map(|g| g.union - g.own).sum();
    Some(Warning {
        summary: format!(
            "--group namespace: {n} of {} workloads {} allowed executables {} never ran (up to {max}, {total} in all): each namespace's policy allows what any of its workloads ran; export with --group workload for per-workload lists",
            gains.len(),
            plural(n, "is", "are"),
            plural(n, "it", "they"),
        ),
        details: gaining
            .into_iter()
            .map(|g| {
                format!(
                    "{} {}/{}: +{} ({} of its own, {} in the namespace's list)",
                    g.id.kind,
                    g.id.namespace,
                    g.id.workload,
                    g.union - g.own,
                    g.own,
                    g.union
                )
            })
            .collect(),
    })
}

/// `--group namespace`: namespaces whose policy has no pod selector.
pub fn whole_namespace(namespaces: &[String]) -> Option<Warning> {
    let n = namespaces.len();
    if n == 0 {
        return None;
    }
    Some(Warning {
        summary: format!(
            "--group namespace: {n} {} no label every learned pod carries, so {} every pod of the namespace (with one of the learned container names), including pods of workloads the agent never learned, which the union list may deny",
            plural(n, "namespace has", "namespaces have"),
            plural(n, "its policy selects", "their policies select"),
        ),
        details: namespaces.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::selector::{Fallback, Learned};

    fn id(w: &str) -> WorkloadId {
        WorkloadId {
            namespace: "ns".into(),
            kind: "Deployment".into(),
            workload: w.into(),
        }
    }

    #[test]
    fn fallbacks_are_counted_per_reason() {
        let choices = BTreeMap::from([
            (id("a"), Choice::Fallback(Fallback::NoLabels)),
            (
                id("b"),
                Choice::Fallback(Fallback::SharesLabels(vec![id("c")])),
            ),
            (
                id("c"),
                Choice::Fallback(Fallback::SharesLabels(vec![id("b")])),
            ),
            (
                id("d"),
                Choice::Learned(Learned {
                    labels: [("app".to_string(), "d".to_string())].into(),
                    pods: 1,
                    sets: 1,
                }),
            ),
        ]);
        let w = selector_fallbacks(&choices, "tetragon-learner.io/workload").expect("warning");
        assert!(
            w.summary.starts_with("3 of 4 workloads have no learned pod selector and fall back to the workload label tetragon-learner.io/workload (2 sharing all their labels with another workload, 1 without pod labels learned)"),
            "{}",
            w.summary
        );
        assert_eq!(w.details[0], "Deployment ns/a: no pod labels learned");
        assert_eq!(
            w.details[1],
            "Deployment ns/b: pods of Deployment/c carry every label its pods share"
        );
        assert_eq!(selector_fallbacks(&BTreeMap::new(), "x"), None);
    }

    #[test]
    fn gains_say_how_much_looser_each_list_is() {
        let g = [
            Gain {
                id: id("a"),
                own: 2,
                union: 5,
            },
            Gain {
                id: id("b"),
                own: 5,
                union: 5,
            },
        ];
        let w = gains(&g).expect("warning");
        assert!(w.summary.starts_with("--group namespace: 1 of 2 workloads is allowed executables it never ran (up to 3, 3 in all)"), "{}", w.summary);
        assert_eq!(
            w.details,
            ["Deployment ns/a: +3 (2 of its own, 5 in the namespace's list)"]
        );
        assert_eq!(gains(&g[1..]), None);
    }
}
