//! State shared by the fake's gRPC service and its activity feed.
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

use crate::tetragon::proto::GetEventsResponse;

use super::export_writer::ExportWriter;
use super::node::FakeNode;
use super::policies::PolicyTable;
use super::policy_spec::Kernel;
use super::scenario::Faults;

/// Tetragon's default per-listener queue: when it is full, new events are
/// dropped, silently, for that client (Tetragon only counts them in a metric).
pub const LISTENER_QUEUE: usize = 10_000;

pub struct FakeState {
    /// Lock order: `node`, then `policies`.
    pub node: Mutex<FakeNode>,
    /// The loaded tracing policies.
    pub policies: Mutex<PolicyTable>,
    pub faults: Faults,
    /// The live feed: one bounded queue per listener, as in Tetragon. A client
    /// only sees what happens while it is subscribed.
    listeners: Mutex<Vec<mpsc::Sender<GetEventsResponse>>>,
    pub first_client: Notify,
    /// Set when the fake stops: open streams end, as when Tetragon goes away.
    pub stopping: tokio::sync::watch::Sender<bool>,
    pub export: Option<Mutex<ExportWriter>>,
    pub counters: Counters,
}

#[derive(Default)]
pub struct Counters {
    pub execs_done: AtomicU64,
    pub events_published: AtomicU64,
    pub streams_opened: AtomicU64,
    pub debug_calls: AtomicU64,
    pub dropped_for_slow_clients: AtomicU64,
}

impl FakeState {
    pub fn new(node: FakeNode, faults: Faults, export: Option<ExportWriter>) -> Self {
        Self {
            node: Mutex::new(node),
            policies: Mutex::new(PolicyTable::new(Kernel::default(), true)),
            faults,
            listeners: Mutex::new(Vec::new()),
            first_client: Notify::new(),
            stopping: tokio::sync::watch::channel(false).0,
            export: export.map(Mutex::new),
            counters: Counters::default(),
        }
    }

    /// Serves these policies (the scenario's kernel and preloaded policies).
    pub fn with_policies(mut self, policies: PolicyTable) -> Self {
        self.policies = Mutex::new(policies);
        self
    }

    /// Sends an event to whoever listens now and to the export log.
    pub fn publish(&self, ev: GetEventsResponse) {
        if let Some(export) = &self.export {
            let mut w = export.lock();
            if let Err(e) = w.write(&ev).and_then(|()| w.flush()) {
                tracing::warn!(error = %e, "fake export log write failed");
            }
        }
        self.counters
            .events_published
            .fetch_add(1, Ordering::Relaxed);
        // No listener is fine: a live feed does not keep what nobody heard.
        let mut listeners = self.listeners.lock();
        listeners.retain(|tx| match tx.try_send(ev.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters
                    .dropped_for_slow_clients
                    .fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// A new listener's queue: it receives what is published from now on.
    pub fn subscribe(&self) -> mpsc::Receiver<GetEventsResponse> {
        let (tx, rx) = mpsc::channel(LISTENER_QUEUE);
        self.listeners.lock().push(tx);
        rx
    }
}
