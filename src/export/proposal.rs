//! `export --format proposal`: one `WorkloadPolicyProposal`
//! (`security.rancher.io/v1alpha1`, the runtime-enforcer project's CRD) per
//! workload, its allow-lists grouped by container under
//! `spec.rulesByContainer.<container>.executables.allowed`.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::learner::profile::Profile;

use super::annotations::annotations;
use super::error::ExportError;
use super::grouping::WorkloadId;
use super::grouping::{group_by_workload, Workload};
use super::k8s::{pod_selector, selector_choices, LabelSelector, ObjectMeta};
use super::options::ExportOptions;
use super::selector::Choice;

pub const API_VERSION: &str = "security.rancher.io/v1alpha1";
pub const KIND: &str = "WorkloadPolicyProposal";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadPolicyProposal {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ProposalSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProposalSpec {
    pub selector: LabelSelector,
    /// By container name.
    pub rules_by_container: BTreeMap<String, ContainerRules>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRules {
    pub executables: ExecutableRules,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutableRules {
    /// Exact paths, sorted. (The CRD's `allowedPrefixes` has `maxItems: 0`.)
    pub allowed: Vec<String>,
}

/// One proposal for one workload.
pub fn proposal(
    w: &Workload<'_>,
    opts: &ExportOptions,
    choices: &BTreeMap<WorkloadId, Choice>,
) -> Result<WorkloadPolicyProposal, ExportError> {
    let rules_by_container = w
        .profiles
        .iter()
        .map(|p| {
            let allowed = opts.allowed(p).into_iter().map(str::to_owned).collect();
            (
                p.key.container.clone(),
                ContainerRules {
                    executables: ExecutableRules { allowed },
                },
            )
        })
        .collect();
    let (selector, note) = pod_selector(w, opts, choices)?;
    let mut annotations = annotations(w, opts)?;
    annotations.insert(note.0, note.1);
    Ok(WorkloadPolicyProposal {
        api_version: API_VERSION.to_string(),
        kind: KIND.to_string(),
        metadata: ObjectMeta::for_workload(&w.id, annotations),
        spec: ProposalSpec {
            selector,
            rules_by_container,
        },
    })
}

/// Every workload's proposal, in (namespace, kind, workload) order. Host and
/// namespace-less profiles are left out (see `group_by_workload`).
pub fn proposals(
    profiles: &[Profile],
    opts: &ExportOptions,
) -> Result<Vec<WorkloadPolicyProposal>, ExportError> {
    proposals_in(profiles, profiles, opts)
}

/// [`proposals`] of `profiles`, a selection (`--workload`) of `context`:
/// learned selectors are told apart from every workload of `context`.
pub fn proposals_in(
    context: &[Profile],
    profiles: &[Profile],
    opts: &ExportOptions,
) -> Result<Vec<WorkloadPolicyProposal>, ExportError> {
    let (workloads, _skipped) = group_by_workload(profiles);
    let (all, _) = group_by_workload(context);
    let choices = selector_choices(&all, opts);
    workloads
        .iter()
        .map(|w| proposal(w, opts, &choices))
        .collect()
}
