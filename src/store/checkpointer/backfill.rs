//! The backfill's position is written by the Checkpointer too (the only
//! writer of sled), off the arbiter. The backfill sends it only once the
//! facts it covers are durable, so it needs no ordering with profile writes.
use actix::prelude::*;

use super::{CheckpointError, Checkpointer};

/// Write the backfill position (encoded by the backfill: the store keeps its
/// bytes) durably.
#[derive(Message)]
#[rtype(result = "Result<(), CheckpointError>")]
pub struct SaveBackfillPosition(pub Vec<u8>);

impl Handler<SaveBackfillPosition> for Checkpointer {
    type Result = ResponseFuture<Result<(), CheckpointError>>;

    fn handle(&mut self, msg: SaveBackfillPosition, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || store.write_backfill_position(&msg.0)).await {
                Ok(result) => result.map_err(CheckpointError::from),
                Err(e) => Err(CheckpointError::WriterStopped(std::sync::Arc::new(e))),
            }
        })
    }
}
