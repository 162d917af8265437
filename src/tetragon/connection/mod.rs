//! The Tetragon connection: a pure state machine and the actor that drives it.
pub mod actor;
pub mod machine;
