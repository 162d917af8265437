//! How an enforcement hook names an executable, next to how Tetragon's events
//! do. A `process_exec`'s `binary` is the `execve` path made absolute, with
//! symlinks not resolved (`/bin/sh`); the `linux_binprm` argument every exported
//! policy compares is the file itself, resolved (`/usr/bin/dash`). Which file
//! depends on the hook:
//!
//! - [`HookView::Opened`]: `security_bprm_creds_for_exec` (kprobe) and LSM
//!   `bprm_creds_for_exec`, run once per `execve` on the file the call names,
//!   resolved: a `#!` script is itself.
//! - [`HookView::Loaded`]: the raw tracepoint `sched/sched_process_exec`, after
//!   the exec, on the file finally loaded: a `#!` script is its interpreter.
//!   Tetragon's `/proc` scan (`procFS` entries) names a process the same way
//!   (`readlink /proc/PID/exe`).
//!
//! The agent learns these paths from Tetragon itself (its observe policies, see
//! `tetragon::observe`), so an exported allow-list holds what the hook compares.
use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// At most this many hook paths per view and executable: one binary path
/// normally resolves to one file, a few when images differ between instances
/// (an `alternatives` link moved). A bound, because paths come from workloads.
pub const MAX_VIEW_PATHS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookView {
    /// The file the `execve` names, resolved (kprobe and LSM shapes).
    Opened,
    /// The file finally loaded, resolved: a script's interpreter (tracepoint shape).
    Loaded,
}

impl HookView {
    pub const ALL: [Self; 2] = [Self::Opened, Self::Loaded];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Loaded => "loaded",
        }
    }
}

impl fmt::Display for HookView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The hook paths one executable was seen under, per view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookPaths {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub opened: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub loaded: BTreeSet<String>,
}

impl HookPaths {
    pub fn get(&self, view: HookView) -> &BTreeSet<String> {
        match view {
            HookView::Opened => &self.opened,
            HookView::Loaded => &self.loaded,
        }
    }

    fn get_mut(&mut self, view: HookView) -> &mut BTreeSet<String> {
        match view {
            HookView::Opened => &mut self.opened,
            HookView::Loaded => &mut self.loaded,
        }
    }

    /// Adds `path` to `view`; false when it was there already or the view is
    /// full ([`MAX_VIEW_PATHS`]).
    pub fn add(&mut self, view: HookView, path: &str) -> bool {
        let set = self.get_mut(view);
        if set.contains(path) || set.len() >= MAX_VIEW_PATHS {
            return false;
        }
        set.insert(path.to_owned())
    }

    /// Whether the hook of `view` was ever seen for this executable.
    pub fn verified(&self, view: HookView) -> bool {
        !self.get(view).is_empty()
    }

    /// The union of two records' views (merge across nodes), each bounded
    /// to its [`MAX_VIEW_PATHS`] smallest paths: so merging is commutative
    /// and associative even at the bound.
    pub fn merge(&mut self, other: &HookPaths) {
        for view in HookView::ALL {
            let set = self.get_mut(view);
            set.extend(other.get(view).iter().cloned());
            while set.len() > MAX_VIEW_PATHS {
                set.pop_last();
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.opened.is_empty() && self.loaded.is_empty()
    }
}

/// A name no allow-list can hold: an exec of a file that has no path (memfd,
/// `fexecve` of an unlinked or anonymous file, a deleted binary). Its name
/// changes every run, so listing it allows nothing, and allowing a prefix
/// would allow every fileless binary.
pub fn is_fileless(path: &str) -> bool {
    path.starts_with("/memfd:")
        || path.starts_with("memfd:")
        || path.starts_with("/dev/fd/")
        || path.starts_with("/proc/self/fd/")
        || (path.starts_with("/proc/") && path.contains("/fd/"))
        || path.ends_with(" (deleted)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_bounded_and_deduplicated() {
        let mut v = HookPaths::default();
        assert!(v.add(HookView::Opened, "/usr/bin/dash"));
        assert!(!v.add(HookView::Opened, "/usr/bin/dash"));
        assert!(v.verified(HookView::Opened));
        assert!(!v.verified(HookView::Loaded));
        for i in 0..40 {
            v.add(HookView::Loaded, &format!("/x/{i}"));
        }
        assert_eq!(v.loaded.len(), MAX_VIEW_PATHS);
    }

    #[test]
    fn fileless_names_seen_on_real_hosts() {
        for name in [
            "/memfd:sealed-91173221a7ea (deleted)",
            "/dev/fd/253",
            "/usr/bin/old-build (deleted)",
            "/proc/self/fd/3",
            "/proc/123/fd/4",
        ] {
            assert!(is_fileless(name), "{name}");
        }
        for name in [
            "/usr/bin/dash",
            "/proc/self/exe",
            "/opt/memfd:tool",
            "/dev/fdisk",
        ] {
            assert!(!is_fileless(name), "{name}");
        }
    }
}
