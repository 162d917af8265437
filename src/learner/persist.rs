//! What a learner asks of whoever keeps profiles on disk: write this profile.
//! The learner owns the message and its error and holds a `Recipient` of it,
//! so it names no store; the Checkpointer (`store/`) handles it.
use std::sync::Arc;

use actix::prelude::*;

use super::machine::Durability;
use super::profile::Profile;

/// Persist this profile. Resolves once it is durable (`Flush`) or accepted
/// (`Lazy`).
#[derive(Message)]
#[rtype(result = "Result<(), PersistError>")]
pub struct Persist {
    pub profile: Profile,
    pub durability: Durability,
    /// Increases with every profile a learner sends: a copy that arrives after a
    /// newer one (a retry, a full mailbox) must not overwrite it.
    pub revision: u64,
}

/// Why a profile is not (yet) durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PersistError {
    /// The writer's own error (the store's, for the Checkpointer), whole.
    #[error(transparent)]
    Writer(Arc<dyn std::error::Error + Send + Sync>),
    /// The writer could not be asked (its mailbox is closed: shutdown).
    #[error("the profile writer could not be asked: {0}")]
    Unreachable(#[from] MailboxError),
}

impl PersistError {
    pub fn writer(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Writer(Arc::new(e))
    }
}
