//! The report ledger: which of a learner's changes are on disk, and which news
//! (learned executables, deviations, state changes) may be reported. Pure
//! bookkeeping, driven by the learner actor: every write it asks for carries a
//! revision, and the actor tells it how each revision ended.
//!
//! The rule it keeps: news is reported only once a write that holds it is
//! confirmed durable, exactly once, and never lost: a failed write owes its
//! news again and the next tick writes again. Lazy changes (counters, last
//! seen) are only written, never reported.
//!
//! One piece of news goes through `transitions()` (drawn in
//! `state-diagrams/report-ledger.mmd`):
//! owed -> in flight (a flush carries it) -> reported (that flush confirmed),
//! back to owed when that flush failed; a drain's final write takes over
//! whatever earlier writes still carry.
use std::collections::BTreeMap;

use super::machine::{durability_of, Durability, Effect};
use super::profile::Profile;

/// A write the actor must send now: the profile as it is, at this revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    pub revision: u64,
    pub durability: Durability,
}

/// What a write in flight carries.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InFlight {
    durability: Durability,
    news: Vec<Effect>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportLedger {
    /// The last revision handed out; increases with every write, so the
    /// Checkpointer can keep the newest.
    revision: u64,
    /// Lazy changes not yet handed to a write.
    dirty: bool,
    /// News not carried by any write in flight.
    owed: Vec<Effect>,
    /// A flush failed: the next tick flushes again.
    retry: bool,
    /// Writes sent and not yet confirmed or failed, by revision.
    in_flight: BTreeMap<u64, InFlight>,
}

/// Whether an effect is news to report once durable (the rest is only written).
fn is_news(e: &Effect) -> bool {
    matches!(
        e,
        Effect::NewExecutable { .. }
            | Effect::NewDeviation { .. }
            | Effect::StateChanged { .. }
            | Effect::MarkedPartial { .. }
            | Effect::Healed { .. }
            | Effect::NewViolation { .. }
    )
}

impl ReportLedger {
    /// Takes in the effects of a step. Effects that must be durable before
    /// they are reported are flushed at once: the returned write.
    pub fn owe(&mut self, effects: Vec<Effect>) -> Option<Write> {
        match durability_of(&effects) {
            Durability::None => None,
            Durability::Lazy => {
                self.dirty = true;
                None
            }
            Durability::Flush => {
                self.owed.extend(effects.into_iter().filter(is_news));
                Some(self.send(Durability::Flush))
            }
        }
    }

    /// An operator command: its effects are written (flushed) now, whatever
    /// they are, so the operator gets an answer once it is on disk.
    pub fn owe_now(&mut self, effects: Vec<Effect>) -> Write {
        self.owed.extend(effects.into_iter().filter(is_news));
        self.send(Durability::Flush)
    }

    /// The periodic tick: flushes again after a failure, else writes pending
    /// lazy changes.
    pub fn tick(&mut self) -> Option<Write> {
        if self.retry {
            Some(self.send(Durability::Flush))
        } else if self.dirty {
            Some(self.send(Durability::Lazy))
        } else {
            None
        }
    }

    /// Shutdown: one last flush that supersedes every write in flight, so it
    /// carries all their news (their answers may never come: the actor stops).
    pub fn drain(&mut self) -> Write {
        let earlier = std::mem::take(&mut self.in_flight);
        let mut news: Vec<Effect> = earlier.into_values().flat_map(|w| w.news).collect();
        news.append(&mut self.owed);
        self.owed = news;
        self.send(Durability::Flush)
    }

    /// The write of `revision` is durable: the news it carried, to report now.
    /// Empty for a write whose news a drain took over (it reports them).
    pub fn confirmed(&mut self, revision: u64) -> Vec<Effect> {
        self.in_flight
            .remove(&revision)
            .map(|w| w.news)
            .unwrap_or_default()
    }

    /// The write of `revision` failed: its news is owed again and the next tick
    /// writes again. Returns whether it was still in flight (a drain may have
    /// taken it over).
    pub fn failed(&mut self, revision: u64) -> bool {
        let Some(w) = self.in_flight.remove(&revision) else {
            return false;
        };
        match w.durability {
            Durability::Flush => {
                self.owed.extend(w.news);
                self.retry = true;
            }
            _ => self.dirty = true,
        }
        true
    }

    /// Hands out the next revision; a flush writes everything (lazy changes
    /// included) and carries every owed piece of news.
    fn send(&mut self, durability: Durability) -> Write {
        self.revision += 1;
        self.dirty = false;
        let news = if durability == Durability::Flush {
            self.retry = false;
            std::mem::take(&mut self.owed)
        } else {
            Vec::new()
        };
        self.in_flight
            .insert(self.revision, InFlight { durability, news });
        Write {
            revision: self.revision,
            durability,
        }
    }

    /// Where a piece of news stands (`None`: reported, or never owed).
    #[cfg(test)]
    fn state_of(&self, news: &Effect) -> Option<NewsState> {
        if self.owed.contains(news) {
            Some(NewsState::Owed)
        } else if self.in_flight.values().any(|w| w.news.contains(news)) {
            Some(NewsState::InFlight)
        } else {
            None
        }
    }
}

/// News the written profile no longer holds is not reported: a `Reset` came
/// in between and wiped it, so it was never really learned.
pub fn still_held(written: &Profile, news: Vec<Effect>) -> Vec<Effect> {
    news.into_iter()
        .filter(|e| match e {
            Effect::NewExecutable { path } => written.executables.contains_key(path),
            Effect::NewDeviation { path } => written.deviations.contains_key(path),
            _ => true,
        })
        .collect()
}

/// Where one piece of news stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NewsState {
    /// Not yet carried by a write in flight.
    Owed,
    /// Carried by a write not yet confirmed.
    InFlight,
    /// Durable and reported (logged, counted): the end.
    Reported,
}

/// What moves news: the ledger's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LedgerEvent {
    /// A flush carries it (`owe`, `owe_now`, `tick` retrying).
    Sent,
    Confirmed,
    Failed,
    /// The shutdown's final write takes it over.
    Drain,
}

impl NewsState {
    /// News is born owed: `owe` or `owe_now` took it in.
    pub const INITIAL: Self = Self::Owed;

    pub fn name(self) -> &'static str {
        match self {
            Self::Owed => "Owed",
            Self::InFlight => "InFlight",
            Self::Reported => "Reported",
        }
    }
}

impl LedgerEvent {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
            Self::Drain => "drain",
        }
    }
}

/// The life of one piece of news: (from, event, to).
pub fn transitions() -> Vec<(NewsState, LedgerEvent, NewsState)> {
    use LedgerEvent as E;
    use NewsState as S;
    vec![
        (S::Owed, E::Sent, S::InFlight),
        (S::InFlight, E::Confirmed, S::Reported),
        (S::InFlight, E::Failed, S::Owed),
        (S::Owed, E::Drain, S::InFlight),
        (S::InFlight, E::Drain, S::InFlight),
    ]
}

/// The table as diagram edges: (from, label, to).
pub fn diagram_edges() -> Vec<(&'static str, &'static str, &'static str)> {
    transitions()
        .into_iter()
        .map(|(from, ev, to)| (from.name(), ev.name(), to.name()))
        .collect()
}

/// The exact text of `state-diagrams/report-ledger.mmd`.
pub fn render_diagram() -> String {
    crate::diagram::render_mermaid(
        NewsState::INITIAL.name(),
        &diagram_edges(),
        "src/learner/ledger.rs transitions()",
    )
}

#[cfg(test)]
#[path = "ledger/tests.rs"]
mod tests;
