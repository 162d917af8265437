//! The admin socket of a running agent: `debug --admin-socket` reads what is
//! durable while sled's lock keeps `--db` readers out; lock/unlock/reset work.
mod common;

use std::time::Duration;

use common::{config, fake, start_agent, wait_until};
use tetragon_learner::api::admin;
use tetragon_learner::api::admin_client::{encode_query_value, request};
use tetragon_learner::cli::debug_cmd::{load, open_for_debug};
use tetragon_learner::fake::scenario::Scenario;
use tetragon_learner::learner::key::LearnerKey;

fn blocking_request(
    socket: std::path::PathBuf,
    method: &'static str,
    path: String,
) -> tokio::task::JoinHandle<Result<serde_json::Value, String>> {
    tokio::task::spawn_blocking(move || {
        let body = request(&socket, method, &path).map_err(|e| e.to_string())?;
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    })
}

#[actix_rt::test]
async fn debug_reads_a_running_agent_through_its_socket_and_operators_lock_it() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::demo();
    let fake = fake(dir.path(), scenario.clone(), None).await;
    let db = dir.path().join("db");
    let agent = start_agent(config(&fake, &db)).await;
    let socket = dir.path().join("admin.sock");
    let listener = admin::bind(&socket).await.unwrap();
    let server = tokio::spawn(admin::serve(listener, agent.admin_state()));
    let key = LearnerKey::new("shop", "Deployment", "frontend", "nginx");
    wait_until("nginx learned", Duration::from_secs(20), || {
        agent
            .durable_profiles()
            .iter()
            .any(|p| p.key == key && p.executables.contains_key("/usr/sbin/nginx"))
    })
    .await;

    // The database is locked by the running agent...
    let db2 = db.clone();
    let locked = tokio::task::spawn_blocking(move || {
        open_for_debug(Some(&db2)).err().map(|e| e.to_string())
    })
    .await
    .unwrap();
    assert!(locked.unwrap_or_default().contains("--admin-socket"));
    // ...but the socket serves the same scan `debug` renders.
    let s = socket.clone();
    let scan = tokio::task::spawn_blocking(move || load(None, Some(&s)))
        .await
        .unwrap()
        .expect("scan via socket");
    let on_disk = scan
        .profiles
        .iter()
        .find(|p| p.key == key)
        .expect("profile via socket");
    assert!(on_disk.executables.contains_key("/usr/sbin/nginx"));
    assert!(scan.bad.is_empty());

    let q = encode_query_value(&key.to_string());
    let locked = blocking_request(socket.clone(), "POST", format!("/v1/lock?key={q}"))
        .await
        .unwrap()
        .expect("lock");
    assert_eq!(locked["state"], "locked");
    // Durable before the answer: the durable view already says locked.
    assert!(agent
        .durable_profiles()
        .iter()
        .any(|p| p.key == key && p.state.as_str() == "locked"));
    let again = blocking_request(socket.clone(), "POST", format!("/v1/lock?key={q}"))
        .await
        .unwrap();
    assert!(
        again.unwrap_err().contains("409"),
        "locking twice is refused"
    );
    let unlocked = blocking_request(socket.clone(), "POST", format!("/v1/unlock?key={q}"))
        .await
        .unwrap()
        .expect("unlock");
    assert_eq!(unlocked["state"], "learning");
    let unknown = blocking_request(
        socket.clone(),
        "POST",
        "/v1/lock?key=a%2FPod%2Fb%2Fc".to_string(),
    )
    .await
    .unwrap();
    let unknown = unknown.unwrap_err();
    assert!(
        unknown.contains("404") && unknown.contains("no learner"),
        "{unknown}"
    );
    let status = blocking_request(socket.clone(), "GET", "/v1/status".to_string())
        .await
        .unwrap()
        .expect("status");
    assert_eq!(status["connection"]["state"], "live");
    let snap = blocking_request(socket.clone(), "GET", "/v1/snapshot".to_string())
        .await
        .unwrap()
        .expect("snapshot");
    assert_eq!(snap["source"], "debug-api");

    server.abort();
    agent.shutdown().await.unwrap();
    fake.stop().await;
}

#[actix_rt::test]
async fn export_reads_a_running_agent_through_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake(dir.path(), Scenario::demo(), None).await;
    let agent = start_agent(config(&fake, &dir.path().join("db"))).await;
    let socket = dir.path().join("admin.sock");
    let server = tokio::spawn(admin::serve(
        admin::bind(&socket).await.unwrap(),
        agent.admin_state(),
    ));
    let key = LearnerKey::new("shop", "StatefulSet", "orders-db", "postgres");
    wait_until("postgres learned", Duration::from_secs(20), || {
        agent.durable_profiles().iter().any(|p| p.key == key)
    })
    .await;
    let s = socket.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tetragon-learner"))
            .args(["export", "--admin-socket", &s, "--format", "json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["key"]["workload"] == "orders-db"));
    server.abort();
    agent.shutdown().await.unwrap();
    fake.stop().await;
}
