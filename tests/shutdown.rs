//! Shutdown drains every learner through group commits, not one flush each.
mod common;

use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::learner::profile::Profile;
use tetragon_learner::store::Store;
use tetragon_learner::tetragon::address::TetragonAddress;

fn flushes(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("tetragon_learner_checkpoint_flushes_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[actix_rt::test]
async fn draining_many_learners_takes_few_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    {
        let store = Store::open(&db).unwrap();
        let profiles: Vec<Profile> = (0..2000)
            .map(|i| {
                Profile::new(
                    LearnerKey::new("ns", "Deployment", &format!("w{i}"), "c"),
                    1,
                )
            })
            .collect();
        store.write_durably(&profiles).unwrap();
    }
    // Tetragon is absent: the agent keeps retrying while it is shut down.
    let mut cfg = tetragon_learner::cli::demo::demo_agent_config(
        TetragonAddress::Unix(dir.path().join("absent.sock")),
        db.clone(),
    );
    cfg.lazy_checkpoint = std::time::Duration::from_secs(3600);
    let mut agent = None;
    for _ in 0..50 {
        // sled releases the lock of the handle above a moment after it is dropped.
        match tetragon_learner::agent::Agent::start(cfg.clone()).await {
            Ok(a) => {
                agent = Some(a);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let agent = agent.expect("agent starts on the database");
    assert_eq!(agent.resumed, 2000);
    let before = flushes(&agent.metrics.render());
    agent.shutdown().await.unwrap();
    let used = flushes(&agent.metrics.render()) - before;
    assert!(
        used < 200,
        "2000 learners drained in {used} flushes: group commit is not working"
    );
}
