//! The pure fold that turns export-log events, in file order, into the set of
//! processes alive at the end of the log, as seen since Tetragon's last startup.
//!
//! At startup Tetragon scans `/proc` and logs one `process_exec` with the
//! `procFS` flag per running process, pid 0 `<kernel>` first. That first line
//! marks a *generation*; each new one replaces the previous, since a restarted
//! Tetragon re-reports everything still running (under new exec_ids, so the
//! old generation cannot be merged). Within a generation:
//! - any exec (procFS or live) adds a process, and replaces the live entry of the
//!   same pid: an `execve` without fork (shell `exec`, `setsid`, pyenv shims)
//!   gets a new exec_id and Tetragon logs no exit for the image it replaced;
//! - an exit removes the process with its exec_id (exits also carry `procFS`
//!   flags, so only the event kind decides what a line does);
//! - the scan's lines are interleaved with live events, so nothing assumes the
//!   scan is one block.
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::snapshot::convert::process_to_snapshot;
use crate::snapshot::model::{has_flag_word, SnapshotProcess};
use crate::tetragon::proto::{get_events_response::Event, GetEventsResponse, Process};

/// A line's place in the whole log: files oldest first, lines 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct LinePos {
    pub file_index: usize,
    pub line_no: u64,
}

/// What one event did to the fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The procFS exec of pid 0: a new generation began here.
    StartupBegan,
    ProcfsExec,
    /// A live (BPF) exec added a process.
    Exec,
    /// An exit removed a live process.
    Exit,
    /// An exit of a process this generation never saw exec (fork-only children,
    /// processes started before the scan's generation).
    ExitUnmatched,
    /// Before any startup marker: nothing to apply it to.
    BeforeStartup,
    /// An exec/exit without a process or exec_id: cannot be applied.
    Incomplete,
    /// Neither exec nor exit (rate-limit info, kinds unknown to our proto subset).
    OtherKind,
}

/// Counters of the current generation (reset when a newer startup begins).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GenerationCounts {
    pub procfs_execs: u64,
    pub live_execs: u64,
    pub exits_applied: u64,
    pub exits_unmatched: u64,
    /// Live entries replaced by a later exec of the same pid (or exec_id).
    pub superseded: u64,
}

/// The result of the fold.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedGeneration {
    pub started_at: LinePos,
    /// Startup generations seen in the whole log (the last one is this).
    pub startups: u64,
    pub counts: GenerationCounts,
    /// Alive at the end of the log, in the order their exec was logged.
    pub processes: Vec<SnapshotProcess>,
}

/// The fold state: only the live processes of the current generation.
#[derive(Debug, Default)]
pub struct Generation {
    started_at: Option<LinePos>,
    startups: u64,
    counts: GenerationCounts,
    /// procFS execs seen before any startup marker (their scan's start was
    /// rotated away); reported when no startup is found.
    orphan_procfs_execs: u64,
    live: BTreeMap<LinePos, SnapshotProcess>,
    by_exec_id: HashMap<String, LinePos>,
    by_pid: HashMap<u32, LinePos>,
}

impl Generation {
    pub fn new() -> Self {
        Self::default()
    }

    /// Startup generations seen so far.
    pub fn startups(&self) -> u64 {
        self.startups
    }

    pub fn orphan_procfs_execs(&self) -> u64 {
        self.orphan_procfs_execs
    }

    /// Processes currently alive in the fold.
    pub fn live_len(&self) -> usize {
        self.live.len()
    }

    /// Applies one event found at `file_index`/`line_no`. Positions must grow.
    pub fn push(&mut self, file_index: usize, line_no: u64, event: &GetEventsResponse) -> Applied {
        let pos = LinePos {
            file_index,
            line_no,
        };
        match &event.event {
            Some(Event::ProcessExec(exec)) => match usable(exec.process.as_ref()) {
                Some(p) => self.exec(pos, p, &event.node_name),
                None => Applied::Incomplete,
            },
            Some(Event::ProcessExit(exit)) => match usable(exit.process.as_ref()) {
                Some(p) => self.exit(&p.exec_id),
                None => Applied::Incomplete,
            },
            Some(Event::RateLimitInfo(_)) | None => Applied::OtherKind,
        }
    }

    fn exec(&mut self, pos: LinePos, p: &Process, node_name: &str) -> Applied {
        let procfs = has_flag_word(&p.flags, "procFS");
        let pid = p.pid.as_ref().map(|w| w.value);
        if procfs && pid == Some(0) {
            self.begin(pos);
        } else if self.started_at.is_none() {
            if procfs {
                self.orphan_procfs_execs += 1;
            }
            return Applied::BeforeStartup;
        }
        if let Some(old) = self.by_exec_id.get(&p.exec_id).copied() {
            self.remove(old);
            self.counts.superseded += 1;
        }
        if let Some(old) = pid.and_then(|pid| self.by_pid.get(&pid).copied()) {
            self.remove(old);
            self.counts.superseded += 1;
        }
        self.by_exec_id.insert(p.exec_id.clone(), pos);
        if let Some(pid) = pid {
            self.by_pid.insert(pid, pos);
        }
        self.live.insert(pos, process_to_snapshot(p, node_name));
        if procfs {
            self.counts.procfs_execs += 1;
        } else {
            self.counts.live_execs += 1;
        }
        match (procfs, pid) {
            (true, Some(0)) => Applied::StartupBegan,
            (true, _) => Applied::ProcfsExec,
            (false, _) => Applied::Exec,
        }
    }

    fn exit(&mut self, exec_id: &str) -> Applied {
        if self.started_at.is_none() {
            return Applied::BeforeStartup;
        }
        match self.by_exec_id.get(exec_id).copied() {
            Some(pos) => {
                self.remove(pos);
                self.counts.exits_applied += 1;
                Applied::Exit
            }
            None => {
                self.counts.exits_unmatched += 1;
                Applied::ExitUnmatched
            }
        }
    }

    fn begin(&mut self, pos: LinePos) {
        self.started_at = Some(pos);
        self.startups += 1;
        self.counts = GenerationCounts::default();
        self.live.clear();
        self.by_exec_id.clear();
        self.by_pid.clear();
    }

    fn remove(&mut self, pos: LinePos) {
        let Some(p) = self.live.remove(&pos) else {
            return;
        };
        if self.by_exec_id.get(&p.exec_id) == Some(&pos) {
            self.by_exec_id.remove(&p.exec_id);
        }
        if self.by_pid.get(&p.pid) == Some(&pos) {
            self.by_pid.remove(&p.pid);
        }
    }

    /// The live set of the last generation, or `None` if no startup was seen.
    pub fn finish(self) -> Option<CompletedGeneration> {
        let started_at = self.started_at?;
        Some(CompletedGeneration {
            started_at,
            startups: self.startups,
            counts: self.counts,
            processes: self.live.into_values().collect(),
        })
    }
}

/// A process that can be tracked: it must have an exec_id to be exited by.
fn usable(p: Option<&Process>) -> Option<&Process> {
    p.filter(|p| !p.exec_id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tetragon::proto::{ProcessExec, ProcessExit};

    fn process(exec_id: &str, pid: u32, binary: &str, flags: &str) -> Process {
        Process {
            exec_id: exec_id.into(),
            pid: Some(pbjson_types::UInt32Value { value: pid }),
            binary: binary.into(),
            flags: flags.into(),
            ..Process::default()
        }
    }

    fn exec(exec_id: &str, pid: u32, binary: &str, flags: &str) -> GetEventsResponse {
        GetEventsResponse {
            node_name: "vm".into(),
            event: Some(Event::ProcessExec(ProcessExec {
                process: Some(process(exec_id, pid, binary, flags)),
                ..ProcessExec::default()
            })),
            ..GetEventsResponse::default()
        }
    }

    fn exit(exec_id: &str, pid: u32, flags: &str) -> GetEventsResponse {
        GetEventsResponse {
            node_name: "vm".into(),
            event: Some(Event::ProcessExit(ProcessExit {
                process: Some(process(exec_id, pid, "/x", flags)),
                ..ProcessExit::default()
            })),
            ..GetEventsResponse::default()
        }
    }

    fn fold(events: &[GetEventsResponse]) -> (Generation, Vec<Applied>) {
        let mut g = Generation::new();
        let applied = events
            .iter()
            .enumerate()
            .map(|(i, e)| g.push(0, i as u64 + 1, e))
            .collect();
        (g, applied)
    }

    fn ids(c: &CompletedGeneration) -> Vec<&str> {
        c.processes.iter().map(|p| p.exec_id.as_str()).collect()
    }

    #[test]
    fn nothing_before_a_startup_counts() {
        let (g, applied) = fold(&[
            exec("a", 10, "/a", "procFS"),
            exec("b", 11, "/b", "execve"),
            exit("b", 11, ""),
        ]);
        assert_eq!(applied, [Applied::BeforeStartup; 3]);
        assert_eq!(g.orphan_procfs_execs(), 1);
        assert!(g.finish().is_none());
    }

    #[test]
    fn interleaved_scan_live_execs_and_exits() {
        let (g, applied) = fold(&[
            exec("old", 5, "/old", "execve"),
            exec("k", 0, "<kernel>", "procFS"),
            exec("a", 10, "/a", "procFS"),
            exec("live", 20, "/live", "execve clone"),
            exit("a", 10, "procFS"),
            exec("b", 11, "/b", "procFS nocwd"),
            exit("never-seen", 30, ""),
            exit("live", 20, "execve clone"),
            exec("c", 21, "/c", "execve"),
        ]);
        use Applied::*;
        assert_eq!(
            applied,
            [
                BeforeStartup,
                StartupBegan,
                ProcfsExec,
                Exec,
                Exit,
                ProcfsExec,
                ExitUnmatched,
                Exit,
                Exec
            ]
        );
        let c = g.finish().expect("startup seen");
        assert_eq!(ids(&c), ["k", "b", "c"]);
        assert_eq!(
            c.started_at,
            LinePos {
                file_index: 0,
                line_no: 2
            }
        );
        assert_eq!(
            c.counts,
            GenerationCounts {
                procfs_execs: 3,
                live_execs: 2,
                exits_applied: 2,
                exits_unmatched: 1,
                superseded: 0
            }
        );
    }

    #[test]
    fn a_later_startup_replaces_the_earlier_generation() {
        let (g, _) = fold(&[
            exec("k", 0, "<kernel>", "procFS"),
            exec("a", 10, "/a", "procFS"),
            exec("x", 12, "/x", "execve"),
            exec("k", 0, "<kernel>", "procFS"),
            exec("a2", 10, "/a", "procFS"),
        ]);
        assert_eq!(g.startups(), 2);
        let c = g.finish().expect("startup seen");
        assert_eq!(ids(&c), ["k", "a2"]);
        assert_eq!(c.counts.procfs_execs, 2);
    }

    #[test]
    fn an_exec_without_fork_replaces_the_same_pid() {
        let (g, _) = fold(&[
            exec("k", 0, "<kernel>", "procFS"),
            exec("setsid", 40, "/usr/bin/setsid", "execve clone"),
            exec("bash", 40, "/usr/bin/bash", "execve"),
        ]);
        let c = g.finish().expect("startup seen");
        assert_eq!(ids(&c), ["k", "bash"]);
        assert_eq!(c.counts.superseded, 1);
    }

    #[test]
    fn exits_flagged_procfs_are_exits_and_other_kinds_are_ignored() {
        let other = GetEventsResponse::default();
        let (g, applied) = fold(&[
            exec("k", 0, "<kernel>", "procFS"),
            exit("k", 0, "procFS"),
            other,
        ]);
        assert_eq!(applied[1], Applied::Exit);
        assert_eq!(applied[2], Applied::OtherKind);
        assert!(g.finish().expect("startup seen").processes.is_empty());
    }

    #[test]
    fn events_without_exec_id_are_incomplete() {
        let (_, applied) = fold(&[
            exec("k", 0, "<kernel>", "procFS"),
            exec("", 3, "/a", "execve"),
        ]);
        assert_eq!(applied[1], Applied::Incomplete);
    }
}
