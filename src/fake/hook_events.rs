//! One exec on the fake node with the loaded tracing policies, shaped as the
//! real captures (`tests/fixtures/real/hook-events/`):
//! 1. kprobe `security_bprm_creds_for_exec`, then LSM `bprm_creds_for_exec`
//!    (the opened file), then per file `security_bprm_check` kprobe and LSM
//!    `bprm_check_security` (the script, then its interpreter): events BEFORE
//!    the exec whose `process` is the caller (same pid, its own exec_id);
//! 2. an enforced Override stops there: no `process_exec`, the caller gets
//!    EPERM (exits 126 when the scenario's processes exit); an enforced Sigkill
//!    at a kprobe kills the caller;
//! 3. `process_exec`, then tracepoint `sched/sched_process_exec` events whose
//!    `process` is the new exec (raw: `linux_binprm` = the loaded file;
//!    non-raw: `data_loc` filename = the path as passed); an enforced Sigkill
//!    there ends the process with `process_exit` `SIGKILL`.
//!
//! Policies act in id order; counters follow Tetragon's (an LSM hook never
//! counts `post`).
use crate::tetragon::proto::{
    get_events_response::Event, kprobe_argument, GetEventsResponse, KprobeAction, KprobeArgument,
    KprobeLinuxBinprm, Process, ProcessKprobe, ProcessLsm, ProcessTracepoint,
    TracingPolicyActionCounters,
};
use crate::time::UnixMillis;

use super::node::{FakeNode, PreparedExec};
use super::policies::{LoadedPolicy, PolicyTable};
use super::policy_spec::{Action, ArgSpec, Mode, Selector};
use super::scenario::ExecSpec;
use super::selectors::{applies_to, decide, Decision, HookFamily};

/// Every file is shown with this mode (the real captures' binaries).
const PERMISSION: &str = "-rwxr-xr-x";
/// Spacing of events in time, in ns.
const STEP_NS: u64 = 1_000;
/// Pre-exec hook events start this long before the exec (after the fork).
const HOOKS_BEFORE_NS: u64 = 50_000;
/// The process ends this long after its exec when a policy is in scope.
const EXIT_AFTER_NS: u64 = 50_000;

/// A hook the fake calls on exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    KprobeCreds,
    LsmCreds,
    KprobeCheck,
    LsmCheck,
}

impl Hook {
    fn family(self) -> HookFamily {
        match self {
            Hook::KprobeCreds | Hook::KprobeCheck => HookFamily::Kprobe,
            Hook::LsmCreds | Hook::LsmCheck => HookFamily::Lsm,
        }
    }
}

/// The hooks of `policy` at `hook`: (function name, declared args, selectors).
fn hooks_of(policy: &LoadedPolicy, hook: Hook) -> Vec<(&str, &[ArgSpec], &[Selector])> {
    let spec = &policy.object.spec;
    let kprobe = |name: &'static str| {
        spec.kprobes
            .iter()
            .filter(move |k| k.call == name)
            .map(|k| (k.call.as_str(), k.args.as_slice(), k.selectors.as_slice()))
            .collect::<Vec<_>>()
    };
    let lsm = |name: &'static str| {
        spec.lsmhooks
            .iter()
            .filter(move |l| l.hook == name)
            .map(|l| (l.hook.as_str(), l.args.as_slice(), l.selectors.as_slice()))
            .collect::<Vec<_>>()
    };
    match hook {
        Hook::KprobeCreds => kprobe("security_bprm_creds_for_exec"),
        Hook::KprobeCheck => kprobe("security_bprm_check"),
        Hook::LsmCreds => lsm("bprm_creds_for_exec"),
        Hook::LsmCheck => lsm("bprm_check_security"),
    }
}

fn binprm(path: &str) -> KprobeArgument {
    KprobeArgument {
        arg: Some(kprobe_argument::Arg::LinuxBinprmArg(KprobeLinuxBinprm {
            path: path.to_string(),
            flags: String::new(),
            permission: PERMISSION.to_string(),
        })),
        label: String::new(),
    }
}

fn string_arg(s: &str) -> KprobeArgument {
    KprobeArgument {
        arg: Some(kprobe_argument::Arg::StringArg(s.to_string())),
        label: String::new(),
    }
}

fn event_action(d: &Decision) -> i32 {
    let action = match d.action {
        Action::Override => KprobeAction::Override,
        Action::Sigkill => KprobeAction::Sigkill,
        _ => KprobeAction::Post,
    };
    action as i32
}

/// Tetragon's counters for one decision.
fn count(c: &mut TracingPolicyActionCounters, d: &Decision, family: HookFamily, mode: Mode) {
    if d.post && family == HookFamily::Kprobe {
        c.post += 1;
    }
    let enforce = mode == Mode::Enforce;
    match (d.action, enforce) {
        (Action::Override, true) => c.r#override += 1,
        (Action::Override, false) => c.monitor_override += 1,
        (Action::Sigkill, true) => c.signal += 1,
        (Action::Sigkill, false) => c.monitor_signal += 1,
        _ => {}
    }
}

/// What happened to the exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ran,
    /// EPERM from an enforced Override: no new image.
    Denied,
    /// An enforced Sigkill before the exec (kprobe/LSM): the caller died.
    CallerKilled,
    /// An enforced Sigkill at the tracepoint: the new image died at once.
    Killed,
}

/// The ids of the enabled policies acting on container `ci`, in id order.
fn in_scope(node: &FakeNode, policies: &PolicyTable, ci: usize) -> Vec<u64> {
    let pod = node.pod_view(ci);
    policies
        .enabled()
        .filter(|p| applies_to(&p.object, policies.in_kubernetes, pod.as_ref()))
        .map(|p| p.id)
        .collect()
}

/// Calls `hook` with the file `path` for every policy in scope; returns the
/// events and the first enforced action.
fn call_hook(
    policies: &mut PolicyTable,
    scope: &[u64],
    hook: Hook,
    path: &str,
    prep: &PreparedExec,
    node: &FakeNode,
    at_ns: &mut u64,
) -> (Vec<GetEventsResponse>, Option<Action>) {
    let mut events = Vec::new();
    let mut enforced = None;
    for &id in scope {
        let Some(policy) = policies.enabled().find(|p| p.id == id) else {
            continue;
        };
        let (name, mode) = (policy.name().to_string(), policy.mode);
        let mut decisions = Vec::new();
        for (function, args, selectors) in hooks_of(policy, hook) {
            let arg = |i: u32| {
                args.iter()
                    .any(|a| a.index == i && a.ty == "linux_binprm")
                    .then_some(path)
            };
            if let Some(d) = decide(selectors, hook.family(), arg) {
                let shown: Vec<KprobeArgument> = args
                    .iter()
                    .filter(|a| a.ty == "linux_binprm")
                    .map(|_| binprm(path))
                    .collect();
                decisions.push((function.to_string(), shown, d));
            }
        }
        for (function, args, d) in decisions {
            if let Some(c) = policies.counters_mut(id) {
                count(c, &d, hook.family(), mode);
            }
            if d.post {
                let process = Some(prep.caller.clone());
                let parent = prep.parent.clone();
                let (policy_name, action) = (name.clone(), event_action(&d));
                let event = match hook.family() {
                    HookFamily::Kprobe => Event::ProcessKprobe(ProcessKprobe {
                        process,
                        parent,
                        function_name: function,
                        args,
                        action,
                        policy_name,
                        message: String::new(),
                    }),
                    HookFamily::Lsm => Event::ProcessLsm(ProcessLsm {
                        process,
                        parent,
                        function_name: function,
                        policy_name,
                        message: String::new(),
                        args,
                        action,
                    }),
                };
                events.push(node.event_at(event, *at_ns));
                *at_ns += STEP_NS;
            }
            if mode == Mode::Enforce && matches!(d.action, Action::Override | Action::Sigkill) {
                enforced = enforced.or(Some(d.action));
            }
        }
    }
    (events, enforced)
}

/// The tracepoint `sched/sched_process_exec` of every policy in scope, after
/// the exec of `process`.
fn call_tracepoints(
    policies: &mut PolicyTable,
    scope: &[u64],
    prep: &PreparedExec,
    process: &Process,
    node: &FakeNode,
    at_ns: &mut u64,
) -> (Vec<GetEventsResponse>, bool) {
    let mut events = Vec::new();
    let mut killed = false;
    for &id in scope {
        let Some(policy) = policies.enabled().find(|p| p.id == id) else {
            continue;
        };
        let (name, mode) = (policy.name().to_string(), policy.mode);
        let mut decisions = Vec::new();
        for tp in policy
            .object
            .spec
            .tracepoints
            .iter()
            .filter(|t| t.subsystem == "sched" && t.event == "sched_process_exec")
        {
            // raw: arg 2 is the bprm (the loaded file); otherwise arg 4
            // (`filename`, data_loc) is the path exactly as passed.
            let value = |a: &ArgSpec| match (tp.raw, a.ty.as_str()) {
                (true, "linux_binprm") => Some((prep.files.loaded.as_str(), true)),
                (false, "data_loc" | "string") if a.index == 4 => Some((prep.path.as_str(), false)),
                _ => None,
            };
            let arg = |i: u32| {
                tp.args
                    .iter()
                    .find(|a| a.index == i)
                    .and_then(value)
                    .map(|(v, _)| v)
            };
            if let Some(d) = decide(&tp.selectors, HookFamily::Kprobe, arg) {
                let shown: Vec<KprobeArgument> = tp
                    .args
                    .iter()
                    .filter_map(value)
                    .map(|(v, bprm)| if bprm { binprm(v) } else { string_arg(v) })
                    .collect();
                decisions.push((shown, d));
            }
        }
        for (args, d) in decisions {
            if let Some(c) = policies.counters_mut(id) {
                count(c, &d, HookFamily::Kprobe, mode);
            }
            if d.post {
                let mut p = process.clone();
                p.refcnt = 1;
                let event = Event::ProcessTracepoint(ProcessTracepoint {
                    process: Some(p),
                    parent: prep.parent.clone(),
                    subsys: "sched".into(),
                    event: "sched_process_exec".into(),
                    args,
                    policy_name: name.clone(),
                    action: event_action(&d),
                    message: String::new(),
                });
                events.push(node.event_at(event, *at_ns));
                *at_ns += STEP_NS;
            }
            killed |= mode == Mode::Enforce && d.action == Action::Sigkill;
        }
    }
    (events, killed)
}

/// Container `ci` execs `e` at `now` with the loaded policies; with
/// `exit_after`, the new process (or the caller whose exec failed) exits.
/// Returns every event in order and the outcome.
pub fn run_exec(
    node: &mut FakeNode,
    policies: &mut PolicyTable,
    ci: usize,
    e: &ExecSpec,
    now: UnixMillis,
    exit_after: bool,
) -> (Vec<GetEventsResponse>, Outcome) {
    let scope = in_scope(node, policies, ci);
    if scope.is_empty() {
        let exec = node.exec(ci, e, now);
        let exit = exit_after
            .then(|| exec_id_of(&exec))
            .flatten()
            .and_then(|id| node.exit(&id, now));
        return (std::iter::once(exec).chain(exit).collect(), Outcome::Ran);
    }
    let prep = node.prepare_exec(ci, e, now);
    let t = now.saturating_mul(1_000_000);
    let mut at = t.saturating_sub(HOOKS_BEFORE_NS);
    let mut events = Vec::new();
    let mut stages: Vec<(Hook, String)> = vec![
        (Hook::KprobeCreds, prep.files.opened.clone()),
        (Hook::LsmCreds, prep.files.opened.clone()),
    ];
    for f in &prep.files.checked {
        stages.push((Hook::KprobeCheck, f.clone()));
        stages.push((Hook::LsmCheck, f.clone()));
    }
    for (hook, path) in stages {
        let (evs, enforced) = call_hook(policies, &scope, hook, &path, &prep, node, &mut at);
        events.extend(evs);
        if let Some(action) = enforced {
            let (signal, outcome) = match action {
                Action::Sigkill => (Some("SIGKILL"), Outcome::CallerKilled),
                _ => (None, Outcome::Denied),
            };
            events.extend(node.exec_failed(&prep, t + EXIT_AFTER_NS, signal, exit_after));
            return (events, outcome);
        }
    }
    let exec = node.commit_exec(&prep, e, now);
    let id = exec_id_of(&exec);
    let process = id
        .as_deref()
        .and_then(|id| node.process(id))
        .cloned()
        .unwrap_or_default();
    events.push(exec);
    let mut after = t + STEP_NS;
    let (evs, killed) = call_tracepoints(policies, &scope, &prep, &process, node, &mut after);
    events.extend(evs);
    let exit_ns = t + EXIT_AFTER_NS;
    if killed {
        events.extend(id.and_then(|id| node.exit_at(&id, exit_ns, "SIGKILL")));
        return (events, Outcome::Killed);
    }
    if exit_after {
        events.extend(id.and_then(|id| node.exit_at(&id, exit_ns, "")));
    }
    (events, Outcome::Ran)
}

pub fn exec_id_of(ev: &GetEventsResponse) -> Option<String> {
    match ev.event.as_ref()? {
        Event::ProcessExec(e) => e.process.as_ref().map(|p| p.exec_id.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(action: Action, post: bool) -> Decision {
        Decision {
            action,
            post,
            arg_error: None,
        }
    }

    /// As `vm/tp-list/*.json` and `host/tp-list-*.json`.
    #[test]
    fn counters_follow_tetragons() {
        let mut c = TracingPolicyActionCounters::default();
        count(
            &mut c,
            &d(Action::Override, true),
            HookFamily::Kprobe,
            Mode::Enforce,
        );
        count(
            &mut c,
            &d(Action::Override, true),
            HookFamily::Kprobe,
            Mode::Monitor,
        );
        count(
            &mut c,
            &d(Action::Override, true),
            HookFamily::Lsm,
            Mode::Enforce,
        );
        count(
            &mut c,
            &d(Action::Post, true),
            HookFamily::Lsm,
            Mode::MonitorOnly,
        );
        count(
            &mut c,
            &d(Action::Sigkill, true),
            HookFamily::Kprobe,
            Mode::Enforce,
        );
        count(
            &mut c,
            &d(Action::Sigkill, true),
            HookFamily::Kprobe,
            Mode::Monitor,
        );
        assert_eq!(
            (
                c.post,
                c.r#override,
                c.monitor_override,
                c.signal,
                c.monitor_signal
            ),
            (4, 2, 1, 1, 1)
        );
    }
}
