//! Pure conversions from Tetragon's process messages to snapshot entries.
use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::tetragon::proto;
use crate::time::rfc3339_from_parts;

use super::model::{ContainerInfo, PodInfo, SnapshotProcess};

/// Converts one Tetragon `Process` (from the process cache, an exec event or an
/// export-log line). Never fails: missing parts become empty values, and a
/// process without pod info is a host process (`pod`/`container` = `None`).
pub fn process_to_snapshot(p: &proto::Process, node_name: &str) -> SnapshotProcess {
    let (container, pod) = match &p.pod {
        Some(pod) => pod_parts(pod),
        None => (None, None),
    };
    SnapshotProcess {
        pid: p.pid.as_ref().map(|w| w.value).unwrap_or(0),
        exec_id: p.exec_id.clone(),
        parent_exec_id: p.parent_exec_id.clone(),
        binary: p.binary.clone(),
        arguments: p.arguments.clone(),
        flags: p.flags.clone(),
        start_time: p
            .start_time
            .as_ref()
            .and_then(|t| rfc3339_from_parts(t.seconds, t.nanos)),
        in_init_tree: in_init_tree_or_default(p.in_init_tree.as_ref().map(|w| w.value)),
        node_name: node_name_or_from_exec_id(node_name, &p.exec_id).into_owned(),
        container,
        pod,
    }
}

fn pod_parts(pod: &proto::Pod) -> (Option<ContainerInfo>, Option<PodInfo>) {
    let labels: BTreeMap<String, String> = pod
        .pod_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let container = pod.container.as_ref().map(|c| ContainerInfo {
        id: c.id.clone(),
        name: c.name.clone(),
        image: c.image.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
        maybe_exec_probe: c.maybe_exec_probe,
        start_time: c
            .start_time
            .as_ref()
            .and_then(|t| rfc3339_from_parts(t.seconds, t.nanos)),
    });
    let info = PodInfo {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        uid: pod.uid.clone(),
        workload: pod.workload.clone(),
        workload_kind: pod.workload_kind.clone(),
        labels,
    };
    (container, Some(info))
}

/// Tetragon leaves the `in_init_tree` wrapper unset when it does not know; that
/// counts as "in the init tree", so only a positive `false` marks an exec session.
pub fn in_init_tree_or_default(wrapper: Option<bool>) -> bool {
    wrapper.unwrap_or(true)
}

/// The event's node name, or (when it has none, as in the process-cache dump)
/// the node named in the exec_id; empty when neither says.
pub fn node_name_or_from_exec_id<'a>(node_name: &'a str, exec_id: &str) -> Cow<'a, str> {
    if node_name.is_empty() {
        Cow::Owned(node_from_exec_id(exec_id).unwrap_or_default())
    } else {
        Cow::Borrowed(node_name)
    }
}

/// Tetragon's exec_id is base64 of `<node>:<ktime>:<pid>`: the process-cache dump
/// carries no node name, but every exec_id does.
pub fn node_from_exec_id(exec_id: &str) -> Option<String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(exec_id)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let mut parts = text.rsplitn(3, ':');
    let (_pid, _ktime, node) = (parts.next()?, parts.next()?, parts.next()?);
    Some(node.to_string())
}

/// Kernel threads (`[kworker/0:1]`) and the `<kernel>` pseudo-process fill
/// Tetragon's process cache but are never executables a policy could name.
pub fn is_kernel_pseudo_binary(binary: &str) -> bool {
    binary == "<kernel>" || (binary.starts_with('[') && binary.ends_with(']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_name_comes_from_exec_id() {
        assert_eq!(node_from_exec_id("dm06MTow").as_deref(), Some("vm"));
        assert_eq!(node_from_exec_id("not base64!"), None);
    }

    #[test]
    fn kernel_threads_and_kernel_are_pseudo_binaries() {
        assert!(is_kernel_pseudo_binary("<kernel>"));
        assert!(is_kernel_pseudo_binary("[kworker/0:1]"));
        assert!(!is_kernel_pseudo_binary("/usr/bin/sleep"));
    }

    #[test]
    fn host_process_has_no_pod() {
        let p = proto::Process {
            exec_id: "dm06MTow".into(),
            binary: "/bin/x".into(),
            ..Default::default()
        };
        let s = process_to_snapshot(&p, "");
        assert!(s.pod.is_none(), "a host process has no pod");
        assert_eq!(s.node_name, "vm");
        assert!(s.in_init_tree);
    }
}
