//! How a generated `TracingPolicyNamespaced` enforces: the policy mode it is
//! loaded in and the kernel hook it attaches to.
//!
//! Why `bprm_creds_for_exec`: Tetragon reports a script's exec with the
//! script's own path as `binary` (a `#!/bin/sh` script `/tmp/x.sh` gives one
//! `process_exec` for `/tmp/x.sh`, none for `/bin/sh`), so a learned allow-list
//! holds scripts, not their interpreters. `security_bprm_check` runs once per
//! binary-format handler pass, and for a script once more with the
//! interpreter's file: an allow-list of learned paths would deny `/bin/sh` and
//! every learned script would fail. `security_bprm_creds_for_exec` runs once
//! per `execve`, on the file named by the call, which is what Tetragon reports.
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// The kprobe: the LSM entry point run once per `execve`.
pub const KPROBE_HOOK: &str = "security_bprm_creds_for_exec";
/// The BPF-LSM twin of `KPROBE_HOOK` (Tetragon's `lsmhooks` take the hook name
/// without the `security_` prefix).
pub const LSM_HOOK: &str = "bprm_creds_for_exec";
/// Tetragon's option key for the policy mode (docs "Enforcement Mode").
pub const POLICY_MODE_OPTION: &str = "policy-mode";

/// Tetragon's policy mode, written to `spec.options`. The action list is the
/// same in both: `tetra tracingpolicy set-mode` switches a loaded policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Tetragon reports what the policy would deny and denies nothing.
    #[default]
    Monitor,
    /// Execs outside the allow-list fail with EPERM.
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
}

impl PolicyHook {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kprobe => "kprobe",
            Self::Lsm => "lsm",
        }
    }

    /// The kernel function or LSM hook name written into the policy.
    pub fn hook_name(self) -> &'static str {
        match self {
            Self::Kprobe => KPROBE_HOOK,
            Self::Lsm => LSM_HOOK,
        }
    }
}
