//! The local admin API on a unix socket (HTTP/1.1, JSON). Everything it reports
//! as learned is read from the durable side (sled or the Checkpointer's durable
//! view). Operator commands (lock, unlock, reset) answer once the change is on disk.
//!
//! - `GET  /v1/db`                      the database scan `debug --admin-socket` renders
//! - `GET  /v1/profiles`                durable profiles, documented JSON view
//! - `GET  /v1/status`                  connection and snapshot status
//! - `GET  /v1/snapshot`                a fresh process snapshot (not fed to learners)
//! - `GET  /v1/violations[?key=K]`     violations, per learner, newest first
//! - `GET  /v1/policies`                the agent's exported policies Tetragon
//!   lists on this node (state, mode, error, kernel memory, counters), and the
//!   workloads learned here whose policy is not loaded
//! - `POST /v1/lock|unlock|reset?key=K` operator commands (404 unknown key,
//!   409 refused by the state machine, 503 not durable yet)
//! - `POST /v1/allow?key=K&path=P`      allow a path (source `operator`),
//!   clearing its violations
//! - `POST /v1/ack?key=K&id=I`          acknowledge a violation (404 unknown id)
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
use crate::learner::view::{ProfileView, ViolationView};
use crate::snapshot::builder::SnapshotStatus;
use crate::snapshot::policy::{take, SnapshotOptions};
use crate::store::checkpointer::DurableView;
use crate::store::inspect::DbScan;
use crate::store::Store;
use crate::tetragon::connection::actor::ConnectionStatus;
use crate::tetragon::observe::enforcing::{OwnPolicies, OwnPolicy};
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
    /// The agent's exported policies Tetragon lists on this node.
    pub policies: OwnPolicies,
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

#[derive(Deserialize)]
struct AllowQuery {
    key: String,
    path: String,
}

#[derive(Deserialize)]
struct AckQuery {
    key: String,
    id: String,
}

#[derive(Deserialize)]
struct MaybeKey {
    key: Option<String>,
}

async fn allow(State(s): State<AdminState>, Query(q): Query<AllowQuery>) -> Response {
    if q.path.is_empty() || q.path.len() > crate::ingest::facts::PATH_MAX {
        return error(
            StatusCode::BAD_REQUEST,
            "allow: the path must be 1 to 4096 bytes, as the policy checks it (the violation's path)",
        );
    }
    let input = LearnerInput::Allow {
        path: q.path,
        now: now_ms(),
    };
    operate(s, &q.key, input).await
}

async fn ack(State(s): State<AdminState>, Query(q): Query<AckQuery>) -> Response {
    let known = LearnerKey::parse(&q.key).ok().and_then(|k| {
        s.durable
            .read()
            .get(&k)
            .map(|p| p.violations.by_id.contains_key(&q.id))
    });
    if known == Some(false) {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no violation {:?} in {}; `debug violations KEY` lists their ids",
                q.id, q.key
            ),
        );
    }
    operate(s, &q.key, LearnerInput::Acknowledge { id: q.id }).await
}

/// One learner's violations.
#[derive(serde::Serialize)]
struct LearnerViolations {
    key: LearnerKey,
    active: usize,
    evicted: u64,
    violations: Vec<ViolationView>,
}

async fn violations(State(s): State<AdminState>, Query(q): Query<MaybeKey>) -> Response {
    let want = match q.key.as_deref().map(LearnerKey::parse).transpose() {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let durable = s.durable.read();
    if let Some(k) = &want {
        if !durable.contains_key(k) {
            return error(StatusCode::NOT_FOUND, format!("no learner {k}"));
        }
    }
    let out: Vec<LearnerViolations> = durable
        .values()
        .filter(|p| want.as_ref().is_none_or(|k| &p.key == k))
        .filter(|p| want.is_some() || !p.violations.is_empty())
        .map(|p| LearnerViolations {
            key: p.key.clone(),
            active: p.violations.active(),
            evicted: p.violations.evicted,
            violations: ViolationView::list(&p.violations),
        })
        .collect();
    Json(out).into_response()
}

async fn policies(State(s): State<AdminState>) -> Json<serde_json::Value> {
    let loaded: Vec<OwnPolicy> = s.policies.read().values().cloned().collect();
    // A workload learned on this node whose policy is not listed here: the
    // cluster-wide object may have been refused by this node's kernel, or
    // not applied yet. Judged only once some policy of the agent's is loaded.
    let names: std::collections::BTreeSet<(String, String)> = loaded
        .iter()
        .map(|p| (p.namespace.clone(), p.name.clone()))
        .collect();
    let mut unenforced: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    if !loaded.is_empty() {
        for p in s.durable.read().values() {
            let k = &p.key;
            if k.namespace.is_empty() || k.workload_kind == "Host" {
                continue;
            }
            // The export's two names for it: its own policy, its namespace's.
            let own = crate::export::names::object_name(&k.workload_kind, &k.workload);
            let packed = crate::export::names::object_name(
                crate::export::packing::NAMESPACE_KIND,
                &k.namespace,
            );
            let covered = [own, packed]
                .into_iter()
                .any(|n| names.contains(&(k.namespace.clone(), n)));
            if !covered {
                unenforced.insert(format!(
                    "{}/{}/{}",
                    k.namespace, k.workload_kind, k.workload
                ));
            }
        }
    }
    Json(serde_json::json!({
        "policies": loaded,
        "workloads_without_policy": unenforced,
    }))
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
        .route("/v1/allow", post(allow))
        .route("/v1/ack", post(ack))
        .route("/v1/violations", get(violations))
        .route("/v1/policies", get(policies))
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
