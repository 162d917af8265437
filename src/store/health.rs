//! Storage failures as a state, not a log flood. Pure: time is passed in.
//!
//! The Checkpointer feeds every write result here. While writes fail, retries
//! back off exponentially (0.5 s doubling to 30 s) and each failure is logged
//! once, so the log slows down with the backoff. sled 0.34 keeps an I/O error
//! (ENOSPC) until the database is reopened: once a probe write beside the
//! database succeeds again (space is back) but sled still fails, the agent
//! gives up and exits non-zero, so its supervisor restarts it and the database
//! is reopened. What was reported as learned is durable already; learners
//! re-learn the rest from the next snapshot.
use std::time::Duration;

use serde::Serialize;

use crate::time::UnixMillis;

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Failures before the agent starts probing whether space is back.
pub const PROBE_AFTER_FAILURES: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum StorageState {
    #[default]
    Ok,
    /// Checkpoints fail: nothing new is reported as learned meanwhile.
    Failing {
        since: UnixMillis,
        failures: u32,
        last_error: String,
        retry_in_ms: u64,
    },
    /// Writes still failed after the disk took writes again: the agent exits
    /// so that the database is reopened.
    GaveUp {
        since: UnixMillis,
        last_error: String,
    },
}

/// What the Checkpointer does after a failed write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterFailure {
    pub retry_in: Duration,
    /// Probe whether the disk takes writes again (sled's error may be sticky).
    pub probe: bool,
}

impl StorageState {
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok)
    }

    /// A write failed at `now`.
    pub fn on_failure(&self, now: UnixMillis, error: &str) -> (Self, AfterFailure) {
        let (since, failures) = match self {
            Self::Failing {
                since, failures, ..
            } => (*since, failures.saturating_add(1)),
            Self::GaveUp { since, .. } => (*since, u32::MAX),
            Self::Ok => (now, 1),
        };
        let retry_in = FIRST_RETRY
            .saturating_mul(1u32 << (failures.saturating_sub(1)).min(16))
            .min(MAX_RETRY);
        (
            Self::Failing {
                since,
                failures,
                last_error: error.to_string(),
                retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
            },
            AfterFailure {
                retry_in,
                probe: failures >= PROBE_AFTER_FAILURES,
            },
        )
    }

    /// The probe wrote to the disk while the store kept failing: sled's error
    /// is sticky, only a reopen (a restart) clears it.
    pub fn on_probe_ok(&self) -> Self {
        match self {
            Self::Failing {
                since, last_error, ..
            } => Self::GaveUp {
                since: *since,
                last_error: last_error.clone(),
            },
            other => other.clone(),
        }
    }

    /// A write succeeded: the store works again.
    pub fn on_success(&self) -> Self {
        Self::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_exponentially_to_a_cap_and_probe_after_three() {
        let mut s = StorageState::Ok;
        let mut waits = Vec::new();
        let mut probes = Vec::new();
        for i in 0..10 {
            let (next, after) = s.on_failure(1_000 + i, "No space left on device");
            waits.push(after.retry_in.as_millis());
            probes.push(after.probe);
            s = next;
        }
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]
        );
        assert_eq!(probes[..3], [false, false, true]);
        assert!(matches!(
            s,
            StorageState::Failing {
                since: 1_000,
                failures: 10,
                ..
            }
        ));
    }

    #[test]
    fn success_recovers_and_a_probe_that_writes_gives_up() {
        let (failing, _) = StorageState::Ok.on_failure(5, "disk");
        assert_eq!(failing.on_success(), StorageState::Ok);
        assert_eq!(
            failing.on_probe_ok(),
            StorageState::GaveUp {
                since: 5,
                last_error: "disk".into()
            }
        );
        assert_eq!(StorageState::Ok.on_probe_ok(), StorageState::Ok);
    }

    #[test]
    fn serializes_with_a_state_tag() {
        let (s, _) = StorageState::Ok.on_failure(7, "x");
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["state"], "failing");
        assert_eq!(v["failures"], 1);
        assert_eq!(
            serde_json::to_value(StorageState::Ok).unwrap()["state"],
            "ok"
        );
    }
}
