//! One test per healing rule, with times written out.
use super::*;

const MIN: u64 = 60_000;
const MIN_LEARNING: u64 = 60 * MIN;

fn sighting(id: &str, started_at: Option<u64>, from_start: bool, at: u64) -> InstanceSighting {
    InstanceSighting {
        id: id.into(),
        started_at,
        seen_from_start: from_start,
        at,
    }
}

#[test]
fn started_before_agent_heals_once_only_instances_seen_from_start_live_and_one_ran_long_enough() {
    let mut t = Tracking::default();
    let sba = PartialReason::StartedBeforeAgent;
    // The old instance, running before the agent.
    t.seen(&sighting("old", Some(0), false, 10 * MIN));
    assert!(!t.rule_holds(sba, 500 * MIN, MIN_LEARNING));
    // A rollout: a new instance starts at 100 min, after the agent.
    t.seen(&sighting("new", Some(100 * MIN), true, 100 * MIN));
    // The old one still runs: no healing, however long the new one ran.
    assert!(!t.rule_holds(sba, 500 * MIN, MIN_LEARNING));
    assert!(t.gone("old", 101 * MIN));
    // Gone, but the new one has run 59 min only.
    assert!(!t.rule_holds(sba, 159 * MIN, MIN_LEARNING));
    assert!(t.rule_holds(sba, 160 * MIN, MIN_LEARNING));
}

#[test]
fn an_instance_without_a_start_time_never_proves_anything() {
    let mut t = Tracking::default();
    t.seen(&sighting("x", None, true, 0));
    assert!(!t.rule_holds(PartialReason::StartedBeforeAgent, u64::MAX, MIN_LEARNING));
    assert!(!t.rule_holds(PartialReason::EventsDropped, u64::MAX, MIN_LEARNING));
}

#[test]
fn a_gone_instance_that_ran_long_enough_still_counts() {
    let mut t = Tracking::default();
    t.seen(&sighting("a", Some(10 * MIN), true, 10 * MIN));
    t.gone("a", 80 * MIN); // ran 70 min
    assert!(t.rule_holds(PartialReason::StartedBeforeAgent, 81 * MIN, MIN_LEARNING));
    let mut short = Tracking::default();
    short.seen(&sighting("a", Some(10 * MIN), true, 10 * MIN));
    short.gone("a", 20 * MIN);
    assert!(!short.rule_holds(PartialReason::StartedBeforeAgent, 900 * MIN, MIN_LEARNING));
}

#[test]
fn events_dropped_heals_when_every_instance_live_during_the_gap_is_gone() {
    let ed = PartialReason::EventsDropped;
    let mut t = Tracking::default();
    t.seen(&sighting("during", Some(0), true, 0));
    t.gap_at = Some(30 * MIN);
    t.seen(&sighting("fresh", Some(31 * MIN), true, 31 * MIN));
    assert!(
        !t.rule_holds(ed, 200 * MIN, MIN_LEARNING),
        "`during` still live"
    );
    t.gone("during", 40 * MIN);
    assert!(
        !t.rule_holds(ed, 90 * MIN, MIN_LEARNING),
        "fresh ran 59 min"
    );
    assert!(t.rule_holds(ed, 91 * MIN, MIN_LEARNING));
    // A new gap makes `fresh` an instance that lived through a gap.
    t.gap_at = Some(95 * MIN);
    assert!(!t.rule_holds(ed, 500 * MIN, MIN_LEARNING));
}

#[test]
fn an_events_dropped_mark_without_a_gap_time_counts_instances_seen_from_start_as_fresh() {
    // Marked by an earlier agent run (v2 kept no gap time).
    let mut t = Tracking::default();
    t.seen(&sighting("before", Some(0), false, 0));
    t.seen(&sighting("after", Some(10 * MIN), true, 10 * MIN));
    assert!(!t.rule_holds(PartialReason::EventsDropped, 200 * MIN, MIN_LEARNING));
    t.gone("before", 11 * MIN);
    assert!(t.rule_holds(PartialReason::EventsDropped, 70 * MIN, MIN_LEARNING));
}

#[test]
fn no_snapshot_and_too_many_executables_have_no_time_rule() {
    let mut t = Tracking::default();
    t.seen(&sighting("a", Some(0), true, 0));
    assert!(!t.rule_holds(PartialReason::NoSnapshot, u64::MAX, 0));
    assert!(!t.rule_holds(PartialReason::TooManyExecutables, u64::MAX, 0));
}

#[test]
fn a_snapshot_decides_which_instances_live() {
    let mut t = Tracking::default();
    t.seen(&sighting("a", Some(0), false, 0));
    t.seen(&sighting("b", Some(5), true, 5));
    assert!(t.only_live(&["b".to_string()], 100));
    assert_eq!(t.instances["a"].gone_at, Some(100));
    assert!(t.instances["b"].is_live());
    assert!(!t.only_live(&["b".to_string()], 200), "nothing changed");
    // Seen again: live again.
    t.seen(&sighting("a", Some(0), false, 300));
    assert!(t.instances["a"].is_live());
}

#[test]
fn seen_from_start_only_turns_on() {
    let mut t = Tracking::default();
    t.seen(&sighting("a", Some(7), true, 10));
    t.seen(&sighting("a", Some(7), false, 20));
    assert!(t.instances["a"].seen_from_start);
    assert_eq!(
        (t.instances["a"].first_seen, t.instances["a"].last_seen),
        (10, 20)
    );
}

#[test]
fn gone_instances_are_forgotten_beyond_the_bound_oldest_first_and_live_ones_never() {
    let mut t = Tracking::default();
    t.seen(&sighting("live", Some(0), false, 0));
    for i in 0..(MAX_GONE_INSTANCES as u64 + 5) {
        let id = format!("g{i:02}");
        t.seen(&sighting(&id, Some(i), true, i));
        t.gone(&id, 1_000 + i);
    }
    assert_eq!(t.instances.len(), MAX_GONE_INSTANCES + 1);
    assert!(t.instances.contains_key("live"));
    assert!(!t.instances.contains_key("g00") && !t.instances.contains_key("g04"));
    assert!(t.instances.contains_key("g05"));
}

#[test]
fn the_reason_table_marks_anything_and_heals_all_but_the_cap() {
    for reason in PartialReason::ALL {
        assert_eq!(
            ReasonState::Clear.on(reason, ReasonEvent::Mark),
            Ok(ReasonState::Marked)
        );
        let healed = ReasonState::Marked.on(reason, ReasonEvent::Heal);
        if reason == PartialReason::TooManyExecutables {
            assert_eq!(healed, Err(NotHealable { reason }));
        } else {
            assert_eq!(healed, Ok(ReasonState::Clear));
        }
    }
}

#[test]
fn diagram_edges_are_one_mark_per_reason_and_one_heal_per_healable_reason() {
    let edges = diagram_edges();
    assert_eq!(edges.len(), 4 + 3);
    for (from, label, to) in &edges {
        assert!(!label.contains([':', '\n']), "{label}");
        assert!(*from == "Complete" || *to == "Complete", "{from} -> {to}");
    }
}
