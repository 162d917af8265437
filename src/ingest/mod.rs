//! Event ingestion: events and snapshot entries become facts for the learners.
pub mod facts;
