//! The local admin API on a unix socket (HTTP/1.1, JSON). Everything it reports
//! as learned is read from the durable side (sled or the Checkpointer's durable
//! view). Operator commands (lock, unlock, reset) answer once the change is on disk.
//!
//! - `GET  /v1/db`                      the database scan `debug --admin-socket` renders
//! - `GET  /v1/profiles`                durable profiles, documented JSON view
//! - `GET  /v1/status`                  connection and snapshot status
//! - `GET  /v1/snapshot`                a fresh process snapshot (not fed to learners)
//! - `POST /v1/lock|unlock|reset?key=K` operator commands (404 unknown key,
//!   409 refused by the state machine, 503 not durable yet)
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::Recipient;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::RwLock;
use serde::Deserialize;
use thiserror::Error;

use crate::learner::actor::{OperateError, OperateOn};
use crate::learner::key::LearnerKey;
use crate::learner::machine::LearnerInput;
use crate::learner::view::ProfileView;
use crate::snapshot::builder::SnapshotStatus;
use crate::snapshot::policy::{take, SnapshotOptions};
use crate::store::checkpointer::DurableView;
use crate::store::inspect::DbScan;
use crate::store::Store;
use crate::tetragon::connection::actor::ConnectionStatus;
use crate::time::now_ms;

#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub durable: DurableView,
    /// Where operator commands go (the ingester routes them by key).
    pub operate: Recipient<OperateOn>,
    pub snapshot: SnapshotOptions,
    pub connection_status: Arc<RwLock<ConnectionStatus>>,
    pub snapshot_status: Arc<RwLock<SnapshotStatus>>,
}

#[derive(Debug, Error)]
pub enum AdminError {
    #[error("cannot serve the admin socket {path}: {source}; check the directory exists and no other agent uses the path")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, format!("{}\n", msg.into())).into_response()
}

async fn db(State(s): State<AdminState>) -> Response {
    let store = s.store.clone();
    let durable: Vec<_> = s.durable.read().values().cloned().collect();
    match tokio::task::spawn_blocking(move || DbScan::read_durable(&store, durable)).await {
        Ok(Ok(scan)) => Json(scan).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn profiles(State(s): State<AdminState>) -> Json<Vec<ProfileView>> {
    Json(s.durable.read().values().map(ProfileView::from).collect())
}

async fn status(State(s): State<AdminState>) -> Json<serde_json::Value> {
    let conn = s.connection_status.read().clone();
    let snap = s.snapshot_status.read().clone();
    Json(serde_json::json!({ "connection": conn, "snapshot": snap }))
}

async fn snapshot(State(s): State<AdminState>) -> Response {
    match take(&s.snapshot).await {
        Ok((snap, _)) => Json(snap).into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

#[derive(Deserialize)]
struct KeyQuery {
    key: String,
}

async fn operate(s: AdminState, key: &str, input: LearnerInput) -> Response {
    let key = match LearnerKey::parse(key) {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match s.operate.send(OperateOn { key, input }).await {
        Ok(Ok(p)) => Json(ProfileView::from(&p)).into_response(),
        Ok(Err(e @ OperateError::NoLearner(_))) => error(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e @ OperateError::Refused(_))) => error(StatusCode::CONFLICT, e.to_string()),
        Ok(Err(e @ OperateError::NotDurable(_))) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn lock(State(s): State<AdminState>, Query(q): Query<KeyQuery>) -> Response {
    operate(s, &q.key, LearnerInput::Lock { now: now_ms() }).await
}

async fn unlock(State(s): State<AdminState>, Query(q): Query<KeyQuery>) -> Response {
    operate(s, &q.key, LearnerInput::Unlock { now: now_ms() }).await
}

async fn reset(State(s): State<AdminState>, Query(q): Query<KeyQuery>) -> Response {
    operate(s, &q.key, LearnerInput::Reset { now: now_ms() }).await
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/v1/db", get(db))
        .route("/v1/profiles", get(profiles))
        .route("/v1/status", get(status))
        .route("/v1/snapshot", get(snapshot))
        .route("/v1/lock", post(lock))
        .route("/v1/unlock", post(unlock))
        .route("/v1/reset", post(reset))
        .with_state(state)
}

/// Binds the socket (replacing a stale one) and serves until the task is dropped.
pub async fn bind(path: &Path) -> Result<tokio::net::UnixListener, AdminError> {
    let err = |source| AdminError::Bind {
        path: path.to_path_buf(),
        source,
    };
    crate::unix_socket::remove_stale_socket(path).map_err(err)?;
    // Owner-only from the moment it exists: the socket can lock and reset profiles.
    let listener = crate::unix_socket::bind_private(path).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    tokio::net::UnixListener::from_std(listener).map_err(err)
}

pub async fn serve(listener: tokio::net::UnixListener, state: AdminState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}
