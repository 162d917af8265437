//! `export --format tracingpolicy`: one Tetragon `TracingPolicyNamespaced`
//! (`cilium.io/v1alpha1`) per workload, and one cluster-scoped
//! `TracingPolicy` per host learner (`host_policy`), that deny every exec
//! outside the learned allow-list.
//!
//! Shape (`shapes`, chosen with `--hook`, hooks named in `enforcement`): the
//! hook's `linux_binprm` argument matched with `NotEqual` against the allowed
//! paths, which are what that hook compares (`hook_lists`): the `opened` view
//! for `kprobe` (`security_bprm_creds_for_exec`, `Override` EPERM) and `lsm`
//! (`bprm_creds_for_exec`, same), the `loaded` view for `tracepoint` (raw
//! `sched/sched_process_exec`, `Sigkill`). `spec.options` carries
//! `policy-mode` (`--mode`, default `monitor`): the action list is the same in
//! both modes, so `tetra tracingpolicy set-mode` switches a loaded policy
//! without editing it. `matchBinaries` is not used: it matches the *calling*
//! process, not the file being executed.
//!
//! Scope: `metadata.namespace` is the workload's namespace; `podSelector`
//! matches `{<workload label key>: <workload>}` (pods must carry that label:
//! profiles hold no pod labels, and no built-in Kubernetes label names a
//! workload, so a policy never lands on pods nobody labelled); and
//! `containerSelector` keeps it to the workload's container names. A
//! namespaced policy has one container selector, so the allow-list is the union
//! of the workload's containers (per-container lists are in the proposal).
use std::collections::BTreeMap;

use crate::learner::profile::Profile;

use super::annotations::annotations;
use super::enforcement::POLICY_MODE_OPTION;
use super::error::ExportError;
use super::grouping::{group_by_workload, Skip, Workload, WorkloadId};
use super::hook_lists;
use super::host_policy::host_policy;
use super::k8s::{workload_pod_selector, LabelSelector, LabelSelectorRequirement, ObjectMeta};
use super::options::ExportOptions;
use super::shapes::{hooks, shape_annotations};

pub use super::policy_spec::*;

/// The policies, and the workloads (or hosts) that got none because nothing
/// of theirs is exportable (an empty allow-list would deny every exec).
#[derive(Debug, Clone)]
pub struct Policies {
    pub policies: Vec<TracingPolicy>,
    pub empty: Vec<WorkloadId>,
}

/// The union of a workload's exported allow-lists for the hook of `opts`,
/// sorted.
pub fn allow_list(w: &Workload<'_>, opts: &ExportOptions) -> Vec<String> {
    hook_lists::allow_list(&w.profiles, opts, opts.hook.view())
}

/// `spec.options`: the policy mode.
pub fn mode_options(opts: &ExportOptions) -> Vec<PolicyOption> {
    vec![PolicyOption {
        name: POLICY_MODE_OPTION.to_string(),
        value: opts.mode.as_str().to_string(),
    }]
}

/// The spec holding `allowed` on the hook of `opts`, with these selectors.
pub fn spec(
    allowed: Vec<String>,
    opts: &ExportOptions,
    pod_selector: Option<LabelSelector>,
    container_selector: Option<LabelSelector>,
) -> TracingPolicySpec {
    let h = hooks(opts.hook, allowed);
    TracingPolicySpec {
        pod_selector,
        container_selector,
        options: mode_options(opts),
        kprobes: h.kprobes,
        lsmhooks: h.lsmhooks,
        tracepoints: h.tracepoints,
    }
}

/// The policy of one workload, or `None` when its allow-list is empty.
pub fn policy(
    w: &Workload<'_>,
    opts: &ExportOptions,
) -> Result<Option<TracingPolicy>, ExportError> {
    let allowed = allow_list(w, opts);
    if allowed.is_empty() {
        return Ok(None);
    }
    let containers: Vec<String> = w.profiles.iter().map(|p| p.key.container.clone()).collect();
    let mut annotations = annotations(w, opts)?;
    annotations.extend(shape_annotations(
        &w.profiles,
        opts,
        "union of the containers' allow-lists",
    ));
    let containers = LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![LabelSelectorRequirement {
            key: "name".to_string(),
            operator: "In".to_string(),
            values: containers,
        }],
    };
    Ok(Some(TracingPolicy {
        api_version: API_VERSION.to_string(),
        kind: KIND_NAMESPACED.to_string(),
        metadata: ObjectMeta::for_workload(&w.id, annotations),
        spec: spec(
            allowed,
            opts,
            Some(workload_pod_selector(w, opts)?),
            Some(containers),
        ),
    }))
}

/// Every workload's policy, in (namespace, kind, workload) order, then every
/// host learner's cluster-scoped one. Namespace-less profiles are left out
/// (see `group_by_workload`).
pub fn policies(profiles: &[Profile], opts: &ExportOptions) -> Result<Policies, ExportError> {
    let (workloads, skipped) = group_by_workload(profiles);
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
    for (p, _) in skipped.iter().filter(|(_, s)| *s == Skip::Host) {
        match host_policy(p, opts)? {
            Some(policy) => out.policies.push(policy),
            None => out.empty.push(WorkloadId::of_host(p)),
        }
    }
    Ok(out)
}
