//! The Learner actor: a thin shell around the pure machine (`machine::step`).
//! It hands changed profiles to the Checkpointer and reports new learning only
//! once the Checkpointer says it is durable.
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::api::metrics::Metrics;
use crate::store::checkpointer::{Checkpointer, Persist};
use crate::time::now_ms;

use super::config::LearnerConfig;
use super::machine::{durability_of, step, Durability, Effect, LearnerInput};
use super::observation::Observation;
use super::profile::{PartialReason, Profile};

/// Bounded mailbox: the ingester waits (backpressure) rather than queue forever.
pub const LEARNER_MAILBOX: usize = 256;

#[derive(Message)]
#[rtype(result = "()")]
pub struct Observe(pub Vec<Observation>);

#[derive(Message)]
#[rtype(result = "()")]
pub struct MarkPartial(pub PartialReason);

/// An operator command (lock, unlock, reset). Resolves with the profile once
/// the change is durable.
#[derive(Message)]
#[rtype(result = "Result<Profile, String>")]
pub struct Operate(pub LearnerInput);

#[derive(Message)]
#[rtype(result = "Profile")]
pub struct GetProfile;

/// Shutdown: the learner's state was handed to the Checkpointer already.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopLearner;

pub struct LearnerActor {
    profile: Profile,
    cfg: LearnerConfig,
    checkpointer: Addr<Checkpointer>,
    metrics: Arc<Metrics>,
    /// Lazy changes (counters, last seen) not yet handed to the Checkpointer.
    dirty: bool,
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

    /// Persists according to the effects; reports durable news when confirmed.
    fn persist(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        match durability_of(&effects) {
            Durability::None => {}
            Durability::Lazy => self.dirty = true,
            Durability::Flush => {
                self.dirty = false;
                let send = self.checkpointer.send(Persist {
                    profile: self.profile.clone(),
                    durability: Durability::Flush,
                });
                let key = self.profile.key.clone();
                let metrics = self.metrics.clone();
                ctx.spawn(send.into_actor(self).map(move |res, act, _| {
                    let error = match res {
                        Ok(Ok(())) => return report_durable(&key, &effects, &metrics),
                        Ok(Err(e)) => e,
                        Err(e) => e.to_string(),
                    };
                    tracing::error!(key = %key, error = %error, "profile change not yet durable; retrying on the next tick");
                    act.dirty = true;
                }));
            }
        }
    }
}

/// Logs and counts what is now on disk: only durable learning is reported.
fn report_durable(key: &super::key::LearnerKey, effects: &[Effect], metrics: &Metrics) {
    for e in effects {
        match e {
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
            if act.dirty {
                act.dirty = false;
                let send = act.checkpointer.send(Persist {
                    profile: act.profile.clone(),
                    durability: Durability::Lazy,
                });
                ctx.spawn(send.into_actor(act).map(|res, act, _| {
                    if !matches!(res, Ok(Ok(()))) {
                        act.dirty = true;
                    }
                }));
            }
        });
    }
}

impl Handler<Observe> for LearnerActor {
    type Result = ();
    fn handle(&mut self, msg: Observe, ctx: &mut Self::Context) {
        let effects = self.apply(msg.0.into_iter().map(LearnerInput::Observe).collect());
        self.persist(effects, ctx);
    }
}

impl Handler<MarkPartial> for LearnerActor {
    type Result = ();
    fn handle(&mut self, msg: MarkPartial, ctx: &mut Self::Context) {
        let effects = self.apply(vec![LearnerInput::MarkPartial(msg.0)]);
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
    type Result = ResponseActFuture<Self, Result<Profile, String>>;
    fn handle(&mut self, msg: Operate, _: &mut Self::Context) -> Self::Result {
        let result = step(&mut self.profile, msg.0, &self.cfg);
        let effects = match result {
            Ok(e) => e,
            Err(e) => return Box::pin(actix::fut::ready(Err(e.to_string()))),
        };
        let profile = self.profile.clone();
        let key = profile.key.clone();
        let metrics = self.metrics.clone();
        let send = self.checkpointer.send(Persist {
            profile: profile.clone(),
            durability: Durability::Flush,
        });
        Box::pin(send.into_actor(self).map(move |res, _, _| match res {
            Ok(Ok(())) => {
                report_durable(&key, &effects, &metrics);
                Ok(profile)
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        }))
    }
}

impl Handler<StopLearner> for LearnerActor {
    type Result = ();
    fn handle(&mut self, _: StopLearner, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
