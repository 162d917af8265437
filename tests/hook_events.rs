//! Real policy events (tests/fixtures/real/hook-events/) through the agent's
//! own decoding: the lean stream types keep the `linux_binprm` path, the
//! policy, the action, the pid and the event time, and the tie rule pairs every
//! kprobe/LSM event of the VM captures with the exec that followed. Expected
//! paths are written out from the captures' README tables, not derived.
use prost::Message;
use tetragon_learner::ingest::facts::{fact_from_lean_event, Fact, IngestConfig};
use tetragon_learner::ingest::hook_tie::HookTie;
use tetragon_learner::tetragon::proto::{lean, GetEventsResponse};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/real/hook-events"
);

/// Each line of a capture, through the wire: JSON -> full message -> bytes ->
/// the lean message the agent reads.
fn lean_events(file: &str) -> Vec<lean::GetEventsResponse> {
    let text = std::fs::read_to_string(format!("{DIR}/{file}")).expect("fixture");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let full: GetEventsResponse = serde_json::from_str(l).expect("a Tetragon event");
            lean::GetEventsResponse::decode(full.encode_to_vec().as_slice()).expect("lean decode")
        })
        .collect()
}

#[derive(Debug, PartialEq)]
enum Seen {
    Exec {
        pid: u32,
        binary: String,
    },
    Policy {
        policy: String,
        path: String,
        pid: u32,
    },
    Exit,
}

fn seen(file: &str) -> Vec<Seen> {
    let cfg = IngestConfig {
        learn_host_processes: true,
        ..Default::default()
    };
    lean_events(file)
        .iter()
        .filter_map(|ev| match fact_from_lean_event(ev, 0, &cfg) {
            Fact::Exec(l) => Some(Seen::Exec {
                pid: l.pid,
                binary: l.observation.path,
            }),
            Fact::Policy(p) => Some(Seen::Policy {
                policy: p.policy_name.to_string(),
                path: p.binprm_path.expect("a linux_binprm path").to_string(),
                pid: p.process.expect("a process").pid,
            }),
            Fact::Exit { .. } => Some(Seen::Exit),
            _ => None,
        })
        .collect()
}

#[test]
fn host_tracepoint_events_name_the_loaded_file_of_the_exec_itself() {
    // /bin/sh -c ... on Debian 12: the event says /bin/sh, the hook /usr/bin/dash.
    assert_eq!(
        seen("host/d-bin-sh-c.jsonl"),
        vec![
            Seen::Exec {
                pid: 32719,
                binary: "/bin/sh".into()
            },
            Seen::Policy {
                policy: "enf-raw-all".into(),
                path: "/usr/bin/dash".into(),
                pid: 32719
            },
            Seen::Exit,
        ]
    );
    // A #! script by relative path: absolute in the event, the interpreter at the hook.
    assert_eq!(
        seen("host/e-script-relative.jsonl"),
        vec![
            Seen::Exec {
                pid: 32721,
                binary: "/opt/enf/x.sh".into()
            },
            Seen::Policy {
                policy: "enf-raw-all".into(),
                path: "/usr/bin/dash".into(),
                pid: 32721
            },
            Seen::Exit,
        ]
    );
    // A kill under enforcement: the exec is reported, then the policy's event.
    let killed = lean_events("host/b-killed-enforce.jsonl");
    let actions: Vec<i32> = killed
        .iter()
        .filter_map(
            |ev| match fact_from_lean_event(ev, 0, &IngestConfig::default()) {
                Fact::Policy(p) => Some(p.action),
                _ => None,
            },
        )
        .collect();
    assert_eq!(actions, vec![3], "KPROBE_ACTION_SIGKILL");
}

/// The VM's observe phase: (case, event binary, opened path at
/// security_bprm_creds_for_exec), from the captures' README.
const OPENED: &[(&str, &str, &str)] = &[
    ("direct", "/t/busybox", "/t/busybox"),
    ("symlink", "/t/echo", "/t/busybox"),
    ("bin-sh", "/bin/sh", "/bin/busybox"),
    ("script-abs", "/t/x.sh", "/t/x.sh"),
    ("script-rel", "/t/x.sh", "/t/x.sh"),
    ("symlink-to-script", "/t/sl.sh", "/t/x.sh"),
    ("unlisted", "/t/unlisted", "/t/unlisted"),
    ("unlisted-script", "/t/y.sh", "/t/y.sh"),
    ("unlisted-interpreter", "/t/z.sh", "/t/z.sh"),
    ("symlink-to-unlisted", "/t/ul", "/t/unlisted"),
];

#[test]
fn vm_kprobe_and_lsm_events_tie_to_the_exec_that_follows() {
    let cfg = IngestConfig {
        learn_host_processes: true,
        ..Default::default()
    };
    for (case, binary, opened) in OPENED {
        for policy in ["kprobe-creds-observe", "lsm-observe-post"] {
            let mut tie: HookTie<()> = HookTie::default();
            let mut got = None;
            for ev in lean_events(&format!("vm/observe.{case}.jsonl")) {
                match fact_from_lean_event(&ev, 0, &cfg) {
                    Fact::Policy(p) if p.policy_name == policy => {
                        let pid = p.process.as_ref().map(|p| p.pid).unwrap_or(0);
                        let time = p.time.expect("event time");
                        assert!(tie
                            .hook(pid, time, p.binprm_path.unwrap_or(""), 0)
                            .is_none());
                    }
                    Fact::Exec(l) => {
                        let start = l.started_at.expect("start time");
                        got = tie.exec(l.pid, start, (), &l.observation.path, 0);
                    }
                    _ => {}
                }
            }
            let got = got.unwrap_or_else(|| panic!("{case} {policy}: no tie"));
            assert_eq!(
                (got.path.as_str(), got.hook_path.as_str()),
                (*binary, *opened),
                "{case} {policy}"
            );
        }
    }
}

#[test]
fn an_enforced_kprobe_denial_has_a_policy_event_and_no_exec() {
    let cfg = IngestConfig::default();
    let facts: Vec<String> = lean_events("vm/kprobe-enforce.symlink-to-unlisted.jsonl")
        .iter()
        .map(|ev| match fact_from_lean_event(ev, 0, &cfg) {
            Fact::Policy(p) => format!("policy {} {:?} {}", p.policy_name, p.binprm_path, p.action),
            Fact::Exec(_) => "exec".into(),
            Fact::Exit { .. } => "exit".into(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        facts,
        vec![
            "policy kprobe-allowlist-enforce Some(\"/t/unlisted\") 5".to_string(),
            "exit".to_string(),
        ]
    );
}
