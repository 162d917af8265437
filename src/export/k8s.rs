//! The few Kubernetes types a generated object needs (`ObjectMeta`,
//! `LabelSelector`), and the metadata and pod selector every exported object
//! of a workload carries.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::ExportError;
use super::grouping::{Workload, WorkloadId};
use super::names::{is_label_key, object_name, workload_label_value};
use super::options::ExportOptions;

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

/// Labels on every generated object.
pub fn object_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        MANAGED_BY.to_string(),
    )])
}
