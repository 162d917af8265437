//! Exec chains: one process, several images. The one place that says which
//! exec_ids of a process that exec'd again without forking are still alive;
//! the export-log fold and the stream's process table both use it.
//!
//! A process that execs again in the same pid (a shell-script shim that execs
//! bash, then the real program; `exec` in a shell; `setsid`) gets one
//! `process_exec` per image, each flagged `execve` without `clone`, whose
//! `parent_exec_id` is the exec_id of the image it replaced (and whose `parent`
//! has the same pid). Tetragon logs no exit for a replaced image: the exit names
//! only the last exec_id. And it may deliver the first (`execve clone`) line
//! *after* its successors (seen live: 3 of 24 processes of an export-log
//! snapshot were long-exited pyenv shims).
//!
//! The rule: an `execve` without `clone` whose pid is the pid of the image its
//! `parent_exec_id` names replaces that image, whichever line comes first. If
//! the successor comes first, the predecessor is *awaited*: when it arrives
//! with that pid, it is not live. The pid is compared with the parent's own
//! exec (live, or arriving later), not with the event's `parent` object, so
//! the rule holds when an export field filter drops `parent`.
use std::collections::{HashMap, HashSet, VecDeque};

use super::model::has_flag_word;

/// The exec_id an exec replaced if it is the same process's next image:
/// `parent_exec_id` of an `execve` without `clone` (whether it is the same
/// process is told by the pids: see [`same_process`]).
pub fn re_exec_parent<'a>(flags: &str, exec_id: &str, parent_exec_id: &'a str) -> Option<&'a str> {
    let re_exec = has_flag_word(flags, "execve") && !has_flag_word(flags, "clone");
    (re_exec && !parent_exec_id.is_empty() && parent_exec_id != exec_id).then_some(parent_exec_id)
}

/// Whether a re-exec with `pid` continues the image that had `parent_pid`.
/// Without a pid on either side nothing is replaced: better a process kept
/// alive too long than a live one dropped.
pub fn same_process(pid: Option<u32>, parent_pid: Option<u32>) -> bool {
    pid.is_some() && pid == parent_pid
}

/// The chain facts of one exec, owned (what the stream's facts carry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecLink {
    pub pid: Option<u32>,
    /// [`re_exec_parent`]: `None` for a first exec after a fork (the usual case).
    pub replaces: Option<String>,
}

impl ExecLink {
    pub fn new(flags: &str, exec_id: &str, pid: Option<u32>, parent_exec_id: &str) -> Self {
        Self {
            pid,
            replaces: re_exec_parent(flags, exec_id, parent_exec_id).map(str::to_owned),
        }
    }

    pub fn exec<'a>(&'a self, exec_id: &'a str) -> ChainExec<'a> {
        ChainExec {
            exec_id,
            pid: self.pid,
            replaces: self.replaces.as_deref(),
        }
    }
}

/// One exec as the chain rule reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainExec<'a> {
    pub exec_id: &'a str,
    pub pid: Option<u32>,
    /// [`re_exec_parent`] of the exec.
    pub replaces: Option<&'a str>,
}

/// What a live set must do for one exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainStep<'a> {
    /// This live exec_id is the image the exec replaced: it leaves the set.
    pub remove: Option<&'a str>,
    /// Whether the exec itself is live: `false` when a successor, logged
    /// first, already replaced it.
    pub add: bool,
}

/// Successors that came before their predecessor are remembered this many at
/// a time (oldest forgotten first). Tetragon's reordering spans a few events
/// of its per-CPU buffers, so a predecessor arrives soon or never (its line was
/// lost, or logged before the part of the log that was read); the bound keeps
/// the never-arriving ones from growing memory.
pub const AWAITED_CAP: usize = 4_096;

/// The rule's memory: predecessors whose successor came first.
#[derive(Debug)]
pub struct ExecChains {
    /// exec_id of an awaited predecessor -> (the successor's pid, insertion
    /// number). Looked up once per streamed exec: a fast hasher.
    awaited: crate::FastMap<String, (u32, u64)>,
    /// Insertion order; entries no longer in `awaited` (or re-inserted since)
    /// are skipped when met.
    order: VecDeque<(u64, String)>,
    next: u64,
    cap: usize,
}

impl Default for ExecChains {
    fn default() -> Self {
        Self::with_cap(AWAITED_CAP)
    }
}

impl ExecChains {
    pub fn with_cap(cap: usize) -> Self {
        Self {
            awaited: crate::FastMap::default(),
            order: VecDeque::new(),
            next: 0,
            cap: cap.max(1),
        }
    }

    /// Applies the rule to `exec`, arriving now. `live_pid` answers whether an
    /// exec_id is live in the caller's set (`Some(its pid)`). The caller removes
    /// [`ChainStep::remove`] and adds the exec only if [`ChainStep::add`].
    pub fn step<'a>(
        &mut self,
        exec: ChainExec<'a>,
        live_pid: impl FnOnce(&str) -> Option<Option<u32>>,
    ) -> ChainStep<'a> {
        let replaced_already = self
            .awaited
            .remove(exec.exec_id)
            .is_some_and(|(successor_pid, _)| same_process(exec.pid, Some(successor_pid)));
        let mut remove = None;
        if let Some(parent) = exec.replaces {
            match live_pid(parent) {
                Some(parent_pid) if same_process(exec.pid, parent_pid) => remove = Some(parent),
                Some(_) => {}
                None => {
                    if let Some(pid) = exec.pid {
                        self.await_predecessor(parent, pid);
                    }
                }
            }
        }
        ChainStep {
            remove,
            add: !replaced_already,
        }
    }

    fn await_predecessor(&mut self, exec_id: &str, successor_pid: u32) {
        let n = self.next;
        self.next += 1;
        self.awaited.insert(exec_id.to_owned(), (successor_pid, n));
        self.order.push_back((n, exec_id.to_owned()));
        while self.awaited.len() > self.cap {
            let Some((n, id)) = self.order.pop_front() else {
                break;
            };
            if self.awaited.get(&id).is_some_and(|(_, at)| *at == n) {
                self.awaited.remove(&id);
            }
        }
        // Consumed entries stay in `order` until met: compact now and then.
        if self.order.len() > 2 * self.cap {
            let awaited = &self.awaited;
            self.order
                .retain(|(n, id)| awaited.get(id).is_some_and(|(_, at)| at == n));
        }
    }

    /// Predecessors awaited now.
    pub fn awaited(&self) -> usize {
        self.awaited.len()
    }
}

/// For a complete set of live execs (a snapshot), the exec_ids another exec
/// of the set replaced: not alive, whatever order the set is in.
pub fn replaced_within<'a>(execs: impl IntoIterator<Item = ChainExec<'a>>) -> HashSet<&'a str> {
    let execs: Vec<ChainExec<'a>> = execs.into_iter().collect();
    let pids: HashMap<&str, Option<u32>> = execs.iter().map(|e| (e.exec_id, e.pid)).collect();
    execs
        .iter()
        .filter_map(|e| {
            let parent = e.replaces?;
            let parent_pid = *pids.get(parent)?;
            same_process(e.pid, parent_pid).then_some(parent)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_an_execve_without_clone_names_a_replaced_image() {
        assert_eq!(re_exec_parent("execve", "b", "a"), Some("a"));
        assert_eq!(re_exec_parent("execve rootcwd", "b", "a"), Some("a"));
        assert_eq!(re_exec_parent("execve clone", "b", "a"), None);
        assert_eq!(re_exec_parent("procFS", "b", "a"), None);
        assert_eq!(re_exec_parent("execve procFS", "b", ""), None);
        // pid 0 `<kernel>` is its own parent.
        assert_eq!(re_exec_parent("execve", "k", "k"), None);
        // Words, not substrings.
        assert_eq!(re_exec_parent("execveX", "b", "a"), None);
    }

    #[test]
    fn the_same_process_needs_a_pid() {
        assert!(same_process(Some(3), Some(3)));
        assert!(!same_process(Some(3), Some(4)));
        assert!(!same_process(None, None));
    }

    /// A minimal live set driven by the rule: exec_id -> pid, in arrival order.
    fn run(execs: &[(&str, u32, Option<&str>)]) -> Vec<String> {
        let mut chains = ExecChains::default();
        let mut live: Vec<(String, Option<u32>)> = Vec::new();
        for (id, pid, replaces) in execs {
            let exec = ChainExec {
                exec_id: id,
                pid: Some(*pid),
                replaces: *replaces,
            };
            let step = chains.step(exec, |p| {
                live.iter().find(|(i, _)| i == p).map(|(_, pid)| *pid)
            });
            if let Some(gone) = step.remove {
                live.retain(|(i, _)| i != gone);
            }
            if step.add {
                live.push((id.to_string(), Some(*pid)));
            }
        }
        live.into_iter().map(|(i, _)| i).collect()
    }

    #[test]
    fn a_chain_in_order_leaves_its_last_image() {
        let chain = [
            ("shim", 7, None),
            ("bash", 7, Some("shim")),
            ("python", 7, Some("bash")),
        ];
        assert_eq!(run(&chain), ["python"]);
    }

    #[test]
    fn a_predecessor_logged_after_its_successor_is_not_live() {
        let chain = [
            ("python", 7, Some("bash")),
            ("bash", 7, Some("shim")),
            ("shim", 7, None),
        ];
        assert_eq!(run(&chain), ["python"]);
        let mixed = [
            ("shim", 7, None),
            ("python", 7, Some("bash")),
            ("bash", 7, Some("shim")),
        ];
        assert_eq!(run(&mixed), ["python"]);
    }

    #[test]
    fn a_parent_of_another_pid_is_not_replaced() {
        // An exec without `clone` whose fork was not seen: its parent is another process.
        let execs = [("parent", 1, None), ("child", 2, Some("parent"))];
        assert_eq!(run(&execs), ["parent", "child"]);
        let late = [("child", 2, Some("parent")), ("parent", 1, None)];
        assert_eq!(run(&late), ["child", "parent"]);
    }

    #[test]
    fn awaited_predecessors_are_bounded() {
        let mut chains = ExecChains::with_cap(3);
        for i in 0..10u32 {
            let parent = format!("p{i}");
            let child = format!("c{i}");
            let exec = ChainExec {
                exec_id: &child,
                pid: Some(i),
                replaces: Some(&parent),
            };
            chains.step(exec, |_| None);
            assert!(chains.awaited() <= 3);
            assert!(chains.order.len() <= 6);
        }
        // The newest are remembered, the oldest forgotten.
        let step = |chains: &mut ExecChains, id: &str, pid| {
            chains
                .step(
                    ChainExec {
                        exec_id: id,
                        pid: Some(pid),
                        replaces: None,
                    },
                    |_| None,
                )
                .add
        };
        assert!(!step(&mut chains, "p9", 9));
        assert!(step(&mut chains, "p0", 0));
    }

    #[test]
    fn replaced_within_a_snapshot() {
        let set = [
            ChainExec {
                exec_id: "sleep",
                pid: Some(5),
                replaces: Some("sh"),
            },
            ChainExec {
                exec_id: "sh",
                pid: Some(5),
                replaces: Some("setsid"),
            },
            ChainExec {
                exec_id: "other",
                pid: Some(6),
                replaces: Some("sleep"),
            },
        ];
        assert_eq!(replaced_within(set), HashSet::from(["sh"]));
    }

    proptest! {
        /// Whatever order a chain's lines arrive in, only its last image is live.
        #[test]
        fn any_arrival_order_leaves_the_last_image(len in 1usize..6, seed in any::<u64>()) {
            let ids: Vec<String> = (0..len).map(|i| format!("img{i}")).collect();
            let mut execs: Vec<(&str, u32, Option<&str>)> = (0..len)
                .map(|i| (ids[i].as_str(), 42, i.checked_sub(1).map(|p| ids[p].as_str())))
                .collect();
            // A permutation from the seed (Fisher-Yates with a simple LCG).
            let mut s = seed;
            for i in (1..execs.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                execs.swap(i, (s >> 33) as usize % (i + 1));
            }
            prop_assert_eq!(run(&execs), vec![ids[len - 1].clone()]);
        }
    }
}
