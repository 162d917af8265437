//! The serde types of a Tetragon tracing policy (`cilium.io/v1alpha1`), the
//! part this tool writes: `TracingPolicyNamespaced` for a workload,
//! `TracingPolicy` (cluster-scoped, same spec) for a host learner. Only keys
//! real Tetragon knows (checked against its schema in the tests).
use serde::{Deserialize, Serialize};

use super::k8s::{LabelSelector, ObjectMeta};

pub const API_VERSION: &str = "cilium.io/v1alpha1";
/// A workload's policy: scoped to its namespace, pods and containers.
pub const KIND_NAMESPACED: &str = "TracingPolicyNamespaced";
/// A host learner's policy: cluster-scoped, no pod scope.
pub const KIND_CLUSTER: &str = "TracingPolicy";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracingPolicy {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: TracingPolicySpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracingPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_selector: Option<LabelSelector>,
    pub options: Vec<PolicyOption>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kprobes: Vec<KProbeSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lsmhooks: Vec<LsmHookSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracepoints: Vec<TracepointSpec>,
}

/// One of Tetragon's `spec.options` (name/value strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyOption {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KProbeSpec {
    pub call: String,
    pub syscall: bool,
    pub message: String,
    pub args: Vec<KProbeArg>,
    pub selectors: Vec<KProbeSelector>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LsmHookSpec {
    pub hook: String,
    pub message: String,
    pub args: Vec<KProbeArg>,
    pub selectors: Vec<KProbeSelector>,
}

/// A (raw) tracepoint: `raw: true` gives the BTF-typed arguments, so
/// `linux_binprm` can be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracepointSpec {
    pub subsystem: String,
    pub event: String,
    pub raw: bool,
    pub message: String,
    pub args: Vec<KProbeArg>,
    pub selectors: Vec<KProbeSelector>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KProbeArg {
    pub index: u32,
    #[serde(rename = "type")]
    pub ty: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KProbeSelector {
    pub match_args: Vec<ArgSelector>,
    pub match_actions: Vec<ActionSelector>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgSelector {
    pub index: u32,
    pub operator: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionSelector {
    pub action: String,
    /// `Override` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_error: Option<i32>,
}
