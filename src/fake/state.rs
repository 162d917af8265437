//! State shared by the fake's gRPC service and its activity feed.
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::{broadcast, Notify};

use crate::tetragon::proto::GetEventsResponse;

use super::export_writer::ExportWriter;
use super::node::FakeNode;
use super::scenario::Faults;

/// Tetragon's default per-listener queue: events beyond it are dropped, silently,
/// for a client that reads too slowly.
pub const LISTENER_QUEUE: usize = 10_000;

pub struct FakeState {
    pub node: Mutex<FakeNode>,
    pub faults: Faults,
    /// The live feed. A client only sees what happens while it is subscribed.
    pub events: broadcast::Sender<GetEventsResponse>,
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
        let (events, _) = broadcast::channel(LISTENER_QUEUE);
        Self {
            node: Mutex::new(node),
            faults,
            events,
            first_client: Notify::new(),
            stopping: tokio::sync::watch::channel(false).0,
            export: export.map(Mutex::new),
            counters: Counters::default(),
        }
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
        // No receiver is fine: a live feed does not keep what nobody heard.
        let _ = self.events.send(ev);
    }
}
