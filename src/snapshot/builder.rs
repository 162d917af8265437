//! The SnapshotBuilder actor: takes a snapshot when asked (after every
//! (re)connect, periodically, on retry) and hands it on as `SnapshotTaken` to
//! a `Recipient` that `agent.rs` wires (the ingester). Records what it used,
//! for health and metrics.
use std::sync::Arc;

use actix::prelude::*;
use parking_lot::RwLock;

use crate::telemetry::events::{self, Emit, SnapshotSucceeded};
use crate::telemetry::metrics::Metrics;
use crate::tetragon::connection::machine::SnapshotReason;
use crate::tetragon::connection::messages::{SnapshotUnavailable, TakeSnapshot};

use super::model::ProcessSnapshot;
use super::policy::{take, SnapshotOptions, SnapshotReport};

/// A snapshot to learn from; resolves once the recipient has taken it in.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SnapshotTaken(pub ProcessSnapshot);

/// A snapshot could not be taken. `after_connect`: it was the one asked for
/// right after the stream came up, so no snapshot has succeeded since the
/// agent (re)connected (learners are then partial: `no-snapshot`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SnapshotFailed {
    pub after_connect: bool,
}

/// The last snapshot's outcome, shared with health and the admin API.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SnapshotStatus {
    pub last_report: Option<SnapshotReport>,
    pub last_error: Option<String>,
    pub taken: u64,
    pub failed: u64,
}

pub struct SnapshotBuilder {
    opts: SnapshotOptions,
    deliver_to: Recipient<SnapshotTaken>,
    /// Told of failures (the ingester); `None` in setups that do not care.
    failures: Option<Recipient<SnapshotFailed>>,
    metrics: Arc<Metrics>,
    pub status: Arc<RwLock<SnapshotStatus>>,
}

impl SnapshotBuilder {
    pub fn new(
        opts: SnapshotOptions,
        deliver_to: Recipient<SnapshotTaken>,
        metrics: Arc<Metrics>,
        status: Arc<RwLock<SnapshotStatus>>,
    ) -> Self {
        Self {
            opts,
            deliver_to,
            failures: None,
            metrics,
            status,
        }
    }

    /// Also tells `to` of every failed snapshot.
    pub fn with_failures(mut self, to: Recipient<SnapshotFailed>) -> Self {
        self.failures = Some(to);
        self
    }
}

impl Actor for SnapshotBuilder {
    type Context = Context<Self>;
}

impl Handler<TakeSnapshot> for SnapshotBuilder {
    // Atomic: one snapshot at a time; a request that arrives meanwhile waits.
    type Result = AtomicResponse<Self, Result<(), SnapshotUnavailable>>;

    fn handle(&mut self, msg: TakeSnapshot, _: &mut Self::Context) -> Self::Result {
        let opts = self.opts.clone();
        let deliver_to = self.deliver_to.clone();
        let reason = msg.reason;
        let work = async move {
            let (snap, report) = take(&opts)
                .await
                .map_err(|e| (e.label(), SnapshotUnavailable(Box::new(e))))?;
            deliver_to
                .send(SnapshotTaken(snap))
                .await
                .map_err(|e| ("internal", SnapshotUnavailable(Box::new(e))))?;
            Ok::<_, (&'static str, SnapshotUnavailable)>(report)
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(move |res, act, _| {
            let mut st = act.status.write();
            match res {
                Ok(report) => {
                    SnapshotSucceeded {
                        reason: reason.as_str(),
                        source: report.source.as_str(),
                        processes: report.processes,
                        duration_ms: report.duration_ms,
                        fallback_reason: report
                            .fallback_reason
                            .as_ref()
                            .map(|w| w as &dyn std::fmt::Display),
                    }
                    .emit(&act.metrics);
                    st.taken += 1;
                    st.last_error = None;
                    st.last_report = Some(report);
                    Ok(())
                }
                Err((label, e)) => {
                    if let Some(to) = &act.failures {
                        // do_send: one small message per failed snapshot, never a flood.
                        to.do_send(SnapshotFailed {
                            after_connect: reason == SnapshotReason::StreamUp,
                        });
                    }
                    events::SnapshotFailed {
                        reason: reason.as_str(),
                        policy: act.opts.policy_name(),
                        label,
                        error: &e,
                    }
                    .emit(&act.metrics);
                    st.failed += 1;
                    st.last_error = Some(e.to_string());
                    Err(e)
                }
            }
        })))
    }
}
