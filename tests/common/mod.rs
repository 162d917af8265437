//! Shared helpers for integration tests: a fake Tetragon on a temp unix socket,
//! an agent on a temp sled directory, profiles built by hand, and a wait for
//! sled's lock.
#![allow(dead_code)]
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use tetragon_learner::agent::{Agent, AgentConfig, AgentError};
use tetragon_learner::cli::demo::demo_agent_config;
use tetragon_learner::fake::scenario::Scenario;
use tetragon_learner::fake::{FakeSource, FakeTetragon};
use tetragon_learner::learner::hook_view::HookView;
use tetragon_learner::learner::observation::FactSource;
use tetragon_learner::learner::profile::{ExecutableRecord, Profile};
use tetragon_learner::store::{Store, StoreError};
use tetragon_learner::tetragon::address::TetragonAddress;

/// A path with everything an output writer could trip on: a newline, template
/// braces, a right-to-left override, printf and YAML syntax, quotes, an escape
/// sequence, NUL and DEL. Every output must carry it exactly.
pub const HOSTILE: &str =
    "/bin/evil\n{{ x }}\u{202e}%n\"quote' \t\u{1b}[31m: - #&*!|> ---\n...\n\u{0}\u{7f}";

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

/// An executable record as the learner makes it from one observation: seen
/// once at 2,000 from an event; the setters change what a test needs.
pub fn record(path: &str) -> RecordBuilder {
    RecordBuilder(ExecutableRecord {
        path: path.to_string(),
        first_seen: 2_000,
        last_seen: 2_000,
        count: 1,
        source: FactSource::Event,
        sources: BTreeSet::from([FactSource::Event]),
        exec_probe: false,
        exec_session: false,
        views: Default::default(),
    })
}

pub struct RecordBuilder(ExecutableRecord);

impl RecordBuilder {
    /// First (and last) seen at `at`.
    pub fn at(mut self, at: u64) -> Self {
        self.0.first_seen = at;
        self.0.last_seen = at;
        self
    }

    /// Seen `count` times between `first` and `last`.
    pub fn seen(mut self, first: u64, last: u64, count: u64) -> Self {
        self.0.first_seen = first;
        self.0.last_seen = last;
        self.0.count = count;
        self
    }

    /// First seen from `source` (and only from it, unless `also_from`).
    pub fn source(mut self, source: FactSource) -> Self {
        self.0.source = source;
        self.0.sources = BTreeSet::from([source]);
        self
    }

    pub fn also_from(mut self, source: FactSource) -> Self {
        self.0.sources.insert(source);
        self
    }

    /// Run by a Kubernetes probe.
    pub fn probe(mut self, yes: bool) -> Self {
        self.0.exec_probe = yes;
        self
    }

    /// Run in a `kubectl exec` session.
    pub fn session(mut self, yes: bool) -> Self {
        self.0.exec_session = yes;
        self
    }

    /// Seen through `view`'s hook as `path` (repeatable).
    pub fn view(mut self, view: HookView, path: &str) -> Self {
        self.0.views.add(view, path);
        self
    }

    pub fn build(self) -> ExecutableRecord {
        self.0
    }
}

/// `profile` with `records` among its executables.
pub fn with(mut profile: Profile, records: Vec<ExecutableRecord>) -> Profile {
    for r in records {
        profile.executables.insert(r.path.clone(), r);
    }
    profile
}

/// sled releases its directory lock a moment after the last handle is
/// dropped (or a killed agent's process is reaped): retries `open` while it
/// answers `Locked`, for up to `timeout`.
pub fn open_when_unlocked<T, E: std::fmt::Display>(
    timeout: Duration,
    mut open: impl FnMut() -> Result<T, E>,
    is_locked: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let start = Instant::now();
    loop {
        match open() {
            Err(e) if is_locked(&e) && start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => return other,
        }
    }
}

/// `Store::open`, once the previous holder released the lock.
pub fn store_when_unlocked(db: &Path) -> Result<Store, StoreError> {
    open_when_unlocked(
        Duration::from_secs(15),
        || Store::open(db),
        |e| matches!(e, StoreError::Locked { .. }),
    )
}

/// `Store::open` from async code (the previous holder may be an agent whose
/// actors run on this very thread: the wait must not block it).
pub async fn store_when_unlocked_async(db: &Path) -> Result<Store, StoreError> {
    let start = Instant::now();
    loop {
        match Store::open(db) {
            Err(StoreError::Locked { .. }) if start.elapsed() < Duration::from_secs(15) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => return other,
        }
    }
}

/// `Agent::start`, once the previous agent released the database lock.
pub async fn agent_when_unlocked(cfg: AgentConfig) -> Agent {
    let start = Instant::now();
    loop {
        match Agent::start(cfg.clone()).await {
            Err(AgentError::Store(StoreError::Locked { .. }))
                if start.elapsed() < Duration::from_secs(15) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => return other.expect("agent starts"),
        }
    }
}
