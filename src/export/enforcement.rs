//! How a generated tracing policy enforces: the policy mode it is loaded in
//! and the kernel hook it attaches to. This is the one place naming hooks.
//!
//! What each hook compares (see `learner::hook_view`): the `linux_binprm`
//! argument is the resolved file, never the path a `process_exec` reports.
//! - kprobe `security_bprm_creds_for_exec` and LSM `bprm_creds_for_exec` run
//!   once per `execve`, on the file the call names, resolved (`/bin/sh` is
//!   `/usr/bin/dash`; a `#!` script is itself): the `opened` view.
//!   `security_bprm_check` is not used: it runs once per binary-format
//!   handler pass, for a script once more with its interpreter.
//! - the raw tracepoint `sched/sched_process_exec` runs after the exec, on the
//!   file finally loaded (a script's interpreter): the `loaded` view. It cannot
//!   refuse the exec: its action is `Sigkill`, so the caller sees a child
//!   killed by SIGKILL (exit 137) instead of EPERM, and Tetragon still reports
//!   the `process_exec` of the killed binary.
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::learner::hook_view::HookView;

/// The kprobe: the LSM entry point run once per `execve`.
pub const KPROBE_HOOK: &str = "security_bprm_creds_for_exec";
/// The BPF-LSM twin of `KPROBE_HOOK` (Tetragon's `lsmhooks` take the hook name
/// without the `security_` prefix).
pub const LSM_HOOK: &str = "bprm_creds_for_exec";
/// The raw tracepoint's subsystem and event.
pub const TRACEPOINT_SUBSYSTEM: &str = "sched";
pub const TRACEPOINT_EVENT: &str = "sched_process_exec";
/// Tetragon's option key for the policy mode (docs "Enforcement Mode").
pub const POLICY_MODE_OPTION: &str = "policy-mode";
/// `-EPERM` as Tetragon's `Override` writes it.
pub const DENY_ERROR: i32 = -1;

/// Tetragon's policy mode, written to `spec.options`. The action list is the
/// same in both: `tetra tracingpolicy set-mode` switches a loaded policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Tetragon reports what the policy would deny and denies nothing.
    #[default]
    Monitor,
    /// Execs outside the allow-list are denied (EPERM, or SIGKILL for the
    /// tracepoint hook).
    Enforce,
}

impl PolicyMode {
    /// The value of Tetragon's `policy-mode` option.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Monitor => "monitor",
            Self::Enforce => "enforce",
        }
    }
}

/// Which Tetragon hook type carries the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyHook {
    /// `spec.kprobes` on `security_bprm_creds_for_exec` with `Override`: needs
    /// `CONFIG_BPF_KPROBE_OVERRIDE` (or fmod_ret) for `security_` functions.
    #[default]
    Kprobe,
    /// `spec.lsmhooks` on `bprm_creds_for_exec`: needs the BPF LSM enabled
    /// (`CONFIG_BPF_LSM=y`, booted with `lsm=...,bpf`).
    Lsm,
    /// `spec.tracepoints`, raw `sched/sched_process_exec` with `Sigkill`: any
    /// kernel with raw tracepoints; a script is checked by its interpreter.
    Tracepoint,
}

impl PolicyHook {
    pub const ALL: [Self; 3] = [Self::Kprobe, Self::Lsm, Self::Tracepoint];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kprobe => "kprobe",
            Self::Lsm => "lsm",
            Self::Tracepoint => "tracepoint",
        }
    }

    /// The kernel function, LSM hook or `subsystem/event` the policy hooks.
    pub fn hook_name(self) -> &'static str {
        match self {
            Self::Kprobe => KPROBE_HOOK,
            Self::Lsm => LSM_HOOK,
            Self::Tracepoint => "sched/sched_process_exec",
        }
    }

    /// Which file the hook's `linux_binprm` argument is: the view whose
    /// paths its allow-list must hold.
    pub fn view(self) -> HookView {
        match self {
            Self::Kprobe | Self::Lsm => HookView::Opened,
            Self::Tracepoint => HookView::Loaded,
        }
    }

    /// Index of the `linux_binprm` argument: the function's first for the
    /// kprobe and LSM hook; the raw tracepoint's third (`p`, `old_pid`, `bprm`).
    pub fn binprm_index(self) -> u32 {
        match self {
            Self::Kprobe | Self::Lsm => 0,
            Self::Tracepoint => 2,
        }
    }

    /// What an exec outside the allow-list meets, for the `enforcement`
    /// annotation.
    pub fn denial(self) -> String {
        match self {
            Self::Kprobe | Self::Lsm => {
                format!("Override argError {DENY_ERROR}: the exec fails with EPERM")
            }
            Self::Tracepoint => "Sigkill after the exec: the caller sees a child killed by SIGKILL (exit 137) instead of EPERM, and Tetragon still reports a process_exec for the killed binary; a #! script is checked by its interpreter, so allowing /usr/bin/dash allows every dash script".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hook_compares_its_view_at_its_argument() {
        let got: Vec<(&str, &str, HookView, u32)> = PolicyHook::ALL
            .iter()
            .map(|h| (h.as_str(), h.hook_name(), h.view(), h.binprm_index()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "kprobe",
                    "security_bprm_creds_for_exec",
                    HookView::Opened,
                    0
                ),
                ("lsm", "bprm_creds_for_exec", HookView::Opened, 0),
                (
                    "tracepoint",
                    "sched/sched_process_exec",
                    HookView::Loaded,
                    2
                ),
            ]
        );
        assert!(PolicyHook::Tracepoint.denial().contains("exit 137"));
        assert!(PolicyHook::Lsm.denial().contains("EPERM"));
    }
}
