//! The Tetragon connection as a pure state machine (kube-rs watcher style):
//! connect, open the event stream, snapshot once the stream is up, stay live,
//! and back off on failure. One `on` function takes an event and returns the
//! actions for the shell (connect, start or cancel a timer, take a snapshot and
//! why, say whether Tetragon answered, close the stream); an event that makes
//! no sense in a state is refused. Every timer and its duration is decided
//! here: the shell only runs them and reports back what happened.
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
    /// GetEvents answered (its response headers came): Tetragon is there.
    StreamOpened,
    FirstEvent,
    GraceElapsed,
    SnapshotDone,
    SnapshotFailed,
    /// The periodic re-snapshot timer fired.
    ResnapshotDue,
    /// The timer after a failed snapshot fired.
    SnapshotRetryDue,
    StreamEnded,
    BackoffElapsed,
    Shutdown,
}

/// What the shell must do after a transition, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnAction {
    /// Open the channel and request the GetEvents stream; report `Connected`
    /// or `ConnectFailed`, then `StreamOpened` once Tetragon answers.
    Connect,
    /// Start `Timer` (replacing it if it runs); when it fires, send its event.
    StartTimer(Timer, Duration),
    CancelTimer(Timer),
    /// Ask for a snapshot; report `SnapshotDone` or `SnapshotFailed`.
    TakeSnapshot(SnapshotReason),
    /// Whether Tetragon answered on this connection (what `/readyz` reports).
    SetReady(bool),
    /// End this connection: the stream, its pending open, a pending snapshot
    /// answer, and its timers (grace, re-snapshot, snapshot retry).
    CloseStream,
}

/// The connection's timers; each sends one event when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// An idle node must still get its snapshot: Tetragon sends the stream's
    /// headers only with the first event.
    Grace,
    Backoff,
    /// The periodic re-snapshot (repairs what dropped events hid).
    Resnapshot,
    /// Try a failed snapshot again; learning from events goes on meanwhile.
    SnapshotRetry,
}

/// Why a snapshot is taken (for its log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotReason {
    StreamUp,
    Periodic,
    Retry,
}

/// The durations the machine decides with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnTimings {
    pub backoff: BackoffPolicy,
    /// Snapshot after this long without a first event.
    pub grace: Duration,
    /// Periodic re-snapshot; `None` disables it.
    pub resnapshot_interval: Option<Duration>,
    /// Wait before retrying a failed snapshot.
    pub snapshot_retry: Duration,
}

impl Default for ConnTimings {
    fn default() -> Self {
        Self {
            backoff: BackoffPolicy::default(),
            grace: Duration::from_secs(2),
            resnapshot_interval: Some(Duration::from_secs(600)),
            snapshot_retry: Duration::from_secs(30),
        }
    }
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
        (S::Live, E::SnapshotRetryDue, S::Snapshotting),
        (S::Backoff, E::BackoffElapsed, S::Connecting),
    ];
    // The stream's headers may come after the grace timer, even after the
    // snapshot (a quiet Tetragon sends them with its first event).
    for s in [S::Streaming, S::Snapshotting, S::Live] {
        t.push((s, E::StreamOpened, s));
    }
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

/// The table as diagram edges: (from, label, to). Self-loops (`stream_opened`)
/// are drawn too: they act.
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

/// The table with the actions each transition emits, as diagram edges:
/// (from, "event / action, action", to). Computed by running `on` from each
/// row's state with `ConnTimings::default()` (re-snapshots on).
pub fn action_diagram_edges() -> Vec<(&'static str, String, &'static str)> {
    transitions()
        .into_iter()
        .map(|(from, ev, to)| {
            let mut c = Connection::new(ConnTimings::default());
            c.state = from;
            let actions = c.on(ev, 0.0).unwrap_or_default();
            let names: Vec<String> = actions.iter().map(ConnAction::name).collect();
            let label = if names.is_empty() {
                ev.name().to_string()
            } else {
                format!("{} / {}", ev.name(), names.join(", "))
            };
            (from.name(), label, to.name())
        })
        .collect()
}

/// The exact text of `state-diagrams/connection-actions.mmd`.
pub fn render_action_diagram() -> String {
    let edges = action_diagram_edges();
    let edges: Vec<(&str, &str, &str)> = edges
        .iter()
        .map(|(from, label, to)| (*from, label.as_str(), *to))
        .collect();
    crate::diagram::render_mermaid(
        ConnState::Disconnected.name(),
        &edges,
        "src/tetragon/connection/machine.rs transitions() and Connection::on",
    )
}

/// The machine: a state plus the failure count that drives the backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub state: ConnState,
    /// Consecutive failures since the last healthy stream.
    pub failures: u32,
    pub timings: ConnTimings,
}

impl Connection {
    pub fn new(timings: ConnTimings) -> Self {
        Self {
            state: ConnState::Disconnected,
            failures: 0,
            timings,
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
        let t = self.timings;
        let actions = match event {
            ConnEvent::Start | ConnEvent::BackoffElapsed => vec![ConnAction::Connect],
            ConnEvent::Connected => vec![ConnAction::StartTimer(Timer::Grace, t.grace)],
            ConnEvent::StreamOpened => vec![ConnAction::SetReady(true)],
            ConnEvent::FirstEvent => {
                // Events flow: the connection is healthy, whatever the snapshot does.
                self.failures = 0;
                vec![
                    ConnAction::CancelTimer(Timer::Grace),
                    ConnAction::TakeSnapshot(SnapshotReason::StreamUp),
                ]
            }
            ConnEvent::GraceElapsed => vec![ConnAction::TakeSnapshot(SnapshotReason::StreamUp)],
            ConnEvent::ResnapshotDue => vec![ConnAction::TakeSnapshot(SnapshotReason::Periodic)],
            ConnEvent::SnapshotRetryDue => vec![ConnAction::TakeSnapshot(SnapshotReason::Retry)],
            ConnEvent::SnapshotDone => {
                // A stream that stayed up through a snapshot: healthy (an idle node
                // gets here through the grace timer, with no event). A snapshot
                // answered, so Tetragon did.
                self.failures = 0;
                let mut a = vec![ConnAction::SetReady(true)];
                if let Some(every) = t.resnapshot_interval {
                    a.push(ConnAction::StartTimer(Timer::Resnapshot, every));
                }
                a
            }
            ConnEvent::SnapshotFailed => vec![ConnAction::StartTimer(
                Timer::SnapshotRetry,
                t.snapshot_retry,
            )],
            ConnEvent::ConnectFailed | ConnEvent::StreamEnded => {
                let delay = t.backoff.delay(self.failures, jitter);
                self.failures = self.failures.saturating_add(1);
                vec![
                    ConnAction::SetReady(false),
                    ConnAction::CloseStream,
                    ConnAction::StartTimer(Timer::Backoff, delay),
                ]
            }
            ConnEvent::Shutdown => vec![ConnAction::SetReady(false), ConnAction::CloseStream],
        };
        self.state = to;
        Ok(actions)
    }

    /// Whether the next batch of events is the first of this stream (the shell
    /// then reports `FirstEvent`).
    pub fn awaits_first_event(&self) -> bool {
        self.state == ConnState::Streaming
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

impl Timer {
    /// The event this timer sends when it fires.
    pub fn event(self) -> ConnEvent {
        match self {
            Self::Grace => ConnEvent::GraceElapsed,
            Self::Backoff => ConnEvent::BackoffElapsed,
            Self::Resnapshot => ConnEvent::ResnapshotDue,
            Self::SnapshotRetry => ConnEvent::SnapshotRetryDue,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Grace => "grace",
            Self::Backoff => "backoff",
            Self::Resnapshot => "resnapshot",
            Self::SnapshotRetry => "snapshot_retry",
        }
    }
}

impl SnapshotReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StreamUp => "stream up",
            Self::Periodic => "periodic",
            Self::Retry => "retry",
        }
    }
}

impl ConnAction {
    /// The action without its data (durations), as the action diagram shows it.
    pub fn name(&self) -> String {
        match self {
            Self::Connect => "connect".into(),
            Self::StartTimer(t, _) => format!("start {}", t.name()),
            Self::CancelTimer(t) => format!("cancel {}", t.name()),
            Self::TakeSnapshot(r) => format!("snapshot ({})", r.as_str()),
            Self::SetReady(true) => "ready".into(),
            Self::SetReady(false) => "not ready".into(),
            Self::CloseStream => "close stream".into(),
        }
    }
}

impl ConnEvent {
    pub fn name(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Connected => "connected",
            Self::ConnectFailed => "connect_failed",
            Self::StreamOpened => "stream_opened",
            Self::FirstEvent => "first_event",
            Self::GraceElapsed => "grace_elapsed",
            Self::SnapshotDone => "snapshot_done",
            Self::SnapshotFailed => "snapshot_failed",
            Self::ResnapshotDue => "resnapshot_due",
            Self::SnapshotRetryDue => "snapshot_retry_due",
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

    const ALL_EVENTS: [ConnEvent; 13] = [
        ConnEvent::Start,
        ConnEvent::Connected,
        ConnEvent::ConnectFailed,
        ConnEvent::StreamOpened,
        ConnEvent::FirstEvent,
        ConnEvent::GraceElapsed,
        ConnEvent::SnapshotDone,
        ConnEvent::SnapshotFailed,
        ConnEvent::ResnapshotDue,
        ConnEvent::SnapshotRetryDue,
        ConnEvent::StreamEnded,
        ConnEvent::BackoffElapsed,
        ConnEvent::Shutdown,
    ];

    fn timings() -> ConnTimings {
        ConnTimings {
            backoff: BackoffPolicy::default(),
            grace: Duration::from_millis(300),
            resnapshot_interval: Some(Duration::from_secs(600)),
            snapshot_retry: Duration::from_secs(5),
        }
    }

    #[test]
    fn happy_path_snapshots_after_the_stream_is_up() {
        use ConnAction as A;
        let mut c = Connection::new(timings());
        assert_eq!(c.on(ConnEvent::Start, 0.0).unwrap(), vec![A::Connect]);
        assert_eq!(
            c.on(ConnEvent::Connected, 0.0).unwrap(),
            vec![A::StartTimer(Timer::Grace, Duration::from_millis(300))]
        );
        assert_eq!(
            c.on(ConnEvent::GraceElapsed, 0.0).unwrap(),
            vec![A::TakeSnapshot(SnapshotReason::StreamUp)]
        );
        assert_eq!(
            c.on(ConnEvent::SnapshotDone, 0.0).unwrap(),
            vec![
                A::SetReady(true),
                A::StartTimer(Timer::Resnapshot, Duration::from_secs(600))
            ]
        );
        assert_eq!(c.state, ConnState::Live);
        // Headers of a quiet stream can come after the snapshot.
        assert_eq!(
            c.on(ConnEvent::StreamOpened, 0.0).unwrap(),
            vec![A::SetReady(true)]
        );
        assert_eq!(
            c.on(ConnEvent::ResnapshotDue, 0.0).unwrap(),
            vec![A::TakeSnapshot(SnapshotReason::Periodic)]
        );
        c.on(ConnEvent::SnapshotDone, 0.0).unwrap();
        // Every reconnect leads to a new snapshot.
        let actions = c.on(ConnEvent::StreamEnded, 0.0).unwrap();
        assert_eq!(actions[..2], [A::SetReady(false), A::CloseStream]);
        assert!(matches!(actions[2], A::StartTimer(Timer::Backoff, _)));
        c.on(ConnEvent::BackoffElapsed, 0.0).unwrap();
        c.on(ConnEvent::Connected, 0.0).unwrap();
        assert!(c.awaits_first_event());
        assert_eq!(
            c.on(ConnEvent::FirstEvent, 0.0).unwrap(),
            vec![
                A::CancelTimer(Timer::Grace),
                A::TakeSnapshot(SnapshotReason::StreamUp)
            ]
        );
        assert!(!c.awaits_first_event());
    }

    #[test]
    fn a_failed_snapshot_is_retried_and_says_so() {
        use ConnAction as A;
        let mut c = Connection::new(timings());
        for ev in [
            ConnEvent::Start,
            ConnEvent::Connected,
            ConnEvent::FirstEvent,
        ] {
            c.on(ev, 0.0).unwrap();
        }
        assert_eq!(
            c.on(ConnEvent::SnapshotFailed, 0.0).unwrap(),
            vec![A::StartTimer(Timer::SnapshotRetry, Duration::from_secs(5))]
        );
        assert_eq!(c.state, ConnState::Live);
        assert_eq!(
            c.on(Timer::SnapshotRetry.event(), 0.0).unwrap(),
            vec![A::TakeSnapshot(SnapshotReason::Retry)]
        );
    }

    #[test]
    fn without_an_interval_no_periodic_snapshot_is_armed() {
        let mut c = Connection::new(ConnTimings {
            resnapshot_interval: None,
            ..timings()
        });
        for ev in [
            ConnEvent::Start,
            ConnEvent::Connected,
            ConnEvent::GraceElapsed,
        ] {
            c.on(ev, 0.0).unwrap();
        }
        assert_eq!(
            c.on(ConnEvent::SnapshotDone, 0.0).unwrap(),
            vec![ConnAction::SetReady(true)]
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
        let mut c = Connection::new(ConnTimings {
            backoff: p,
            ..timings()
        });
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
        let mut c = Connection::new(timings());
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
        let mut c = Connection::new(timings());
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
                "Streaming: stream_opened,first_event,grace_elapsed,stream_ended,shutdown",
                "Snapshotting: stream_opened,snapshot_done,snapshot_failed,stream_ended,shutdown",
                "Live: stream_opened,resnapshot_due,snapshot_retry_due,stream_ended,shutdown",
                "Backoff: backoff_elapsed,shutdown",
                "Stopped: ",
            ]
        );
    }

    proptest! {
        #[test]
        fn no_invalid_transition_is_reachable(events in proptest::collection::vec(0usize..13, 0..200), jitter in 0.0f64..1.0) {
            let mut c = Connection::new(timings());
            for i in events {
                let ev = ALL_EVENTS[i];
                let from = c.state;
                match c.on(ev, jitter) {
                    Ok(actions) => {
                        prop_assert!(transitions().contains(&(from, ev, c.state)));
                        for a in &actions {
                            if let ConnAction::StartTimer(Timer::Backoff, d) = a {
                                prop_assert!(*d <= c.timings.backoff.cap);
                            }
                        }
                        // Timers: a fired one is what this event is; the shell
                        // starts at most one of each, and a snapshot is taken
                        // exactly when entering Snapshotting.
                        let snapshots = actions.iter().filter(|a| matches!(a, ConnAction::TakeSnapshot(_))).count();
                        prop_assert_eq!(snapshots, usize::from(c.state == ConnState::Snapshotting && from != ConnState::Snapshotting));
                        // Leaving the streaming states always says "not ready" and closes.
                        let streaming = |s| matches!(s, ConnState::Streaming | ConnState::Snapshotting | ConnState::Live);
                        if streaming(from) && !streaming(c.state) {
                            prop_assert!(actions.contains(&ConnAction::SetReady(false)));
                            prop_assert!(actions.contains(&ConnAction::CloseStream));
                        }
                        // Only a connection that answered is ready.
                        if actions.contains(&ConnAction::SetReady(true)) {
                            prop_assert!(streaming(c.state));
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
