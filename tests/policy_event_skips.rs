//! Malformed and foreign policy events reach the ingester as counted skips,
//! never a crash, and change no profile: a policy that is not the agent's, an
//! event without its process or its `linux_binprm` path, a path that is not
//! UTF-8, an action the agent does not act on. Fed as the connection would
//! feed them (lean stream types, one batch), to a real agent.
mod common;

use std::time::Duration;

use common::{config, start_agent, wait_until};
use prost::bytes::Bytes;
use tetragon_learner::fake::scenario::Scenario;
use tetragon_learner::fake::{FakeSource, FakeTetragon};
use tetragon_learner::tetragon::address::TetragonAddress;
use tetragon_learner::tetragon::connection::messages::EventBatch;
use tetragon_learner::tetragon::observe::enforcing::OwnPolicy;
use tetragon_learner::tetragon::proto::lean;

const SCENARIO: &str = r#"
node_name: n
containers:
  - namespace: shop
    pod: web-0
    workload: web
    workload_kind: Deployment
    container: app
    running: [{binary: /usr/bin/sleep}]
"#;

fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

fn process() -> lean::Process {
    lean::Process {
        exec_id: b(b"e1"),
        pid: Some(lean::UInt32Value { value: 42 }),
        binary: b(b"/usr/bin/id"),
        pod: Some(lean::Pod {
            namespace: b(b"shop"),
            name: b(b"web-0"),
            container: Some(lean::Container {
                id: b(b"containerd://c1"),
                name: b(b"app"),
                ..Default::default()
            }),
            workload: b(b"web"),
            workload_kind: b(b"Deployment"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tracepoint(
    policy: &str,
    path: Option<&[u8]>,
    process: Option<lean::Process>,
    action: i32,
) -> lean::GetEventsResponse {
    lean::GetEventsResponse {
        event: Some(lean::get_events_response::Event::ProcessTracepoint(
            lean::ProcessTracepoint {
                process,
                subsys: b(b"sched"),
                event: b(b"sched_process_exec"),
                args: path
                    .map(|p| lean::KprobeArgument {
                        linux_binprm_arg: Some(lean::KprobeLinuxBinprm { path: b(p) }),
                    })
                    .into_iter()
                    .collect(),
                policy_name: b(policy.as_bytes()),
                action,
            },
        )),
        node_name: b(b"n"),
        time: None,
    }
}

fn skipped(render: &str, reason: &str) -> u64 {
    let needle = format!("tetragon_learner_skipped_total{{reason=\"{reason}\"}} ");
    render
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[actix_rt::test]
async fn malformed_and_foreign_policy_events_are_counted_skips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = Scenario::from_yaml(SCENARIO, "test").expect("scenario");
    let addr = TetragonAddress::Unix(dir.path().join("tetragon.sock"));
    let fake = FakeTetragon::start(&addr, FakeSource::Scenario(scenario), None)
        .await
        .expect("fake starts");
    let agent = start_agent(config(&fake, &dir.path().join("db"))).await;
    wait_until("the workload's learner", Duration::from_secs(20), || {
        agent
            .durable_profiles()
            .iter()
            .any(|p| p.key.workload == "web")
    })
    .await;
    // One of the agent's policies, so its events are judged, not ignored.
    agent.own_policies.write().insert(
        "deployment-web".into(),
        OwnPolicy {
            name: "deployment-web".into(),
            namespace: "shop".into(),
            state: "enabled".into(),
            mode: "enforce".into(),
            error: String::new(),
            kernel_memory_bytes: 0,
            enforced: 0,
            monitored: 0,
        },
    );
    let before = agent.durable_profiles();
    let batch = vec![
        tracepoint(
            "someone-elses-policy",
            Some(b"/usr/bin/id"),
            Some(process()),
            3,
        ),
        tracepoint("deployment-web", Some(b"/usr/bin/id"), None, 3),
        tracepoint("deployment-web", None, Some(process()), 3),
        tracepoint(
            "deployment-web",
            Some(b"/usr/bin/\xff\xfe"),
            Some(process()),
            3,
        ),
        tracepoint("deployment-web", Some(b"/usr/bin/id"), Some(process()), 1),
        tracepoint(
            "tetragon-learner-observe-exec-loaded",
            None,
            Some(process()),
            1,
        ),
        lean::GetEventsResponse::default(),
    ];
    agent
        .ingester
        .send(EventBatch(batch))
        .await
        .expect("handled");
    let m = agent.metrics.render();
    assert_eq!(skipped(&m, "foreign_policy"), 1, "{m}");
    assert_eq!(skipped(&m, "policy_event_incomplete"), 3, "{m}");
    assert_eq!(skipped(&m, "not_utf8"), 1, "{m}");
    assert_eq!(skipped(&m, "own_policy_event"), 1, "{m}");
    // Nothing learned, nothing recorded.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = agent.durable_profiles();
    assert_eq!(
        before
            .iter()
            .map(|p| (&p.key, p.executables.len(), p.violations.by_id.len()))
            .collect::<Vec<_>>(),
        after
            .iter()
            .map(|p| (&p.key, p.executables.len(), p.violations.by_id.len()))
            .collect::<Vec<_>>()
    );
    agent.shutdown().await.expect("shutdown");
}
