//! Probe-only and session-only executables, learned end to end (fake Tetragon
//! over a real socket, agent, sled) and exported: probes are allowed by
//! default, `kubectl exec` sessions are not. Expected lists are written out.
mod common;

use std::time::Duration;

use common::{config, fake, start_agent, wait_until};
use serde_json::Value;
use tetragon_learner::cli::demo::learned_all;
use tetragon_learner::cli::export_cmd::{render, ExportFormat};
use tetragon_learner::export::ExportOptions;
use tetragon_learner::fake::scenario::Scenario;
use tetragon_learner::learner::key::LearnerKey;

const SCENARIO: &str = r#"
node_name: node-a
containers:
  - namespace: shop
    pod: orders-db-0
    workload: orders-db
    workload_kind: StatefulSet
    container: postgres
    expect_key: shop/StatefulSet/orders-db/postgres
    running:
      - {binary: /usr/lib/postgresql/16/bin/postgres}
      - {binary: /usr/local/bin/slow-check, probe: true}
    execs:
      - {binary: /usr/lib/postgresql/16/bin/pg_isready, probe: true}
      - {binary: /bin/bash, arguments: "-i", session: true}
      - {binary: /usr/bin/psql}
activity: {rate_per_sec: 500, total_execs: 3}
"#;

fn allow_list(text: &str) -> Vec<String> {
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).expect("YAML");
            serde_json::to_value(v).expect("JSON")
        })
        .filter(|v| !v.is_null())
        .collect();
    assert_eq!(docs.len(), 1);
    docs[0]["spec"]["kprobes"][0]["selectors"][0]["matchArgs"][0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect()
}

#[actix_rt::test]
async fn probes_are_allowed_and_sessions_are_not_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::from_yaml(SCENARIO, "test").unwrap();
    let mut fake = fake(dir.path(), scenario.clone(), None).await;
    let agent = start_agent(config(&fake, &dir.path().join("db"))).await;
    fake.activity_done().await;
    let done = fake.execs_done();
    wait_until("scenario learned", Duration::from_secs(20), || {
        learned_all(
            &agent.durable_profiles(),
            &scenario.expected_profiles(done).unwrap(),
        )
    })
    .await;
    let profiles = agent.durable_profiles();
    agent.shutdown().await.unwrap();
    fake.stop().await;

    let p = profiles
        .iter()
        .find(|p| p.key == LearnerKey::new("shop", "StatefulSet", "orders-db", "postgres"))
        .expect("learned");
    let marks = |path: &str| {
        let r = &p.executables[path];
        (r.exec_probe, r.exec_session)
    };
    assert_eq!(
        marks("/usr/lib/postgresql/16/bin/pg_isready"),
        (true, false)
    );
    assert_eq!(marks("/usr/local/bin/slow-check"), (true, false));
    assert_eq!(marks("/bin/bash"), (false, true));
    assert_eq!(marks("/usr/bin/psql"), (false, false));
    assert_eq!(marks("/usr/lib/postgresql/16/bin/postgres"), (false, false));

    let out = render(
        &profiles,
        ExportFormat::TracingPolicy,
        &ExportOptions::default(),
    )
    .unwrap();
    assert_eq!(
        allow_list(&out.text),
        [
            "/usr/bin/psql",
            "/usr/lib/postgresql/16/bin/pg_isready",
            "/usr/lib/postgresql/16/bin/postgres",
            "/usr/local/bin/slow-check",
        ]
    );
    let lines = out.stderr_lines(true);
    let at = lines
        .iter()
        .position(|l| l.contains("seen only in kubectl exec sessions is left out of the allow-lists: under enforcement interactive sessions running them will be denied"))
        .expect("sessions warning");
    assert_eq!(
        lines[at + 1],
        "  shop/StatefulSet/orders-db/postgres /bin/bash"
    );
    let sessions = ExportOptions {
        include_exec_sessions: true,
        ..ExportOptions::default()
    };
    let out = render(&profiles, ExportFormat::TracingPolicy, &sessions).unwrap();
    assert_eq!(
        allow_list(&out.text),
        [
            "/bin/bash",
            "/usr/bin/psql",
            "/usr/lib/postgresql/16/bin/pg_isready",
            "/usr/lib/postgresql/16/bin/postgres",
            "/usr/local/bin/slow-check",
        ]
    );
    let no_probes = ExportOptions {
        exclude_exec_probes: true,
        ..ExportOptions::default()
    };
    let out = render(&profiles, ExportFormat::TracingPolicy, &no_probes).unwrap();
    assert_eq!(
        allow_list(&out.text),
        ["/usr/bin/psql", "/usr/lib/postgresql/16/bin/postgres"]
    );
}
