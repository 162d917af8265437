//! The live process table: which learner each running process belongs to, and
//! how the agent knows of it. Execs and snapshot entries go in, exits go out.
//!
//! It also finds lost events. Tetragon drops events silently for a slow gRPC
//! client (and sends `rate_limit_info` only to its export log), so the agent
//! checks each snapshot against what the stream delivered: a live process that
//! started after the previous snapshot but whose exec never came through the
//! stream was lost, and its learner may miss other executables too.
//!
//! A process that execs again without forking keeps only its last image live:
//! the rule of [`exec_chain`](crate::snapshot::exec_chain), applied to the
//! stream's execs (in either order) and within each snapshot (which may list a
//! replaced image still referenced by its successor).
use std::collections::{HashMap, HashSet};

use crate::learner::key::LearnerKey;
use crate::snapshot::exec_chain::{replaced_within, ChainExec, ExecChains, ExecLink};
use crate::time::UnixMillis;

/// How the agent knows of a live process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Its exec came through the stream, received at this time.
    Stream(UnixMillis),
    /// A snapshot showed it, and it is old enough that its exec (if any) was due.
    Snapshot,
    /// A snapshot showed it so soon after it started that its exec event may
    /// still have been on its way; the next snapshot decides.
    Provisional,
}

/// How long before a snapshot a streamed exec absent from it is still kept.
const STREAM_CARRY_MS: UnixMillis = 30_000;

/// A live process.
#[derive(Debug, Clone)]
struct Entry {
    key: LearnerKey,
    seen: Seen,
    link: ExecLink,
}

impl Entry {
    fn chain<'a>(&'a self, exec_id: &'a str) -> ChainExec<'a> {
        self.link.exec(exec_id)
    }
}

#[derive(Debug, Default)]
pub struct ProcessTable {
    live: HashMap<String, Entry>,
    chains: ExecChains,
}

/// One learnable process of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    pub exec_id: String,
    pub key: LearnerKey,
    pub link: ExecLink,
    pub start: Option<UnixMillis>,
}

impl ProcessTable {
    pub fn exec(&mut self, exec_id: String, key: LearnerKey, link: ExecLink, now: UnixMillis) {
        let live = &self.live;
        let step = self
            .chains
            .step(link.exec(&exec_id), |id| live.get(id).map(|e| e.link.pid));
        if let Some(replaced) = step.remove {
            self.live.remove(replaced);
        }
        if step.add {
            let seen = Seen::Stream(now);
            self.live.insert(exec_id, Entry { key, seen, link });
        }
    }

    pub fn exit(&mut self, exec_id: &str) -> Option<LearnerKey> {
        self.live.remove(exec_id).map(|e| e.key)
    }

    /// Replaces the table with a snapshot taken at `taken_at`, the previous one
    /// having been taken at `previous` (None: first snapshot of this run).
    /// Returns the keys of processes whose exec the stream should have delivered
    /// and did not. `margin` covers events still in flight when the snapshot
    /// was taken.
    pub fn reconcile(
        &mut self,
        entries: Vec<SnapshotEntry>,
        previous: Option<UnixMillis>,
        taken_at: UnixMillis,
        margin: UnixMillis,
    ) -> Vec<LearnerKey> {
        let young_since = taken_at.saturating_sub(margin);
        // Images a re-exec replaced are not alive, even when the snapshot
        // lists them (Tetragon's cache keeps a parent its successor refers to).
        let replaced: HashSet<String> = replaced_within(
            entries
                .iter()
                .map(|e| e.link.exec(&e.exec_id))
                .chain(self.live.iter().map(|(id, e)| e.chain(id))),
        )
        .into_iter()
        .map(str::to_owned)
        .collect();
        let mut missed = Vec::new();
        let mut next = HashMap::with_capacity(entries.len());
        for e in entries {
            if replaced.contains(&e.exec_id) {
                continue;
            }
            let seen = match (self.live.get(&e.exec_id).map(|e| e.seen), e.start) {
                (Some(Seen::Stream(_)), _) | (Some(Seen::Snapshot), _) => Seen::Snapshot,
                // Young at the last snapshot, and still no exec since.
                (Some(Seen::Provisional), _) => {
                    missed.push(e.key.clone());
                    Seen::Snapshot
                }
                (None, Some(start)) if start > young_since => Seen::Provisional,
                (None, Some(start)) if previous.is_some_and(|p| start > p) => {
                    missed.push(e.key.clone());
                    Seen::Snapshot
                }
                (None, _) => Seen::Snapshot,
            };
            let entry = Entry {
                key: e.key,
                seen,
                link: e.link,
            };
            next.insert(e.exec_id, entry);
        }
        // Execs received while the snapshot was being taken and handed over may
        // be missing from it (the cache was read before they happened): keep
        // them, or the next snapshot would call them missed. Older stream entries
        // the snapshot does not show are gone (their exit was not seen).
        let recent = taken_at.saturating_sub(STREAM_CARRY_MS);
        for (id, entry) in std::mem::take(&mut self.live) {
            if matches!(entry.seen, Seen::Stream(at) if at >= recent) && !replaced.contains(&id) {
                next.entry(id).or_insert(entry);
            }
        }
        self.live = next;
        missed.sort();
        missed.dedup();
        missed
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(w: &str) -> LearnerKey {
        LearnerKey::new("ns", "Pod", w, "c")
    }

    fn entry(id: &str, w: &str, start: u64) -> SnapshotEntry {
        SnapshotEntry {
            exec_id: id.into(),
            key: key(w),
            link: ExecLink::default(),
            start: Some(start),
        }
    }

    /// A streamed exec with no chain (a first exec after a fork).
    fn exec(t: &mut ProcessTable, id: &str, w: &str, now: u64) {
        t.exec(id.into(), key(w), ExecLink::default(), now);
    }

    #[test]
    fn exec_and_exit() {
        let mut t = ProcessTable::default();
        exec(&mut t, "a", "p", 1);
        assert_eq!(t.exit("a"), Some(key("p")));
        assert_eq!(t.exit("a"), None);
    }

    #[test]
    fn first_snapshot_finds_nothing_missing() {
        let mut t = ProcessTable::default();
        let missed = t.reconcile(
            vec![entry("old", "a", 10), entry("young", "b", 99_900)],
            None,
            100_000,
            2_000,
        );
        assert!(missed.is_empty());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_process_started_between_snapshots_without_its_exec_was_missed() {
        let mut t = ProcessTable::default();
        t.reconcile(vec![entry("old", "a", 10)], None, 100_000, 2_000);
        exec(&mut t, "seen", "b", 150_000);
        let missed = t.reconcile(
            vec![
                entry("old", "a", 10),
                entry("seen", "b", 150_000),
                entry("lost", "c", 160_000),
            ],
            Some(100_000),
            200_000,
            2_000,
        );
        assert_eq!(missed, vec![key("c")]);
    }

    #[test]
    fn a_young_process_is_judged_at_the_next_snapshot() {
        let mut t = ProcessTable::default();
        t.reconcile(vec![], None, 100_000, 2_000);
        // Started 500 ms before the snapshot: its exec may still be in flight.
        assert!(t
            .reconcile(
                vec![entry("y", "a", 199_500), entry("z", "b", 199_600)],
                Some(100_000),
                200_000,
                2_000
            )
            .is_empty());
        // The exec of `y` arrives late; `z`'s never does.
        exec(&mut t, "y", "a", 200_100);
        let missed = t.reconcile(
            vec![entry("y", "a", 199_500), entry("z", "b", 199_600)],
            Some(200_000),
            300_000,
            2_000,
        );
        assert_eq!(missed, vec![key("b")]);
    }

    #[test]
    fn an_exec_received_while_a_snapshot_was_taken_is_not_called_missed_later() {
        let mut t = ProcessTable::default();
        t.reconcile(vec![], None, 100_000, 2_000);
        // Started and streamed just after the cache was read for the snapshot at
        // 200_000, but handled before that snapshot was ingested.
        exec(&mut t, "late", "a", 199_950);
        assert!(t
            .reconcile(vec![], Some(100_000), 200_000, 2_000)
            .is_empty());
        let missed = t.reconcile(
            vec![entry("late", "a", 199_900)],
            Some(200_000),
            300_000,
            2_000,
        );
        assert!(missed.is_empty(), "{missed:?}");
        // A streamed process long gone (its exit lost) does not linger.
        exec(&mut t, "old", "b", 300_500);
        t.reconcile(vec![], Some(300_000), 400_000, 2_000);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn processes_without_a_start_time_are_not_judged() {
        let mut t = ProcessTable::default();
        let e = SnapshotEntry {
            exec_id: "x".into(),
            key: key("a"),
            link: ExecLink::default(),
            start: None,
        };
        assert!(t.reconcile(vec![e], Some(1), 100_000, 2_000).is_empty());
    }

    /// pid 18029 of tests/fixtures/real/container-events.jsonl: `setsid`
    /// (`execve clone`) execs `sh` (`execve`), which execs `sleep` (`execve`).
    fn chain() -> [(&'static str, ExecLink); 3] {
        let link =
            |flags: &str, id: &str, parent: &str| ExecLink::new(flags, id, Some(18029), parent);
        [
            ("setsid", link("execve clone", "setsid", "shell")),
            ("sh", link("execve", "sh", "setsid")),
            ("sleep", link("execve", "sleep", "sh")),
        ]
    }

    fn ids(t: &ProcessTable) -> Vec<&str> {
        let mut ids: Vec<&str> = t.live.keys().map(String::as_str).collect();
        ids.sort();
        ids
    }

    #[test]
    fn an_exec_chain_leaves_its_last_image_in_either_order_and_its_exit_ends_it() {
        let orders: [[usize; 3]; 3] = [[0, 1, 2], [2, 1, 0], [1, 2, 0]];
        for order in orders {
            let mut t = ProcessTable::default();
            let execs = chain();
            for i in order {
                let (id, link) = execs[i].clone();
                t.exec(id.into(), key("c"), link, 10);
            }
            assert_eq!(ids(&t), ["sleep"], "order {order:?}");
            // The exit names only the last image; nothing stays behind.
            assert_eq!(t.exit("sleep"), Some(key("c")));
            assert!(t.is_empty(), "order {order:?}");
        }
    }

    #[test]
    fn a_snapshot_listing_a_replaced_image_keeps_only_the_successor_and_calls_nothing_missed() {
        // GetDebug lists `sh` (refcnt held by `sleep`) next to `sleep`, as in
        // tests/fixtures/real/getdebug-dump.json.
        let mut t = ProcessTable::default();
        t.reconcile(vec![], None, 100_000, 2_000);
        for (id, link) in chain() {
            t.exec(id.into(), key("c"), link, 150_000);
        }
        let snap = |id: &str, link: ExecLink| SnapshotEntry {
            exec_id: id.into(),
            key: key("c"),
            link,
            start: Some(150_000),
        };
        let [_, (sh, sh_link), (sleep, sleep_link)] = chain();
        let missed = t.reconcile(
            vec![snap(sh, sh_link.clone()), snap(sleep, sleep_link.clone())],
            Some(100_000),
            200_000,
            2_000,
        );
        assert!(missed.is_empty(), "{missed:?}");
        assert_eq!(ids(&t), ["sleep"]);
        // Also when the stream never showed the chain: the successor alone is judged.
        let mut t = ProcessTable::default();
        t.reconcile(vec![], None, 100_000, 2_000);
        let missed = t.reconcile(
            vec![snap(sleep, sleep_link), snap(sh, sh_link)],
            Some(100_000),
            200_000,
            2_000,
        );
        assert_eq!(missed, vec![key("c")]);
        assert_eq!(ids(&t), ["sleep"]);
    }
}
