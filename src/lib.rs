//! tetragon-learner: learns, per container, which executables run, from Cilium
//! Tetragon's gRPC API. The pure parts (conversions, state machines) live beside
//! thin shells (actors, gRPC, sled) in one folder per architectural part.
pub mod agent;
pub mod api;
pub mod cli;
pub mod diagram;
pub mod export;
pub mod fake;
pub mod ingest;
pub mod learner;
pub mod log_quote;
pub mod snapshot;
pub mod store;
pub mod telemetry;
pub mod tetragon;
pub mod time;
pub mod unix_socket;
