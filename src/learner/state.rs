//! The learner's states and the one table of which event may move which state
//! where (aws s2n-quic style). `machine::step` consults this table *before* it
//! touches the profile, so an invalid move leaves the profile untouched; the same
//! table renders `state-diagrams/learner.mmd`, so picture and code cannot drift.
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::diagram;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LearnerState {
    /// New executables are added to the profile.
    /// May go to: `Stable` (quiet), `Locked` (lock).
    Learning,
    /// Nothing new for a while; the profile is believed complete.
    /// May go to: `Learning` (new executable = drift, or reset), `Locked` (lock).
    Stable,
    /// Frozen by the operator: new executables become deviations.
    /// May go to: `Learning` (unlock or reset).
    Locked,
}

impl LearnerState {
    pub const ALL: [Self; 3] = [Self::Learning, Self::Stable, Self::Locked];
    /// Every new profile starts here.
    pub const INITIAL: Self = Self::Learning;

    /// The lowercase name used in JSON, CLI output and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Learning => "learning",
            Self::Stable => "stable",
            Self::Locked => "locked",
        }
    }

    /// The state's id in the Mermaid diagram.
    pub fn diagram_name(self) -> &'static str {
        match self {
            Self::Learning => "Learning",
            Self::Stable => "Stable",
            Self::Locked => "Locked",
        }
    }

    /// The transition table: where `event` takes this state, or why it may not.
    /// Exhaustive on purpose: a new state or event does not compile until it is
    /// placed here.
    pub fn on(self, event: LearnerEvent) -> Result<Self, InvalidTransition> {
        use LearnerEvent as E;
        use LearnerState as S;
        match (self, event) {
            (S::Learning, E::Quiet) => Ok(S::Stable),
            (S::Stable, E::NewExecutable) => Ok(S::Learning),
            (S::Learning | S::Stable, E::Lock) => Ok(S::Locked),
            (S::Locked, E::Unlock) => Ok(S::Learning),
            (_, E::Reset) => Ok(S::Learning),
            (S::Locked, E::Lock) | (S::Learning | S::Stable, E::Unlock) => {
                Err(InvalidTransition { state: self, event })
            }
            (
                s,
                E::NewExecutable
                | E::KnownExecutable
                | E::Tick
                | E::Quiet
                | E::MarkPartial
                | E::Instance
                | E::Heal,
            ) => Ok(s),
        }
    }
}

impl fmt::Display for LearnerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What an input means to the table. `machine::classify` derives it from the
/// input and the profile (an observation is "new" or "known"; a tick is "quiet"
/// once both timing conditions hold), so the table itself stays free of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LearnerEvent {
    /// An executable not (yet) in the profile.
    NewExecutable,
    /// An executable already in the profile.
    KnownExecutable,
    /// Time passed, but the profile is not quiet enough yet.
    Tick,
    /// Time passed: nothing new for `stability_window` and `min_learning` elapsed.
    Quiet,
    Lock,
    Unlock,
    MarkPartial,
    Reset,
    /// A container instance was seen or went away (completeness tracking).
    Instance,
    /// A partial reason's healing rule was checked (completeness).
    Heal,
}

impl LearnerEvent {
    pub const ALL: [Self; 10] = [
        Self::NewExecutable,
        Self::KnownExecutable,
        Self::Tick,
        Self::Quiet,
        Self::Lock,
        Self::Unlock,
        Self::MarkPartial,
        Self::Reset,
        Self::Instance,
        Self::Heal,
    ];

    /// Kebab-case name, as serialized (logs, metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewExecutable => "new-executable",
            Self::KnownExecutable => "known-executable",
            Self::Tick => "tick",
            Self::Quiet => "quiet",
            Self::Lock => "lock",
            Self::Unlock => "unlock",
            Self::MarkPartial => "mark-partial",
            Self::Reset => "reset",
            Self::Instance => "instance",
            Self::Heal => "heal",
        }
    }

    /// The human label on the diagram's arrows.
    pub fn label(self) -> &'static str {
        match self {
            Self::NewExecutable => "new executable",
            Self::KnownExecutable => "known executable",
            Self::Tick => "tick",
            Self::Quiet => "quiet for stability_window after min_learning",
            Self::Lock => "lock",
            Self::Unlock => "unlock",
            Self::MarkPartial => "mark partial",
            Self::Reset => "reset",
            Self::Instance => "instance",
            Self::Heal => "heal",
        }
    }
}

impl fmt::Display for LearnerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An operator asked for a move the table forbids (lock twice, unlock when not
/// locked). The profile was not changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error, Serialize, Deserialize)]
#[error("learner cannot {event} while {state}")]
pub struct InvalidTransition {
    pub state: LearnerState,
    pub event: LearnerEvent,
}

/// Exactly the state *changes* the table allows, as (from, event label, to).
/// Self-loops (observing in `Learning`, ticks, ...) are left out here and in the
/// diagram; the pinned table test in this file covers them.
pub fn transitions() -> Vec<(LearnerState, &'static str, LearnerState)> {
    let mut out = Vec::new();
    for from in LearnerState::ALL {
        for event in LearnerEvent::ALL {
            if let Ok(to) = from.on(event) {
                if to != from {
                    out.push((from, event.label(), to));
                }
            }
        }
    }
    out
}

/// `transitions()` with diagram state names, ready for `diagram::render_mermaid`.
pub fn diagram_edges() -> Vec<(&'static str, &'static str, &'static str)> {
    transitions()
        .into_iter()
        .map(|(from, label, to)| (from.diagram_name(), label, to.diagram_name()))
        .collect()
}

/// The exact text of `state-diagrams/learner.mmd`.
pub fn render_diagram() -> String {
    diagram::render_mermaid(
        LearnerState::INITIAL.diagram_name(),
        &diagram_edges(),
        "tetragon_learner::learner::state::transitions()",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders the whole states x events table, self-loops and refusals included.
    fn table_text() -> String {
        let mut out = String::new();
        for state in LearnerState::ALL {
            for event in LearnerEvent::ALL {
                let to = match state.on(event) {
                    Ok(to) => to.as_str(),
                    Err(_) => "INVALID",
                };
                out.push_str(&format!("{state:<8} {event:<16} -> {to}\n"));
            }
        }
        out
    }

    #[test]
    fn whole_table_is_pinned() {
        let expected = "\
learning new-executable   -> learning
learning known-executable -> learning
learning tick             -> learning
learning quiet            -> stable
learning lock             -> locked
learning unlock           -> INVALID
learning mark-partial     -> learning
learning reset            -> learning
learning instance         -> learning
learning heal             -> learning
stable   new-executable   -> learning
stable   known-executable -> stable
stable   tick             -> stable
stable   quiet            -> stable
stable   lock             -> locked
stable   unlock           -> INVALID
stable   mark-partial     -> stable
stable   reset            -> learning
stable   instance         -> stable
stable   heal             -> stable
locked   new-executable   -> locked
locked   known-executable -> locked
locked   tick             -> locked
locked   quiet            -> locked
locked   lock             -> INVALID
locked   unlock           -> learning
locked   mark-partial     -> locked
locked   reset            -> learning
locked   instance         -> locked
locked   heal             -> locked
";
        assert_eq!(table_text(), expected, "actual table:\n{}", table_text());
    }

    #[test]
    fn transitions_are_the_state_changes() {
        use LearnerState::*;
        let quiet = LearnerEvent::Quiet.label();
        assert_eq!(
            transitions(),
            vec![
                (Learning, quiet, Stable),
                (Learning, "lock", Locked),
                (Stable, "new executable", Learning),
                (Stable, "lock", Locked),
                (Stable, "reset", Learning),
                (Locked, "unlock", Learning),
                (Locked, "reset", Learning),
            ]
        );
    }

    #[test]
    fn invalid_transition_names_state_and_event() {
        let err = LearnerState::Locked.on(LearnerEvent::Lock).unwrap_err();
        assert_eq!(err.to_string(), "learner cannot lock while locked");
        let err = LearnerState::Stable.on(LearnerEvent::Unlock).unwrap_err();
        assert_eq!(err.to_string(), "learner cannot unlock while stable");
    }

    #[test]
    fn states_and_events_serialize_as_documented() {
        let json = serde_json::to_string(&LearnerState::ALL).unwrap();
        assert_eq!(json, r#"["learning","stable","locked"]"#);
        for event in LearnerEvent::ALL {
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(json, format!("\"{}\"", event.as_str()));
        }
    }

    #[test]
    fn diagram_labels_hold_no_colon_or_newline() {
        // A colon would be ambiguous to readers of the `.mmd`; a newline breaks it.
        for event in LearnerEvent::ALL {
            assert!(!event.label().contains([':', '\n']), "{event}");
        }
    }
}
