//! The process snapshot: what is already running, from Tetragon's process cache
//! (GetDebug) or, as a fallback, from its JSON export log.
pub mod convert;
pub mod export_log;
pub mod model;
