//! Event ingestion: events and snapshot entries become facts for the learners.
pub mod facts;
pub mod hook_tie;
pub mod ingester;
pub mod process_table;
pub mod process_view;
