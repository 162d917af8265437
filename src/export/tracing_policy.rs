//! `export --format tracingpolicy`: one Tetragon `TracingPolicyNamespaced`
//! (`cilium.io/v1alpha1`) per workload that denies every exec outside the
//! learned allow-list.
//!
//! Shape, after Tetragon's documented enforcement pattern (docs "Selectors" ›
//! "Override action", "Enforcement Mode"): the `linux_binprm` argument
//! (index 0, the file named by the `execve`) matched with `NotEqual` against
//! the allowed paths, and an `Override` action with `argError: -1` so the exec
//! fails with EPERM. The hook is chosen with `--hook`:
//! - `kprobe` (default): `spec.kprobes` on `security_bprm_creds_for_exec`
//!   (`syscall: false`). Overriding a `security_` function needs
//!   `CONFIG_BPF_KPROBE_OVERRIDE` or fmod_ret; without them Tetragon refuses
//!   the policy (`override action not supported on security_ hooks, fmod_ret
//!   not available`).
//! - `lsm`: `spec.lsmhooks` on `bprm_creds_for_exec`, for kernels with the BPF
//!   LSM enabled (`lsm=...,bpf`).
//!
//! See `enforcement.rs` for why this hook and not `bprm_check_security`.
//! `spec.options` carries `policy-mode` (`--mode`, default `monitor`): the
//! action list is the same in both modes, so `tetra tracingpolicy set-mode`
//! switches a loaded policy without editing it. `matchBinaries` is not used: it
//! matches the *calling* process, not the file being executed.
//!
//! Scope: `metadata.namespace` is the workload's namespace; `podSelector`
//! matches `{<workload label key>: <workload>}` (pods must carry that label:
//! profiles hold no pod labels, and no built-in Kubernetes label names a
//! workload, so a policy never lands on pods nobody labelled); and
//! `containerSelector` keeps it to the workload's container names. A
//! namespaced policy has one container selector, so the allow-list is the union
//! of the workload's containers (per-container lists are in the proposal).
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::learner::profile::Profile;

use super::annotations::{annotations, ANNOTATION_PREFIX};
use super::enforcement::{PolicyHook, POLICY_MODE_OPTION};
use super::error::ExportError;
use super::grouping::{group_by_workload, Workload, WorkloadId};
use super::k8s::{workload_pod_selector, LabelSelector, LabelSelectorRequirement, ObjectMeta};
use super::options::ExportOptions;

pub const API_VERSION: &str = "cilium.io/v1alpha1";
pub const KIND: &str = "TracingPolicyNamespaced";
/// `-EPERM` as Tetragon's `Override` writes it.
pub const DENY_ERROR: i32 = -1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracingPolicyNamespaced {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: TracingPolicySpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracingPolicySpec {
    pub pod_selector: LabelSelector,
    pub container_selector: LabelSelector,
    pub options: Vec<PolicyOption>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kprobes: Vec<KProbeSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lsmhooks: Vec<LsmHookSpec>,
}

/// One of Tetragon's `spec.options` (name/value strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyOption {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LsmHookSpec {
    pub hook: String,
    pub message: String,
    pub args: Vec<KProbeArg>,
    pub selectors: Vec<KProbeSelector>,
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
    pub arg_error: i32,
}

/// The policies, and the workloads that got none because nothing of theirs is
/// exportable (an empty allow-list would deny every exec of the workload).
#[derive(Debug, Clone)]
pub struct Policies {
    pub policies: Vec<TracingPolicyNamespaced>,
    pub empty: Vec<WorkloadId>,
}

/// The union of a workload's exported allow-lists, sorted.
pub fn allow_list(w: &Workload<'_>, opts: &ExportOptions) -> Vec<String> {
    let all: BTreeSet<&str> = w.profiles.iter().flat_map(|p| opts.allowed(p)).collect();
    all.into_iter().map(str::to_owned).collect()
}

/// The policy of one workload, or `None` when its allow-list is empty.
pub fn policy(
    w: &Workload<'_>,
    opts: &ExportOptions,
) -> Result<Option<TracingPolicyNamespaced>, ExportError> {
    let allowed = allow_list(w, opts);
    if allowed.is_empty() {
        return Ok(None);
    }
    let containers: Vec<String> = w.profiles.iter().map(|p| p.key.container.clone()).collect();
    let mut annotations = annotations(w, opts)?;
    annotations.insert(
        format!("{ANNOTATION_PREFIX}enforcement"),
        format!(
            "{} {} NotEqual allow-list, Override argError {DENY_ERROR} (EPERM), policy-mode {}; union of the containers' allow-lists",
            opts.hook.as_str(),
            opts.hook.hook_name(),
            opts.mode.as_str()
        ),
    );
    let args = vec![KProbeArg {
        index: 0,
        ty: "linux_binprm".to_string(),
    }];
    let selectors = vec![KProbeSelector {
        match_args: vec![ArgSelector {
            index: 0,
            operator: "NotEqual".to_string(),
            values: allowed,
        }],
        match_actions: vec![ActionSelector {
            action: "Override".to_string(),
            arg_error: DENY_ERROR,
        }],
    }];
    let message = "exec outside the allow-list learned by tetragon-learner".to_string();
    let (kprobes, lsmhooks) = match opts.hook {
        PolicyHook::Kprobe => (
            vec![KProbeSpec {
                call: opts.hook.hook_name().to_string(),
                syscall: false,
                message,
                args,
                selectors,
            }],
            Vec::new(),
        ),
        PolicyHook::Lsm => (
            Vec::new(),
            vec![LsmHookSpec {
                hook: opts.hook.hook_name().to_string(),
                message,
                args,
                selectors,
            }],
        ),
    };
    Ok(Some(TracingPolicyNamespaced {
        api_version: API_VERSION.to_string(),
        kind: KIND.to_string(),
        metadata: ObjectMeta::for_workload(&w.id, annotations),
        spec: TracingPolicySpec {
            pod_selector: workload_pod_selector(w, opts)?,
            container_selector: LabelSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![LabelSelectorRequirement {
                    key: "name".to_string(),
                    operator: "In".to_string(),
                    values: containers,
                }],
            },
            options: vec![PolicyOption {
                name: POLICY_MODE_OPTION.to_string(),
                value: opts.mode.as_str().to_string(),
            }],
            kprobes,
            lsmhooks,
        },
    }))
}

/// Every workload's policy, in (namespace, kind, workload) order. Host and
/// namespace-less profiles are left out (see `group_by_workload`).
pub fn policies(profiles: &[Profile], opts: &ExportOptions) -> Result<Policies, ExportError> {
    let (workloads, _skipped) = group_by_workload(profiles);
    let mut out = Policies {
        policies: Vec::new(),
        empty: Vec::new(),
    };
    for w in &workloads {
        match policy(w, opts)? {
            Some(p) => out.policies.push(p),
            None => out.empty.push(w.id.clone()),
        }
    }
    Ok(out)
}
