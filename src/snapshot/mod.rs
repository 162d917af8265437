//! The process snapshot: what is already running, from Tetragon's process cache
//! (GetDebug) or, as a fallback, from its JSON export log.
pub mod builder;
pub mod convert;
pub mod debug_api;
pub mod exec_chain;
pub mod export_log;
pub mod model;
pub mod policy;
