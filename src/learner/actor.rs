//! The Learner actor: a thin shell around two pure parts, the machine
//! (`machine::step`: what a profile becomes) and the report ledger (`ledger`:
//! what to write when, and which news is durable). It sends the writes the
//! ledger asks for to the Checkpointer and reports news (log line, metric)
//! only once the ledger says it is durable. A change whose write failed stays
//! owed: it is written again, and reported, on a later tick.
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::telemetry::events::{
    DeviationSeen, Emit, ExecutableLearned, LearnerStateChanged, PartialReasonHealed,
    PartialReasonMarked, ViolationRecorded,
};
use crate::telemetry::metrics::Metrics;
use crate::time::now_ms;

use super::config::LearnerConfig;
use super::key::LearnerKey;
use super::ledger::{still_held, ReportLedger, Write};
use super::machine::{step, Durability, Effect, LearnerInput};
use super::observation::FactSource;
use super::persist::{Persist, PersistError};
use super::profile::Profile;

/// Bounded mailbox: the ingester waits (backpressure) rather than queue forever.
/// The ingester hands a learner one `Apply` per batch without waiting for it
/// to be applied, so this bounds what a learner can have waiting: at most 16
/// batches' worth of its inputs (a learner runs on the ingester's thread and
/// usually takes each before the next batch comes).
pub const LEARNER_MAILBOX: usize = 16;

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
    NotDurable(#[source] PersistError),
}

#[derive(Message)]
#[rtype(result = "Profile")]
pub struct GetProfile;

/// Shutdown: write the profile as it is now (counters included), wait until it
/// is durable, then stop.
#[derive(Message)]
#[rtype(result = "Result<(), DrainError>")]
pub struct Drain;

/// A learner's last write at shutdown failed.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("{key}: {source}")]
    NotWritten {
        key: LearnerKey,
        #[source]
        source: Box<PersistError>,
    },
    /// The learner had stopped already.
    #[error(transparent)]
    Gone(#[from] MailboxError),
}

pub struct LearnerActor {
    profile: Profile,
    cfg: LearnerConfig,
    /// Whoever writes profiles to disk (the Checkpointer).
    writer: Recipient<Persist>,
    metrics: Arc<Metrics>,
    /// What is written and what may be reported: the actor only carries out
    /// the writes it asks for and tells it how they ended.
    ledger: ReportLedger,
    tick: Duration,
}

impl LearnerActor {
    pub fn new(
        profile: Profile,
        cfg: LearnerConfig,
        writer: Recipient<Persist>,
        metrics: Arc<Metrics>,
        tick: Duration,
    ) -> Self {
        Self {
            profile,
            cfg,
            writer,
            metrics,
            ledger: ReportLedger::default(),
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
                    tracing::warn!(key = %crate::log_quote::display(&self.profile.key), error = %e, "learner refused an input")
                }
            }
        }
        effects
    }

    /// The profile as it is now, as the ledger's write `w`.
    fn persist(&self, w: Write) -> Persist {
        Persist {
            profile: self.profile.clone(),
            durability: w.durability,
            revision: w.revision,
        }
    }

    /// Sends a write the ledger asked for; its answer goes back to the ledger.
    fn write(&mut self, w: Write, ctx: &mut Context<Self>) {
        let send = self.writer.send(self.persist(w));
        ctx.spawn(send.into_actor(self).map(move |res, act, _| {
            // Against the profile as it is now: what a Reset wiped meanwhile
            // is not reported.
            if let Err(error) = settle(&mut act.ledger, w, res, &act.profile, &act.metrics) {
                if w.durability == Durability::Flush {
                    tracing::error!(key = %crate::log_quote::display(&act.profile.key), error = %error, "profile change not yet durable; retrying on the next tick");
                }
            }
        }));
    }
}

/// What the writer answered to a write.
type Answer = Result<Result<(), PersistError>, MailboxError>;

/// Tells the ledger how write `w` ended and reports the news that became
/// durable, if `written` (the profile it is checked against) still holds it.
fn settle(
    ledger: &mut ReportLedger,
    w: Write,
    answer: Answer,
    written: &Profile,
    metrics: &Metrics,
) -> Result<(), PersistError> {
    let error = match answer {
        Ok(Ok(())) => {
            let news = still_held(written, ledger.confirmed(w.revision));
            report_durable(written, &news, metrics);
            return Ok(());
        }
        Ok(Err(e)) => e,
        Err(e) => PersistError::from(e),
    };
    ledger.failed(w.revision);
    Err(error)
}

/// Logs and counts news that is now on disk (in `written`): only durable
/// learning is reported.
fn report_durable(written: &Profile, news: &[Effect], metrics: &Metrics) {
    let key = &written.key;
    for e in news {
        match e {
            Effect::NewExecutable { path } => {
                let source = written.executables.get(path).map(|r| r.source);
                ExecutableLearned {
                    key,
                    path,
                    source: &source,
                    from_exit: source == Some(FactSource::Exit),
                }
                .emit(metrics)
            }
            Effect::MarkedPartial { reason } => PartialReasonMarked {
                key,
                reason: reason.as_str(),
            }
            .emit(metrics),
            Effect::Healed { reason, at } => PartialReasonHealed {
                key,
                reason: reason.as_str(),
                at: *at,
                complete: written.partial_reasons.is_empty(),
            }
            .emit(metrics),
            Effect::NewDeviation { path } => DeviationSeen { key, path }.emit(metrics),
            Effect::NewViolation { id, mode } => {
                if let Some(v) = written.violations.by_id.get(id) {
                    ViolationRecorded {
                        key,
                        id,
                        mode: mode.as_str(),
                        policy: &v.policy,
                        path: &v.path,
                    }
                    .emit(metrics)
                }
            }
            Effect::StateChanged { from, to, reason } => LearnerStateChanged {
                key,
                from: from.as_str(),
                to: to.as_str(),
                reason: reason.as_str(),
            }
            .emit(metrics),
            _ => {}
        }
    }
}

impl Actor for LearnerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(LEARNER_MAILBOX);
        ctx.run_interval(self.tick, |act, ctx| {
            let now = now_ms();
            let effects = act.apply(vec![LearnerInput::Tick { now }, LearnerInput::Heal { now }]);
            let writes = [act.ledger.owe(effects), act.ledger.tick()];
            for w in writes.into_iter().flatten() {
                act.write(w, ctx);
            }
        });
    }
}

impl Handler<Apply> for LearnerActor {
    type Result = ();
    fn handle(&mut self, msg: Apply, ctx: &mut Self::Context) {
        let effects = self.apply(msg.0);
        if let Some(w) = self.ledger.owe(effects) {
            self.write(w, ctx);
        }
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
        let w = self.ledger.owe_now(effects);
        // Reported against what was written: the operator's answer is that profile.
        let profile = self.profile.clone();
        let send = self.writer.send(self.persist(w));
        Box::pin(send.into_actor(self).map(move |res, act, _| {
            settle(&mut act.ledger, w, res, &profile, &act.metrics)
                .map(|()| profile)
                .map_err(OperateError::NotDurable)
        }))
    }
}

impl Handler<Drain> for LearnerActor {
    // Atomic: nothing else runs on this learner until it is written and stopped.
    type Result = AtomicResponse<Self, Result<(), DrainError>>;
    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> Self::Result {
        // This write supersedes every earlier one: it reports what they carried
        // (their answers die with the actor).
        let w = self.ledger.drain();
        let key = self.profile.key.clone();
        let send = self.writer.send(self.persist(w));
        AtomicResponse::new(Box::pin(send.into_actor(self).map(move |res, act, ctx| {
            ctx.stop();
            settle(&mut act.ledger, w, res, &act.profile, &act.metrics).map_err(|e| {
                DrainError::NotWritten {
                    key,
                    source: Box::new(e),
                }
            })
        })))
    }
}
