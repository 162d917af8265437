//! `export --input FILE...`: one cluster-wide view from several nodes' profiles.
//!
//! A Deployment's replicas run on many nodes, each agent learning what it saw;
//! a `TracingPolicyNamespaced` is one object for the whole cluster, so it must
//! allow what any replica ran. Rules, per learner key:
//! - executables and deviations: union by path; per path the earliest
//!   `first_seen` (and the `source` behind it), the latest `last_seen`, counts
//!   summed, `sources` united; an executable is probe-only / session-only only
//!   if it is so on every node (the same "every sighting" rule a node applies);
//! - partial reasons: union (one partial node makes the merge partial);
//! - state: the least settled one (learning < stable < locked);
//! - `created_at` earliest, `learning_since` and `last_new_at` latest,
//!   `drift_count` summed.
//!
//! Every rule is a min, max, saturating sum, union or AND, so the merge is
//! associative and commutative, and merging a node with itself changes no set
//! (only counts double). Property tests below.
use std::collections::BTreeMap;

use crate::learner::key::LearnerKey;
use crate::learner::profile::{ExecutableRecord, Profile};

/// Merges two sightings of the same path.
pub fn merge_record(a: &ExecutableRecord, b: &ExecutableRecord) -> ExecutableRecord {
    // On equal first_seen the smaller source wins, so the order of the inputs
    // never shows.
    let source = match a.first_seen.cmp(&b.first_seen) {
        std::cmp::Ordering::Less => a.source,
        std::cmp::Ordering::Greater => b.source,
        std::cmp::Ordering::Equal => a.source.min(b.source),
    };
    ExecutableRecord {
        path: a.path.clone(),
        first_seen: a.first_seen.min(b.first_seen),
        last_seen: a.last_seen.max(b.last_seen),
        count: a.count.saturating_add(b.count),
        source,
        sources: a.sources.union(&b.sources).copied().collect(),
        exec_probe: a.exec_probe && b.exec_probe,
        exec_session: a.exec_session && b.exec_session,
        views: {
            let mut v = a.views.clone();
            v.merge(&b.views);
            v
        },
    }
}

fn merge_records(
    into: &mut BTreeMap<String, ExecutableRecord>,
    from: &BTreeMap<String, ExecutableRecord>,
) {
    for (path, rec) in from {
        let merged = match into.get(path) {
            Some(have) => merge_record(have, rec),
            None => rec.clone(),
        };
        into.insert(path.clone(), merged);
    }
}

/// Merges `b` into `a`; both have the same key.
pub fn merge_profile(mut a: Profile, b: &Profile) -> Profile {
    // LearnerState orders learning < stable < locked: the least settled is the min.
    a.state = a.state.min(b.state);
    a.created_at = a.created_at.min(b.created_at);
    a.learning_since = a.learning_since.max(b.learning_since);
    a.last_new_at = a.last_new_at.max(b.last_new_at);
    a.drift_count = a.drift_count.saturating_add(b.drift_count);
    merge_records(&mut a.executables, &b.executables);
    merge_records(&mut a.deviations, &b.deviations);
    a.partial_reasons.extend(b.partial_reasons.iter().copied());
    a.pod_labels.merge(&b.pod_labels);
    a
}

/// Merges every node's profiles into one list, one profile per key, sorted by
/// key. Profiles of the same key within one input are merged too.
pub fn merge<I>(inputs: I) -> Vec<Profile>
where
    I: IntoIterator<Item = Vec<Profile>>,
{
    let mut by_key: BTreeMap<LearnerKey, Profile> = BTreeMap::new();
    for p in inputs.into_iter().flatten() {
        let merged = match by_key.remove(&p.key) {
            Some(have) => merge_profile(have, &p),
            None => p,
        };
        by_key.insert(merged.key.clone(), merged);
    }
    by_key.into_values().collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::learner::observation::FactSource;
    use crate::learner::profile::PartialReason;
    use crate::learner::state::LearnerState;

    fn rec(path: &str, first: u64, last: u64, count: u64, probe: bool) -> ExecutableRecord {
        ExecutableRecord {
            path: path.into(),
            first_seen: first,
            last_seen: last,
            count,
            source: FactSource::Event,
            sources: BTreeSet::from([FactSource::Event]),
            exec_probe: probe,
            exec_session: false,
            views: Default::default(),
        }
    }

    #[test]
    fn two_nodes_give_the_union_with_the_stated_rules() {
        let key = LearnerKey::new("shop", "Deployment", "web", "nginx");
        let mut a = Profile::new(key.clone(), 100);
        a.state = LearnerState::Locked;
        a.executables
            .insert("/bin/a".into(), rec("/bin/a", 10, 20, 2, true));
        a.executables
            .insert("/bin/only-a".into(), rec("/bin/only-a", 5, 5, 1, false));
        a.partial_reasons.insert(PartialReason::EventsDropped);
        let mut b = Profile::new(key.clone(), 50);
        b.state = LearnerState::Stable;
        let mut snap = rec("/bin/a", 7, 15, 3, false);
        snap.source = FactSource::Snapshot;
        snap.sources = BTreeSet::from([FactSource::Snapshot]);
        b.executables.insert("/bin/a".into(), snap);
        b.deviations
            .insert("/bin/dev".into(), rec("/bin/dev", 1, 1, 1, false));
        let other = Profile::new(LearnerKey::new("shop", "Deployment", "api", "api"), 0);
        let merged = merge([vec![a], vec![b, other]]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].key.workload, "api");
        let m = &merged[1];
        assert_eq!(m.state, LearnerState::Stable);
        assert_eq!(m.created_at, 50);
        let a = &m.executables["/bin/a"];
        assert_eq!((a.first_seen, a.last_seen, a.count), (7, 20, 5));
        assert_eq!(a.source, FactSource::Snapshot);
        assert_eq!(
            a.sources,
            BTreeSet::from([FactSource::Snapshot, FactSource::Event])
        );
        assert!(!a.exec_probe, "a probe on one node only is not probe-only");
        assert_eq!(
            m.executables.keys().collect::<Vec<_>>(),
            ["/bin/a", "/bin/only-a"]
        );
        assert_eq!(m.deviations.keys().collect::<Vec<_>>(), ["/bin/dev"]);
        assert_eq!(
            m.partial_reasons,
            BTreeSet::from([PartialReason::EventsDropped])
        );
    }

    const PATHS: [&str; 4] = ["/bin/sh", "/app", "/tmp/x\n{{ }}", "/bin/ls"];

    fn key() -> impl Strategy<Value = LearnerKey> {
        prop_oneof![
            Just(LearnerKey::new("a", "Deployment", "web", "c")),
            Just(LearnerKey::new("a", "Deployment", "web", "d")),
            Just(LearnerKey::new("b", "Pod", "p", "c")),
        ]
    }

    fn source() -> impl Strategy<Value = FactSource> {
        prop_oneof![
            Just(FactSource::Snapshot),
            Just(FactSource::Event),
            Just(FactSource::ExportLog)
        ]
    }

    fn record(path: &'static str) -> impl Strategy<Value = ExecutableRecord> {
        (
            0u64..50,
            0u64..50,
            prop_oneof![1 => Just(u64::MAX), 9 => 1u64..5],
            source(),
            proptest::collection::btree_set(source(), 0..3),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                move |(t1, t2, count, source, mut sources, probe, session)| {
                    sources.insert(source);
                    ExecutableRecord {
                        path: path.to_string(),
                        first_seen: t1.min(t2),
                        last_seen: t1.max(t2),
                        count,
                        source,
                        sources,
                        exec_probe: probe,
                        exec_session: session,
                        views: Default::default(),
                    }
                },
            )
    }

    fn records() -> impl Strategy<Value = BTreeMap<String, ExecutableRecord>> {
        PATHS
            .map(|p| proptest::option::of(record(p)))
            .prop_map(|recs| {
                recs.into_iter()
                    .flatten()
                    .map(|r| (r.path.clone(), r))
                    .collect()
            })
    }

    fn profile() -> impl Strategy<Value = Profile> {
        (
            key(),
            prop_oneof![
                Just(LearnerState::Learning),
                Just(LearnerState::Stable),
                Just(LearnerState::Locked)
            ],
            (0u64..100, 0u64..100, 0u64..100, 0u64..3),
            records(),
            records(),
            proptest::collection::btree_set(
                prop_oneof![
                    Just(PartialReason::StartedBeforeAgent),
                    Just(PartialReason::EventsDropped),
                    Just(PartialReason::TooManyExecutables)
                ],
                0..3,
            ),
        )
            .prop_map(
                |(key, state, (created, since, last_new, drift), exes, devs, reasons)| {
                    let mut p = Profile::new(key, created);
                    p.state = state;
                    p.learning_since = since;
                    p.last_new_at = last_new;
                    p.drift_count = drift;
                    p.executables = exes;
                    p.deviations = devs;
                    p.partial_reasons = reasons;
                    p
                },
            )
    }

    /// One node's dump: any profiles, a key possibly more than once.
    fn node() -> impl Strategy<Value = Vec<Profile>> {
        proptest::collection::vec(profile(), 0..4)
    }

    fn paths(m: &BTreeMap<String, ExecutableRecord>) -> BTreeSet<&str> {
        m.keys().map(String::as_str).collect()
    }

    proptest! {
        #[test]
        fn merge_is_associative(a in node(), b in node(), c in node()) {
            let left = merge([merge([a.clone(), b.clone()]), c.clone()]);
            let right = merge([a, merge([b, c])]);
            prop_assert_eq!(left, right);
        }

        #[test]
        fn merge_is_commutative(a in node(), b in node()) {
            prop_assert_eq!(merge([a.clone(), b.clone()]), merge([b, a]));
        }

        #[test]
        fn merging_a_node_with_itself_keeps_every_set(a in node()) {
            let once = merge([a.clone()]);
            let twice = merge([a.clone(), a]);
            prop_assert_eq!(once.len(), twice.len());
            for (o, t) in once.iter().zip(&twice) {
                prop_assert_eq!(&o.key, &t.key);
                prop_assert_eq!(o.state, t.state);
                prop_assert_eq!(paths(&o.executables), paths(&t.executables));
                prop_assert_eq!(paths(&o.deviations), paths(&t.deviations));
                prop_assert_eq!(&o.partial_reasons, &t.partial_reasons);
                for (path, r) in &o.executables {
                    let d = &t.executables[path];
                    prop_assert_eq!(d.count, r.count.saturating_mul(2));
                    prop_assert_eq!((d.first_seen, d.last_seen), (r.first_seen, r.last_seen));
                    prop_assert_eq!((d.exec_probe, d.exec_session), (r.exec_probe, r.exec_session));
                    prop_assert_eq!(&d.sources, &r.sources);
                    prop_assert_eq!(d.source, r.source);
                }
            }
        }

        /// Every path of every input is in the merge, under its key, and
        /// nothing else is.
        #[test]
        fn merge_is_the_union_of_paths(a in node(), b in node()) {
            let merged = merge([a.clone(), b.clone()]);
            let mut want: BTreeMap<LearnerKey, BTreeSet<&str>> = BTreeMap::new();
            for p in a.iter().chain(&b) {
                want.entry(p.key.clone()).or_default().extend(p.executables.keys().map(String::as_str));
            }
            let got: BTreeMap<LearnerKey, BTreeSet<&str>> = merged
                .iter()
                .map(|p| (p.key.clone(), paths(&p.executables)))
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
