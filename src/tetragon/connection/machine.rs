//! The Tetragon connection as a pure state machine (kube-rs watcher style):
//! connect, open the event stream, snapshot once the stream is up, stay live,
//! and back off on failure. One `on` function takes an event and returns the
//! actions for the shell; an event that makes no sense in a state is refused.
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnState {
    /// Not started yet.
    Disconnected,
    /// Opening the channel and the GetEvents stream.
    Connecting,
    /// Stream open; waiting for the first event or the grace period before the snapshot.
    Streaming,
    /// Stream flowing while a snapshot is taken.
    Snapshotting,
    /// Stream flowing, snapshot taken (or failed and scheduled for retry).
    Live,
    /// Waiting before the next connection attempt.
    Backoff,
    /// Shut down for good.
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnEvent {
    Start,
    Connected,
    ConnectFailed,
    FirstEvent,
    GraceElapsed,
    SnapshotDone,
    SnapshotFailed,
    ResnapshotDue,
    StreamEnded,
    BackoffElapsed,
    Shutdown,
}

/// What the shell must do after a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnAction {
    /// Open the channel and the GetEvents stream.
    Connect,
    /// Start the grace timer: an idle node must still get its snapshot.
    ArmGrace,
    RequestSnapshot,
    /// Try the snapshot again later (it failed); learning from events goes on.
    ScheduleSnapshotRetry,
    /// Wait this long, then send `BackoffElapsed`.
    Sleep(Duration),
    /// Drop the stream (if any).
    CloseStream,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("connection state machine: event {event:?} is not valid in state {state:?}")]
pub struct InvalidConnTransition {
    pub state: ConnState,
    pub event: ConnEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(120),
        }
    }
}

impl BackoffPolicy {
    /// Capped exponential delay for `attempt` (0-based), with `jitter` in [0, 1)
    /// spreading it over [delay/2, delay) so a fleet of agents does not reconnect
    /// in lockstep after a Tetragon restart.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
        let capped = exp.min(self.cap);
        let j = jitter.clamp(0.0, 1.0);
        capped
            .mul_f64(0.5 + 0.5 * j)
            .max(Duration::from_millis(1).min(capped))
    }
}

/// The transition table: (from, event, to). Self-loops that change nothing are
/// listed too, so the table says exactly what is valid.
pub fn transitions() -> Vec<(ConnState, ConnEvent, ConnState)> {
    use ConnEvent as E;
    use ConnState as S;
    let mut t = vec![
        (S::Disconnected, E::Start, S::Connecting),
        (S::Connecting, E::Connected, S::Streaming),
        (S::Connecting, E::ConnectFailed, S::Backoff),
        (S::Streaming, E::FirstEvent, S::Snapshotting),
        (S::Streaming, E::GraceElapsed, S::Snapshotting),
        (S::Snapshotting, E::SnapshotDone, S::Live),
        (S::Snapshotting, E::SnapshotFailed, S::Live),
        (S::Live, E::ResnapshotDue, S::Snapshotting),
        (S::Backoff, E::BackoffElapsed, S::Connecting),
    ];
    for s in [S::Streaming, S::Snapshotting, S::Live] {
        t.push((s, E::StreamEnded, S::Backoff));
    }
    for s in [
        S::Disconnected,
        S::Connecting,
        S::Streaming,
        S::Snapshotting,
        S::Live,
        S::Backoff,
    ] {
        t.push((s, E::Shutdown, S::Stopped));
    }
    t
}

/// The table as diagram edges: (from, label, to).
pub fn diagram_edges() -> Vec<(&'static str, &'static str, &'static str)> {
    transitions()
        .into_iter()
        .map(|(from, ev, to)| (from.name(), ev.name(), to.name()))
        .collect()
}

/// The exact text of `state-diagrams/connection.mmd`.
pub fn render_diagram() -> String {
    crate::diagram::render_mermaid(
        ConnState::Disconnected.name(),
        &diagram_edges(),
        "src/tetragon/connection/machine.rs transitions()",
    )
}

/// The machine: a state plus the failure count that drives the backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub state: ConnState,
    /// Consecutive failures since the last healthy stream.
    pub failures: u32,
    pub backoff: BackoffPolicy,
}

impl Connection {
    pub fn new(backoff: BackoffPolicy) -> Self {
        Self {
            state: ConnState::Disconnected,
            failures: 0,
            backoff,
        }
    }

    /// Applies `event`; `jitter` in [0, 1) is drawn by the shell (keeps this pure).
    pub fn on(
        &mut self,
        event: ConnEvent,
        jitter: f64,
    ) -> Result<Vec<ConnAction>, InvalidConnTransition> {
        let to = transitions()
            .into_iter()
            .find(|(from, ev, _)| *from == self.state && *ev == event)
            .map(|(_, _, to)| to)
            .ok_or(InvalidConnTransition {
                state: self.state,
                event,
            })?;
        let actions = match (self.state, event) {
            (_, ConnEvent::Start) | (_, ConnEvent::BackoffElapsed) => vec![ConnAction::Connect],
            (_, ConnEvent::Connected) => vec![ConnAction::ArmGrace],
            (_, ConnEvent::FirstEvent) => {
                // Events flow: the connection is healthy, whatever the snapshot does.
                self.failures = 0;
                vec![ConnAction::RequestSnapshot]
            }
            (_, ConnEvent::GraceElapsed) | (_, ConnEvent::ResnapshotDue) => {
                vec![ConnAction::RequestSnapshot]
            }
            (_, ConnEvent::SnapshotDone) => {
                // A stream that stayed up through a snapshot: healthy (an idle node
                // gets here through the grace timer, with no event).
                self.failures = 0;
                vec![]
            }
            (_, ConnEvent::SnapshotFailed) => vec![ConnAction::ScheduleSnapshotRetry],
            (_, ConnEvent::ConnectFailed) | (_, ConnEvent::StreamEnded) => {
                let delay = self.backoff.delay(self.failures, jitter);
                self.failures = self.failures.saturating_add(1);
                vec![ConnAction::CloseStream, ConnAction::Sleep(delay)]
            }
            (_, ConnEvent::Shutdown) => vec![ConnAction::CloseStream],
        };
        self.state = to;
        Ok(actions)
    }

    /// Whether events from the stream are flowing in this state.
    pub fn is_streaming(&self) -> bool {
        matches!(
            self.state,
            ConnState::Streaming | ConnState::Snapshotting | ConnState::Live
        )
    }
}

impl ConnState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Disconnected => "Disconnected",
            Self::Connecting => "Connecting",
            Self::Streaming => "Streaming",
            Self::Snapshotting => "Snapshotting",
            Self::Live => "Live",
            Self::Backoff => "Backoff",
            Self::Stopped => "Stopped",
        }
    }
}

impl ConnEvent {
    pub fn name(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Connected => "connected",
            Self::ConnectFailed => "connect_failed",
            Self::FirstEvent => "first_event",
            Self::GraceElapsed => "grace_elapsed",
            Self::SnapshotDone => "snapshot_done",
            Self::SnapshotFailed => "snapshot_failed",
            Self::ResnapshotDue => "resnapshot_due",
            Self::StreamEnded => "stream_ended",
            Self::BackoffElapsed => "backoff_elapsed",
            Self::Shutdown => "shutdown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL_EVENTS: [ConnEvent; 11] = [
        ConnEvent::Start,
        ConnEvent::Connected,
        ConnEvent::ConnectFailed,
        ConnEvent::FirstEvent,
        ConnEvent::GraceElapsed,
        ConnEvent::SnapshotDone,
        ConnEvent::SnapshotFailed,
        ConnEvent::ResnapshotDue,
        ConnEvent::StreamEnded,
        ConnEvent::BackoffElapsed,
        ConnEvent::Shutdown,
    ];

    #[test]
    fn happy_path_snapshots_after_the_stream_is_up() {
        let mut c = Connection::new(BackoffPolicy::default());
        assert_eq!(
            c.on(ConnEvent::Start, 0.0).unwrap(),
            vec![ConnAction::Connect]
        );
        assert_eq!(
            c.on(ConnEvent::Connected, 0.0).unwrap(),
            vec![ConnAction::ArmGrace]
        );
        assert_eq!(
            c.on(ConnEvent::GraceElapsed, 0.0).unwrap(),
            vec![ConnAction::RequestSnapshot]
        );
        c.on(ConnEvent::SnapshotDone, 0.0).unwrap();
        assert_eq!(c.state, ConnState::Live);
        // Every reconnect leads to a new snapshot.
        c.on(ConnEvent::StreamEnded, 0.0).unwrap();
        c.on(ConnEvent::BackoffElapsed, 0.0).unwrap();
        c.on(ConnEvent::Connected, 0.0).unwrap();
        assert_eq!(
            c.on(ConnEvent::FirstEvent, 0.0).unwrap(),
            vec![ConnAction::RequestSnapshot]
        );
    }

    #[test]
    fn backoff_grows_caps_and_resets_after_a_healthy_stream() {
        let p = BackoffPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(8),
        };
        assert_eq!(p.delay(0, 0.999_999).as_millis(), 999);
        assert_eq!(p.delay(2, 0.0), Duration::from_secs(2));
        assert!(p.delay(30, 0.999) <= Duration::from_secs(8));
        let mut c = Connection::new(p);
        c.on(ConnEvent::Start, 0.0).unwrap();
        for _ in 0..3 {
            c.on(ConnEvent::ConnectFailed, 0.0).unwrap();
            c.on(ConnEvent::BackoffElapsed, 0.0).unwrap();
        }
        assert_eq!(c.failures, 3);
        c.on(ConnEvent::Connected, 0.0).unwrap();
        c.on(ConnEvent::FirstEvent, 0.0).unwrap();
        c.on(ConnEvent::SnapshotDone, 0.0).unwrap();
        assert_eq!(c.failures, 0);
    }

    #[test]
    fn events_flowing_reset_the_backoff_even_when_snapshots_fail() {
        let mut c = Connection::new(BackoffPolicy::default());
        c.on(ConnEvent::Start, 0.0).unwrap();
        c.on(ConnEvent::ConnectFailed, 0.0).unwrap();
        c.on(ConnEvent::BackoffElapsed, 0.0).unwrap();
        c.on(ConnEvent::Connected, 0.0).unwrap();
        assert_eq!(c.failures, 1);
        c.on(ConnEvent::FirstEvent, 0.0).unwrap();
        c.on(ConnEvent::SnapshotFailed, 0.0).unwrap();
        assert_eq!(c.failures, 0);
    }

    #[test]
    fn invalid_moves_are_refused_and_change_nothing() {
        let mut c = Connection::new(BackoffPolicy::default());
        let before = c.clone();
        assert!(c.on(ConnEvent::SnapshotDone, 0.0).is_err());
        assert_eq!(c, before);
    }

    /// Pins the whole states x events table.
    #[test]
    fn table_snapshot() {
        let states = [
            ConnState::Disconnected,
            ConnState::Connecting,
            ConnState::Streaming,
            ConnState::Snapshotting,
            ConnState::Live,
            ConnState::Backoff,
            ConnState::Stopped,
        ];
        let mut rows = Vec::new();
        for s in states {
            let valid: Vec<&str> = ALL_EVENTS
                .iter()
                .filter(|e| transitions().iter().any(|(f, ev, _)| *f == s && ev == *e))
                .map(|e| e.name())
                .collect();
            rows.push(format!("{}: {}", s.name(), valid.join(",")));
        }
        assert_eq!(
            rows,
            vec![
                "Disconnected: start,shutdown",
                "Connecting: connected,connect_failed,shutdown",
                "Streaming: first_event,grace_elapsed,stream_ended,shutdown",
                "Snapshotting: snapshot_done,snapshot_failed,stream_ended,shutdown",
                "Live: resnapshot_due,stream_ended,shutdown",
                "Backoff: backoff_elapsed,shutdown",
                "Stopped: ",
            ]
        );
    }

    proptest! {
        #[test]
        fn no_invalid_transition_is_reachable(events in proptest::collection::vec(0usize..11, 0..200), jitter in 0.0f64..1.0) {
            let mut c = Connection::new(BackoffPolicy::default());
            for i in events {
                let ev = ALL_EVENTS[i];
                let from = c.state;
                match c.on(ev, jitter) {
                    Ok(actions) => {
                        prop_assert!(transitions().contains(&(from, ev, c.state)));
                        for a in actions {
                            if let ConnAction::Sleep(d) = a {
                                prop_assert!(d <= c.backoff.cap);
                            }
                        }
                    }
                    Err(e) => {
                        prop_assert_eq!(c.state, from);
                        prop_assert_eq!(e.state, from);
                    }
                }
            }
        }
    }
}
