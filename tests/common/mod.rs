//! Shared helpers for integration tests: a fake Tetragon on a temp unix socket
//! and an agent on a temp sled directory.
#![allow(dead_code)]
use std::path::Path;
use std::time::{Duration, Instant};

use tetragon_learner::agent::{Agent, AgentConfig};
use tetragon_learner::cli::demo::demo_agent_config;
use tetragon_learner::fake::scenario::Scenario;
use tetragon_learner::fake::{FakeSource, FakeTetragon};
use tetragon_learner::learner::profile::Profile;
use tetragon_learner::tetragon::address::TetragonAddress;

pub async fn fake(dir: &Path, scenario: Scenario, export_log: Option<&Path>) -> FakeTetragon {
    let addr = TetragonAddress::Unix(dir.join("tetragon.sock"));
    FakeTetragon::start(&addr, FakeSource::Scenario(scenario), export_log)
        .await
        .expect("fake starts")
}

pub fn config(fake: &FakeTetragon, db: &Path) -> AgentConfig {
    demo_agent_config(fake.address.clone(), db.to_path_buf())
}

pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn paths(p: &Profile) -> Vec<String> {
    p.executables.keys().cloned().collect()
}

pub async fn start_agent(cfg: AgentConfig) -> Agent {
    Agent::start(cfg).await.expect("agent starts")
}
