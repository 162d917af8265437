//! `export --input FILE...`: several nodes' `export --format json` files merged
//! into one cluster-wide export, through the real binary. Expected outputs are
//! written out here, not computed by the merge under test. Errors leave no
//! output file behind and never replace an existing one.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_tetragon-learner");
const TRACING_POLICY_SCHEMA: &str =
    include_str!("fixtures/schemas/tracingpolicynamespaced-cilium.io.json");
const EVIL: &str = "/bin/evil\n{{ x }}\"\u{202e}";

fn exe(
    path: &str,
    first: &str,
    last: &str,
    count: u64,
    source: &str,
    probe: bool,
    session: bool,
) -> Value {
    json!({"path": path, "first_seen": first, "last_seen": last, "count": count,
           "source": source, "sources": [source], "exec_probe": probe, "exec_session": session})
}

fn key(kind: &str, workload: &str, container: &str) -> Value {
    json!({"namespace": "shop", "workload_kind": kind, "workload": workload, "container": container})
}

/// Node A: web's nginx, stable, with a probe-only /bin/sh.
fn node_a() -> Value {
    json!([{
        "key": key("Deployment", "web", "nginx"),
        "state": "stable",
        "executables": [
            exe("/bin/sh", "2026-01-01T10:01:00.000Z", "2026-01-01T10:02:00.000Z", 4, "event", true, false),
            exe("/usr/sbin/nginx", "2026-01-01T10:00:00.000Z", "2026-01-01T10:05:00.000Z", 3, "snapshot", false, false),
        ],
        "deviations": [],
        "completeness": "complete", "partial_reasons": [], "drift_count": 1,
        "created_at": "2026-01-01T09:50:00.000Z",
        "learning_since": "2026-01-01T09:50:00.000Z",
        "last_new_at": "2026-01-01T10:01:00.000Z"
    }])
}

/// Node B: the same nginx learning, /bin/sh run by the container itself, a
/// kubectl exec session's curl, dropped events; and db's postgres, locked with
/// a hostile deviation.
fn node_b() -> Value {
    json!([
        {
            "key": key("Deployment", "web", "nginx"),
            "state": "learning",
            "executables": [
                exe("/bin/sh", "2026-01-01T11:00:00.000Z", "2026-01-01T11:00:00.000Z", 1, "event", false, false),
                exe("/usr/bin/curl", "2026-01-01T11:10:00.000Z", "2026-01-01T11:10:00.000Z", 1, "event", false, true),
                exe("/usr/sbin/nginx", "2026-01-01T09:00:00.000Z", "2026-01-01T09:30:00.000Z", 2, "event", false, false),
            ],
            "deviations": [],
            "completeness": "partial", "partial_reasons": ["events-dropped"], "drift_count": 0,
            "created_at": "2026-01-01T08:55:00.000Z",
            "learning_since": "2026-01-01T11:10:00.000Z",
            "last_new_at": "2026-01-01T11:10:00.000Z",
            "a_field_from_a_later_version": true
        },
        {
            "key": key("StatefulSet", "db", "postgres"),
            "state": "locked",
            "executables": [
                exe("/usr/bin/postgres", "2026-01-01T08:00:00.000Z", "2026-01-01T08:00:00.000Z", 1, "snapshot", false, false),
            ],
            "deviations": [
                exe(EVIL, "2026-01-01T12:00:00.000Z", "2026-01-01T12:00:00.000Z", 1, "event", false, false),
            ],
            "completeness": "complete", "partial_reasons": [], "drift_count": 0,
            "created_at": "2026-01-01T08:00:00.000Z",
            "learning_since": "2026-01-01T08:00:00.000Z",
            "last_new_at": "2026-01-01T08:00:00.000Z"
        }
    ])
}

/// An input profile as the export writes it back: with `ready` (the inputs
/// here lack it, as files from before it existed do) and `unverified`: these
/// executables were never seen through a hook view (files from before views).
fn with_ready(mut profile: Value, ready: bool, unverified: &[&str]) -> Value {
    profile["ready"] = ready.into();
    profile["unverified"] = json!({"opened": unverified, "loaded": unverified});
    profile
}

/// The merge of A and B, by the rules in the README, written out by hand.
fn merged_a_b() -> Value {
    json!([
        {
            "key": key("Deployment", "web", "nginx"),
            "state": "learning",
            "executables": [
                // A probe on A, an ordinary run on B: not probe-only.
                exe("/bin/sh", "2026-01-01T10:01:00.000Z", "2026-01-01T11:00:00.000Z", 5, "event", false, false),
                exe("/usr/bin/curl", "2026-01-01T11:10:00.000Z", "2026-01-01T11:10:00.000Z", 1, "event", false, true),
                {"path": "/usr/sbin/nginx", "first_seen": "2026-01-01T09:00:00.000Z",
                 "last_seen": "2026-01-01T10:05:00.000Z", "count": 5, "source": "event",
                 "sources": ["snapshot", "event"], "exec_probe": false, "exec_session": false},
            ],
            "deviations": [],
            "completeness": "partial", "partial_reasons": ["events-dropped"], "drift_count": 1,
            "created_at": "2026-01-01T08:55:00.000Z",
            "learning_since": "2026-01-01T11:10:00.000Z",
            "last_new_at": "2026-01-01T11:10:00.000Z",
            "ready": false,
            "unverified": {"opened": ["/bin/sh", "/usr/bin/curl", "/usr/sbin/nginx"],
                           "loaded": ["/bin/sh", "/usr/bin/curl", "/usr/sbin/nginx"]}
        },
        with_ready(node_b()[1].clone(), true, &["/usr/bin/postgres"])
    ])
}

struct Files {
    _tmp: TempDir,
    dir: PathBuf,
}

impl Files {
    fn new() -> Self {
        let tmp = TempDir::new().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        Self { _tmp: tmp, dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }
}

fn export(args: &[&str], files: &[&Path], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("export").args(args);
    for f in files {
        cmd.arg("--input").arg(f);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("runs");
    {
        let mut pipe = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            // A command that refuses its arguments exits before reading
            // stdin: the pipe is then closed, which is not the test's failure.
            if let Err(e) = pipe.write_all(text.as_bytes()) {
                assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "stdin: {e}");
            }
        }
    }
    child.wait_with_output().expect("finishes")
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

fn yaml_docs(text: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(text).expect("utf-8");
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).expect("YAML parses");
            serde_json::to_value(v).expect("YAML maps to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn two_node_files_merge_into_the_union() {
    let f = Files::new();
    let a = f.write("node-a.json", &node_a().to_string());
    let b = f.write("node-b.json", &node_b().to_string());
    let out = export(&["--format", "json"], &[&a, &b], None);
    assert_eq!(stdout_json(&out), merged_a_b());
    // Several files after one --input, as a shell glob gives them.
    let out = export(
        &[
            "--format",
            "json",
            "--input",
            a.to_str().expect("utf-8"),
            b.to_str().expect("utf-8"),
        ],
        &[],
        None,
    );
    assert_eq!(stdout_json(&out), merged_a_b());
    // The order of the files does not matter.
    let out = export(&["--format", "json"], &[&b, &a], None);
    assert_eq!(stdout_json(&out), merged_a_b());
    // `-` reads stdin.
    let out = export(
        &["--format", "json", "--input", "-"],
        &[&b],
        Some(&node_a().to_string()),
    );
    assert_eq!(stdout_json(&out), merged_a_b());
}

#[test]
fn a_merged_tracing_policy_allows_what_any_node_ran() {
    let f = Files::new();
    let a = f.write("node-a.json", &node_a().to_string());
    let b = f.write("node-b.json", &node_b().to_string());
    let out = export(&["--format", "tracingpolicy", "--verbose"], &[&a, &b], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = yaml_docs(&out.stdout);
    let schema: Value = serde_json::from_str(TRACING_POLICY_SCHEMA).expect("schema");
    let validator = jsonschema::validator_for(&schema).expect("compiles");
    let lists: Vec<(String, Value)> = docs
        .iter()
        .map(|d| {
            assert!(validator.is_valid(d), "{d:#}");
            (
                d["metadata"]["name"].as_str().expect("name").to_string(),
                d["spec"]["kprobes"][0]["selectors"][0]["matchArgs"][0]["values"].clone(),
            )
        })
        .collect();
    assert_eq!(
        lists,
        [
            (
                "deployment-web".to_string(),
                json!(["/bin/sh", "/usr/sbin/nginx"])
            ),
            ("statefulset-db".to_string(), json!(["/usr/bin/postgres"])),
        ]
    );
    let web = &docs[0]["metadata"]["annotations"];
    assert_eq!(web["tetragon-learner.io/state"], "learning");
    assert_eq!(web["tetragon-learner.io/completeness"], "partial");
    // Merged, nginx is learning and partial; postgres is locked and complete
    // (ready); curl ran only in a kubectl exec session.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "warning: 1 of 2 learners is not ready (1 partial): their allow-lists may miss executables; review them before enforcing",
            "  shop/Deployment/web/nginx: learning, partial (events-dropped)",
            "warning: 1 executable seen only in kubectl exec sessions is left out of the allow-lists: under enforcement interactive sessions running them will be denied; add --include-exec-sessions to allow them",
            "  shop/Deployment/web/nginx /usr/bin/curl",
            "warning: 3 exported executables are unverified for --hook kprobe: never seen through its opened view (learned from a snapshot, backfill or an exit, or with observation off), so the allow-list holds the paths they were learned under, which this hook may never compare (a symlink, a script); such workloads need one restart under a monitor-mode policy so the observe policy sees their real paths, before enforcing (unverified per shape: kprobe/lsm: 3, tracepoint: 3)",
            "  shop/Deployment/web/nginx /bin/sh",
            "  shop/Deployment/web/nginx /usr/sbin/nginx",
            "  shop/StatefulSet/db/postgres /usr/bin/postgres",
            // These inputs hold no pod labels (written before they were learned).
            "warning: 2 of 2 workloads have no learned pod selector and fall back to the workload label tetragon-learner.io/workload (2 without pod labels learned): until their pod templates carry tetragon-learner.io/workload=<workload name>, their policies enforce nothing",
            "  Deployment shop/web: no pod labels learned",
            "  StatefulSet shop/db: no pod labels learned",
            "info: 2 tracing policies (2 with a pod or namespace filter, Tetragon's limit 128 per node): estimated kernel memory per node 4.0 MiB at 16 CPUs for --hook kprobe (about 2.0 MiB each; budget 256.0 MiB); every node loads every policy",
        ]
    );
}

/// Each node saw /bin/sh through one hook view: merged, it has both, and the
/// `unverified` a file carries is not read but recomputed.
#[test]
fn hook_views_merge_and_unverified_is_recomputed() {
    let profile = |executables: Value| {
        json!([{
            "key": key("Deployment", "web", "nginx"),
            "state": "stable",
            "executables": executables,
            "deviations": [],
            "completeness": "complete", "partial_reasons": [], "drift_count": 0,
            "created_at": "2026-01-01T09:00:00.000Z",
            "learning_since": "2026-01-01T09:00:00.000Z",
            "last_new_at": "2026-01-01T09:00:00.000Z",
            "ready": true,
            "unverified": {"opened": ["/not/read"], "loaded": ["/not/read"]}
        }])
    };
    let mut sh_a = exe(
        "/bin/sh",
        "2026-01-01T10:00:00.000Z",
        "2026-01-01T10:00:00.000Z",
        1,
        "event",
        false,
        false,
    );
    sh_a["opened"] = json!(["/usr/bin/dash"]);
    let mut sh_b = exe(
        "/bin/sh",
        "2026-01-01T10:00:00.000Z",
        "2026-01-01T10:00:00.000Z",
        1,
        "event",
        false,
        false,
    );
    sh_b["loaded"] = json!(["/usr/bin/dash"]);
    let mut env = exe(
        "/usr/bin/env",
        "2026-01-01T10:00:00.000Z",
        "2026-01-01T10:00:00.000Z",
        1,
        "event",
        false,
        false,
    );
    env["loaded"] = json!(["/usr/bin/env"]);
    let f = Files::new();
    let a = f.write("node-a.json", &profile(json!([sh_a])).to_string());
    let b = f.write(
        "node-b.json",
        &profile(json!([sh_b, env.clone()])).to_string(),
    );
    let out = export(&["--format", "json"], &[&a, &b], None);
    let mut sh = exe(
        "/bin/sh",
        "2026-01-01T10:00:00.000Z",
        "2026-01-01T10:00:00.000Z",
        2,
        "event",
        false,
        false,
    );
    sh["opened"] = json!(["/usr/bin/dash"]);
    sh["loaded"] = json!(["/usr/bin/dash"]);
    let mut want = profile(json!([sh, env]));
    want[0]["unverified"] = json!({"opened": ["/usr/bin/env"]});
    assert_eq!(stdout_json(&out), want);
    for (hook, values) in [
        (
            "kprobe",
            json!(["/bin/sh", "/usr/bin/dash", "/usr/bin/env"]),
        ),
        (
            "tracepoint",
            json!(["/bin/sh", "/usr/bin/dash", "/usr/bin/env"]),
        ),
    ] {
        let out = export(
            &["--format", "tracingpolicy", "--hook", hook],
            &[&a, &b],
            None,
        );
        assert!(out.status.success());
        let docs = yaml_docs(&out.stdout);
        let spec = &docs[0]["spec"];
        let hooked = spec.get("kprobes").unwrap_or(&spec["tracepoints"]);
        assert_eq!(
            hooked[0]["selectors"][0]["matchArgs"][0]["values"], values,
            "{hook}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let unverified = stderr.lines().any(|l| l.contains("unverified"));
        assert_eq!(unverified, hook == "kprobe", "{hook}: {stderr}");
    }
}

#[test]
fn a_file_merged_with_itself_keeps_its_sets_and_adds_counts() {
    let f = Files::new();
    let b = f.write("node-b.json", &node_b().to_string());
    let out = export(&["--format", "json"], &[&b, &b], None);
    let got = stdout_json(&out);
    let mut want = json!([
        {
            "key": key("Deployment", "web", "nginx"),
            "state": "learning",
            "executables": [
                exe("/bin/sh", "2026-01-01T11:00:00.000Z", "2026-01-01T11:00:00.000Z", 2, "event", false, false),
                exe("/usr/bin/curl", "2026-01-01T11:10:00.000Z", "2026-01-01T11:10:00.000Z", 2, "event", false, true),
                exe("/usr/sbin/nginx", "2026-01-01T09:00:00.000Z", "2026-01-01T09:30:00.000Z", 4, "event", false, false),
            ],
            "deviations": [],
            "completeness": "partial", "partial_reasons": ["events-dropped"], "drift_count": 0,
            "created_at": "2026-01-01T08:55:00.000Z",
            "learning_since": "2026-01-01T11:10:00.000Z",
            "last_new_at": "2026-01-01T11:10:00.000Z",
            "ready": false,
            "unverified": {"opened": ["/bin/sh", "/usr/bin/curl", "/usr/sbin/nginx"],
                           "loaded": ["/bin/sh", "/usr/bin/curl", "/usr/sbin/nginx"]}
        },
        with_ready(node_b()[1].clone(), true, &["/usr/bin/postgres"])
    ]);
    want[1]["executables"][0]["count"] = 2.into();
    want[1]["deviations"][0]["count"] = 2.into();
    assert_eq!(got, want);
}

/// Every bad input: exit 1, one stderr line naming the file, no output file
/// created, an existing one left as it was.
#[test]
fn bad_input_names_the_file_and_writes_nothing() {
    let f = Files::new();
    let good = f.write("good.json", &node_a().to_string());
    let mut unknown_source = node_a();
    unknown_source[0]["executables"][0]["source"] = "ebpf-magic".into();
    let mut unknown_state = node_a();
    unknown_state[0]["state"] = "enforcing".into();
    let cases = [
        (
            "not-json.json",
            "this is not json".to_string(),
            "not a profiles array",
        ),
        (
            "object.json",
            json!({"profiles": []}).to_string(),
            "not a profiles array",
        ),
        (
            "shape.json",
            json!([{"key": "x"}]).to_string(),
            "not a profiles array",
        ),
        (
            "newer.json",
            unknown_source.to_string(),
            "unknown variant `ebpf-magic`",
        ),
        (
            "state.json",
            unknown_state.to_string(),
            "unknown variant `enforcing`",
        ),
    ];
    let existing = f.write("existing.yaml", "kept as it was\n");
    for (name, text, want) in cases {
        let bad = f.write(name, &text);
        for output in [f.dir.join(format!("{name}.out")), existing.clone()] {
            let out = export(
                &[
                    "--format",
                    "tracingpolicy",
                    "--output",
                    output.to_str().expect("utf-8"),
                ],
                &[&good, &bad],
                None,
            );
            assert_eq!(out.status.code(), Some(1), "{name}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
            assert_eq!(errors.len(), 1, "{stderr}");
            assert!(errors[0].contains(bad.to_str().expect("utf-8")), "{stderr}");
            assert!(errors[0].contains(want), "{want:?} not in {stderr}");
            assert!(out.stdout.is_empty());
        }
        assert!(!f.dir.join(format!("{name}.out")).exists(), "{name}");
        assert_eq!(
            std::fs::read_to_string(&existing).expect("still there"),
            "kept as it was\n"
        );
    }
    // A missing file and bad stdin are named too.
    let missing = f.dir.join("missing.json");
    let out = export(&["--format", "json"], &[&missing], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
    let out = export(&["--format", "json", "--input", "-"], &[], Some("[{"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: stdin is not a profiles array"));
}

#[test]
fn input_is_a_source_of_its_own() {
    let f = Files::new();
    let a = f.write("node-a.json", &node_a().to_string());
    let db = f.dir.join("db");
    let out = export(
        &["--format", "json", "--db", db.to_str().expect("utf-8")],
        &[&a],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "--input with --db is a usage error"
    );
    let out = export(
        &["--format", "json", "--input", "-", "--input", "-"],
        &[],
        Some("[]"),
    );
    assert_eq!(out.status.code(), Some(2), "stdin twice");
    assert!(String::from_utf8_lossy(&out.stderr).contains("only once"));
    let out = export(&["--format", "json"], &[], None);
    assert_eq!(out.status.code(), Some(2), "no source at all");
}

#[test]
fn workload_filter_keeps_the_named_workloads_in_every_format() {
    let f = Files::new();
    let b = f.write("node-b.json", &node_b().to_string());
    let only_db = ["--namespace", "shop", "--workload", "statefulset/db"];
    let out = export(&[&["--format", "json"][..], &only_db].concat(), &[&b], None);
    assert_eq!(
        stdout_json(&out),
        json!([with_ready(
            node_b()[1].clone(),
            true,
            &["/usr/bin/postgres"]
        )])
    );
    for format in ["proposal", "tracingpolicy"] {
        let out = export(&[&["--format", format][..], &only_db].concat(), &[&b], None);
        assert!(out.status.success());
        let docs = yaml_docs(&out.stdout);
        let names: Vec<&str> = docs
            .iter()
            .map(|d| d["metadata"]["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["statefulset-db"], "{format}");
    }
    // Two workloads; one that matches nothing is a warning.
    let out = export(
        &[
            "--format",
            "json",
            "--namespace",
            "shop",
            "--workload",
            "Deployment/web",
            "--workload",
            "StatefulSet/db",
            "--workload",
            "Job/nope",
        ],
        &[&b],
        None,
    );
    assert_eq!(stdout_json(&out).as_array().expect("array").len(), 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no learner of Job/nope in namespace shop")
    );
    // Usage errors: malformed, or without --namespace.
    for bad in [
        &["--namespace", "shop", "--workload", "web"][..],
        &["--namespace", "shop", "--workload", "Deployment/"][..],
        &["--workload", "Deployment/web"][..],
    ] {
        let out = export(&[&["--format", "json"][..], bad].concat(), &[&b], None);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn the_old_include_exec_probes_flag_is_accepted_and_harmless() {
    let f = Files::new();
    let a = f.write("node-a.json", &node_a().to_string());
    let plain = export(&["--format", "tracingpolicy"], &[&a], None);
    let old = export(
        &["--format", "tracingpolicy", "--include-exec-probes"],
        &[&a],
        None,
    );
    assert!(old.status.success());
    assert_eq!(old.stdout, plain.stdout, "probes are allowed either way");
    assert!(
        String::from_utf8_lossy(&old.stderr).contains("--include-exec-probes is the default now")
    );
    let both = export(
        &[
            "--format",
            "tracingpolicy",
            "--include-exec-probes",
            "--exclude-exec-probes",
        ],
        &[&a],
        None,
    );
    assert_eq!(both.status.code(), Some(2));
    let excluded = export(
        &["--format", "tracingpolicy", "--exclude-exec-probes"],
        &[&a],
        None,
    );
    let docs = yaml_docs(&excluded.stdout);
    assert_eq!(
        docs[0]["spec"]["kprobes"][0]["selectors"][0]["matchArgs"][0]["values"],
        json!(["/usr/sbin/nginx"])
    );
}

#[test]
fn mode_and_hook_flags_shape_the_policy() {
    let f = Files::new();
    let a = f.write("node-a.json", &node_a().to_string());
    let out = export(
        &[
            "--format",
            "tracingpolicy",
            "--mode",
            "enforce",
            "--hook",
            "lsm",
        ],
        &[&a],
        None,
    );
    assert!(out.status.success());
    let docs = yaml_docs(&out.stdout);
    let spec = &docs[0]["spec"];
    assert_eq!(
        spec["options"],
        json!([{"name": "policy-mode", "value": "enforce"}])
    );
    assert_eq!(spec["lsmhooks"][0]["hook"], "bprm_creds_for_exec");
    assert_eq!(
        spec["lsmhooks"][0]["selectors"][0]["matchArgs"][0]["values"],
        json!(["/bin/sh", "/usr/sbin/nginx"])
    );
    let out = export(
        &["--format", "tracingpolicy", "--mode", "audit"],
        &[&a],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
}
