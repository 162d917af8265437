//! What goes into an exported allow-list (`ExportOptions`, `ExecKind`): the
//! exec-probe / exec-session rules, the tracing-policy mode and hook, how pods
//! are selected (`SelectorMode`), how policies are packed (`GroupBy`) and the
//! limits they are checked against (`Limits`).
use clap::ValueEnum;

use crate::learner::profile::{ExecutableRecord, Profile};

use super::enforcement::{PolicyHook, PolicyMode};
use super::limits::Limits;

/// Pod label key a generated object selects its workload's pods by, unless the
/// operator names another one (`--workload-label`).
pub const DEFAULT_WORKLOAD_LABEL: &str = "tetragon-learner.io/workload";

/// What goes into an allow-list, and how a tracing policy enforces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// Leave out executables only ever seen as Tetragon-flagged exec probes.
    /// Off by default: probes are part of the pod spec, and a denied liveness
    /// probe restarts the pod.
    pub exclude_exec_probes: bool,
    /// Keep executables only ever seen in `kubectl exec` sessions (outside the
    /// init tree and not a probe). Off by default: under enforcement such
    /// interactive sessions are denied.
    pub include_exec_sessions: bool,
    /// Pod label key used in generated selectors.
    pub workload_label: String,
    /// Tracing policies: Tetragon policy mode.
    pub mode: PolicyMode,
    /// Tracing policies: kprobe or BPF-LSM hook.
    pub hook: PolicyHook,
    /// How a workload's pods are selected.
    pub selector: SelectorMode,
    /// Tracing policies: one per workload or one per namespace.
    pub group: GroupBy,
    /// Tracing policies: Tetragon's limits the export is checked against.
    pub limits: Limits,
}

/// How an exported object selects its workload's pods (`--selector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum SelectorMode {
    /// The fewest labels every pod of the workload carries and no pod of
    /// another workload of its namespace does (learned from the pods); the
    /// workload label where no such set exists.
    #[default]
    Learned,
    /// `{<--workload-label>: <workload>}`: pods must be relabelled first.
    WorkloadLabel,
}

impl SelectorMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Learned => "learned",
            Self::WorkloadLabel => "workload-label",
        }
    }
}

/// How workloads are packed into tracing policies (`--group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum GroupBy {
    /// One `TracingPolicyNamespaced` per workload: its own allow-list.
    #[default]
    Workload,
    /// One per namespace: the union of its workloads' allow-lists (fewer
    /// policies, looser lists).
    Namespace,
}

impl GroupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workload => "workload",
            Self::Namespace => "namespace",
        }
    }
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            exclude_exec_probes: false,
            include_exec_sessions: false,
            workload_label: DEFAULT_WORKLOAD_LABEL.to_string(),
            mode: PolicyMode::default(),
            hook: PolicyHook::default(),
            selector: SelectorMode::default(),
            group: GroupBy::default(),
            limits: Limits::default(),
        }
    }
}

/// What one learned executable is, for an allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecKind {
    /// Seen at least once as an ordinary process of the container.
    Ordinary,
    /// Only ever seen as a Tetragon-flagged exec probe.
    ProbeOnly,
    /// Only ever seen in `kubectl exec` sessions.
    SessionOnly,
}

impl ExecKind {
    /// The probe mark wins: before probes and sessions were told apart, every
    /// probe (Tetragon sends `in_init_tree: false` with `maybe_exec_probe:
    /// true`) was stored with both marks, and such a record is a probe.
    pub fn of(rec: &ExecutableRecord) -> Self {
        if rec.exec_probe {
            Self::ProbeOnly
        } else if rec.exec_session {
            Self::SessionOnly
        } else {
            Self::Ordinary
        }
    }
}

impl ExportOptions {
    /// Whether one learned executable belongs in an exported allow-list.
    pub fn keeps(&self, rec: &ExecutableRecord) -> bool {
        match ExecKind::of(rec) {
            ExecKind::Ordinary => true,
            ExecKind::ProbeOnly => !self.exclude_exec_probes,
            ExecKind::SessionOnly => self.include_exec_sessions,
        }
    }

    /// The exported allow-list of one profile, sorted by path (byte order).
    pub fn allowed<'a>(&self, p: &'a Profile) -> Vec<&'a str> {
        p.executables
            .values()
            .filter(|r| self.keeps(r))
            .map(|r| r.path.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::key::LearnerKey;
    use crate::learner::observation::{FactSource, Observation};

    fn rec(path: &str, probe: bool, session: bool) -> ExecutableRecord {
        ExecutableRecord::first(&Observation {
            path: path.into(),
            at: 1,
            source: FactSource::Event,
            exec_probe: probe,
            exec_session: session,
        })
    }

    #[test]
    fn probes_are_kept_and_sessions_left_out_by_default() {
        let mut p = Profile::new(LearnerKey::new("ns", "Deployment", "w", "c"), 0);
        for r in [
            rec("/bin/app", false, false),
            rec("/bin/probe", true, false),
            rec("/bin/sh", false, true),
        ] {
            p.executables.insert(r.path.clone(), r);
        }
        let mut o = ExportOptions::default();
        assert_eq!(o.allowed(&p), ["/bin/app", "/bin/probe"]);
        o.exclude_exec_probes = true;
        assert_eq!(o.allowed(&p), ["/bin/app"]);
        o.include_exec_sessions = true;
        assert_eq!(o.allowed(&p), ["/bin/app", "/bin/sh"]);
        o.exclude_exec_probes = false;
        assert_eq!(o.allowed(&p), ["/bin/app", "/bin/probe", "/bin/sh"]);
    }

    #[test]
    fn a_stored_record_marked_both_probe_and_session_is_a_probe() {
        // Written before probes and sessions were told apart.
        let old = rec("/usr/bin/pg_isready", true, true);
        assert_eq!(ExecKind::of(&old), ExecKind::ProbeOnly);
        assert!(ExportOptions::default().keeps(&old));
        let no_probes = ExportOptions {
            exclude_exec_probes: true,
            include_exec_sessions: true,
            ..ExportOptions::default()
        };
        assert!(!no_probes.keeps(&old));
    }
}
