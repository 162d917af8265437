//! Completeness that heals: which container instances of a learner key were
//! seen, from when, and the pure rules by which a partial reason clears.
//!
//! A profile is `partial` while it may miss executables. Two reasons can be
//! outgrown because a container's life is finite: a rollout or restart
//! replaces the instances whose past the agent did not see with instances it
//! saw from their start.
//! - `started-before-agent` clears when no live instance started before the
//!   agent saw it (every live instance was seen from its start) and one instance
//!   seen from its start has run for `min_learning`.
//! - `events-dropped` clears when every instance that was live during the gap is
//!   gone (every live instance started after the gap) and one such fresh
//!   instance has run for `min_learning`.
//! - `no-snapshot` clears on the next successful snapshot (an input of its own).
//!
//! The per-reason table (`ReasonState::on`) renders
//! `state-diagrams/completeness.mmd`.
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::profile::PartialReason;
use crate::diagram;
use crate::time::UnixMillis;

/// Gone instances kept (most recently gone first): enough to remember that one
/// ran long enough, not a history. Live instances are never forgotten (a node
/// runs at most a few hundred containers).
pub const MAX_GONE_INSTANCES: usize = 8;

/// One container instance (one container id) of a learner key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The container's start time from Tetragon's pod info; `None` when
    /// Tetragon gave none (such an instance can never prove anything).
    pub started_at: Option<UnixMillis>,
    /// The agent saw this instance from its start: it started after the
    /// agent's stream was first live, or within backfilled history.
    pub seen_from_start: bool,
    pub first_seen: UnixMillis,
    pub last_seen: UnixMillis,
    /// When its last live process went away; `None` while it is live.
    pub gone_at: Option<UnixMillis>,
}

impl Instance {
    pub fn is_live(&self) -> bool {
        self.gone_at.is_none()
    }

    /// How long it has run (until it was gone, else until `now`); 0 when its
    /// start is unknown.
    pub fn ran_for(&self, now: UnixMillis) -> u64 {
        match self.started_at {
            Some(start) => self.gone_at.unwrap_or(now).saturating_sub(start),
            None => 0,
        }
    }

    /// Started after a gap detected at `gap_at`. With no gap time (a profile
    /// marked before gap times were kept, i.e. by an earlier agent run), an
    /// instance seen from its start by this version's stream started after it.
    fn fresh_after(&self, gap_at: Option<UnixMillis>) -> bool {
        match gap_at {
            Some(gap) => self.started_at.is_some_and(|s| s > gap),
            None => self.seen_from_start,
        }
    }
}

/// A sighting of an instance, as the ingester (or backfill) reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSighting {
    /// Tetragon's container id (`containerd://...`).
    pub id: String,
    pub started_at: Option<UnixMillis>,
    /// The caller's judgement: the agent saw this instance from its start
    /// (started after the stream was first live, or inside backfilled history).
    pub seen_from_start: bool,
    pub at: UnixMillis,
}

/// What a learner tracks to heal: its instances, the latest gap, and when each
/// reason last cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracking {
    /// By container id.
    #[serde(default)]
    pub instances: BTreeMap<String, Instance>,
    /// When `events-dropped` was last marked: the gap is before it.
    #[serde(default)]
    pub gap_at: Option<UnixMillis>,
    /// When each reason last cleared (removed when it is marked again).
    #[serde(default)]
    pub healed_at: BTreeMap<PartialReason, UnixMillis>,
}

impl Tracking {
    /// Records a sighting: a new instance, or one seen again (live again if it
    /// was gone). `seen_from_start` only ever turns on: a later, better-informed
    /// source (backfill) may know more, never less.
    pub fn seen(&mut self, s: &InstanceSighting) -> bool {
        match self.instances.get_mut(&s.id) {
            Some(i) => {
                let before = i.clone();
                i.started_at = i.started_at.or(s.started_at);
                i.seen_from_start |= s.seen_from_start;
                i.first_seen = i.first_seen.min(s.at);
                i.last_seen = i.last_seen.max(s.at);
                i.gone_at = None;
                *i != before
            }
            None => {
                self.instances.insert(
                    s.id.clone(),
                    Instance {
                        started_at: s.started_at,
                        seen_from_start: s.seen_from_start,
                        first_seen: s.at,
                        last_seen: s.at,
                        gone_at: None,
                    },
                );
                true
            }
        }
    }

    /// Instance `id` has no live process anymore. Unknown ids change nothing.
    pub fn gone(&mut self, id: &str, at: UnixMillis) -> bool {
        let changed = match self.instances.get_mut(id) {
            Some(i) if i.is_live() => {
                i.gone_at = Some(at.max(i.first_seen));
                true
            }
            _ => false,
        };
        self.forget_old();
        changed
    }

    /// A snapshot shows exactly `live` as this key's live instances: every
    /// other live instance is gone.
    pub fn only_live(&mut self, live: &[String], at: UnixMillis) -> bool {
        let others: Vec<String> = self
            .instances
            .iter()
            .filter(|(id, i)| i.is_live() && !live.contains(id))
            .map(|(id, _)| id.clone())
            .collect();
        let mut changed = false;
        for id in others {
            changed |= self.gone(&id, at);
        }
        changed
    }

    /// Keeps at most [`MAX_GONE_INSTANCES`] gone instances, the most recently gone.
    fn forget_old(&mut self) {
        let mut gone: Vec<(UnixMillis, String)> = self
            .instances
            .iter()
            .filter_map(|(id, i)| i.gone_at.map(|g| (g, id.clone())))
            .collect();
        if gone.len() <= MAX_GONE_INSTANCES {
            return;
        }
        gone.sort();
        let excess = gone.len() - MAX_GONE_INSTANCES;
        for (_, id) in gone.into_iter().take(excess) {
            self.instances.remove(&id);
        }
    }

    fn live(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values().filter(|i| i.is_live())
    }

    /// Whether `reason`'s healing rule holds at `now` (the reason being marked
    /// is the caller's concern). `no-snapshot` and `too-many-executables` have
    /// no rule here: the first clears by a successful snapshot, the second never.
    pub fn rule_holds(&self, reason: PartialReason, now: UnixMillis, min_learning: u64) -> bool {
        match reason {
            PartialReason::StartedBeforeAgent => {
                self.live().all(|i| i.seen_from_start)
                    && self
                        .instances
                        .values()
                        .any(|i| i.seen_from_start && i.ran_for(now) >= min_learning)
            }
            PartialReason::EventsDropped => {
                let gap = self.gap_at;
                self.live().all(|i| i.fresh_after(gap))
                    && self
                        .instances
                        .values()
                        .any(|i| i.fresh_after(gap) && i.ran_for(now) >= min_learning)
            }
            PartialReason::NoSnapshot | PartialReason::TooManyExecutables => false,
        }
    }
}

/// Where one partial reason stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonState {
    /// Not marked (never, or healed).
    Clear,
    /// The profile may miss executables for this reason.
    Marked,
}

/// What happens to one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonEvent {
    Mark,
    /// The reason's rule holds (for `no-snapshot`: a snapshot succeeded).
    Heal,
}

/// A heal of a reason that has no healing rule (`too-many-executables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("partial reason {reason:?} cannot be healed")]
pub struct NotHealable {
    pub reason: PartialReason,
}

impl ReasonState {
    pub fn of(marked: bool) -> Self {
        if marked {
            Self::Marked
        } else {
            Self::Clear
        }
    }

    /// The table of one reason's life. Exhaustive: a new reason does not compile
    /// until its healing is decided here.
    pub fn on(self, reason: PartialReason, event: ReasonEvent) -> Result<Self, NotHealable> {
        use PartialReason as R;
        match (self, event, reason) {
            (_, ReasonEvent::Mark, _) => Ok(Self::Marked),
            (_, ReasonEvent::Heal, R::TooManyExecutables) => Err(NotHealable { reason }),
            (_, ReasonEvent::Heal, R::StartedBeforeAgent | R::EventsDropped | R::NoSnapshot) => {
                Ok(Self::Clear)
            }
        }
    }
}

/// The diagram label of a reason's heal: its rule, in words.
pub fn heal_label(reason: PartialReason) -> &'static str {
    match reason {
        PartialReason::StartedBeforeAgent => {
            "started-before-agent healed, no live instance from before the agent and one seen from its start ran min_learning"
        }
        PartialReason::EventsDropped => {
            "events-dropped healed, every instance live during the gap gone and a fresh one ran min_learning"
        }
        PartialReason::NoSnapshot => "no-snapshot healed, a snapshot succeeded",
        PartialReason::TooManyExecutables => "too-many-executables",
    }
}

/// The diagram label of marking a reason: when the agent does it.
pub fn mark_label(reason: PartialReason) -> &'static str {
    match reason {
        PartialReason::StartedBeforeAgent => {
            "started-before-agent, first seen running in a snapshot"
        }
        PartialReason::EventsDropped => {
            "events-dropped, a gap detected by Tetragon, a snapshot or an exit"
        }
        PartialReason::NoSnapshot => "no-snapshot, no successful snapshot since connecting",
        PartialReason::TooManyExecutables => "too-many-executables, over the profile cap",
    }
}

/// The diagram's states: `Complete`, or partial for one reason (a profile may
/// be partial for several at once; each reason's life is drawn on its own).
pub fn diagram_state(reason: Option<PartialReason>) -> &'static str {
    match reason {
        None => "Complete",
        Some(PartialReason::StartedBeforeAgent) => "StartedBeforeAgent",
        Some(PartialReason::EventsDropped) => "EventsDropped",
        Some(PartialReason::NoSnapshot) => "NoSnapshot",
        Some(PartialReason::TooManyExecutables) => "TooManyExecutables",
    }
}

/// Every reason's changes the table allows, as (from, label, to).
pub fn diagram_edges() -> Vec<(&'static str, &'static str, &'static str)> {
    let mut out = Vec::new();
    for reason in PartialReason::ALL {
        let marked = diagram_state(Some(reason));
        for (from, event) in [
            (ReasonState::Clear, ReasonEvent::Mark),
            (ReasonState::Marked, ReasonEvent::Heal),
        ] {
            let Ok(to) = from.on(reason, event) else {
                continue;
            };
            let name = |s: ReasonState| match s {
                ReasonState::Clear => diagram_state(None),
                ReasonState::Marked => marked,
            };
            let label = match event {
                ReasonEvent::Mark => mark_label(reason),
                ReasonEvent::Heal => heal_label(reason),
            };
            out.push((name(from), label, name(to)));
        }
    }
    out
}

/// The exact text of `state-diagrams/completeness.mmd`.
pub fn render_diagram() -> String {
    diagram::render_mermaid(
        diagram_state(None),
        &diagram_edges(),
        "tetragon_learner::learner::completeness::diagram_edges()",
    )
}

impl fmt::Display for ReasonState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Clear => "clear",
            Self::Marked => "marked",
        })
    }
}

#[cfg(test)]
mod tests;
