//! The export-log snapshot source against a fake Tetragon exporting with the
//! Helm chart's default deny list (`{"namespace":["", "cilium", "kube-system"]}`):
//! no host process, so no pid 0 `<kernel>` startup marker, is in the log.
mod common;

use std::collections::BTreeSet;
use std::path::Path;

use tetragon_learner::fake::export_writer::HELM_DEFAULT_EXPORT_DENY_NAMESPACES;
use tetragon_learner::fake::scenario::{Scenario, StartMode};
use tetragon_learner::snapshot::export_log::{
    read_snapshot, ExportLogLocation, InferredBy, StartupMarker,
};
use tetragon_learner::snapshot::model::ProcessSnapshot;

const SCENARIO: &str = r#"
node_name: helm-node
host_processes: [/usr/bin/containerd, /usr/lib/systemd/systemd-journald]
containers:
- namespace: shop
  pod: web-1
  container: web
  running: [{binary: /usr/sbin/nginx}, {binary: /usr/sbin/nginx, arguments: worker}]
  execs: [{binary: /usr/bin/curl}, {binary: /bin/sh}]
- namespace: kube-system
  pod: coredns-1
  container: coredns
  running: [{binary: /coredns}]
activity: {rate_per_sec: 0, total_execs: 4, exit_after_exec: false, start: immediately}
"#;

fn scenario() -> Scenario {
    let mut s = Scenario::from_yaml(SCENARIO, "test").expect("scenario");
    s.export_deny_namespaces = HELM_DEFAULT_EXPORT_DENY_NAMESPACES
        .iter()
        .map(|n| n.to_string())
        .collect();
    s
}

fn binaries(s: &ProcessSnapshot) -> BTreeSet<(String, String)> {
    s.processes
        .iter()
        .map(|p| {
            let ns = p.pod.as_ref().map(|pod| pod.namespace.clone());
            (ns.unwrap_or_default(), p.binary.clone())
        })
        .collect()
}

fn read(
    log: &Path,
) -> (
    ProcessSnapshot,
    tetragon_learner::snapshot::export_log::ExportLogStats,
) {
    read_snapshot(&ExportLogLocation::Path(log.to_path_buf())).expect("snapshot without marker")
}

#[tokio::test]
async fn helm_default_deny_list_pod_processes_found_host_ones_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("tetragon.log");
    let mut fake = common::fake(dir.path(), scenario(), Some(&log)).await;
    fake.activity_done().await;
    fake.stop().await;

    let text = std::fs::read_to_string(&log).expect("export log");
    assert!(!text.contains("<kernel>") && !text.contains("/usr/bin/containerd"));
    assert!(!text.contains("kube-system"));

    let (snap, stats) = read(&log);
    assert_eq!(stats.startup_marker, Some(StartupMarker::Inferred));
    assert_eq!(stats.startup_inferred_by, Some(InferredBy::FirstProcfs));
    assert_eq!((stats.startups, stats.startup_counts.procfs_execs), (1, 2));
    let want: BTreeSet<(String, String)> = [
        ("shop", "/usr/sbin/nginx"),
        ("shop", "/usr/bin/curl"),
        ("shop", "/bin/sh"),
    ]
    .into_iter()
    .map(|(n, b)| (n.to_string(), b.to_string()))
    .collect();
    assert_eq!(binaries(&snap), want);
    assert_eq!(snap.processes.len(), 2 + 4);
}

/// A restart of the fake on the same log: the second startup is used, and the
/// first run's live execs (never exited in the log) are gone with it.
#[tokio::test]
async fn helm_default_deny_list_restart_uses_the_second_startup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("tetragon.log");
    let mut fake = common::fake(dir.path(), scenario(), Some(&log)).await;
    fake.activity_done().await;
    fake.stop().await;

    let mut quiet = scenario();
    quiet.activity.start = StartMode::OnFirstClient;
    let fake = common::fake(dir.path(), quiet, Some(&log)).await;
    fake.stop().await;

    let (snap, stats) = read(&log);
    assert_eq!(stats.startups, 2);
    assert_eq!(stats.startup_marker, Some(StartupMarker::Inferred));
    assert_eq!(stats.startup_inferred_by, Some(InferredBy::RepeatedExecId));
    assert_eq!(stats.startup_line, Some(2 + 4 + 1));
    let got: Vec<&str> = snap.processes.iter().map(|p| p.binary.as_str()).collect();
    assert_eq!(got, ["/usr/sbin/nginx", "/usr/sbin/nginx"]);
}
