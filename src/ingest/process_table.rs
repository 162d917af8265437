//! The live process table: which learner each running process belongs to, and
//! how the agent knows of it. Execs and snapshot entries go in, exits go out.
//!
//! It also finds lost events. Tetragon drops events silently for a slow gRPC
//! client (and sends `rate_limit_info` only to its export log), so the agent
//! checks each snapshot against what the stream delivered: a live process that
//! started after the previous snapshot but whose exec never came through the
//! stream was lost, and its learner may miss other executables too.
//!
//! The table is bounded ([`DEFAULT_MAX_LIVE_PROCESSES`]): lost exits (Tetragon
//! drops events for a slow client) must not grow memory for ever when no
//! periodic snapshot clears them. Beyond the cap the oldest entries go, and a
//! process evicted so cannot be called missed later (see [`ProcessTable::reconcile`]).
//!
//! A process that execs again without forking keeps only its last image live:
//! the rule of [`exec_chain`](crate::snapshot::exec_chain), applied to the
//! stream's execs (in either order) and within each snapshot (which may list a
//! replaced image still referenced by its successor).
use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

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

/// Default of `run --max-live-processes`. A node runs a few thousand
/// processes (110 pods by default, kernel threads are not learned); 100,000
/// leaves room for two orders of magnitude more, while the table stays within
/// about 40 MB (some 400 bytes an entry) under the DaemonSet's 256 MiB limit.
pub const DEFAULT_MAX_LIVE_PROCESSES: usize = 100_000;

/// A live process.
#[derive(Debug, Clone)]
struct Entry<K> {
    key: K,
    /// Its container instance (Tetragon's container id), if any: shared with
    /// the instance's count, so an exec of a known instance copies no id.
    instance: Option<Arc<str>>,
    seen: Seen,
    link: ExecLink,
    /// When the table learned of it (stream receipt, or snapshot time).
    since: UnixMillis,
    /// Its place in the eviction order.
    seq: u64,
}

impl<K> Entry<K> {
    fn chain<'a>(&'a self, exec_id: &'a str) -> ChainExec<'a> {
        self.link.exec(exec_id)
    }
}

/// Which learner a process belongs to is a `K`: the ingester keeps a small
/// id per learner (no key copied per process), the tests a `LearnerKey`.
#[derive(Debug)]
pub struct ProcessTable<K = LearnerKey> {
    /// By exec_id; the id is shared with `order` (one copy per process).
    live: crate::FastMap<Arc<str>, Entry<K>>,
    /// seq -> exec_id, oldest first: the eviction order.
    order: BTreeMap<u64, Arc<str>>,
    next_seq: u64,
    cap: usize,
    chains: ExecChains,
    /// Evictions not yet taken by [`ProcessTable::take_evicted`].
    evicted: u64,
    /// The latest `since` of an evicted entry: a process started before it may
    /// have been evicted, so its absence proves no lost exec.
    evicted_until: Option<UnixMillis>,
    /// Live processes per container instance: an instance is live while it has one.
    per_instance: crate::FastMap<Arc<str>, usize>,
    /// Instances that lost an entry to eviction: their count may be short, so
    /// an exit never calls them gone; the next snapshot decides.
    uncertain: HashSet<Arc<str>>,
}

/// What an exit changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited<K = LearnerKey> {
    pub key: K,
    /// The process's instance, when this exit ended its last live process.
    pub instance_gone: Option<Arc<str>>,
}

impl<K: TableKey> Default for ProcessTable<K> {
    fn default() -> Self {
        Self::with_cap(DEFAULT_MAX_LIVE_PROCESSES)
    }
}

/// What the table needs of a learner's key.
pub trait TableKey: Clone + Eq + Hash + Ord + std::fmt::Debug {}
impl<K: Clone + Eq + Hash + Ord + std::fmt::Debug> TableKey for K {}

/// One learnable process of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry<K = LearnerKey> {
    pub exec_id: String,
    pub key: K,
    pub link: ExecLink,
    pub start: Option<UnixMillis>,
    pub instance: Option<String>,
}

impl<K: TableKey> ProcessTable<K> {
    /// A table of at most `cap` processes (at least 1).
    pub fn with_cap(cap: usize) -> Self {
        Self {
            live: crate::FastMap::default(),
            order: BTreeMap::new(),
            next_seq: 0,
            cap: cap.max(1),
            chains: ExecChains::default(),
            evicted: 0,
            evicted_until: None,
            per_instance: crate::FastMap::default(),
            uncertain: HashSet::new(),
        }
    }

    /// A streamed exec. Returns true when it made its instance live (the
    /// instance had no live process in the table).
    pub fn exec(
        &mut self,
        exec_id: &str,
        key: K,
        link: ExecLink,
        now: UnixMillis,
        instance: Option<&str>,
    ) -> bool {
        let live = &self.live;
        let step = self
            .chains
            .step(link.exec(exec_id), |id| live.get(id).map(|e| e.link.pid));
        if let Some(replaced) = step.remove {
            self.remove(replaced);
        }
        let mut new_instance = false;
        if step.add {
            new_instance = instance.is_some_and(|i| !self.per_instance.contains_key(i));
            let instance = instance.map(|i| self.shared_instance(i));
            let seen = Seen::Stream(now);
            self.insert(Arc::from(exec_id), key, seen, link, now, instance);
            self.evict_over_cap();
        }
        new_instance
    }

    /// The instance id as the table already holds it, else a new copy.
    fn shared_instance(&self, id: &str) -> Arc<str> {
        match self.per_instance.get_key_value(id) {
            Some((held, _)) => held.clone(),
            None => Arc::from(id),
        }
    }

    pub fn exit(&mut self, exec_id: &str) -> Option<Exited<K>> {
        let entry = self.remove(exec_id)?;
        let instance_gone = entry
            .instance
            .filter(|i| !self.per_instance.contains_key(i) && !self.uncertain.contains(i));
        Some(Exited {
            key: entry.key,
            instance_gone,
        })
    }

    fn insert(
        &mut self,
        exec_id: Arc<str>,
        key: K,
        seen: Seen,
        link: ExecLink,
        since: UnixMillis,
        instance: Option<Arc<str>>,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, exec_id.clone());
        if let Some(i) = &instance {
            *self.per_instance.entry(i.clone()).or_default() += 1;
        }
        let entry = Entry {
            key,
            instance,
            seen,
            link,
            since,
            seq,
        };
        if let Some(old) = self.live.insert(exec_id, entry) {
            self.order.remove(&old.seq);
            self.uncount(old.instance.as_deref());
        }
    }

    fn uncount(&mut self, instance: Option<&str>) {
        let Some(i) = instance else { return };
        if let Some(n) = self.per_instance.get_mut(i) {
            *n -= 1;
            if *n == 0 {
                self.per_instance.remove(i);
            }
        }
    }

    fn remove(&mut self, exec_id: &str) -> Option<Entry<K>> {
        let entry = self.live.remove(exec_id)?;
        self.order.remove(&entry.seq);
        self.uncount(entry.instance.as_deref());
        Some(entry)
    }

    fn evict_over_cap(&mut self) {
        while self.live.len() > self.cap {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(entry) = self.live.remove(&oldest) {
                self.evicted += 1;
                self.evicted_until = self.evicted_until.max(Some(entry.since));
                self.uncount(entry.instance.as_deref());
                if let Some(i) = entry.instance {
                    self.uncertain.insert(i);
                }
            }
        }
    }

    /// The live instances of every key that has one, as the table knows them
    /// (after a snapshot: as the snapshot showed them, plus execs in flight).
    pub fn live_instances(&self) -> crate::FastMap<K, Vec<String>> {
        let mut out: crate::FastMap<K, Vec<String>> = crate::FastMap::default();
        for e in self.live.values() {
            if let Some(i) = &e.instance {
                let ids = out.entry(e.key.clone()).or_default();
                if !ids.iter().any(|held| held.as_str() == &**i) {
                    ids.push(i.to_string());
                }
            }
        }
        for ids in out.values_mut() {
            ids.sort();
        }
        out
    }

    /// Entries evicted since the last call (for the metric).
    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    /// Replaces the table with a snapshot taken at `taken_at`, the previous one
    /// having been taken at `previous` (None: first snapshot of this run).
    /// Returns the keys of processes whose exec the stream should have delivered
    /// and did not. `margin` covers events still in flight when the snapshot
    /// was taken. A process the table may have evicted (started before the
    /// newest evicted entry came in) is never called missed: its exec may well
    /// have come.
    pub fn reconcile(
        &mut self,
        entries: Vec<SnapshotEntry<K>>,
        previous: Option<UnixMillis>,
        taken_at: UnixMillis,
        margin: UnixMillis,
    ) -> Vec<K> {
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
        let mut next = Vec::with_capacity(entries.len());
        for e in entries {
            if replaced.contains(&e.exec_id) {
                continue;
            }
            let seen = match (self.live.get(e.exec_id.as_str()).map(|e| e.seen), e.start) {
                (Some(Seen::Stream(_)), _) | (Some(Seen::Snapshot), _) => Seen::Snapshot,
                // Young at the last snapshot, and still no exec since.
                (Some(Seen::Provisional), _) => {
                    missed.push(e.key.clone());
                    Seen::Snapshot
                }
                (None, Some(start))
                    if self
                        .evicted_until
                        .is_some_and(|until| start <= until.saturating_add(margin)) =>
                {
                    Seen::Snapshot
                }
                (None, Some(start)) if start > young_since => Seen::Provisional,
                (None, Some(start)) if previous.is_some_and(|p| start > p) => {
                    missed.push(e.key.clone());
                    Seen::Snapshot
                }
                (None, _) => Seen::Snapshot,
            };
            next.push((e.exec_id, e.key, seen, e.link, taken_at, e.instance));
        }
        // Execs received while the snapshot was being taken and handed over may
        // be missing from it (the cache was read before they happened): keep
        // them, or the next snapshot would call them missed. Older stream entries
        // the snapshot does not show are gone (their exit was not seen).
        let recent = taken_at.saturating_sub(STREAM_CARRY_MS);
        let shown: HashSet<&str> = next.iter().map(|(id, ..)| id.as_str()).collect();
        let mut carried: Vec<(Arc<str>, Entry<K>)> = self
            .live
            .iter()
            .filter(|(id, e)| {
                matches!(e.seen, Seen::Stream(at) if at >= recent)
                    && !replaced.contains(&***id)
                    && !shown.contains(&***id)
            })
            .map(|(id, e)| (id.clone(), e.clone()))
            .collect();
        // The snapshot's processes first, then the carried ones as they came:
        // the eviction order.
        carried.sort_by_key(|(_, e)| e.seq);
        self.live.clear();
        self.order.clear();
        self.per_instance.clear();
        // The snapshot shows every live process: instance counts are exact again.
        self.uncertain.clear();
        for (id, key, seen, link, since, instance) in next {
            let instance = instance.map(|i| self.shared_instance(&i));
            self.insert(Arc::from(id), key, seen, link, since, instance);
        }
        for (id, e) in carried {
            self.insert(id, e.key, e.seen, e.link, e.since, e.instance);
        }
        self.evict_over_cap();
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
            instance: None,
        }
    }

    /// A streamed exec with no chain (a first exec after a fork).
    fn exec(t: &mut ProcessTable, id: &str, w: &str, now: u64) {
        t.exec(id, key(w), ExecLink::default(), now, None);
    }

    #[test]
    fn exec_and_exit() {
        let mut t = ProcessTable::default();
        exec(&mut t, "a", "p", 1);
        assert_eq!(t.exit("a").map(|e| e.key), Some(key("p")));
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
    fn beyond_the_cap_the_oldest_entries_are_evicted_and_counted() {
        let mut t = ProcessTable::with_cap(2);
        exec(&mut t, "a", "p", 1);
        exec(&mut t, "b", "p", 2);
        assert_eq!(t.take_evicted(), 0);
        exec(&mut t, "c", "p", 3);
        assert_eq!(ids(&t), ["b", "c"]);
        assert_eq!(t.take_evicted(), 1);
        assert_eq!(t.take_evicted(), 0);
        // An exit of an evicted process changes nothing.
        assert_eq!(t.exit("a"), None);
        assert_eq!(t.exit("b").map(|e| e.key), Some(key("p")));
        exec(&mut t, "d", "p", 4);
        assert_eq!(ids(&t), ["c", "d"]);
        assert_eq!(t.take_evicted(), 0);
    }

    #[test]
    fn an_evicted_process_is_not_called_missed_but_a_lost_exec_after_it_still_is() {
        let mut t = ProcessTable::with_cap(2);
        t.reconcile(vec![], None, 100_000, 2_000);
        // Three execs streamed (their exits lost or not yet due): `a` is evicted.
        exec(&mut t, "a", "a", 150_000);
        exec(&mut t, "b", "b", 150_001);
        exec(&mut t, "c", "c", 150_002);
        assert_eq!(t.take_evicted(), 1);
        let missed = t.reconcile(
            vec![
                entry("a", "a", 149_990),
                entry("b", "b", 149_995),
                entry("c", "c", 149_999),
                // Started well after the eviction, its exec never came.
                entry("lost", "d", 170_000),
            ],
            Some(100_000),
            200_000,
            2_000,
        );
        assert_eq!(missed, vec![key("d")]);
        // The snapshot held four processes: the table keeps the newest two.
        assert_eq!(t.len(), 2);
        assert_eq!(t.take_evicted(), 2);
    }

    #[test]
    fn a_snapshot_keeps_the_streamed_entries_newest_in_the_eviction_order() {
        let mut t = ProcessTable::with_cap(3);
        t.reconcile(vec![], None, 100_000, 2_000);
        exec(&mut t, "late", "a", 199_950);
        t.reconcile(
            vec![entry("x", "b", 10), entry("y", "c", 20)],
            Some(100_000),
            200_000,
            2_000,
        );
        exec(&mut t, "new", "d", 200_100);
        // `x`, first in the snapshot, is the oldest entry.
        assert_eq!(ids(&t), ["late", "new", "y"]);
    }

    #[test]
    fn processes_without_a_start_time_are_not_judged() {
        let mut t = ProcessTable::default();
        let e = SnapshotEntry {
            exec_id: "x".into(),
            key: key("a"),
            link: ExecLink::default(),
            start: None,
            instance: None,
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
        let mut ids: Vec<&str> = t.live.keys().map(|id| &**id).collect();
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
                t.exec(id, key("c"), link, 10, None);
            }
            assert_eq!(ids(&t), ["sleep"], "order {order:?}");
            // The exit names only the last image; nothing stays behind.
            assert_eq!(t.exit("sleep").map(|e| e.key), Some(key("c")));
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
            t.exec(id, key("c"), link, 150_000, None);
        }
        let snap = |id: &str, link: ExecLink| SnapshotEntry {
            exec_id: id.into(),
            key: key("c"),
            link,
            start: Some(150_000),
            instance: None,
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

    fn exec_in(t: &mut ProcessTable, id: &str, inst: &str, now: u64) -> bool {
        t.exec(id, key("w"), ExecLink::default(), now, Some(inst))
    }

    #[test]
    fn an_instance_lives_while_one_of_its_processes_does() {
        let mut t = ProcessTable::default();
        assert!(
            exec_in(&mut t, "a", "c1", 1),
            "first process: the instance is new"
        );
        assert!(!exec_in(&mut t, "b", "c1", 2));
        assert_eq!(t.live_instances()[&key("w")], vec!["c1".to_string()]);
        assert_eq!(t.exit("a").unwrap().instance_gone, None);
        assert_eq!(t.exit("b").unwrap().instance_gone, Some("c1".into()));
        assert!(t.live_instances().is_empty());
    }

    #[test]
    fn after_an_eviction_only_a_snapshot_calls_an_instance_gone() {
        let mut t = ProcessTable::with_cap(2);
        exec_in(&mut t, "a", "c1", 1);
        exec_in(&mut t, "b", "c1", 2);
        exec_in(&mut t, "c", "c2", 3); // evicts `a`
        assert_eq!(
            t.exit("b").unwrap().instance_gone,
            None,
            "`a` may still run"
        );
        let snap = SnapshotEntry {
            exec_id: "c".into(),
            key: key("w"),
            link: ExecLink::default(),
            start: Some(3),
            instance: Some("c2".into()),
        };
        t.reconcile(vec![snap], None, 100_000, 2_000);
        assert_eq!(t.live_instances()[&key("w")], vec!["c2".to_string()]);
        assert_eq!(t.exit("c").unwrap().instance_gone, Some("c2".into()));
    }
}
