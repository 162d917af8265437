//! The few Kubernetes types a generated object needs (`ObjectMeta`,
//! `LabelSelector`), and the metadata and pod selector every exported object
//! of a workload carries.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::annotations::ANNOTATION_PREFIX;
use super::error::ExportError;
use super::grouping::{Workload, WorkloadId};
use super::names::{is_label_key, object_name, workload_label_value};
use super::options::{ExportOptions, SelectorMode};
use super::selector::{self, Choice};

/// `app.kubernetes.io/managed-by` value on every generated object.
pub const MANAGED_BY: &str = "tetragon-learner";

/// The part of Kubernetes `ObjectMeta` a generated object sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub name: String,
    /// Empty (and left out) for a cluster-scoped object.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// The metadata every exported object of workload `id` carries.
    pub fn for_workload(id: &WorkloadId, annotations: BTreeMap<String, String>) -> Self {
        Self {
            name: object_name(&id.kind, &id.workload),
            namespace: id.namespace.clone(),
            labels: object_labels(),
            annotations,
        }
    }

    /// The metadata of a cluster-scoped object (no namespace).
    pub fn cluster_scoped(name: String, annotations: BTreeMap<String, String>) -> Self {
        Self {
            name,
            namespace: String::new(),
            labels: object_labels(),
            annotations,
        }
    }
}

/// A Kubernetes label selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// `{matchExpressions: [{key, operator: In, values}]}` (values sorted).
pub fn is_in(key: &str, values: std::collections::BTreeSet<String>) -> LabelSelector {
    LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![LabelSelectorRequirement {
            key: key.to_string(),
            operator: "In".to_string(),
            values: values.into_iter().collect(),
        }],
    }
}

/// The selector of a workload's pods: `{<label key>: <workload label value>}`.
pub fn workload_pod_selector(
    w: &Workload<'_>,
    opts: &ExportOptions,
) -> Result<LabelSelector, ExportError> {
    if !is_label_key(&opts.workload_label) {
        return Err(ExportError::BadLabelKey(opts.workload_label.clone()));
    }
    Ok(LabelSelector {
        match_labels: BTreeMap::from([(
            opts.workload_label.clone(),
            workload_label_value(&w.id.workload),
        )]),
        match_expressions: Vec::new(),
    })
}

/// The selector choices of `workloads` under `opts`: learned ones (with
/// their fallbacks) for `--selector learned`, none for `workload-label`.
pub fn selector_choices(
    workloads: &[Workload<'_>],
    opts: &ExportOptions,
) -> BTreeMap<WorkloadId, Choice> {
    match opts.selector {
        SelectorMode::Learned => selector::choose(workloads),
        SelectorMode::WorkloadLabel => BTreeMap::new(),
    }
}

/// The pod selector of workload `w` (its learned labels, else the workload
/// label), and the `selector` annotation saying which and why.
pub fn pod_selector(
    w: &Workload<'_>,
    opts: &ExportOptions,
    choices: &BTreeMap<WorkloadId, Choice>,
) -> Result<(LabelSelector, (String, String)), ExportError> {
    let key = format!("{ANNOTATION_PREFIX}selector");
    let fallback = |why: String| -> Result<_, ExportError> {
        Ok((
            workload_pod_selector(w, opts)?,
            (
                key.clone(),
                format!(
                    "workload-label ({why}): pods are selected by {}={}, which the workload's pod template must carry",
                    opts.workload_label,
                    workload_label_value(&w.id.workload)
                ),
            ),
        ))
    };
    match choices.get(&w.id) {
        Some(Choice::Learned(l)) => {
            let keys: Vec<&str> = l.labels.keys().map(String::as_str).collect();
            Ok((
                LabelSelector {
                    match_labels: l.labels.clone(),
                    match_expressions: Vec::new(),
                },
                (
                    key,
                    format!(
                        "learned: {} (from {} pod{}, {} label set{}): carried by every pod of the workload and by no pod of another learned workload of the namespace",
                        keys.join(", "),
                        l.pods,
                        if l.pods == 1 { "" } else { "s" },
                        l.sets,
                        if l.sets == 1 { "" } else { "s" },
                    ),
                ),
            ))
        }
        Some(Choice::Fallback(f)) => fallback(format!("fallback: {}", f.reason())),
        None => fallback("--selector workload-label".to_string()),
    }
}

/// Labels on every generated object.
pub fn object_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        MANAGED_BY.to_string(),
    )])
}
