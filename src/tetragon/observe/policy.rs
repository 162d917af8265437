//! The observe policies: which hook, which name, which YAML. The names say what
//! they are and never collide with an exported allow-list's (those are
//! `<kind>-<workload>` or `tetragon-learner-host-...`).
use clap::ValueEnum;
use serde::Serialize;

use crate::learner::hook_view::HookView;

/// How a view is observed. `Opened` has two shapes: the kprobe where kprobes
/// load, else the BPF-LSM hook (they see the same file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObserveShape {
    /// Raw tracepoint `sched/sched_process_exec`, `linux_binprm` (index 2).
    Tracepoint,
    /// kprobe `security_bprm_creds_for_exec`, `linux_binprm` (index 0).
    Kprobe,
    /// LSM `bprm_creds_for_exec`; posts only with a `Post` selector.
    Lsm,
}

impl ObserveShape {
    pub const ALL: [Self; 3] = [Self::Tracepoint, Self::Kprobe, Self::Lsm];

    pub fn view(self) -> HookView {
        match self {
            Self::Tracepoint => HookView::Loaded,
            Self::Kprobe | Self::Lsm => HookView::Opened,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tracepoint => "tracepoint",
            Self::Kprobe => "kprobe",
            Self::Lsm => "lsm",
        }
    }

    /// The policy's name in Tetragon (`tetra tp list`).
    pub fn policy_name(self) -> &'static str {
        match self {
            Self::Tracepoint => "tetragon-learner-observe-exec-loaded",
            Self::Kprobe => "tetragon-learner-observe-exec-opened-kprobe",
            Self::Lsm => "tetragon-learner-observe-exec-opened-lsm",
        }
    }

    /// Which of ours posted an event, by its `policy_name`.
    pub fn of_policy_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.policy_name() == name)
    }

    /// The policy, as `AddTracingPolicy` takes it. Written with serde, never
    /// by templates.
    pub fn yaml(self) -> String {
        let arg = |index: u32| serde_json::json!([{"index": index, "type": "linux_binprm"}]);
        let spec = match self {
            Self::Tracepoint => serde_json::json!({"tracepoints": [{
                "subsystem": "sched", "event": "sched_process_exec", "raw": true,
                "args": arg(2),
            }]}),
            Self::Kprobe => serde_json::json!({"kprobes": [{
                "call": "security_bprm_creds_for_exec", "syscall": false,
                "args": arg(0),
            }]}),
            // An LSM policy without a selector loads and posts nothing.
            Self::Lsm => serde_json::json!({"lsmhooks": [{
                "hook": "bprm_creds_for_exec",
                "args": arg(0),
                "selectors": [{"matchActions": [{"action": "Post"}]}],
            }]}),
        };
        let doc = serde_json::json!({
            "apiVersion": "cilium.io/v1alpha1",
            "kind": "TracingPolicy",
            "metadata": {
                "name": self.policy_name(),
                "annotations": {
                    "tetragon-learner.io/purpose": "observe-only: reports the file each exec hook compares; no action",
                },
            },
            "spec": spec,
        });
        // A JSON value of strings, numbers and maps always serializes.
        serde_yaml::to_string(&doc).unwrap_or_default()
    }
}

/// `--hook-view`: which views the agent observes through its own policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookViewChoice {
    /// Both views: `loaded` (raw tracepoint) and `opened` (kprobe, else LSM).
    #[default]
    All,
    /// Only `opened` (the kprobe and LSM shapes' view).
    Opened,
    /// Only `loaded` (the tracepoint shape's view).
    Loaded,
    /// None: no policy is loaded; every executable stays unverified and the
    /// export says so.
    Off,
}

impl HookViewChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Opened => "opened",
            Self::Loaded => "loaded",
            Self::Off => "off",
        }
    }

    /// The shapes to try, per wanted view, in order of preference.
    pub fn candidates(self) -> Vec<(HookView, Vec<ObserveShape>)> {
        let loaded = (HookView::Loaded, vec![ObserveShape::Tracepoint]);
        let opened = (
            HookView::Opened,
            vec![ObserveShape::Kprobe, ObserveShape::Lsm],
        );
        match self {
            Self::All => vec![opened, loaded],
            Self::Opened => vec![opened],
            Self::Loaded => vec![loaded],
            Self::Off => Vec::new(),
        }
    }

    /// The policy names whose events the agent asks for.
    pub fn policy_names(self) -> Vec<String> {
        self.candidates()
            .into_iter()
            .flat_map(|(_, shapes)| shapes)
            .map(|s| s.policy_name().to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_yaml_is_the_live_tested_shape() {
        let tp: serde_yaml::Value = serde_yaml::from_str(&ObserveShape::Tracepoint.yaml()).unwrap();
        assert_eq!(tp["kind"], "TracingPolicy");
        assert_eq!(
            tp["metadata"]["name"],
            "tetragon-learner-observe-exec-loaded"
        );
        let hook = &tp["spec"]["tracepoints"][0];
        assert_eq!(hook["subsystem"], "sched");
        assert_eq!(hook["event"], "sched_process_exec");
        assert_eq!(hook["raw"], true);
        assert_eq!(hook["args"][0]["index"], 2);
        assert_eq!(hook["args"][0]["type"], "linux_binprm");
        assert!(
            hook.get("selectors").is_none(),
            "no selector: every exec posts"
        );

        let kp: serde_yaml::Value = serde_yaml::from_str(&ObserveShape::Kprobe.yaml()).unwrap();
        let hook = &kp["spec"]["kprobes"][0];
        assert_eq!(hook["call"], "security_bprm_creds_for_exec");
        assert_eq!(hook["syscall"], false);
        assert_eq!(hook["args"][0]["index"], 0);

        let lsm: serde_yaml::Value = serde_yaml::from_str(&ObserveShape::Lsm.yaml()).unwrap();
        let hook = &lsm["spec"]["lsmhooks"][0];
        assert_eq!(hook["hook"], "bprm_creds_for_exec");
        assert_eq!(hook["selectors"][0]["matchActions"][0]["action"], "Post");
    }

    #[test]
    fn names_map_back_to_their_shape_and_view() {
        for s in ObserveShape::ALL {
            assert_eq!(ObserveShape::of_policy_name(s.policy_name()), Some(s));
        }
        assert_eq!(ObserveShape::of_policy_name("deployment-web"), None);
        assert_eq!(ObserveShape::Lsm.view(), HookView::Opened);
        assert_eq!(HookViewChoice::Off.policy_names(), Vec::<String>::new());
        assert_eq!(HookViewChoice::All.policy_names().len(), 3);
    }
}
