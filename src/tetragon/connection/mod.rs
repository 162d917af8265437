//! The Tetragon connection: a pure state machine, the actor that drives it, and
//! the messages it hands on.
pub mod actor;
pub mod machine;
pub mod messages;
