//! One borrowed view of a process for the learning rules, whatever it was
//! decoded from: a snapshot entry, a full `tetragon.Process`, or the lean
//! stream type (`proto/tetragon/lean.proto`). The rules (`facts::learn`) read
//! only this view, so there is one conversion, not one per decoding; the view
//! holds exactly the fields they read, borrowed, so building one allocates
//! nothing (except a node name recovered from the exec_id, which real
//! Tetragon's events never need).
use std::borrow::Cow;

use prost::bytes::Bytes;

use crate::snapshot::convert::{in_init_tree_or_default, node_name_or_from_exec_id};
use crate::snapshot::model::SnapshotProcess;
use crate::tetragon::proto::{self, get_events_response::Event, lean, GetEventsResponse};
use crate::time::{parse_rfc3339_ms, UnixMillis};

/// The label from which a Deployment's pod is recognised when Tetragon sends
/// no workload (see `learner::key::workload_of`): the only label read.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessView<'a> {
    pub exec_id: &'a str,
    /// 0 when Tetragon gave none.
    pub pid: u32,
    pub parent_exec_id: &'a str,
    pub binary: &'a str,
    pub flags: &'a str,
    pub in_init_tree: bool,
    /// When the process started, as Tetragon reports it.
    pub start_time: Option<UnixMillis>,
    pub node_name: Cow<'a, str>,
    /// `None` for host processes, and for a pod without container info.
    pub container: Option<ContainerView<'a>>,
    /// `None` for host processes.
    pub pod: Option<PodView<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerView<'a> {
    /// Tetragon's container id (`containerd://...`): one container instance.
    pub id: &'a str,
    pub name: &'a str,
    /// When the container (this instance) started.
    pub start_time: Option<UnixMillis>,
    pub maybe_exec_probe: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodView<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub workload: &'a str,
    pub workload_kind: &'a str,
    /// The `pod-template-hash` label, if the pod has one.
    pub pod_template_hash: Option<&'a str>,
    /// Every label of the pod, as decoded (read only when a new container
    /// instance is seen).
    pub labels: LabelsRef<'a>,
}

/// A pod's labels in whichever form they were decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelsRef<'a> {
    Sorted(&'a std::collections::BTreeMap<String, String>),
    Hashed(&'a std::collections::HashMap<String, String>),
    /// The lean stream's entries (the last one of a key wins, as in a map).
    Entries(&'a [lean::LabelEntry]),
}

impl LabelsRef<'_> {
    /// The labels a learner keeps (`learner::pod_labels::learnable_labels`);
    /// `None` when they are not a Kubernetes label set or not UTF-8.
    pub fn learnable(&self) -> Option<crate::learner::pod_labels::LabelSet> {
        use crate::learner::pod_labels::learnable_labels;
        match self {
            Self::Sorted(m) => learnable_labels(m.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            Self::Hashed(m) => learnable_labels(m.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            Self::Entries(entries) => {
                let mut map = std::collections::BTreeMap::new();
                for e in *entries {
                    map.insert(text(&e.key).ok()?, text(&e.value).ok()?);
                }
                learnable_labels(map)
            }
        }
    }
}

/// An event as the rules read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventView<'a> {
    /// `process_exec`; `None` when it carries no process.
    Exec(Option<ProcessView<'a>>),
    /// `process_exit`; `None` when it carries no process.
    Exit(Option<ProcessView<'a>>),
    /// `rate_limit_info`: Tetragon dropped this many events.
    Dropped(u64),
    /// An event of a tracing policy's hook (`process_kprobe`,
    /// `process_tracepoint`, `process_lsm`).
    Policy(PolicyEventView<'a>),
    /// No event, or a kind the agent does not use.
    Other,
}

/// Which kind of hook posted a policy event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyEventKind {
    Kprobe,
    Tracepoint,
    Lsm,
}

/// A policy event as the agent reads it: who posted it, the `linux_binprm`
/// path it checked, and the process it names. For a kprobe or LSM hook on
/// an exec check that process is the caller before the exec; for the raw
/// `sched_process_exec` tracepoint it is the new exec itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEventView<'a> {
    pub kind: PolicyEventKind,
    pub policy_name: &'a str,
    /// The first `linux_binprm` argument's path, if the event has one.
    pub binprm_path: Option<&'a str>,
    /// Tetragon's `KprobeAction` number (`KPROBE_ACTION_POST` = 1, ...).
    pub action: i32,
    /// When Tetragon saw the event (the response's `time`).
    pub time: Option<UnixMillis>,
    pub process: Option<ProcessView<'a>>,
}

/// A field the agent reads is not UTF-8. Only the lean decoding can meet it:
/// the full decoding refuses the whole frame (prost checks every string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8;

impl<'a> ProcessView<'a> {
    pub fn of_snapshot(p: &'a SnapshotProcess) -> Self {
        Self {
            exec_id: &p.exec_id,
            pid: p.pid,
            parent_exec_id: &p.parent_exec_id,
            binary: &p.binary,
            flags: &p.flags,
            in_init_tree: p.in_init_tree,
            start_time: p.start_time.as_deref().and_then(parse_rfc3339_ms),
            node_name: Cow::Borrowed(&p.node_name),
            container: p.container.as_ref().map(|c| ContainerView {
                id: &c.id,
                name: &c.name,
                start_time: c.start_time.as_deref().and_then(parse_rfc3339_ms),
                maybe_exec_probe: c.maybe_exec_probe,
            }),
            pod: p.pod.as_ref().map(|pod| PodView {
                namespace: &pod.namespace,
                name: &pod.name,
                workload: &pod.workload,
                workload_kind: &pod.workload_kind,
                pod_template_hash: pod.labels.get(POD_TEMPLATE_HASH).map(String::as_str),
                labels: LabelsRef::Sorted(&pod.labels),
            }),
        }
    }

    /// A process of a full event; `node_name` is the event's.
    pub fn of_full(p: &'a proto::Process, node_name: &'a str) -> Self {
        let pod = p.pod.as_ref();
        Self {
            exec_id: &p.exec_id,
            pid: p.pid.as_ref().map(|w| w.value).unwrap_or(0),
            parent_exec_id: &p.parent_exec_id,
            binary: &p.binary,
            flags: &p.flags,
            in_init_tree: in_init_tree_or_default(p.in_init_tree.as_ref().map(|w| w.value)),
            start_time: p.start_time.as_ref().and_then(|t| ms(t.seconds, t.nanos)),
            node_name: node_name_or_from_exec_id(node_name, &p.exec_id),
            container: pod
                .and_then(|pod| pod.container.as_ref())
                .map(|c| ContainerView {
                    id: &c.id,
                    name: &c.name,
                    start_time: c.start_time.as_ref().and_then(|t| ms(t.seconds, t.nanos)),
                    maybe_exec_probe: c.maybe_exec_probe,
                }),
            pod: pod.map(|pod| PodView {
                namespace: &pod.namespace,
                name: &pod.name,
                workload: &pod.workload,
                workload_kind: &pod.workload_kind,
                pod_template_hash: pod.pod_labels.get(POD_TEMPLATE_HASH).map(String::as_str),
                labels: LabelsRef::Hashed(&pod.pod_labels),
            }),
        }
    }

    /// A process of a lean event; `node_name` is the event's.
    pub fn of_lean(p: &'a lean::Process, node_name: &'a Bytes) -> Result<Self, NotUtf8> {
        let exec_id = text(&p.exec_id)?;
        let pod = p.pod.as_ref();
        Ok(Self {
            exec_id,
            pid: p.pid.as_ref().map(|w| w.value).unwrap_or(0),
            parent_exec_id: text(&p.parent_exec_id)?,
            binary: text(&p.binary)?,
            flags: text(&p.flags)?,
            in_init_tree: in_init_tree_or_default(p.in_init_tree.as_ref().map(|w| w.value)),
            start_time: p.start_time.as_ref().and_then(|t| ms(t.seconds, t.nanos)),
            node_name: node_name_or_from_exec_id(text(node_name)?, exec_id),
            container: match pod.and_then(|pod| pod.container.as_ref()) {
                Some(c) => Some(ContainerView {
                    id: text(&c.id)?,
                    name: text(&c.name)?,
                    start_time: c.start_time.as_ref().and_then(|t| ms(t.seconds, t.nanos)),
                    maybe_exec_probe: c.maybe_exec_probe,
                }),
                None => None,
            },
            pod: match pod {
                Some(pod) => Some(PodView {
                    namespace: text(&pod.namespace)?,
                    name: text(&pod.name)?,
                    workload: text(&pod.workload)?,
                    workload_kind: text(&pod.workload_kind)?,
                    pod_template_hash: lean_label(&pod.pod_labels, POD_TEMPLATE_HASH)?,
                    labels: LabelsRef::Entries(&pod.pod_labels),
                }),
                None => None,
            },
        })
    }
}

impl<'a> EventView<'a> {
    pub fn of_full(ev: &'a GetEventsResponse) -> Self {
        let process = |p: &'a Option<proto::Process>| {
            p.as_ref().map(|p| ProcessView::of_full(p, &ev.node_name))
        };
        match &ev.event {
            Some(Event::ProcessExec(exec)) => Self::Exec(process(&exec.process)),
            Some(Event::ProcessExit(exit)) => Self::Exit(process(&exit.process)),
            Some(Event::RateLimitInfo(info)) => {
                Self::Dropped(info.number_of_dropped_process_events)
            }
            Some(Event::ProcessKprobe(e)) => Self::Policy(PolicyEventView::of_full(
                ev,
                PolicyEventKind::Kprobe,
                (&e.policy_name, &e.args, e.action, e.process.as_ref()),
            )),
            Some(Event::ProcessTracepoint(e)) => Self::Policy(PolicyEventView::of_full(
                ev,
                PolicyEventKind::Tracepoint,
                (&e.policy_name, &e.args, e.action, e.process.as_ref()),
            )),
            Some(Event::ProcessLsm(e)) => Self::Policy(PolicyEventView::of_full(
                ev,
                PolicyEventKind::Lsm,
                (&e.policy_name, &e.args, e.action, e.process.as_ref()),
            )),
            None => Self::Other,
        }
    }

    pub fn of_lean(ev: &'a lean::GetEventsResponse) -> Result<Self, NotUtf8> {
        use lean::get_events_response::Event as Lean;
        let process = |p: &'a Option<lean::Process>| {
            p.as_ref()
                .map(|p| ProcessView::of_lean(p, &ev.node_name))
                .transpose()
        };
        Ok(match &ev.event {
            Some(Lean::ProcessExec(exec)) => Self::Exec(process(&exec.process)?),
            Some(Lean::ProcessExit(exit)) => Self::Exit(process(&exit.process)?),
            Some(Lean::RateLimitInfo(info)) => Self::Dropped(info.number_of_dropped_process_events),
            Some(Lean::ProcessKprobe(e)) => Self::Policy(PolicyEventView::of_lean(
                ev,
                PolicyEventKind::Kprobe,
                (&e.policy_name, &e.args, e.action, e.process.as_ref()),
            )?),
            Some(Lean::ProcessTracepoint(e)) => Self::Policy(PolicyEventView::of_lean(
                ev,
                PolicyEventKind::Tracepoint,
                (&e.policy_name, &e.args, e.action, e.process.as_ref()),
            )?),
            Some(Lean::ProcessLsm(e)) => Self::Policy(PolicyEventView::of_lean(
                ev,
                PolicyEventKind::Lsm,
                (&e.policy_name, &e.args, e.action, e.process.as_ref()),
            )?),
            None => Self::Other,
        })
    }
}

/// The fields every policy event kind shares, as decoded.
type FullParts<'a> = (
    &'a String,
    &'a Vec<proto::KprobeArgument>,
    i32,
    Option<&'a proto::Process>,
);
type LeanParts<'a> = (
    &'a Bytes,
    &'a Vec<lean::KprobeArgument>,
    i32,
    Option<&'a lean::Process>,
);

impl<'a> PolicyEventView<'a> {
    /// `(policy_name, args, action, process)`: the fields every policy event
    /// kind shares.
    fn of_full(
        ev: &'a GetEventsResponse,
        kind: PolicyEventKind,
        (policy_name, args, action, process): FullParts<'a>,
    ) -> Self {
        use proto::kprobe_argument::Arg;
        Self {
            kind,
            policy_name,
            binprm_path: args.iter().find_map(|a| match &a.arg {
                Some(Arg::LinuxBinprmArg(b)) => Some(b.path.as_str()),
                _ => None,
            }),
            action,
            time: ev.time.as_ref().and_then(|t| ms(t.seconds, t.nanos)),
            process: process.map(|p| ProcessView::of_full(p, &ev.node_name)),
        }
    }

    fn of_lean(
        ev: &'a lean::GetEventsResponse,
        kind: PolicyEventKind,
        (policy_name, args, action, process): LeanParts<'a>,
    ) -> Result<Self, NotUtf8> {
        let binprm_path = args
            .iter()
            .find_map(|a| a.linux_binprm_arg.as_ref())
            .map(|b| text(&b.path))
            .transpose()?;
        Ok(Self {
            kind,
            policy_name: text(policy_name)?,
            binprm_path,
            action,
            time: ev.time.as_ref().and_then(|t| ms(t.seconds, t.nanos)),
            process: process
                .map(|p| ProcessView::of_lean(p, &ev.node_name))
                .transpose()?,
        })
    }
}

/// A protobuf Timestamp in Unix milliseconds (truncated, as the RFC 3339
/// text of a snapshot entry reads); `None` before 1970 or out of range.
fn ms(seconds: i64, nanos: i32) -> Option<UnixMillis> {
    u64::try_from(seconds)
        .ok()?
        .checked_mul(1_000)?
        .checked_add(u64::try_from(nanos).ok()? / 1_000_000)
}

fn text(b: &Bytes) -> Result<&str, NotUtf8> {
    std::str::from_utf8(b).map_err(|_| NotUtf8)
}

/// A label of a lean pod: the last entry with that key wins, as when the
/// full decoding fills its map.
fn lean_label<'a>(labels: &'a [lean::LabelEntry], key: &str) -> Result<Option<&'a str>, NotUtf8> {
    labels
        .iter()
        .rev()
        .find(|e| e.key.as_ref() == key.as_bytes())
        .map(|e| text(&e.value))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_label_key_keeps_the_last_value_like_a_map() {
        let entry = |k: &'static str, v: &'static str| lean::LabelEntry {
            key: Bytes::from_static(k.as_bytes()),
            value: Bytes::from_static(v.as_bytes()),
        };
        let labels = [
            entry(POD_TEMPLATE_HASH, "a"),
            entry("app", "x"),
            entry(POD_TEMPLATE_HASH, "b"),
        ];
        assert_eq!(lean_label(&labels, POD_TEMPLATE_HASH), Ok(Some("b")));
        assert_eq!(lean_label(&labels, "missing"), Ok(None));
    }

    #[test]
    fn a_field_the_agent_reads_must_be_utf8() {
        let p = lean::Process {
            exec_id: Bytes::from_static(b"e1"),
            binary: Bytes::from_static(b"/bin/\xff"),
            ..Default::default()
        };
        assert_eq!(
            ProcessView::of_lean(&p, &Bytes::from_static(b"n")),
            Err(NotUtf8)
        );
    }
}
