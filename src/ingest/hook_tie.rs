//! Ties an `opened` hook event (kprobe `security_bprm_creds_for_exec`, LSM
//! `bprm_creds_for_exec`) to the exec it belongs to. Such an event names the
//! caller *before* the exec, so it cannot be matched by exec_id: it is matched
//! by pid (an exec keeps the pid) and time (the hook runs before the new
//! image's start: event `time` <= the exec's `process.start_time`, seen on real
//! captures). Either may arrive first; the latest hook before the exec wins
//! (an earlier attempt of the same pid may have been denied and never became
//! an exec). Pure and bounded: entries older than `window_ms` are dropped.
use crate::time::UnixMillis;

/// A hook event and an exec further apart than this are not the same exec.
pub const TIE_WINDOW_MS: u64 = 10_000;
/// At most this many waiting entries on each side (a node's exec rate times
/// the window stays far below it; beyond it, the oldest are dropped).
pub const TIE_CAP: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Hook {
    time: UnixMillis,
    path: String,
    seen_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Exec<L> {
    start: UnixMillis,
    learner: L,
    path: String,
    seen_at: UnixMillis,
}

/// An exec and the path its hook compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tie<L> {
    pub learner: L,
    /// The exec's path as Tetragon's events name it.
    pub path: String,
    pub hook_path: String,
}

#[derive(Debug, Clone)]
pub struct HookTie<L> {
    hooks: crate::FastMap<u32, Hook>,
    execs: crate::FastMap<u32, Exec<L>>,
    /// When the last hook event came: execs wait for a hook only while the
    /// observe policy is seen posting (else nothing would ever claim them).
    last_hook_at: Option<UnixMillis>,
    window_ms: u64,
    cap: usize,
}

impl<L: Clone> Default for HookTie<L> {
    fn default() -> Self {
        Self::new(TIE_WINDOW_MS, TIE_CAP)
    }
}

fn close(hook_time: UnixMillis, exec_start: UnixMillis, window: u64) -> bool {
    hook_time <= exec_start && exec_start - hook_time <= window
}

impl<L: Clone> HookTie<L> {
    pub fn new(window_ms: u64, cap: usize) -> Self {
        Self {
            hooks: crate::FastMap::default(),
            execs: crate::FastMap::default(),
            last_hook_at: None,
            window_ms,
            cap,
        }
    }

    /// A hook event of the caller `pid` at `time`, for `path`; `now` is the
    /// agent's clock (for expiry). The exec it belongs to, if it came first.
    pub fn hook(
        &mut self,
        pid: u32,
        time: UnixMillis,
        path: &str,
        now: UnixMillis,
    ) -> Option<Tie<L>> {
        self.last_hook_at = Some(now);
        if let Some(e) = self.execs.get(&pid) {
            if close(time, e.start, self.window_ms) {
                let e = self.execs.remove(&pid)?;
                return Some(Tie {
                    learner: e.learner,
                    path: e.path,
                    hook_path: path.to_owned(),
                });
            }
        }
        self.expire_if_full(now);
        let newer = self.hooks.get(&pid).is_none_or(|h| h.time <= time);
        if newer {
            self.hooks.insert(
                pid,
                Hook {
                    time,
                    path: path.to_owned(),
                    seen_at: now,
                },
            );
        }
        None
    }

    /// An exec of `pid` that started at `start`, learned as `path` by
    /// `learner`. The hook path, if its hook event came first.
    pub fn exec(
        &mut self,
        pid: u32,
        start: UnixMillis,
        learner: L,
        path: &str,
        now: UnixMillis,
    ) -> Option<Tie<L>> {
        if let Some(h) = self.hooks.remove(&pid) {
            if close(h.time, start, self.window_ms) {
                return Some(Tie {
                    learner,
                    path: path.to_owned(),
                    hook_path: h.path,
                });
            }
        }
        let posting = self
            .last_hook_at
            .is_some_and(|at| now.saturating_sub(at) <= self.window_ms);
        if posting {
            self.expire_if_full(now);
            self.execs.insert(
                pid,
                Exec {
                    start,
                    learner,
                    path: path.to_owned(),
                    seen_at: now,
                },
            );
        }
        None
    }

    /// Drops what waited longer than the window, when either side is full.
    fn expire_if_full(&mut self, now: UnixMillis) {
        if self.hooks.len() < self.cap && self.execs.len() < self.cap {
            return;
        }
        let window = self.window_ms;
        self.hooks
            .retain(|_, h| now.saturating_sub(h.seen_at) <= window);
        self.execs
            .retain(|_, e| now.saturating_sub(e.seen_at) <= window);
        // Still full (a burst within the window): start over rather than grow.
        if self.hooks.len() >= self.cap {
            self.hooks.clear();
        }
        if self.execs.len() >= self.cap {
            self.execs.clear();
        }
    }

    /// Entries waiting (for tests and the bench).
    pub fn waiting(&self) -> (usize, usize) {
        (self.hooks.len(), self.execs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_before_exec_ties_by_pid_and_time() {
        // observe.symlink.jsonl: kprobe at .549 (caller pid 330), exec of
        // /t/echo starting at .550.
        let mut t: HookTie<u8> = HookTie::default();
        assert_eq!(t.hook(330, 549, "/t/busybox", 1), None);
        let tie = t.exec(330, 550, 7, "/t/echo", 1).unwrap();
        assert_eq!(
            (tie.learner, tie.path.as_str(), tie.hook_path.as_str()),
            (7, "/t/echo", "/t/busybox")
        );
        assert_eq!(t.waiting(), (0, 0));
    }

    #[test]
    fn exec_before_hook_ties_when_the_hook_is_older() {
        let mut t: HookTie<u8> = HookTie::default();
        t.hook(1, 10, "/warm-up", 0); // the policy is posting
        assert_eq!(t.exec(42, 1_000, 3, "/bin/sh", 5), None);
        let tie = t.hook(42, 999, "/usr/bin/dash", 6).unwrap();
        assert_eq!(
            (tie.path.as_str(), tie.hook_path.as_str()),
            ("/bin/sh", "/usr/bin/dash")
        );
    }

    #[test]
    fn a_hook_after_the_exec_started_belongs_to_a_later_exec() {
        let mut t: HookTie<u8> = HookTie::default();
        t.hook(1, 10, "/warm-up", 0);
        t.exec(42, 1_000, 3, "/bin/a", 5);
        // The next exec's hook: later than this exec's start.
        assert_eq!(t.hook(42, 1_500, "/bin/b", 6), None);
        let tie = t.exec(42, 1_501, 3, "/bin/b-link", 7).unwrap();
        assert_eq!(tie.hook_path, "/bin/b");
    }

    #[test]
    fn a_denied_attempt_is_superseded_and_stale_hooks_do_not_tie() {
        let mut t: HookTie<u8> = HookTie::new(100, 16);
        t.hook(9, 10, "/denied", 0);
        t.hook(9, 20, "/allowed", 0);
        assert_eq!(t.exec(9, 21, 1, "/x", 0).unwrap().hook_path, "/allowed");
        t.hook(9, 30, "/old", 0);
        assert_eq!(t.exec(9, 500, 1, "/y", 0), None, "outside the window");
    }

    #[test]
    fn without_hook_events_execs_do_not_wait() {
        let mut t: HookTie<u8> = HookTie::default();
        for pid in 0..1_000 {
            t.exec(pid, 5, 0, "/bin/true", 5);
        }
        assert_eq!(t.waiting(), (0, 0));
    }

    #[test]
    fn bounded_under_a_flood() {
        let mut t: HookTie<u8> = HookTie::new(1_000, 64);
        for i in 0..10_000u32 {
            t.hook(i, u64::from(i), "/h", u64::from(i));
            t.exec(i + 1_000_000, 0, 0, "/e", u64::from(i));
        }
        let (h, e) = t.waiting();
        assert!(h <= 64 && e <= 64, "{h} {e}");
    }
}
