//! One test per rule of the learner machine.
use super::*;
use crate::learner::completeness::InstanceSighting;
use crate::learner::key::LearnerKey;
use crate::learner::observation::FactSource;

const MIN: u64 = 60_000;

fn cfg() -> LearnerConfig {
    LearnerConfig {
        stability_window_ms: 30 * MIN,
        min_learning_ms: 60 * MIN,
        ..LearnerConfig::default()
    }
}

fn profile() -> Profile {
    Profile::new(LearnerKey::new("ns", "Deployment", "web", "nginx"), 0)
}

fn seen(path: &str, at: UnixMillis) -> LearnerInput {
    LearnerInput::Observe(Observation {
        path: path.into(),
        at,
        source: FactSource::Event,
        exec_probe: false,
        exec_session: false,
    })
}

fn run(p: &mut Profile, input: LearnerInput) -> Vec<Effect> {
    match step(p, input, &cfg()) {
        Ok(effects) => effects,
        Err(e) => panic!("unexpected refusal: {e}"),
    }
}

fn changed(from: LearnerState, to: LearnerState, reason: LearnerEvent) -> Effect {
    Effect::StateChanged { from, to, reason }
}

/// A profile that learned `/bin/app` at 0 and became stable at 60 min.
fn stable() -> Profile {
    let mut p = profile();
    run(&mut p, seen("/bin/app", 0));
    run(&mut p, LearnerInput::Tick { now: 60 * MIN });
    assert_eq!(p.state, LearnerState::Stable);
    p
}

#[test]
fn new_profile_is_learning_and_complete() {
    let p = profile();
    assert_eq!(p.state, LearnerState::Learning);
    assert_eq!(p.completeness().as_str(), "complete");
}

#[test]
fn learning_adds_new_executables() {
    let mut p = profile();
    let effects = run(&mut p, seen("/bin/app", 5));
    assert_eq!(
        effects,
        vec![Effect::NewExecutable {
            path: "/bin/app".into()
        }]
    );
    assert_eq!(p.last_new_at, 5);
    assert_eq!(p.executables["/bin/app"].count, 1);
    assert_eq!(durability_of(&effects), Durability::Flush);
}

#[test]
fn known_executable_only_touches_counters() {
    let mut p = profile();
    run(&mut p, seen("/bin/app", 5));
    let effects = run(&mut p, seen("/bin/app", 9));
    assert_eq!(effects, vec![Effect::Touched]);
    assert_eq!(durability_of(&effects), Durability::Lazy);
    let rec = &p.executables["/bin/app"];
    assert_eq!((rec.first_seen, rec.last_seen, rec.count), (5, 9, 2));
    assert_eq!(p.last_new_at, 5, "a known executable is not new");
}

#[test]
fn stable_needs_quiet_window() {
    let mut p = profile();
    run(&mut p, seen("/bin/app", 50 * MIN));
    // min_learning done at 60 min, but something new came 10 min before.
    assert_eq!(
        run(&mut p, LearnerInput::Tick { now: 60 * MIN }),
        vec![Effect::Nothing]
    );
    assert_eq!(p.state, LearnerState::Learning);
    let effects = run(&mut p, LearnerInput::Tick { now: 80 * MIN });
    let quiet = LearnerEvent::Quiet;
    assert_eq!(
        effects,
        vec![changed(LearnerState::Learning, LearnerState::Stable, quiet)]
    );
}

#[test]
fn stable_needs_min_learning() {
    let mut p = profile();
    run(&mut p, seen("/bin/app", 0));
    // Quiet for 30 min, but learning only lasted 30 min of the 60 required.
    run(&mut p, LearnerInput::Tick { now: 30 * MIN });
    assert_eq!(p.state, LearnerState::Learning);
    run(&mut p, LearnerInput::Tick { now: 60 * MIN - 1 });
    assert_eq!(p.state, LearnerState::Learning);
    run(&mut p, LearnerInput::Tick { now: 60 * MIN });
    assert_eq!(p.state, LearnerState::Stable);
}

#[test]
fn stable_plus_new_executable_is_drift() {
    let mut p = stable();
    let at = 70 * MIN;
    let effects = run(&mut p, seen("/bin/curl", at));
    assert_eq!(
        effects,
        vec![
            Effect::NewExecutable {
                path: "/bin/curl".into()
            },
            changed(
                LearnerState::Stable,
                LearnerState::Learning,
                LearnerEvent::NewExecutable
            ),
        ]
    );
    assert_eq!(
        (p.drift_count, p.learning_since, p.last_new_at),
        (1, at, at)
    );
    assert!(p.knows("/bin/curl"));
}

#[test]
fn stable_plus_known_executable_stays_stable() {
    let mut p = stable();
    assert_eq!(
        run(&mut p, seen("/bin/app", 70 * MIN)),
        vec![Effect::Touched]
    );
    assert_eq!((p.state, p.drift_count), (LearnerState::Stable, 0));
}

#[test]
fn lock_from_learning_and_stable() {
    for mut p in [profile(), stable()] {
        let from = p.state;
        let effects = run(&mut p, LearnerInput::Lock { now: 99 * MIN });
        assert_eq!(
            effects,
            vec![changed(from, LearnerState::Locked, LearnerEvent::Lock)]
        );
    }
}

#[test]
fn locked_records_deviations_and_never_grows() {
    let mut p = stable();
    run(&mut p, LearnerInput::Lock { now: 61 * MIN });
    let before = p.executables.clone();
    let effects = run(&mut p, seen("/tmp/x", 62 * MIN));
    assert_eq!(
        effects,
        vec![Effect::NewDeviation {
            path: "/tmp/x".into()
        }]
    );
    assert_eq!(run(&mut p, seen("/tmp/x", 61 * MIN)), vec![Effect::Touched]);
    assert_eq!(run(&mut p, seen("/tmp/x", 63 * MIN)), vec![Effect::Touched]);
    let dev = &p.deviations["/tmp/x"];
    assert_eq!(
        (dev.first_seen, dev.last_seen, dev.count),
        (61 * MIN, 63 * MIN, 3)
    );
    assert_eq!(p.executables, before);
    assert_eq!(p.state, LearnerState::Locked);
}

#[test]
fn locked_still_counts_known_executables() {
    let mut p = stable();
    run(&mut p, LearnerInput::Lock { now: 61 * MIN });
    assert_eq!(
        run(&mut p, seen("/bin/app", 62 * MIN)),
        vec![Effect::Touched]
    );
    assert_eq!(p.executables["/bin/app"].count, 2);
    assert!(p.deviations.is_empty());
}

#[test]
fn unlock_starts_a_new_learning_period() {
    let mut p = stable();
    run(&mut p, LearnerInput::Lock { now: 61 * MIN });
    run(&mut p, seen("/tmp/x", 62 * MIN));
    let effects = run(&mut p, LearnerInput::Unlock { now: 70 * MIN });
    assert_eq!(
        effects,
        vec![changed(
            LearnerState::Locked,
            LearnerState::Learning,
            LearnerEvent::Unlock
        )]
    );
    assert_eq!(p.learning_since, 70 * MIN);
    assert!(
        p.deviations.contains_key("/tmp/x"),
        "deviations are an audit trail"
    );
    // Quiet since long ago, but the new period needs its own min_learning.
    run(&mut p, LearnerInput::Tick { now: 129 * MIN });
    assert_eq!(p.state, LearnerState::Learning);
    run(&mut p, LearnerInput::Tick { now: 130 * MIN });
    assert_eq!(p.state, LearnerState::Stable);
}

#[test]
fn lock_twice_and_unlock_unlocked_are_refused_untouched() {
    let mut p = stable();
    let err = step(&mut p.clone(), LearnerInput::Unlock { now: 1 }, &cfg()).unwrap_err();
    assert_eq!(err.to_string(), "learner cannot unlock while stable");
    run(&mut p, LearnerInput::Lock { now: 61 * MIN });
    let before = p.clone();
    let err = step(&mut p, LearnerInput::Lock { now: 62 * MIN }, &cfg()).unwrap_err();
    assert_eq!(
        err,
        InvalidTransition {
            state: LearnerState::Locked,
            event: LearnerEvent::Lock
        }
    );
    assert_eq!(p, before);
    let mut learning = profile();
    assert!(step(&mut learning, LearnerInput::Unlock { now: 1 }, &cfg()).is_err());
    assert_eq!(learning, profile());
}

#[test]
fn mark_partial_is_idempotent() {
    let mut p = profile();
    let reason = PartialReason::EventsDropped;
    let effects = run(&mut p, LearnerInput::MarkPartial { reason, at: 0 });
    assert_eq!(effects, vec![Effect::MarkedPartial { reason }]);
    assert_eq!(
        run(&mut p, LearnerInput::MarkPartial { reason, at: 0 }),
        vec![Effect::Nothing]
    );
    assert_eq!(p.completeness().as_str(), "partial");
}

#[test]
fn reset_forgets_everything_learned_but_not_partiality() {
    let mut p = stable();
    run(&mut p, seen("/bin/curl", 70 * MIN)); // drift
    run(&mut p, LearnerInput::Lock { now: 71 * MIN });
    run(&mut p, seen("/tmp/x", 72 * MIN));
    run(
        &mut p,
        LearnerInput::MarkPartial {
            reason: PartialReason::StartedBeforeAgent,
            at: 0,
        },
    );
    let effects = run(&mut p, LearnerInput::Reset { now: 80 * MIN });
    assert_eq!(
        effects,
        vec![
            Effect::Reset {
                executables: 2,
                deviations: 1
            },
            changed(
                LearnerState::Locked,
                LearnerState::Learning,
                LearnerEvent::Reset
            ),
        ]
    );
    assert!(p.executables.is_empty() && p.deviations.is_empty());
    assert_eq!(
        (p.drift_count, p.learning_since, p.last_new_at),
        (0, 80 * MIN, 80 * MIN)
    );
    assert_eq!((p.created_at, p.completeness().as_str()), (0, "partial"));
}

#[test]
fn reset_while_learning_stays_learning() {
    let mut p = profile();
    run(&mut p, seen("/bin/app", 1));
    let effects = run(&mut p, LearnerInput::Reset { now: 2 });
    assert_eq!(
        effects,
        vec![Effect::Reset {
            executables: 1,
            deviations: 0
        }]
    );
    assert_eq!(p.state, LearnerState::Learning);
}

#[test]
fn late_observations_never_narrow_times() {
    let mut p = profile();
    run(&mut p, seen("/bin/app", 10 * MIN));
    run(&mut p, seen("/bin/app", 2 * MIN));
    run(&mut p, seen("/bin/new", MIN));
    let rec = &p.executables["/bin/app"];
    assert_eq!((rec.first_seen, rec.last_seen), (2 * MIN, 10 * MIN));
    assert_eq!(p.last_new_at, 10 * MIN, "last_new_at never moves back");
}

#[test]
fn clock_going_backwards_delays_but_does_not_panic() {
    let mut p = profile();
    run(&mut p, seen("/bin/app", u64::MAX));
    assert_eq!(
        run(&mut p, LearnerInput::Tick { now: 0 }),
        vec![Effect::Nothing]
    );
    run(&mut p, LearnerInput::Lock { now: 100 });
    run(&mut p, LearnerInput::Unlock { now: 100 });
    run(&mut p, LearnerInput::Lock { now: 60 });
    run(&mut p, LearnerInput::Unlock { now: 50 });
    assert_eq!(
        p.learning_since, 100,
        "unlock never moves learning_since back"
    );
    run(&mut p, seen("/bin/app", 0));
    assert_eq!(p.executables["/bin/app"].count, 2);
    assert_eq!(p.executables["/bin/app"].first_seen, 0);
    assert_eq!(p.executables["/bin/app"].last_seen, u64::MAX);
}

#[test]
fn a_full_profile_keeps_what_it_has_and_says_it_is_partial() {
    let cfg = LearnerConfig {
        max_executables: 2,
        ..cfg()
    };
    let mut p = profile();
    step(&mut p, seen("/a", 1), &cfg).unwrap();
    step(&mut p, seen("/b", 2), &cfg).unwrap();
    let effects = step(&mut p, seen("/c", 3), &cfg).unwrap();
    assert_eq!(
        effects,
        vec![Effect::MarkedPartial {
            reason: PartialReason::TooManyExecutables
        }]
    );
    assert_eq!(p.executables.len(), 2);
    assert!(!p.knows("/c"));
    // Known ones are still counted; more new ones change nothing.
    assert_eq!(
        step(&mut p, seen("/a", 4), &cfg).unwrap(),
        vec![Effect::Touched]
    );
    assert_eq!(
        step(&mut p, seen("/d", 5), &cfg).unwrap(),
        vec![Effect::Nothing]
    );
    // Stable does not drift because of an executable it cannot keep.
    p.state = LearnerState::Stable;
    step(&mut p, seen("/e", 6), &cfg).unwrap();
    assert_eq!((p.state, p.drift_count), (LearnerState::Stable, 0));
    // Locked: deviations are capped the same way.
    p.state = LearnerState::Locked;
    step(&mut p, seen("/x", 7), &cfg).unwrap();
    step(&mut p, seen("/y", 8), &cfg).unwrap();
    step(&mut p, seen("/z", 9), &cfg).unwrap();
    assert_eq!(p.deviations.len(), 2);
    assert_eq!(p.executables.len(), 2);
}

fn exit(path: &str, at: UnixMillis, gap: bool) -> LearnerInput {
    LearnerInput::ExitSeen {
        observation: Observation {
            path: path.into(),
            at,
            source: FactSource::Exit,
            exec_probe: false,
            exec_session: false,
        },
        gap,
    }
}

#[test]
fn an_exit_of_a_known_binary_adds_nothing() {
    let mut p = profile();
    run(&mut p, seen("/bin/app", 5));
    let before = p.clone();
    assert_eq!(
        run(&mut p, exit("/bin/app", 9, true)),
        vec![Effect::Nothing]
    );
    assert_eq!(p, before, "not even a count or a gap");
}

#[test]
fn an_exit_of_an_unknown_binary_teaches_it_with_source_exit() {
    let mut p = stable();
    let effects = run(&mut p, exit("/bin/missed", 70 * MIN, false));
    assert_eq!(
        effects,
        vec![
            Effect::NewExecutable {
                path: "/bin/missed".into()
            },
            changed(
                LearnerState::Stable,
                LearnerState::Learning,
                LearnerEvent::NewExecutable
            ),
        ]
    );
    assert_eq!(p.executables["/bin/missed"].source, FactSource::Exit);
    assert!(
        p.partial_reasons.is_empty(),
        "started before the stream: no gap"
    );
}

#[test]
fn an_exit_of_an_unknown_binary_started_while_live_is_a_gap() {
    let mut p = profile();
    let effects = run(&mut p, exit("/bin/missed", 70 * MIN, true));
    assert_eq!(
        effects,
        vec![
            Effect::NewExecutable {
                path: "/bin/missed".into()
            },
            Effect::MarkedPartial {
                reason: PartialReason::EventsDropped
            },
        ]
    );
    assert_eq!(p.tracking.gap_at, Some(70 * MIN));
    assert_eq!(durability_of(&effects), Durability::Flush);
}

#[test]
fn while_locked_an_exit_of_an_unknown_binary_is_a_deviation_once() {
    let mut p = stable();
    run(&mut p, LearnerInput::Lock { now: 61 * MIN });
    assert_eq!(
        run(&mut p, exit("/bin/nc", 62 * MIN, false)),
        vec![Effect::NewDeviation {
            path: "/bin/nc".into()
        }]
    );
    assert_eq!(
        run(&mut p, exit("/bin/nc", 63 * MIN, false)),
        vec![Effect::Nothing]
    );
    assert!(!p.knows("/bin/nc"));
}

fn instance(id: &str, started_at: UnixMillis, from_start: bool) -> LearnerInput {
    LearnerInput::InstanceSeen(InstanceSighting {
        id: id.into(),
        started_at: Some(started_at),
        seen_from_start: from_start,
        at: started_at,
    })
}

#[test]
fn a_rollout_heals_started_before_agent_through_the_machine() {
    let mut p = profile();
    let sba = PartialReason::StartedBeforeAgent;
    run(&mut p, LearnerInput::MarkPartial { reason: sba, at: 0 });
    run(&mut p, instance("old", 0, false));
    run(&mut p, instance("new", 10 * MIN, true));
    assert_eq!(
        run(&mut p, LearnerInput::Heal { now: 100 * MIN }),
        vec![Effect::Nothing]
    );
    let gone = LearnerInput::InstanceGone {
        id: "old".into(),
        at: 11 * MIN,
    };
    assert_eq!(run(&mut p, gone), vec![Effect::Touched]);
    let effects = run(&mut p, LearnerInput::Heal { now: 70 * MIN });
    assert_eq!(
        effects,
        vec![Effect::Healed {
            reason: sba,
            at: 70 * MIN
        }]
    );
    assert_eq!(durability_of(&effects), Durability::Flush);
    assert_eq!(p.completeness().as_str(), "complete");
    assert_eq!(p.tracking.healed_at[&sba], 70 * MIN);
    // Marked again (a later first snapshot, say): the healed time goes.
    run(
        &mut p,
        LearnerInput::MarkPartial {
            reason: sba,
            at: 80 * MIN,
        },
    );
    assert!(!p.tracking.healed_at.contains_key(&sba));
}

#[test]
fn a_successful_snapshot_heals_no_snapshot_and_nothing_else() {
    let mut p = profile();
    for reason in [PartialReason::NoSnapshot, PartialReason::StartedBeforeAgent] {
        run(&mut p, LearnerInput::MarkPartial { reason, at: 0 });
    }
    assert_eq!(
        run(&mut p, LearnerInput::SnapshotSucceeded { at: 5 }),
        vec![Effect::Healed {
            reason: PartialReason::NoSnapshot,
            at: 5
        }]
    );
    assert_eq!(
        p.partial_reasons.iter().copied().collect::<Vec<_>>(),
        vec![PartialReason::StartedBeforeAgent]
    );
    assert_eq!(
        run(&mut p, LearnerInput::SnapshotSucceeded { at: 6 }),
        vec![Effect::Nothing]
    );
}

#[test]
fn too_many_executables_never_heals() {
    let mut p = profile();
    let reason = PartialReason::TooManyExecutables;
    run(&mut p, LearnerInput::MarkPartial { reason, at: 0 });
    run(&mut p, instance("a", 1, true));
    run(&mut p, LearnerInput::SnapshotSucceeded { at: 2 });
    assert_eq!(
        run(&mut p, LearnerInput::Heal { now: u64::MAX }),
        vec![Effect::Nothing]
    );
    assert!(p.partial_reasons.contains(&reason));
}

#[test]
fn an_exec_the_agents_policy_killed_is_taken_out_only_if_it_brought_the_path() {
    use crate::learner::observation::{FactSource, Observation};
    let cfg = LearnerConfig::default();
    let mut p = Profile::new(LearnerKey::new("ns", "Host", "n", "host"), 0);
    let seen = |path: &str, at| {
        LearnerInput::Observe(Observation {
            path: path.into(),
            at,
            source: FactSource::Event,
            exec_probe: false,
            exec_session: false,
        })
    };
    step(&mut p, seen("/usr/bin/true", 100), &cfg).unwrap();
    // Killed at its exec (started 1_000, reported at 1_002): out again.
    step(&mut p, seen("/tmp/other", 1_002), &cfg).unwrap();
    let fx = step(
        &mut p,
        LearnerInput::Denied {
            path: "/tmp/other".into(),
            exec_started_at: 1_000,
        },
        &cfg,
    )
    .unwrap();
    assert_eq!(
        fx,
        vec![Effect::Unlearned {
            path: "/tmp/other".into()
        }]
    );
    assert!(!p.knows("/tmp/other"));
    // A path learned before the killed exec stays.
    let fx = step(
        &mut p,
        LearnerInput::Denied {
            path: "/usr/bin/true".into(),
            exec_started_at: 1_000,
        },
        &cfg,
    )
    .unwrap();
    assert_eq!(fx, vec![Effect::Nothing]);
    assert!(p.knows("/usr/bin/true"));
}
