//! Backfilled events teach like live ones, with source `backfill`: an exec
//! teaches its binary, and so does an exit (it names its process's binary and
//! container; a fork-only child's exit names a binary already known and adds
//! nothing). They never touch the live process table: the snapshot that
//! follows says what still runs.
//!
//! Completeness: a learner the backfill creates is `partial
//! (started-before-agent)` unless every container instance it saw started
//! inside the backfilled history (see `HistoryStart`); such containers are
//! remembered so the first snapshot does not mark their learner either.
use std::collections::{BTreeSet, HashSet};

use actix::prelude::*;

use super::{Delivery, EventIngester};
use crate::backfill::{BackfillIngested, Backfilled};
use crate::ingest::facts::learnable;
use crate::learner::actor::GetProfile;
use crate::learner::completeness::InstanceSighting;
use crate::learner::key::LearnerKey;
use crate::learner::machine::LearnerInput;
use crate::learner::observation::FactSource;
use crate::learner::profile::{PartialReason, Profile};
use crate::snapshot::convert::process_to_snapshot;
use crate::telemetry::events::{Emit, EventSkipped};
use crate::tetragon::proto::{get_events_response::Event, Process};
use crate::time::now_ms;

/// What the ingester remembers of the backfill.
#[derive(Debug, Default)]
pub(super) struct BackfillMemory {
    /// Learners the backfill created in this run.
    created: HashSet<LearnerKey>,
    /// Container ids whose start lies inside the backfilled history.
    from_start: HashSet<String>,
}

impl BackfillMemory {
    /// Whether every container in `containers` was seen from its start by the
    /// backfill (a snapshot's processes of one learner).
    pub(super) fn saw_all_from_start(&self, containers: &BTreeSet<String>) -> bool {
        !containers.is_empty() && containers.iter().all(|c| self.from_start.contains(c))
    }
}

/// The container's start (ms), from Tetragon's pod info.
fn container_start(p: &Process) -> Option<(String, u64)> {
    let c = p.pod.as_ref()?.container.as_ref()?;
    let t = c.start_time.as_ref()?;
    let ms = u64::try_from(t.seconds)
        .ok()?
        .checked_mul(1000)?
        .checked_add(u64::try_from(t.nanos / 1_000_000).ok()?)?;
    Some((c.id.clone(), ms))
}

impl Handler<Backfilled> for EventIngester {
    type Result = AtomicResponse<Self, BackfillIngested>;

    fn handle(&mut self, msg: Backfilled, _: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return AtomicResponse::new(Box::pin(actix::fut::ready(BackfillIngested::default())));
        }
        let now = now_ms();
        let mut out = Delivery::default();
        for ev in &msg.events {
            let (process, is_exit) = match &ev.event {
                Some(Event::ProcessExec(e)) => (e.process.as_ref(), false),
                Some(Event::ProcessExit(e)) => (e.process.as_ref(), true),
                _ => continue,
            };
            let Some(p) = process else {
                EventSkipped {
                    reason: "no_process",
                }
                .emit(&self.metrics);
                continue;
            };
            let snap = process_to_snapshot(p, &ev.node_name);
            let l = match learnable(&snap, FactSource::Backfill, now, &self.cfg) {
                Ok(l) => l,
                Err(reason) => {
                    EventSkipped {
                        reason: reason.label(),
                    }
                    .emit(&self.metrics);
                    continue;
                }
            };
            let instance = container_start(p);
            let from_start = match &instance {
                Some((id, start)) if msg.history.covers(*start) => {
                    self.backfill.from_start.insert(id.clone());
                    true
                }
                _ => false,
            };
            if !self.learners.contains_key(&l.key) {
                let mut profile = Profile::new(l.key.clone(), now);
                if !from_start {
                    profile
                        .partial_reasons
                        .insert(PartialReason::StartedBeforeAgent);
                }
                tracing::info!(key = %crate::log_quote::display(&l.key), seen_from_start = from_start, "new learner from the backfill");
                self.spawn_learner(profile);
                self.backfill.created.insert(l.key.clone());
            } else if !from_start && self.backfill.created.contains(&l.key) {
                // Another instance of a learner born from the backfill, one
                // that started before the history: its past is unknown.
                self.push(
                    &mut out,
                    &l.key,
                    LearnerInput::MarkPartial {
                        reason: PartialReason::StartedBeforeAgent,
                        at: now,
                    },
                    FactSource::Backfill,
                );
            }
            // An exec is a sighting; an exit teaches only a binary the profile
            // lacks (its exec was before the history read), as live exits do,
            // so one process is not counted twice. Never a gap: the history
            // is read in full, nothing of it was dropped.
            let input = if is_exit {
                if !self.cfg.learn_from_exits {
                    continue;
                }
                LearnerInput::ExitSeen {
                    observation: l.observation,
                    gap: false,
                }
            } else {
                LearnerInput::Observe(l.observation)
            };
            self.push(&mut out, &l.key, input, FactSource::Backfill);
            // The instance joins the learner's tracking: seen from its start
            // when it started inside the history read. Whether it still runs
            // is for the process table and the snapshots to say.
            if let Some((id, start)) = instance {
                let seen = LearnerInput::InstanceSeen(InstanceSighting {
                    id,
                    started_at: Some(start),
                    seen_from_start: from_start,
                    at: now,
                });
                self.push(&mut out, &l.key, seen, FactSource::Backfill);
            }
        }
        let addrs: Vec<_> = out
            .keys()
            .map(|id| {
                let slot = &self.slots[id.0];
                (slot.key.clone(), slot.addr.clone())
            })
            .collect();
        let handed = self.hand_over(out);
        let work = async move {
            handed.await;
            // Asked after the inputs (same mailbox, in order): what each
            // learner holds once it applied them.
            let mut held = Vec::with_capacity(addrs.len());
            for (key, addr) in addrs {
                if let Ok(p) = addr.send(GetProfile).await {
                    let paths: BTreeSet<String> = p
                        .executables
                        .keys()
                        .chain(p.deviations.keys())
                        .cloned()
                        .collect();
                    held.push((key, paths));
                }
            }
            BackfillIngested { held }
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}
