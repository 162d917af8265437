//! Per-container learners: the key, what they observe, and their state machine.
pub mod key;
pub mod observation;
