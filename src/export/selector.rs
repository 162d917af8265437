//! Learned pod selectors (`--selector learned`): for each workload, the
//! smallest set of labels that every pod of the workload carried and no pod
//! of another learned workload of its namespace carried, so an exported
//! object selects the workload's pods by the labels they already have.
//!
//! The search, per workload W of namespace N:
//! - W's selectable labels: those every label set of every learner of W holds
//!   with the same value (all containers, all pods), minus the labels that
//!   name one pod, rollout or run ([`never_selects`]).
//! - candidates: subsets of at most [`MAX_SELECTOR_LABELS`] of the best
//!   [`MAX_CANDIDATE_LABELS`] of them (well-known keys first), so the search
//!   stays small whatever the pods carry.
//! - a subset qualifies when no label set of any other workload of N holds
//!   all of it with equal values; the best qualifying one wins: fewest keys
//!   outside [`WELL_KNOWN`], then fewest keys, then the better-known keys, then
//!   key order.
//!
//! When nothing qualifies, or another workload of N has no labels learned
//! (its pods could carry anything), W falls back to the workload-label
//! selector, with the reason ([`Fallback`]). A learner keeps at most
//! `MAX_LABEL_SETS` label sets: one that reached the bound may have missed
//! some, so its workload's labels count as not fully learned (for itself and
//! for its neighbours).
use std::collections::{BTreeMap, BTreeSet};

use crate::learner::pod_labels::{LabelSet, INSTANCE_LABELS, MAX_LABEL_SETS};

use super::grouping::{Workload, WorkloadId};

/// Keys preferred in a selector, best first: they name an application and
/// are stable across rollouts.
pub const WELL_KNOWN: [&str; 4] = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app",
    "k8s-app",
];
/// A selector has at most this many labels.
pub const MAX_SELECTOR_LABELS: usize = 3;
/// Only this many of a workload's selectable labels (best first) are tried.
pub const MAX_CANDIDATE_LABELS: usize = 16;
/// A CronJob's pods carry their run's Job name: it changes every run.
pub const CRONJOB_RUN_LABELS: [&str; 2] = ["job-name", "batch.kubernetes.io/job-name"];

/// Whether label `key` can never select a workload of `kind`: it names one
/// pod, rollout or run (`INSTANCE_LABELS`, and a CronJob run's Job name).
pub fn never_selects(kind: &str, key: &str) -> bool {
    INSTANCE_LABELS.contains(&key)
        || (kind.eq_ignore_ascii_case("CronJob") && CRONJOB_RUN_LABELS.contains(&key))
}

/// A selector learned from a workload's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    pub labels: LabelSet,
    /// Distinct pods the workload's learners saw (within their bounds).
    pub pods: usize,
    /// Distinct label sets among them.
    pub sets: usize,
}

/// Why a workload has no learned selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// None of its learners learned a pod's labels (profiles from before pod
    /// labels were learned, or pods without labels).
    NoLabels,
    /// Its pods share no label that can select them (after dropping the
    /// labels naming one pod, rollout or run).
    NoCommonLabels,
    /// Pods of these workloads of the namespace carry every label its pods
    /// share: no label set tells them apart.
    SharesLabels(Vec<WorkloadId>),
    /// Told apart only by more than `MAX_SELECTOR_LABELS` labels, or not by
    /// the `MAX_CANDIDATE_LABELS` best ones.
    NeedsMoreLabels,
    /// These workloads of the namespace have no labels learned (or not all:
    /// a learner at the label-set bound): any selector might select their
    /// pods too.
    UnknownNeighbours(Vec<WorkloadId>),
    /// One of its learners reached the bound of label sets: pods with sets
    /// not kept might lack any chosen label.
    TooManyLabelSets,
}

impl Fallback {
    /// A short, stable name for counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoLabels => "without pod labels learned",
            Self::NoCommonLabels => "without a label all their pods share",
            Self::SharesLabels(_) => "sharing all their labels with another workload",
            Self::NeedsMoreLabels => "told apart only by more labels than the search tries",
            Self::UnknownNeighbours(_) => "beside a workload without labels learned",
            Self::TooManyLabelSets => "with more label sets than a learner keeps",
        }
    }

    /// The full reason.
    pub fn reason(&self) -> String {
        let ids = |ws: &[WorkloadId]| {
            ws.iter()
                .map(|w| format!("{}/{}", w.kind, w.workload))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Self::NoLabels => "no pod labels learned".to_string(),
            Self::NoCommonLabels => {
                "its pods share no label that can select them (labels naming a pod, rollout or run never do)".to_string()
            }
            Self::SharesLabels(ws) => format!(
                "pods of {} carry every label its pods share",
                ids(ws)
            ),
            Self::NeedsMoreLabels => format!(
                "no set of at most {MAX_SELECTOR_LABELS} of its {MAX_CANDIDATE_LABELS} best labels tells its pods apart"
            ),
            Self::TooManyLabelSets => format!(
                "a learner of it reached the bound of {MAX_LABEL_SETS} label sets: pods with sets not kept might lack any chosen label"
            ),
            Self::UnknownNeighbours(ws) => format!(
                "{} in its namespace {} no labels (or not all) learned, so any selector could select {} pods too",
                ids(ws),
                if ws.len() == 1 { "has" } else { "have" },
                if ws.len() == 1 { "its" } else { "their" },
            ),
        }
    }
}

/// A workload's selector choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Learned(Learned),
    Fallback(Fallback),
}

/// Every label set of a workload's learners.
pub fn label_sets<'a>(w: &'a Workload<'_>) -> BTreeSet<&'a LabelSet> {
    w.profiles
        .iter()
        .flat_map(|p| p.pod_labels.sets.keys())
        .collect()
}

/// Whether a learner of `w` reached the label-set bound (sets may be missing).
pub fn saturated(w: &Workload<'_>) -> bool {
    w.profiles
        .iter()
        .any(|p| p.pod_labels.sets.len() >= MAX_LABEL_SETS)
}

/// Distinct pods of a workload's learners.
pub fn pod_count(w: &Workload<'_>) -> usize {
    let pods: BTreeSet<&String> = w
        .profiles
        .iter()
        .flat_map(|p| p.pod_labels.sets.values().flatten())
        .collect();
    pods.len()
}

/// The labels every label set of `w` holds with the same value, minus those
/// that never select.
pub fn selectable(w: &Workload<'_>) -> LabelSet {
    let sets = label_sets(w);
    let mut it = sets.into_iter();
    let Some(first) = it.next() else {
        return LabelSet::new();
    };
    let mut common: LabelSet = first
        .iter()
        .filter(|(k, _)| !never_selects(&w.id.kind, k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for s in it {
        common.retain(|k, v| s.get(k) == Some(v));
    }
    common
}

fn well_known_rank(key: &str) -> usize {
    WELL_KNOWN
        .iter()
        .position(|k| *k == key)
        .unwrap_or(WELL_KNOWN.len())
}

/// Keys ordered best first: well-known ones in their order, then by key.
pub fn ranked_keys(labels: &LabelSet) -> Vec<&str> {
    let mut keys: Vec<&str> = labels.keys().map(String::as_str).collect();
    keys.sort_by_key(|k| (well_known_rank(k), *k));
    keys
}

/// Every subset of `keys` with 1..=`max` elements, in index order.
fn subsets<'a>(keys: &[&'a str], max: usize) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut stack: Vec<(usize, Vec<&'a str>)> = vec![(0, Vec::new())];
    while let Some((from, cur)) = stack.pop() {
        if !cur.is_empty() {
            out.push(cur.clone());
        }
        if cur.len() == max {
            continue;
        }
        for (i, k) in keys.iter().enumerate().skip(from) {
            let mut next = cur.clone();
            next.push(k);
            stack.push((i + 1, next));
        }
    }
    out
}

/// Whether `set` holds every label of `chosen` with its value.
fn carries(set: &LabelSet, chosen: &[(&str, &str)]) -> bool {
    chosen
        .iter()
        .all(|(k, v)| set.get(*k).map(String::as_str) == Some(*v))
}

/// The best qualifying subset of `common` against the `others`' label sets.
fn search(common: &LabelSet, others: &[&LabelSet]) -> Option<LabelSet> {
    let keys: Vec<&str> = ranked_keys(common)
        .into_iter()
        .take(MAX_CANDIDATE_LABELS)
        .collect();
    let mut candidates = subsets(&keys, MAX_SELECTOR_LABELS);
    candidates.sort_by_cached_key(|c| {
        let mut ranks: Vec<usize> = c.iter().map(|k| well_known_rank(k)).collect();
        ranks.sort_unstable();
        let unknown = ranks.iter().filter(|r| **r == WELL_KNOWN.len()).count();
        let mut sorted = c.clone();
        sorted.sort_unstable();
        (unknown, c.len(), ranks, sorted)
    });
    candidates.into_iter().find_map(|c| {
        let chosen: Vec<(&str, &str)> = c
            .iter()
            .filter_map(|k| common.get(*k).map(|v| (*k, v.as_str())))
            .collect();
        (!others.iter().any(|s| carries(s, &chosen))).then(|| {
            chosen
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
    })
}

/// The selector choice of every workload (each compared with the others of
/// its namespace).
pub fn choose(workloads: &[Workload<'_>]) -> BTreeMap<WorkloadId, Choice> {
    let mut by_ns: BTreeMap<&str, Vec<&Workload<'_>>> = BTreeMap::new();
    for w in workloads {
        by_ns.entry(w.id.namespace.as_str()).or_default().push(w);
    }
    let mut out = BTreeMap::new();
    for ws in by_ns.values() {
        let sets: Vec<BTreeSet<&LabelSet>> = ws.iter().map(|w| label_sets(w)).collect();
        for (i, w) in ws.iter().enumerate() {
            out.insert(w.id.clone(), choose_one(i, ws, &sets));
        }
    }
    out
}

fn choose_one(i: usize, ws: &[&Workload<'_>], sets: &[BTreeSet<&LabelSet>]) -> Choice {
    let w = ws[i];
    if sets[i].is_empty() {
        return Choice::Fallback(Fallback::NoLabels);
    }
    if saturated(w) {
        return Choice::Fallback(Fallback::TooManyLabelSets);
    }
    let common = selectable(w);
    if common.is_empty() {
        return Choice::Fallback(Fallback::NoCommonLabels);
    }
    let unknown: Vec<WorkloadId> = (0..ws.len())
        .filter(|j| *j != i && (sets[*j].is_empty() || saturated(ws[*j])))
        .map(|j| ws[j].id.clone())
        .collect();
    if !unknown.is_empty() {
        return Choice::Fallback(Fallback::UnknownNeighbours(unknown));
    }
    let others: Vec<&LabelSet> = (0..ws.len())
        .filter(|j| *j != i)
        .flat_map(|j| sets[j].iter().copied())
        .collect();
    if let Some(labels) = search(&common, &others) {
        return Choice::Learned(Learned {
            labels,
            pods: pod_count(w),
            sets: sets[i].len(),
        });
    }
    let all: Vec<(&str, &str)> = common
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let sharing: Vec<WorkloadId> = (0..ws.len())
        .filter(|j| *j != i && sets[*j].iter().any(|s| carries(s, &all)))
        .map(|j| ws[j].id.clone())
        .collect();
    if sharing.is_empty() {
        Choice::Fallback(Fallback::NeedsMoreLabels)
    } else {
        Choice::Fallback(Fallback::SharesLabels(sharing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::grouping::group_by_workload;
    use crate::learner::key::LearnerKey;
    use crate::learner::profile::Profile;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn profile(
        ns: &str,
        kind: &str,
        w: &str,
        c: &str,
        sets: &[(&[(&str, &str)], &str)],
    ) -> Profile {
        let mut p = Profile::new(LearnerKey::new(ns, kind, w, c), 0);
        for (l, pod) in sets {
            p.pod_labels.observe(labels(l), pod);
        }
        p
    }

    fn chosen(ps: &[Profile]) -> BTreeMap<String, Choice> {
        let (ws, _) = group_by_workload(ps);
        choose(&ws)
            .into_iter()
            .map(|(id, c)| (id.workload, c))
            .collect()
    }

    fn learned(c: &Choice) -> Vec<(&str, &str)> {
        match c {
            Choice::Learned(l) => l
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            other => panic!("not learned: {other:?}"),
        }
    }

    #[test]
    fn well_known_labels_win_and_rollout_labels_never_qualify() {
        let ps = vec![
            profile(
                "shop",
                "Deployment",
                "web",
                "nginx",
                &[
                    (
                        &[
                            ("app.kubernetes.io/name", "web"),
                            ("tier", "front"),
                            ("version", "1"),
                        ],
                        "web-a",
                    ),
                    (
                        &[
                            ("app.kubernetes.io/name", "web"),
                            ("tier", "front"),
                            ("version", "2"),
                        ],
                        "web-b",
                    ),
                ],
            ),
            profile(
                "shop",
                "Deployment",
                "web",
                "envoy",
                &[(
                    &[
                        ("app.kubernetes.io/name", "web"),
                        ("tier", "front"),
                        ("version", "2"),
                    ],
                    "web-b",
                )],
            ),
            profile(
                "shop",
                "StatefulSet",
                "db",
                "pg",
                &[(&[("app", "db"), ("tier", "back")], "db-0")],
            ),
            profile(
                "shop",
                "CronJob",
                "report",
                "r",
                &[
                    (&[("job-name", "report-1"), ("tier", "batch")], "report-1-x"),
                    (&[("job-name", "report-1"), ("tier", "batch")], "report-1-y"),
                ],
            ),
        ];
        let c = chosen(&ps);
        assert_eq!(learned(&c["web"]), [("app.kubernetes.io/name", "web")]);
        match &c["web"] {
            Choice::Learned(l) => assert_eq!((l.pods, l.sets), (2, 2)),
            _ => unreachable!(),
        }
        assert_eq!(learned(&c["db"]), [("app", "db")]);
        // A CronJob's run name never selects, even when one run was seen.
        assert_eq!(learned(&c["report"]), [("tier", "batch")]);
    }

    #[test]
    fn fewest_labels_then_combinations_then_fallbacks() {
        let ps = vec![
            profile(
                "a",
                "Deployment",
                "x",
                "c",
                &[(&[("team", "t1"), ("role", "api")], "x-1")],
            ),
            profile(
                "a",
                "Deployment",
                "y",
                "c",
                &[(&[("team", "t1"), ("role", "web")], "y-1")],
            ),
            profile(
                "a",
                "Deployment",
                "z",
                "c",
                &[(&[("team", "t2"), ("role", "api")], "z-1")],
            ),
            // Twins: same labels.
            profile(
                "b",
                "Deployment",
                "t1",
                "c",
                &[(&[("app", "same")], "t1-1")],
            ),
            profile(
                "b",
                "Deployment",
                "t2",
                "c",
                &[(&[("app", "same")], "t2-1")],
            ),
            // No labels at all, and a neighbour of one without labels learned.
            profile("c", "Deployment", "bare", "c", &[(&[], "bare-1")]),
            profile("c", "Deployment", "old", "c", &[]),
        ];
        let c = chosen(&ps);
        assert_eq!(learned(&c["x"]), [("role", "api"), ("team", "t1")]);
        assert_eq!(learned(&c["y"]), [("role", "web")]);
        assert_eq!(learned(&c["z"]), [("team", "t2")]);
        let t2 = WorkloadId {
            namespace: "b".into(),
            kind: "Deployment".into(),
            workload: "t2".into(),
        };
        assert_eq!(c["t1"], Choice::Fallback(Fallback::SharesLabels(vec![t2])));
        assert_eq!(c["bare"], Choice::Fallback(Fallback::NoCommonLabels));
        assert_eq!(c["old"], Choice::Fallback(Fallback::NoLabels));
    }

    #[test]
    fn unknown_neighbours_and_long_searches_fall_back() {
        let ps = vec![
            profile("a", "Deployment", "x", "c", &[(&[("app", "x")], "x-1")]),
            profile("a", "Deployment", "old", "c", &[]),
        ];
        let c = chosen(&ps);
        assert!(
            matches!(&c["x"], Choice::Fallback(Fallback::UnknownNeighbours(v)) if v.len() == 1)
        );
        // w is told apart from each of four neighbours by one of four labels
        // only: it needs all four, more than the search tries.
        let keys = ["a", "b", "c", "d"];
        let mine: Vec<(&str, &str)> = keys.iter().map(|k| (*k, "1")).collect();
        let mut ps = vec![profile("n", "Deployment", "w", "c", &[(&mine, "w-1")])];
        let others: Vec<Vec<(&str, &str)>> = (0..4)
            .map(|i| {
                keys.iter()
                    .enumerate()
                    .map(|(j, k)| (*k, if i == j { "2" } else { "1" }))
                    .collect()
            })
            .collect();
        for (i, o) in others.iter().enumerate() {
            ps.push(profile(
                "n",
                "Deployment",
                &format!("o{i}"),
                "c",
                &[(o, "o")],
            ));
        }
        assert_eq!(
            chosen(&ps)["w"],
            Choice::Fallback(Fallback::NeedsMoreLabels)
        );
        // A learner at the label-set bound: itself and its neighbours fall back.
        let sets: Vec<Vec<(String, String)>> = (0..MAX_LABEL_SETS)
            .map(|i| {
                vec![
                    ("app".to_string(), "big".to_string()),
                    ("v".to_string(), i.to_string()),
                ]
            })
            .collect();
        let sets: Vec<Vec<(&str, &str)>> = sets
            .iter()
            .map(|s| s.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
            .collect();
        let refs: Vec<(&[(&str, &str)], &str)> = sets.iter().map(|s| (s.as_slice(), "p")).collect();
        let ps = vec![
            profile("m", "Deployment", "big", "c", &refs),
            profile(
                "m",
                "Deployment",
                "small",
                "c",
                &[(&[("app", "small")], "s-1")],
            ),
        ];
        let c = chosen(&ps);
        assert_eq!(c["big"], Choice::Fallback(Fallback::TooManyLabelSets));
        assert!(matches!(
            &c["small"],
            Choice::Fallback(Fallback::UnknownNeighbours(_))
        ));
    }

    #[test]
    fn many_labels_stay_bounded_and_hostile_values_are_kept() {
        let many: Vec<(String, String)> = (0..64)
            .map(|i| (format!("k{i:02}"), "v".to_string()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let ps = vec![
            profile("n", "Deployment", "w", "c", &[(&many, "w-1")]),
            profile(
                "n",
                "Deployment",
                "q",
                "c",
                &[(&[("app", "it's \"q\"")], "q-1")],
            ),
        ];
        let c = chosen(&ps);
        assert_eq!(learned(&c["w"]), [("k00", "v")]);
        assert_eq!(learned(&c["q"]), [("app", "it's \"q\"")]);
        assert_eq!(subsets(&["a", "b", "c", "d"], 3).len(), 4 + 6 + 4);
    }
}
