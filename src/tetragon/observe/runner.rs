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

use super::enforcing::{is_agents_policy, OwnPolicies, OwnPolicy};
use super::plan::{all_unavailable, plan, Listed, ListedState, ViewStatus};
use super::policy::{HookViewChoice, ObserveShape};
use crate::learner::hook_view::HookView;
use crate::telemetry::events::{Emit, HookViewChanged, OwnPoliciesListed};
use crate::telemetry::metrics::{Metrics, PolicyGauge};
use crate::tetragon::address::TetragonAddress;
use crate::tetragon::client::{client, connect};
use crate::tetragon::proto::fine_guidance_sensors_client::FineGuidanceSensorsClient;
use crate::tetragon::proto::{
    AddTracingPolicyRequest, ListTracingPoliciesRequest, TracingPolicyState, TracingPolicyStatus,
};
use tonic::transport::Channel;

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
    pub modes: OwnPolicies,
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
    // One connection, kept across rounds; made again after any failure.
    let mut api: Option<Api> = None;
    loop {
        let settled = round(
            &cfg,
            &mut api,
            &status,
            &enforcing,
            &metrics,
            &mut failed_adds,
        )
        .await;
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
type Api = FineGuidanceSensorsClient<Channel>;

async fn round(
    cfg: &ObserveConfig,
    cached: &mut Option<Api>,
    status: &HookViewStatus,
    enforcing: &EnforcingWatch,
    metrics: &Metrics,
    failed_adds: &mut BTreeMap<ObserveShape, String>,
) -> bool {
    let mut api = match cached.take() {
        Some(api) => api,
        None => match connect(&cfg.address, cfg.connect_timeout).await {
            Ok(c) => client(c, 16 * 1024 * 1024),
            Err(e) => {
                // The connection actor reports Tetragon being away; the views
                // keep their last status until it answers again.
                tracing::debug!(error = %e, "observe policies: Tetragon not reachable");
                return false;
            }
        },
    };
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
            *cached = Some(api);
            return true;
        }
        Err(s) => {
            tracing::debug!(code = ?s.code(), error = s.message(), "observe policies: ListTracingPolicies failed");
            return false;
        }
    };
    publish_enforcing(enforcing, &listed, metrics);
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
        *cached = Some(api);
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
    *cached = Some(api);
    planned.add.is_empty()
        && planned
            .views
            .values()
            .all(|v| !matches!(v, ViewStatus::Pending { .. }))
}

/// The agent's exported policies in the list: modes now, names (a stream
/// re-subscription) only when they changed.
fn publish_enforcing(w: &EnforcingWatch, listed: &[TracingPolicyStatus], metrics: &Metrics) {
    let ours: BTreeMap<String, OwnPolicy> = listed
        .iter()
        .filter(|p| is_agents_policy(&p.name, &p.namespace))
        .map(|p| (p.name.clone(), OwnPolicy::from_status(p)))
        .collect();
    let gauges: Vec<PolicyGauge<'_>> = ours
        .values()
        .map(|p| PolicyGauge {
            name: &p.name,
            state: &p.state,
            kernel_memory: p.kernel_memory_bytes,
            actions: vec![("deny", true, p.enforced), ("deny", false, p.monitored)],
        })
        .collect();
    OwnPoliciesListed { policies: &gauges }.emit(metrics);
    let names: Vec<String> = ours
        .values()
        .filter(|p| p.state == "enabled")
        .map(|p| p.name.clone())
        .collect();
    let failed: Vec<&OwnPolicy> = ours.values().filter(|p| p.state == "load_error").collect();
    for p in failed {
        tracing::debug!(
            policy = p.name.as_str(),
            error = p.error.as_str(),
            "one of the agent's exported policies failed to load on this node"
        );
    }
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
