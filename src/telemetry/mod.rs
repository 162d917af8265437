//! Telemetry: what the agent counts. A ground-floor module, because every layer
//! (connection, snapshot, ingest, learner, store) counts things; `api/` only serves
//! the text on `/metrics`.
pub mod events;
pub mod metrics;
