//! The wire-speed reference of the pipeline bench: a generated feed encoded
//! once (`feed`), served as stored bytes (`server`).
pub mod feed;
pub mod server;
