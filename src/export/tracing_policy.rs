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
//! matches the labels learned from the workload's pods (`selector`), or
//! `{<workload label key>: <workload>}` where none tell its pods apart or
//! with `--selector workload-label` (pods must carry that label, so a policy
//! never lands on pods nobody labelled); and `containerSelector` keeps it to
//! the workload's container names. A namespaced policy has one container
//! selector, so the allow-list is the union of the workload's containers
//! (per-container lists are in the proposal). `--group namespace` packs a
//! namespace's workloads into one policy (`packing`).
use std::collections::{BTreeMap, BTreeSet};

use crate::learner::profile::Profile;

use super::annotations::annotations;
use super::enforcement::POLICY_MODE_OPTION;
use super::error::ExportError;
use super::grouping::{group_by_workload, Skip, Workload, WorkloadId};
use super::hook_lists;
use super::host_policy::host_policy;
use super::k8s::{is_in, pod_selector, selector_choices, LabelSelector, ObjectMeta};
use super::options::{ExportOptions, GroupBy};
use super::packing::{namespace_policies, Gain};
use super::selector::Choice;
use super::shapes::{hooks, shape_annotations};

pub use super::policy_spec::*;

/// The policies, and the workloads (or hosts) that got none because nothing
/// of theirs is exportable (an empty allow-list would deny every exec).
#[derive(Debug, Clone)]
pub struct Policies {
    pub policies: Vec<TracingPolicy>,
    pub empty: Vec<WorkloadId>,
    /// How each workload's pods are selected (`--selector learned`; empty
    /// with `workload-label`).
    pub choices: BTreeMap<WorkloadId, Choice>,
    /// `--group namespace`: what each workload gains from the union.
    pub gains: Vec<Gain>,
    /// `--group namespace`: namespaces whose policy selects every pod.
    pub whole_namespace: Vec<String>,
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
    choices: &BTreeMap<WorkloadId, Choice>,
) -> Result<Option<TracingPolicy>, ExportError> {
    let allowed = allow_list(w, opts);
    if allowed.is_empty() {
        return Ok(None);
    }
    let containers: BTreeSet<String> = w.profiles.iter().map(|p| p.key.container.clone()).collect();
    let (pods, note) = pod_selector(w, opts, choices)?;
    let mut annotations = annotations(w, opts)?;
    annotations.insert(note.0, note.1);
    annotations.extend(shape_annotations(
        &w.profiles,
        opts,
        "union of the containers' allow-lists",
    ));
    Ok(Some(TracingPolicy {
        api_version: API_VERSION.to_string(),
        kind: KIND_NAMESPACED.to_string(),
        metadata: ObjectMeta::for_workload(&w.id, annotations),
        spec: spec(allowed, opts, Some(pods), Some(is_in("name", containers))),
    }))
}

/// Every workload's policy (or, with `--group namespace`, every
/// namespace's), in (namespace, kind, workload) order, then every host
/// learner's cluster-scoped one. Namespace-less profiles are left out (see
/// `group_by_workload`).
pub fn policies(profiles: &[Profile], opts: &ExportOptions) -> Result<Policies, ExportError> {
    policies_in(profiles, profiles, opts)
}

/// [`policies`] of `profiles`, a selection (`--workload`) of `context`:
/// learned selectors are told apart from every workload of `context`, not
/// only the selected ones.
pub fn policies_in(
    context: &[Profile],
    profiles: &[Profile],
    opts: &ExportOptions,
) -> Result<Policies, ExportError> {
    let (workloads, skipped) = group_by_workload(profiles);
    let mut out = Policies {
        policies: Vec::new(),
        empty: Vec::new(),
        choices: BTreeMap::new(),
        gains: Vec::new(),
        whole_namespace: Vec::new(),
    };
    match opts.group {
        GroupBy::Workload => {
            let (all, _) = group_by_workload(context);
            out.choices = selector_choices(&all, opts);
            out.choices
                .retain(|id, _| workloads.iter().any(|w| w.id == *id));
            for w in &workloads {
                match policy(w, opts, &out.choices)? {
                    Some(p) => out.policies.push(p),
                    None => out.empty.push(w.id.clone()),
                }
            }
        }
        GroupBy::Namespace => {
            let packed = namespace_policies(&workloads, opts)?;
            out.policies = packed.policies;
            out.empty = packed.empty;
            out.gains = packed.gains;
            out.whole_namespace = packed.whole_namespace;
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
