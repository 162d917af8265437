//! Storage failures are a state: with faults injected behind the store
//! interface, the Checkpointer backs off, reports `failing` (what `/readyz`
//! shows), measures the lag from the oldest unwritten change, recovers when
//! writes work again, and gives up (so `run` exits for a restart) when the disk
//! takes writes but the store keeps failing, as sled does after ENOSPC.
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use parking_lot::RwLock;
use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::learner::machine::Durability;
use tetragon_learner::learner::persist::Persist;
use tetragon_learner::learner::profile::Profile;
use tetragon_learner::store::checkpointer::Checkpointer;
use tetragon_learner::store::health::StorageState;
use tetragon_learner::store::Store;
use tetragon_learner::telemetry::metrics::Metrics;

fn profile(n: usize) -> Profile {
    Profile::new(
        LearnerKey::new("ns", "Deployment", &format!("w{n}"), "c"),
        1,
    )
}

fn gauge(metrics: &Metrics, name: &str) -> i64 {
    let text = metrics.render();
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {text}"))
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    for _ in 0..secs * 20 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn start(store: &Store, metrics: &Arc<Metrics>) -> Addr<Checkpointer> {
    Checkpointer::new(
        store.clone(),
        Arc::new(RwLock::new(BTreeMap::new())),
        metrics.clone(),
        Duration::from_millis(100),
    )
    .start()
}

#[actix_rt::test]
async fn a_full_disk_is_a_failing_state_with_backoff_and_recovers_when_space_is_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("db")).unwrap();
    let metrics = Arc::new(Metrics::new());
    let cp = start(&store, &metrics);
    store.storage().faults().disk_full.store(true, SeqCst);
    let res = cp
        .send(Persist {
            profile: profile(1),
            durability: Durability::Flush,
            revision: 1,
        })
        .await
        .unwrap();
    assert!(res.unwrap_err().to_string().contains("No space left"));
    // Many changes while failing: retries follow the backoff, not the arrivals.
    for r in 2..50 {
        cp.do_send(Persist {
            profile: profile(1),
            durability: Durability::Lazy,
            revision: r,
        });
    }
    tokio::time::sleep(Duration::from_millis(1_900)).await;
    let errors = gauge(&metrics, "tetragon_learner_checkpoint_errors_total");
    // Attempts at 0, 0.5, 1.5 s (backoff 0.5, 1, 2 s): 3, maybe 4 on a slow box.
    assert!((2..=4).contains(&errors), "{errors} failed writes in 1.9 s");
    match store.storage().state() {
        StorageState::Failing {
            failures,
            last_error,
            ..
        } => {
            assert_eq!(i64::from(failures), errors);
            assert!(last_error.contains("No space left"), "{last_error}");
        }
        other => panic!("expected failing, got {other:?}"),
    }
    // The lag counts from the first unwritten change, across failed retries.
    let lag = gauge(&metrics, "tetragon_learner_checkpoint_lag_milliseconds");
    assert!(lag >= 1_500, "lag {lag} ms after 1.9 s of failures");
    // Space is back: the next retry writes everything, the state is ok again.
    store.storage().faults().disk_full.store(false, SeqCst);
    wait_for("recovery", 20, || store.storage().state().is_ok()).await;
    assert_eq!(
        store.get(&profile(1).key).unwrap().map(|p| p.key),
        Some(profile(1).key)
    );
    wait_for("lag back to 0", 5, || {
        gauge(&metrics, "tetragon_learner_checkpoint_lag_milliseconds") == 0
    })
    .await;
    assert!(!*store.storage().gave_up().borrow());
}

#[actix_rt::test]
async fn a_store_that_still_fails_once_the_disk_takes_writes_gives_up() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("db")).unwrap();
    let metrics = Arc::new(Metrics::new());
    let cp = start(&store, &metrics);
    let faults = store.storage().faults();
    faults.disk_full.store(true, SeqCst);
    faults.sticky.store(true, SeqCst);
    let _ = cp
        .send(Persist {
            profile: profile(2),
            durability: Durability::Flush,
            revision: 1,
        })
        .await;
    let mut gave_up = store.storage().gave_up();
    // The probe fails while the disk is full: no give-up yet.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(!*gave_up.borrow());
    faults.disk_full.store(false, SeqCst);
    tokio::time::timeout(Duration::from_secs(30), gave_up.wait_for(|g| *g))
        .await
        .expect("gives up once the disk takes writes but sled still fails")
        .unwrap();
    assert!(matches!(
        store.storage().state(),
        StorageState::GaveUp { .. }
    ));
}
