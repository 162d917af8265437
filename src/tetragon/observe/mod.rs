//! The agent's observe-only tracing policies: one per hook view, loaded into
//! Tetragon through its gRPC API so Tetragon itself reports, per exec, the path
//! each enforcement hook compares (see `learner/hook_view.rs`). They carry no
//! action but `Post`: loading them changes nothing for workloads, it costs one
//! more event per exec per policy (and the kernel memory Tetragon reports).
//!
//! - `policy.rs`: the shapes, their names and YAML (pure).
//! - `plan.rs`: given what Tetragon lists, what to add and what each view's
//!   status is (pure).
//! - `runner.rs`: the loop that lists, adds and reports.
//! - `enforcing.rs`: which listed policies are the agent's exported ones, and
//!   their modes (same list, same loop).
pub mod enforcing;
pub mod plan;
pub mod policy;
pub mod runner;
