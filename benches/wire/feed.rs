//! A generated Tetragon feed, encoded once into stored frames.
//!
//! Built only from the prost types (not with the fake Tetragon, whose publishing
//! path it must not depend on): a node with `containers` pods, each with full pod
//! info (labels, workload, workload kind, container, image) and a baseline of
//! running executables; a GetDebug process-cache dump of every baseline first;
//! then `events` exec/exit events with a parent, 1.3-1.7 KiB each on the wire.
//! Each exec runs a baseline executable of a pseudo-randomly chosen container,
//! except every 1,000th, which runs one the container never ran; once `live`
//! processes are alive, each further step is the exit of the oldest live one, so
//! exits come as often as execs and the live set stays bounded by `live` (a
//! large `live` makes exits lag: the lagging variant). The last event is always
//! the exec of a new executable: what the agent has learned once it is done.
//!
//! Everything is derived from the exec's index, so the exit of exec `i` carries
//! the same process as its exec without keeping it in memory.
use std::collections::{HashMap, VecDeque};

use base64::Engine;
use pbjson_types::{BoolValue, Timestamp, UInt32Value};
use prost::bytes::Bytes;
use prost::Message;
use tetragon_learner::tetragon::proto::{
    get_debug_response, get_events_response, ConfigFlag, Container, DumpProcessCacheResArgs,
    GetDebugResponse, GetEventsResponse, Image, Pod, Process, ProcessExec, ProcessExit,
    ProcessInternal,
};

/// One exec in this many runs an executable its container never ran.
pub const NEW_EXECUTABLE_EVERY: u64 = 1_000;
/// Running executables per container (in the GetDebug dump).
pub const BASELINE_PER_CONTAINER: usize = 8;

const NODE: &str = "bench-node-01";
/// Wall-clock seconds of the feed's "boot".
const BOOT_SECS: i64 = 1_767_225_600;

#[derive(Debug, Clone, Copy)]
pub struct FeedParams {
    pub containers: usize,
    pub events: u64,
    pub live: usize,
    /// Every exec also comes with the agent's observe-policy events, as on a
    /// node where its hook views are active: a kprobe
    /// `security_bprm_creds_for_exec` event before it (the caller) and a raw
    /// `sched_process_exec` tracepoint event after it.
    pub hook_events: bool,
}

/// The stored feed: `stored` holds every message length-delimited (each preceded
/// by its varint length, as the `.pb` captures in `tests/fixtures/real`); the
/// other fields are slices of it (no copy) without the length prefix.
pub struct Feed {
    pub stored: Bytes,
    /// The `GetDebugResponse` (process-cache dump) body.
    pub debug: Bytes,
    /// One `GetEventsResponse` body per event.
    pub events: Vec<Bytes>,
    pub execs: u64,
    pub exits: u64,
    /// Processes still alive at the end of the feed.
    pub alive_at_end: usize,
    pub snapshot_processes: usize,
    /// Executables the agent must end up with: (namespace, workload, container, path).
    pub expected_executables: usize,
    pub expected_profiles: usize,
    /// The last event's learner key parts and binary.
    pub last: (String, String, String, String),
    pub min_event_bytes: usize,
    pub max_event_bytes: usize,
}

impl Feed {
    pub fn mean_event_bytes(&self) -> f64 {
        let total: usize = self.events.iter().map(|b| b.len()).sum();
        total as f64 / self.events.len().max(1) as f64
    }
}

/// splitmix64: a fixed, dependency-free pseudo-random function of the index.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

struct ContainerInfo {
    namespace: String,
    pod: String,
    workload: String,
    uid: String,
    container_id: String,
    image: String,
    image_id: String,
    labels: HashMap<String, String>,
    /// Baseline executables; the first is the entrypoint, every exec's parent.
    baseline: Vec<String>,
}

fn container_info(c: usize) -> ContainerInfo {
    let team = format!("team-{:02}", c % 40);
    let workload = format!("svc-{c:04}-{}", ["api", "worker", "web", "cron"][c % 4]);
    let hash = format!("{:010x}", mix(c as u64) & 0xff_ffff_ffff);
    let pod = format!("{workload}-{hash}-{:05x}", mix(c as u64 + 7) & 0xfffff);
    let cid = format!(
        "{:016x}{:016x}{:016x}{:016x}",
        mix(c as u64 + 1),
        mix(c as u64 + 2),
        mix(c as u64 + 3),
        mix(c as u64 + 4)
    );
    let labels: HashMap<String, String> = [
        ("app", workload.as_str()),
        ("pod-template-hash", hash.as_str()),
        ("team", team.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let baseline = vec![
        format!("/usr/local/bin/{workload}"),
        "/bin/sh".to_string(),
        "/usr/bin/python3.12".to_string(),
        "/usr/bin/curl".to_string(),
        format!("/opt/{team}/bin/healthcheck"),
        "/usr/bin/env".to_string(),
        format!("/opt/{team}/bin/{workload}-migrate"),
        "/bin/busybox".to_string(),
    ];
    debug_assert_eq!(baseline.len(), BASELINE_PER_CONTAINER);
    ContainerInfo {
        namespace: team.clone(),
        uid: format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            mix(c as u64 + 11) & 0xffff_ffff,
            mix(c as u64 + 12) & 0xffff,
            mix(c as u64 + 13) & 0xfff,
            mix(c as u64 + 14) & 0xfff,
            mix(c as u64 + 15) & 0xffff_ffff_ffff
        ),
        image: format!("registry.example.com/{team}/{workload}:2026.11.3"),
        image_id: format!(
            "registry.example.com/{team}/{workload}@sha256:{:016x}{:016x}",
            mix(c as u64 + 21),
            mix(c as u64 + 22)
        ),
        container_id: format!("containerd://{cid}"),
        pod,
        workload,
        labels,
        baseline,
    }
}

fn ts(secs: i64, nanos: i32) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: secs,
        nanos,
    })
}

fn exec_id(ktime: u64, pid: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{NODE}:{ktime}:{pid}"))
}

/// A process of container `c`, with full pod info.
fn process(
    info: &ContainerInfo,
    pid: u32,
    ktime: u64,
    binary: &str,
    arguments: String,
    parent_exec_id: String,
) -> Process {
    let start = BOOT_SECS + (ktime / 1_000_000_000) as i64;
    Process {
        exec_id: exec_id(ktime, pid),
        pid: Some(UInt32Value { value: pid }),
        uid: Some(UInt32Value { value: 65_532 }),
        cwd: "/srv/app".to_string(),
        binary: binary.to_string(),
        arguments,
        flags: "execve rootcwd clone".to_string(),
        start_time: ts(start, (ktime % 1_000_000_000) as i32),
        auid: Some(UInt32Value {
            value: 4_294_967_295,
        }),
        pod: Some(Pod {
            namespace: info.namespace.clone(),
            name: info.pod.clone(),
            uid: info.uid.clone(),
            container: Some(Container {
                id: info.container_id.clone(),
                name: "app".to_string(),
                image: Some(Image {
                    id: info.image_id.clone(),
                    name: info.image.clone(),
                }),
                start_time: ts(BOOT_SECS + 60, 0),
                pid: Some(UInt32Value { value: pid % 4096 }),
                maybe_exec_probe: false,
                security_context: None,
            }),
            pod_labels: info.labels.clone(),
            workload: info.workload.clone(),
            workload_kind: "Deployment".to_string(),
            pod_annotations: HashMap::new(),
        }),
        docker: info.container_id["containerd://".len()..]
            .chars()
            .take(31)
            .collect(),
        parent_exec_id,
        refcnt: 0,
        tid: Some(UInt32Value { value: pid }),
        in_init_tree: Some(BoolValue { value: true }),
        environment_variables: Vec::new(),
    }
}

/// The container's entrypoint (pid 1 in it): the parent of its execs.
fn entrypoint(info: &ContainerInfo, c: usize) -> Process {
    let pid = 2_000 + c as u32;
    process(
        info,
        pid,
        1_000_000_000 + c as u64,
        &info.baseline[0],
        "--config /etc/app/config.yaml --listen :8080".to_string(),
        exec_id(1_000, 1),
    )
}

/// Argument lengths: with the rest of an event (process and parent with full
/// pod info) they spread events over 1.3-1.7 KiB.
const ARGS_MIN: usize = 0;
const ARGS_MAX: usize = 340;

/// Arguments of varying length, so events spread over 1.2-1.7 KB.
fn arguments(i: u64) -> String {
    let len = ARGS_MIN + (mix(i ^ 0xA5A5) % (ARGS_MAX - ARGS_MIN) as u64) as usize;
    let mut s = String::with_capacity(len + 16);
    let mut k = 0u64;
    while s.len() < len {
        s.push_str(&format!("--opt-{k}={:x} ", mix(i.wrapping_add(k)) & 0xffff));
        k += 1;
    }
    s.truncate(len);
    s
}

/// What exec number `i` runs: (container, binary).
fn exec_target(i: u64, containers: &[ContainerInfo], force_new: bool) -> (usize, String) {
    let c = (mix(i) % containers.len() as u64) as usize;
    let binary = if force_new || i % NEW_EXECUTABLE_EVERY == NEW_EXECUTABLE_EVERY - 1 {
        format!("/usr/local/lib/plugins/plugin-{i:08}")
    } else {
        let b = 1 + (mix(i ^ 0x5A5A) % (BASELINE_PER_CONTAINER as u64 - 1)) as usize;
        containers[c].baseline[b].clone()
    };
    (c, binary)
}

struct Gen {
    containers: Vec<ContainerInfo>,
    parents: Vec<Process>,
}

impl Gen {
    /// The process of exec number `i` (same for its exec and its exit).
    fn exec_process(&self, i: u64, force_new: bool) -> (usize, Process) {
        let (c, binary) = exec_target(i, &self.containers, force_new);
        let pid = 10_000 + (i % 4_000_000_000) as u32;
        let ktime = 5_000_000_000 + i * 250_000;
        let parent = self.parents[c].exec_id.clone();
        let p = process(
            &self.containers[c],
            pid,
            ktime,
            &binary,
            arguments(i),
            parent,
        );
        (c, p)
    }

    fn response(&self, event: get_events_response::Event, i: u64) -> GetEventsResponse {
        GetEventsResponse {
            event: Some(event),
            node_name: NODE.to_string(),
            time: ts(
                BOOT_SECS + 3_600 + (i / 40_000) as i64,
                ((i % 40_000) * 25_000) as i32,
            ),
            aggregation_info: None,
            cluster_name: String::new(),
            node_labels: HashMap::new(),
        }
    }
}

/// An observe-policy event of exec `p` (the shapes of the real captures in
/// tests/fixtures/real/hook-events): the kprobe's caller (same pid, its own
/// exec_id, 1 ms before the exec's start) or the tracepoint's new exec.
fn hook_event(p: &Process, parent: &Process, before: bool) -> GetEventsResponse {
    use tetragon_learner::tetragon::observe::policy::ObserveShape;
    use tetragon_learner::tetragon::proto::{
        kprobe_argument::Arg, KprobeArgument, KprobeLinuxBinprm, ProcessKprobe, ProcessTracepoint,
    };
    let args = vec![KprobeArgument {
        arg: Some(Arg::LinuxBinprmArg(KprobeLinuxBinprm {
            path: p.binary.clone(),
            flags: String::new(),
            permission: "-rwxr-xr-x".into(),
        })),
        label: String::new(),
    }];
    let start = p.start_time.unwrap_or_default();
    let (event, time) = if before {
        let mut caller = parent.clone();
        caller.pid = p.pid;
        caller.tid = p.tid;
        caller.exec_id = format!("{}-caller", p.exec_id);
        let (secs, nanos) = if start.nanos >= 1_000_000 {
            (start.seconds, start.nanos - 1_000_000)
        } else {
            (start.seconds - 1, start.nanos + 999_000_000)
        };
        (
            get_events_response::Event::ProcessKprobe(ProcessKprobe {
                process: Some(caller),
                parent: None,
                function_name: "security_bprm_creds_for_exec".into(),
                args,
                action: 1,
                policy_name: ObserveShape::Kprobe.policy_name().into(),
                message: String::new(),
            }),
            ts(secs, nanos),
        )
    } else {
        (
            get_events_response::Event::ProcessTracepoint(ProcessTracepoint {
                process: Some(p.clone()),
                parent: Some(parent.clone()),
                subsys: "sched".into(),
                event: "sched_process_exec".into(),
                args,
                policy_name: ObserveShape::Tracepoint.policy_name().into(),
                action: 1,
                message: String::new(),
            }),
            Some(start),
        )
    };
    GetEventsResponse {
        event: Some(event),
        node_name: NODE.to_string(),
        time,
        aggregation_info: None,
        cluster_name: String::new(),
        node_labels: HashMap::new(),
    }
}

/// Appends `msg` length-delimited; returns the body's range in `out`.
fn store<M: Message>(msg: &M, out: &mut Vec<u8>) -> std::ops::Range<usize> {
    let len = msg.encoded_len();
    // Writing into a Vec cannot run out of space.
    let _ = msg.encode_length_delimited(out);
    out.len() - len..out.len()
}

pub fn build(params: FeedParams) -> Feed {
    let containers: Vec<ContainerInfo> = (0..params.containers).map(container_info).collect();
    let parents: Vec<Process> = containers
        .iter()
        .enumerate()
        .map(|(c, info)| entrypoint(info, c))
        .collect();
    let gen = Gen {
        containers,
        parents,
    };
    // Above the largest event (1.75 KiB with its length): a Vec that had to grow
    // would be copied, and its old buffer could stay resident (allocator caches).
    let mut stored = Vec::with_capacity(params.events as usize * 1_800 + (16 << 20));

    // The process-cache dump: <kernel>, every container's baseline running.
    let mut cache = vec![ProcessInternal {
        process: Some(Process {
            exec_id: exec_id(1, 0),
            pid: Some(UInt32Value { value: 0 }),
            binary: "<kernel>".to_string(),
            flags: "procFS".to_string(),
            ..Default::default()
        }),
        color: "inUse".to_string(),
        refcnt: Some(UInt32Value { value: 1 }),
        refcnt_ops: HashMap::new(),
    }];
    for (c, info) in gen.containers.iter().enumerate() {
        let parent = &gen.parents[c];
        cache.push(ProcessInternal {
            process: Some(parent.clone()),
            color: "inUse".to_string(),
            refcnt: Some(UInt32Value { value: 2 }),
            refcnt_ops: HashMap::new(),
        });
        for (b, binary) in info.baseline.iter().enumerate().skip(1) {
            let pid = 3_000_000 + (c * BASELINE_PER_CONTAINER + b) as u32;
            let p = process(
                info,
                pid,
                2_000_000_000 + pid as u64,
                binary,
                format!("--baseline {b}"),
                parent.exec_id.clone(),
            );
            cache.push(ProcessInternal {
                process: Some(p),
                color: "inUse".to_string(),
                refcnt: Some(UInt32Value { value: 1 }),
                refcnt_ops: HashMap::new(),
            });
        }
    }
    let snapshot_processes = cache.len();
    let debug_range = store(
        &GetDebugResponse {
            flag: ConfigFlag::DumpProcessCache as i32,
            arg: Some(get_debug_response::Arg::Processes(
                DumpProcessCacheResArgs { processes: cache },
            )),
        },
        &mut stored,
    );

    let mut expected: std::collections::HashSet<(usize, String)> = gen
        .containers
        .iter()
        .enumerate()
        .flat_map(|(c, info)| info.baseline.iter().map(move |b| (c, b.clone())))
        .collect();
    let mut ranges = Vec::with_capacity(params.events as usize);
    let mut live: VecDeque<u64> = VecDeque::new();
    let (mut execs, mut exits) = (0u64, 0u64);
    let mut last = None;
    for step in 0..params.events {
        let final_step = step + 1 == params.events;
        if live.len() >= params.live && !final_step {
            let i = live.pop_front().expect("live is not empty");
            let (c, p) = gen.exec_process(i, false);
            let ev = get_events_response::Event::ProcessExit(ProcessExit {
                process: Some(p),
                parent: Some(gen.parents[c].clone()),
                signal: String::new(),
                status: 0,
                time: None,
                ancestors: Vec::new(),
            });
            ranges.push(store(&gen.response(ev, step), &mut stored));
            exits += 1;
        } else {
            let i = execs;
            let (c, p) = gen.exec_process(i, final_step);
            expected.insert((c, p.binary.clone()));
            if final_step {
                let info = &gen.containers[c];
                last = Some((
                    info.namespace.clone(),
                    info.workload.clone(),
                    "app".to_string(),
                    p.binary.clone(),
                ));
            }
            if params.hook_events {
                ranges.push(store(&hook_event(&p, &gen.parents[c], true), &mut stored));
            }
            let after = params
                .hook_events
                .then(|| hook_event(&p, &gen.parents[c], false));
            let ev = get_events_response::Event::ProcessExec(ProcessExec {
                process: Some(p),
                parent: Some(gen.parents[c].clone()),
                ancestors: Vec::new(),
            });
            ranges.push(store(&gen.response(ev, step), &mut stored));
            if let Some(after) = after {
                ranges.push(store(&after, &mut stored));
            }
            live.push_back(i);
            execs += 1;
        }
    }
    let stored = Bytes::from(stored);
    let events: Vec<Bytes> = ranges.iter().map(|r| stored.slice(r.clone())).collect();
    Feed {
        debug: stored.slice(debug_range),
        min_event_bytes: events.iter().map(|b| b.len()).min().unwrap_or(0),
        max_event_bytes: events.iter().map(|b| b.len()).max().unwrap_or(0),
        events,
        stored,
        execs,
        exits,
        alive_at_end: live.len(),
        snapshot_processes,
        expected_executables: expected.len(),
        expected_profiles: params.containers,
        last: last.expect("the feed has at least one event"),
    }
}
