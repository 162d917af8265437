//! Per-container learners: the key, what they observe, and their state machine.
pub mod actor;
pub mod completeness;
pub mod config;
pub mod hook_view;
pub mod key;
pub mod ledger;
pub mod machine;
pub mod observation;
pub mod persist;
pub mod pod_labels;
pub mod profile;
pub mod state;
pub mod view;
