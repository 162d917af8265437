//! The documented JSON shape of a profile (`debug dump`, `export --format json`):
//! executables as an array sorted by path, times as RFC 3339 strings. Separate
//! from `Profile` so the stored form (milliseconds, maps) can change without
//! breaking scripts that read the output.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::hook_view::{is_fileless, HookPaths, HookView};
use super::key::LearnerKey;
use super::observation::FactSource;
use super::pod_labels::PodLabelSetView;
use super::profile::{Completeness, ExecutableRecord, PartialReason, Profile};
use super::state::LearnerState;
use crate::time::rfc3339_ms;

/// Field order is the contract's: `key, state, executables, deviations`, then
/// additions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileView {
    pub key: LearnerKey,
    pub state: LearnerState,
    pub executables: Vec<ExecutableView>,
    pub deviations: Vec<ExecutableView>,
    pub completeness: Completeness,
    pub partial_reasons: Vec<PartialReason>,
    pub drift_count: u64,
    pub created_at: String,
    pub learning_since: String,
    pub last_new_at: String,
    /// `Profile::is_ready`: complete, and stable or locked. Derived, like
    /// `completeness`: files written before it existed read as if it were
    /// absent (`export --input` recomputes it).
    #[serde(default)]
    pub ready: bool,
    /// When each partial reason that is clear now last healed (left out
    /// while none did).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub healed_at: BTreeMap<PartialReason, String>,
    /// Derived: the executables never seen through each hook view
    /// ([`is_unverified`]); an allow-list of that view's shape holds them
    /// under the path they were learned under, unchecked. Left out when both
    /// are empty; `export --input` recomputes it (what a file says is not read).
    #[serde(default, skip_serializing_if = "HookPaths::is_empty")]
    pub unverified: HookPaths,
    /// The label sets of the pods this container ran in, each with the pods
    /// that carried it (instance-specific labels dropped); left out while none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_labels: Vec<PodLabelSetView>,
}

/// Whether `rec` was never seen through `view`'s hook: an allow-list of that
/// shape can only hold the path it was learned under (from a snapshot,
/// backfill, an exit, or with observation off), which that hook may never
/// compare (a symlink, a script). A fileless name is not: no allow-list can
/// hold it, whatever was seen.
pub fn is_unverified(rec: &ExecutableRecord, view: HookView) -> bool {
    !rec.views.verified(view) && !is_fileless(&rec.path)
}

/// Per view, the paths of the executables [`is_unverified`] for it.
pub fn unverified<'a>(records: impl IntoIterator<Item = &'a ExecutableRecord>) -> HookPaths {
    let mut out = HookPaths::default();
    for rec in records {
        if is_unverified(rec, HookView::Opened) {
            out.opened.insert(rec.path.clone());
        }
        if is_unverified(rec, HookView::Loaded) {
            out.loaded.insert(rec.path.clone());
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutableView {
    pub path: String,
    pub first_seen: String,
    pub last_seen: String,
    pub count: u64,
    pub source: FactSource,
    pub sources: Vec<FactSource>,
    pub exec_probe: bool,
    pub exec_session: bool,
    /// `opened` and `loaded`: the paths each enforcement hook compared for
    /// this executable (see `hook_view.rs`); a view never seen is left out.
    #[serde(flatten)]
    pub views: HookPaths,
}

impl From<&ExecutableRecord> for ExecutableView {
    fn from(rec: &ExecutableRecord) -> Self {
        Self {
            path: rec.path.clone(),
            first_seen: rfc3339_ms(rec.first_seen),
            last_seen: rfc3339_ms(rec.last_seen),
            count: rec.count,
            source: rec.source,
            sources: rec.sources.iter().copied().collect(),
            exec_probe: rec.exec_probe,
            exec_session: rec.exec_session,
            views: rec.views.clone(),
        }
    }
}

impl From<&Profile> for ProfileView {
    fn from(p: &Profile) -> Self {
        // BTreeMap iteration is already sorted by path (byte order).
        Self {
            key: p.key.clone(),
            state: p.state,
            executables: p.executables.values().map(ExecutableView::from).collect(),
            deviations: p.deviations.values().map(ExecutableView::from).collect(),
            completeness: p.completeness(),
            partial_reasons: p.partial_reasons.iter().copied().collect(),
            drift_count: p.drift_count,
            created_at: rfc3339_ms(p.created_at),
            learning_since: rfc3339_ms(p.learning_since),
            last_new_at: rfc3339_ms(p.last_new_at),
            ready: p.is_ready(),
            healed_at: p
                .tracking
                .healed_at
                .iter()
                .filter(|(r, _)| !p.partial_reasons.contains(r))
                .map(|(r, at)| (*r, rfc3339_ms(*at)))
                .collect(),
            unverified: unverified(p.executables.values()),
            pod_labels: p.pod_labels.to_view(),
        }
    }
}

impl Profile {
    pub fn to_view(&self) -> ProfileView {
        ProfileView::from(self)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::learner::config::LearnerConfig;
    use crate::learner::machine::{step, LearnerInput};
    use crate::learner::observation::Observation;

    fn seen(path: &str, at: u64, source: FactSource) -> LearnerInput {
        LearnerInput::Observe(Observation {
            path: path.into(),
            at,
            source,
            exec_probe: false,
            exec_session: false,
        })
    }

    #[test]
    fn view_has_the_documented_shape() {
        let cfg = LearnerConfig::default();
        let mut p = Profile::new(LearnerKey::new("shop", "Deployment", "web", "nginx"), 0);
        let hostile = "/tmp/a\"b\n{{ x }}";
        for input in [
            seen("/usr/sbin/nginx", 1_000, FactSource::Snapshot),
            seen(hostile, 2_000, FactSource::Event),
            seen("/usr/sbin/nginx", 3_500, FactSource::Event),
            LearnerInput::Lock { now: 4_000 },
            seen("/bin/sh", 5_000, FactSource::Event),
            LearnerInput::MarkPartial {
                reason: PartialReason::StartedBeforeAgent,
                at: 0,
            },
        ] {
            assert!(step(&mut p, input, &cfg).is_ok());
        }
        let got = serde_json::to_value(p.to_view()).unwrap();
        let want = json!({
            "key": {"namespace": "shop", "workload_kind": "Deployment",
                    "workload": "web", "container": "nginx"},
            "state": "locked",
            "executables": [
                {"path": hostile, "first_seen": "1970-01-01T00:00:02.000Z",
                 "last_seen": "1970-01-01T00:00:02.000Z", "count": 1, "source": "event",
                 "sources": ["event"], "exec_probe": false, "exec_session": false},
                {"path": "/usr/sbin/nginx", "first_seen": "1970-01-01T00:00:01.000Z",
                 "last_seen": "1970-01-01T00:00:03.500Z", "count": 2, "source": "snapshot",
                 "sources": ["snapshot", "event"], "exec_probe": false, "exec_session": false},
            ],
            "deviations": [
                {"path": "/bin/sh", "first_seen": "1970-01-01T00:00:05.000Z",
                 "last_seen": "1970-01-01T00:00:05.000Z", "count": 1, "source": "event",
                 "sources": ["event"], "exec_probe": false, "exec_session": false},
            ],
            "completeness": "partial",
            "partial_reasons": ["started-before-agent"],
            "drift_count": 0,
            "created_at": "1970-01-01T00:00:00.000Z",
            "learning_since": "1970-01-01T00:00:00.000Z",
            "last_new_at": "1970-01-01T00:00:02.000Z",
            "ready": false,
            // No hook view seen: both shapes would list them unchecked.
            "unverified": {"opened": [hostile, "/usr/sbin/nginx"],
                           "loaded": [hostile, "/usr/sbin/nginx"]},
        });
        assert_eq!(got, want);
        // The contract's leading fields come first in the text too.
        let text = serde_json::to_string(&p.to_view()).unwrap();
        assert!(text.starts_with(r#"{"key":{"namespace":"shop","#));
        assert!(text.find("\"executables\"") < text.find("\"deviations\""));
        let back: ProfileView = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p.to_view());
    }

    #[test]
    fn healed_reasons_carry_their_time_and_marked_ones_none() {
        let cfg = LearnerConfig::default();
        let mut p = Profile::new(LearnerKey::new("ns", "Pod", "p", "c"), 0);
        for input in [
            LearnerInput::MarkPartial {
                reason: PartialReason::NoSnapshot,
                at: 1,
            },
            LearnerInput::MarkPartial {
                reason: PartialReason::EventsDropped,
                at: 1,
            },
            LearnerInput::SnapshotSucceeded { at: 2_000 },
        ] {
            assert!(step(&mut p, input, &cfg).is_ok());
        }
        let got = serde_json::to_value(p.to_view()).unwrap();
        assert_eq!(got["partial_reasons"], json!(["events-dropped"]));
        assert_eq!(
            got["healed_at"],
            json!({"no-snapshot": "1970-01-01T00:00:02.000Z"})
        );
    }
}
