//! What the agent shows the outside: the /metrics and health endpoints, and the admin socket.
pub mod admin;
pub mod admin_client;
pub mod health;
