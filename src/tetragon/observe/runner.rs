//! The loop that keeps the observe policies loaded: list Tetragon's policies,
//! add what the plan says, report each view's status (log once per change,
//! `/readyz`, a gauge), and look again after `interval` (sooner while one is
//! being added; a restarted Tetragon has forgotten policies added over gRPC).
//! Idempotent across agent restarts and several agents on one node: a policy
//! already listed under its name is used as it is, never added twice. Policies
//! are left loaded when the agent stops (the next start reuses them).
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::watch;

use super::enforcing::{is_agents_policy, EnforcingModes};
use super::plan::{all_unavailable, plan, Listed, ListedState, ViewStatus};
use super::policy::{HookViewChoice, ObserveShape};
use crate::learner::hook_view::HookView;
use crate::telemetry::events::{Emit, HookViewChanged};
use crate::telemetry::metrics::Metrics;
use crate::tetragon::address::TetragonAddress;
use crate::tetragon::client::{client, connect};
use crate::tetragon::proto::{
    AddTracingPolicyRequest, ListTracingPoliciesRequest, TracingPolicyMode, TracingPolicyState,
    TracingPolicyStatus,
};

/// Each view's status, shared with `/readyz` and the admin status.
pub type HookViewStatus = Arc<RwLock<BTreeMap<HookView, ViewStatus>>>;

#[derive(Debug, Clone)]
pub struct ObserveConfig {
    pub address: TetragonAddress,
    pub choice: HookViewChoice,
    pub connect_timeout: Duration,
    /// How often Tetragon's list is checked once every view is settled.
    pub interval: Duration,
}

/// What the loop tells the rest of the agent about the agent's own exported
/// policies: their modes (for the ingester) and their names (the stream
/// re-subscribes when they change).
pub struct EnforcingWatch {
    pub modes: EnforcingModes,
    pub names: watch::Sender<Vec<String>>,
}

/// Runs until `stop` turns true.
pub async fn run(
    cfg: ObserveConfig,
    status: HookViewStatus,
    enforcing: EnforcingWatch,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    if cfg.choice == HookViewChoice::Off {
        tracing::warn!(
            "--hook-view off: no observe policy is loaded; every executable stays unverified, and exported allow-lists hold the paths Tetragon's events name (a symlinked or script exec is denied under enforcement)"
        );
    }
    let mut failed_adds: BTreeMap<ObserveShape, String> = BTreeMap::new();
    loop {
        let settled = round(&cfg, &status, &enforcing, &metrics, &mut failed_adds).await;
        let wait = if settled {
            cfg.interval
        } else {
            Duration::from_secs(5).min(cfg.interval)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One look at Tetragon; true when no view is pending.
async fn round(
    cfg: &ObserveConfig,
    status: &HookViewStatus,
    enforcing: &EnforcingWatch,
    metrics: &Metrics,
    failed_adds: &mut BTreeMap<ObserveShape, String>,
) -> bool {
    let channel = match connect(&cfg.address, cfg.connect_timeout).await {
        Ok(c) => c,
        Err(e) => {
            // The connection actor reports Tetragon being away; the views keep
            // their last status until it answers again.
            tracing::debug!(error = %e, "observe policies: Tetragon not reachable");
            return false;
        }
    };
    let mut api = client(channel, 16 * 1024 * 1024);
    let listed = match api
        .list_tracing_policies(ListTracingPoliciesRequest::default())
        .await
    {
        Ok(r) => r.into_inner().policies,
        Err(s) if s.code() == tonic::Code::Unimplemented => {
            let reason = format!(
                "Tetragon does not serve ListTracingPolicies/AddTracingPolicy ({}); upgrade Tetragon to load the observe policies",
                s.message()
            );
            publish(status, metrics, all_unavailable(cfg.choice, &reason));
            return true;
        }
        Err(s) => {
            tracing::debug!(code = ?s.code(), error = s.message(), "observe policies: ListTracingPolicies failed");
            return false;
        }
    };
    publish_enforcing(enforcing, &listed);
    let listed: Vec<Listed> = listed
        .into_iter()
        .map(|p| {
            let state = match TracingPolicyState::try_from(p.state) {
                Ok(TracingPolicyState::TpStateEnabled) => ListedState::Enabled,
                Ok(TracingPolicyState::TpStateLoadError | TracingPolicyState::TpStateError) => {
                    ListedState::LoadError(p.error.clone())
                }
                Ok(other) => ListedState::Other(other.as_str_name().to_string()),
                Err(_) => ListedState::Other(format!("state {}", p.state)),
            };
            Listed {
                name: p.name,
                state,
            }
        })
        .collect();
    if cfg.choice == HookViewChoice::Off {
        return true;
    }
    let planned = plan(cfg.choice, &listed, failed_adds);
    publish(status, metrics, planned.views.clone());
    for shape in &planned.add {
        let req = AddTracingPolicyRequest {
            yaml: shape.yaml(),
            domain: String::new(),
        };
        match api.add_tracing_policy(req).await {
            Ok(_) => {
                tracing::info!(
                    policy = shape.policy_name(),
                    "observe policy added to Tetragon"
                );
            }
            Err(s) => {
                failed_adds.insert(*shape, s.message().to_string());
            }
        }
    }
    planned.add.is_empty()
        && planned
            .views
            .values()
            .all(|v| !matches!(v, ViewStatus::Pending { .. }))
}

/// The agent's exported policies in the list: modes now, names (a stream
/// re-subscription) only when they changed.
fn publish_enforcing(w: &EnforcingWatch, listed: &[TracingPolicyStatus]) {
    let ours: BTreeMap<String, TracingPolicyMode> = listed
        .iter()
        .filter(|p| is_agents_policy(&p.name, &p.namespace))
        .map(|p| {
            let mode =
                TracingPolicyMode::try_from(p.mode).unwrap_or(TracingPolicyMode::TpModeUnknown);
            (p.name.clone(), mode)
        })
        .collect();
    let names: Vec<String> = ours.keys().cloned().collect();
    *w.modes.write() = ours;
    w.names.send_if_modified(|cur| {
        if *cur == names {
            return false;
        }
        tracing::info!(policies = ?names, "the agent's exported policies loaded on this node changed; following their events");
        *cur = names;
        true
    });
}

/// Stores the new statuses; a view whose status changed is told once.
fn publish(status: &HookViewStatus, metrics: &Metrics, views: BTreeMap<HookView, ViewStatus>) {
    let mut cur = status.write();
    for (view, new) in views {
        if cur.get(&view) == Some(&new) {
            continue;
        }
        let (word, detail) = match &new {
            ViewStatus::Active { policy, .. } => ("active", policy.clone()),
            ViewStatus::Pending { detail, .. } => ("pending", detail.clone()),
            ViewStatus::Unavailable { reason } => ("unavailable", reason.clone()),
        };
        HookViewChanged {
            view: view.as_str(),
            active: new.is_active(),
            status: word,
            detail: &detail,
        }
        .emit(metrics);
        cur.insert(view, new);
    }
}
