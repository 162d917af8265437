//! One test per rule of the report ledger, then arbitrary sequences of
//! operations and write outcomes against the rule: reported once, only after a
//! confirmed write that carried it, never lost.
use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::learner::config::LearnerConfig;
use crate::learner::key::LearnerKey;
use crate::learner::machine::{step, LearnerInput};
use crate::learner::observation::{FactSource, Observation};

fn learned(path: &str) -> Effect {
    Effect::NewExecutable { path: path.into() }
}

fn flush(revision: u64) -> Option<Write> {
    Some(Write {
        revision,
        durability: Durability::Flush,
    })
}

#[test]
fn news_is_flushed_at_once_and_reported_when_confirmed() {
    let mut l = ReportLedger::default();
    assert_eq!(l.owe(vec![learned("/a"), Effect::Touched]), flush(1));
    assert_eq!(l.state_of(&learned("/a")), Some(NewsState::InFlight));
    assert_eq!(l.confirmed(1), vec![learned("/a")]);
    assert_eq!(l.state_of(&learned("/a")), None);
    // Reported once: a second answer for the same write reports nothing.
    assert_eq!(l.confirmed(1), vec![]);
    assert_eq!(l.tick(), None);
}

#[test]
fn lazy_changes_wait_for_the_tick_and_report_nothing() {
    let mut l = ReportLedger::default();
    assert_eq!(l.owe(vec![Effect::Touched]), None);
    assert_eq!(l.owe(vec![Effect::Nothing]), None);
    let w = l.tick().expect("a lazy write");
    assert_eq!(w.durability, Durability::Lazy);
    assert_eq!(l.tick(), None, "one lazy write per change");
    assert_eq!(l.confirmed(w.revision), vec![]);
}

#[test]
fn a_failed_lazy_write_is_written_again() {
    let mut l = ReportLedger::default();
    l.owe(vec![Effect::Touched]);
    let w = l.tick().unwrap();
    assert!(l.failed(w.revision));
    assert_eq!(l.tick().map(|w| w.durability), Some(Durability::Lazy));
}

#[test]
fn a_flush_writes_pending_lazy_changes_too() {
    let mut l = ReportLedger::default();
    l.owe(vec![Effect::Touched]);
    l.owe(vec![learned("/a")]);
    assert_eq!(l.tick(), None);
}

#[test]
fn a_failed_flush_owes_its_news_again_and_the_tick_flushes() {
    let mut l = ReportLedger::default();
    l.owe(vec![learned("/a")]);
    assert!(l.failed(1));
    assert_eq!(l.state_of(&learned("/a")), Some(NewsState::Owed));
    assert_eq!(l.tick(), flush(2));
    assert_eq!(l.confirmed(2), vec![learned("/a")]);
}

#[test]
fn only_news_is_kept_for_reporting() {
    let mut l = ReportLedger::default();
    // Partial reasons marked and healed are news (logged and counted once durable).
    let reason = crate::learner::profile::PartialReason::EventsDropped;
    let partial = Effect::MarkedPartial { reason };
    let healed = Effect::Healed { reason, at: 5 };
    let w = l
        .owe(vec![
            partial.clone(),
            Effect::Touched,
            healed.clone(),
            learned("/a"),
        ])
        .unwrap();
    assert_eq!(
        l.confirmed(w.revision),
        vec![partial, healed, learned("/a")]
    );
}

#[test]
fn an_operator_command_is_flushed_even_without_news() {
    let mut l = ReportLedger::default();
    l.owe(vec![Effect::Touched]);
    assert_eq!(l.owe_now(vec![Effect::Nothing]), flush(1).unwrap());
    assert_eq!(l.tick(), None, "the flush wrote the lazy changes");
}

#[test]
fn an_operator_command_carries_what_was_owed() {
    let mut l = ReportLedger::default();
    l.owe(vec![learned("/a")]);
    l.failed(1);
    let w = l.owe_now(vec![learned("/b")]);
    assert_eq!(l.tick(), None, "its flush replaces the retry");
    assert_eq!(l.confirmed(w.revision), vec![learned("/a"), learned("/b")]);
}

/// The drain's write supersedes earlier ones: it reports what they carried,
/// and their late answers report nothing twice.
#[test]
fn drain_takes_over_every_write_in_flight() {
    let mut l = ReportLedger::default();
    l.owe(vec![learned("/a")]);
    l.owe(vec![learned("/b")]);
    l.failed(2);
    l.owe(vec![Effect::Touched]);
    let w = l.drain();
    assert_eq!(w, flush(3).unwrap());
    assert_eq!(l.confirmed(1), vec![]);
    assert!(!l.failed(2), "already taken over");
    assert_eq!(l.confirmed(3), vec![learned("/a"), learned("/b")]);
}

#[test]
fn a_failed_drain_owes_everything_again() {
    let mut l = ReportLedger::default();
    l.owe(vec![learned("/a")]);
    let w = l.drain();
    assert!(l.failed(w.revision));
    assert_eq!(l.state_of(&learned("/a")), Some(NewsState::Owed));
}

#[test]
fn news_a_reset_wiped_is_not_reported() {
    let cfg = LearnerConfig::default();
    let mut p = Profile::new(LearnerKey::new("ns", "Pod", "p", "c"), 0);
    let seen = |path: &str| {
        LearnerInput::Observe(Observation {
            path: path.into(),
            at: 1,
            source: FactSource::Event,
            exec_probe: false,
            exec_session: false,
        })
    };
    step(&mut p, seen("/kept"), &cfg).unwrap();
    let wiped = p.clone();
    step(&mut p, LearnerInput::Reset { now: 2 }, &cfg).unwrap();
    step(&mut p, seen("/kept"), &cfg).unwrap();
    let news = vec![
        learned("/kept"),
        learned("/gone"),
        Effect::NewDeviation {
            path: "/gone".into(),
        },
    ];
    assert_eq!(still_held(&p, news.clone()), vec![learned("/kept")]);
    assert_eq!(still_held(&wiped, news).len(), 1);
}

/// What the shell can do to the ledger.
#[derive(Debug, Clone)]
enum Op {
    /// A step with news (a new executable) or only a lazy change.
    Step {
        news: bool,
    },
    Operate,
    Tick,
    /// The answer for the n-th write still unanswered.
    Confirm(usize),
    Fail(usize),
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<bool>().prop_map(|news| Op::Step { news }),
        1 => Just(Op::Operate),
        2 => Just(Op::Tick),
        3 => (0usize..4).prop_map(Op::Confirm),
        2 => (0usize..4).prop_map(Op::Fail),
        1 => Just(Op::Drain),
    ]
}

/// Sends `w` (checking revisions increase) and remembers it as unanswered.
fn send(w: Write, pending: &mut Vec<Write>, last: &mut u64) -> Result<(), TestCaseError> {
    prop_assert!(w.revision > *last, "revisions increase");
    *last = w.revision;
    pending.push(w);
    Ok(())
}

proptest! {
    #[test]
    fn news_is_reported_once_after_a_confirmed_write_and_never_lost(ops in proptest::collection::vec(op(), 0..80)) {
        let mut l = ReportLedger::default();
        // Writes sent and not answered, in the order they went out.
        let mut pending: Vec<Write> = Vec::new();
        let mut last = 0u64;
        // News by path: every piece born, and those reported.
        let mut born: BTreeSet<String> = BTreeSet::new();
        let mut reported: BTreeSet<String> = BTreeSet::new();
        for op in ops {
            let before: BTreeMap<String, NewsState> = born
                .iter()
                .map(|p| (p.clone(), l.state_of(&learned(p)).unwrap_or(NewsState::Reported)))
                .collect();
            let (event, now_reported) = match op {
                Op::Step { news } => {
                    let effects = if news {
                        let path = format!("/bin/{}", born.len());
                        born.insert(path.clone());
                        vec![learned(&path)]
                    } else {
                        vec![Effect::Touched]
                    };
                    if let Some(w) = l.owe(effects) {
                        prop_assert!(news, "only news is flushed at once");
                        send(w, &mut pending, &mut last)?;
                    }
                    (LedgerEvent::Sent, vec![])
                }
                Op::Operate => {
                    send(l.owe_now(vec![]), &mut pending, &mut last)?;
                    (LedgerEvent::Sent, vec![])
                }
                Op::Tick => {
                    if let Some(w) = l.tick() {
                        send(w, &mut pending, &mut last)?;
                    }
                    (LedgerEvent::Sent, vec![])
                }
                Op::Confirm(i) if i < pending.len() => {
                    let w = pending.remove(i);
                    (LedgerEvent::Confirmed, l.confirmed(w.revision))
                }
                Op::Fail(i) if i < pending.len() => {
                    let w = pending.remove(i);
                    l.failed(w.revision);
                    (LedgerEvent::Failed, vec![])
                }
                Op::Confirm(_) | Op::Fail(_) => continue,
                Op::Drain => {
                    send(l.drain(), &mut pending, &mut last)?;
                    (LedgerEvent::Drain, vec![])
                }
            };
            for e in now_reported {
                let Effect::NewExecutable { path } = e else {
                    return Err(TestCaseError::fail(format!("not news: {e:?}")));
                };
                prop_assert_eq!(before.get(&path), Some(&NewsState::InFlight), "reported only from a write that carried it");
                prop_assert!(reported.insert(path.clone()), "{} reported twice", path);
            }
            // Every move is in the table; what is not reported is owed or in flight.
            for (path, from) in before {
                let to = match l.state_of(&learned(&path)) {
                    Some(s) => s,
                    None => {
                        prop_assert!(reported.contains(&path), "{} was lost", path);
                        NewsState::Reported
                    }
                };
                if from != to || event == LedgerEvent::Drain && from != NewsState::Reported {
                    prop_assert!(transitions().contains(&(from, event, to)), "{:?} --{:?}--> {:?}", from, event, to);
                }
            }
        }
        // A confirmed drain reports everything not yet reported.
        let w = l.drain();
        for e in l.confirmed(w.revision) {
            let Effect::NewExecutable { path } = e else { continue };
            prop_assert!(reported.insert(path.clone()), "{} reported twice", path);
        }
        prop_assert_eq!(reported, born);
    }
}
