//! What each policy shape's allow-list holds: the paths its hook compares.
//!
//! Per exportable executable, a shape lists the paths Tetragon reported
//! through that shape's hook view (`opened` for kprobe and LSM, `loaded` for
//! the raw tracepoint) plus the path the executable was learned under. The
//! learned path is harmless there (the hook compares resolved files, and a
//! symlink's path is never one) and it is all there is for an executable never
//! seen through the view: such an entry is *unverified*. A fileless name
//! (`hook_view::is_fileless`) is never listed: it changes every run, so it
//! allows nothing, and the policy denies that binary.
use std::collections::BTreeSet;

use crate::learner::hook_view::{is_fileless, HookView};
use crate::learner::profile::{ExecutableRecord, Profile};
use crate::learner::view::is_unverified;

use super::options::ExportOptions;

/// The allow-list entries of one executable for `view`, sorted, fileless
/// names left out.
pub fn entries(rec: &ExecutableRecord, view: HookView) -> BTreeSet<&str> {
    std::iter::once(rec.path.as_str())
        .chain(rec.views.get(view).iter().map(String::as_str))
        .filter(|p| !is_fileless(p))
        .collect()
}

/// The fileless names among an executable's learned path and view paths:
/// what no allow-list can hold.
pub fn fileless(rec: &ExecutableRecord) -> BTreeSet<&str> {
    std::iter::once(rec.path.as_str())
        .chain(
            HookView::ALL
                .iter()
                .flat_map(|v| rec.views.get(*v).iter().map(String::as_str)),
        )
        .filter(|p| is_fileless(p))
        .collect()
}

/// The exported executables of `profiles` (probe / session rules applied).
fn exported<'a>(
    profiles: &'a [&'a Profile],
    opts: &'a ExportOptions,
) -> impl Iterator<Item = (&'a Profile, &'a ExecutableRecord)> + 'a {
    profiles.iter().flat_map(move |p| {
        p.executables
            .values()
            .filter(move |r| opts.keeps(r))
            .map(move |r| (*p, r))
    })
}

/// The union of the profiles' allow-lists for `view`, sorted (byte order).
pub fn allow_list(profiles: &[&Profile], opts: &ExportOptions, view: HookView) -> Vec<String> {
    let all: BTreeSet<&str> = exported(profiles, opts)
        .flat_map(|(_, r)| entries(r, view))
        .collect();
    all.into_iter().map(str::to_owned).collect()
}

/// The exported executables never seen through `view`, as (profile, path).
pub fn unverified<'a>(
    profiles: &'a [&'a Profile],
    opts: &'a ExportOptions,
    view: HookView,
) -> Vec<(&'a Profile, &'a str)> {
    exported(profiles, opts)
        .filter(|(_, r)| is_unverified(r, view))
        .map(|(p, r)| (p, r.path.as_str()))
        .collect()
}

/// The fileless names of the exported executables, as (profile, name).
pub fn fileless_names<'a>(
    profiles: &'a [&'a Profile],
    opts: &'a ExportOptions,
) -> Vec<(&'a Profile, &'a str)> {
    exported(profiles, opts)
        .flat_map(|(p, r)| fileless(r).into_iter().map(move |n| (p, n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::learner::key::LearnerKey;
    use crate::learner::observation::{FactSource, Observation};

    fn rec(path: &str, opened: &[&str], loaded: &[&str]) -> ExecutableRecord {
        let mut r = ExecutableRecord::first(&Observation {
            path: path.into(),
            at: 1,
            source: FactSource::Event,
            exec_probe: false,
            exec_session: false,
        });
        for p in opened {
            r.views.add(HookView::Opened, p);
        }
        for p in loaded {
            r.views.add(HookView::Loaded, p);
        }
        r
    }

    fn set<'a>(items: &[&'a str]) -> BTreeSet<&'a str> {
        items.iter().copied().collect()
    }

    #[test]
    fn a_symlink_lists_its_resolved_file_and_its_learned_path() {
        let sh = rec("/bin/sh", &["/usr/bin/dash"], &["/usr/bin/dash"]);
        assert_eq!(
            entries(&sh, HookView::Opened),
            set(&["/bin/sh", "/usr/bin/dash"])
        );
        assert_eq!(
            entries(&sh, HookView::Loaded),
            set(&["/bin/sh", "/usr/bin/dash"])
        );
        assert!(!is_unverified(&sh, HookView::Opened));
    }

    #[test]
    fn a_script_is_itself_when_opened_and_its_interpreter_when_loaded() {
        let x = rec("/opt/x.sh", &["/opt/x.sh"], &["/usr/bin/dash"]);
        assert_eq!(entries(&x, HookView::Opened), set(&["/opt/x.sh"]));
        assert_eq!(
            entries(&x, HookView::Loaded),
            set(&["/opt/x.sh", "/usr/bin/dash"])
        );
    }

    #[test]
    fn an_executable_never_seen_through_a_view_keeps_its_path_unverified() {
        // A procFS entry: named like the loaded file, never seen opened.
        let dash = rec("/usr/bin/dash", &[], &["/usr/bin/dash"]);
        assert_eq!(entries(&dash, HookView::Opened), set(&["/usr/bin/dash"]));
        assert!(is_unverified(&dash, HookView::Opened));
        assert!(!is_unverified(&dash, HookView::Loaded));
        let snap = rec("/usr/local/bin/app", &[], &[]);
        assert_eq!(
            entries(&snap, HookView::Loaded),
            set(&["/usr/local/bin/app"])
        );
        assert!(is_unverified(&snap, HookView::Loaded));
    }

    #[test]
    fn fileless_names_are_never_listed_nor_unverified() {
        let memfd = rec(
            "/memfd:payload (deleted)",
            &["/memfd:payload (deleted)"],
            &[],
        );
        assert_eq!(entries(&memfd, HookView::Opened), set(&[]));
        assert_eq!(entries(&memfd, HookView::Loaded), set(&[]));
        assert!(!is_unverified(&memfd, HookView::Loaded));
        assert_eq!(fileless(&memfd), set(&["/memfd:payload (deleted)"]));
        // A binary replaced while it ran: its learned path stays listed.
        let old = rec("/usr/bin/app", &["/usr/bin/app (deleted)"], &["/dev/fd/3"]);
        assert_eq!(entries(&old, HookView::Opened), set(&["/usr/bin/app"]));
        assert_eq!(
            fileless(&old),
            set(&["/dev/fd/3", "/usr/bin/app (deleted)"])
        );
    }

    #[test]
    fn the_allow_list_is_the_union_of_kept_executables_per_view() {
        let mut p = Profile::new(LearnerKey::new("ns", "Deployment", "w", "c"), 0);
        let mut session = rec("/bin/bash", &["/usr/bin/bash"], &["/usr/bin/bash"]);
        session.exec_session = true;
        for r in [
            rec("/bin/ls", &["/bin/busybox"], &["/bin/busybox"]),
            rec("/bin/cat", &["/bin/busybox"], &[]),
            rec("/opt/x.sh", &["/opt/x.sh"], &["/usr/bin/dash"]),
            session,
        ] {
            p.executables.insert(r.path.clone(), r);
        }
        let ps = [&p];
        let o = ExportOptions::default();
        assert_eq!(
            allow_list(&ps, &o, HookView::Opened),
            ["/bin/busybox", "/bin/cat", "/bin/ls", "/opt/x.sh"]
        );
        assert_eq!(
            allow_list(&ps, &o, HookView::Loaded),
            [
                "/bin/busybox",
                "/bin/cat",
                "/bin/ls",
                "/opt/x.sh",
                "/usr/bin/dash"
            ]
        );
        let paths = |v: Vec<(&Profile, &str)>| -> Vec<String> {
            v.into_iter().map(|(_, s)| s.to_string()).collect()
        };
        assert!(paths(unverified(&ps, &o, HookView::Opened)).is_empty());
        assert_eq!(paths(unverified(&ps, &o, HookView::Loaded)), ["/bin/cat"]);
    }
}
