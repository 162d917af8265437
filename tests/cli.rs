//! The command-line contract: exit codes, one-line errors, `snapshot --format json`.
mod common;

use std::process::Command;

use tetragon_learner::fake::scenario::{DebugFault, Scenario};

const BIN: &str = env!("CARGO_BIN_EXE_tetragon-learner");

fn snapshot(addr: &str, extra: &[&str]) -> std::process::Output {
    snapshot_within(addr, "3s", extra)
}

fn snapshot_within(addr: &str, timeout: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["snapshot", "--tetragon-address", addr, "--timeout", timeout];
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().expect("binary runs")
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(BIN).arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["snapshot", "--tetragon-address", "localhost"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an address without a port is a usage error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_json_lists_exactly_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::demo();
    scenario.faults.extra_host_processes = 100_000; // a busy node: the issue asks for dumps up to 100k
    let fake = common::fake(dir.path(), scenario, None).await;
    let expected = fake.state.node.lock().dump().len();
    let addr = fake.address.to_string();
    // This test is about equality, not speed: a debug-build fake answering a
    // 100k-process dump on a loaded 2-core machine took more than 3 s.
    let out =
        tokio::task::spawn_blocking(move || snapshot_within(&addr, "60s", &["--format", "json"]))
            .await
            .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["source"], "debug-api");
    let procs = v["processes"].as_array().unwrap();
    assert_eq!(procs.len(), expected);
    let nginx = procs
        .iter()
        .find(|p| p["binary"] == "/usr/sbin/nginx")
        .unwrap();
    assert_eq!(nginx["container"]["name"], "nginx");
    assert_eq!(nginx["pod"]["workload_kind"], "Deployment");
    let kubelet = procs
        .iter()
        .find(|p| p["binary"] == "/usr/bin/kubelet")
        .unwrap();
    assert!(kubelet["pod"].is_null() && kubelet["container"].is_null());
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_api_unavailable_is_one_clear_line_and_auto_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::demo();
    scenario.faults.getdebug = DebugFault::Unimplemented;
    let log = dir.path().join("tetragon.log");
    let fake = common::fake(dir.path(), scenario, Some(&log)).await;
    let addr = fake.address.to_string();
    let a = addr.clone();
    let out =
        tokio::task::spawn_blocking(move || snapshot(&a, &["--snapshot-source", "debug-api"]))
            .await
            .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .expect("an error line");
    assert!(
        line.contains(&addr) && line.contains("not implemented"),
        "{line}"
    );
    let log_arg = log.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        snapshot(&addr, &["--format", "json", "--export-log", &log_arg])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["source"], "export-log");
    assert!(v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["binary"] == "/bin/sleep"));
    fake.stop().await;
}
