//! `/readyz` and `/metrics` over real HTTP while Tetragon goes away and comes
//! back, and while checkpoints fail and recover: what they say is current.
mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::{config, fake, start_agent};
use tetragon_learner::agent::Agent;
use tetragon_learner::api::health;
use tetragon_learner::fake::scenario::Scenario;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SCENARIO: &str = r#"
node_name: n
containers:
  - {namespace: ns, pod: busy, container: c, expect_key: ns/Pod/busy/c,
     running: [{binary: /app}], execs: [{binary: /bin/a}, {binary: /bin/b}]}
activity: {rate_per_sec: 50, total_execs: 0}
"#;

/// Serves the agent's health endpoints on a free port.
async fn serve(agent: &Agent) -> std::net::SocketAddr {
    let listener = health::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = agent.health_state();
    tokio::spawn(async move { health::serve(listener, state).await });
    addr
}

/// One plain HTTP/1.1 GET: status code and body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    (code, body.to_string())
}

async fn readyz(addr: std::net::SocketAddr) -> (u16, serde_json::Value) {
    let (code, body) = get(addr, "/readyz").await;
    (code, serde_json::from_str(&body).expect("/readyz is JSON"))
}

/// A sample's value in `/metrics` (0 when absent).
async fn metric(addr: std::net::SocketAddr, sample: &str) -> f64 {
    let (code, text) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    text.lines()
        .find(|l| l.strip_prefix(sample).is_some_and(|r| r.starts_with(' ')))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `/readyz` until `ok(code, body)`; the last answer on timeout.
async fn wait_readyz(
    addr: std::net::SocketAddr,
    what: &str,
    ok: impl Fn(u16, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = None;
    for _ in 0..400 {
        let (code, body) = readyz(addr).await;
        if ok(code, &body) {
            return body;
        }
        last = Some((code, body));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}; last /readyz: {last:?}");
}

const CONNECTED: &str = "tetragon_learner_tetragon_connected";
const FAILED: &str = "tetragon_learner_tetragon_connect_attempts_total{outcome=\"failed\"}";
const SUCCEEDED: &str = "tetragon_learner_tetragon_connect_attempts_total{outcome=\"connected\"}";

#[actix_rt::test]
async fn readyz_and_the_connected_gauge_follow_tetragon_going_away_and_coming_back() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::from_yaml(SCENARIO, "test").unwrap();
    let first = fake(dir.path(), scenario.clone(), None).await;
    let agent = start_agent(config(&first, &dir.path().join("db"))).await;
    let addr = serve(&agent).await;

    let up = wait_readyz(addr, "ready", |code, _| code == 200).await;
    assert_eq!(up["connection"]["status"], "connected", "{up}");
    assert_eq!(up["connection"]["last_error"], serde_json::Value::Null);
    assert_eq!(metric(addr, CONNECTED).await, 1.0);
    assert_eq!(metric(addr, SUCCEEDED).await, 1.0);
    assert_eq!(metric(addr, FAILED).await, 0.0);

    first.stop().await;
    let down = wait_readyz(addr, "disconnected with a reason", |code, b| {
        code == 503 && b["connection"]["status"] == "disconnected"
    })
    .await;
    let reason = down["connection"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(!reason.is_empty(), "no reason given: {down}");
    assert_eq!(down["connection"]["ready"], false);
    assert_eq!(metric(addr, CONNECTED).await, 0.0);
    // Attempts while Tetragon is away are counted as failures.
    for _ in 0..100 {
        if metric(addr, FAILED).await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metric(addr, FAILED).await >= 1.0);

    let second = fake(dir.path(), scenario, None).await;
    let back = wait_readyz(addr, "ready again", |code, _| code == 200).await;
    assert_eq!(back["connection"]["status"], "connected", "{back}");
    assert_eq!(
        back["connection"]["last_error"],
        serde_json::Value::Null,
        "a stale error after recovery: {back}"
    );
    assert_eq!(metric(addr, CONNECTED).await, 1.0);
    assert!(metric(addr, SUCCEEDED).await >= 2.0);
    assert!(metric(addr, "tetragon_learner_reconnects_total").await >= 1.0);

    agent.shutdown().await.unwrap();
    second.stop().await;
}

#[actix_rt::test]
async fn readyz_is_503_with_the_storage_state_while_checkpoints_fail_and_200_after() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::from_yaml(SCENARIO, "test").unwrap();
    let fake = fake(dir.path(), scenario, None).await;
    let agent = start_agent(config(&fake, &dir.path().join("db"))).await;
    let addr = serve(&agent).await;
    wait_readyz(addr, "ready", |code, b| {
        code == 200 && b["storage"]["state"] == "ok"
    })
    .await;

    // The disk fills up; execs keep coming, so learners keep writing.
    let faults = agent.store.storage().faults();
    faults.disk_full.store(true, SeqCst);
    let failing = wait_readyz(addr, "503 for storage", |code, b| {
        code == 503 && b["storage"]["state"] == "failing"
    })
    .await;
    let error = failing["storage"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("No space left"), "{failing}");
    assert!(failing["storage"]["failures"].as_u64().unwrap_or(0) >= 1);
    // Tetragon is fine: the 503 is the storage's.
    assert_eq!(failing["connection"]["status"], "connected", "{failing}");

    faults.disk_full.store(false, SeqCst);
    let ok = wait_readyz(addr, "200 after recovery", |code, _| code == 200).await;
    assert_eq!(ok["storage"]["state"], "ok", "{ok}");

    agent.shutdown().await.unwrap();
    fake.stop().await;
}
