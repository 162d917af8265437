//! The stderr warnings about what the hook views mean for a tracing policy:
//! executables never seen through the chosen shape's view (unverified),
//! fileless binaries no allow-list can name, and host learners exported as
//! cluster-scoped policies. Same form as `warnings`: one summary line each,
//! the items under `--verbose`.
use std::collections::BTreeSet;

use crate::learner::hook_view::HookView;
use crate::learner::profile::Profile;

use super::enforcement::PolicyHook;
use super::hook_lists::{fileless_names, unverified};
use super::host_policy::HOST_SCOPE;
use super::names::host_policy_name;
use super::options::ExportOptions;
use super::warnings::Warning;

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// The exported executables never seen through the view of `opts.hook`, one
/// `KEY PATH` detail each; the summary also counts them for the other shapes.
pub fn unverified_executables(exported: &[&Profile], opts: &ExportOptions) -> Option<Warning> {
    let hook = opts.hook;
    let found = unverified(exported, opts, hook.view());
    let n = found.len();
    if n == 0 {
        return None;
    }
    let count = |view: HookView| unverified(exported, opts, view).len();
    let per_shape: Vec<String> = [
        ("kprobe/lsm", HookView::Opened),
        (PolicyHook::Tracepoint.as_str(), HookView::Loaded),
    ]
    .iter()
    .map(|(name, view)| format!("{name}: {}", count(*view)))
    .collect();
    Some(Warning {
        summary: format!(
            "{n} exported {} unverified for --hook {}: never seen through its {} view (learned from a snapshot, backfill or an exit, or with observation off), so the allow-list holds {} learned under, which this hook may never compare (a symlink, a script); such workloads need one restart under a monitor-mode policy so the observe policy sees their real paths, before enforcing (unverified per shape: {})",
            plural(n, "executable is", "executables are"),
            hook.as_str(),
            hook.view(),
            plural(n, "the path it was", "the paths they were"),
            per_shape.join(", ")
        ),
        details: found
            .into_iter()
            .map(|(p, path)| format!("{} {path}", p.key))
            .collect(),
    })
}

/// Workloads (or hosts) that executed fileless binaries (memfd, `/dev/fd`,
/// deleted files): one `KEY NAME` detail each.
pub fn fileless(exported: &[&Profile], opts: &ExportOptions) -> Option<Warning> {
    let found = fileless_names(exported, opts);
    if found.is_empty() {
        return None;
    }
    let workloads: BTreeSet<(&str, &str, &str)> = found
        .iter()
        .map(|(p, _)| {
            (
                p.key.namespace.as_str(),
                p.key.workload_kind.as_str(),
                p.key.workload.as_str(),
            )
        })
        .collect();
    let w = workloads.len();
    Some(Warning {
        summary: format!(
            "{w} {} fileless binaries (memfd, /dev/fd, deleted files) that no allow-list can name: under enforcement {} will deny them ({} name{} left out)",
            plural(w, "workload executes", "workloads execute"),
            plural(w, "its policy", "their policies"),
            found.len(),
            plural(found.len(), "", "s"),
        ),
        details: found
            .into_iter()
            .map(|(p, name)| format!("{} {name}", p.key))
            .collect(),
    })
}

/// Host learners written as cluster-scoped `TracingPolicy` objects.
pub fn host_policies(hosts: &[&Profile]) -> Option<Warning> {
    let n = hosts.len();
    if n == 0 {
        return None;
    }
    Some(Warning {
        summary: format!(
            "{n} host {} exported as {}",
            plural(n, "learner is", "learners are"),
            HOST_SCOPE
        ),
        details: hosts
            .iter()
            .map(|p| {
                format!(
                    "{} -> TracingPolicy {}",
                    p.key,
                    host_policy_name(&p.key.workload)
                )
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::key::LearnerKey;
    use crate::learner::observation::{FactSource, Observation};
    use crate::learner::profile::ExecutableRecord;

    fn profile(records: &[(&str, &[&str], &[&str])]) -> Profile {
        let mut p = Profile::new(LearnerKey::new("ns", "Deployment", "w", "c"), 0);
        for (path, opened, loaded) in records {
            let mut r = ExecutableRecord::first(&Observation {
                path: (*path).into(),
                at: 1,
                source: FactSource::Snapshot,
                exec_probe: false,
                exec_session: false,
            });
            for o in *opened {
                r.views.add(HookView::Opened, o);
            }
            for l in *loaded {
                r.views.add(HookView::Loaded, l);
            }
            p.executables.insert(r.path.clone(), r);
        }
        p
    }

    #[test]
    fn unverified_is_one_summary_with_counts_per_shape() {
        let p = profile(&[
            ("/bin/sh", &["/usr/bin/dash"], &[]),
            ("/usr/bin/dash", &[], &["/usr/bin/dash"]),
            ("/usr/local/bin/app", &[], &[]),
            ("/memfd:x (deleted)", &[], &[]),
        ]);
        let opts = ExportOptions {
            hook: PolicyHook::Tracepoint,
            ..ExportOptions::default()
        };
        let w = unverified_executables(&[&p], &opts).expect("warning");
        assert!(w.summary.starts_with("2 exported executables are unverified for --hook tracepoint: never seen through its loaded view"), "{}", w.summary);
        assert!(
            w.summary
                .ends_with("(unverified per shape: kprobe/lsm: 2, tracepoint: 2)"),
            "{}",
            w.summary
        );
        assert_eq!(
            w.details,
            [
                "ns/Deployment/w/c /bin/sh",
                "ns/Deployment/w/c /usr/local/bin/app"
            ]
        );
        let f = fileless(&[&p], &opts).expect("warning");
        assert!(
            f.summary
                .starts_with("1 workload executes fileless binaries"),
            "{}",
            f.summary
        );
        assert_eq!(f.details, ["ns/Deployment/w/c /memfd:x (deleted)"]);
        let verified = profile(&[("/bin/sh", &["/usr/bin/dash"], &["/usr/bin/dash"])]);
        assert_eq!(unverified_executables(&[&verified], &opts), None);
        assert_eq!(fileless(&[&verified], &opts), None);
    }

    #[test]
    fn host_policies_say_where_they_apply() {
        let host = Profile::new(LearnerKey::host("node-1"), 0);
        let w = host_policies(&[&host]).expect("warning");
        assert!(w.summary.contains("every host process"), "{}", w.summary);
        assert_eq!(
            w.details,
            ["/Host/node-1/ -> TracingPolicy tetragon-learner-host-node-1"]
        );
        assert_eq!(host_policies(&[]), None);
    }
}
