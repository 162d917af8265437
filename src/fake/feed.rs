//! The fake node's activity: execs (and exits) at the scenario's rate, published
//! on the live feed whether or not a client is listening.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::time::now_ms;

use super::hook_events::run_exec;
use super::replay::Replay;
use super::scenario::{Scenario, StartMode};
use super::state::FakeState;

async fn wait_for_start(state: &FakeState, start: StartMode) {
    if start == StartMode::OnFirstClient {
        state.first_client.notified().await;
    }
}

/// At rate 0 (as fast as possible) the feed publishes this many execs or
/// replayed events between yields, so the tasks serving the clients take them
/// in batches (one encode-and-write pass per batch, not one per event). It is
/// far below the listener queue: a client that keeps reading loses nothing, a
/// slow one still loses what overflows its queue (counted).
pub const BURST: u64 = 64;

/// Paces the feed: one step per tick at a rate, else a yield every [`BURST`] steps.
enum Pacer {
    Rate(tokio::time::Interval),
    Burst,
}

impl Pacer {
    fn new(rate_per_sec: u32) -> Self {
        if rate_per_sec > 0 {
            Pacer::Rate(tokio::time::interval(Duration::from_secs_f64(
                1.0 / f64::from(rate_per_sec),
            )))
        } else {
            Pacer::Burst
        }
    }

    /// Waits before step `step` (0-based).
    async fn before(&mut self, step: u64) {
        match self {
            Pacer::Rate(t) => {
                t.tick().await;
            }
            Pacer::Burst => {
                if step.is_multiple_of(BURST) {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

pub async fn run_scenario(state: Arc<FakeState>, scenario: Scenario) {
    wait_for_start(&state, scenario.activity.start).await;
    let plan = scenario.exec_plan();
    if plan.is_empty() {
        return;
    }
    let mut pacer = Pacer::new(scenario.activity.rate_per_sec);
    let total = scenario.activity.total_execs;
    let mut step: u64 = 0;
    while total == 0 || step < total {
        pacer.before(step).await;
        let (ci, ei) = plan[(step % plan.len() as u64) as usize];
        let spec = &scenario.containers[ci].execs[ei];
        let now = now_ms();
        let events = {
            let mut node = state.node.lock();
            let mut policies = state.policies.lock();
            let exit = scenario.activity.exit_after_exec;
            run_exec(&mut node, &mut policies, ci, spec, now, exit).0
        };
        for ev in events {
            state.publish(ev);
        }
        step += 1;
        state.counters.execs_done.store(step, Ordering::Relaxed);
    }
}

pub async fn run_replay(state: Arc<FakeState>, replay: Replay, rate_per_sec: u32) {
    wait_for_start(&state, StartMode::OnFirstClient).await;
    let mut pacer = Pacer::new(rate_per_sec);
    for (step, ev) in (0u64..).zip(replay.feed) {
        pacer.before(step).await;
        state.node.lock().apply(&ev);
        state.publish(ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::node::FakeNode;
    use crate::fake::state::LISTENER_QUEUE;
    use crate::tetragon::proto::{
        get_events_response::Event, GetEventsResponse, Process, ProcessExec, ProcessExit,
    };

    /// `n` events: exec then exit of process `i`, each carrying its index.
    fn replay(n: usize) -> Replay {
        let process = |i: usize| Process {
            exec_id: format!("id-{}", i / 2),
            binary: format!("/bin/{i}"),
            ..Default::default()
        };
        let feed = (0..n)
            .map(|i| GetEventsResponse {
                event: Some(if i % 2 == 0 {
                    Event::ProcessExec(ProcessExec {
                        process: Some(process(i)),
                        ..Default::default()
                    })
                } else {
                    Event::ProcessExit(ProcessExit {
                        process: Some(process(i)),
                        ..Default::default()
                    })
                }),
                ..Default::default()
            })
            .collect();
        Replay {
            node_name: "n".into(),
            feed,
            ..Default::default()
        }
    }

    fn binary(ev: &GetEventsResponse) -> String {
        match ev.event.as_ref() {
            Some(Event::ProcessExec(e)) => e.process.as_ref().unwrap().binary.clone(),
            Some(Event::ProcessExit(e)) => e.process.as_ref().unwrap().binary.clone(),
            _ => panic!("unexpected event"),
        }
    }

    fn state() -> Arc<FakeState> {
        let state = Arc::new(FakeState::new(
            FakeNode::empty("n", 0),
            Default::default(),
            None,
        ));
        state.first_client.notify_one();
        state
    }

    #[tokio::test] // current-thread: the client only runs when the feed yields
    async fn a_reading_client_loses_nothing_at_rate_zero() {
        const N: usize = 3 * LISTENER_QUEUE + 8;
        const { assert!(BURST < LISTENER_QUEUE as u64) };
        let state = state();
        let mut rx = state.subscribe();
        let client = tokio::spawn(async move {
            for i in 0..N {
                match rx.recv().await {
                    Some(ev) => assert_eq!(binary(&ev), format!("/bin/{i}")),
                    None => panic!("event {i}: feed closed"),
                }
            }
        });
        run_replay(state.clone(), replay(N), 0).await;
        client.await.unwrap();
        assert_eq!(
            state.counters.events_published.load(Ordering::Relaxed),
            N as u64
        );
        assert!(
            state.node.lock().is_empty(),
            "every exec was followed by its exit"
        );
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_loses_the_overflow_and_the_feed_goes_on() {
        let queue = LISTENER_QUEUE;
        let n = queue + 2 * BURST as usize + 4;
        let state = state();
        let mut rx = state.subscribe();
        run_replay(state.clone(), replay(n), 0).await;
        assert_eq!(
            state.counters.events_published.load(Ordering::Relaxed),
            n as u64
        );
        // As in Tetragon: a full queue drops what comes next, silently, and the
        // feed goes on; the client still gets the queue's worth, oldest first.
        let lost = (n - queue) as u64;
        assert_eq!(
            state
                .counters
                .dropped_for_slow_clients
                .load(Ordering::Relaxed),
            lost
        );
        assert_eq!(binary(&rx.recv().await.unwrap()), "/bin/0");
        let mut got = 1;
        while rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, queue);
    }

    #[tokio::test]
    async fn a_rate_still_paces_one_event_per_tick() {
        let state = state();
        let mut rx = state.subscribe();
        let started = std::time::Instant::now();
        // The first tick is immediate, then one every 10 ms.
        run_replay(state.clone(), replay(4), 100).await;
        assert!(started.elapsed() >= Duration::from_millis(30));
        for i in 0..4 {
            assert_eq!(binary(&rx.recv().await.unwrap()), format!("/bin/{i}"));
        }
    }
}
