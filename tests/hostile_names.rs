//! Names a workload picks can be megabytes long. A `binary` longer than Linux's
//! PATH_MAX (4096 bytes) cannot be a real exec: it is skipped and counted, from
//! the stream and from snapshots alike, and never learned. Names that are
//! learned (a long workload name) reach the log as a bounded prefix only.
mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use common::{config, fake, start_agent, wait_until};
use parking_lot::Mutex;
use tetragon_learner::fake::scenario::Scenario;
use tetragon_learner::learner::key::LearnerKey;

/// Longest log line allowed: two bounded names (256 bytes each, escaped to at
/// most 10 bytes a char) and the rest of the line.
const MAX_LOG_LINE: usize = 8 * 1024;

/// Every log line of this test binary (it holds one test: the subscriber is global).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn skipped_path_too_long(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("tetragon_learner_skipped_total{reason=\"path_too_long\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[actix_rt::test]
async fn a_one_mebibyte_binary_is_skipped_and_counted_and_no_log_line_is_long() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    let huge_exec = format!("/{}", "x".repeat(1 << 20));
    let huge_running = format!("/{}", "r".repeat(1 << 20));
    let long_workload = "w".repeat(20_000);
    let scenario = serde_json::json!({
        "node_name": "n",
        "containers": [
            {"namespace": "ns", "pod": "p", "container": "app", "expect_key": "ns/Pod/p/app",
             "running": [{"binary": "/app/ok"}, {"binary": huge_running}],
             "execs": [{"binary": huge_exec}, {"binary": "/bin/sh"}]},
            {"namespace": "ns", "pod": format!("{long_workload}-0"), "workload": long_workload,
             "workload_kind": "StatefulSet", "container": "db",
             "expect_key": format!("ns/StatefulSet/{long_workload}/db"),
             "running": [{"binary": "/db"}]},
        ],
        "activity": {"rate_per_sec": 100, "total_execs": 0},
    });
    let scenario =
        Scenario::from_yaml(&serde_yaml::to_string(&scenario).unwrap(), "hostile").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fake = fake(dir.path(), scenario, None).await;
    let agent = start_agent(config(&fake, &dir.path().join("db"))).await;
    let app = LearnerKey::new("ns", "Pod", "p", "app");
    let db = LearnerKey::new("ns", "StatefulSet", &long_workload, "db");
    wait_until(
        "the short paths learned, the long ones skipped from the stream and the snapshot",
        Duration::from_secs(30),
        || {
            let profiles = agent.durable_profiles();
            let has = |k: &LearnerKey, path: &str| {
                profiles
                    .iter()
                    .any(|p| &p.key == k && p.executables.contains_key(path))
            };
            has(&app, "/app/ok")
                && has(&app, "/bin/sh")
                && has(&db, "/db")
                // One from the snapshot, at least one from the stream.
                && skipped_path_too_long(&agent.metrics.render()) >= 2
        },
    )
    .await;
    agent.shutdown().await.unwrap();
    fake.stop().await;

    for p in agent.durable_profiles() {
        for path in p.executables.keys() {
            assert!(path.len() <= 4096, "learned a {}-byte path", path.len());
        }
    }
    let app_paths: Vec<String> = agent
        .durable_profiles()
        .into_iter()
        .find(|p| p.key == app)
        .unwrap()
        .executables
        .into_keys()
        .collect();
    assert_eq!(app_paths, ["/app/ok", "/bin/sh"]);

    let text = String::from_utf8_lossy(&logs.0.lock()).into_owned();
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest <= MAX_LOG_LINE,
        "a {longest}-byte log line: {}",
        &text[..text.len().min(2_000)]
    );
    // The long workload name was logged, as a bounded prefix.
    assert!(
        text.lines()
            .any(|l| l.contains("new learner") && l.contains("wwww") && l.contains("more bytes]")),
        "{}",
        &text[..text.len().min(4_000)]
    );
}
