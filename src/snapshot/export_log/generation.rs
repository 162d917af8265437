//! The pure fold that turns export-log events, in file order, into the set of
//! processes alive at the end of the log, as seen since Tetragon's last startup.
//!
//! At startup Tetragon scans `/proc` and logs one `process_exec` with the
//! `procFS` flag per running process, pid 0 `<kernel>` first. Each scan starts a
//! *generation*; a newer one replaces the previous, since a restarted Tetragon
//! re-reports everything still running (so what the old generation knew but
//! the new scan does not report has ended while no Tetragon watched).
//!
//! Where a generation starts:
//! - **kernel marker** (authoritative): the procFS exec of pid 0 `<kernel>`.
//!   A generation started by it ends only at the next such line.
//! - **inferred**, when the marker is not exported (Tetragon's Helm chart
//!   default `exportDenyList` drops namespace `""`, i.e. every host process,
//!   `<kernel>` included) and the current generation was not started by a
//!   marker: at the first procFS exec of the log, and again at every procFS
//!   exec that *re-reports* a process of the current generation: its exec_id
//!   was already logged as a procFS exec in it (procFS exec_ids are the process
//!   start time in clock ticks plus the pid, the same in every scan), or its pid
//!   was (the pid was reused while Tetragon was down). One scan never reports a
//!   process twice, so either means a newer scan.
//!
//! An inferred start is recognized late: the new scan's lines for processes the
//! old scan did not report (started or first exec'd since) may come before its
//! first re-reported one, and landed in the old generation. So at an inferred
//! start the old generation's still-alive procFS processes logged *after* the
//! old scan's line of the re-reported process are carried over; each further
//! re-report moves that cut later and drops the carried entries before it
//! (those belong to an older scan and were not re-reported so far: if still
//! alive they come again under the same exec_id). Old-scan processes logged
//! after the last re-reported one that died while Tetragon was down stay
//! (counted in [`GenerationCounts::carried_over`]); live execs logged between
//! the new scan's start and its first re-report are dropped with the old
//! generation. If the new scan re-reports nothing of the old one, no start is
//! seen: the result is the union of both, minus logged exits.
//!
//! Within a generation:
//! - any exec (procFS or live) adds a process, and replaces the live entry of the
//!   same pid: an `execve` without fork (shell `exec`, `setsid`, pyenv shims)
//!   gets a new exec_id and Tetragon logs no exit for the image it replaced;
//! - such a re-exec also replaces the image its `parent_exec_id` names, and if
//!   that image's line comes *after* it (Tetragon may log a chain's first line
//!   after its successors) the image is not added: the rule of
//!   [`exec_chain`](crate::snapshot::exec_chain), shared with the stream's
//!   process table;
//! - an exit removes the process with its exec_id (exits also carry `procFS`
//!   flags, so only the event kind decides what a line does);
//! - the scan's lines are interleaved with live events, so nothing assumes the
//!   scan is one block.
//!
//! The fold sees each event only through [`FoldEvent`] (kind, exec_id, pid,
//! flags) and keeps an opaque payload per live process: the reader keeps the raw
//! line and decodes just the survivors; [`Generation::push`] keeps the
//! converted [`SnapshotProcess`].
use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::live_set::{Live, LiveSet};
use crate::snapshot::convert::process_to_snapshot;
use crate::snapshot::exec_chain::{re_exec_parent, ChainExec, ExecChains};
use crate::snapshot::model::{has_flag_word, SnapshotProcess};
use crate::tetragon::proto::{get_events_response::Event, GetEventsResponse, Process};

/// A line's place in the whole log: files oldest first, lines 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct LinePos {
    pub file_index: usize,
    pub line_no: u64,
}

/// How a generation's start was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartupMarker {
    /// The procFS exec of pid 0 `<kernel>`.
    Kernel,
    /// No marker: see [`InferredBy`].
    Inferred,
}

impl StartupMarker {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Inferred => "inferred",
        }
    }
}

/// Why an inferred generation started where it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InferredBy {
    /// The first procFS exec of the log.
    FirstProcfs,
    /// A procFS exec whose exec_id the current generation already logged as procFS.
    RepeatedExecId,
    /// A procFS exec whose pid the current generation already logged as procFS.
    RepeatedPid,
}

impl InferredBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstProcfs => "first_procfs",
            Self::RepeatedExecId => "repeated_exec_id",
            Self::RepeatedPid => "repeated_pid",
        }
    }
}

/// What one event did to the fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The procFS exec of pid 0: a new generation began here.
    StartupBegan,
    /// A procFS exec without marker began a new generation (see [`InferredBy`]).
    StartupInferred(InferredBy),
    ProcfsExec,
    /// A live (BPF) exec added a process.
    Exec,
    /// An exit removed a live process.
    Exit,
    /// An exit of a process this generation never saw exec (fork-only children,
    /// processes started before the scan's generation).
    ExitUnmatched,
    /// Before any procFS exec: nothing to apply it to.
    BeforeStartup,
    /// An exec/exit without a process or exec_id: cannot be applied.
    Incomplete,
    /// Neither exec nor exit (rate-limit info, kinds unknown to our proto subset).
    OtherKind,
    /// An exec of an image that a re-exec of the same process, logged before
    /// it, already replaced: not live (see [`exec_chain`](crate::snapshot::exec_chain)).
    AlreadyReplaced,
}

/// Counters of the current generation (reset when a newer startup begins).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GenerationCounts {
    /// procFS execs attributed to this generation (carried-over ones included).
    pub procfs_execs: u64,
    pub live_execs: u64,
    pub exits_applied: u64,
    pub exits_unmatched: u64,
    /// Live entries replaced by a later exec of the same pid (or exec_id),
    /// and execs whose image a re-exec logged before them already replaced.
    pub superseded: u64,
    /// Inferred start only: procFS processes taken over from the previous
    /// generation because they were logged after its last re-reported line
    /// (still held at the end: not dropped, not re-reported, not exited).
    pub carried_over: u64,
    /// Inferred start only: carried entries dropped again because the new scan
    /// re-reported a process logged after them.
    pub carried_dropped: u64,
}

/// What the fold reads of one event.
#[derive(Debug, Clone, Copy)]
pub enum FoldEvent<'a> {
    /// A `process_exec`, with its `process` if it has one.
    Exec(Option<FoldProcess<'a>>),
    /// A `process_exit`, with its `process` if it has one.
    Exit(Option<FoldProcess<'a>>),
    /// Anything else (rate-limit info, kinds unknown to our proto subset).
    Other,
}

/// What the fold reads of an event's `process`.
#[derive(Debug, Clone, Copy)]
pub struct FoldProcess<'a> {
    pub exec_id: &'a str,
    pub pid: Option<u32>,
    pub flags: &'a str,
    /// For an exec chain (see [`exec_chain`](crate::snapshot::exec_chain)).
    pub parent_exec_id: &'a str,
}

impl<'a> FoldEvent<'a> {
    pub fn of(event: &'a GetEventsResponse) -> Self {
        let process = |p: Option<&'a Process>| {
            p.map(|p| FoldProcess {
                exec_id: &p.exec_id,
                pid: p.pid.as_ref().map(|w| w.value),
                flags: &p.flags,
                parent_exec_id: &p.parent_exec_id,
            })
        };
        match &event.event {
            Some(Event::ProcessExec(exec)) => Self::Exec(process(exec.process.as_ref())),
            Some(Event::ProcessExit(exit)) => Self::Exit(process(exit.process.as_ref())),
            Some(
                Event::RateLimitInfo(_)
                | Event::ProcessKprobe(_)
                | Event::ProcessTracepoint(_)
                | Event::ProcessLsm(_),
            )
            | None => Self::Other,
        }
    }
}

/// The result of the fold.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedGeneration<P = SnapshotProcess> {
    /// Where the start was recognized (the marker, or the inferred line).
    pub started_at: LinePos,
    pub marker: StartupMarker,
    /// For an inferred start: why there.
    pub inferred_by: Option<InferredBy>,
    /// Startup generations seen in the whole log (the last one is this).
    pub startups: u64,
    pub counts: GenerationCounts,
    /// Alive at the end of the log, in the order their exec was logged: the
    /// payloads given with their execs.
    pub processes: Vec<P>,
}

/// The fold state: only the live processes of the current generation, what a
/// newer scan would re-report, and counters that only grow (the reported
/// [`GenerationCounts`] are derived from them and the live set in [`Generation::counts`]).
#[derive(Debug)]
pub struct Generation<P = SnapshotProcess> {
    started_at: Option<LinePos>,
    marker: Option<StartupMarker>,
    inferred_by: Option<InferredBy>,
    startups: u64,
    tally: Tally,
    live: LiveSet<P>,
    /// procFS execs logged in this generation (alive or not, carried ones not
    /// included): what a newer scan would re-report.
    procfs_ids: HashMap<String, LinePos>,
    procfs_pids: HashMap<u32, LinePos>,
    /// After an inferred start with a re-report: what came over from the
    /// previous generation.
    carry: Option<Carry>,
    /// Exec chains whose successor came first (kept across generations: a
    /// predecessor may come just after a startup line).
    chains: ExecChains,
}

/// Counters of the current generation that only ever grow.
#[derive(Debug, Default)]
struct Tally {
    /// procFS exec lines of this generation (carried entries not included).
    procfs_execs: u64,
    live_execs: u64,
    exits_applied: u64,
    exits_unmatched: u64,
    superseded: u64,
    carried_dropped: u64,
}

/// What an inferred start took over from the previous generation.
#[derive(Debug)]
struct Carry {
    /// The previous generation's procFS exec_ids, to find re-reports.
    prev_procfs_ids: HashMap<String, LinePos>,
    /// The latest previous-generation position the new scan re-reported so
    /// far: carried entries logged before it belong to an older scan.
    cut: LinePos,
    /// Carried entries that count as procFS execs of this generation: all
    /// carried ones, but those dropped again or re-reported by the new scan
    /// (then its own line counts).
    counted: BTreeSet<LinePos>,
}

impl<P> Default for Generation<P> {
    fn default() -> Self {
        Self {
            started_at: None,
            marker: None,
            inferred_by: None,
            startups: 0,
            tally: Tally::default(),
            live: LiveSet::default(),
            procfs_ids: HashMap::new(),
            procfs_pids: HashMap::new(),
            carry: None,
            chains: ExecChains::default(),
        }
    }
}

impl Generation {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event found at `file_index`/`line_no`, keeping live
    /// processes as [`SnapshotProcess`]. Positions must grow.
    pub fn push(&mut self, file_index: usize, line_no: u64, event: &GetEventsResponse) -> Applied {
        let pos = LinePos {
            file_index,
            line_no,
        };
        self.apply(pos, FoldEvent::of(event), || {
            snapshot_of_exec(event).expect("the fold keeps only execs with a process")
        })
    }
}

/// The snapshot entry of an exec event's process (`None`: not an exec, or no process).
pub fn snapshot_of_exec(event: &GetEventsResponse) -> Option<SnapshotProcess> {
    match &event.event {
        Some(Event::ProcessExec(exec)) => exec
            .process
            .as_ref()
            .map(|p| process_to_snapshot(p, &event.node_name)),
        _ => None,
    }
}

impl<P> Generation<P> {
    /// Startup generations seen so far.
    pub fn startups(&self) -> u64 {
        self.startups
    }

    /// Processes currently alive in the fold.
    pub fn live_len(&self) -> usize {
        self.live.len()
    }

    /// Applies one event found at `pos`. Positions must grow. `payload` is
    /// called (once) only if the event is an exec the fold keeps.
    pub fn apply(
        &mut self,
        pos: LinePos,
        event: FoldEvent<'_>,
        payload: impl FnOnce() -> P,
    ) -> Applied {
        match event {
            FoldEvent::Exec(p) => match usable(p) {
                Some(p) => self.exec(pos, p, payload),
                None => Applied::Incomplete,
            },
            FoldEvent::Exit(p) => match usable(p) {
                Some(p) => self.exit(p.exec_id),
                None => Applied::Incomplete,
            },
            FoldEvent::Other => Applied::OtherKind,
        }
    }

    /// Whether a procFS exec starts a generation, and how.
    fn startup_of(&self, exec_id: &str, pid: Option<u32>) -> Option<(StartupMarker, Start)> {
        if pid == Some(0) {
            return Some((StartupMarker::Kernel, Start::Fresh));
        }
        if self.started_at.is_none() {
            return Some((
                StartupMarker::Inferred,
                Start::Inferred(InferredBy::FirstProcfs, None),
            ));
        }
        if self.marker != Some(StartupMarker::Inferred) {
            return None;
        }
        if let Some(&old) = self.procfs_ids.get(exec_id) {
            return Some((
                StartupMarker::Inferred,
                Start::Inferred(InferredBy::RepeatedExecId, Some(old)),
            ));
        }
        let old = pid.and_then(|pid| self.procfs_pids.get(&pid)).copied()?;
        Some((
            StartupMarker::Inferred,
            Start::Inferred(InferredBy::RepeatedPid, Some(old)),
        ))
    }

    fn exec(&mut self, pos: LinePos, p: FoldProcess<'_>, payload: impl FnOnce() -> P) -> Applied {
        let procfs = has_flag_word(p.flags, "procFS");
        let pid = p.pid;
        let mut began = None;
        if procfs {
            if let Some((marker, start)) = self.startup_of(p.exec_id, pid) {
                self.begin(pos, marker, start);
                began = Some(match start {
                    Start::Fresh => Applied::StartupBegan,
                    Start::Inferred(by, _) => Applied::StartupInferred(by),
                });
            }
        }
        let Some(started_at) = self.started_at else {
            return Applied::BeforeStartup;
        };
        let chain = ChainExec {
            exec_id: p.exec_id,
            pid,
            replaces: re_exec_parent(p.flags, p.exec_id, p.parent_exec_id),
        };
        let live = &self.live;
        let step = self.chains.step(chain, |id| {
            live.position_of_exec_id(id).and_then(|at| live.pid_at(at))
        });
        if let Some(old) = step.remove.and_then(|id| self.live.position_of_exec_id(id)) {
            self.supersede(old, procfs);
            self.tally.superseded += 1;
        }
        // A line that began a generation is its own: what replaced it before
        // belongs to the generation it ended.
        let add = step.add || began.is_some();
        if add {
            if let Some(old) = self.live.position_of_exec_id(p.exec_id) {
                self.supersede(old, procfs);
                // A carried entry re-reported by the new scan is the same process.
                if old >= started_at || !procfs {
                    self.tally.superseded += 1;
                }
            }
            if let Some(old) = pid.and_then(|pid| self.live.position_of_pid(pid)) {
                self.supersede(old, procfs);
                self.tally.superseded += 1;
            }
            self.live.insert(
                pos,
                Live {
                    exec_id: p.exec_id.to_owned(),
                    pid,
                    procfs,
                    payload: payload(),
                },
            );
        } else {
            self.tally.superseded += 1;
        }
        if procfs {
            self.tally.procfs_execs += 1;
            self.procfs_ids.insert(p.exec_id.to_owned(), pos);
            if let Some(pid) = pid {
                self.procfs_pids.insert(pid, pos);
            }
            let re_reported = self
                .carry
                .as_ref()
                .and_then(|c| c.prev_procfs_ids.get(p.exec_id).copied());
            if let Some(old) = re_reported {
                self.drop_carried_before(old);
            }
        } else {
            self.tally.live_execs += 1;
        }
        match (began, add, procfs) {
            (Some(applied), _, _) => applied,
            (None, false, _) => Applied::AlreadyReplaced,
            (None, true, true) => Applied::ProcfsExec,
            (None, true, false) => Applied::Exec,
        }
    }

    /// Removes the live entry at `old`, replaced by an exec (a procFS one if
    /// `procfs`). A carried entry replaced by a procFS exec is the new scan's
    /// own line for it: the process counts once, by that line.
    fn supersede(&mut self, old: LinePos, procfs: bool) {
        self.live.remove(old);
        if procfs {
            if let Some(carry) = &mut self.carry {
                carry.counted.remove(&old);
            }
        }
    }

    fn exit(&mut self, exec_id: &str) -> Applied {
        if self.started_at.is_none() {
            return Applied::BeforeStartup;
        }
        match self.live.position_of_exec_id(exec_id) {
            Some(pos) => {
                self.live.remove(pos);
                self.tally.exits_applied += 1;
                Applied::Exit
            }
            None => {
                self.tally.exits_unmatched += 1;
                Applied::ExitUnmatched
            }
        }
    }

    fn begin(&mut self, pos: LinePos, marker: StartupMarker, start: Start) {
        let old_live = std::mem::take(&mut self.live);
        let old_procfs_ids = std::mem::take(&mut self.procfs_ids);
        self.started_at = Some(pos);
        self.marker = Some(marker);
        self.startups += 1;
        self.tally = Tally::default();
        self.procfs_pids.clear();
        self.carry = None;
        self.inferred_by = None;
        let Start::Inferred(by, cut) = start else {
            return;
        };
        self.inferred_by = Some(by);
        let Some(cut) = cut else {
            return;
        };
        let mut counted = BTreeSet::new();
        for (at, p) in old_live.into_after(cut) {
            if p.procfs {
                counted.insert(at);
                self.live.insert(at, p);
            }
        }
        self.carry = Some(Carry {
            prev_procfs_ids: old_procfs_ids,
            cut,
            counted,
        });
    }

    /// The new scan re-reported a process the previous one logged at `old`:
    /// carried entries logged before it came from an older scan.
    fn drop_carried_before(&mut self, old: LinePos) {
        let Some(carry) = &mut self.carry else {
            return;
        };
        if carry.cut >= old {
            return;
        }
        carry.cut = old;
        for at in self.live.remove_before(old) {
            carry.counted.remove(&at);
            self.tally.carried_dropped += 1;
        }
    }

    /// The counters of the current generation, derived from the tally and the
    /// live set: nothing is ever decremented.
    pub fn counts(&self) -> GenerationCounts {
        let carried = self.carry.as_ref().map_or(0, |c| c.counted.len() as u64);
        GenerationCounts {
            procfs_execs: self.tally.procfs_execs + carried,
            live_execs: self.tally.live_execs,
            exits_applied: self.tally.exits_applied,
            exits_unmatched: self.tally.exits_unmatched,
            superseded: self.tally.superseded,
            // Carried entries are the only ones logged before the start.
            carried_over: self
                .started_at
                .map_or(0, |start| self.live.count_before(start)),
            carried_dropped: self.tally.carried_dropped,
        }
    }

    /// The live set of the last generation, or `None` if no startup was seen.
    pub fn finish(self) -> Option<CompletedGeneration<P>> {
        let started_at = self.started_at?;
        let counts = self.counts();
        Some(CompletedGeneration {
            started_at,
            marker: self.marker.unwrap_or(StartupMarker::Kernel),
            inferred_by: self.inferred_by,
            startups: self.startups,
            counts,
            processes: self.live.into_payloads().collect(),
        })
    }
}

/// How a generation begins: afresh, or inferred (with, after a re-report, the
/// previous generation's position of the re-reported process: its procFS
/// entries logged after it are carried over).
#[derive(Debug, Clone, Copy)]
enum Start {
    Fresh,
    Inferred(InferredBy, Option<LinePos>),
}

/// A process that can be tracked: it must have an exec_id to be exited by.
fn usable(p: Option<FoldProcess<'_>>) -> Option<FoldProcess<'_>> {
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
        re_exec(exec_id, pid, binary, flags, "")
    }

    /// An exec naming its parent's exec_id.
    fn re_exec(
        exec_id: &str,
        pid: u32,
        binary: &str,
        flags: &str,
        parent_exec_id: &str,
    ) -> GetEventsResponse {
        GetEventsResponse {
            node_name: "vm".into(),
            event: Some(Event::ProcessExec(ProcessExec {
                process: Some(Process {
                    parent_exec_id: parent_exec_id.into(),
                    ..process(exec_id, pid, binary, flags)
                }),
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
    fn nothing_before_the_first_procfs_exec_counts() {
        let (g, applied) = fold(&[
            exec("b", 11, "/b", "execve"),
            exit("b", 11, ""),
            exit("c", 12, "procFS"),
        ]);
        assert_eq!(applied, [Applied::BeforeStartup; 3]);
        assert!(g.finish().is_none());
    }

    #[test]
    fn without_marker_the_first_procfs_exec_starts_an_inferred_generation() {
        let (g, applied) = fold(&[
            exec("old", 5, "/old", "execve"),
            exec("a", 10, "/a", "procFS"),
            exec("b", 11, "/b", "procFS"),
        ]);
        use Applied::*;
        assert_eq!(
            applied,
            [
                BeforeStartup,
                StartupInferred(InferredBy::FirstProcfs),
                ProcfsExec
            ]
        );
        let c = g.finish().expect("inferred");
        assert_eq!(c.marker, StartupMarker::Inferred);
        assert_eq!(c.inferred_by, Some(InferredBy::FirstProcfs));
        assert_eq!(ids(&c), ["a", "b"]);
    }

    #[test]
    fn a_re_reported_exec_id_or_pid_starts_a_new_inferred_generation() {
        let (g, applied) = fold(&[
            exec("a", 10, "/a", "procFS"),
            exec("b", 11, "/b", "procFS"),
            exec("x", 20, "/x", "execve clone"),
            // Restart: `a` is re-reported under the same exec_id.
            exec("a", 10, "/a", "procFS"),
            exec("b", 11, "/b", "procFS"),
            // Restart: pid 11 again, under another exec_id (pid reused).
            exec("b2", 11, "/b", "procFS"),
        ]);
        use Applied::*;
        assert_eq!(applied[3], StartupInferred(InferredBy::RepeatedExecId));
        assert_eq!(applied[4], ProcfsExec);
        assert_eq!(applied[5], StartupInferred(InferredBy::RepeatedPid));
        assert_eq!(g.startups(), 3);
        let c = g.finish().expect("inferred");
        assert_eq!(c.started_at.line_no, 6);
        assert_eq!(ids(&c), ["b2"]);
    }

    #[test]
    fn new_processes_before_the_first_re_report_are_carried_over() {
        let (g, applied) = fold(&[
            // Scan 1: a, e1, b, e2 (e1 and e2 die while Tetragon is down).
            exec("a", 10, "/a", "procFS"),
            exec("e1", 12, "/e1", "procFS"),
            exec("b", 11, "/b", "procFS"),
            exec("e2", 13, "/e2", "procFS"),
            exec("y", 21, "/y", "execve clone"),
            // Scan 2: c is new, logged before the first re-report (a).
            exec("c", 30, "/c", "procFS"),
            exec("a", 10, "/a", "procFS"),
            exec("b", 11, "/b", "procFS"),
            exec("z", 31, "/z", "execve clone"),
        ]);
        assert_eq!(
            applied[6],
            Applied::StartupInferred(InferredBy::RepeatedExecId)
        );
        let c = g.finish().expect("inferred");
        // y (live, no exit) went with scan 1; e1 was dropped when b (logged
        // after it in scan 1) was re-reported; e2, logged after every re-reported
        // process, cannot be told from a new one and stays.
        assert_eq!(ids(&c), ["e2", "c", "a", "b", "z"]);
        assert_eq!(c.counts.carried_over, 2);
        assert_eq!(c.counts.carried_dropped, 1);
        assert_eq!(c.counts.procfs_execs, 4);
    }

    #[test]
    fn a_kernel_marked_generation_ignores_re_reports() {
        let (g, applied) = fold(&[
            exec("a", 10, "/a", "procFS"),
            exec("k", 0, "<kernel>", "procFS"),
            exec("a", 10, "/a", "procFS"),
            exec("a", 10, "/a", "procFS"),
        ]);
        assert_eq!(applied[1], Applied::StartupBegan);
        assert_eq!(applied[3], Applied::ProcfsExec);
        let c = g.finish().expect("marked");
        assert_eq!((c.marker, c.startups), (StartupMarker::Kernel, 2));
        assert_eq!(ids(&c), ["k", "a"]);
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
                superseded: 0,
                ..GenerationCounts::default()
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

    /// A pyenv shim chain as the real export shows it (pid 17418 in
    /// tests/fixtures/export-log/real: `execve clone` shim, then `execve` bash,
    /// pyenv, bash, ...; one exit, for the last image).
    fn shim_chain() -> [GetEventsResponse; 4] {
        [
            re_exec(
                "shim",
                50,
                "/root/.pyenv/shims/python3",
                "execve clone",
                "sh",
            ),
            re_exec("bash", 50, "/usr/bin/bash", "execve", "shim"),
            re_exec("pyenv", 50, "/root/.pyenv/libexec/pyenv", "execve", "bash"),
            re_exec("python", 50, "/usr/bin/python3", "execve", "pyenv"),
        ]
    }

    #[test]
    fn an_exec_chain_in_order_leaves_its_last_image_and_its_exit_ends_it() {
        let [shim, bash, pyenv, python] = shim_chain();
        let k = exec("k", 0, "<kernel>", "procFS");
        let (g, applied) = fold(&[
            k.clone(),
            shim.clone(),
            bash.clone(),
            pyenv.clone(),
            python.clone(),
        ]);
        assert_eq!(applied[1..], [Applied::Exec; 4]);
        let c = g.finish().expect("startup seen");
        assert_eq!(ids(&c), ["k", "python"]);
        assert_eq!(c.counts.superseded, 3);
        let (g, _) = fold(&[k, shim, bash, pyenv, python, exit("python", 50, "execve")]);
        assert_eq!(ids(&g.finish().expect("startup seen")), ["k"]);
    }

    #[test]
    fn a_chain_head_logged_after_its_successors_is_not_live() {
        let [shim, bash, pyenv, python] = shim_chain();
        let k = exec("k", 0, "<kernel>", "procFS");
        // Tetragon may log the `execve clone` line after the re-execs.
        let (g, applied) = fold(&[
            k.clone(),
            bash.clone(),
            pyenv.clone(),
            python.clone(),
            shim.clone(),
        ]);
        assert_eq!(applied[4], Applied::AlreadyReplaced);
        let c = g.finish().expect("startup seen");
        assert_eq!(ids(&c), ["k", "python"]);
        assert_eq!(c.counts.superseded, 3);
        // Fully reversed, then the exit of the last image: nothing of it stays.
        let (g, applied) = fold(&[k, python, pyenv, bash, shim, exit("python", 50, "execve")]);
        assert_eq!(applied[2..5], [Applied::AlreadyReplaced; 3]);
        assert_eq!(applied[5], Applied::Exit);
        assert_eq!(ids(&g.finish().expect("startup seen")), ["k"]);
    }

    #[test]
    fn a_re_exec_naming_a_parent_of_another_pid_replaces_nothing_by_it() {
        // An `execve` whose fork Tetragon missed: its parent is another process.
        let (g, applied) = fold(&[
            exec("k", 0, "<kernel>", "procFS"),
            re_exec("child", 61, "/child", "execve", "parent"),
            re_exec("parent", 60, "/parent", "execve clone", "k"),
        ]);
        assert_eq!(applied[2], Applied::Exec);
        assert_eq!(
            ids(&g.finish().expect("startup seen")),
            ["k", "child", "parent"]
        );
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
