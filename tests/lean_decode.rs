//! The lean decoding of the event stream (`proto/tetragon/lean.proto`, what the
//! agent reads) against the full one (`proto/tetragon/tetragon.proto`): the same
//! frames must give the same facts, on the real captures in
//! `tests/fixtures/real` and on generated events, under several configurations.
//!
//! The full side goes the way events went before the lean type existed: the
//! full `Process` converted into a snapshot entry (`process_to_snapshot`) and
//! the rules applied to it; an exit's fact is its exec_id, a rate-limit
//! notice's the count it carries.
use std::collections::HashMap;

use proptest::prelude::*;
use prost::Message;
use tetragon_learner::ingest::facts::{
    fact_from_lean_event, learnable, Fact, IngestConfig, Learnable, SkipReason,
};
use tetragon_learner::learner::observation::FactSource;
use tetragon_learner::snapshot::convert::process_to_snapshot;
use tetragon_learner::tetragon::framing::decode_frames;
use tetragon_learner::tetragon::proto::{
    self, get_events_response::Event, lean, GetEventsResponse,
};

const STREAM_PB: &[u8] = include_bytes!("fixtures/real/getevents-stream.pb");
const CONTAINER_PB: &[u8] = include_bytes!("fixtures/real/container-events.pb");
const AT: u64 = 1_700_000_000_000;

fn configs() -> Vec<IngestConfig> {
    vec![
        IngestConfig::default(),
        IngestConfig {
            learn_host_processes: true,
            ..Default::default()
        },
        IngestConfig {
            exclude_namespaces: vec!["default".into(), "kube-system".into(), "ns-b".into()],
            ..Default::default()
        },
        IngestConfig {
            learn_host_processes: true,
            include_namespaces: vec!["default".into(), "ns-a".into()],
            ..Default::default()
        },
    ]
}

/// A fact as this test compares it: owned, so the facts of both decodings
/// outlive the events they borrow from.
// Test data, compared whole: boxing the large variant would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    Exec(Learnable),
    Exit {
        exec_id: String,
    },
    Dropped {
        count: u64,
    },
    Policy {
        policy: String,
        path: Option<String>,
        action: i32,
        pid: u32,
        time: Option<u64>,
    },
    Skip(SkipReason),
}

impl From<Fact<'_>> for Told {
    fn from(f: Fact<'_>) -> Self {
        match f {
            Fact::Exec(l) => Told::Exec(l),
            Fact::Exit { exec_id } => Told::Exit {
                exec_id: exec_id.to_string(),
            },
            Fact::Dropped { count } => Told::Dropped { count },
            Fact::Policy(p) => Told::Policy {
                policy: p.policy_name.to_string(),
                path: p.binprm_path.map(str::to_string),
                action: p.action,
                pid: p.process.map(|p| p.pid).unwrap_or(0),
                time: p.time,
            },
            Fact::Skip(reason) => Told::Skip(reason),
        }
    }
}

/// The facts of a fully decoded event, by the historic route.
fn full_fact(ev: &GetEventsResponse, cfg: &IngestConfig) -> Told {
    match &ev.event {
        Some(Event::ProcessExec(exec)) => match &exec.process {
            None => Told::Skip(SkipReason::NoProcess),
            Some(p) => {
                let snap = process_to_snapshot(p, &ev.node_name);
                match learnable(&snap, FactSource::Event, AT, cfg) {
                    Ok(l) => Told::Exec(l),
                    Err(reason) => Told::Skip(reason),
                }
            }
        },
        Some(Event::ProcessExit(exit)) => match &exit.process {
            Some(p) => Told::Exit {
                exec_id: p.exec_id.clone(),
            },
            None => Told::Skip(SkipReason::NoProcess),
        },
        Some(Event::RateLimitInfo(info)) => Told::Dropped {
            count: info.number_of_dropped_process_events,
        },
        Some(Event::ProcessKprobe(e)) => {
            policy_told(ev, &e.policy_name, &e.args, e.action, &e.process)
        }
        Some(Event::ProcessTracepoint(e)) => {
            policy_told(ev, &e.policy_name, &e.args, e.action, &e.process)
        }
        Some(Event::ProcessLsm(e)) => {
            policy_told(ev, &e.policy_name, &e.args, e.action, &e.process)
        }
        None => Told::Skip(SkipReason::OtherKind),
    }
}

/// A policy event read field by field from the full types.
fn policy_told(
    ev: &GetEventsResponse,
    policy: &str,
    args: &[proto::KprobeArgument],
    action: i32,
    process: &Option<proto::Process>,
) -> Told {
    use proto::kprobe_argument::Arg;
    Told::Policy {
        policy: policy.to_string(),
        path: args.iter().find_map(|a| match &a.arg {
            Some(Arg::LinuxBinprmArg(b)) => Some(b.path.clone()),
            _ => None,
        }),
        action,
        pid: process
            .as_ref()
            .and_then(|p| p.pid.as_ref())
            .map(|w| w.value)
            .unwrap_or(0),
        time: ev
            .time
            .as_ref()
            .map(|t| t.seconds as u64 * 1_000 + t.nanos as u64 / 1_000_000),
    }
}

/// The facts of both decodings of the same frames, per configuration.
fn both(frames: &[u8]) -> Vec<(Vec<Told>, Vec<Told>)> {
    let full: Vec<GetEventsResponse> = decode_frames(frames).expect("full decoding");
    let lean: Vec<lean::GetEventsResponse> = decode_frames(frames).expect("lean decoding");
    assert_eq!(full.len(), lean.len());
    configs()
        .iter()
        .map(|cfg| {
            let f = full.iter().map(|ev| full_fact(ev, cfg)).collect();
            let l = lean
                .iter()
                .map(|ev| Told::from(fact_from_lean_event(ev, AT, cfg)))
                .collect();
            (f, l)
        })
        .collect()
}

#[test]
fn the_real_captures_give_the_same_facts_decoded_lean_or_full() {
    for (name, frames) in [
        ("getevents-stream.pb", STREAM_PB),
        ("container-events.pb", CONTAINER_PB),
    ] {
        for (i, (full, lean)) in both(frames).into_iter().enumerate() {
            for (n, (f, l)) in full.iter().zip(&lean).enumerate() {
                assert_eq!(f, l, "{name}, config {i}, frame {n}");
            }
        }
    }
    // The captures (taken on a host without Kubernetes) exercise the rules:
    // host processes skipped, or learned when asked; exits.
    for frames in [STREAM_PB, CONTAINER_PB] {
        let facts = both(frames);
        assert!(facts[0].0.contains(&Told::Skip(SkipReason::HostProcess)));
        assert!(facts[0].0.iter().any(|f| matches!(f, Told::Exit { .. })));
        assert!(facts[1].0.iter().any(|f| matches!(f, Told::Exec(_))));
    }
}

/// The real frames, each process (and its parent) given pod info, as a
/// Kubernetes node's Tetragon would send them.
fn with_pods(frames: &[u8]) -> Vec<u8> {
    let events: Vec<GetEventsResponse> = decode_frames(frames).expect("full decoding");
    let mut out = Vec::new();
    for (n, mut ev) in events.into_iter().enumerate() {
        let pod = |p: &mut proto::Process| {
            p.pod = Some(proto::Pod {
                namespace: ["default", "ns-a", "ns-b"][n % 3].into(),
                name: format!("web-5d8f7c6b9d-{n:05}"),
                uid: "u".into(),
                container: (n % 7 != 0).then(|| proto::Container {
                    id: "containerd://abc".into(),
                    name: ["app", "", "sidecar"][n % 3].into(),
                    maybe_exec_probe: n % 5 == 0,
                    ..Default::default()
                }),
                pod_labels: [
                    ("app".to_string(), "web".to_string()),
                    ("pod-template-hash".to_string(), "5d8f7c6b9d".to_string()),
                ]
                .into(),
                workload: if n % 2 == 0 {
                    "web".into()
                } else {
                    String::new()
                },
                workload_kind: if n % 4 == 0 {
                    "Deployment".into()
                } else {
                    String::new()
                },
                pod_annotations: HashMap::new(),
            })
        };
        match &mut ev.event {
            Some(Event::ProcessExec(e)) => {
                e.process.as_mut().map(pod);
                e.parent.as_mut().map(pod);
            }
            Some(Event::ProcessExit(e)) => {
                e.process.as_mut().map(pod);
            }
            _ => {}
        }
        tetragon_learner::tetragon::framing::encode_frame(&ev, &mut out);
    }
    out
}

#[test]
fn the_real_captures_with_pods_give_the_same_facts_decoded_lean_or_full() {
    for (name, frames) in [
        ("getevents-stream.pb", STREAM_PB),
        ("container-events.pb", CONTAINER_PB),
    ] {
        let frames = with_pods(frames);
        let facts = both(&frames);
        for (i, (full, lean)) in facts.iter().enumerate() {
            for (n, (f, l)) in full.iter().zip(lean).enumerate() {
                assert_eq!(f, l, "{name} with pods, config {i}, frame {n}");
            }
        }
        assert!(facts[0].0.iter().any(|f| matches!(f, Told::Exec(_))));
    }
}

#[test]
fn a_field_the_agent_reads_that_is_not_utf8_is_a_counted_skip() {
    // `binary` (field 5 of Process) as raw bytes that are not UTF-8: the full
    // decoding refuses the frame; the lean one skips the event.
    let ev = lean::GetEventsResponse {
        event: Some(lean::get_events_response::Event::ProcessExec(
            lean::ProcessExec {
                process: Some(lean::Process {
                    exec_id: "ZTE=".into(),
                    binary: prost::bytes::Bytes::from_static(b"/bin/\xc3\x28"),
                    ..Default::default()
                }),
            },
        )),
        node_name: "n".into(),
        time: None,
    };
    let bytes = ev.encode_to_vec();
    assert!(GetEventsResponse::decode(bytes.as_slice()).is_err());
    let lean = lean::GetEventsResponse::decode(bytes.as_slice()).unwrap();
    assert_eq!(
        fact_from_lean_event(&lean, AT, &IngestConfig::default()),
        Fact::Skip(SkipReason::NotUtf8)
    );
    assert_eq!(SkipReason::NotUtf8.label(), "not_utf8");
}

// ---------------------------------------------------------------------------
// Generated events
// ---------------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{1,6}",
        "[a-z]{1,4}-[0-9a-f]{4}-[a-z0-9]{3}",
        ".{0,12}",
    ]
}

fn binary() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("<kernel>".to_string()),
        Just("[kworker/0:1]".to_string()),
        "/[a-z]{1,8}/[a-z\\n\"{} ]{1,10}",
        (4090usize..4100).prop_map(|n| format!("/{}", "a".repeat(n))),
    ]
}

fn exec_id() -> impl Strategy<Value = String> {
    use base64::Engine;
    prop_oneof![
        Just(String::new()),
        "[a-z]{1,3}",
        ("[a-z]{0,4}", 0u32..100).prop_map(|(node, pid)| {
            base64::engine::general_purpose::STANDARD.encode(format!("{node}:123:{pid}"))
        }),
    ]
}

fn flags() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("execve clone".to_string()),
        Just("execve".to_string()),
        Just("execve rootcwd".to_string()),
        Just("procFS auid".to_string()),
    ]
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("default".to_string()),
        Just("ns-a".to_string()),
        Just("ns-b".to_string()),
        Just("kube-system".to_string()),
        text(),
    ]
}

fn labels() -> impl Strategy<Value = HashMap<String, String>> {
    let key = prop_oneof![
        Just("pod-template-hash".to_string()),
        Just("app".to_string()),
        "[a-z./]{1,10}",
    ];
    proptest::collection::hash_map(key, text(), 0..4)
}

fn container() -> impl Strategy<Value = Option<proto::Container>> {
    proptest::option::of((text(), text(), any::<bool>(), text()).prop_map(
        |(id, name, probe, image)| proto::Container {
            id,
            name,
            image: Some(proto::Image {
                id: String::new(),
                name: image,
            }),
            maybe_exec_probe: probe,
            pid: Some(pbjson_types::UInt32Value { value: 1 }),
            ..Default::default()
        },
    ))
}

fn pod() -> BoxedStrategy<Option<proto::Pod>> {
    // A pod name that may or may not fit `<base>-<hash>-<suffix>`.
    let name = prop_oneof![
        text(),
        ("[a-z]{1,5}", "[0-9a-f]{3,6}", "[a-z0-9]{1,5}")
            .prop_map(|(b, h, s)| format!("{b}-{h}-{s}")),
    ];
    proptest::option::of(
        (
            namespace(),
            name,
            container(),
            labels(),
            prop_oneof![Just(String::new()), text()],
            prop_oneof![Just(String::new()), Just("Deployment".to_string()), text()],
            text(),
        )
            .prop_map(
                |(namespace, name, container, pod_labels, workload, workload_kind, uid)| {
                    // The name's hash as a label, half the time.
                    let mut pod_labels = pod_labels;
                    if let Some(hash) = name.split('-').nth(1) {
                        if name.len() % 2 == 0 {
                            pod_labels.insert("pod-template-hash".into(), hash.to_string());
                        }
                    }
                    proto::Pod {
                        namespace,
                        name,
                        uid,
                        container,
                        pod_labels,
                        workload,
                        workload_kind,
                        pod_annotations: [("note".to_string(), "x".to_string())].into(),
                    }
                },
            ),
    )
    .boxed()
}

fn process() -> BoxedStrategy<proto::Process> {
    (
        (exec_id(), exec_id(), binary(), flags()),
        (
            proptest::option::of(0u32..5),
            proptest::option::of(any::<bool>()),
            pod(),
            text(),
        ),
    )
        .prop_map(
            |((exec_id, parent_exec_id, binary, flags), (pid, in_init_tree, pod, arguments))| {
                proto::Process {
                    exec_id,
                    pid: pid.map(|value| pbjson_types::UInt32Value { value }),
                    uid: Some(pbjson_types::UInt32Value { value: 1000 }),
                    cwd: "/".into(),
                    binary,
                    arguments,
                    flags,
                    start_time: Some(pbjson_types::Timestamp {
                        seconds: 1,
                        nanos: 2,
                    }),
                    pod,
                    parent_exec_id,
                    in_init_tree: in_init_tree.map(|value| pbjson_types::BoolValue { value }),
                    ..Default::default()
                }
            },
        )
        .boxed()
}

fn event() -> impl Strategy<Value = GetEventsResponse> {
    let kind = prop_oneof![
        (
            proptest::option::of(process()),
            proptest::option::of(process())
        )
            .prop_map(
                |(process, parent)| Some(Event::ProcessExec(proto::ProcessExec {
                    process,
                    parent,
                    ancestors: vec![],
                }))
            ),
        proptest::option::of(process()).prop_map(|process| Some(Event::ProcessExit(
            proto::ProcessExit {
                process,
                signal: "SIGKILL".into(),
                status: 9,
                ..Default::default()
            }
        ))),
        any::<u64>().prop_map(|n| Some(Event::RateLimitInfo(proto::RateLimitInfo {
            number_of_dropped_process_events: n,
        }))),
        Just(None),
    ];
    (kind, prop_oneof![Just(String::new()), text()]).prop_map(|(event, node_name)| {
        GetEventsResponse {
            event,
            node_name,
            cluster_name: "c".into(),
            ..Default::default()
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_events_give_the_same_facts_decoded_lean_or_full(
        events in proptest::collection::vec(event(), 1..8)
    ) {
        let mut frames = Vec::new();
        for ev in &events {
            tetragon_learner::tetragon::framing::encode_frame(ev, &mut frames);
        }
        for (i, (full, lean)) in both(&frames).into_iter().enumerate() {
            prop_assert_eq!(full, lean, "config {}", i);
        }
    }
}
