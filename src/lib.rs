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

/// mimalloc's `mi_option_purge_delay` (its slot in `mi_option_e`, mimalloc.h
/// v3; the Rust bindings name no constant for it). Pinned by a test: its
/// default there is 1,000 ms.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the allocator before it goes back to
/// the kernel. mimalloc v3 waits 1 s (10 s for a whole arena): the snapshot's
/// decoding (some 20 MiB for 8,000 processes, freed at once) then stays
/// resident, and what follows is allocated next to it. 10 ms (mimalloc v2's
/// default) took 13-16 MiB off the agent's RSS on the pipeline bench at no
/// measurable CPU cost (README, "Performance").
pub const ALLOCATOR_PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Sets the allocator's options, unless the operator set them in the
/// environment (`MIMALLOC_PURGE_DELAY` wins).
///
/// # Safety
/// Call it first thing in `main`, before any other thread runs: mimalloc's
/// option setters are not thread-safe.
pub unsafe fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: a plain setter of a process-wide integer option; the caller
    // promises no other thread runs yet.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ALLOCATOR_PURGE_DELAY_MS) }
}

#[cfg(test)]
mod allocator_tests {
    use super::MI_OPTION_PURGE_DELAY;

    #[test]
    fn the_purge_delay_slot_is_mimallocs_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the operator's value, not the default
        }
        // Nothing in the test binary sets it: the documented default of
        // mimalloc v3's purge_delay (options.c), and of no neighbouring slot.
        let ms = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(ms, 1000);
    }
}
