//! What the agent shows the outside: metrics, health and the admin socket.
pub mod health;
pub mod metrics;
