//! The labels of the pods a learner's container ran in: what an exported
//! policy can select pods by without relabelling anything. Kept per distinct
//! label set, with the pods seen carrying it; bounded, since labels come from
//! whoever creates pods.
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Label keys whose value is one pod's (or one rollout's, one run's): they
/// would make every pod a set of its own, and never select a workload.
/// Dropped when learned.
pub const INSTANCE_LABELS: [&str; 7] = [
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "batch.kubernetes.io/controller-uid",
    "controller-uid",
    "batch.kubernetes.io/job-completion-index",
];

/// At most this many distinct label sets per learner (a rollout that changes
/// a label adds one); later sets are not kept.
pub const MAX_LABEL_SETS: usize = 16;
/// At most this many pod names per set (enough to say "from N pods").
pub const MAX_PODS_PER_SET: usize = 64;
/// A set with more labels, or a longer key or value, than Kubernetes allows
/// (keys 317 bytes with prefix, values 63) is not kept.
pub const MAX_LABELS: usize = 64;
const MAX_KEY: usize = 317;
const MAX_VALUE: usize = 63;

pub type LabelSet = BTreeMap<String, String>;

/// Label sets seen, each with the pods that carried it. Serialized as its
/// JSON view (a map keyed by maps has no JSON form).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Vec<PodLabelSetView>", from = "Vec<PodLabelSetView>")]
pub struct PodLabels {
    pub sets: BTreeMap<LabelSet, BTreeSet<String>>,
}

/// `labels` without the instance-specific keys, or `None` when it is not a
/// Kubernetes label set (too many labels, over-long keys or values).
pub fn learnable_labels<'a>(
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<LabelSet> {
    let mut out = LabelSet::new();
    for (k, v) in labels {
        if k.is_empty() || k.len() > MAX_KEY || v.len() > MAX_VALUE {
            return None;
        }
        if INSTANCE_LABELS.contains(&k) {
            continue;
        }
        out.insert(k.to_owned(), v.to_owned());
        if out.len() > MAX_LABELS {
            return None;
        }
    }
    Some(out)
}

impl PodLabels {
    /// Pod `pod` carried `labels`; true when something was added.
    pub fn observe(&mut self, labels: LabelSet, pod: &str) -> bool {
        if !self.sets.contains_key(&labels) && self.sets.len() >= MAX_LABEL_SETS {
            return false;
        }
        let pods = self.sets.entry(labels).or_default();
        if pods.contains(pod) || pods.len() >= MAX_PODS_PER_SET {
            return false;
        }
        pods.insert(pod.to_owned())
    }

    /// Union with another node's, each bound kept by keeping the smallest
    /// sets and pod names: commutative and associative.
    pub fn merge(&mut self, other: &PodLabels) {
        for (labels, pods) in &other.sets {
            let mine = self.sets.entry(labels.clone()).or_default();
            mine.extend(pods.iter().cloned());
            while mine.len() > MAX_PODS_PER_SET {
                mine.pop_last();
            }
        }
        while self.sets.len() > MAX_LABEL_SETS {
            self.sets.pop_last();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Distinct pods seen, over every set (bounded by the sets' bounds).
    pub fn pods(&self) -> usize {
        let all: BTreeSet<&String> = self.sets.values().flatten().collect();
        all.len()
    }
}

impl From<PodLabels> for Vec<PodLabelSetView> {
    fn from(p: PodLabels) -> Self {
        p.to_view()
    }
}

impl From<Vec<PodLabelSetView>> for PodLabels {
    fn from(v: Vec<PodLabelSetView>) -> Self {
        PodLabels::from_view(&v)
    }
}

/// The JSON form: `[{"labels": {...}, "pods": [...]}]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodLabelSetView {
    pub labels: LabelSet,
    pub pods: Vec<String>,
}

impl PodLabels {
    pub fn to_view(&self) -> Vec<PodLabelSetView> {
        self.sets
            .iter()
            .map(|(labels, pods)| PodLabelSetView {
                labels: labels.clone(),
                pods: pods.iter().cloned().collect(),
            })
            .collect()
    }

    /// Read back from the JSON form (bounds applied).
    pub fn from_view(view: &[PodLabelSetView]) -> Self {
        let mut out = PodLabels::default();
        for set in view {
            let mut one = PodLabels::default();
            one.sets
                .insert(set.labels.clone(), set.pods.iter().cloned().collect());
            out.merge(&one);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_labels_are_dropped_and_sets_counted_by_pod() {
        let raw = [
            ("app", "web"),
            ("pod-template-hash", "5d8f7c6b9d"),
            ("app.kubernetes.io/instance", "web-prod"),
        ];
        let l = learnable_labels(raw).unwrap();
        assert_eq!(
            l,
            LabelSet::from([
                ("app".into(), "web".into()),
                ("app.kubernetes.io/instance".into(), "web-prod".into())
            ])
        );
        let mut p = PodLabels::default();
        assert!(p.observe(l.clone(), "web-5d8f7c6b9d-abcde"));
        assert!(!p.observe(l.clone(), "web-5d8f7c6b9d-abcde"));
        assert!(p.observe(l, "web-5d8f7c6b9d-fghij"));
        assert_eq!(p.pods(), 2);
    }

    #[test]
    fn bounded_and_refuses_what_kubernetes_would() {
        assert_eq!(learnable_labels([("app", &*"x".repeat(64))]), None);
        let mut p = PodLabels::default();
        for i in 0..40 {
            let l = LabelSet::from([("v".to_string(), i.to_string())]);
            p.observe(l, "pod");
        }
        assert_eq!(p.sets.len(), MAX_LABEL_SETS);
        let l = LabelSet::from([("v".to_string(), "0".to_string())]);
        for i in 0..100 {
            p.observe(l.clone(), &format!("pod-{i}"));
        }
        assert_eq!(p.sets[&l].len(), MAX_PODS_PER_SET);
    }

    #[test]
    fn merge_is_commutative_at_the_bounds() {
        let mk = |from: usize| {
            let mut p = PodLabels::default();
            for i in from..from + 12 {
                p.observe(LabelSet::from([("v".to_string(), format!("{i:02}"))]), "a");
            }
            p
        };
        let (a, b) = (mk(0), mk(8));
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert_eq!(ab.sets.len(), MAX_LABEL_SETS);
    }
}
