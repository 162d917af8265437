//! What the backfill hands on: events for the ingester (these types), and a
//! position for the Checkpointer (the only writer of sled), whose message the
//! store owns (`store::checkpointer::SaveBackfillPosition`). The backfill
//! holds `Recipient`s of both; `agent.rs` connects the consumers.
use std::collections::BTreeSet;

use actix::prelude::*;

use super::position::HistoryStart;
use crate::learner::key::LearnerKey;
use crate::tetragon::proto::GetEventsResponse;

/// Exec and exit events read from the export log, in file order, to teach
/// with source `backfill`.
#[derive(Message)]
#[rtype(result = "BackfillIngested")]
pub struct Backfilled {
    pub events: Vec<GetEventsResponse>,
    /// Since when the history read is complete: a container that started
    /// then or later was seen from its start.
    pub history: HistoryStart,
}

/// The learners the events reached, with the paths each holds after applying
/// them: the backfill waits until these are durable before it moves its
/// position past the events.
#[derive(Debug, Default, MessageResponse)]
pub struct BackfillIngested {
    pub held: Vec<(LearnerKey, BTreeSet<String>)>,
}
