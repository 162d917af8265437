//! The operator loop against the fake Tetragon over a real socket: an
//! exported policy in monitor mode turns an unlearned exec into a
//! `would-deny` violation of the right learner; switched to enforce, the same
//! kind of exec is killed (tracepoint) or denied (kprobe) and recorded
//! `denied`; `admin allow` then a re-export lets it run; `admin ack` keeps a
//! violation as acknowledged; violations survive a restart.
mod common;

use std::time::Duration;

use common::{config, start_agent, wait_until};
use tetragon_learner::agent::Agent;
use tetragon_learner::export::tracing_policy::policies;
use tetragon_learner::export::{ExportOptions, PolicyHook, PolicyMode};
use tetragon_learner::fake::hook_events::Outcome;
use tetragon_learner::fake::scenario::{ExecSpec, Scenario};
use tetragon_learner::fake::{FakeSource, FakeTetragon};
use tetragon_learner::learner::actor::OperateOn;
use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::learner::machine::LearnerInput;
use tetragon_learner::learner::profile::Profile;
use tetragon_learner::learner::violation::{Violation, ViolationMode};
use tetragon_learner::tetragon::address::TetragonAddress;
use tetragon_learner::tetragon::client::{client, connect};
use tetragon_learner::tetragon::proto::{AddTracingPolicyRequest, DeleteTracingPolicyRequest};

const SCENARIO: &str = r#"
node_name: fake-node
containers:
  - namespace: shop
    pod: web-0
    workload: web
    workload_kind: Deployment
    labels: {app: web, tetragon-learner.io/workload: web}
    container: app
    running: [{binary: /usr/bin/sleep, arguments: 1d}]
  - namespace: shop
    pod: db-0
    workload: db
    workload_kind: StatefulSet
    labels: {app: db, tetragon-learner.io/workload: db}
    container: postgres
    running: [{binary: /usr/bin/postgres}]
"#;

fn web() -> LearnerKey {
    LearnerKey::new("shop", "Deployment", "web", "app")
}

fn exec(binary: &str) -> ExecSpec {
    ExecSpec {
        binary: binary.into(),
        ..Default::default()
    }
}

fn durable(agent: &Agent, key: &LearnerKey) -> Option<Profile> {
    agent.durable_profiles().into_iter().find(|p| &p.key == key)
}

fn violation<'a>(
    p: &'a Profile,
    path: &str,
    mode: ViolationMode,
) -> Option<(&'a String, &'a Violation)> {
    p.violations
        .by_id
        .iter()
        .find(|(_, v)| v.path == path && v.mode == mode)
}

async fn load(
    fake: &FakeTetragon,
    profile: &Profile,
    hook: PolicyHook,
    mode: PolicyMode,
) -> String {
    let opts = ExportOptions {
        mode,
        hook,
        ..Default::default()
    };
    let exported = policies(std::slice::from_ref(profile), &opts).expect("export");
    let policy = &exported.policies[0];
    let channel = connect(&fake.address, Duration::from_secs(5))
        .await
        .expect("connect");
    let mut api = client(channel, 1 << 20);
    let name = policy.metadata.name.clone();
    let _ = api
        .delete_tracing_policy(DeleteTracingPolicyRequest {
            name: name.clone(),
            namespace: "shop".into(),
            domain: String::new(),
        })
        .await;
    api.add_tracing_policy(AddTracingPolicyRequest {
        yaml: serde_yaml::to_string(policy).expect("yaml"),
        domain: String::new(),
    })
    .await
    .expect("the exported policy loads");
    name
}

async fn followed(agent: &Agent, name: &str) {
    wait_until(
        "the agent follows its loaded policy",
        Duration::from_secs(20),
        || {
            agent
                .own_policies
                .read()
                .get(name)
                .is_some_and(|p| p.state == "enabled")
        },
    )
    .await;
    // The stream re-subscribes once the policy is listed.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
}

#[actix_rt::test]
async fn monitor_then_enforce_then_allow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = Scenario::from_yaml(SCENARIO, "test").expect("scenario");
    let addr = TetragonAddress::Unix(dir.path().join("tetragon.sock"));
    let fake = FakeTetragon::start(&addr, FakeSource::Scenario(scenario), None)
        .await
        .expect("fake starts");
    let db = dir.path().join("db");
    let agent = start_agent(config(&fake, &db)).await;
    wait_until("observe policies", Duration::from_secs(20), || {
        agent.hook_views.read().values().all(|v| v.is_active())
            && agent.hook_views.read().len() == 2
    })
    .await;
    assert_eq!(
        fake.exec_spec_in(0, &exec("/usr/bin/true"), false),
        Outcome::Ran
    );
    wait_until("learned", Duration::from_secs(20), || {
        durable(&agent, &web()).is_some_and(|p| p.executables.contains_key("/usr/bin/true"))
    })
    .await;
    let learned = durable(&agent, &web()).expect("profile");

    // Monitor: the unlearned exec runs, is learned as before, and is a
    // would-deny violation of web (not of db).
    let name = load(&fake, &learned, PolicyHook::Tracepoint, PolicyMode::Monitor).await;
    assert_eq!(name, "deployment-web");
    followed(&agent, &name).await;
    assert_eq!(
        fake.exec_spec_in(0, &exec("/usr/bin/id"), false),
        Outcome::Ran
    );
    wait_until("a would-deny violation", Duration::from_secs(20), || {
        durable(&agent, &web()).is_some_and(|p| {
            violation(&p, "/usr/bin/id", ViolationMode::WouldDeny).is_some()
                && p.executables.contains_key("/usr/bin/id")
        })
    })
    .await;
    let db_key = LearnerKey::new("shop", "StatefulSet", "db", "postgres");
    assert!(durable(&agent, &db_key).is_none_or(|p| p.violations.is_empty()));

    // Enforce (tp set-mode): killed, recorded denied, not learned.
    fake.set_policy_mode(&name, "shop", true).expect("set-mode");
    assert_eq!(
        fake.exec_spec_in(0, &exec("/usr/bin/whoami"), false),
        Outcome::Killed
    );
    wait_until("a denied violation", Duration::from_secs(20), || {
        durable(&agent, &web())
            .is_some_and(|p| violation(&p, "/usr/bin/whoami", ViolationMode::Denied).is_some())
    })
    .await;
    let p = durable(&agent, &web()).expect("profile");
    assert!(
        !p.executables.contains_key("/usr/bin/whoami"),
        "a killed exec is not learned"
    );
    let v = violation(&p, "/usr/bin/whoami", ViolationMode::Denied)
        .expect("denied")
        .1;
    assert_eq!((v.policy.as_str(), v.count), ("deployment-web", 1));

    // Acknowledge the would-deny one; allow the denied path.
    let (id, _) = violation(&p, "/usr/bin/id", ViolationMode::WouldDeny).expect("would-deny");
    let id = id.clone();
    let ack = LearnerInput::Acknowledge { id: id.clone() };
    agent
        .ingester
        .send(OperateOn {
            key: web(),
            input: ack,
        })
        .await
        .expect("mailbox")
        .expect("ack durable");
    let allow = LearnerInput::Allow {
        path: "/usr/bin/whoami".into(),
        now: tetragon_learner::time::now_ms(),
    };
    let after = agent
        .ingester
        .send(OperateOn {
            key: web(),
            input: allow,
        })
        .await
        .expect("mailbox")
        .expect("allow durable");
    assert!(after.violations.by_id[&id].acknowledged);
    assert_eq!(
        after.violations.active(),
        0,
        "the denied one was cleared by allow"
    );
    assert!(after.executables["/usr/bin/whoami"]
        .sources
        .contains(&tetragon_learner::learner::observation::FactSource::Operator));

    // Re-export: allowed now.
    load(&fake, &after, PolicyHook::Tracepoint, PolicyMode::Enforce).await;
    followed(&agent, &name).await;
    assert_eq!(
        fake.exec_spec_in(0, &exec("/usr/bin/whoami"), false),
        Outcome::Ran
    );

    // The kprobe shape: an enforced Override denies (no exec at all).
    let now = durable(&agent, &web()).expect("profile");
    load(&fake, &now, PolicyHook::Kprobe, PolicyMode::Enforce).await;
    followed(&agent, &name).await;
    assert_eq!(
        fake.exec_spec_in(0, &exec("/usr/bin/uname"), false),
        Outcome::Denied
    );
    // A later event lets the window pass.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        fake.exec_spec_in(0, &exec("/usr/bin/true"), false),
        Outcome::Ran
    );
    wait_until("a denied kprobe violation", Duration::from_secs(20), || {
        durable(&agent, &web())
            .is_some_and(|p| violation(&p, "/usr/bin/uname", ViolationMode::Denied).is_some())
    })
    .await;

    // Durable: a restart keeps them.
    agent.shutdown().await.expect("shutdown");
    drop(agent);
    let again = start_agent(config(&fake, &db)).await;
    let p = durable(&again, &web()).expect("profile after restart");
    assert!(p.violations.by_id[&id].acknowledged);
    assert!(violation(&p, "/usr/bin/uname", ViolationMode::Denied).is_some());
    again.shutdown().await.expect("shutdown");
}
