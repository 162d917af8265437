//! The Learner actor: a thin shell around the pure machine (`machine::step`).
//! It hands changed profiles to the Checkpointer and reports new learning (log
//! line, metric) only once the Checkpointer says it is durable. A change whose
//! write failed stays owed: it is written again, and reported, on a later tick.
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::api::metrics::Metrics;
use crate::store::checkpointer::{Checkpointer, Persist};
use crate::time::now_ms;

use super::config::LearnerConfig;
use super::key::LearnerKey;
use super::machine::{durability_of, step, Durability, Effect, LearnerInput};
use super::profile::Profile;

/// Bounded mailbox: the ingester waits (backpressure) rather than queue forever.
pub const LEARNER_MAILBOX: usize = 256;

/// Inputs from the ingester (observations, partial marks), applied in order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Apply(pub Vec<LearnerInput>);

/// An operator command (lock, unlock, reset). Resolves with the profile once
/// the change is durable.
#[derive(Message)]
#[rtype(result = "Result<Profile, OperateError>")]
pub struct Operate(pub LearnerInput);

/// An operator command for the learner of `key`, for whoever routes by key
/// (the ingester); it creates no learner. The admin API holds a `Recipient` of
/// it, so it names no router.
#[derive(Message)]
#[rtype(result = "Result<Profile, OperateError>")]
pub struct OperateOn {
    pub key: LearnerKey,
    pub input: LearnerInput,
}

/// Why an operator command did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OperateError {
    #[error("no learner {0}; see `debug list` for the keys")]
    NoLearner(String),
    /// The state machine refused it (e.g. locking a locked profile).
    #[error("{0}")]
    Refused(String),
    #[error("the change could not be made durable: {0}; it will be retried")]
    NotDurable(String),
}

#[derive(Message)]
#[rtype(result = "Profile")]
pub struct GetProfile;

/// Shutdown: write the profile as it is now (counters included), wait until it
/// is durable, then stop.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Drain;

pub struct LearnerActor {
    profile: Profile,
    cfg: LearnerConfig,
    checkpointer: Addr<Checkpointer>,
    metrics: Arc<Metrics>,
    /// Lazy changes (counters, last seen) not yet handed to the Checkpointer.
    dirty: bool,
    /// Changes that must be durable before they are reported, not yet confirmed.
    unreported: Vec<Effect>,
    /// A flush failed: write again on the next tick.
    needs_flush: bool,
    /// Increases with every profile sent, so the Checkpointer keeps the newest.
    revision: u64,
    /// Effects of flushes sent and not yet confirmed, by revision.
    in_flight: std::collections::BTreeMap<u64, Vec<Effect>>,
    tick: Duration,
}

impl LearnerActor {
    pub fn new(
        profile: Profile,
        cfg: LearnerConfig,
        checkpointer: Addr<Checkpointer>,
        metrics: Arc<Metrics>,
        tick: Duration,
    ) -> Self {
        Self {
            profile,
            cfg,
            checkpointer,
            metrics,
            dirty: false,
            unreported: Vec::new(),
            needs_flush: false,
            revision: 0,
            in_flight: std::collections::BTreeMap::new(),
            tick,
        }
    }

    /// Runs inputs through the machine; returns the effects (refused inputs are
    /// logged, never applied).
    fn apply(&mut self, inputs: Vec<LearnerInput>) -> Vec<Effect> {
        let mut effects = Vec::new();
        for input in inputs {
            match step(&mut self.profile, input, &self.cfg) {
                Ok(e) => effects.extend(e),
                Err(e) => {
                    tracing::warn!(key = %self.profile.key, error = %e, "learner refused an input")
                }
            }
        }
        effects
    }

    fn persist_message(&mut self, durability: Durability) -> Persist {
        self.revision += 1;
        Persist {
            profile: self.profile.clone(),
            durability,
            revision: self.revision,
        }
    }

    /// Hands the profile to the Checkpointer according to the effects.
    fn persist(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        match durability_of(&effects) {
            Durability::None => {}
            Durability::Lazy => self.dirty = true,
            Durability::Flush => {
                self.unreported.extend(effects);
                self.flush(ctx);
            }
        }
    }

    /// Writes durably now; reports what was owed once confirmed, keeps it owed
    /// (and retries on the next tick) when the write failed.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.dirty = false;
        self.needs_flush = false;
        let msg = self.persist_message(Durability::Flush);
        let revision = msg.revision;
        let owed = std::mem::take(&mut self.unreported);
        self.in_flight.insert(revision, owed);
        let send = self.checkpointer.send(msg);
        let key = self.profile.key.clone();
        ctx.spawn(send.into_actor(self).map(move |res, act, _| {
            // A Drain may have reported (and taken) it already.
            let Some(owed) = act.in_flight.remove(&revision) else { return };
            let error = match res {
                // Against the profile as it is now: what a Reset wiped meanwhile
                // is not reported.
                Ok(Ok(())) => return report_durable(&act.profile, &owed, &act.metrics),
                Ok(Err(e)) => e,
                Err(e) => e.to_string(),
            };
            tracing::error!(key = %key, error = %error, "profile change not yet durable; retrying on the next tick");
            act.unreported.extend(owed);
            act.needs_flush = true;
        }));
    }
}

/// Logs and counts what is now on disk: only durable learning is reported.
/// `profile` is what was just written: an effect it no longer holds (a Reset
/// came in between) is not reported.
fn report_durable(profile: &Profile, effects: &[Effect], metrics: &Metrics) {
    let key = &profile.key;
    for e in effects {
        match e {
            Effect::NewExecutable { path } if !profile.executables.contains_key(path) => {}
            Effect::NewDeviation { path } if !profile.deviations.contains_key(path) => {}
            Effect::NewExecutable { path } => {
                metrics.learned_executables.inc();
                tracing::info!(key = %key, path = %path.escape_debug(), "learned executable");
            }
            Effect::NewDeviation { path } => {
                metrics.deviations.inc();
                tracing::warn!(key = %key, path = %path.escape_debug(), "deviation from locked profile");
            }
            Effect::StateChanged { from, to, reason } => {
                tracing::info!(key = %key, from = from.as_str(), to = to.as_str(), reason = reason.as_str(), "learner state changed");
            }
            _ => {}
        }
    }
}

impl Actor for LearnerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(LEARNER_MAILBOX);
        ctx.run_interval(self.tick, |act, ctx| {
            let effects = act.apply(vec![LearnerInput::Tick { now: now_ms() }]);
            act.persist(effects, ctx);
            if act.needs_flush {
                act.flush(ctx);
            } else if act.dirty {
                act.dirty = false;
                let msg = act.persist_message(Durability::Lazy);
                let send = act.checkpointer.send(msg);
                ctx.spawn(send.into_actor(act).map(|res, act, _| {
                    if !matches!(res, Ok(Ok(()))) {
                        act.dirty = true;
                    }
                }));
            }
        });
    }
}

impl Handler<Apply> for LearnerActor {
    type Result = ();
    fn handle(&mut self, msg: Apply, ctx: &mut Self::Context) {
        let effects = self.apply(msg.0);
        self.persist(effects, ctx);
    }
}

impl Handler<GetProfile> for LearnerActor {
    type Result = MessageResult<GetProfile>;
    fn handle(&mut self, _: GetProfile, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.profile.clone())
    }
}

impl Handler<Operate> for LearnerActor {
    type Result = ResponseActFuture<Self, Result<Profile, OperateError>>;
    fn handle(&mut self, msg: Operate, _: &mut Self::Context) -> Self::Result {
        let effects = match step(&mut self.profile, msg.0, &self.cfg) {
            Ok(e) => e,
            Err(e) => {
                return Box::pin(actix::fut::ready(Err(OperateError::Refused(e.to_string()))))
            }
        };
        let mut owed = std::mem::take(&mut self.unreported);
        owed.extend(effects);
        self.dirty = false;
        let profile = self.profile.clone();
        let msg = self.persist_message(Durability::Flush);
        let send = self.checkpointer.send(msg);
        Box::pin(send.into_actor(self).map(move |res, act, _| {
            let error = match res {
                Ok(Ok(())) => {
                    report_durable(&profile, &owed, &act.metrics);
                    return Ok(profile);
                }
                Ok(Err(e)) => e,
                Err(e) => e.to_string(),
            };
            act.unreported.extend(owed);
            act.needs_flush = true;
            Err(OperateError::NotDurable(error))
        }))
    }
}

impl Handler<Drain> for LearnerActor {
    // Atomic: nothing else runs on this learner until it is written and stopped.
    type Result = AtomicResponse<Self, Result<(), String>>;
    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> Self::Result {
        // This write supersedes every earlier one: what they owed is reported
        // with it (their futures die with the actor).
        let mut owed: Vec<Effect> = std::mem::take(&mut self.in_flight)
            .into_values()
            .flatten()
            .collect();
        owed.append(&mut self.unreported);
        let key = self.profile.key.clone();
        let msg = self.persist_message(Durability::Flush);
        let send = self.checkpointer.send(msg);
        AtomicResponse::new(Box::pin(send.into_actor(self).map(move |res, act, ctx| {
            ctx.stop();
            match res {
                Ok(Ok(())) => {
                    report_durable(&act.profile, &owed, &act.metrics);
                    Ok(())
                }
                Ok(Err(e)) => Err(format!("{key}: {e}")),
                Err(e) => Err(format!("{key}: {e}")),
            }
        })))
    }
}
