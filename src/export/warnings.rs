//! What `export` says on stderr about what it wrote. Each concern is one
//! summary line with counts, so a cluster of 70 partial learners gets one
//! line, not 70; the learners, executables or workloads behind it are its
//! details, printed under it with `--verbose`. Pure: the CLI shell escapes
//! and prints the lines.
use crate::learner::profile::{Profile, Readiness};

use super::grouping::{Skip, WorkloadId};
use super::options::{ExecKind, ExportOptions};

/// One warning: a summary line, and the items it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub summary: String,
    /// One line per item (not yet escaped for a terminal); may be empty.
    pub details: Vec<String>,
}

impl Warning {
    /// A warning with nothing to list.
    pub fn line(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            details: Vec::new(),
        }
    }

    /// The lines printed after `warning: `: the summary, then, with `verbose`,
    /// one indented line per item; without it the summary says that
    /// `--verbose` lists them.
    pub fn lines(&self, verbose: bool) -> Vec<String> {
        if self.details.is_empty() {
            return vec![self.summary.clone()];
        }
        if !verbose {
            return vec![format!("{}; --verbose lists them", self.summary)];
        }
        std::iter::once(self.summary.clone())
            .chain(self.details.iter().map(|d| format!("  {d}")))
            .collect()
    }
}

/// `one` when `n` is 1, else `many`.
fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// The exported learners that are not ready (`Profile::readiness`): partial
/// ones first, then those still learning, each with its state and reasons.
pub fn not_ready(exported: &[&Profile]) -> Option<Warning> {
    let mut partial = Vec::new();
    let mut learning = Vec::new();
    for p in exported {
        match p.readiness() {
            Readiness::Ready => {}
            Readiness::Partial => {
                let reasons: Vec<&str> = p.partial_reasons.iter().map(|r| r.as_str()).collect();
                partial.push(format!(
                    "{}: {}, partial ({})",
                    p.key,
                    p.state,
                    reasons.join(", ")
                ));
            }
            Readiness::Learning => learning.push(format!("{}: learning, complete", p.key)),
        }
    }
    let n = partial.len() + learning.len();
    if n == 0 {
        return None;
    }
    let mut why = Vec::new();
    if !partial.is_empty() {
        why.push(format!("{} partial", partial.len()));
    }
    if !learning.is_empty() {
        why.push(format!("{} still learning", learning.len()));
    }
    let summary = format!(
        "{n} of {} learners {} not ready ({}): their allow-lists may miss executables; review them before enforcing",
        exported.len(),
        plural(n, "is", "are"),
        why.join(", ")
    );
    partial.extend(learning);
    Some(Warning {
        summary,
        details: partial,
    })
}

/// Learned executables of `kind` that `opts` leaves out of the allow-lists,
/// one detail `KEY PATH` each.
pub fn left_out(profiles: &[Profile], opts: &ExportOptions, kind: ExecKind) -> Option<Warning> {
    let details: Vec<String> = profiles
        .iter()
        .flat_map(|p| {
            p.executables
                .values()
                .filter(move |r| ExecKind::of(r) == kind && !opts.keeps(r))
                .map(move |r| format!("{} {}", p.key, r.path))
        })
        .collect();
    let n = details.len();
    let summary = match kind {
        ExecKind::Ordinary => return None,
        ExecKind::ProbeOnly => format!(
            "{n} {} seen only as exec probes {} left out of the allow-lists (--exclude-exec-probes): under enforcement the liveness/readiness probes that run them fail and their pods restart",
            plural(n, "executable", "executables"),
            plural(n, "is", "are")
        ),
        ExecKind::SessionOnly => format!(
            "{n} {} seen only in kubectl exec sessions {} left out of the allow-lists: under enforcement interactive sessions running them will be denied; add --include-exec-sessions to allow them",
            plural(n, "executable", "executables"),
            plural(n, "is", "are")
        ),
    };
    (n > 0).then_some(Warning { summary, details })
}

/// Learners a namespaced object cannot hold (host processes, no namespace).
pub fn not_namespaced(skipped: &[(&Profile, Skip)]) -> Option<Warning> {
    let n = skipped.len();
    if n == 0 {
        return None;
    }
    let host = skipped.iter().filter(|(_, s)| *s == Skip::Host).count();
    let mut why = Vec::new();
    if host > 0 {
        why.push(format!("{host} host"));
    }
    if n > host {
        why.push(format!("{} without a namespace", n - host));
    }
    let details = skipped
        .iter()
        .map(|(p, s)| {
            let why = match s {
                Skip::Host => "host processes belong to no namespace",
                Skip::NoNamespace => "it has no namespace",
            };
            format!("{}: {why}", p.key)
        })
        .collect();
    Some(Warning {
        summary: format!(
            "{n} {} not exported as namespaced objects ({})",
            plural(n, "learner is", "learners are"),
            why.join(", ")
        ),
        details,
    })
}

/// Workloads that get no tracing policy because their allow-list is empty.
pub fn no_policy(empty: &[WorkloadId]) -> Option<Warning> {
    let n = empty.len();
    if n == 0 {
        return None;
    }
    Some(Warning {
        summary: format!(
            "{n} {} no tracing policy: nothing exportable in {} allow-list (enforcing an empty one would deny every exec); see --include-exec-sessions",
            plural(n, "workload gets", "workloads get"),
            plural(n, "its", "their")
        ),
        details: empty
            .iter()
            .map(|id| match id.namespace.as_str() {
                "" => format!("{} {}", id.kind, id.workload),
                ns => format!("{} {ns}/{}", id.kind, id.workload),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::key::LearnerKey;
    use crate::learner::profile::PartialReason;
    use crate::learner::state::LearnerState;

    fn profile(container: &str, state: LearnerState, reasons: &[PartialReason]) -> Profile {
        let mut p = Profile::new(LearnerKey::new("ns", "Deployment", "w", container), 0);
        p.state = state;
        p.partial_reasons.extend(reasons.iter().copied());
        p
    }

    #[test]
    fn not_ready_is_one_summary_with_the_learners_as_details() {
        use LearnerState::{Learning, Locked, Stable};
        let ps = [
            profile("a", Stable, &[]),
            profile("b", Learning, &[]),
            profile("c", Locked, &[]),
            profile(
                "d",
                Locked,
                &[
                    PartialReason::EventsDropped,
                    PartialReason::StartedBeforeAgent,
                ],
            ),
            profile("e", Learning, &[PartialReason::TooManyExecutables]),
        ];
        let refs: Vec<&Profile> = ps.iter().collect();
        let w = not_ready(&refs).expect("warning");
        assert_eq!(
            w.lines(false),
            ["3 of 5 learners are not ready (2 partial, 1 still learning): their allow-lists may miss executables; review them before enforcing; --verbose lists them"]
        );
        assert_eq!(
            w.lines(true),
            [
                "3 of 5 learners are not ready (2 partial, 1 still learning): their allow-lists may miss executables; review them before enforcing",
                "  ns/Deployment/w/d: locked, partial (started-before-agent, events-dropped)",
                "  ns/Deployment/w/e: learning, partial (too-many-executables)",
                "  ns/Deployment/w/b: learning, complete",
            ]
        );
        let one = not_ready(&refs[..2]).expect("warning");
        assert!(one
            .summary
            .starts_with("1 of 2 learners is not ready (1 still learning):"));
        assert_eq!(not_ready(&[refs[0], refs[2]]), None);
    }

    #[test]
    fn a_warning_without_details_is_its_summary_only() {
        let w = Warning::line("no learner profiles to export");
        assert_eq!(w.lines(false), ["no learner profiles to export"]);
        assert_eq!(w.lines(true), ["no learner profiles to export"]);
    }

    #[test]
    fn skipped_and_empty_are_counted() {
        let host = Profile::new(LearnerKey::host("node"), 0);
        let bare = Profile::new(LearnerKey::new("", "Pod", "p", "c"), 0);
        let w = not_namespaced(&[(&host, Skip::Host), (&bare, Skip::NoNamespace)]).expect("w");
        assert_eq!(
            w.summary,
            "2 learners are not exported as namespaced objects (1 host, 1 without a namespace)"
        );
        assert_eq!(w.details.len(), 2);
        assert_eq!(not_namespaced(&[]), None);
        let id = WorkloadId {
            namespace: "ns".into(),
            kind: "Job".into(),
            workload: "j".into(),
        };
        let w = no_policy(std::slice::from_ref(&id)).expect("w");
        assert!(
            w.summary.starts_with(
                "1 workload gets no tracing policy: nothing exportable in its allow-list"
            ),
            "{}",
            w.summary
        );
        assert_eq!(w.details, ["Job ns/j"]);
    }
}
