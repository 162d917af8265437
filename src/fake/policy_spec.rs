//! Tracing policies as YAML (`TracingPolicy`, `TracingPolicyNamespaced`): the
//! subset the fake evaluates, and whether the fake's "kernel" can load one,
//! with the error texts of Tetragon main 4fbfe2d74 (`pkg/sensors/k8s.go`,
//! `handler.go`, `tracing/generickprobe.go`, `genericlsm.go`, `enforcer.go`,
//! and the captures in `tests/fixtures/real/hook-events/`).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PolicyParseError {
    #[error("fake tetragon cannot parse the tracing policy: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("fake tetragon: unknown kind {0:?}: want TracingPolicy or TracingPolicyNamespaced")]
    Kind(String),
    #[error("fake tetragon: a tracing policy needs metadata.name")]
    NoName,
    #[error("fake tetragon: a TracingPolicyNamespaced needs metadata.namespace")]
    NoNamespace,
    #[error("fake tetragon does not evaluate {0}; use Equal, NotEqual, Prefix, NotPrefix, Postfix or NotPostfix and the actions Post, NoPost, Sigkill, Override")]
    Unsupported(String),
}

/// What the fake's kernel can do; names follow Tetragon's startup probe
/// (`override_return`, `fmodret`, `fmodret_syscall`, `lsm`). Default: all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Kernel {
    pub kprobes: bool,
    pub lsm: bool,
    pub override_return: bool,
    pub fmodret: bool,
    pub fmodret_syscall: bool,
}

impl Default for Kernel {
    fn default() -> Self {
        Self {
            kprobes: true,
            lsm: true,
            override_return: true,
            fmodret: true,
            fmodret_syscall: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PolicyObject {
    pub kind: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: Spec,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(default)]
    pub options: Vec<OptionSpec>,
    #[serde(default)]
    pub kprobes: Vec<KprobeSpec>,
    #[serde(default)]
    pub lsmhooks: Vec<LsmSpec>,
    #[serde(default)]
    pub tracepoints: Vec<TracepointSpec>,
    /// Parsed only to refuse or load them like Tetragon; they never fire here.
    #[serde(default)]
    pub enforcers: Vec<serde_yaml::Value>,
    #[serde(default)]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default)]
    pub container_selector: Option<LabelSelector>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OptionSpec {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KprobeSpec {
    pub call: String,
    #[serde(default)]
    pub syscall: bool,
    #[serde(default)]
    pub args: Vec<ArgSpec>,
    #[serde(default)]
    pub selectors: Vec<Selector>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LsmSpec {
    pub hook: String,
    #[serde(default)]
    pub args: Vec<ArgSpec>,
    #[serde(default)]
    pub selectors: Vec<Selector>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TracepointSpec {
    pub subsystem: String,
    pub event: String,
    #[serde(default)]
    pub raw: bool,
    #[serde(default)]
    pub args: Vec<ArgSpec>,
    #[serde(default)]
    pub selectors: Vec<Selector>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ArgSpec {
    pub index: u32,
    #[serde(rename = "type")]
    pub ty: String,
}

/// A selector. Unknown keys (matchBinaries, matchPIDs, ...) are refused: the
/// fake would otherwise match wider than Tetragon.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    #[serde(default)]
    pub match_args: Vec<MatchArg>,
    #[serde(default)]
    pub match_actions: Vec<MatchAction>,
    /// Parsed, not evaluated: the fake has no namespaces (every process matches).
    #[serde(default)]
    pub match_namespaces: Vec<serde_yaml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MatchArg {
    pub index: u32,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchAction {
    pub action: String,
    #[serde(default)]
    pub arg_error: Option<i32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelExpression>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LabelExpression {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// A selector action the fake evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Post,
    NoPost,
    Sigkill,
    Override,
    /// Loads (with an enforcer) but the fake never calls its syscall.
    NotifyEnforcer,
}

impl Action {
    /// Tetragon compares action names case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "post" => Some(Action::Post),
            "nopost" => Some(Action::NoPost),
            "sigkill" => Some(Action::Sigkill),
            "override" => Some(Action::Override),
            "notifyenforcer" => Some(Action::NotifyEnforcer),
            _ => None,
        }
    }

    /// Tetragon's `HasEnforcementAction` (among the actions the fake knows).
    pub fn enforces(self) -> bool {
        matches!(
            self,
            Action::Sigkill | Action::Override | Action::NotifyEnforcer
        )
    }
}

pub const OPERATORS: [&str; 6] = [
    "Equal",
    "NotEqual",
    "Prefix",
    "NotPrefix",
    "Postfix",
    "NotPostfix",
];

impl PolicyObject {
    pub fn from_yaml(text: &str) -> Result<Self, PolicyParseError> {
        let p: PolicyObject = serde_yaml::from_str(text)?;
        match p.kind.as_str() {
            "TracingPolicy" => {}
            "TracingPolicyNamespaced" if p.metadata.namespace.is_empty() => {
                return Err(PolicyParseError::NoNamespace)
            }
            "TracingPolicyNamespaced" => {}
            other => return Err(PolicyParseError::Kind(other.to_string())),
        }
        if p.metadata.name.is_empty() {
            return Err(PolicyParseError::NoName);
        }
        for s in p.selectors() {
            for a in &s.match_args {
                if !OPERATORS.contains(&a.operator.as_str()) {
                    return Err(PolicyParseError::Unsupported(format!(
                        "matchArgs operator {:?}",
                        a.operator
                    )));
                }
            }
            for a in &s.match_actions {
                if Action::parse(&a.action).is_none() {
                    return Err(PolicyParseError::Unsupported(format!(
                        "action {:?}",
                        a.action
                    )));
                }
            }
        }
        Ok(p)
    }

    /// The namespace of a TracingPolicyNamespaced, "" for a TracingPolicy.
    pub fn namespace(&self) -> &str {
        if self.kind == "TracingPolicyNamespaced" {
            &self.metadata.namespace
        } else {
            ""
        }
    }

    fn selectors(&self) -> impl Iterator<Item = &Selector> {
        let s = &self.spec;
        s.kprobes
            .iter()
            .flat_map(|k| &k.selectors)
            .chain(s.lsmhooks.iter().flat_map(|l| &l.selectors))
            .chain(s.tracepoints.iter().flat_map(|t| &t.selectors))
    }

    fn actions(&self) -> impl Iterator<Item = Action> + '_ {
        self.selectors()
            .flat_map(|s| &s.match_actions)
            .filter_map(|a| Action::parse(&a.action))
    }

    /// The `policy-mode` option; Tetragon forces monitor_only when no selector
    /// holds an enforcing action.
    pub fn initial_mode(&self) -> Result<Mode, String> {
        let mode = match self
            .spec
            .options
            .iter()
            .find(|o| o.name == "policy-mode")
            .map(|o| o.value.as_str())
        {
            None | Some("enforce") => Mode::Enforce,
            Some("monitor") => Mode::Monitor,
            Some(other) => return Err(format!("invalid mode: {other:?}")),
        };
        Ok(if self.actions().any(Action::enforces) {
            mode
        } else {
            Mode::MonitorOnly
        })
    }

    /// Why this kernel cannot load the policy, in Tetragon's words (`None`: it loads).
    pub fn load_error(&self, kernel: &Kernel, in_kubernetes: bool) -> Option<String> {
        let spec = &self.spec;
        if !in_kubernetes {
            if spec.pod_selector.is_some() {
                return Some("podSelector not allowed in non-k8s environment".into());
            }
            if spec.container_selector.is_some() {
                return Some("containerSelector not allowed in non-k8s environment".into());
            }
        }
        let name = &self.metadata.name;
        let tracing = |e: String| {
            Some(format!(
                "policy handler 'tracing' failed loading policy '{name}': {e}"
            ))
        };
        if let Err(e) = self.initial_mode() {
            return tracing(e);
        }
        for k in &spec.kprobes {
            let overrides = k
                .selectors
                .iter()
                .flat_map(|s| &s.match_actions)
                .any(|a| Action::parse(&a.action) == Some(Action::Override));
            if !overrides {
                continue;
            }
            let why = if k.call.starts_with("security_") {
                (!kernel.fmodret).then_some(
                    "override action not supported on security_ hooks, fmod_ret not available",
                )
            } else if k.syscall {
                (!kernel.override_return).then_some(
                    "override action not supported on syscalls, bpf_override_return helper not available",
                )
            } else {
                Some("override action can be used only with syscalls and security_ hooks")
            };
            if let Some(why) = why {
                return tracing(format!("override validation failed: {why}"));
            }
        }
        if !spec.lsmhooks.is_empty() && !kernel.lsm {
            return tracing(
                "does you kernel support the bpf LSM? You can enable LSM BPF by modifyingthe GRUB configuration /etc/default/grub with GRUB_CMDLINE_LINUX=\"lsm=bpf\"".into(),
            );
        }
        if !spec.enforcers.is_empty() && !kernel.override_return && !kernel.fmodret_syscall {
            return Some(format!(
                "policy handler 'enforcer' failed loading policy '{name}': no override helper or mod_ret support: cannot load enforcer"
            ));
        }
        if !spec.kprobes.is_empty() && !kernel.kprobes {
            // The host harness's text, its path abbreviated there.
            return Some(
                "could not find BPF programs: program \"bpf_generic_kprobe_v61.o\" cannot be found"
                    .into(),
            );
        }
        None
    }

    /// Sensor names and kernel memory as `tetra tp list` showed them
    /// (measured 2026-12-04): kprobe 393216 B, 913408 B once a selector holds
    /// matchArgs values; LSM 565248 B; raw tracepoint 331904 B (also used for
    /// non-raw tracepoints, not measured).
    pub fn sensors(&self) -> Vec<(&'static str, u64)> {
        let spec = &self.spec;
        let mut out = Vec::new();
        if !spec.kprobes.is_empty() {
            let lists = spec
                .kprobes
                .iter()
                .flat_map(|k| &k.selectors)
                .any(|s| s.match_args.iter().any(|a| !a.values.is_empty()));
            out.push(("generic_kprobe", if lists { 913_408 } else { 393_216 }));
        }
        if !spec.tracepoints.is_empty() {
            out.push(("generic_tracepoint", 331_904));
        }
        if !spec.lsmhooks.is_empty() {
            out.push(("generic_lsm", 565_248));
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Monitor,
    MonitorOnly,
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/real/hook-events/policies"
    );

    fn fixture(name: &str) -> PolicyObject {
        let text = std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap();
        PolicyObject::from_yaml(&text).unwrap()
    }

    #[test]
    fn every_real_policy_parses() {
        for entry in std::fs::read_dir(FIXTURES).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            PolicyObject::from_yaml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }

    #[test]
    fn modes_as_tetragon_reports_them() {
        assert_eq!(
            fixture("kprobe-creds-observe.yaml").initial_mode(),
            Ok(Mode::MonitorOnly)
        );
        assert_eq!(
            fixture("lsm-observe-post.yaml").initial_mode(),
            Ok(Mode::MonitorOnly)
        );
        assert_eq!(
            fixture("kprobe-allowlist-enforce.yaml").initial_mode(),
            Ok(Mode::Enforce)
        );
        assert_eq!(
            fixture("enf-raw-monitor.yaml").initial_mode(),
            Ok(Mode::Monitor)
        );
    }

    /// `vm/tp-list/tp-refused.json` and the host README's refusals.
    #[test]
    fn refusals_carry_the_real_texts() {
        let vm = Kernel {
            override_return: false,
            fmodret_syscall: false,
            ..Kernel::default()
        };
        assert_eq!(
            fixture("refused-override-syscall.yaml").load_error(&vm, true).unwrap(),
            "policy handler 'tracing' failed loading policy 'refused-override-syscall': override validation failed: override action not supported on syscalls, bpf_override_return helper not available"
        );
        assert_eq!(
            fixture("refused-override-nonsecurity.yaml").load_error(&vm, true).unwrap(),
            "policy handler 'tracing' failed loading policy 'refused-override-nonsecurity': override validation failed: override action can be used only with syscalls and security_ hooks"
        );
        assert_eq!(
            fixture("refused-enforcer-execve.yaml").load_error(&vm, true).unwrap(),
            "policy handler 'enforcer' failed loading policy 'refused-enforcer-execve': no override helper or mod_ret support: cannot load enforcer"
        );
        assert!(fixture("kprobe-allowlist-enforce.yaml")
            .load_error(&vm, true)
            .is_none());
        let host = Kernel {
            kprobes: false,
            lsm: false,
            override_return: false,
            fmodret: false,
            fmodret_syscall: false,
        };
        let e = fixture("lsm-observe-post.yaml")
            .load_error(&host, true)
            .unwrap();
        assert!(e.contains("does you kernel support the bpf LSM?"), "{e}");
        let e = fixture("kprobe-allowlist-enforce.yaml")
            .load_error(&host, true)
            .unwrap();
        assert!(
            e.ends_with("override action not supported on security_ hooks, fmod_ret not available"),
            "{e}"
        );
        assert!(fixture("enf-raw-kill.yaml")
            .load_error(&host, true)
            .is_none());
    }

    #[test]
    fn pod_selector_outside_kubernetes_is_refused() {
        let p = PolicyObject::from_yaml(
            "kind: TracingPolicyNamespaced\nmetadata: {name: a, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: x}}\n",
        )
        .unwrap();
        assert_eq!(
            p.load_error(&Kernel::default(), false).unwrap(),
            "podSelector not allowed in non-k8s environment"
        );
        assert!(p.load_error(&Kernel::default(), true).is_none());
        assert_eq!(p.namespace(), "shop");
    }

    #[test]
    fn what_the_fake_cannot_evaluate_is_refused() {
        let bad_op = "kind: TracingPolicy\nmetadata: {name: a}\nspec:\n  kprobes:\n  - call: x\n    selectors:\n    - matchArgs: [{index: 0, operator: SAddr, values: [a]}]\n";
        assert!(PolicyObject::from_yaml(bad_op).is_err());
        let bad_sel = "kind: TracingPolicy\nmetadata: {name: a}\nspec:\n  kprobes:\n  - call: x\n    selectors:\n    - matchBinaries: [{operator: In, values: [/x]}]\n";
        assert!(PolicyObject::from_yaml(bad_sel).is_err());
        assert!(PolicyObject::from_yaml("kind: Pod\nmetadata: {name: a}\n").is_err());
    }

    #[test]
    fn sensors_and_memory_as_measured() {
        assert_eq!(
            fixture("kprobe-creds-observe.yaml").sensors(),
            vec![("generic_kprobe", 393_216)]
        );
        assert_eq!(
            fixture("kprobe-allowlist-enforce.yaml").sensors(),
            vec![("generic_kprobe", 913_408)]
        );
        assert_eq!(
            fixture("lsm-observe-noselector.yaml").sensors(),
            vec![("generic_lsm", 565_248)]
        );
        assert_eq!(
            fixture("enf-raw-kill.yaml").sensors(),
            vec![("generic_tracepoint", 331_904)]
        );
    }
}
