//! The backfill's position is written by the Checkpointer too (the only
//! writer of sled), off the arbiter. The backfill sends it only once the
//! facts it covers are durable, so it needs no ordering with profile writes.
use actix::prelude::*;

use super::Checkpointer;
use crate::backfill::SaveBackfillPosition;

impl Handler<SaveBackfillPosition> for Checkpointer {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, msg: SaveBackfillPosition, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || store.write_backfill_position(&msg.0)).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(e) => Err(format!("backfill position writer stopped: {e}")),
            }
        })
    }
}
