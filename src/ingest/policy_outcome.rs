//! What one of the agent's exported policies really did to an exec, told by
//! the events that follow its policy event rather than by the mode Tetragon
//! listed a moment ago (a monitor-mode event carries the same action, and a
//! `tp set-mode` takes effect at the next exec, long before the agent's next
//! look at the list):
//!
//! - raw tracepoint `Sigkill` (the event names the new exec): killed when
//!   that exec's exit says `SIGKILL`; an exit without it, or none within the
//!   window, means it ran (monitor mode).
//! - kprobe/LSM `Override` (the event names the caller before the exec):
//!   denied when no exec of that pid follows within the window (EPERM: no
//!   `process_exec` at all); an exec that follows means it ran.
//!
//! Pure and bounded; the ingester feeds it events and the clock.
use crate::learner::violation::ViolationMode;
use crate::time::UnixMillis;

/// How long an outcome may take to show (a killed exec exits at once, a
/// monitored one execs at once; the margin is for batching and scheduling).
pub const OUTCOME_WINDOW_MS: u64 = 2_000;
/// At most this many undecided events on each side.
pub const OUTCOME_CAP: usize = 16_384;

/// A policy event waiting for its outcome, with what the violation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending<L> {
    pub learner: L,
    pub policy: String,
    /// The path the hook checked.
    pub path: String,
    /// The calling binary.
    pub caller: String,
    /// The exec's path as events name it (tracepoint only: what to unlearn).
    pub exec_path: Option<String>,
    /// When the killed exec started (tracepoint only).
    pub exec_started_at: Option<UnixMillis>,
    /// The event's time (kprobe/LSM: an exec must start after it).
    pub event_time: UnixMillis,
    pub seen_at: UnixMillis,
    /// The node that reported it (for the metric).
    pub node: String,
}

/// The outcome of one policy event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided<L> {
    pub pending: Pending<L>,
    pub mode: ViolationMode,
}

#[derive(Debug, Clone)]
pub struct PolicyOutcomes<L> {
    /// Tracepoint kills, by the killed exec's exec_id.
    kills: crate::FastMap<String, Pending<L>>,
    /// kprobe/LSM overrides, by the caller's pid.
    overrides: crate::FastMap<u32, Pending<L>>,
    window_ms: u64,
}

impl<L: Clone> Default for PolicyOutcomes<L> {
    fn default() -> Self {
        Self {
            kills: crate::FastMap::default(),
            overrides: crate::FastMap::default(),
            window_ms: OUTCOME_WINDOW_MS,
        }
    }
}

impl<L: Clone> PolicyOutcomes<L> {
    pub fn is_empty(&self) -> bool {
        self.kills.is_empty() && self.overrides.is_empty()
    }

    /// A `Sigkill` event of the exec `exec_id`.
    pub fn sigkill(&mut self, exec_id: &str, p: Pending<L>) {
        if self.kills.len() < OUTCOME_CAP {
            self.kills.insert(exec_id.to_owned(), p);
        }
    }

    /// An `Override` event of the caller `pid`.
    pub fn overridden(&mut self, pid: u32, p: Pending<L>) {
        if self.overrides.len() < OUTCOME_CAP {
            self.overrides.insert(pid, p);
        }
    }

    /// The exit of `exec_id`, with its signal: a kill it was waiting for.
    pub fn exit(&mut self, exec_id: &str, signal: &str) -> Option<Decided<L>> {
        let pending = self.kills.remove(exec_id)?;
        let mode = if signal == "SIGKILL" {
            ViolationMode::Denied
        } else {
            ViolationMode::WouldDeny
        };
        Some(Decided { pending, mode })
    }

    /// Whether `exit` would decide something for `exec_id` (so the caller
    /// reads the exit's signal only then).
    pub fn awaits_exit(&self, exec_id: &str) -> bool {
        !self.kills.is_empty() && self.kills.contains_key(exec_id)
    }

    /// An exec of `pid` that started at `start`: an override it was waiting
    /// for did not deny (monitor mode).
    pub fn exec(&mut self, pid: u32, start: UnixMillis) -> Option<Decided<L>> {
        if self.overrides.is_empty() {
            return None;
        }
        let p = self.overrides.get(&pid)?;
        if p.event_time > start {
            return None;
        }
        let pending = self.overrides.remove(&pid)?;
        Some(Decided {
            pending,
            mode: ViolationMode::WouldDeny,
        })
    }

    /// Everything that waited longer than the window at `now`: an override
    /// with no exec was a denial; a kill with no exit ran on.
    pub fn expire(&mut self, now: UnixMillis) -> Vec<Decided<L>> {
        let window = self.window_ms;
        let old = |p: &Pending<L>| now.saturating_sub(p.seen_at) > window;
        let mut out = Vec::new();
        let gone: Vec<u32> = self
            .overrides
            .iter()
            .filter(|(_, p)| old(p))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in gone {
            if let Some(pending) = self.overrides.remove(&pid) {
                out.push(Decided {
                    pending,
                    mode: ViolationMode::Denied,
                });
            }
        }
        let ran: Vec<String> = self
            .kills
            .iter()
            .filter(|(_, p)| old(p))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ran {
            if let Some(pending) = self.kills.remove(&id) {
                out.push(Decided {
                    pending,
                    mode: ViolationMode::WouldDeny,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(event_time: UnixMillis, seen_at: UnixMillis) -> Pending<u8> {
        Pending {
            learner: 1,
            policy: "deployment-web".into(),
            path: "/usr/bin/id".into(),
            caller: "/bin/sh".into(),
            exec_path: Some("/usr/bin/id".into()),
            exec_started_at: Some(event_time),
            event_time,
            seen_at,
            node: "n".into(),
        }
    }

    #[test]
    fn a_tracepoint_kill_is_told_by_the_exit_signal() {
        // b-killed-enforce: exec, SIGKILL event, exit "SIGKILL".
        let mut o = PolicyOutcomes::default();
        o.sigkill("e1", pending(10, 10));
        assert!(o.awaits_exit("e1"));
        assert_eq!(o.exit("e1", "SIGKILL").unwrap().mode, ViolationMode::Denied);
        // c-monitor-would-kill: the same event, then an exit with no signal.
        o.sigkill("e2", pending(10, 10));
        assert_eq!(o.exit("e2", "").unwrap().mode, ViolationMode::WouldDeny);
        // A monitored process still running after the window ran.
        o.sigkill("e3", pending(10, 10));
        assert_eq!(o.expire(5_000)[0].mode, ViolationMode::WouldDeny);
        assert!(o.is_empty());
    }

    #[test]
    fn an_override_is_told_by_the_exec_that_follows_or_not() {
        let mut o = PolicyOutcomes::default();
        // Monitor: the exec follows (kprobe-monitor.unlisted).
        o.overridden(486, pending(100, 100));
        assert_eq!(o.exec(486, 99), None, "an exec that started before it");
        assert_eq!(o.exec(486, 101).unwrap().mode, ViolationMode::WouldDeny);
        // Enforce: no exec (kprobe-enforce.unlisted), the window passes.
        o.overridden(490, pending(200, 200));
        assert!(o.expire(1_000).is_empty());
        assert_eq!(o.expire(2_201)[0].mode, ViolationMode::Denied);
    }
}
