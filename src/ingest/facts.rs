//! Pure conversion of Tetragon events and snapshot entries into facts for the
//! learners. Snapshot entries and exec events go through the same rules.
use serde::Serialize;

use crate::learner::key::LearnerKey;
use crate::learner::observation::{FactSource, Observation};
use crate::snapshot::convert::is_kernel_pseudo_binary;
use crate::snapshot::exec_chain::ExecLink;

pub use super::process_table::DEFAULT_MAX_LIVE_PROCESSES;
use crate::snapshot::model::SnapshotProcess;
use crate::tetragon::proto::{lean, GetEventsResponse};

use super::process_view::{EventView, NotUtf8, PolicyEventView, ProcessView};
use crate::time::UnixMillis;

/// What is learned, and from where.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Learn processes outside pods, as one learner per node (kind `Host`).
    pub learn_host_processes: bool,
    /// When non-empty, only these namespaces are learned.
    pub include_namespaces: Vec<String>,
    /// These namespaces are never learned.
    pub exclude_namespaces: Vec<String>,
    /// Cap of the live process table (oldest entries evicted beyond it).
    pub max_live_processes: usize,
    /// Exits of binaries a profile lacks teach them (source `exit`). Only
    /// turned off to measure what exits add.
    pub learn_from_exits: bool,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            learn_host_processes: false,
            include_namespaces: Vec::new(),
            exclude_namespaces: Vec::new(),
            max_live_processes: DEFAULT_MAX_LIVE_PROCESSES,
            learn_from_exits: true,
        }
    }
}

/// Linux's PATH_MAX: `execve` refuses a longer file name, so a longer
/// `binary` cannot be a real exec (a hostile or broken source sent it). Such an
/// entry is skipped, never learned.
pub const PATH_MAX: usize = 4096;

/// Why an event or snapshot entry taught nothing. Counted and logged, per reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// An event of a kind the agent does not use, or with no event at all.
    OtherKind,
    NoProcess,
    PodWithoutContainer,
    EmptyBinary,
    /// `binary` longer than [`PATH_MAX`] bytes.
    PathTooLong,
    KernelThread,
    HostProcess,
    NamespaceFiltered,
    /// A field the agent reads (binary, exec_id, pod, ...) is not UTF-8.
    NotUtf8,
    /// A policy event of a policy that is not one of the agent's.
    ForeignPolicy,
    /// An observe-policy event without the `linux_binprm` path or the
    /// process it needs.
    PolicyEventIncomplete,
    /// An observe-policy event for an exec the agent did not learn (a host
    /// process, a filtered namespace, or its exec is not in yet).
    PolicyEventUntied,
    /// An event of one of the agent's exported policies that changes no
    /// profile (a would-deny in monitor mode, a kprobe/LSM denial): not kept
    /// yet.
    OwnPolicyEvent,
}

impl SkipReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::OtherKind => "other_kind",
            Self::NoProcess => "no_process",
            Self::PodWithoutContainer => "pod_without_container",
            Self::EmptyBinary => "empty_binary",
            Self::PathTooLong => "path_too_long",
            Self::KernelThread => "kernel_thread",
            Self::HostProcess => "host_process",
            Self::NamespaceFiltered => "namespace_filtered",
            Self::NotUtf8 => "not_utf8",
            Self::ForeignPolicy => "foreign_policy",
            Self::PolicyEventIncomplete => "policy_event_incomplete",
            Self::PolicyEventUntied => "policy_event_untied",
            Self::OwnPolicyEvent => "own_policy_event",
        }
    }
}

/// A process that teaches its learner one executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learnable {
    pub key: LearnerKey,
    pub exec_id: String,
    pub observation: Observation,
    /// Whether it replaced an earlier image of the same process (for the live
    /// process table).
    pub link: ExecLink,
    /// The container instance it runs in (none outside containers).
    pub instance: Option<InstanceRef>,
    /// When the process started, as Tetragon reports it.
    pub started_at: Option<UnixMillis>,
    /// 0 when Tetragon gave none.
    pub pid: u32,
    /// Found by Tetragon's `/proc` scan (`procFS`): the path is
    /// `readlink /proc/PID/exe`, which is the `loaded` hook view of itself.
    pub procfs: bool,
}

/// A container instance: Tetragon's container id and the container's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRef {
    pub id: String,
    pub started_at: Option<UnixMillis>,
}

/// What one event means to the agent.
// A transient value, and `Exec` the common case: boxing it would cost an
// allocation per event to save stack bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact<'a> {
    Exec(Learnable),
    /// A process ended: it leaves the live process table. When the table did
    /// not hold it (its exec was missed), `exit_learnable` says what it
    /// teaches: built only then, since most exits follow a seen exec. Until
    /// then only its exec_id is read (borrowed from the event).
    Exit {
        exec_id: &'a str,
    },
    /// Tetragon says it dropped this many events: learners may be partial.
    Dropped {
        count: u64,
    },
    /// An event of a tracing policy's hook: what it means depends on whose
    /// policy it is (the ingester knows its observe policies).
    Policy(PolicyEventView<'a>),
    Skip(SkipReason),
}

/// Applies the learning rules to one snapshot entry.
pub fn learnable(
    p: &SnapshotProcess,
    source: FactSource,
    at: UnixMillis,
    cfg: &IngestConfig,
) -> Result<Learnable, SkipReason> {
    learn(&ProcessView::of_snapshot(p), source, at, cfg)
}

/// The learning rules, for one process from any source (a snapshot entry, a
/// full or a lean exec event): the one place they are written.
pub fn learn(
    p: &ProcessView<'_>,
    source: FactSource,
    at: UnixMillis,
    cfg: &IngestConfig,
) -> Result<Learnable, SkipReason> {
    if p.binary.is_empty() {
        return Err(SkipReason::EmptyBinary);
    }
    if p.binary.len() > PATH_MAX {
        return Err(SkipReason::PathTooLong);
    }
    if is_kernel_pseudo_binary(p.binary) {
        return Err(SkipReason::KernelThread);
    }
    let key = match (&p.pod, &p.container) {
        (None, _) if cfg.learn_host_processes => LearnerKey::host(&p.node_name),
        (None, _) => return Err(SkipReason::HostProcess),
        (Some(_), None) => return Err(SkipReason::PodWithoutContainer),
        (Some(_), Some(c)) if c.name.is_empty() => return Err(SkipReason::PodWithoutContainer),
        (Some(pod), Some(c)) => LearnerKey::for_pod_hash(
            pod.namespace,
            pod.name,
            pod.workload,
            pod.workload_kind,
            pod.pod_template_hash,
            c.name,
        ),
    };
    if let Some(pod) = &p.pod {
        let ns = pod.namespace;
        if cfg.exclude_namespaces.iter().any(|n| n == ns)
            || (!cfg.include_namespaces.is_empty()
                && !cfg.include_namespaces.iter().any(|n| n == ns))
        {
            return Err(SkipReason::NamespaceFiltered);
        }
    }
    let exec_probe = p.container.as_ref().is_some_and(|c| c.maybe_exec_probe);
    let instance = p
        .container
        .as_ref()
        .filter(|c| !c.id.is_empty() && p.pod.is_some())
        .map(|c| InstanceRef {
            id: c.id.to_owned(),
            started_at: c.start_time,
        });
    Ok(Learnable {
        key,
        instance,
        started_at: p.start_time,
        pid: p.pid,
        procfs: p.flags.split_ascii_whitespace().any(|w| w == "procFS"),
        link: ExecLink::new(
            p.flags,
            p.exec_id,
            (p.pid != 0).then_some(p.pid),
            p.parent_exec_id,
        ),
        exec_id: p.exec_id.to_owned(),
        observation: Observation {
            path: p.binary.to_owned(),
            at,
            source,
            exec_probe,
            // A `kubectl exec` session: outside the container's init tree and
            // not a probe. Tetragon sends every exec probe with `in_init_tree:
            // false` too (the kubelet starts it through the runtime, not from
            // the container's init), so without the second test every probe
            // would also count as a session and be left out with them. Only
            // meaningful inside a pod: Tetragon reports `in_init_tree` false for
            // every process outside a container (seen on real hosts).
            exec_session: p.pod.is_some() && !p.in_init_tree && !exec_probe,
        },
    })
}

/// Classifies one streamed event, whichever way it was decoded.
/// `process_exit` and other kinds teach nothing.
pub fn fact_from_view<'a>(ev: &EventView<'a>, at: UnixMillis, cfg: &IngestConfig) -> Fact<'a> {
    match ev {
        EventView::Exec(None) | EventView::Exit(None) => Fact::Skip(SkipReason::NoProcess),
        EventView::Exec(Some(p)) => match learn(p, FactSource::Event, at, cfg) {
            Ok(l) => Fact::Exec(l),
            Err(reason) => Fact::Skip(reason),
        },
        EventView::Exit(Some(p)) => Fact::Exit { exec_id: p.exec_id },
        EventView::Dropped(count) => Fact::Dropped { count: *count },
        EventView::Policy(p) => Fact::Policy(p.clone()),
        EventView::Other => Fact::Skip(SkipReason::OtherKind),
    }
}

/// What the exit `ev` teaches (source `exit`), when its process is learnable.
/// `Err(NotUtf8)` when a field it reads is not UTF-8 (a counted skip, as for
/// any event); `Ok(None)` when the process teaches nothing (a host process,
/// say: exits are not counted as skips).
pub fn exit_learnable(
    ev: &lean::GetEventsResponse,
    at: UnixMillis,
    cfg: &IngestConfig,
) -> Result<Option<Learnable>, SkipReason> {
    match EventView::of_lean(ev) {
        Ok(EventView::Exit(Some(p))) => Ok(learn(&p, FactSource::Exit, at, cfg).ok()),
        Ok(_) => Ok(None),
        Err(NotUtf8) => Err(SkipReason::NotUtf8),
    }
}

/// Classifies one event decoded into the full types.
pub fn fact_from_event<'a>(
    ev: &'a GetEventsResponse,
    at: UnixMillis,
    cfg: &IngestConfig,
) -> Fact<'a> {
    fact_from_view(&EventView::of_full(ev), at, cfg)
}

/// Classifies one event of the lean stream (what the agent reads). A field
/// it reads that is not UTF-8 makes the event a counted skip (the full
/// decoding would refuse the frame, and the stream with it). Of an exit only
/// the exec_id is read here (half the events, and most only leave the
/// process table); `exit_learnable` reads the rest when the exit teaches.
pub fn fact_from_lean_event<'a>(
    ev: &'a lean::GetEventsResponse,
    at: UnixMillis,
    cfg: &IngestConfig,
) -> Fact<'a> {
    use lean::get_events_response::Event;
    if let Some(Event::ProcessExit(lean::ProcessExit { process: Some(p) })) = &ev.event {
        return match std::str::from_utf8(&p.exec_id) {
            Ok(exec_id) => Fact::Exit { exec_id },
            Err(_) => Fact::Skip(SkipReason::NotUtf8),
        };
    }
    match EventView::of_lean(ev) {
        Ok(view) => fact_from_view(&view, at, cfg),
        Err(NotUtf8) => Fact::Skip(SkipReason::NotUtf8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::model::{ContainerInfo, PodInfo};

    fn pod_process(binary: &str) -> SnapshotProcess {
        SnapshotProcess {
            pid: 7,
            exec_id: "e1".into(),
            parent_exec_id: String::new(),
            binary: binary.into(),
            arguments: String::new(),
            flags: "execve clone".into(),
            start_time: None,
            in_init_tree: true,
            node_name: "n1".into(),
            container: Some(ContainerInfo {
                id: "c".into(),
                name: "app".into(),
                image: "i".into(),
                maybe_exec_probe: false,
                start_time: Some("1970-01-01T00:00:01Z".into()),
            }),
            pod: Some(PodInfo {
                namespace: "ns".into(),
                name: "web-5d8f7c6b9d-abcde".into(),
                uid: String::new(),
                workload: String::new(),
                workload_kind: String::new(),
                labels: [("pod-template-hash".to_string(), "5d8f7c6b9d".to_string())].into(),
            }),
        }
    }

    #[test]
    fn legacy_pod_is_learned_under_its_deployment() {
        let l = learnable(
            &pod_process("/bin/app"),
            FactSource::Event,
            5,
            &IngestConfig::default(),
        )
        .unwrap();
        assert_eq!(l.key, LearnerKey::new("ns", "Deployment", "web", "app"));
        assert_eq!(l.observation.path, "/bin/app");
    }

    #[test]
    fn skips_are_classified() {
        let cfg = IngestConfig::default();
        assert_eq!(
            learnable(&pod_process(""), FactSource::Event, 0, &cfg),
            Err(SkipReason::EmptyBinary)
        );
        assert_eq!(
            learnable(&pod_process("[kworker/0:1]"), FactSource::Event, 0, &cfg),
            Err(SkipReason::KernelThread)
        );
        let mut host = pod_process("/usr/bin/kubelet");
        host.pod = None;
        host.container = None;
        assert_eq!(
            learnable(&host, FactSource::Event, 0, &cfg),
            Err(SkipReason::HostProcess)
        );
        let with_host = IngestConfig {
            learn_host_processes: true,
            ..Default::default()
        };
        assert_eq!(
            learnable(&host, FactSource::Event, 0, &with_host)
                .unwrap()
                .key,
            LearnerKey::host("n1")
        );
        let mut no_container = pod_process("/bin/app");
        no_container.container = None;
        assert_eq!(
            learnable(&no_container, FactSource::Event, 0, &cfg),
            Err(SkipReason::PodWithoutContainer)
        );
        let excl = IngestConfig {
            exclude_namespaces: vec!["ns".into()],
            ..Default::default()
        };
        assert_eq!(
            learnable(&pod_process("/bin/app"), FactSource::Event, 0, &excl),
            Err(SkipReason::NamespaceFiltered)
        );
    }

    #[test]
    fn paths_longer_than_path_max_are_skipped_from_every_source() {
        let cfg = IngestConfig::default();
        let at_limit = format!("/{}", "a".repeat(4095)); // 4096 bytes
        let over = format!("/{}", "a".repeat(4096)); // 4097 bytes
        let huge = format!("/{}", "b".repeat(1 << 20));
        for source in [
            FactSource::Event,
            FactSource::Snapshot,
            FactSource::ExportLog,
        ] {
            assert!(learnable(&pod_process(&at_limit), source, 0, &cfg).is_ok());
            for long in [&over, &huge] {
                assert_eq!(
                    learnable(&pod_process(long), source, 0, &cfg),
                    Err(SkipReason::PathTooLong)
                );
            }
        }
        assert_eq!(SkipReason::PathTooLong.label(), "path_too_long");
        // A stream event takes the same rule.
        let ev: GetEventsResponse = serde_json::from_value(serde_json::json!({
            "process_exec": {"process": {"exec_id": "eA==", "binary": huge,
                "pod": {"namespace": "ns", "name": "p", "container": {"name": "app"}}}},
            "node_name": "n"
        }))
        .unwrap();
        assert_eq!(
            fact_from_event(&ev, 0, &cfg),
            Fact::Skip(SkipReason::PathTooLong)
        );
    }

    #[test]
    fn a_probe_is_not_a_session() {
        // What Tetragon sends for a liveness probe: outside the init tree and
        // flagged as a possible probe.
        let mut probe = pod_process("/usr/bin/pg_isready");
        probe.in_init_tree = false;
        if let Some(c) = probe.container.as_mut() {
            c.maybe_exec_probe = true;
        }
        let l = learnable(&probe, FactSource::Event, 0, &IngestConfig::default()).unwrap();
        assert!(l.observation.exec_probe);
        assert!(!l.observation.exec_session);
        // `kubectl exec`: outside the init tree, no probe flag.
        let mut session = pod_process("/bin/bash");
        session.in_init_tree = false;
        let l = learnable(&session, FactSource::Event, 0, &IngestConfig::default()).unwrap();
        assert!(!l.observation.exec_probe);
        assert!(l.observation.exec_session);
        // The container's own processes.
        let l = learnable(
            &pod_process("/bin/app"),
            FactSource::Snapshot,
            0,
            &IngestConfig::default(),
        )
        .unwrap();
        assert!(!l.observation.exec_probe && !l.observation.exec_session);
    }

    #[test]
    fn events_without_content_are_skipped() {
        let cfg = IngestConfig::default();
        assert_eq!(
            fact_from_event(&GetEventsResponse::default(), 0, &cfg),
            Fact::Skip(SkipReason::OtherKind)
        );
    }
}
