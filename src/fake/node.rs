//! The fake node: a process cache shaped like Tetragon's (with `<kernel>`, kernel
//! threads and host processes) and builders for the events Tetragon would send.
//! Plain data; time is passed in.
use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use pbjson_types::{BoolValue, Timestamp, UInt32Value};

use crate::tetragon::proto::{
    get_events_response::Event, Container, GetEventsResponse, Image, Pod, Process, ProcessExec,
    ProcessExit, ProcessInternal,
};
use crate::time::UnixMillis;

use super::files::{self, ExecFiles, FileTable};
use super::scenario::{ContainerSpec, ExecSpec, Scenario};
use super::selectors::PodView;

/// How long before its exec the caller was forked, in ns: its hook events
/// (kprobe/LSM at `bprm_creds_for_exec`) fall in between, so they precede the
/// new exec's `start_time` as in the real captures.
pub const CALLER_FORKED_NS: u64 = 100_000;

/// A process of the fake node, with what Tetragon's cache keeps about it.
#[derive(Debug, Clone)]
struct CachedProcess {
    process: Process,
    parent_exec_id: String,
}

#[derive(Debug)]
pub struct FakeNode {
    node_name: String,
    /// Keyed by exec_id; a BTreeMap keeps dumps in a stable order.
    cache: BTreeMap<String, CachedProcess>,
    /// Per container (scenario index): the exec_id of its first running process,
    /// the parent of whatever the container execs later.
    container_parent: Vec<Option<String>>,
    containers: Vec<ContainerSpec>,
    /// Per container: when this instance started (Tetragon's
    /// `pod.container.start_time`): the fake's boot for the scenario's own
    /// containers, the start for those a rollout adds.
    container_started: Vec<UnixMillis>,
    next_pid: u32,
    boot_ms: UnixMillis,
    /// Per container (scenario index), then the host's: files, keys cleaned.
    container_files: Vec<FileTable>,
    host_files: FileTable,
}

/// An exec under way: the process that called execve (a fork of the
/// container's first process, still running the parent's image) and what the
/// exec will show.
#[derive(Debug, Clone)]
pub struct PreparedExec {
    pub ci: usize,
    pub pid: u32,
    pub files: ExecFiles,
    /// The path as passed to execve.
    pub path: String,
    pub cwd: String,
    pub caller: Process,
    pub parent: Option<Process>,
    parent_id: String,
}

/// Tetragon's exec_id: base64 of `<node>:<ktime ns>:<pid>`.
pub fn exec_id(node: &str, ktime_ns: u64, pid: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{node}:{ktime_ns}:{pid}"))
}

/// A stable 64-hex container id from the pod and container names.
fn container_hex_id(spec: &ContainerSpec) -> String {
    let mut out = String::with_capacity(64);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for round in 0u8..4 {
        for b in spec
            .namespace
            .bytes()
            .chain(spec.pod.bytes())
            .chain(spec.container.bytes())
            .chain([round])
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

fn ts(ms: UnixMillis) -> Timestamp {
    Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// A timestamp from ns since the epoch.
pub fn ts_ns(ns: u64) -> Timestamp {
    Timestamp {
        seconds: (ns / 1_000_000_000) as i64,
        nanos: (ns % 1_000_000_000) as i32,
    }
}

fn table(t: &FileTable) -> FileTable {
    // Scenario validation checked the keys; keep the table as given otherwise.
    files::normalized(t).unwrap_or_else(|_| t.clone())
}

impl FakeNode {
    pub fn new(s: &Scenario, boot_ms: UnixMillis) -> Self {
        let mut node = Self {
            node_name: s.node_name.clone(),
            cache: BTreeMap::new(),
            container_parent: vec![None; s.containers.len()],
            containers: s.containers.clone(),
            container_started: vec![boot_ms; s.containers.len()],
            next_pid: 100,
            boot_ms,
            container_files: s.containers.iter().map(|c| table(&c.files)).collect(),
            host_files: table(&s.host_files),
        };
        let kernel_id = exec_id(&node.node_name, 1, 0);
        node.insert_plain(0, "<kernel>", "", "procFS", &kernel_id, &kernel_id, None);
        let kthreadd_id = exec_id(&node.node_name, 20_000_000, 2);
        let kthreadd = node.insert_plain(
            2,
            "[kthreadd]",
            "",
            "procFS",
            &kthreadd_id,
            &kernel_id,
            None,
        );
        for i in 0..s.kernel_threads {
            let pid = 10 + i;
            let name = format!("[kworker/{i}:0]");
            let id = exec_id(&node.node_name, u64::from(pid) * 10_000_000, pid);
            node.insert_plain(pid, &name, "", "procFS", &id, &kthreadd, None);
        }
        let init = node.insert_plain(
            1,
            "/sbin/init",
            "",
            "procFS",
            &exec_id(&node.node_name, 250_000_000, 1),
            &kernel_id,
            None,
        );
        for binary in &s.host_processes {
            // Tetragon's /proc scan names a process by `/proc/PID/exe`.
            let f = files::exec_files_or_plain(&node.host_files, "/", binary);
            node.spawn(&f.loaded, &f.arguments(""), "procFS", &init, None);
        }
        for i in 0..s.faults.extra_host_processes {
            node.spawn(
                "/usr/bin/sleep",
                &format!("{}", 3600 + i),
                "procFS",
                &init,
                None,
            );
        }
        for (ci, c) in s.containers.iter().enumerate() {
            let mut parent = init.clone();
            for (ri, e) in c.running.iter().enumerate() {
                let f = files::exec_files_or_plain(&node.container_files[ci], e.cwd(), &e.binary);
                let id = node.spawn(
                    &f.loaded,
                    &f.arguments(&e.arguments),
                    "procFS",
                    &parent,
                    Some((ci, e)),
                );
                if let Some(p) = node.cache.get_mut(&id) {
                    p.process.cwd = e.cwd().to_string();
                }
                if ri == 0 {
                    node.container_parent[ci] = Some(id.clone());
                    parent = id;
                }
            }
        }
        node
    }

    /// A node whose cache is filled by replayed events (see `apply`).
    pub fn empty(node_name: &str, boot_ms: UnixMillis) -> Self {
        Self {
            node_name: node_name.to_string(),
            cache: BTreeMap::new(),
            container_parent: Vec::new(),
            containers: Vec::new(),
            container_started: Vec::new(),
            next_pid: 100,
            boot_ms,
            container_files: Vec::new(),
            host_files: FileTable::new(),
        }
    }

    /// Keeps the cache in step with a replayed event: an exec adds its process,
    /// an exit removes it.
    pub fn apply(&mut self, ev: &GetEventsResponse) {
        match ev.event.as_ref() {
            Some(Event::ProcessExec(e)) => {
                if let Some(p) = &e.process {
                    let cached = CachedProcess {
                        process: p.clone(),
                        parent_exec_id: p.parent_exec_id.clone(),
                    };
                    self.cache.insert(p.exec_id.clone(), cached);
                }
            }
            Some(Event::ProcessExit(e)) => {
                if let Some(p) = &e.process {
                    self.cache.remove(&p.exec_id);
                }
            }
            _ => {}
        }
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    #[allow(clippy::too_many_arguments)] // mirrors the fields of a cached process
    fn insert_plain(
        &mut self,
        pid: u32,
        binary: &str,
        arguments: &str,
        flags: &str,
        id: &str,
        parent: &str,
        pod: Option<Pod>,
    ) -> String {
        let docker = pod
            .as_ref()
            .and_then(|p| p.container.as_ref())
            .and_then(|c| c.id.rsplit("://").next())
            .map(|hex| hex.chars().take(31).collect())
            .unwrap_or_default();
        let process = Process {
            exec_id: id.to_string(),
            pid: Some(UInt32Value { value: pid }),
            uid: Some(UInt32Value { value: 0 }),
            cwd: "/".to_string(),
            binary: binary.to_string(),
            arguments: arguments.to_string(),
            flags: flags.to_string(),
            start_time: Some(ts(self.boot_ms)),
            auid: Some(UInt32Value { value: u32::MAX }),
            pod,
            docker,
            parent_exec_id: parent.to_string(),
            refcnt: 0,
            tid: Some(UInt32Value { value: pid }),
            in_init_tree: None,
            environment_variables: Vec::new(),
        };
        self.cache.insert(
            id.to_string(),
            CachedProcess {
                process,
                parent_exec_id: parent.to_string(),
            },
        );
        id.to_string()
    }

    fn pod_for(&self, ci: usize, e: &ExecSpec) -> Pod {
        let c = &self.containers[ci];
        Pod {
            namespace: c.namespace.clone(),
            name: c.pod.clone(),
            uid: format!("uid-{}", &container_hex_id(c)[..12]),
            container: Some(Container {
                id: format!("containerd://{}", container_hex_id(c)),
                name: c.container.clone(),
                image: Some(Image {
                    id: String::new(),
                    name: c.image.clone(),
                }),
                start_time: Some(ts(self
                    .container_started
                    .get(ci)
                    .copied()
                    .unwrap_or(self.boot_ms))),
                pid: Some(UInt32Value { value: 1 }),
                maybe_exec_probe: e.probe,
                security_context: None,
            }),
            pod_labels: c
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
            workload: c.workload.clone(),
            workload_kind: c.workload_kind.clone(),
            pod_annotations: HashMap::new(),
        }
    }

    fn spawn(
        &mut self,
        binary: &str,
        args: &str,
        flags: &str,
        parent: &str,
        pod: Option<(usize, &ExecSpec)>,
    ) -> String {
        let pid = self.next_pid;
        self.next_pid += 1;
        let id = exec_id(&self.node_name, u64::from(pid) * 10_000_000, pid);
        let pod_info = pod.map(|(ci, e)| self.pod_for(ci, e));
        self.insert_plain(pid, binary, args, flags, &id, parent, pod_info);
        if let Some((_, e)) = pod {
            // Probes and `kubectl exec` sessions both start outside the
            // container's init tree; Tetragon tells probes apart with
            // `maybe_exec_probe` (set in `pod_for`).
            if e.session || e.probe {
                if let Some(p) = self.cache.get_mut(&id) {
                    p.process.in_init_tree = Some(BoolValue { value: false });
                }
            }
        }
        id
    }

    /// A new process in container `ci` runs `e`: it enters the cache, and the
    /// `process_exec` event Tetragon would send is returned.
    pub fn exec(&mut self, ci: usize, e: &ExecSpec, now: UnixMillis) -> GetEventsResponse {
        // No hook sees the caller here: skip building it (the hot path of
        // the benchmarks).
        let prepared = self.prepare(ci, e, now, false);
        self.commit_exec(&prepared, e, now)
    }

    /// Container `ci` forks a process that is about to exec `e` at `now`:
    /// its pid, the caller as Tetragon knows it (the parent's image, its own
    /// exec_id, forked [`CALLER_FORKED_NS`] before) and the exec's paths.
    /// Nothing enters the cache yet.
    pub fn prepare_exec(&mut self, ci: usize, e: &ExecSpec, now: UnixMillis) -> PreparedExec {
        self.prepare(ci, e, now, true)
    }

    fn prepare(
        &mut self,
        ci: usize,
        e: &ExecSpec,
        now: UnixMillis,
        with_caller: bool,
    ) -> PreparedExec {
        let parent_id = self
            .container_parent
            .get(ci)
            .cloned()
            .flatten()
            .unwrap_or_else(|| exec_id(&self.node_name, 250_000_000, 1));
        let pid = self.next_pid;
        self.next_pid += 1;
        let cwd = e.cwd().to_string();
        let files = self
            .container_files
            .get(ci)
            .map(|t| files::exec_files_or_plain(t, &cwd, &e.binary))
            .unwrap_or_else(|| files::exec_files_or_plain(&FileTable::new(), &cwd, &e.binary));
        let parent = if with_caller {
            self.cache.get(&parent_id).map(|p| p.process.clone())
        } else {
            None
        };
        let forked = now
            .saturating_mul(1_000_000)
            .saturating_sub(CALLER_FORKED_NS);
        let caller = if !with_caller {
            Process::default()
        } else {
            Process {
                exec_id: exec_id(&self.node_name, forked + u64::from(pid), pid),
                pid: Some(UInt32Value { value: pid }),
                tid: Some(UInt32Value { value: pid }),
                flags: "execve".to_string(),
                start_time: Some(ts_ns(forked)),
                parent_exec_id: parent_id.clone(),
                refcnt: 1,
                pod: Some(self.pod_for(ci, e)),
                ..parent.clone().unwrap_or_default()
            }
        };
        PreparedExec {
            ci,
            pid,
            files,
            path: e.binary.clone(),
            cwd,
            caller,
            parent,
            parent_id,
        }
    }

    /// The exec succeeds: the new image enters the cache and its
    /// `process_exec` is returned.
    pub fn commit_exec(
        &mut self,
        prep: &PreparedExec,
        e: &ExecSpec,
        now: UnixMillis,
    ) -> GetEventsResponse {
        let pid = prep.pid;
        let id = exec_id(
            &self.node_name,
            now.saturating_mul(1_000_000) + u64::from(pid),
            pid,
        );
        let pod = self.pod_for(prep.ci, e);
        self.insert_plain(
            pid,
            &prep.files.binary,
            &prep.files.arguments(&e.arguments),
            "execve clone",
            &id,
            &prep.parent_id,
            Some(pod),
        );
        if let Some(p) = self.cache.get_mut(&id) {
            p.process.start_time = Some(ts(now));
            p.process.cwd = prep.cwd.clone();
            // As real Tetragon: an exec probe is outside the init tree too.
            p.process.in_init_tree = Some(BoolValue {
                value: !(e.session || e.probe),
            });
        }
        let process = self
            .cache
            .get(&id)
            .map(|p| p.process.clone())
            .unwrap_or_default();
        let parent_proc = self.cache.get(&prep.parent_id).map(|p| p.process.clone());
        self.event(
            Event::ProcessExec(ProcessExec {
                process: Some(process),
                parent: parent_proc,
                ancestors: vec![],
            }),
            now,
        )
    }

    /// The exec failed (EPERM from an Override) or the caller was killed:
    /// no new image. With `exits`, the caller ends at `at_ns` (status 126 as
    /// a shell child does on EPERM, or the signal) and its `process_exit` is
    /// returned; otherwise it stays in the cache with its parent's image.
    pub fn exec_failed(
        &mut self,
        prep: &PreparedExec,
        at_ns: u64,
        signal: Option<&str>,
        exits: bool,
    ) -> Option<GetEventsResponse> {
        if !exits && signal.is_none() {
            let mut caller = prep.caller.clone();
            caller.refcnt = 0;
            self.cache.insert(
                caller.exec_id.clone(),
                CachedProcess {
                    process: caller,
                    parent_exec_id: prep.parent_id.clone(),
                },
            );
            return None;
        }
        let mut process = prep.caller.clone();
        process.refcnt = 0;
        Some(self.event_at(
            Event::ProcessExit(ProcessExit {
                process: Some(process),
                parent: prep.parent.clone(),
                signal: signal.unwrap_or_default().to_string(),
                status: if signal.is_some() { 0 } else { 126 },
                time: Some(ts_ns(at_ns)),
                ancestors: vec![],
            }),
            at_ns,
        ))
    }

    /// The process of container `ci` as a policy filter sees it.
    pub fn pod_view(&self, ci: usize) -> Option<PodView<'_>> {
        self.containers.get(ci).map(|c| PodView {
            namespace: &c.namespace,
            labels: &c.labels,
            container: &c.container,
        })
    }

    /// A cached process, as Tetragon's cache holds it.
    pub fn process(&self, id: &str) -> Option<&Process> {
        self.cache.get(id).map(|p| &p.process)
    }

    /// A new container instance starts at `now` (a rollout's new pod, a
    /// restarted container): its `running` processes are exec'd, the first
    /// being the parent of the others and of what it execs later. Returns the
    /// container's index (for `exec`) and the `process_exec` events Tetragon
    /// would send, in order. Its container id is new when its pod name is.
    pub fn start_container(
        &mut self,
        spec: ContainerSpec,
        now: UnixMillis,
    ) -> (usize, Vec<GetEventsResponse>) {
        let ci = self.containers.len();
        let running = spec.running.clone();
        self.container_files.push(table(&spec.files));
        self.containers.push(spec);
        self.container_parent.push(None);
        self.container_started.push(now);
        let mut events = Vec::new();
        for (ri, e) in running.iter().enumerate() {
            let ev = self.exec(ci, e, now);
            if ri == 0 {
                if let Some(Event::ProcessExec(x)) = ev.event.as_ref() {
                    self.container_parent[ci] = x.process.as_ref().map(|p| p.exec_id.clone());
                }
            }
            events.push(ev);
        }
        (ci, events)
    }

    /// Every process of the pod `namespace/pod` exits at `now` (the pod is
    /// deleted), newest first as a container's children die before its init;
    /// their `process_exit` events are returned.
    pub fn stop_pod(
        &mut self,
        namespace: &str,
        pod: &str,
        now: UnixMillis,
    ) -> Vec<GetEventsResponse> {
        let mut ids: Vec<(u32, String)> = self
            .cache
            .iter()
            .filter(|(_, p)| {
                p.process
                    .pod
                    .as_ref()
                    .is_some_and(|x| x.namespace == namespace && x.name == pod)
            })
            .map(|(id, p)| {
                (
                    p.process.pid.as_ref().map(|w| w.value).unwrap_or(0),
                    id.clone(),
                )
            })
            .collect();
        ids.sort();
        ids.into_iter()
            .rev()
            .filter_map(|(_, id)| self.exit(&id, now))
            .collect()
    }

    /// The process leaves the cache; its `process_exit` event is returned.
    pub fn exit(&mut self, id: &str, now: UnixMillis) -> Option<GetEventsResponse> {
        self.exit_at(id, now.saturating_mul(1_000_000), "")
    }

    /// As [`Self::exit`], at `at_ns`, by `signal` (`""`: a normal exit).
    pub fn exit_at(&mut self, id: &str, at_ns: u64, signal: &str) -> Option<GetEventsResponse> {
        let gone = self.cache.remove(id)?;
        let parent = self
            .cache
            .get(&gone.parent_exec_id)
            .map(|p| p.process.clone());
        Some(self.event_at(
            Event::ProcessExit(ProcessExit {
                process: Some(gone.process),
                parent,
                signal: signal.to_string(),
                status: 0,
                time: Some(ts_ns(at_ns)),
                ancestors: vec![],
            }),
            at_ns,
        ))
    }

    fn event(&self, event: Event, now: UnixMillis) -> GetEventsResponse {
        self.event_at(event, now.saturating_mul(1_000_000))
    }

    /// An event of this node at `at_ns`.
    pub fn event_at(&self, event: Event, at_ns: u64) -> GetEventsResponse {
        GetEventsResponse {
            node_name: self.node_name.clone(),
            time: Some(ts_ns(at_ns)),
            event: Some(event),
            ..Default::default()
        }
    }

    /// The process cache as GetDebug returns it (`skip_zero_refcnt` keeps all:
    /// every cached process here is alive).
    pub fn dump(&self) -> Vec<ProcessInternal> {
        self.cache
            .values()
            .map(|p| ProcessInternal {
                process: Some(p.process.clone()),
                color: "inUse".to_string(),
                refcnt: Some(UInt32Value { value: 1 }),
                refcnt_ops: HashMap::from([("process++".to_string(), 1)]),
            })
            .collect()
    }

    /// What Tetragon's startup /proc scan writes to its export log: a procFS
    /// `process_exec` per cached process except kernel threads, `<kernel>` first.
    pub fn startup_events(&self, now: UnixMillis) -> Vec<GetEventsResponse> {
        let mut procs: Vec<&CachedProcess> = self
            .cache
            .values()
            .filter(|p| !(p.process.binary.starts_with('[') && p.process.binary.ends_with(']')))
            .collect();
        procs.sort_by_key(|p| p.process.pid.as_ref().map(|w| w.value).unwrap_or(0));
        procs
            .into_iter()
            .map(|p| {
                let parent = self
                    .cache
                    .get(&p.parent_exec_id)
                    .map(|pp| pp.process.clone());
                self.event(
                    Event::ProcessExec(ProcessExec {
                        process: Some(p.process.clone()),
                        parent,
                        ancestors: vec![],
                    }),
                    now,
                )
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_holds_kernel_threads_host_and_container_processes() {
        let s = Scenario::demo();
        let node = FakeNode::new(&s, 1_000);
        let dump = node.dump();
        let binaries: Vec<&str> = dump
            .iter()
            .filter_map(|p| p.process.as_ref())
            .map(|p| p.binary.as_str())
            .collect();
        assert!(binaries.contains(&"<kernel>"));
        assert!(binaries.iter().any(|b| b.starts_with("[kworker/")));
        assert!(binaries.contains(&"/usr/bin/kubelet"));
        assert!(binaries.contains(&"/usr/sbin/nginx"));
    }

    #[test]
    fn exec_then_exit_leaves_cache_unchanged() {
        let s = Scenario::demo();
        let mut node = FakeNode::new(&s, 1_000);
        let before = node.len();
        let ev = node.exec(0, &s.containers[0].execs[0], 2_000);
        let Some(Event::ProcessExec(exec)) = ev.event else {
            panic!("not an exec")
        };
        let p = exec.process.unwrap();
        assert_eq!(
            p.pod.as_ref().unwrap().container.as_ref().unwrap().name,
            "nginx"
        );
        assert_eq!(p.docker.len(), 31);
        assert_eq!(node.len(), before + 1);
        assert!(node.exit(&p.exec_id, 2_001).is_some());
        assert_eq!(node.len(), before);
    }

    /// Real Tetragon sends an exec probe with `in_init_tree: false` and
    /// `maybe_exec_probe: true`; a `kubectl exec` session with `in_init_tree:
    /// false` alone; the container's own processes inside the init tree.
    #[test]
    fn probes_and_sessions_carry_tetragons_flags() {
        let s = Scenario::demo();
        let mut node = FakeNode::new(&s, 1_000);
        let flags = |ev: GetEventsResponse| {
            let Some(Event::ProcessExec(exec)) = ev.event else {
                panic!("not an exec")
            };
            let p = exec.process.unwrap();
            let probe = p.pod.unwrap().container.unwrap().maybe_exec_probe;
            (p.in_init_tree.map(|b| b.value), probe)
        };
        let spec = |probe, session| ExecSpec {
            binary: "/bin/x".into(),
            probe,
            session,
            ..ExecSpec::default()
        };
        assert_eq!(
            flags(node.exec(0, &spec(true, false), 2_000)),
            (Some(false), true)
        );
        assert_eq!(
            flags(node.exec(0, &spec(false, true), 2_000)),
            (Some(false), false)
        );
        assert_eq!(
            flags(node.exec(0, &spec(false, false), 2_000)),
            (Some(true), false)
        );
    }

    #[test]
    fn exec_id_is_base64_of_node_ktime_pid() {
        assert_eq!(exec_id("vm", 1, 0), "dm06MTow");
    }
}
