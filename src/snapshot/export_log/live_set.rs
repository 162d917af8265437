//! The live processes of one [`Generation`](super::generation::Generation), in
//! log order, with the indexes the fold looks them up by (exec_id, pid).
//!
//! The indexes are private and kept in step here, by the only code that inserts
//! and removes: the fold asks and decides, it never edits an index itself.
use std::collections::{BTreeMap, HashMap};

use super::generation::LinePos;

/// A live process: what the fold needs of it, and the caller's payload.
#[derive(Debug)]
pub(super) struct Live<P> {
    pub exec_id: String,
    pub pid: Option<u32>,
    /// Its exec was a procFS (startup scan) line.
    pub procfs: bool,
    pub payload: P,
}

#[derive(Debug)]
pub(super) struct LiveSet<P> {
    entries: BTreeMap<LinePos, Live<P>>,
    by_exec_id: HashMap<String, LinePos>,
    by_pid: HashMap<u32, LinePos>,
}

impl<P> Default for LiveSet<P> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            by_exec_id: HashMap::new(),
            by_pid: HashMap::new(),
        }
    }
}

impl<P> LiveSet<P> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Where the live process with this exec_id was logged.
    pub fn position_of_exec_id(&self, exec_id: &str) -> Option<LinePos> {
        self.by_exec_id.get(exec_id).copied()
    }

    /// Where the live process with this pid was logged.
    pub fn position_of_pid(&self, pid: u32) -> Option<LinePos> {
        self.by_pid.get(&pid).copied()
    }

    /// The pid of the live process logged at `pos` (`Some(None)`: live, no pid).
    pub fn pid_at(&self, pos: LinePos) -> Option<Option<u32>> {
        self.entries.get(&pos).map(|l| l.pid)
    }

    /// Adds a process logged at `pos`. A live process with the same exec_id
    /// or pid is no longer found by it (the fold removes such ones first).
    pub fn insert(&mut self, pos: LinePos, live: Live<P>) {
        self.by_exec_id.insert(live.exec_id.clone(), pos);
        if let Some(pid) = live.pid {
            self.by_pid.insert(pid, pos);
        }
        if let Some(old) = self.entries.insert(pos, live) {
            // Positions grow, so this cannot happen; keep the indexes right anyway.
            self.unindex(pos, &old);
        }
    }

    pub fn remove(&mut self, pos: LinePos) -> Option<Live<P>> {
        let live = self.entries.remove(&pos)?;
        self.unindex(pos, &live);
        Some(live)
    }

    fn unindex(&mut self, pos: LinePos, live: &Live<P>) {
        if self.by_exec_id.get(&live.exec_id) == Some(&pos) {
            self.by_exec_id.remove(&live.exec_id);
        }
        if let Some(pid) = live.pid {
            if self.by_pid.get(&pid) == Some(&pos) {
                self.by_pid.remove(&pid);
            }
        }
    }

    /// Removes every process logged before `pos`; returns their positions.
    pub fn remove_before(&mut self, pos: LinePos) -> Vec<LinePos> {
        let stale: Vec<LinePos> = self.entries.range(..pos).map(|(at, _)| *at).collect();
        for at in &stale {
            self.remove(*at);
        }
        stale
    }

    /// How many live processes were logged before `pos`.
    pub fn count_before(&self, pos: LinePos) -> u64 {
        self.entries.range(..pos).count() as u64
    }

    /// The processes logged strictly after `pos`, in log order.
    pub fn into_after(mut self, pos: LinePos) -> impl Iterator<Item = (LinePos, Live<P>)> {
        let mut after = self.entries.split_off(&pos);
        after.remove(&pos);
        after.into_iter()
    }

    /// The payloads, in log order.
    pub fn into_payloads(self) -> impl Iterator<Item = P> {
        self.entries.into_values().map(|l| l.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line_no: u64) -> LinePos {
        LinePos {
            file_index: 0,
            line_no,
        }
    }

    fn live(exec_id: &str, pid: Option<u32>) -> Live<()> {
        Live {
            exec_id: exec_id.into(),
            pid,
            procfs: false,
            payload: (),
        }
    }

    #[test]
    fn indexes_follow_inserts_and_removals() {
        let mut s = LiveSet::default();
        s.insert(at(1), live("a", Some(10)));
        s.insert(at(2), live("b", None));
        assert_eq!(s.position_of_exec_id("a"), Some(at(1)));
        assert_eq!(s.position_of_pid(10), Some(at(1)));
        assert_eq!(s.pid_at(at(2)), Some(None));
        assert!(s.remove(at(1)).is_some());
        assert_eq!(s.position_of_exec_id("a"), None);
        assert_eq!(s.position_of_pid(10), None);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_newer_entry_keeps_its_index_when_an_older_one_with_the_same_pid_goes() {
        let mut s = LiveSet::default();
        s.insert(at(1), live("a", Some(10)));
        s.insert(at(2), live("b", Some(10)));
        s.remove(at(1));
        assert_eq!(s.position_of_pid(10), Some(at(2)));
    }

    #[test]
    fn ranges_by_position() {
        let mut s = LiveSet::default();
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            s.insert(at(i as u64 + 1), live(id, Some(i as u32)));
        }
        assert_eq!(s.count_before(at(3)), 2);
        assert_eq!(s.remove_before(at(2)), vec![at(1)]);
        assert_eq!(s.position_of_exec_id("a"), None);
        let after: Vec<String> = s.into_after(at(2)).map(|(_, l)| l.exec_id).collect();
        assert_eq!(after, ["c", "d"]);
    }
}
