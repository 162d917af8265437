//! The learner's step function: one input, the profile, the config in; the
//! updated profile and what the shell must make durable out. Pure: no I/O, no
//! clock (time arrives inside inputs), so it is tested without actors or sleeps.
//!
//! `step` first classifies the input into a table event and asks the table
//! (`LearnerState::on`) where it leads; only then does it touch the profile, so a
//! refused input changes nothing.
use serde::{Deserialize, Serialize};

use super::completeness::{InstanceSighting, ReasonEvent, ReasonState};
use super::config::LearnerConfig;
use super::hook_view::HookView;
use super::observation::FactSource;
use super::observation::Observation;
use super::profile::{ExecutableRecord, PartialReason, Profile};
use super::state::{InvalidTransition, LearnerEvent, LearnerState};
use super::violation::{Recorded, ViolationMode, ViolationSeen};
use crate::time::UnixMillis;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LearnerInput {
    /// An executable was seen running in this key's container.
    Observe(Observation),
    /// Time passed; lets `Learning` become `Stable` without new observations.
    Tick { now: UnixMillis },
    /// Operator: freeze the profile; new executables become deviations.
    Lock { now: UnixMillis },
    /// Operator: resume learning; a new learning period starts at `now`.
    Unlock { now: UnixMillis },
    /// A process of this key exited. Its binary is learned (source `exit`)
    /// only when the profile lacks it: then its exec was missed. `gap`: the
    /// process started after the stream was live, so its exec was dropped and
    /// the profile is marked `events-dropped`. A known binary adds nothing.
    ExitSeen { observation: Observation, gap: bool },
    /// The shell learned at `at` that this profile may miss executables.
    MarkPartial {
        reason: PartialReason,
        at: UnixMillis,
    },
    /// Operator: forget executables, deviations and drift count and learn again
    /// from `now`. Valid in every state (an operator must always be able to
    /// start over). `partial_reasons` and `created_at` are kept: forgetting what
    /// was learned does not make earlier missed events seen.
    Reset { now: UnixMillis },
    /// A container instance of this key has a live process.
    InstanceSeen(InstanceSighting),
    /// The instance's last live process ended (an exit).
    InstanceGone { id: String, at: UnixMillis },
    /// A snapshot shows exactly these instances live; the others are gone.
    InstancesLive { ids: Vec<String>, at: UnixMillis },
    /// Time passed: every marked reason whose healing rule holds clears.
    Heal { now: UnixMillis },
    /// A snapshot succeeded: `no-snapshot` clears.
    SnapshotSucceeded { at: UnixMillis },
    /// An enforcement hook compared `hook_path` for an exec of `path` (an
    /// event of the agent's observe policy tied to that exec, or a `procFS`
    /// snapshot entry, which is the `loaded` view of itself). Recorded on the
    /// executable (or deviation) of `path`; an unknown path adds nothing.
    HookSeen {
        path: String,
        view: HookView,
        hook_path: String,
    },
    /// A container instance of this key ran in pod `pod`, labelled `labels`
    /// (instance-specific labels already dropped).
    PodLabelsSeen {
        labels: crate::learner::pod_labels::LabelSet,
        pod: String,
    },
    /// One of the agent's exported policies denied (or, in monitor mode,
    /// would have denied) an exec of this container.
    PolicyViolation(ViolationSeen),
    /// Operator: allow `path` (as the policy checks it): it joins the profile
    /// with source `operator` (its hook views are the path itself) and its
    /// violations are cleared. Valid in every state, no drift.
    Allow { path: String, now: UnixMillis },
    /// Operator: acknowledge violation `id`: kept, no longer active.
    Acknowledge { id: String },
    /// One of the agent's own enforcing policies killed an exec of `path`
    /// that started at `exec_started_at` (a raw-tracepoint `Sigkill` still
    /// lets Tetragon report the `process_exec` first). If that exec is what
    /// put `path` in the profile (first seen at or after it started), it is
    /// taken out again: a denied exec must never enter the allow-list. A path
    /// learned before stays (the kill says the policy is stale, not the path).
    Denied {
        path: String,
        exec_started_at: UnixMillis,
    },
}

/// What changed, for the shell: anything but `Touched`/`Nothing` must be durable
/// before it is reported (as learned, as a deviation, as a new state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    NewExecutable {
        path: String,
    },
    NewDeviation {
        path: String,
    },
    StateChanged {
        from: LearnerState,
        to: LearnerState,
        reason: LearnerEvent,
    },
    MarkedPartial {
        reason: PartialReason,
    },
    /// A partial reason cleared by its rule at `at`.
    Healed {
        reason: PartialReason,
        at: UnixMillis,
    },
    /// The profile was wiped by `Reset`; the numbers are what was forgotten.
    Reset {
        executables: usize,
        deviations: usize,
    },
    /// A hook path was added to an executable's view: it changes what an
    /// exported policy allows, so it is flushed (not reported as news).
    NewHookPath {
        path: String,
        view: HookView,
        hook_path: String,
    },
    /// An executable learned from an exec the agent's policy killed was
    /// taken out of the profile.
    Unlearned {
        path: String,
    },
    /// A violation not held before.
    NewViolation {
        id: String,
        mode: ViolationMode,
    },
    /// The operator allowed a path; `cleared` violations went with it.
    Allowed {
        path: String,
        cleared: usize,
    },
    /// The operator acknowledged a violation.
    Acknowledged {
        id: String,
    },
    /// Only counters / last-seen / flags changed: may be checkpointed lazily.
    Touched,
    /// The input changed nothing.
    Nothing,
}

/// How urgently the effects of a step must reach disk. Ordered, so the urgency
/// of a batch is its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    None,
    Lazy,
    Flush,
}

impl Effect {
    pub fn durability(&self) -> Durability {
        match self {
            Self::Nothing => Durability::None,
            Self::Touched => Durability::Lazy,
            Self::NewExecutable { .. }
            | Self::NewDeviation { .. }
            | Self::StateChanged { .. }
            | Self::MarkedPartial { .. }
            | Self::Healed { .. }
            | Self::NewHookPath { .. }
            | Self::Unlearned { .. }
            | Self::NewViolation { .. }
            | Self::Allowed { .. }
            | Self::Acknowledged { .. }
            | Self::Reset { .. } => Durability::Flush,
        }
    }
}

/// The most urgent durability among `effects`.
pub fn durability_of(effects: &[Effect]) -> Durability {
    effects
        .iter()
        .map(Effect::durability)
        .max()
        .unwrap_or(Durability::None)
}

/// A new executable (or, while locked, a new deviation) that does not fit under
/// `max_executables`: it is not recorded, the profile is marked partial.
fn over_capacity(profile: &Profile, obs: &Observation, cfg: &LearnerConfig) -> bool {
    if profile.knows(&obs.path) {
        return false;
    }
    match profile.state {
        LearnerState::Locked => {
            !profile.deviations.contains_key(&obs.path)
                && profile.deviations.len() >= cfg.max_executables
        }
        _ => profile.executables.len() >= cfg.max_executables,
    }
}

/// What `input` means to the transition table, given the profile.
pub fn classify(profile: &Profile, input: &LearnerInput, cfg: &LearnerConfig) -> LearnerEvent {
    match input {
        // Known first: the common case, and a known path is never over
        // capacity (one lookup instead of two).
        LearnerInput::Observe(obs) if profile.knows(&obs.path) => LearnerEvent::KnownExecutable,
        // Not a new executable for the table: nothing is learned, no drift.
        LearnerInput::Observe(obs) if over_capacity(profile, obs, cfg) => LearnerEvent::MarkPartial,
        LearnerInput::Observe(_) => LearnerEvent::NewExecutable,
        LearnerInput::ExitSeen { observation, .. } if knows_or_logged(profile, observation) => {
            LearnerEvent::KnownExecutable
        }
        LearnerInput::ExitSeen { observation, .. } if over_capacity(profile, observation, cfg) => {
            LearnerEvent::MarkPartial
        }
        LearnerInput::ExitSeen { .. } => LearnerEvent::NewExecutable,
        LearnerInput::Tick { now } if profile.is_quiet_at(*now, cfg) => LearnerEvent::Quiet,
        LearnerInput::Tick { .. } => LearnerEvent::Tick,
        LearnerInput::Lock { .. } => LearnerEvent::Lock,
        LearnerInput::Unlock { .. } => LearnerEvent::Unlock,
        LearnerInput::MarkPartial { .. } => LearnerEvent::MarkPartial,
        LearnerInput::Reset { .. } => LearnerEvent::Reset,
        LearnerInput::InstanceSeen(_)
        | LearnerInput::InstanceGone { .. }
        | LearnerInput::InstancesLive { .. }
        | LearnerInput::PodLabelsSeen { .. } => LearnerEvent::Instance,
        LearnerInput::Heal { .. } | LearnerInput::SnapshotSucceeded { .. } => LearnerEvent::Heal,
        // A fact about an executable already learned (or not at all): never
        // a new one, so never drift.
        LearnerInput::HookSeen { .. }
        | LearnerInput::Denied { .. }
        | LearnerInput::PolicyViolation(_)
        | LearnerInput::Allow { .. }
        | LearnerInput::Acknowledge { .. } => LearnerEvent::KnownExecutable,
    }
}

/// An exit teaches nothing when its binary is in the profile, or (while
/// locked) already recorded as a deviation.
fn knows_or_logged(profile: &Profile, obs: &Observation) -> bool {
    profile.knows(&obs.path)
        || (profile.state == LearnerState::Locked && profile.deviations.contains_key(&obs.path))
}

/// Marks `reason` at `at`: a new mark is an effect; a new gap time for a
/// reason already marked is a (lazy) change too.
fn mark(profile: &mut Profile, reason: PartialReason, at: UnixMillis, effects: &mut Vec<Effect>) {
    let t = &mut profile.tracking;
    let mut moved = false;
    if reason == PartialReason::EventsDropped && t.gap_at.is_none_or(|g| g < at) {
        t.gap_at = Some(at);
        moved = true;
    }
    t.healed_at.remove(&reason);
    if profile.partial_reasons.insert(reason) {
        effects.push(Effect::MarkedPartial { reason });
    } else if moved {
        effects.push(Effect::Touched);
    }
}

/// Clears `reason` at `now` if it is marked and the table lets it heal.
fn heal(profile: &mut Profile, reason: PartialReason, now: UnixMillis, effects: &mut Vec<Effect>) {
    let state = ReasonState::of(profile.partial_reasons.contains(&reason));
    if state != ReasonState::Marked {
        return;
    }
    if let Ok(ReasonState::Clear) = state.on(reason, ReasonEvent::Heal) {
        profile.partial_reasons.remove(&reason);
        profile.tracking.healed_at.insert(reason, now);
        effects.push(Effect::Healed { reason, at: now });
    }
}

/// Applies one input. Returns a non-empty list of effects (`[Nothing]` when
/// nothing changed), or `InvalidTransition` with the profile untouched.
///
/// Timestamps that open a window (`learning_since`, `last_new_at`) only move
/// forward (except on `Reset`), so a clock stepping back can delay `Stable` but
/// never hasten it, and nothing here can overflow or panic.
pub fn step(
    profile: &mut Profile,
    input: LearnerInput,
    cfg: &LearnerConfig,
) -> Result<Vec<Effect>, InvalidTransition> {
    let event = classify(profile, &input, cfg);
    let from = profile.state;
    let to = from.on(event)?;
    let mut effects = Vec::new();
    match input {
        LearnerInput::Observe(_) if event == LearnerEvent::MarkPartial => {
            if profile
                .partial_reasons
                .insert(PartialReason::TooManyExecutables)
            {
                effects.push(Effect::MarkedPartial {
                    reason: PartialReason::TooManyExecutables,
                });
            }
        }
        LearnerInput::Observe(obs) => observe(profile, obs, from, &mut effects),
        LearnerInput::ExitSeen { observation, gap } => {
            let at = observation.at;
            match event {
                LearnerEvent::KnownExecutable => {}
                LearnerEvent::MarkPartial => {
                    mark(profile, PartialReason::TooManyExecutables, at, &mut effects)
                }
                _ => observe(profile, observation, from, &mut effects),
            }
            if gap && event != LearnerEvent::KnownExecutable {
                mark(profile, PartialReason::EventsDropped, at, &mut effects);
            }
        }
        LearnerInput::Tick { .. } | LearnerInput::Lock { .. } => {}
        LearnerInput::Unlock { now } => {
            profile.learning_since = profile.learning_since.max(now);
        }
        LearnerInput::MarkPartial { reason, at } => mark(profile, reason, at, &mut effects),
        LearnerInput::InstanceSeen(s) => {
            if profile.tracking.seen(&s) {
                effects.push(Effect::Touched);
            }
        }
        LearnerInput::InstanceGone { id, at } => {
            if profile.tracking.gone(&id, at) {
                effects.push(Effect::Touched);
            }
        }
        LearnerInput::InstancesLive { ids, at } => {
            if profile.tracking.only_live(&ids, at) {
                effects.push(Effect::Touched);
            }
        }
        LearnerInput::Heal { now } => {
            for reason in [
                PartialReason::StartedBeforeAgent,
                PartialReason::EventsDropped,
            ] {
                if profile
                    .tracking
                    .rule_holds(reason, now, cfg.min_learning_ms)
                {
                    heal(profile, reason, now, &mut effects);
                }
            }
        }
        LearnerInput::SnapshotSucceeded { at } => {
            heal(profile, PartialReason::NoSnapshot, at, &mut effects);
        }
        LearnerInput::HookSeen {
            path,
            view,
            hook_path,
        } => {
            let rec = match profile.executables.get_mut(&path) {
                Some(rec) => Some(rec),
                None => profile.deviations.get_mut(&path),
            };
            if rec.is_some_and(|rec| rec.views.add(view, &hook_path)) {
                effects.push(Effect::NewHookPath {
                    path,
                    view,
                    hook_path,
                });
            }
        }
        LearnerInput::PolicyViolation(seen) => {
            let mode = seen.mode;
            match profile.violations.record(seen) {
                (id, Recorded::New) => effects.push(Effect::NewViolation { id, mode }),
                (_, Recorded::NewEvicting | Recorded::Again) => effects.push(Effect::Touched),
            }
        }
        LearnerInput::Allow { path, now } => {
            let cleared = profile.violations.clear_path(&path);
            profile.deviations.remove(&path);
            let obs = Observation {
                path: path.clone(),
                at: now,
                source: FactSource::Operator,
                exec_probe: false,
                exec_session: false,
            };
            let rec = profile
                .executables
                .entry(path.clone())
                .or_insert_with(|| ExecutableRecord::first(&obs));
            rec.sources.insert(FactSource::Operator);
            for view in HookView::ALL {
                rec.views.add(view, &path);
            }
            effects.push(Effect::Allowed { path, cleared });
        }
        LearnerInput::Acknowledge { id } => {
            if profile.violations.acknowledge(&id) == Some(true) {
                effects.push(Effect::Acknowledged { id });
            }
        }
        LearnerInput::PodLabelsSeen { labels, pod } => {
            if profile.pod_labels.observe(labels, &pod) {
                effects.push(Effect::Touched);
            }
        }
        LearnerInput::Denied {
            path,
            exec_started_at,
        } => {
            let introduced_by_it = profile
                .executables
                .get(&path)
                .is_some_and(|rec| rec.first_seen >= exec_started_at);
            if introduced_by_it {
                profile.executables.remove(&path);
                effects.push(Effect::Unlearned { path });
            }
        }
        LearnerInput::Reset { now } => {
            effects.push(Effect::Reset {
                executables: profile.executables.len(),
                deviations: profile.deviations.len(),
            });
            profile.executables.clear();
            profile.deviations.clear();
            profile.drift_count = 0;
            profile.learning_since = now;
            profile.last_new_at = now;
        }
    }
    profile.state = to;
    if from != to {
        effects.push(Effect::StateChanged {
            from,
            to,
            reason: event,
        });
    }
    if effects.is_empty() {
        effects.push(Effect::Nothing);
    }
    Ok(effects)
}

/// Routes one sighting: a known executable is touched in every state; a new one
/// is learned, except while `Locked`, where it becomes (or touches) a deviation.
fn observe(profile: &mut Profile, obs: Observation, from: LearnerState, effects: &mut Vec<Effect>) {
    if let Some(rec) = profile.executables.get_mut(&obs.path) {
        rec.observe(&obs);
        effects.push(Effect::Touched);
        return;
    }
    if from == LearnerState::Locked {
        if let Some(rec) = profile.deviations.get_mut(&obs.path) {
            rec.observe(&obs);
            effects.push(Effect::Touched);
        } else {
            let rec = ExecutableRecord::first(&obs);
            effects.push(Effect::NewDeviation {
                path: obs.path.clone(),
            });
            profile.deviations.insert(obs.path, rec);
        }
        return;
    }
    if from == LearnerState::Stable {
        profile.drift_count = profile.drift_count.saturating_add(1);
        profile.learning_since = profile.learning_since.max(obs.at);
    }
    profile.last_new_at = profile.last_new_at.max(obs.at);
    let rec = ExecutableRecord::first(&obs);
    effects.push(Effect::NewExecutable {
        path: obs.path.clone(),
    });
    profile.executables.insert(obs.path, rec);
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
