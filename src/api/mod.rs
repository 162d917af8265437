//! What the agent shows the outside: metrics, health, and the admin socket.
pub mod admin;
pub mod admin_client;
pub mod health;
pub mod metrics;
