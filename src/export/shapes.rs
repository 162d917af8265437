//! The three policy shapes: the hook that carries an allow-list (`--hook`),
//! with the `linux_binprm` argument matched `NotEqual` against the allowed
//! paths, and what a policy says about its list in annotations. Which hook
//! names what is in `enforcement`; what a list holds is in `hook_lists`.
use std::collections::BTreeMap;

use crate::learner::profile::Profile;

use super::annotations::ANNOTATION_PREFIX;
use super::enforcement::{PolicyHook, DENY_ERROR, TRACEPOINT_EVENT, TRACEPOINT_SUBSYSTEM};
use super::hook_lists::{fileless_names, unverified};
use super::options::ExportOptions;
use super::policy_spec::{
    ActionSelector, ArgSelector, KProbeArg, KProbeSelector, KProbeSpec, LsmHookSpec, TracepointSpec,
};

/// The hook lists of a spec: exactly one of them holds one hook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub kprobes: Vec<KProbeSpec>,
    pub lsmhooks: Vec<LsmHookSpec>,
    pub tracepoints: Vec<TracepointSpec>,
}

const MESSAGE: &str = "exec outside the allow-list learned by tetragon-learner";

/// `hook` denying every exec whose `linux_binprm` is not in `allowed`.
pub fn hooks(hook: PolicyHook, allowed: Vec<String>) -> Hooks {
    let index = hook.binprm_index();
    let args = vec![KProbeArg {
        index,
        ty: "linux_binprm".to_string(),
    }];
    let action = match hook {
        PolicyHook::Kprobe | PolicyHook::Lsm => ActionSelector {
            action: "Override".to_string(),
            arg_error: Some(DENY_ERROR),
        },
        PolicyHook::Tracepoint => ActionSelector {
            action: "Sigkill".to_string(),
            arg_error: None,
        },
    };
    let selectors = vec![KProbeSelector {
        match_args: vec![ArgSelector {
            index,
            operator: "NotEqual".to_string(),
            values: allowed,
        }],
        match_actions: vec![action],
    }];
    let message = MESSAGE.to_string();
    let mut out = Hooks::default();
    match hook {
        PolicyHook::Kprobe => out.kprobes.push(KProbeSpec {
            call: hook.hook_name().to_string(),
            syscall: false,
            message,
            args,
            selectors,
        }),
        PolicyHook::Lsm => out.lsmhooks.push(LsmHookSpec {
            hook: hook.hook_name().to_string(),
            message,
            args,
            selectors,
        }),
        PolicyHook::Tracepoint => out.tracepoints.push(TracepointSpec {
            subsystem: TRACEPOINT_SUBSYSTEM.to_string(),
            event: TRACEPOINT_EVENT.to_string(),
            raw: true,
            message,
            args,
            selectors,
        }),
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// What a policy of `profiles` says about its shape and list: `enforcement`
/// always, `unverified` and `fileless` when there are such executables.
pub fn shape_annotations(
    profiles: &[&Profile],
    opts: &ExportOptions,
    scope: &str,
) -> BTreeMap<String, String> {
    let key = |k: &str| format!("{ANNOTATION_PREFIX}{k}");
    let hook = opts.hook;
    let view = hook.view();
    let mut a = BTreeMap::new();
    a.insert(
        key("enforcement"),
        format!(
            "{} {} linux_binprm (the {view} file) NotEqual allow-list, {}; policy-mode {}; {scope}",
            hook.as_str(),
            hook.hook_name(),
            hook.denial(),
            opts.mode.as_str()
        ),
    );
    let n = unverified(profiles, opts, view).len();
    if n > 0 {
        a.insert(
            key("unverified"),
            format!(
                "{n} executable{} never seen through the {view} view ({} hook): listed under the path{} learned under, which this hook may never compare (a symlink, a script); restart the workload once under a monitor-mode policy so the observe policy sees the real paths, before enforcing",
                plural(n),
                hook.as_str(),
                if n == 1 { " it was" } else { "s they were" },
            ),
        );
    }
    let n = fileless_names(profiles, opts).len();
    if n > 0 {
        a.insert(
            key("fileless"),
            format!(
                "{n} fileless name{} executed (memfd, /dev/fd, deleted file): no allow-list can hold {}, the policy denies {}",
                plural(n),
                if n == 1 { "it" } else { "them" },
                if n == 1 { "it" } else { "them" },
            ),
        );
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hook_writes_its_own_list_argument_and_action() {
        let allowed = vec!["/usr/bin/dash".to_string()];
        let k = hooks(PolicyHook::Kprobe, allowed.clone());
        assert!(k.lsmhooks.is_empty() && k.tracepoints.is_empty());
        assert_eq!(k.kprobes[0].call, "security_bprm_creds_for_exec");
        assert_eq!(k.kprobes[0].args[0].index, 0);
        assert_eq!(k.kprobes[0].selectors[0].match_args[0].values, allowed);
        assert_eq!(
            k.kprobes[0].selectors[0].match_actions[0].arg_error,
            Some(-1)
        );
        let l = hooks(PolicyHook::Lsm, allowed.clone());
        assert!(l.kprobes.is_empty() && l.tracepoints.is_empty());
        assert_eq!(l.lsmhooks[0].hook, "bprm_creds_for_exec");
        let t = hooks(PolicyHook::Tracepoint, allowed.clone());
        assert!(t.kprobes.is_empty() && t.lsmhooks.is_empty());
        let tp = &t.tracepoints[0];
        assert_eq!(
            (tp.subsystem.as_str(), tp.event.as_str(), tp.raw),
            ("sched", "sched_process_exec", true)
        );
        assert_eq!(tp.args[0].index, 2);
        assert_eq!(tp.args[0].ty, "linux_binprm");
        let sel = &tp.selectors[0];
        assert_eq!(sel.match_args[0].index, 2);
        assert_eq!(sel.match_args[0].operator, "NotEqual");
        assert_eq!(sel.match_args[0].values, allowed);
        assert_eq!(sel.match_actions[0].action, "Sigkill");
        assert_eq!(sel.match_actions[0].arg_error, None);
    }
}
