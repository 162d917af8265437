//! The fake Tetragon: a real `FineGuidanceSensors` gRPC server driven by a
//! scenario or a replayed capture, with fault injection. It behaves like
//! Tetragon where it matters to the agent: a live feed that does not replay what
//! a disconnected client missed, allow-list filtering, silent drops for slow
//! clients, and a process cache that holds kernel threads and host processes.
pub mod export_writer;
pub mod feed;
pub mod files;
pub mod filter;
pub mod hook_events;
pub mod node;
pub mod policies;
pub mod policy_spec;
pub mod replay;
pub mod scenario;
pub mod selectors;
pub mod server;
pub mod service;
pub mod state;

pub use server::{FakeError, FakeSource, FakeTetragon};
