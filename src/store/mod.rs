//! Durable learner state in sled: the store interface, its value encoding and
//! errors, and the Checkpointer actor, the only writer.
pub mod checkpointer;
pub mod codec;
pub mod error;
pub mod health;
pub mod inspect;
pub mod preflight;
pub mod sled_store;

pub use error::StoreError;
pub use sled_store::{quarantine, FaultSwitch, StorageHandle, Store, SCHEMA_VERSION};
