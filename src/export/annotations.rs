//! What a generated object says about its learners, in `tetragon-learner.io/`
//! annotations: the exact workload (object names may be shortened), its state
//! and completeness, per-container detail, and a warning for partial profiles.
//! (The stderr warnings are in `warnings`.)
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::learner::profile::{Completeness, PartialReason, Profile};
use crate::learner::state::LearnerState;

use super::error::ExportError;
use super::grouping::{workload_completeness, workload_state, Workload};
use super::options::ExportOptions;

/// Prefix of every label and annotation key this tool writes.
pub const ANNOTATION_PREFIX: &str = "tetragon-learner.io/";

/// The `exec-sessions` annotation when session-only executables are left out.
pub const SESSIONS_DENIED: &str = "executables seen only in kubectl exec sessions are not in the allow-list: under enforcement, interactive sessions running them will be denied; export with --include-exec-sessions to allow them";

/// Per-container detail recorded (as JSON) in the `learners` annotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnerSummary {
    pub container: String,
    pub state: LearnerState,
    pub completeness: Completeness,
    pub partial_reasons: Vec<PartialReason>,
    /// Executables in the exported allow-list.
    pub allowed: usize,
    /// Learned executables left out (exec-probe-only / exec-session-only).
    pub excluded: usize,
    /// Executables seen while locked, never allowed.
    pub deviations: usize,
}

fn summary(p: &Profile, opts: &ExportOptions) -> LearnerSummary {
    let allowed = opts.allowed(p).len();
    LearnerSummary {
        container: p.key.container.clone(),
        state: p.state,
        completeness: p.completeness(),
        partial_reasons: p.partial_reasons.iter().copied().collect(),
        allowed,
        excluded: p.executables.len() - allowed,
        deviations: p.deviations.len(),
    }
}

/// Annotations shared by proposals and tracing policies: the exact workload
/// (object names may be shortened), its state and completeness, per-container
/// detail, and a warning when any profile is partial.
pub fn annotations(
    w: &Workload<'_>,
    opts: &ExportOptions,
) -> Result<BTreeMap<String, String>, ExportError> {
    let key = |k: &str| format!("{ANNOTATION_PREFIX}{k}");
    let mut a = BTreeMap::new();
    a.insert(key("workload"), w.id.workload.clone());
    a.insert(key("workload-kind"), w.id.kind.clone());
    a.insert(key("state"), workload_state(w).as_str().to_string());
    a.insert(
        key("completeness"),
        workload_completeness(w).as_str().to_string(),
    );
    let summaries: Vec<LearnerSummary> = w.profiles.iter().map(|p| summary(p, opts)).collect();
    a.insert(key("learners"), serde_json::to_string(&summaries)?);
    let mut excluded = Vec::new();
    if opts.exclude_exec_probes {
        excluded.push("exec-probe-only");
    }
    if !opts.include_exec_sessions {
        excluded.push("exec-session-only");
        a.insert(key("exec-sessions"), SESSIONS_DENIED.to_string());
    }
    if !excluded.is_empty() {
        a.insert(key("excluded"), excluded.join(","));
    }
    let partial: Vec<String> = w
        .profiles
        .iter()
        .filter(|p| p.completeness() == Completeness::Partial)
        .map(|p| {
            let reasons: Vec<&str> = p.partial_reasons.iter().map(|r| r.as_str()).collect();
            format!("{} ({})", p.key.container, reasons.join(", "))
        })
        .collect();
    if !partial.is_empty() {
        a.insert(
            key("warning"),
            format!(
                "partial profile for container(s) {}: executables run before the agent saw them may be missing; review before enforcing",
                partial.join(", ")
            ),
        );
    }
    Ok(a)
}
