//! End to end against the fake Tetragon over a real socket: the agent loads
//! its observe policies, learns per executable the path each enforcement hook
//! compares (symlinked dirs, a busybox-style applet farm, a `#!` script by
//! relative path, a process that ran before the agent), the exported
//! tracepoint policy in enforce mode lets every learned exec run, and an exec
//! it kills is not learned. Expected paths are written out by hand from the
//! Debian 12 layout of the real captures.
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{config, start_agent, wait_until};
use tetragon_learner::export::tracing_policy::policies;
use tetragon_learner::export::{ExportOptions, PolicyHook, PolicyMode};
use tetragon_learner::fake::hook_events::Outcome;
use tetragon_learner::fake::scenario::{ExecSpec, Scenario};
use tetragon_learner::fake::{FakeSource, FakeTetragon};
use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::learner::profile::Profile;
use tetragon_learner::tetragon::address::TetragonAddress;
use tetragon_learner::tetragon::client::{client, connect};
use tetragon_learner::tetragon::proto::AddTracingPolicyRequest;

const SCENARIO: &str = r#"
node_name: fake-node
containers:
  - namespace: shop
    pod: web-0
    workload: web
    workload_kind: Deployment
    labels: {app: web, tetragon-learner.io/workload: web}
    container: app
    running: [{binary: /opt/app/start.sh, arguments: serve}]
    files:
      /bin: {link: usr/bin}
      /usr/bin/sh: {link: dash}
      /opt/app/start.sh: {script: /bin/sh}
      /opt/app/run.sh: {script: /bin/sh}
      /opt/tools/ls: {link: busybox}
      /opt/tools/cat: {link: busybox}
"#;

fn key() -> LearnerKey {
    LearnerKey::new("shop", "Deployment", "web", "app")
}

fn exec(binary: &str, cwd: &str) -> ExecSpec {
    ExecSpec {
        binary: binary.into(),
        cwd: Some(cwd.into()),
        ..Default::default()
    }
}

fn views(p: &Profile, path: &str) -> (Vec<String>, Vec<String>) {
    let rec = &p.executables[path];
    (
        rec.views.opened.iter().cloned().collect(),
        rec.views.loaded.iter().cloned().collect(),
    )
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[actix_rt::test]
async fn hook_views_are_learned_exported_and_enforced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = Scenario::from_yaml(SCENARIO, "test").expect("scenario");
    let addr = TetragonAddress::Unix(dir.path().join("tetragon.sock"));
    let fake = FakeTetragon::start(&addr, FakeSource::Scenario(scenario), None)
        .await
        .expect("fake starts");
    let agent = start_agent(config(&fake, &dir.path().join("db"))).await;
    wait_until(
        "both observe policies active",
        Duration::from_secs(20),
        || {
            let v = agent.hook_views.read();
            v.len() == 2 && v.values().all(|s| s.is_active())
        },
    )
    .await;

    // The workload: /bin/sh through two symlinks, a script by relative path,
    // two applets of one multi-call binary, and a plain binary.
    let workload = [
        exec("/bin/sh", "/"),
        exec("./run.sh", "/opt/app"),
        exec("/opt/tools/ls", "/"),
        exec("/opt/tools/cat", "/"),
        exec("/usr/bin/true", "/"),
    ];
    for e in &workload {
        assert_eq!(fake.exec_spec_in(0, e, false), Outcome::Ran);
    }
    let want_paths = [
        "/bin/sh",
        "/opt/app/run.sh",
        "/opt/tools/cat",
        "/opt/tools/ls",
        "/usr/bin/dash",
        "/usr/bin/true",
    ];
    wait_until(
        "every exec learned with its views",
        Duration::from_secs(20),
        || {
            agent.durable_profiles().iter().any(|p| {
                p.key == key()
                    && want_paths.iter().all(|w| p.executables.contains_key(*w))
                    && p.executables.values().all(|r| !r.views.loaded.is_empty())
                    && p.executables["/usr/bin/true"].views.opened.len() == 1
            })
        },
    )
    .await;
    let p = agent
        .durable_profiles()
        .into_iter()
        .find(|p| p.key == key())
        .expect("profile");
    let paths: BTreeSet<&str> = p.executables.keys().map(String::as_str).collect();
    assert_eq!(paths, want_paths.into_iter().collect());
    assert_eq!(
        views(&p, "/bin/sh"),
        (s(&["/usr/bin/dash"]), s(&["/usr/bin/dash"]))
    );
    assert_eq!(
        views(&p, "/opt/app/run.sh"),
        (s(&["/opt/app/run.sh"]), s(&["/usr/bin/dash"]))
    );
    assert_eq!(
        views(&p, "/opt/tools/ls"),
        (s(&["/opt/tools/busybox"]), s(&["/opt/tools/busybox"]))
    );
    // The script that ran before the agent: named by Tetragon's /proc scan
    // (its interpreter), its own loaded view, never seen by the kprobe.
    assert_eq!(views(&p, "/usr/bin/dash"), (s(&[]), s(&["/usr/bin/dash"])));

    // The pod's labels, learned as they are (no relabelling needed).
    let labels = serde_json::to_value(&p.pod_labels).expect("json");
    assert_eq!(
        labels,
        serde_json::json!([{
            "labels": {"app": "web", "tetragon-learner.io/workload": "web"},
            "pods": ["web-0"],
        }])
    );

    // Export the tracepoint shape, enforce, load it into the fake.
    let opts = ExportOptions {
        mode: PolicyMode::Enforce,
        hook: PolicyHook::Tracepoint,
        ..Default::default()
    };
    let exported = policies(std::slice::from_ref(&p), &opts).expect("export");
    assert_eq!(exported.policies.len(), 1);
    let policy = &exported.policies[0];
    let yaml = serde_yaml::to_string(policy).expect("yaml");
    let values = &policy.spec.tracepoints[0].selectors[0].match_args[0].values;
    assert_eq!(
        values.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        [
            "/bin/sh",
            "/opt/app/run.sh",
            "/opt/tools/busybox",
            "/opt/tools/cat",
            "/opt/tools/ls",
            "/usr/bin/dash",
            "/usr/bin/true",
        ]
        .into_iter()
        .collect()
    );
    // The kprobe and LSM shapes compare the opened file: the script itself,
    // the applets' binary; the procFS entry was never seen by that hook, so it
    // keeps its own path (unverified).
    let opened_want: BTreeSet<&str> = [
        "/bin/sh",
        "/opt/app/run.sh",
        "/opt/tools/busybox",
        "/opt/tools/cat",
        "/opt/tools/ls",
        "/usr/bin/dash",
        "/usr/bin/true",
    ]
    .into_iter()
    .collect();
    for hook in [PolicyHook::Kprobe, PolicyHook::Lsm] {
        let o = ExportOptions {
            mode: PolicyMode::Enforce,
            hook,
            ..Default::default()
        };
        let exported = policies(std::slice::from_ref(&p), &o).expect("export");
        let spec = &exported.policies[0].spec;
        let selectors = match hook {
            PolicyHook::Kprobe => &spec.kprobes[0].selectors,
            _ => &spec.lsmhooks[0].selectors,
        };
        let got: BTreeSet<&str> = selectors[0].match_args[0]
            .values
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(got, opened_want, "{hook:?}");
    }
    let channel = connect(&fake.address, Duration::from_secs(5))
        .await
        .expect("connect");
    client(channel, 1 << 20)
        .add_tracing_policy(AddTracingPolicyRequest {
            yaml,
            domain: String::new(),
        })
        .await
        .expect("the exported policy loads");

    // The same workload runs under it; a binary never run is killed.
    for e in &workload {
        assert_eq!(fake.exec_spec_in(0, e, false), Outcome::Ran, "{}", e.binary);
    }
    // The agent follows its policy's events once it sees it listed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        fake.exec_spec_in(0, &exec("/usr/bin/id", "/"), false),
        Outcome::Killed
    );
    // A later exec of the same learner: once it is counted, the kill (handled
    // before it) has been too.
    let count_true = |p: &Profile| p.executables.get("/usr/bin/true").map(|r| r.count);
    let before = count_true(&p);
    assert_eq!(
        fake.exec_spec_in(0, &exec("/usr/bin/true", "/"), false),
        Outcome::Ran
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let q = loop {
        let now = agent.current_profiles().await;
        let q = now.into_iter().find(|q| q.key == key()).expect("profile");
        // Two more runs of /usr/bin/true: under the policy, and after the kill.
        if count_true(&q) >= before.map(|c| c + 2) {
            break q;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the later exec was not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        !q.executables.contains_key("/usr/bin/id"),
        "the killed exec was learned: {:?}",
        q.executables.keys().collect::<Vec<_>>()
    );
    agent.shutdown().await.expect("shutdown");
}
