//! `/healthz`, `/readyz` and `/metrics` over HTTP on TCP (for probes and Prometheus).
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use parking_lot::RwLock;

use crate::snapshot::builder::SnapshotStatus;
use crate::telemetry::metrics::Metrics;
use crate::tetragon::connection::actor::ConnectionStatus;

#[derive(Clone)]
pub struct HealthState {
    pub metrics: Arc<Metrics>,
    pub connection: Arc<RwLock<ConnectionStatus>>,
    pub snapshot: Arc<RwLock<SnapshotStatus>>,
    /// Whether checkpoints reach the disk (`None`: no store to report on).
    pub storage: Option<crate::store::StorageHandle>,
    /// Each hook view's observe policy (`None`: not reported).
    pub hook_views: Option<crate::tetragon::observe::runner::HookViewStatus>,
    /// The agent's exported policies on this node (`None`: not reported).
    pub policies: Option<crate::tetragon::observe::enforcing::OwnPolicies>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready while the stream is up and checkpoints reach the disk; says why not
/// otherwise.
async fn readyz(State(s): State<HealthState>) -> (StatusCode, String) {
    let conn = s.connection.read().clone();
    let snap = s.snapshot.read().clone();
    let storage = s.storage.as_ref().map(|h| h.state()).unwrap_or_default();
    // Ready once Tetragon answered on the current connection (stream open or a
    // snapshot taken), not merely when a socket connected; and not while new
    // learning cannot be made durable.
    let ready = conn.ready && storage.is_ok();
    // Detail only: an observe policy the kernel refuses leaves executables
    // unverified, it does not stop learning.
    let hook_views = s.hook_views.as_ref().map(|h| {
        h.read()
            .iter()
            .map(|(view, status)| (view.as_str().to_string(), status.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    });
    // Detail too: a policy of the agent's that failed to load on this node
    // (its kernel refused the shape) leaves its workloads unenforced here.
    let policies = s.policies.as_ref().map(|p| {
        let p = p.read();
        serde_json::json!({
            "loaded": p.values().filter(|x| x.state == "enabled").count(),
            "load_errors": p.values().filter(|x| x.state == "load_error").collect::<Vec<_>>(),
        })
    });
    let body = serde_json::json!({ "connection": conn, "snapshot": snap, "storage": storage, "hook_views": hook_views, "policies": policies })
        .to_string()
        + "\n";
    if ready {
        (StatusCode::OK, body)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

async fn metrics(
    State(s): State<HealthState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// Binds first (before the agent starts), so a taken port fails fast and clean.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

pub async fn serve(listener: tokio::net::TcpListener, state: HealthState) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    axum::serve(listener, app).await
}
