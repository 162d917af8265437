//! What the agent's exported policies did to a learner's execs: one record per
//! (policy, checked path, mode), deduplicated, with a stable id (the same on
//! every node, so `export --input` merges them), counted, bounded (the newest
//! `MAX_VIOLATIONS` kept, the rest counted), acknowledged by the operator, and
//! cleared once the path is allowed.
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::UnixMillis;

/// At most this many violations per learner: the newest by last sighting.
pub const MAX_VIOLATIONS: usize = 100;

/// What the policy did, from its mode at the time (only Tetragon's policy
/// list tells: a monitor-mode event carries the same action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationMode {
    /// Monitor mode: the exec ran; under enforcement it would be denied.
    WouldDeny,
    /// Enforce mode: the exec was denied (EPERM) or killed (SIGKILL).
    Denied,
}

impl ViolationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WouldDeny => "would-deny",
            Self::Denied => "denied",
        }
    }
}

impl fmt::Display for ViolationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One sighting, as the ingester reads it from a policy event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationSeen {
    /// The policy's name in Tetragon.
    pub policy: String,
    /// The `linux_binprm` path the hook checked.
    pub path: String,
    /// The calling process's binary (for a kprobe/LSM hook: before the exec).
    pub caller: String,
    pub mode: ViolationMode,
    pub at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub policy: String,
    pub path: String,
    /// The latest caller seen.
    pub caller: String,
    pub mode: ViolationMode,
    pub first_seen: UnixMillis,
    pub last_seen: UnixMillis,
    pub count: u64,
    /// The operator acknowledged it (`admin ack`): kept, no longer active.
    pub acknowledged: bool,
}

/// A learner's violations by id, and how many were evicted beyond the bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violations {
    pub by_id: BTreeMap<String, Violation>,
    /// Violations evicted to keep the newest `MAX_VIOLATIONS`.
    pub evicted: u64,
}

/// The stable id of a (policy, path, mode): 16 hex digits of FNV-1a 64 over
/// the three fields, each followed by a 0 byte (so fields cannot run together).
pub fn violation_id(policy: &str, path: &str, mode: ViolationMode) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [policy, path, mode.as_str()] {
        for b in part.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// What recording a sighting changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A violation not held before (news: made durable, counted).
    New,
    /// A violation not held before that evicted the oldest: the learner is at
    /// its bound, under a flood; written lazily (with the next checkpoint), so
    /// a flood of distinct violations costs no flush each.
    NewEvicting,
    /// Counted on one held already.
    Again,
}

impl Violations {
    /// Records one sighting; the oldest beyond the bound is evicted.
    pub fn record(&mut self, s: ViolationSeen) -> (String, Recorded) {
        let id = violation_id(&s.policy, &s.path, s.mode);
        if let Some(v) = self.by_id.get_mut(&id) {
            v.count = v.count.saturating_add(1);
            v.first_seen = v.first_seen.min(s.at);
            v.last_seen = v.last_seen.max(s.at);
            v.caller = s.caller;
            return (id, Recorded::Again);
        }
        self.by_id.insert(
            id.clone(),
            Violation {
                policy: s.policy,
                path: s.path,
                caller: s.caller,
                mode: s.mode,
                first_seen: s.at,
                last_seen: s.at,
                count: 1,
                acknowledged: false,
            },
        );
        let evicted = self.bound();
        (
            id,
            if evicted {
                Recorded::NewEvicting
            } else {
                Recorded::New
            },
        )
    }

    /// Keeps the newest `MAX_VIOLATIONS` (by last sighting, then id); true
    /// when one was evicted.
    fn bound(&mut self) -> bool {
        let before = self.evicted;
        while self.by_id.len() > MAX_VIOLATIONS {
            let oldest = self
                .by_id
                .iter()
                .min_by(|a, b| (a.1.last_seen, a.0).cmp(&(b.1.last_seen, b.0)))
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => {
                    self.by_id.remove(&id);
                    self.evicted = self.evicted.saturating_add(1);
                }
                None => break,
            }
        }
        self.evicted != before
    }

    /// `admin ack`: true when `id` was held and not yet acknowledged.
    pub fn acknowledge(&mut self, id: &str) -> Option<bool> {
        let v = self.by_id.get_mut(id)?;
        Some(!std::mem::replace(&mut v.acknowledged, true))
    }

    /// `admin allow`: the violations of `path` are cleared; how many.
    pub fn clear_path(&mut self, path: &str) -> usize {
        let before = self.by_id.len();
        self.by_id.retain(|_, v| v.path != path);
        before - self.by_id.len()
    }

    /// Not acknowledged.
    pub fn active(&self) -> usize {
        self.by_id.values().filter(|v| !v.acknowledged).count()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.evicted == 0
    }

    /// Another node's violations of the same learner: union by id (counts
    /// summed, times widened, acknowledged if acknowledged anywhere), then the
    /// bound; evictions summed.
    pub fn merge(&mut self, other: &Violations) {
        for (id, o) in &other.by_id {
            match self.by_id.get_mut(id) {
                Some(v) => {
                    v.count = v.count.saturating_add(o.count);
                    // The latest caller; on a tie the larger name, so the
                    // order of the inputs never shows.
                    if (o.last_seen, &o.caller) > (v.last_seen, &v.caller) {
                        v.caller = o.caller.clone();
                    }
                    v.first_seen = v.first_seen.min(o.first_seen);
                    v.last_seen = v.last_seen.max(o.last_seen);
                    v.acknowledged |= o.acknowledged;
                }
                None => {
                    self.by_id.insert(id.clone(), o.clone());
                }
            }
        }
        self.evicted = self.evicted.saturating_add(other.evicted);
        self.bound();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(path: &str, mode: ViolationMode, at: UnixMillis) -> ViolationSeen {
        ViolationSeen {
            policy: "deployment-web".into(),
            path: path.into(),
            caller: "/bin/sh".into(),
            mode,
            at,
        }
    }

    #[test]
    fn ids_are_stable_and_distinguish_fields() {
        // Pinned: the id is part of the admin API (`admin ack KEY ID`).
        assert_eq!(violation_id("p", "/x", ViolationMode::Denied).len(), 16);
        assert_eq!(
            violation_id("p", "/x", ViolationMode::Denied),
            violation_id("p", "/x", ViolationMode::Denied)
        );
        assert_ne!(
            violation_id("p", "/x", ViolationMode::Denied),
            violation_id("p", "/x", ViolationMode::WouldDeny)
        );
        assert_ne!(
            violation_id("ab", "/c", ViolationMode::Denied),
            violation_id("a", "b/c", ViolationMode::Denied)
        );
    }

    #[test]
    fn deduplicated_bounded_acknowledged_and_cleared() {
        let mut v = Violations::default();
        let (id, r) = v.record(seen("/usr/bin/id", ViolationMode::WouldDeny, 5));
        assert_eq!(r, Recorded::New);
        assert_eq!(
            v.record(seen("/usr/bin/id", ViolationMode::WouldDeny, 9)).1,
            Recorded::Again
        );
        assert_eq!(
            (
                v.by_id[&id].count,
                v.by_id[&id].first_seen,
                v.by_id[&id].last_seen
            ),
            (2, 5, 9)
        );
        assert_eq!(v.acknowledge(&id), Some(true));
        assert_eq!(v.acknowledge(&id), Some(false));
        assert_eq!(v.acknowledge("nope"), None);
        assert_eq!(v.active(), 0);
        for i in 0..150u64 {
            v.record(seen(&format!("/x/{i}"), ViolationMode::Denied, 100 + i));
        }
        assert_eq!(v.by_id.len(), MAX_VIOLATIONS);
        assert_eq!(v.evicted, 51);
        assert!(
            v.by_id.values().all(|x| x.last_seen >= 150),
            "the newest are kept"
        );
        assert_eq!(v.clear_path("/x/149"), 1);
    }
}
