//! What the connection hands on. The connection owns these message types and
//! holds a `Recipient` for each, so it names no consumer: `agent.rs` wires it.
use actix::Message;

use super::machine::SnapshotReason;
use crate::tetragon::proto::lean::GetEventsResponse;

/// Events from one read of the stream, in order, in the lean decoding (only
/// what the agent reads). The connection awaits the answer (the ingester took
/// the batch in: its inputs are in the learners' bounded mailboxes) before it
/// hands on the next: backpressure, never an unbounded queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EventBatch(pub Vec<GetEventsResponse>);

/// Take a snapshot now and hand it on; resolves once it was handed on, or with
/// why it could not be taken (learning from events goes on; the connection
/// retries later).
#[derive(Message)]
#[rtype(result = "Result<(), SnapshotUnavailable>")]
pub struct TakeSnapshot {
    /// Why now: for the log line, and so the taker knows the snapshot asked
    /// for right after a (re)connect.
    pub reason: SnapshotReason,
}

/// Why no snapshot was handed on. The taker logged and counted it; the
/// connection only schedules a retry. Boxed: the connection names no source.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SnapshotUnavailable(pub Box<dyn std::error::Error + Send + Sync>);
