//! The fake node's activity: execs (and exits) at the scenario's rate, published
//! on the live feed whether or not a client is listening.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::time::now_ms;

use super::replay::Replay;
use super::scenario::{Scenario, StartMode};
use super::state::FakeState;

async fn wait_for_start(state: &FakeState, start: StartMode) {
    if start == StartMode::OnFirstClient {
        state.first_client.notified().await;
    }
}

fn pacing(rate_per_sec: u32) -> Option<Duration> {
    (rate_per_sec > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(rate_per_sec)))
}

pub async fn run_scenario(state: Arc<FakeState>, scenario: Scenario) {
    wait_for_start(&state, scenario.activity.start).await;
    let plan = scenario.exec_plan();
    if plan.is_empty() {
        return;
    }
    let mut ticker = pacing(scenario.activity.rate_per_sec).map(tokio::time::interval);
    let total = scenario.activity.total_execs;
    let mut step: u64 = 0;
    while total == 0 || step < total {
        match ticker.as_mut() {
            Some(t) => {
                t.tick().await;
            }
            None => tokio::task::yield_now().await,
        }
        let (ci, ei) = plan[(step % plan.len() as u64) as usize];
        let spec = &scenario.containers[ci].execs[ei];
        let now = now_ms();
        let (exec, exit) = {
            let mut node = state.node.lock();
            let exec = node.exec(ci, spec, now);
            let exit = if scenario.activity.exit_after_exec {
                exec_id_of(&exec).and_then(|id| node.exit(&id, now))
            } else {
                None
            };
            (exec, exit)
        };
        state.publish(exec);
        if let Some(exit) = exit {
            state.publish(exit);
        }
        step += 1;
        state.counters.execs_done.store(step, Ordering::Relaxed);
    }
}

fn exec_id_of(ev: &crate::tetragon::proto::GetEventsResponse) -> Option<String> {
    use crate::tetragon::proto::get_events_response::Event;
    match ev.event.as_ref()? {
        Event::ProcessExec(e) => e.process.as_ref().map(|p| p.exec_id.clone()),
        _ => None,
    }
}

pub async fn run_replay(state: Arc<FakeState>, replay: Replay, rate_per_sec: u32) {
    wait_for_start(&state, StartMode::OnFirstClient).await;
    let mut ticker = pacing(rate_per_sec).map(tokio::time::interval);
    for ev in replay.feed {
        match ticker.as_mut() {
            Some(t) => {
                t.tick().await;
            }
            None => tokio::task::yield_now().await,
        }
        state.node.lock().apply(&ev);
        state.publish(ev);
    }
}
