//! The persisted learner state: what one learner key has run, kept in
//! milliseconds. `view.rs` turns it into the documented JSON shape.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::completeness::Tracking;
use super::config::LearnerConfig;
use super::hook_view::HookPaths;
use super::key::LearnerKey;
use super::observation::{FactSource, Observation};
use super::pod_labels::PodLabels;
use super::state::LearnerState;
use crate::time::UnixMillis;

/// Why a profile may miss executables. Operators must not treat a partial
/// profile as a complete allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartialReason {
    /// The container was already running when the agent started: whatever it ran
    /// and finished before then was never seen.
    StartedBeforeAgent,
    /// Tetragon dropped events for us (slow client) while this key was live.
    EventsDropped,
    /// More distinct executables than `max_executables`: the rest were not kept.
    TooManyExecutables,
    /// No snapshot succeeded since the agent (re)connected to Tetragon: what
    /// was already running then was never seen.
    NoSnapshot,
}

impl PartialReason {
    pub const ALL: [Self; 4] = [
        Self::StartedBeforeAgent,
        Self::EventsDropped,
        Self::TooManyExecutables,
        Self::NoSnapshot,
    ];

    /// The kebab-case name, as serialized (JSON, logs, metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StartedBeforeAgent => "started-before-agent",
            Self::EventsDropped => "events-dropped",
            Self::TooManyExecutables => "too-many-executables",
            Self::NoSnapshot => "no-snapshot",
        }
    }
}

impl fmt::Display for PartialReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Completeness {
    Complete,
    Partial,
}

impl Completeness {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Partial => "partial",
        }
    }
}

impl fmt::Display for Completeness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Whether a profile can be enforced as it is, and if not, why. `Partial`
/// wins over `Learning`: waiting does not complete a partial profile, so it is
/// the reason an operator must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Readiness {
    /// Complete, and stable or locked: its allow-list can be enforced.
    Ready,
    /// Complete but still learning: new executables may still come.
    Learning,
    /// It may miss executables (see `partial_reasons`), whatever its state.
    Partial,
}

/// One executable of a profile (or one deviation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutableRecord {
    pub path: String,
    /// Earliest observation time seen, whatever order observations arrived in.
    pub first_seen: UnixMillis,
    /// Latest observation time seen; never moves back when the clock does.
    pub last_seen: UnixMillis,
    pub count: u64,
    /// How the earliest sighting was learned (the one behind `first_seen`).
    pub source: FactSource,
    /// Every way it was learned.
    pub sources: BTreeSet<FactSource>,
    /// True while every sighting was a Tetragon-flagged exec probe: one ordinary
    /// run clears it for good, so a policy may treat probe-only binaries apart.
    pub exec_probe: bool,
    /// True while every sighting was outside the init tree (`kubectl exec`), same
    /// rule as `exec_probe`.
    pub exec_session: bool,
    /// The paths enforcement hooks compared for it, as Tetragon reported them
    /// (see `hook_view.rs`); empty for a view never seen.
    #[serde(default)]
    pub views: HookPaths,
}

impl ExecutableRecord {
    pub fn first(obs: &Observation) -> Self {
        Self {
            path: obs.path.clone(),
            first_seen: obs.at,
            last_seen: obs.at,
            count: 1,
            source: obs.source,
            sources: BTreeSet::from([obs.source]),
            exec_probe: obs.exec_probe,
            exec_session: obs.exec_session,
            views: HookPaths::default(),
        }
    }

    /// Folds in one more sighting. Times are min/max'd so late or out-of-order
    /// facts (a snapshot after live events, a clock stepping back) only widen
    /// the seen interval, never invert it.
    pub fn observe(&mut self, obs: &Observation) {
        if obs.at < self.first_seen {
            self.first_seen = obs.at;
            self.source = obs.source;
        }
        self.last_seen = self.last_seen.max(obs.at);
        self.count = self.count.saturating_add(1);
        self.sources.insert(obs.source);
        self.exec_probe &= obs.exec_probe;
        self.exec_session &= obs.exec_session;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub key: LearnerKey,
    pub state: LearnerState,
    pub created_at: UnixMillis,
    /// Start of the current learning period (creation, drift, unlock or reset).
    pub learning_since: UnixMillis,
    /// Last time an executable was added to the profile.
    pub last_new_at: UnixMillis,
    /// The learned profile, by path.
    pub executables: BTreeMap<String, ExecutableRecord>,
    /// Executables seen while `Locked` and not in the profile: never added to it.
    /// Kept after unlock as an audit trail; only `Reset` clears them.
    pub deviations: BTreeMap<String, ExecutableRecord>,
    /// How often `Stable` went back to `Learning` because of a new executable.
    pub drift_count: u64,
    /// Empty means complete.
    pub partial_reasons: BTreeSet<PartialReason>,
    /// Container instances seen, the latest gap and when reasons healed: what
    /// the healing rules (`completeness.rs`) decide with.
    #[serde(default)]
    pub tracking: Tracking,
    /// The label sets of the pods this container ran in (instance-specific
    /// labels dropped): what a policy can select the workload's pods by.
    #[serde(default)]
    pub pod_labels: PodLabels,
}

impl Profile {
    pub fn new(key: LearnerKey, now: UnixMillis) -> Self {
        Self {
            key,
            state: LearnerState::INITIAL,
            created_at: now,
            learning_since: now,
            last_new_at: now,
            executables: BTreeMap::new(),
            deviations: BTreeMap::new(),
            drift_count: 0,
            partial_reasons: BTreeSet::new(),
            tracking: Tracking::default(),
            pod_labels: PodLabels::default(),
        }
    }

    pub fn completeness(&self) -> Completeness {
        if self.partial_reasons.is_empty() {
            Completeness::Complete
        } else {
            Completeness::Partial
        }
    }

    /// Ready = complete, and `stable` or `locked`. A locked profile was frozen
    /// by the operator, who thereby declared it finished: locked and complete
    /// is ready. A partial profile is never ready, in any state.
    pub fn readiness(&self) -> Readiness {
        match (self.completeness(), self.state) {
            (Completeness::Partial, _) => Readiness::Partial,
            (Completeness::Complete, LearnerState::Learning) => Readiness::Learning,
            (Completeness::Complete, LearnerState::Stable | LearnerState::Locked) => {
                Readiness::Ready
            }
        }
    }

    /// `readiness() == Ready`: the `ready` of the profiles JSON and `debug list`.
    pub fn is_ready(&self) -> bool {
        self.readiness() == Readiness::Ready
    }

    pub fn knows(&self, path: &str) -> bool {
        self.executables.contains_key(path)
    }

    /// Both stability conditions at `now`. Differences saturate, so a clock that
    /// went backwards reads as "no time passed": it can delay stability, never
    /// hasten it.
    pub fn is_quiet_at(&self, now: UnixMillis, cfg: &LearnerConfig) -> bool {
        now.saturating_sub(self.last_new_at) >= cfg.stability_window_ms
            && now.saturating_sub(self.learning_since) >= cfg.min_learning_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(path: &str, at: UnixMillis, source: FactSource) -> Observation {
        Observation {
            path: path.into(),
            at,
            source,
            exec_probe: false,
            exec_session: false,
        }
    }

    #[test]
    fn record_widens_its_interval_and_keeps_earliest_source() {
        let mut rec = ExecutableRecord::first(&obs("/bin/sh", 100, FactSource::Event));
        rec.observe(&obs("/bin/sh", 50, FactSource::Snapshot));
        rec.observe(&obs("/bin/sh", 70, FactSource::ExportLog));
        assert_eq!((rec.first_seen, rec.last_seen, rec.count), (50, 100, 3));
        assert_eq!(rec.source, FactSource::Snapshot);
        assert_eq!(rec.sources.len(), 3);
    }

    #[test]
    fn probe_and_session_flags_hold_only_while_every_sighting_has_them() {
        let mut probe = obs("/bin/check", 1, FactSource::Event);
        probe.exec_probe = true;
        probe.exec_session = true;
        let mut rec = ExecutableRecord::first(&probe);
        rec.observe(&probe);
        assert!(rec.exec_probe && rec.exec_session);
        rec.observe(&obs("/bin/check", 2, FactSource::Event));
        rec.observe(&probe);
        assert!(!rec.exec_probe && !rec.exec_session);
    }

    #[test]
    fn completeness_follows_partial_reasons() {
        let mut p = Profile::new(LearnerKey::new("ns", "Pod", "p", "c"), 0);
        assert_eq!(p.completeness().as_str(), "complete");
        p.partial_reasons.insert(PartialReason::StartedBeforeAgent);
        assert_eq!(p.completeness().to_string(), "partial");
        let json = serde_json::to_string(&p.partial_reasons).unwrap();
        assert_eq!(json, r#"["started-before-agent"]"#);
        let back: Profile = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn ready_is_complete_and_stable_or_locked() {
        use LearnerState::{Learning, Locked, Stable};
        // Every state x completeness, the expected answer written out.
        let cases = [
            (Learning, false, Readiness::Learning, false),
            (Stable, false, Readiness::Ready, true),
            (Locked, false, Readiness::Ready, true),
            (Learning, true, Readiness::Partial, false),
            (Stable, true, Readiness::Partial, false),
            (Locked, true, Readiness::Partial, false),
        ];
        for (state, partial, readiness, ready) in cases {
            let mut p = Profile::new(LearnerKey::new("ns", "Pod", "p", "c"), 0);
            p.state = state;
            if partial {
                p.partial_reasons.insert(PartialReason::EventsDropped);
            }
            assert_eq!(p.readiness(), readiness, "{state} partial={partial}");
            assert_eq!(p.is_ready(), ready, "{state} partial={partial}");
        }
    }

    #[test]
    fn quiet_needs_both_windows_and_survives_clock_going_back() {
        let cfg = LearnerConfig {
            stability_window_ms: 10,
            min_learning_ms: 100,
            ..LearnerConfig::default()
        };
        let mut p = Profile::new(LearnerKey::new("ns", "Pod", "p", "c"), 1_000);
        p.last_new_at = 1_095;
        assert!(!p.is_quiet_at(1_099, &cfg)); // neither window yet
        assert!(!p.is_quiet_at(1_100, &cfg)); // min_learning done, window not
        assert!(p.is_quiet_at(1_105, &cfg));
        p.last_new_at = 1_000;
        assert!(!p.is_quiet_at(1_050, &cfg)); // window done, min_learning not
        assert!(!p.is_quiet_at(0, &cfg)); // backwards: not quiet, no panic
    }
}
