//! The fast per-line decode: only what the [`generation`](super::generation)
//! fold needs (event kind, `process.exec_id`/`pid`/`flags`/`parent_exec_id`,
//! top-level `time`),
//! borrowed from the line, without building a `GetEventsResponse`.
//!
//! It must never accept a line the full protojson decode
//! (`serde_json::from_str::<GetEventsResponse>`) rejects, or skipping a
//! malformed line would turn into applying it. So it walks the whole line
//! against the same schema, only without allocating: every field the
//! pbjson-generated code knows (proto and JSON names) is checked with the same
//! accepted forms (strings as strings, numbers through pbjson's own
//! `NumberDeserialize`, well-known types through `pbjson_types` themselves,
//! maps, repeated messages, objects only, `null` where pbjson takes it), and
//! unknown fields are skipped as pbjson skips them. Where it is *stricter* than
//! pbjson (any repeated key, two `oneof event` keys, and whatever it does not
//! model) it answers `None` and the caller falls back to the full decode, so
//! such lines are classified exactly as before.
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use pbjson::private::NumberDeserialize;
use pbjson_types::{BoolValue, Timestamp, UInt32Value};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::generation::{FoldEvent, FoldProcess};

/// One line as the fold sees it.
#[derive(Debug)]
pub struct LightLine<'a> {
    pub event: LightEvent<'a>,
    /// Top-level `time` as (seconds, nanos).
    pub time: Option<(i64, i32)>,
}

#[derive(Debug)]
pub enum LightEvent<'a> {
    Exec(Option<LightProcess<'a>>),
    Exit(Option<LightProcess<'a>>),
    /// `rate_limit_info`, a `null` event, or a kind our proto subset ignores.
    Other,
}

#[derive(Debug)]
pub struct LightProcess<'a> {
    pub exec_id: Cow<'a, str>,
    pub pid: Option<u32>,
    pub flags: Cow<'a, str>,
    pub parent_exec_id: Cow<'a, str>,
}

impl LightEvent<'_> {
    pub fn fold_event(&self) -> FoldEvent<'_> {
        match self {
            Self::Exec(p) => FoldEvent::Exec(p.as_ref().map(LightProcess::fold_process)),
            Self::Exit(p) => FoldEvent::Exit(p.as_ref().map(LightProcess::fold_process)),
            Self::Other => FoldEvent::Other,
        }
    }
}

impl LightProcess<'_> {
    pub fn fold_process(&self) -> FoldProcess<'_> {
        FoldProcess {
            exec_id: &self.exec_id,
            pid: self.pid,
            flags: &self.flags,
            parent_exec_id: &self.parent_exec_id,
        }
    }
}

/// Decodes one line (already known to be UTF-8 and not blank). `None`: not
/// accepted here, decode it fully to classify it.
pub fn decode_light(text: &str) -> Option<LightLine<'_>> {
    let line: EventsResponse<'_> = serde_json::from_str(text).ok()?;
    let kinds = [
        line.process_exec.is_some(),
        line.process_exit.is_some(),
        line.rate_limit_info.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() > 1 {
        return None;
    }
    // A policy event's content is checked by the full decode only: the light
    // one must never accept what the full one rejects.
    if line.process_kprobe.is_some()
        || line.process_tracepoint.is_some()
        || line.process_lsm.is_some()
    {
        return None;
    }
    let event = if let Some(Some(exec)) = line.process_exec {
        LightEvent::Exec(exec.process.flatten().map(Process::light))
    } else if let Some(Some(exit)) = line.process_exit {
        LightEvent::Exit(exit.process.flatten().map(Process::light))
    } else {
        LightEvent::Other
    };
    Some(LightLine {
        event,
        time: line.time.flatten().map(|t| (t.seconds, t.nanos)),
    })
}

impl<'de> Process<'de> {
    fn light(self) -> LightProcess<'de> {
        LightProcess {
            exec_id: self.exec_id.map_or(Cow::Borrowed(""), |s| s.0),
            pid: self.pid.flatten().map(|w| w.value),
            flags: self.flags.map_or(Cow::Borrowed(""), |s| s.0),
            parent_exec_id: self.parent_exec_id.map_or(Cow::Borrowed(""), |s| s.0),
        }
    }
}

/// A string kept (borrowed when it has no escapes).
struct Str<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A string checked, not kept.
struct SkipStr;

impl<'de> Deserialize<'de> for SkipStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SkipStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(SkipStr)
            }
        }
        d.deserialize_str(V)
    }
}

/// A `map<string, string>` checked, not kept (pbjson: `HashMap<String, String>`).
struct StrMap;

impl<'de> Deserialize<'de> for StrMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<SkipStr, SkipStr>()?.is_some() {}
                Ok(StrMap)
            }
        }
        d.deserialize_map(V)
    }
}

/// A repeated message checked, not kept (pbjson: `Vec<T>`).
struct Repeated<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Repeated<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Repeated<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<T>()?.is_some() {}
                Ok(Repeated(PhantomData))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// A map key (field name), unescaped.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Str::deserialize(d).map(|s| Key(s.0))
    }
}

/// A protobuf message: a JSON object (never an array, unlike serde's derive)
/// whose known fields, under their proto or JSON name, are decoded as `$ty`
/// (pbjson's `Option<T>` for message fields, the bare type for scalars), each
/// at most once; unknown fields are skipped.
macro_rules! message {
    ($name:ident<$lt:lifetime> { $($field:ident: $ty:ty = $($key:literal)|+,)* }) => {
        #[derive(Default)]
        #[allow(dead_code)]
        struct $name<$lt> {
            $($field: Option<$ty>,)*
            _borrow: PhantomData<&$lt ()>,
        }

        impl<$lt> Deserialize<$lt> for $name<$lt> {
            fn deserialize<D: Deserializer<$lt>>(d: D) -> Result<Self, D::Error> {
                struct V<$lt>(PhantomData<&$lt ()>);
                impl<$lt> Visitor<$lt> for V<$lt> {
                    type Value = $name<$lt>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("message ", stringify!($name)))
                    }
                    fn visit_map<A: MapAccess<$lt>>(
                        self,
                        mut map: A,
                    ) -> Result<Self::Value, A::Error> {
                        let mut out = $name::default();
                        while let Some(key) = map.next_key::<Key<$lt>>()? {
                            match &*key.0 {
                                $($($key)|+ => {
                                    if out.$field.is_some() {
                                        return Err(de::Error::duplicate_field(stringify!($field)));
                                    }
                                    out.$field = Some(map.next_value()?);
                                })*
                                _ => {
                                    map.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                d.deserialize_map(V(PhantomData))
            }
        }
    };
}

// The schema of proto/tetragon/tetragon.proto, as far as GetEventsResponse reaches.
message!(EventsResponse<'de> {
    node_name: SkipStr = "node_name" | "nodeName",
    time: Option<Timestamp> = "time",
    aggregation_info: Option<AggregationInfo<'de>> = "aggregation_info" | "aggregationInfo",
    cluster_name: SkipStr = "cluster_name" | "clusterName",
    node_labels: StrMap = "node_labels" | "nodeLabels",
    process_exec: Option<ProcessExec<'de>> = "process_exec" | "processExec",
    process_exit: Option<ProcessExit<'de>> = "process_exit" | "processExit",
    rate_limit_info: Option<RateLimitInfo<'de>> = "rate_limit_info" | "rateLimitInfo",
    // Policy events: their schema is not mirrored here, so a line holding one
    // is left to the full decode (see `decode_light`).
    process_kprobe: Option<de::IgnoredAny> = "process_kprobe" | "processKprobe",
    process_tracepoint: Option<de::IgnoredAny> = "process_tracepoint" | "processTracepoint",
    process_lsm: Option<de::IgnoredAny> = "process_lsm" | "processLsm",
});

message!(AggregationInfo<'de> {
    count: NumberDeserialize<u64> = "count",
});

message!(RateLimitInfo<'de> {
    number_of_dropped_process_events: NumberDeserialize<u64> =
        "number_of_dropped_process_events" | "numberOfDroppedProcessEvents",
});

message!(ProcessExec<'de> {
    process: Option<Process<'de>> = "process",
    parent: Option<Process<'de>> = "parent",
    ancestors: Repeated<Process<'de>> = "ancestors",
});

message!(ProcessExit<'de> {
    process: Option<Process<'de>> = "process",
    parent: Option<Process<'de>> = "parent",
    signal: SkipStr = "signal",
    status: NumberDeserialize<u32> = "status",
    time: Option<Timestamp> = "time",
    ancestors: Repeated<Process<'de>> = "ancestors",
});

message!(Process<'de> {
    exec_id: Str<'de> = "exec_id" | "execId",
    pid: Option<UInt32Value> = "pid",
    uid: Option<UInt32Value> = "uid",
    cwd: SkipStr = "cwd",
    binary: SkipStr = "binary",
    arguments: SkipStr = "arguments",
    flags: Str<'de> = "flags",
    start_time: Option<Timestamp> = "start_time" | "startTime",
    auid: Option<UInt32Value> = "auid",
    pod: Option<Pod<'de>> = "pod",
    docker: SkipStr = "docker",
    parent_exec_id: Str<'de> = "parent_exec_id" | "parentExecId",
    refcnt: NumberDeserialize<u32> = "refcnt",
    tid: Option<UInt32Value> = "tid",
    in_init_tree: Option<BoolValue> = "in_init_tree" | "inInitTree",
    environment_variables: Repeated<EnvVar<'de>> =
        "environment_variables" | "environmentVariables",
});

message!(EnvVar<'de> {
    key: SkipStr = "Key",
    value: SkipStr = "Value",
});

message!(Pod<'de> {
    namespace: SkipStr = "namespace",
    name: SkipStr = "name",
    uid: SkipStr = "uid",
    container: Option<Container<'de>> = "container",
    pod_labels: StrMap = "pod_labels" | "podLabels",
    workload: SkipStr = "workload",
    workload_kind: SkipStr = "workload_kind" | "workloadKind",
    pod_annotations: StrMap = "pod_annotations" | "podAnnotations",
});

message!(Container<'de> {
    id: SkipStr = "id",
    name: SkipStr = "name",
    image: Option<Image<'de>> = "image",
    start_time: Option<Timestamp> = "start_time" | "startTime",
    pid: Option<UInt32Value> = "pid",
    maybe_exec_probe: bool = "maybe_exec_probe" | "maybeExecProbe",
    security_context: Option<SecurityContext<'de>> = "security_context" | "securityContext",
});

message!(Image<'de> {
    id: SkipStr = "id",
    name: SkipStr = "name",
});

message!(SecurityContext<'de> {
    privileged: bool = "privileged",
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tetragon::proto::{get_events_response::Event, GetEventsResponse};

    /// The light decode accepts only what the full one accepts, with the same
    /// fold-relevant fields.
    fn agrees(line: &str) {
        let full = serde_json::from_str::<GetEventsResponse>(line);
        let Some(light) = decode_light(line) else {
            return;
        };
        let full = full.unwrap_or_else(|e| panic!("light accepted, full rejected ({e}): {line}"));
        let proc_of = |p: Option<&crate::tetragon::proto::Process>| {
            p.map(|p| {
                (
                    p.exec_id.clone(),
                    p.pid.map(|w| w.value),
                    p.flags.clone(),
                    p.parent_exec_id.clone(),
                )
            })
        };
        let light_proc = |p: &Option<LightProcess<'_>>| {
            p.as_ref().map(|p| {
                (
                    p.exec_id.to_string(),
                    p.pid,
                    p.flags.to_string(),
                    p.parent_exec_id.to_string(),
                )
            })
        };
        match (&full.event, &light.event) {
            (Some(Event::ProcessExec(e)), LightEvent::Exec(p)) => {
                assert_eq!(proc_of(e.process.as_ref()), light_proc(p), "{line}")
            }
            (Some(Event::ProcessExit(e)), LightEvent::Exit(p)) => {
                assert_eq!(proc_of(e.process.as_ref()), light_proc(p), "{line}")
            }
            (
                Some(
                    Event::RateLimitInfo(_)
                    | Event::ProcessKprobe(_)
                    | Event::ProcessTracepoint(_)
                    | Event::ProcessLsm(_),
                )
                | None,
                LightEvent::Other,
            ) => {}
            (f, l) => panic!("kinds differ: {f:?} vs {l:?}: {line}"),
        }
        assert_eq!(
            full.time.map(|t| (t.seconds, t.nanos)),
            light.time,
            "{line}"
        );
    }

    #[test]
    fn light_never_accepts_what_the_full_decode_rejects() {
        let lines = [
            r#"{"process_exec":{"process":{"exec_id":"a","pid":3,"flags":"procFS"}},"time":"2026-11-29T14:47:16.824628294Z"}"#,
            r#"{"processExec":{"process":{"execId":"a\u0062","pid":"3","flags":"execve"}}}"#,
            r#"{"process_exec":{"process":{"pid":"x"}}}"#,
            r#"{"process_exec":{"process":{"exec_id":5}}}"#,
            r#"{"process_exec":{"process":{"exec_id":null}}}"#,
            r#"{"process_exec":{"process":{"exec_id":"b","parentExecId":"a\u0062","flags":"execve"}}}"#,
            r#"{"process_exec":{"process":{"exec_id":"b","parent_exec_id":7}}}"#,
            r#"{"process_exec":{"process":{"exec_id":"b","parent_exec_id":null}}}"#,
            r#"{"process_exec":{"process":{"parent_exec_id":"a","parentExecId":"a"}}}"#,
            r#"{"process_exec":{"process":{"pod":{"pod_labels":{"a":1}}}}}"#,
            r#"{"process_exec":{"process":{"pod":{"pod_labels":null}}}}"#,
            r#"{"process_exec":{"process":{"pod":{"container":{"maybe_exec_probe":"yes"}}}}}"#,
            r#"{"process_exec":{"parent":{"uid":-1}}}"#,
            r#"{"process_exec":{"ancestors":null}}"#,
            r#"{"process_exec":{"ancestors":[{"binary":1}]}}"#,
            r#"{"process_exec":{"ancestors":[{"binary":"/b"}]}}"#,
            r#"{"process_exec":{"process":["a",1]}}"#,
            r#"{"process_exec":[{"exec_id":"a"}]}"#,
            r#"["a"]"#,
            r#"null"#,
            r#"{"process_exec":null}"#,
            r#"{"process_exec":null,"process_exit":{"process":{"exec_id":"a"}}}"#,
            r#"{"process_exec":{},"process_exit":{}}"#,
            r#"{"process_exec":{},"rateLimitInfo":{}}"#,
            r#"{"process_exit":{"process":{"exec_id":"a"},"status":"x"}}"#,
            r#"{"process_exit":{"process":{"exec_id":"a"},"status":1.5}}"#,
            r#"{"process_exit":{"process":{"exec_id":"a"},"time":"yesterday"}}"#,
            r#"{"process_exit":{"process":{"exec_id":"a","exec_id":"b"}}}"#,
            r#"{"process_exit":{"process":{"exec_id":"a","execId":"b"}}}"#,
            r#"{"process_exit":{"process":{"pid":null,"pid":4,"exec_id":"a"}}}"#,
            r#"{"node_name":"n","nodeName":"m"}"#,
            r#"{"node_name":5}"#,
            r#"{"time":"2026-11-29T14:47:16Z","time":null}"#,
            r#"{"time":null}"#,
            r#"{"process_kprobe":{"anything":[1,{"x":null}]},"node_labels":{"k":"v"}}"#,
            r#"{"rate_limit_info":{"number_of_dropped_process_events":"12"}}"#,
            r#"{"aggregation_info":{"count":-1}}"#,
            r#"{"process_exec":{"process":{"environment_variables":[{"Key":"a","Value":"b"}],"in_init_tree":true,"tid":7,"refcnt":"2"}}}"#,
            r#"{"process_exec":{"process":{"in_init_tree":"true"}}}"#,
            r#"{"process_exec":{"process":{"start_time":"2026-11-29T14:47:16Z","pod":{"container":{"image":{"id":"i","name":"n"},"security_context":{"privileged":false}}}}}} "#,
            r#"{"process_exec":{}} x"#,
        ];
        for line in lines {
            agrees(line);
        }
    }

    #[test]
    fn keeps_the_fold_fields_borrowed() {
        let line = r#"{"process_exit":{"process":{"exec_id":"ZXg=","pid":9,"flags":"procFS"}},"time":"2026-11-29T14:47:16Z"}"#;
        let light = decode_light(line).expect("valid");
        let LightEvent::Exit(Some(p)) = light.event else {
            panic!("exit expected");
        };
        assert!(matches!(p.exec_id, Cow::Borrowed("ZXg=")));
        assert_eq!(p.pid, Some(9));
        assert!(light.time.is_some());
    }
}
