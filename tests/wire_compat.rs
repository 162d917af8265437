//! Wire compatibility of our Tetragon proto subset with what Tetragon really sends.
//!
//! Fixtures (see `tests/fixtures/README.md`):
//! - `tetragon-docs/events.jsonl`: export-format events from upstream Tetragon's docs.
//! - `real/*`: raw protobuf and protojson captured from a real Tetragon (v1.8.0-pre)
//!   over its gRPC API.
//!
//! Every `.pb` message must equal (`PartialEq`) the message serde/pbjson parses from the
//! matching protojson, and re-serialising our message must give back the fixture JSON
//! for every key we model (timestamps and 64-bit integers compared by value, since
//! textual forms may legitimately differ), with the fixture keys we do not model
//! limited to upstream fields we deliberately left out.
use std::collections::HashMap;

use prost::Message;
use serde_json::Value;
use tetragon_learner::tetragon::framing::decode_frames;
use tetragon_learner::tetragon::proto;
use tetragon_learner::tetragon::proto::get_debug_response::Arg as DebugArg;
use tetragon_learner::tetragon::proto::get_events_response::Event;

const DOCS_EVENTS: &str = include_str!("fixtures/tetragon-docs/events.jsonl");
const DUMP_PB: &[u8] = include_bytes!("fixtures/real/getdebug-dump.pb");
const DUMP_JSON: &str = include_str!("fixtures/real/getdebug-dump.json");
const DUMP_TETRA_JSONL: &str = include_str!("fixtures/real/getdebug-dump.tetra.jsonl");
const STREAM_PB: &[u8] = include_bytes!("fixtures/real/getevents-stream.pb");
const STREAM_JSONL: &str = include_str!("fixtures/real/getevents-stream.jsonl");
const CONTAINER_PB: &[u8] = include_bytes!("fixtures/real/container-events.pb");
const CONTAINER_JSONL: &str = include_str!("fixtures/real/container-events.jsonl");
const HEALTH_PB: &[u8] = include_bytes!("fixtures/real/gethealth.pb");
const HEALTH_JSON: &str = include_str!("fixtures/real/gethealth.json");
const VERSION_PB: &[u8] = include_bytes!("fixtures/real/getversion.pb");
const VERSION_JSON: &str = include_str!("fixtures/real/getversion.json");

/// Top-level `GetEventsResponse` members outside our subset: the upstream oneof
/// members we omit, plus kinds only older releases had (connect/close/listen).
const UNMODELED_EVENT_KINDS: &[&str] = &[
    "process_loader",
    "process_uprobe",
    "process_throttle",
    "process_usdt",
    "test",
    "process_connect",
    "process_close",
    "process_listen",
];

/// Upstream `Process` fields the proto leaves out (see the comment on `message Process`).
const UNMODELED_PROCESS_FIELDS: &[&str] = &[
    "cap",
    "ns",
    "process_credentials",
    "binary_properties",
    "user",
];

/// Keys holding a `google.protobuf.Timestamp`.
const TIMESTAMP_KEYS: &[&str] = &["start_time", "time"];

/// Keys holding a 64-bit integer (protojson writes those as strings).
const INT64_KEYS: &[&str] = &["count", "number_of_dropped_process_events"];

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l))
}

/// An RFC 3339 timestamp as (seconds, nanos), parsed independently of pbjson.
fn rfc3339(text: &str) -> (i64, u32) {
    let t = chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"));
    (t.timestamp(), t.timestamp_subsec_nanos())
}

fn ts(t: &Option<pbjson_types::Timestamp>) -> Option<(i64, u32)> {
    t.as_ref().map(|t| {
        (
            t.seconds,
            u32::try_from(t.nanos).expect("nanos within 0..1e9"),
        )
    })
}

fn json_ts(v: &Value) -> Option<(i64, u32)> {
    v.as_str().map(rfc3339)
}

fn json_str(v: &Value) -> &str {
    match v {
        Value::Null => "",
        Value::String(s) => s,
        other => panic!("expected a string, got {other}"),
    }
}

fn json_u32(v: &Value) -> Option<u32> {
    v.as_u64().map(|n| u32::try_from(n).expect("fits u32"))
}

fn json_i64(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Whether a fixture key we do not output is one we know the proto omits.
fn known_omitted(path: &[String], key: &str) -> bool {
    let parent = path.last().map(String::as_str);
    (path.is_empty() && UNMODELED_EVENT_KINDS.contains(&key))
        || (matches!(parent, Some("process" | "parent" | "ancestors"))
            && UNMODELED_PROCESS_FIELDS.contains(&key))
}

/// Checks that every key of `ours` (our message re-serialised by pbjson) appears in
/// `fixture` with an equal value, and that the fixture keys we do not output are only
/// known-omitted ones. Returns the paths of the omitted keys seen.
fn assert_json_matches(ours: &Value, fixture: &Value, what: &str) -> Vec<String> {
    let mut omitted = Vec::new();
    compare(ours, fixture, &mut Vec::new(), what, &mut omitted);
    omitted
}

fn at(what: &str, path: &[String]) -> String {
    format!("{what}: at `{}`", path.join("."))
}

fn compare(
    ours: &Value,
    fixture: &Value,
    path: &mut Vec<String>,
    what: &str,
    omitted: &mut Vec<String>,
) {
    match (ours, fixture) {
        (Value::Object(o), Value::Object(f)) => {
            for (k, ov) in o {
                let fv = f.get(k).unwrap_or_else(|| {
                    panic!(
                        "{}: we output `{k}`={ov} but the fixture has no such key",
                        at(what, path)
                    )
                });
                path.push(k.clone());
                compare(ov, fv, path, what, omitted);
                path.pop();
            }
            for k in f.keys().filter(|k| !o.contains_key(*k)) {
                assert!(
                    known_omitted(path, k),
                    "{}: fixture key `{k}`={} is missing from our output and is not a known-omitted field",
                    at(what, path),
                    f[k]
                );
                omitted.push(format!("{}.{k}", path.join(".")));
            }
        }
        (Value::Array(o), Value::Array(f)) => {
            assert_eq!(o.len(), f.len(), "{}: array length", at(what, path));
            for (ov, fv) in o.iter().zip(f) {
                compare(ov, fv, path, what, omitted);
            }
        }
        _ if ours == fixture => {}
        _ => {
            let key = path.last().map(String::as_str).unwrap_or_default();
            if TIMESTAMP_KEYS.contains(&key) {
                assert_eq!(
                    json_ts(ours),
                    json_ts(fixture),
                    "{}: timestamp {ours} vs {fixture}",
                    at(what, path)
                );
                assert!(
                    json_ts(ours).is_some(),
                    "{}: not a timestamp string: {ours}",
                    at(what, path)
                );
            } else if INT64_KEYS.contains(&key) {
                assert_eq!(
                    json_i64(ours),
                    json_i64(fixture),
                    "{}: {ours} vs {fixture}",
                    at(what, path)
                );
                assert!(
                    json_i64(ours).is_some(),
                    "{}: not an integer: {ours}",
                    at(what, path)
                );
            } else {
                panic!("{}: ours {ours} != fixture {fixture}", at(what, path));
            }
        }
    }
}

/// Parses protojson into `M` with our generated serde impls.
fn from_json<M: serde::de::DeserializeOwned>(text: &str, what: &str) -> M {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: pbjson parse failed: {e}"))
}

fn to_json<M: serde::Serialize>(msg: &M) -> Value {
    serde_json::to_value(msg).expect("serialise")
}

fn roundtrip<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M, what: &str) {
    let bytes = msg.encode_to_vec();
    let back = M::decode(bytes.as_slice())
        .unwrap_or_else(|e| panic!("{what}: decode of our encoding: {e}"));
    assert_eq!(&back, msg, "{what}: protobuf round trip");
}

/// Checks the `Process` fields the agent relies on against the raw JSON object.
fn check_process(p: &proto::Process, v: &Value, what: &str) {
    assert!(v.is_object(), "{what}: fixture has no process object");
    assert_eq!(p.exec_id, json_str(&v["exec_id"]), "{what}: exec_id");
    assert!(!p.exec_id.is_empty(), "{what}: exec_id empty");
    assert_eq!(
        p.pid.as_ref().map(|w| w.value),
        json_u32(&v["pid"]),
        "{what}: pid"
    );
    assert_eq!(
        p.uid.as_ref().map(|w| w.value),
        json_u32(&v["uid"]),
        "{what}: uid"
    );
    assert_eq!(
        p.auid.as_ref().map(|w| w.value),
        json_u32(&v["auid"]),
        "{what}: auid"
    );
    assert_eq!(p.binary, json_str(&v["binary"]), "{what}: binary");
    assert_eq!(p.arguments, json_str(&v["arguments"]), "{what}: arguments");
    assert_eq!(p.flags, json_str(&v["flags"]), "{what}: flags");
    assert_eq!(p.cwd, json_str(&v["cwd"]), "{what}: cwd");
    assert_eq!(p.docker, json_str(&v["docker"]), "{what}: docker");
    assert_eq!(
        ts(&p.start_time),
        json_ts(&v["start_time"]),
        "{what}: start_time"
    );
    assert!(p.start_time.is_some(), "{what}: start_time missing");
    assert_eq!(
        p.parent_exec_id,
        json_str(&v["parent_exec_id"]),
        "{what}: parent_exec_id"
    );
    assert_eq!(
        u64::from(p.refcnt),
        v["refcnt"].as_u64().unwrap_or(0),
        "{what}: refcnt"
    );

    let pv = &v["pod"];
    match &p.pod {
        None => assert!(pv.is_null(), "{what}: pod in JSON but not parsed"),
        Some(pod) => {
            assert_eq!(
                pod.namespace,
                json_str(&pv["namespace"]),
                "{what}: pod.namespace"
            );
            assert_eq!(pod.name, json_str(&pv["name"]), "{what}: pod.name");
            let labels: HashMap<String, String> = match &pv["pod_labels"] {
                Value::Null => HashMap::new(),
                l => serde_json::from_value(l.clone()).expect("pod_labels map"),
            };
            assert_eq!(pod.pod_labels, labels, "{what}: pod.pod_labels");
            let cv = &pv["container"];
            let c = pod.container.as_ref().expect("pod.container");
            assert_eq!(c.name, json_str(&cv["name"]), "{what}: pod.container.name");
            assert_eq!(c.id, json_str(&cv["id"]), "{what}: pod.container.id");
            let image = c.image.as_ref().expect("pod.container.image");
            assert_eq!(
                image.name,
                json_str(&cv["image"]["name"]),
                "{what}: pod.container.image.name"
            );
            assert_eq!(
                image.id,
                json_str(&cv["image"]["id"]),
                "{what}: pod.container.image.id"
            );
            assert_eq!(
                ts(&c.start_time),
                json_ts(&cv["start_time"]),
                "{what}: pod.container.start_time"
            );
            assert_eq!(
                c.pid.as_ref().map(|w| w.value),
                json_u32(&cv["pid"]),
                "{what}: pod.container.pid"
            );
        }
    }
}

/// `.pb` frames against `.jsonl` lines: same count, message equality, JSON equality.
fn check_stream(
    pb: &[u8],
    jsonl: &str,
    expected: usize,
    what: &str,
) -> Vec<proto::GetEventsResponse> {
    let frames: Vec<proto::GetEventsResponse> =
        decode_frames(pb).unwrap_or_else(|e| panic!("{what}: {e}"));
    let json_lines: Vec<_> = lines(jsonl).collect();
    assert_eq!(frames.len(), expected, "{what}: frame count");
    assert_eq!(json_lines.len(), expected, "{what}: line count");
    for (i, (frame, (n, line))) in frames.iter().zip(&json_lines).enumerate() {
        let ctx = format!("{what} frame {i} / line {n}");
        let parsed: proto::GetEventsResponse = from_json(line, &ctx);
        assert_eq!(
            frame, &parsed,
            "{ctx}: .pb message != message parsed from JSON"
        );
        assert!(
            matches!(
                frame.event,
                Some(Event::ProcessExec(_) | Event::ProcessExit(_))
            ),
            "{ctx}: expected exec/exit, got {:?}",
            frame.event
        );
        let fixture: Value = serde_json::from_str(line).expect("json");
        let omitted = assert_json_matches(&to_json(frame), &fixture, &ctx);
        assert!(
            omitted.is_empty(),
            "{ctx}: real capture has unmodelled keys {omitted:?}"
        );
        // Re-encoding gives the captured bytes back: same field numbers, wire types and
        // order as Tetragon's Go encoder (these messages contain no maps).
        roundtrip(frame, &ctx);
    }
    // Byte-exact re-encoding of the whole capture.
    let mut again = Vec::new();
    for f in &frames {
        tetragon_learner::tetragon::framing::encode_frame(f, &mut again);
    }
    assert_eq!(
        again, pb,
        "{what}: re-encoded frames differ from the captured bytes"
    );
    frames
}

// ---------------------------------------------------------------------------
// 1. upstream docs events (export format)
// ---------------------------------------------------------------------------

#[test]
fn docs_events_deserialize_roundtrip_and_keep_agent_fields() {
    let mut kinds: HashMap<&'static str, usize> = HashMap::new();
    let mut pods_seen = 0;
    let mut labels_seen = 0;
    for (n, line) in lines(DOCS_EVENTS) {
        let ctx = format!("tetragon-docs/events.jsonl line {n}");
        let raw: Value = serde_json::from_str(line).expect("valid JSON");
        let msg: proto::GetEventsResponse = from_json(line, &ctx);

        roundtrip(&msg, &ctx);
        assert_eq!(
            msg.node_name,
            json_str(&raw["node_name"]),
            "{ctx}: node_name"
        );
        assert!(!msg.node_name.is_empty(), "{ctx}: node_name empty");
        assert_eq!(ts(&msg.time), json_ts(&raw["time"]), "{ctx}: time");
        assert!(msg.time.is_some(), "{ctx}: time missing");

        let (kind, body) = if raw.get("process_exec").is_some() {
            let Some(Event::ProcessExec(e)) = &msg.event else {
                panic!("{ctx}: process_exec line gave {:?}", msg.event)
            };
            ("process_exec", (e.process.as_ref(), e.parent.as_ref()))
        } else if raw.get("process_exit").is_some() {
            let Some(Event::ProcessExit(e)) = &msg.event else {
                panic!("{ctx}: process_exit line gave {:?}", msg.event)
            };
            let rv = &raw["process_exit"];
            assert_eq!(e.signal, json_str(&rv["signal"]), "{ctx}: signal");
            assert_eq!(
                u64::from(e.status),
                rv["status"].as_u64().unwrap_or(0),
                "{ctx}: status"
            );
            assert_eq!(
                ts(&e.time),
                json_ts(&rv["time"]),
                "{ctx}: process_exit.time"
            );
            ("process_exit", (e.process.as_ref(), e.parent.as_ref()))
        } else if let Some(kind) = ["process_kprobe", "process_tracepoint", "process_lsm"]
            .into_iter()
            .find(|k| raw.get(*k).is_some())
        {
            // Policy events: the fields the agent reads keep their values.
            let rv = &raw[kind];
            let (policy, process) = match &msg.event {
                Some(Event::ProcessKprobe(e)) => (&e.policy_name, e.process.as_ref()),
                Some(Event::ProcessTracepoint(e)) => (&e.policy_name, e.process.as_ref()),
                Some(Event::ProcessLsm(e)) => (&e.policy_name, e.process.as_ref()),
                other => panic!("{ctx}: {kind} line gave {other:?}"),
            };
            assert_eq!(*policy, json_str(&rv["policy_name"]), "{ctx}: policy_name");
            if let Some(p) = process {
                check_process(p, &rv["process"], &format!("{ctx} process"));
            }
            *kinds.entry(kind).or_default() += 1;
            continue;
        } else {
            let other = UNMODELED_EVENT_KINDS
                .iter()
                .find(|k| raw.get(**k).is_some())
                .unwrap_or_else(|| panic!("{ctx}: unexpected event kind"));
            assert!(
                msg.event.is_none(),
                "{ctx}: {other} must deserialize with event None"
            );
            *kinds.entry(other).or_default() += 1;
            // Nothing of the unmodelled event survives; only the envelope.
            let omitted = assert_json_matches(&to_json(&msg), &raw, &ctx);
            assert_eq!(omitted, vec![format!(".{other}")], "{ctx}: omitted keys");
            continue;
        };
        *kinds.entry(kind).or_default() += 1;

        let (process, parent) = body;
        let process = process.unwrap_or_else(|| panic!("{ctx}: no process"));
        check_process(process, &raw[kind]["process"], &format!("{ctx} process"));
        let parent = parent.unwrap_or_else(|| panic!("{ctx}: no parent"));
        check_process(parent, &raw[kind]["parent"], &format!("{ctx} parent"));
        if let Some(pod) = &process.pod {
            pods_seen += 1;
            labels_seen += usize::from(!pod.pod_labels.is_empty());
        }

        // Everything we model matches the fixture; what we drop is only `process.cap`.
        let omitted = assert_json_matches(&to_json(&msg), &raw, &ctx);
        for path in &omitted {
            assert!(
                path.ends_with(".process.cap"),
                "{ctx}: unexpected omitted key {path}"
            );
        }
    }
    let expect: HashMap<&str, usize> = [
        ("process_exec", 15),
        ("process_exit", 6),
        ("process_connect", 5),
        ("process_close", 2),
        ("process_kprobe", 2),
        ("process_listen", 1),
    ]
    .into();
    assert_eq!(kinds, expect, "event kinds in events.jsonl");
    assert_eq!(pods_seen, 10, "exec/exit events with pod info");
    assert_eq!(labels_seen, 1, "exec/exit events with pod labels");
}

// ---------------------------------------------------------------------------
// 2. GetDebug process-cache dump
// ---------------------------------------------------------------------------

#[test]
fn getdebug_dump_pb_equals_json() {
    let from_pb = proto::GetDebugResponse::decode(DUMP_PB).expect("decode getdebug-dump.pb");
    let from_json: proto::GetDebugResponse = from_json(DUMP_JSON, "getdebug-dump.json");
    assert_eq!(from_pb, from_json, "getdebug-dump: .pb != .json");
    roundtrip(&from_pb, "getdebug-dump");
    // Nothing in the capture was skipped as an unknown field: our encoding has the same
    // size (bytes can differ only by the order of map entries in `refcnt_ops`).
    assert_eq!(
        from_pb.encoded_len(),
        DUMP_PB.len(),
        "getdebug-dump: fields lost on decode"
    );

    let fixture: Value = serde_json::from_str(DUMP_JSON).expect("json");
    let omitted = assert_json_matches(&to_json(&from_pb), &fixture, "getdebug-dump");
    assert!(
        omitted.is_empty(),
        "getdebug-dump: unmodelled keys {omitted:?}"
    );

    assert_eq!(from_pb.flag, proto::ConfigFlag::DumpProcessCache as i32);
    assert_eq!(from_pb.flag(), proto::ConfigFlag::DumpProcessCache);
    let Some(DebugArg::Processes(dump)) = &from_pb.arg else {
        panic!("getdebug-dump: arg is {:?}", from_pb.arg)
    };
    assert_eq!(dump.processes.len(), 72);

    for (i, e) in dump.processes.iter().enumerate() {
        let p = e
            .process
            .as_ref()
            .unwrap_or_else(|| panic!("entry {i}: no process"));
        assert_eq!(e.color, "inUse", "entry {i}");
        assert!(
            e.refcnt.is_some_and(|r| r.value >= 1),
            "entry {i}: refcnt (skip_zero_refcnt)"
        );
        assert!(
            p.pid.is_some() && p.uid.is_some() && p.tid.is_some(),
            "entry {i}: wrappers"
        );
        assert!(
            p.in_init_tree.is_some_and(|b| !b.value),
            "entry {i}: in_init_tree"
        );
        assert_eq!(p.auid.map(|w| w.value), Some(u32::MAX), "entry {i}: auid");
        assert!(p.start_time.is_some(), "entry {i}: start_time");
    }

    let kthreads = dump
        .processes
        .iter()
        .filter_map(|e| e.process.as_ref())
        .filter(|p| p.binary.starts_with('[') && p.binary.ends_with(']'))
        .inspect(|p| assert_eq!(p.flags, "procFS", "kernel thread {}", p.binary))
        .count();
    assert_eq!(kthreads, 60, "kernel threads in the cache");
    assert!(dump.processes.iter().any(|e| e
        .process
        .as_ref()
        .is_some_and(|p| p.binary == "[kthreadd]"
            && p.pid.map(|w| w.value) == Some(2)
            && e.refcnt.map(|r| r.value) == Some(60))));

    let kernel = dump
        .processes
        .iter()
        .find(|e| e.process.as_ref().is_some_and(|p| p.binary == "<kernel>"))
        .expect("pid 0 <kernel> entry");
    let kp = kernel.process.as_ref().expect("process");
    // A zero wrapper is present (empty sub-message on the wire), not absent.
    assert_eq!(kp.pid, Some(pbjson_types::UInt32Value { value: 0 }));
    assert_eq!(kp.tid, Some(pbjson_types::UInt32Value { value: 0 }));
    assert_eq!(kp.exec_id, "dm06MTow"); // base64("vm:1:0")
    assert_eq!(kp.parent_exec_id, kp.exec_id);
    assert_eq!(kernel.refcnt.map(|r| r.value), Some(3));
    let ops: HashMap<String, i32> =
        [("process++".to_owned(), 1), ("parent++".to_owned(), 2)].into();
    assert_eq!(kernel.refcnt_ops, ops);
}

// ---------------------------------------------------------------------------
// 3. GetEvents streams
// ---------------------------------------------------------------------------

#[test]
fn getevents_stream_pb_frames_equal_json_lines() {
    let frames = check_stream(STREAM_PB, STREAM_JSONL, 240, "getevents-stream");
    let execs = frames
        .iter()
        .filter(|f| matches!(f.event, Some(Event::ProcessExec(_))))
        .count();
    assert_eq!(execs, 120);
    assert!(frames
        .iter()
        .all(|f| f.node_name == "vm" && f.time.is_some()));
}

#[test]
fn container_events_pb_frames_equal_json_lines() {
    let frames = check_stream(CONTAINER_PB, CONTAINER_JSONL, 59, "container-events");
    let execs = frames
        .iter()
        .filter(|f| matches!(f.event, Some(Event::ProcessExec(_))))
        .count();
    assert_eq!(execs, 31);
    let with_docker = frames
        .iter()
        .flat_map(|f| match &f.event {
            Some(Event::ProcessExec(e)) => [e.process.as_ref(), e.parent.as_ref()],
            Some(Event::ProcessExit(e)) => [e.process.as_ref(), e.parent.as_ref()],
            _ => [None, None],
        })
        .flatten()
        .filter(|p| !p.docker.is_empty())
        .inspect(|p| assert_eq!(p.docker.len(), 31, "docker is a 31-char prefix"))
        .count();
    assert_eq!(with_docker, 61, "process/parent objects with docker");
}

// ---------------------------------------------------------------------------
// 4. GetHealth / GetVersion
// ---------------------------------------------------------------------------

#[test]
fn gethealth_pb_equals_json() {
    let from_pb = proto::GetHealthStatusResponse::decode(HEALTH_PB).expect("decode gethealth.pb");
    let from_json: proto::GetHealthStatusResponse = from_json(HEALTH_JSON, "gethealth.json");
    assert_eq!(from_pb, from_json);
    assert_eq!(from_pb.encode_to_vec(), HEALTH_PB, "byte-exact re-encoding");
    let fixture: Value = serde_json::from_str(HEALTH_JSON).expect("json");
    assert!(assert_json_matches(&to_json(&from_pb), &fixture, "gethealth").is_empty());
    assert_eq!(to_json(&from_pb), fixture, "gethealth JSON identical");
    let [status] = from_pb.health_status.as_slice() else {
        panic!("one health status expected: {from_pb:?}")
    };
    assert_eq!(status.event(), proto::HealthStatusType::Status);
    assert_eq!(
        status.status(),
        proto::HealthStatusResult::HealthStatusRunning
    );
    assert_eq!(status.details, "running");
}

#[test]
fn getversion_pb_equals_json() {
    let from_pb = proto::GetVersionResponse::decode(VERSION_PB).expect("decode getversion.pb");
    let from_json: proto::GetVersionResponse = from_json(VERSION_JSON, "getversion.json");
    assert_eq!(from_pb, from_json);
    assert_eq!(
        from_pb.encode_to_vec(),
        VERSION_PB,
        "byte-exact re-encoding"
    );
    let fixture: Value = serde_json::from_str(VERSION_JSON).expect("json");
    assert_eq!(to_json(&from_pb), fixture, "getversion JSON identical");
    assert_eq!(from_pb.version, "v1.8.0-pre.0-653-g4fbfe2d74");
}

// ---------------------------------------------------------------------------
// 5. `tetra debug dump processcache` output
// ---------------------------------------------------------------------------

#[test]
fn tetra_dump_lines_parse_as_process_internal() {
    let entries: Vec<proto::ProcessInternal> = lines(DUMP_TETRA_JSONL)
        .map(|(n, line)| {
            let ctx = format!("getdebug-dump.tetra.jsonl line {n}");
            let e: proto::ProcessInternal = from_json(line, &ctx);
            let fixture: Value = serde_json::from_str(line).expect("json");
            let omitted = assert_json_matches(&to_json(&e), &fixture, &ctx);
            assert!(omitted.is_empty(), "{ctx}: unmodelled keys {omitted:?}");
            roundtrip(&e, &ctx);
            assert!(
                e.process.as_ref().is_some_and(|p| !p.exec_id.is_empty()),
                "{ctx}: exec_id"
            );
            e
        })
        .collect();
    assert_eq!(entries.len(), 72);

    // Taken seconds after the .pb: 71 of 72 exec_ids shared, and those processes equal.
    let dump = proto::GetDebugResponse::decode(DUMP_PB).expect("decode");
    let Some(DebugArg::Processes(dump)) = dump.arg else {
        panic!("no processes")
    };
    let by_id: HashMap<&str, &proto::ProcessInternal> = dump
        .processes
        .iter()
        .map(|e| (e.process.as_ref().expect("process").exec_id.as_str(), e))
        .collect();
    let mut shared = 0;
    for e in &entries {
        let p = e.process.as_ref().expect("process");
        if let Some(other) = by_id.get(p.exec_id.as_str()) {
            shared += 1;
            assert_eq!(
                other.process.as_ref(),
                Some(p),
                "process {} differs",
                p.exec_id
            );
        }
    }
    assert_eq!(shared, 71);
}

// ---------------------------------------------------------------------------
// the comparison helper itself
// ---------------------------------------------------------------------------

fn rejects(ours: Value, fixture: Value) -> bool {
    std::panic::catch_unwind(|| assert_json_matches(&ours, &fixture, "self-test")).is_err()
}

#[test]
fn json_helper_accepts_equivalents_and_rejects_mismatches() {
    use serde_json::json;
    // Same instant, different RFC 3339 spellings; u64 as string vs number.
    let omitted = assert_json_matches(
        &json!({"time": "2022-01-19T16:29:02.507+00:00", "aggregation_info": {"count": "7"}}),
        &json!({"time": "2022-01-19T16:29:02.507000Z", "aggregation_info": {"count": 7}, "process_loader": {}}),
        "self-test",
    );
    assert_eq!(omitted, vec![".process_loader".to_owned()]);
    let omitted = assert_json_matches(
        &json!({"process_exec": {"process": {"pid": 1}}}),
        &json!({"process_exec": {"process": {"pid": 1, "cap": {}}}}),
        "self-test",
    );
    assert_eq!(omitted, vec!["process_exec.process.cap".to_owned()]);

    assert!(
        rejects(json!({"pid": 1}), json!({"pid": 2})),
        "value mismatch"
    );
    assert!(
        rejects(json!({"pid": 1}), json!({})),
        "key we output missing from fixture"
    );
    assert!(
        rejects(json!({}), json!({"binary": "/bin/sh"})),
        "unexplained fixture key"
    );
    assert!(
        rejects(json!({"process": {}}), json!({"process": {"flags": "x"}})),
        "unexplained nested key"
    );
    assert!(
        rejects(
            json!({"time": "2022-01-19T16:29:02.507Z"}),
            json!({"time": "2022-01-19T16:29:02.508Z"})
        ),
        "different instants"
    );
    assert!(
        rejects(json!({"flags": "a"}), json!({"flags": "b"})),
        "string mismatch"
    );
    assert!(rejects(json!([1, 2]), json!([1])), "array length");
}
