//! Everything that speaks Tetragon's gRPC API: generated types, addresses,
//! connecting, and the length-delimited capture format.
pub mod address;
pub mod client;
pub mod connection;
pub mod framing;
pub mod observe;
pub mod proto;
