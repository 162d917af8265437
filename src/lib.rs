//! tetragon-learner: learns, per container, which executables run, from Cilium
//! Tetragon's gRPC API. The pure parts (conversions, state machines) live beside
//! thin shells (actors, gRPC, sled) in one folder per architectural part.
pub mod agent;
pub mod api;
pub mod backfill;
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

/// A hash map for the hot maps of the event path (the live process table, the
/// ingester's learners): foldhash instead of SipHash, still seeded per map, so
/// keys chosen by others (pod names) cannot be aimed at one bucket.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The global allocator that every binary of this package declares (the CLI,
/// the pipeline bench): the event path allocates per event, and glibc's malloc
/// was half of the agent's CPU on the wire-speed bench (see README,
/// "Performance"). Declared per binary (`#[global_allocator] static GLOBAL:
/// GlobalAllocator = GLOBAL_ALLOCATOR;`) because a library cannot choose it.
pub type GlobalAllocator = mimalloc::MiMalloc;
pub const GLOBAL_ALLOCATOR: GlobalAllocator = mimalloc::MiMalloc;
