//! Property tests: arbitrary input sequences (few paths so repeats happen, times
//! that jump back and forth, operator commands valid or not) against invariants
//! that must hold whatever the order.
use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::learner::completeness::InstanceSighting;
use crate::learner::key::LearnerKey;
use crate::learner::observation::FactSource;
use crate::learner::state::transitions;

const PATHS: [&str; 4] = ["/bin/sh", "/usr/bin/app", "/tmp/x\n{{ }}", "/bin/ls"];

/// Small windows so that random times cross them often.
fn cfg() -> LearnerConfig {
    LearnerConfig {
        stability_window_ms: 100,
        min_learning_ms: 300,
        ..LearnerConfig::default()
    }
}

fn source() -> impl Strategy<Value = FactSource> {
    prop_oneof![
        Just(FactSource::Snapshot),
        Just(FactSource::Event),
        Just(FactSource::ExportLog),
        Just(FactSource::Backfill),
    ]
}

const INSTANCES: [&str; 3] = ["containerd://a", "containerd://b", "containerd://c"];

fn instance_input() -> impl Strategy<Value = LearnerInput> {
    let id = (0..INSTANCES.len()).prop_map(|i| INSTANCES[i].to_string());
    let seen = (id.clone(), prop::option::of(time()), any::<bool>(), time()).prop_map(
        |(id, started_at, seen_from_start, at)| {
            LearnerInput::InstanceSeen(InstanceSighting {
                id,
                started_at,
                seen_from_start,
                at,
            })
        },
    );
    let gone = (id.clone(), time()).prop_map(|(id, at)| LearnerInput::InstanceGone { id, at });
    let live = (prop::collection::vec(id, 0..3), time())
        .prop_map(|(ids, at)| LearnerInput::InstancesLive { ids, at });
    prop_oneof![3 => seen, 2 => gone, 1 => live]
}

/// Times near the profile's creation (1_000), so they go backwards often,
/// plus the extremes.
fn time() -> impl Strategy<Value = UnixMillis> {
    prop_oneof![8 => 0u64..2_000, 1 => Just(0), 1 => Just(u64::MAX)]
}

fn input() -> impl Strategy<Value = LearnerInput> {
    let observe = (
        0..PATHS.len(),
        time(),
        source(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(i, at, source, exec_probe, exec_session)| {
            LearnerInput::Observe(Observation {
                path: PATHS[i].to_string(),
                at,
                source,
                exec_probe,
                exec_session,
            })
        });
    let reason = prop_oneof![
        Just(PartialReason::StartedBeforeAgent),
        Just(PartialReason::EventsDropped),
        Just(PartialReason::NoSnapshot),
    ];
    let exit =
        (0..PATHS.len(), time(), any::<bool>()).prop_map(|(i, at, gap)| LearnerInput::ExitSeen {
            observation: Observation {
                path: PATHS[i].to_string(),
                at,
                source: FactSource::Exit,
                exec_probe: false,
                exec_session: false,
            },
            gap,
        });
    prop_oneof![
        6 => observe,
        2 => exit,
        4 => time().prop_map(|now| LearnerInput::Tick { now }),
        1 => time().prop_map(|now| LearnerInput::Lock { now }),
        1 => time().prop_map(|now| LearnerInput::Unlock { now }),
        1 => (reason, time()).prop_map(|(reason, at)| LearnerInput::MarkPartial { reason, at }),
        1 => time().prop_map(|now| LearnerInput::Reset { now }),
        3 => instance_input(),
        3 => time().prop_map(|now| LearnerInput::Heal { now }),
        1 => time().prop_map(|at| LearnerInput::SnapshotSucceeded { at }),
    ]
}

/// Observations of each path since the last reset: (count, min at, max at).
type Seen = BTreeMap<String, (u64, UnixMillis, UnixMillis)>;

fn check_step(
    before: &Profile,
    input: &LearnerInput,
    after: &Profile,
    result: &Result<Vec<Effect>, InvalidTransition>,
) -> Result<(), TestCaseError> {
    let allowed = transitions();
    match result {
        Err(err) => {
            prop_assert_eq!(after, before, "a refused input changed the profile");
            prop_assert_eq!(err.state, before.state);
            let refusable = matches!(
                (before.state, input),
                (LearnerState::Locked, LearnerInput::Lock { .. })
                    | (
                        LearnerState::Learning | LearnerState::Stable,
                        LearnerInput::Unlock { .. }
                    )
            );
            prop_assert!(refusable, "refused {:?} in {:?}", input, before.state);
        }
        Ok(effects) => {
            prop_assert!(!effects.is_empty());
            let changes: Vec<_> = effects
                .iter()
                .filter_map(|e| match e {
                    Effect::StateChanged { from, to, reason } => Some((*from, *reason, *to)),
                    _ => None,
                })
                .collect();
            if before.state == after.state {
                prop_assert!(changes.is_empty(), "self-loop reported a change");
            } else {
                prop_assert_eq!(changes.len(), 1);
                let (from, reason, to) = changes[0];
                prop_assert_eq!((from, to), (before.state, after.state));
                prop_assert!(
                    allowed.contains(&(from, reason.label(), to)),
                    "{:?} not in transitions()",
                    changes[0]
                );
            }
            if before.state == LearnerState::Locked && !matches!(input, LearnerInput::Reset { .. })
            {
                prop_assert!(
                    before.executables.keys().eq(after.executables.keys()),
                    "locked profile grew"
                );
                for (path, rec) in &before.executables {
                    prop_assert!(after.executables[path].count >= rec.count);
                }
            }
            if (before.state, after.state) == (LearnerState::Learning, LearnerState::Stable) {
                let LearnerInput::Tick { now } = *input else {
                    return Err(TestCaseError::fail("stable without a tick"));
                };
                let cfg = cfg();
                prop_assert!(now.saturating_sub(before.last_new_at) >= cfg.stability_window_ms);
                prop_assert!(now.saturating_sub(before.learning_since) >= cfg.min_learning_ms);
            }
            check_healing(before, input, after, effects)?;
            if !matches!(input, LearnerInput::Reset { .. }) {
                prop_assert!(after.learning_since >= before.learning_since);
                prop_assert!(after.last_new_at >= before.last_new_at);
                prop_assert!(after.drift_count >= before.drift_count);
            }
        }
    }
    Ok(())
}

/// The healing rules, restated on the instances as plain data (not through
/// `Tracking::rule_holds`): a reason heals only when its rule held.
fn rule_by_hand(p: &Profile, reason: PartialReason, now: UnixMillis) -> bool {
    let min = cfg().min_learning_ms;
    let insts: Vec<_> = p.tracking.instances.values().collect();
    let ran = |i: &&crate::learner::completeness::Instance| match i.started_at {
        Some(s) => i.gone_at.unwrap_or(now).saturating_sub(s) >= min,
        None => false,
    };
    let fresh = |i: &&crate::learner::completeness::Instance| match p.tracking.gap_at {
        Some(g) => i.started_at.is_some_and(|s| s > g),
        None => i.seen_from_start,
    };
    match reason {
        PartialReason::StartedBeforeAgent => {
            insts
                .iter()
                .filter(|i| i.gone_at.is_none())
                .all(|i| i.seen_from_start)
                && insts.iter().any(|i| i.seen_from_start && ran(i))
        }
        PartialReason::EventsDropped => {
            insts.iter().filter(|i| i.gone_at.is_none()).all(fresh)
                && insts.iter().any(|i| fresh(i) && ran(i))
        }
        _ => false,
    }
}

fn check_healing(
    before: &Profile,
    input: &LearnerInput,
    after: &Profile,
    effects: &[Effect],
) -> Result<(), TestCaseError> {
    for reason in &after.partial_reasons {
        prop_assert!(
            !after.tracking.healed_at.contains_key(reason),
            "{reason} marked and healed at once"
        );
    }
    let gone = after
        .tracking
        .instances
        .values()
        .filter(|i| i.gone_at.is_some())
        .count();
    prop_assert!(gone <= crate::learner::completeness::MAX_GONE_INSTANCES);
    let healed: Vec<PartialReason> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Healed { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    for reason in &healed {
        prop_assert!(before.partial_reasons.contains(reason));
        prop_assert!(!after.partial_reasons.contains(reason));
        match input {
            LearnerInput::Heal { now } => {
                prop_assert!(rule_by_hand(before, *reason, *now), "{reason} healed early")
            }
            LearnerInput::SnapshotSucceeded { .. } => {
                prop_assert_eq!(*reason, PartialReason::NoSnapshot)
            }
            other => prop_assert!(false, "{:?} healed {}", other, reason),
        }
    }
    if let LearnerInput::Heal { now } = input {
        for reason in [
            PartialReason::StartedBeforeAgent,
            PartialReason::EventsDropped,
        ] {
            if before.partial_reasons.contains(&reason) && rule_by_hand(before, reason, *now) {
                prop_assert!(healed.contains(&reason), "{reason} not healed");
            }
        }
        prop_assert!(after.partial_reasons.is_subset(&before.partial_reasons));
    }
    if let LearnerInput::ExitSeen { observation, .. } = input {
        if before.knows(&observation.path) {
            prop_assert_eq!(before, after, "a known exit changed the profile");
        }
    }
    Ok(())
}

fn check_counts(p: &Profile, seen: &Seen) -> Result<(), TestCaseError> {
    for rec in p.executables.values().chain(p.deviations.values()) {
        prop_assert!(rec.first_seen <= rec.last_seen, "{:?}", rec);
        prop_assert!(rec.sources.contains(&rec.source));
    }
    for (path, (count, min_at, max_at)) in seen {
        let exe = p.executables.get(path);
        let dev = p.deviations.get(path);
        let total = exe.map_or(0, |r| r.count) + dev.map_or(0, |r| r.count);
        prop_assert_eq!(total, *count, "count of {:?}", path);
        for rec in exe.into_iter().chain(dev) {
            prop_assert!(rec.first_seen >= *min_at && rec.last_seen <= *max_at);
        }
    }
    let recorded = p.executables.keys().chain(p.deviations.keys());
    prop_assert!(recorded.into_iter().all(|k| seen.contains_key(k)));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_for_any_input_sequence(inputs in prop::collection::vec(input(), 0..60)) {
        let cfg = cfg();
        let mut p = Profile::new(LearnerKey::new("ns", "Pod", "p", "c"), 1_000);
        let mut seen = Seen::new();
        for input in inputs {
            let before = p.clone();
            let result = step(&mut p, input.clone(), &cfg);
            check_step(&before, &input, &p, &result)?;
            if result.is_ok() {
                match &input {
                    LearnerInput::Reset { .. } => seen.clear(),
                    LearnerInput::Observe(obs) => {
                        let e = seen.entry(obs.path.clone()).or_insert((0, obs.at, obs.at));
                        *e = (e.0 + 1, e.1.min(obs.at), e.2.max(obs.at));
                    }
                    // An exit counts once, when it taught something new.
                    LearnerInput::ExitSeen { observation: obs, .. }
                        if result.as_ref().is_ok_and(|effects| {
                            effects.iter().any(|e| matches!(e,
                                Effect::NewExecutable { .. } | Effect::NewDeviation { .. }))
                        }) =>
                    {
                        let e = seen.entry(obs.path.clone()).or_insert((0, obs.at, obs.at));
                        *e = (e.0 + 1, e.1.min(obs.at), e.2.max(obs.at));
                    }
                    _ => {}
                }
            }
            check_counts(&p, &seen)?;
        }
        let json = serde_json::to_string(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: Profile = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, p);
    }
}
