//! Opening a database where a hang or a panic cannot take the process down.
//!
//! sled 0.34 on a damaged file can spin for ever (`Tree::len`), panic
//! (`serialization.rs: tried to serialize Uninitialized`) or rewrite part of the
//! file while it recovers. So nothing here opens the operator's files directly:
//!
//! 1. the directory is copied (under a shared `flock` on sled's `db` file, so a
//!    running agent's database is reported as locked instead of copied torn);
//! 2. the copy is opened and scanned in a child process (this binary re-executed
//!    as `__check-db DIR`) with a deadline scaled with the database's size; a
//!    spinning thread cannot be stopped, a child can be killed;
//! 3. a timeout, a panic or a crash of the child is the same typed error as any
//!    other damage: `StoreError::Corrupt` naming the original path.
//!
//! Readers (`debug`, `export --db`) then use the copy they checked; the agent
//! opens the original only once its copy opened cleanly, so a quarantine moves
//! the bytes exactly as they were found.
//!
//! The one exception is the agent's start when there is no room anywhere for
//! a copy (see [`check_original`]): the child then opens the original itself,
//! with the same deadline, and only a hang counts as corruption (a panic, which
//! a full disk may cause, is an error that moves nothing).
//!
//! When this code does not run in the `tetragon-learner` binary (a test harness,
//! an embedding program), the check runs on a watchdog thread with
//! `catch_unwind` instead: a panic and a timeout are still caught, but a spinning
//! thread keeps burning CPU until the process exits.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::sled_store::Store;

/// The hidden subcommand the child runs.
pub const CHECK_SUBCOMMAND: &str = "__check-db";
const BINARY_NAME: &str = "tetragon-learner";
/// Overrides the deadline (seconds) for every open check.
pub const DEADLINE_ENV: &str = "TETRAGON_LEARNER_DB_CHECK_TIMEOUT";

/// Time allowed to open and scan a database of `bytes`: a healthy database of
/// a few MB opens in well under a second even in a debug build; the base covers
/// process start on a loaded node, the slope a larger file's recovery.
pub fn deadline_for(bytes: u64) -> Duration {
    if let Some(secs) = std::env::var(DEADLINE_ENV)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
    {
        return Duration::from_secs_f64(secs);
    }
    const MIB: u64 = 1024 * 1024;
    Duration::from_secs(5) + Duration::from_millis(bytes.div_ceil(MIB).saturating_mul(500))
}

/// A private copy of a database directory; removed when dropped.
#[derive(Debug)]
pub struct DbCopy {
    dir: tempfile::TempDir,
    original: PathBuf,
    bytes: u64,
}

impl DbCopy {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn original(&self) -> &Path {
        &self.original
    }
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    pub(super) fn into_tempdir(self) -> tempfile::TempDir {
        self.dir
    }
}

/// Holds a shared flock on sled's `db` file: sled takes an exclusive one, so
/// this fails while an agent has the database open, and keeps one from opening
/// it while the copy is taken.
struct SharedLock {
    _file: std::fs::File,
}

impl SharedLock {
    fn take(original: &Path) -> Result<Option<Self>, StoreError> {
        use std::os::fd::AsRawFd;
        let file = match std::fs::File::open(original.join("db")) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StoreError::Io {
                    path: original.to_path_buf(),
                    reason: format!("cannot read its db file: {e}"),
                })
            }
        };
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return Err(StoreError::Locked {
                    path: original.to_path_buf(),
                });
            }
            return Err(StoreError::Io {
                path: original.to_path_buf(),
                reason: format!("cannot lock its db file: {e}"),
            });
        }
        Ok(Some(Self { _file: file }))
    }
}

/// Copies the database directory into a new temporary directory under
/// `parent` (the system temp dir when `None`). Only reads the original.
pub fn copy_database(original: &Path, parent: Option<&Path>) -> Result<DbCopy, StoreError> {
    copy_database_at(original, parent).map_err(|f| f.error)
}

/// A copy that could not be made, and whether for lack of room (a full disk,
/// a quota, a read-only filesystem) rather than anything about the database.
struct CopyFailure {
    error: StoreError,
    no_room: bool,
}

impl From<StoreError> for CopyFailure {
    fn from(error: StoreError) -> Self {
        Self {
            error,
            no_room: false,
        }
    }
}

/// Whether `e` says there is no room to write (as opposed to a missing file,
/// a permission, a damaged disk).
fn no_room(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{QuotaExceeded, ReadOnlyFilesystem, StorageFull};
    matches!(e.kind(), StorageFull | QuotaExceeded | ReadOnlyFilesystem)
}

fn copy_database_at(original: &Path, parent: Option<&Path>) -> Result<DbCopy, CopyFailure> {
    let io = |what: &str, e: std::io::Error| CopyFailure {
        no_room: no_room(&e),
        error: StoreError::Io {
            path: original.to_path_buf(),
            reason: format!("{what}: {e}"),
        },
    };
    let _lock = SharedLock::take(original)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tetragon-learner-check-");
    let dir = match parent {
        Some(p) => builder.tempdir_in(p),
        None => builder.tempdir(),
    }
    .map_err(|e| io("cannot create a directory to check a copy of it in", e))?;
    let bytes = copy_tree(original, dir.path())
        .map_err(|e| io("cannot copy it to check the copy (is the disk full?)", e))?;
    Ok(DbCopy {
        dir,
        original: original.to_path_buf(),
        bytes,
    })
}

/// The bytes of the files under `dir` (for the check's deadline).
pub fn tree_size(dir: &Path) -> std::io::Result<u64> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        bytes += if meta.is_dir() {
            tree_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(bytes)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<u64> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
            bytes += copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            bytes += std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(bytes)
}

/// What the child reports on stdout (one JSON line).
#[derive(Debug, Serialize, Deserialize)]
enum Verdict {
    Opened { records: usize, bad: usize },
    Refused(StoreError),
}

/// The child's side: open and scan `dir`, print the verdict. Only a hang or a
/// panic prevents the line.
pub fn child_main(dir: &Path) -> anyhow::Result<()> {
    let verdict = match open_and_scan(dir) {
        Ok((records, bad)) => Verdict::Opened { records, bad },
        Err(e) => Verdict::Refused(e),
    };
    let line = serde_json::to_string(&verdict)?;
    println!("{line}");
    Ok(())
}

/// Everything a caller later does to the same bytes: open (sled's recovery,
/// `Tree::len`) and decode every record.
fn open_and_scan(dir: &Path) -> Result<(usize, usize), StoreError> {
    let store = Store::open(dir)?;
    let (good, bad) = store.scan()?;
    Ok((good.len(), bad.len()))
}

/// How the check runs: a child process of this binary, or (outside it) a
/// watchdog thread.
#[derive(Debug, Clone)]
pub enum Checker {
    Child(PathBuf),
    Thread,
}

impl Checker {
    /// The child when this process is the tetragon-learner binary.
    pub fn current() -> Self {
        match std::env::current_exe() {
            Ok(exe) if exe.file_name().is_some_and(|n| n == BINARY_NAME) => Self::Child(exe),
            _ => Self::Thread,
        }
    }

    /// Checks the copy; errors name `copy.original()`.
    pub fn check(&self, copy: &DbCopy) -> Result<(), StoreError> {
        self.check_dir(copy.path(), copy.original(), copy.bytes(), Where::Copy)
    }

    /// Opens and scans the database in `dir` (`bytes` of it), a copy of
    /// `original` or `original` itself; errors name `original`, the database
    /// the operator knows.
    fn check_dir(
        &self,
        dir: &Path,
        original: &Path,
        bytes: u64,
        at: Where,
    ) -> Result<(), StoreError> {
        let deadline = deadline_for(bytes);
        let started = Instant::now();
        let outcome = match self {
            Self::Child(exe) => run_child(exe, dir, deadline),
            Self::Thread => run_thread(dir, deadline),
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: original.to_path_buf(),
            reason: format!("{reason}{}", at.note()),
        };
        match outcome {
            Outcome::Verdict(Verdict::Opened { records, bad }) => {
                tracing::debug!(db = %original.display(), records, bad, elapsed_ms = started.elapsed().as_millis() as u64, checked = at.as_str(), "database opened cleanly in its check");
                Ok(())
            }
            Outcome::Verdict(Verdict::Refused(e)) => Err(e.at_path(original)),
            Outcome::TimedOut => Err(corrupt(format!(
                "opening it did not finish within {:.1} s (sled spins on some damaged files; the limit grows with the database's size, {} bytes)",
                deadline.as_secs_f64(),
                bytes
            ))),
            // In place, with no room left, a panic may be the full disk's:
            // an error that moves nothing aside, not corruption.
            Outcome::Panicked(msg) if at == Where::InPlace => Err(StoreError::Io {
                path: original.to_path_buf(),
                reason: format!(
                    "sled panicked while opening it ({}){}; free space on its volume and start again",
                    crate::log_quote::bounded(&msg),
                    at.note()
                ),
            }),
            Outcome::Panicked(msg) => Err(corrupt(format!(
                "sled panicked while opening it ({})",
                crate::log_quote::bounded(&msg)
            ))),
            Outcome::Failed(msg) => Err(StoreError::Io {
                path: original.to_path_buf(),
                reason: format!("cannot check {}: {msg}", at.what()),
            }),
        }
    }
}

/// What a check opened: a private copy, or (no room for one) the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Copy,
    InPlace,
}

impl Where {
    fn as_str(self) -> &'static str {
        match self {
            Self::Copy => "copy",
            Self::InPlace => "in place",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::Copy => "a copy of it",
            Self::InPlace => "it in place",
        }
    }

    /// Said after a reason: an in-place check may have changed the files.
    fn note(self) -> &'static str {
        match self {
            Self::Copy => "",
            Self::InPlace => " (checked in place, as there was no room for a copy: sled may have rewritten part of it)",
        }
    }
}

enum Outcome {
    Verdict(Verdict),
    TimedOut,
    Panicked(String),
    /// The check itself could not run (no child process, say).
    Failed(String),
}

fn run_child(exe: &Path, dir: &Path, deadline: Duration) -> Outcome {
    let spawned = Command::new(exe)
        .arg(CHECK_SUBCOMMAND)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "0")
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot start {}: {e}", exe.display())),
    };
    // Read both pipes on threads so a chatty child never blocks on a full pipe.
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.by_ref().take(64 * 1024).read_to_end(&mut text);
                let _ = std::io::copy(&mut p, &mut std::io::sink());
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let mut end = started + deadline;
    let mut extended = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= end => {
                // A check that spins on a damaged file burns a core; one that
                // was starved on a loaded node did not. Give the starved one
                // its time once more instead of calling the database corrupt.
                if !extended && !busy_on_cpu(child.id(), started.elapsed()) {
                    extended = true;
                    end = Instant::now() + deadline;
                    continue;
                }
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::Failed(format!("waiting for the check failed: {e}"));
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let Some(status) = status else {
        return Outcome::TimedOut;
    };
    if let Some(line) = stdout.lines().find(|l| !l.trim().is_empty()) {
        if let Ok(v) = serde_json::from_str::<Verdict>(line) {
            return Outcome::Verdict(v);
        }
    }
    // A panic prints its location on one line and its message on the next.
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = match lines.iter().position(|l| l.contains("panicked")) {
        Some(i) => lines[i..(i + 2).min(lines.len())].join(" "),
        None => lines.last().copied().unwrap_or("no message").to_string(),
    };
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(101), _) => Outcome::Panicked(last),
        // Killed from outside (the OOM killer, an operator): says nothing
        // about the database, so it must not be quarantined for it.
        (None, Some(libc::SIGKILL | libc::SIGTERM | libc::SIGINT)) => {
            Outcome::Failed(format!("the check was killed by {status}"))
        }
        // A crash (SIGSEGV, SIGBUS, SIGABRT) inside sled on this data.
        (None, _) => Outcome::Panicked(format!("the check crashed ({status}): {last}")),
        (Some(code), _) => Outcome::Failed(format!("the check exited with {code}: {last}")),
    }
}

/// Whether the child `pid` used at least half of `elapsed` on a CPU (from
/// `/proc/<pid>/stat`). Unknown counts as busy: the deadline then holds.
fn busy_on_cpu(pid: u32, elapsed: Duration) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // Fields after the command name (which may hold spaces) in parentheses:
    // utime and stime are the 12th and 13th of them.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return true;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (ticks(11), ticks(12)) else {
        return true;
    };
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_sec <= 0 {
        return true;
    }
    let cpu = Duration::from_secs_f64((utime + stime) as f64 / per_sec as f64);
    cpu * 2 >= elapsed
}

fn run_thread(dir: &Path, deadline: Duration) -> Outcome {
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = dir.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("db-check".into())
        .spawn(move || {
            let result = std::panic::catch_unwind(|| open_and_scan(&dir));
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Outcome::Failed(format!("cannot start the check thread: {e}"));
    }
    match rx.recv_timeout(deadline) {
        Ok(Ok(Ok((records, bad)))) => Outcome::Verdict(Verdict::Opened { records, bad }),
        Ok(Ok(Err(e))) => Outcome::Verdict(Verdict::Refused(e)),
        Ok(Err(panic)) => Outcome::Panicked(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "no message".into()),
        ),
        Err(_) => Outcome::TimedOut,
    }
}

/// Checks the database at `original` (if it holds one) without touching it
/// (but see below): a copy is opened in a child process. `scratch` is where the copy goes (beside
/// the database by default: same volume, and the root filesystem may be
/// read-only). Ok when there is nothing to check or the copy opened cleanly.
///
/// When no copy can be made for lack of room (typically the restart after the
/// agent stopped on a full disk), the original itself is opened in the child,
/// with the same deadline: the open that follows would touch it the same way,
/// and a hang is still caught. Failing there instead would restart the agent
/// in a loop for as long as the disk stays full. Such a check may change the
/// files (sled recovers what it opens), so its errors say it was in place.
pub fn check_original(
    checker: &Checker,
    original: &Path,
    scratch: Option<&Path>,
) -> Result<(), StoreError> {
    check_original_with(checker, original, scratch, copy_database_at)
}

/// [`check_original`], with the copying given (the tests make it fail).
fn check_original_with(
    checker: &Checker,
    original: &Path,
    scratch: Option<&Path>,
    copy: impl Fn(&Path, Option<&Path>) -> Result<DbCopy, CopyFailure>,
) -> Result<(), StoreError> {
    if is_empty_or_missing(original) {
        // Nothing to recover: sled creates a new database there.
        return Ok(());
    }
    let copied = match scratch {
        // Both places failed, one of them for lack of room (the other may
        // be read-only or not ours): nowhere to copy it.
        Some(dir) => copy(original, Some(dir)).or_else(|beside| {
            copy(original, None).map_err(|temp| CopyFailure {
                no_room: beside.no_room || temp.no_room,
                error: temp.error,
            })
        }),
        None => copy(original, None),
    };
    match copied {
        Ok(copy) => checker.check(&copy),
        Err(CopyFailure {
            no_room: true,
            error,
        }) => {
            tracing::warn!(db = %original.display(), error = %error,
                "no room to copy the database for its check: checking it in place (in a child process, with the same deadline)");
            let bytes = tree_size(original).map_err(|e| StoreError::Io {
                path: original.to_path_buf(),
                reason: format!("cannot read its files: {e}"),
            })?;
            checker.check_dir(original, original, bytes, Where::InPlace)
        }
        Err(failure) => Err(failure.error),
    }
}

/// True when `dir` does not exist or holds nothing. Anything else (even a
/// marker without sled's files) is checked: sled would otherwise create a new
/// `db` over what is left.
pub fn is_empty_or_missing(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// The agent's start: checks `db` on a copy; a corrupt database is an error
/// naming it, or, with `quarantine`, is moved aside exactly as it was found
/// (nothing opened it; unless there was no room for a copy, which the error
/// then says) and `Some(where it went)` is returned so that a fresh one is
/// created.
pub fn check_or_quarantine(
    checker: &Checker,
    db: &Path,
    quarantine: bool,
    now_ms: u64,
) -> Result<Option<PathBuf>, StoreError> {
    let scratch = db.parent().filter(|p| !p.as_os_str().is_empty());
    match check_original(checker, db, scratch) {
        Ok(()) => Ok(None),
        Err(StoreError::Corrupt { path, reason }) if quarantine => {
            let moved = super::quarantine(&path, now_ms)?;
            tracing::error!(path = %path.display(), moved_to = %moved.display(), reason = %reason,
                "CORRUPT DATABASE MOVED ASIDE: starting with an empty database; learned state is in the moved directory");
            Ok(Some(moved))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_mostly_waited_is_not_busy() {
        let me = std::process::id();
        // This test process has not used 500 s of CPU...
        assert!(!busy_on_cpu(me, Duration::from_secs(1_000)));
        // ...but anything it used covers no time at all.
        assert!(busy_on_cpu(me, Duration::ZERO));
        // Unknown (no such process) counts as busy: the deadline holds.
        assert!(busy_on_cpu(u32::MAX, Duration::from_secs(1_000)));
    }

    #[test]
    fn deadline_grows_with_size() {
        if std::env::var(DEADLINE_ENV).is_ok() {
            return;
        }
        assert_eq!(deadline_for(0), Duration::from_secs(5));
        assert_eq!(deadline_for(4 * 1024 * 1024), Duration::from_secs(7));
        assert!(deadline_for(1 << 30) > Duration::from_secs(500));
    }

    #[test]
    fn only_a_full_disk_a_quota_or_a_read_only_filesystem_is_no_room() {
        let err = std::io::Error::from_raw_os_error;
        for code in [libc::ENOSPC, libc::EDQUOT, libc::EROFS] {
            assert!(no_room(&err(code)), "errno {code}");
        }
        for code in [libc::ENOENT, libc::EACCES, libc::EIO, libc::EPERM] {
            assert!(!no_room(&err(code)), "errno {code}");
        }
    }

    #[test]
    fn a_healthy_database_checked_in_place_opens_and_keeps_its_records() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("db");
        let key = crate::learner::key::LearnerKey::new("ns", "Deployment", "web", "app");
        {
            let store = Store::open(&db).unwrap();
            let profile = crate::learner::profile::Profile::new(key.clone(), 1);
            store.write_durably(&[profile]).unwrap();
        }
        let bytes = tree_size(&db).unwrap();
        assert!(bytes > 0);
        when_unlocked(|| Checker::Thread.check_dir(&db, &db, bytes, Where::InPlace)).unwrap();
        let store = when_unlocked(|| Store::open(&db)).unwrap();
        assert_eq!(store.get(&key).unwrap().map(|p| p.key), Some(key));
    }

    /// A copy that fails as `errno` would make it fail.
    fn failing_copy(errno: i32) -> impl Fn(&Path, Option<&Path>) -> Result<DbCopy, CopyFailure> {
        move |original, _| {
            let e = std::io::Error::from_raw_os_error(errno);
            Err(CopyFailure {
                no_room: no_room(&e),
                error: StoreError::Io {
                    path: original.to_path_buf(),
                    reason: e.to_string(),
                },
            })
        }
    }

    /// Runs `f` again while it meets the database locked: sled releases its
    /// lock a moment after a `Db` is dropped (its file is freed by deferred
    /// reclamation), so an open right after a drop can meet `Locked` on a
    /// loaded machine, as `tests/common`'s `store_when_unlocked` knows.
    fn when_unlocked<T>(mut f: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            match f() {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => return other,
            }
        }
    }

    fn healthy_database(dir: &Path) -> Store {
        let store = Store::open(dir).unwrap();
        let key = crate::learner::key::LearnerKey::new("ns", "Pod", "p", "c");
        store
            .write_durably(&[crate::learner::profile::Profile::new(key, 1)])
            .unwrap();
        store
    }

    #[test]
    fn no_room_for_a_copy_anywhere_checks_the_original_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("db");
        drop(healthy_database(&db));
        let full = failing_copy(libc::ENOSPC);
        when_unlocked(|| check_original_with(&Checker::Thread, &db, Some(tmp.path()), &full))
            .unwrap();
        // The same when only one of the two places lacked room.
        let calls = std::cell::Cell::new(0);
        let mixed = |o: &Path, p: Option<&Path>| {
            calls.set(calls.get() + 1);
            let errno = if p.is_some() {
                libc::EACCES
            } else {
                libc::ENOSPC
            };
            failing_copy(errno)(o, p)
        };
        // Counted per check: a retry on the lock starts the count again.
        when_unlocked(|| {
            calls.set(0);
            check_original_with(&Checker::Thread, &db, Some(tmp.path()), mixed)
        })
        .unwrap();
        assert_eq!(
            calls.get(),
            2,
            "beside the database, then the temp directory"
        );
    }

    #[test]
    fn a_copy_that_fails_for_another_reason_is_an_error_and_opens_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("db");
        // Held open: an in-place check would fail on sled's lock, not Ok.
        let _held = healthy_database(&db);
        let err =
            check_original_with(&Checker::Thread, &db, None, failing_copy(libc::EIO)).unwrap_err();
        assert!(
            matches!(&err, StoreError::Io { reason, .. } if reason.contains("Input/output error")),
            "{err}"
        );
    }

    #[test]
    fn verdicts_round_trip_with_their_error() {
        let v = Verdict::Refused(StoreError::NewerSchema {
            path: "/x".into(),
            found: 9,
            supported: 1,
        });
        let line = serde_json::to_string(&v).unwrap();
        let back: Verdict = serde_json::from_str(&line).unwrap();
        assert!(matches!(
            back,
            Verdict::Refused(StoreError::NewerSchema { found: 9, .. })
        ));
    }
}
