//! The blocking shell of the backfill: opens the export files, identifies them
//! by their first bytes, lets [`plan_start`] decide where to start, and reads
//! up to a number of lines from there, decoding exec and exit lines into
//! events. It reuses the export-log reader's parts: [`list_file_set`] /
//! [`open_all`] (rotated and `.gz` siblings, in order, one copy each),
//! [`file_lines`], the light decode (only exec and exit lines are decoded
//! fully) and, for a first read, the [`Generation`] fold that finds Tetragon's
//! most recent startup.
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use thiserror::Error;

use super::position::{duplicates, plan_start, HistoryStart, Position, Start, PREFIX_BYTES};
use crate::snapshot::export_log::files::{list_file_set, open_all, OpenedFile};
use crate::snapshot::export_log::light::{decode_light, LightEvent};
use crate::snapshot::export_log::lines::{file_lines, Line};
use crate::snapshot::export_log::parse::{line_text, parse_text, ParsedLine};
use crate::snapshot::export_log::{Applied, Generation, LinePos};
use crate::snapshot::model::has_flag_word;
use crate::tetragon::proto::{get_events_response::Event, GetEventsResponse};

#[derive(Debug, Error)]
pub enum BackfillReadError {
    #[error("cannot read Tetragon's export log {path}: {reason}; check --export-log and that the agent may read the directory (or pass --backfill off)")]
    Unreadable { path: PathBuf, reason: String },
    #[error("reading {path} for the backfill failed: {source}; it is read again from the last saved position at the next start")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What one read gave.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Exec and exit events, in file order.
    pub events: Vec<GetEventsResponse>,
    /// Lines consumed (every kind, skipped ones included).
    pub lines: u64,
    pub execs: u64,
    pub exits: u64,
    /// Lines that were not valid events (malformed, truncated, too long, not UTF-8).
    pub skipped: u64,
    /// Where the next read starts (`None`: nothing was ever read).
    pub position: Option<Position>,
    /// Where this read started.
    pub start: Option<Start>,
    /// Files read (at least partly), oldest first.
    pub files: Vec<PathBuf>,
    /// The read stopped at `max_lines`: more may follow.
    pub more: bool,
}

/// One opened file and its first bytes.
struct Candidate {
    opened: OpenedFile,
    prefix: Vec<u8>,
}

/// Reads at most `max_lines` lines of the export log at `active` (and its
/// rotated siblings) after `stored`. Blocking.
pub fn read_chunk(
    active: &Path,
    stored: Option<&Position>,
    max_lines: u64,
) -> Result<Chunk, BackfillReadError> {
    let mut candidates = open_candidates(active)?;
    let prefixes: Vec<Vec<u8>> = candidates.iter().map(|c| c.prefix.clone()).collect();
    let mut start = plan_start(&prefixes, stored);
    if start == Start::Lost {
        // lumberjack renames the active file and creates a new one: a listing
        // taken between the two sees neither under the old name. Look again
        // before calling the position lost.
        std::thread::sleep(std::time::Duration::from_millis(200));
        candidates = open_candidates(active)?;
        let prefixes: Vec<Vec<u8>> = candidates.iter().map(|c| c.prefix.clone()).collect();
        start = plan_start(&prefixes, stored);
    }
    let prefixes: Vec<Vec<u8>> = candidates.iter().map(|c| c.prefix.clone()).collect();
    let dup = duplicates(&prefixes);
    let (first_file, first_offset, mut history) = match start {
        Start::Continue { file, offset } => (
            file,
            offset,
            stored
                .map(|s| s.history)
                .unwrap_or_else(HistoryStart::unknown),
        ),
        Start::Lost => (0, 0, HistoryStart::unknown()),
        Start::Fresh => {
            let (file, offset) = most_recent_startup(&mut candidates, &dup)?.unwrap_or((0, 0));
            (file, offset, HistoryStart::unknown())
        }
    };
    let mut chunk = Chunk {
        start: Some(start),
        position: stored.cloned(),
        ..Chunk::default()
    };
    let last = candidates.len().saturating_sub(1);
    for (index, c) in candidates.into_iter().enumerate() {
        if index < first_file || dup[index] {
            continue;
        }
        let skip = if index == first_file { first_offset } else { 0 };
        let is_active = index == last
            && !c.opened.compressed
            && c.opened.path.file_name() == active.file_name();
        let read = read_file(c, skip, is_active, max_lines, &mut chunk, &mut history)?;
        if read == FileRead::Stopped {
            chunk.more = true;
            break;
        }
    }
    if let Some(p) = chunk.position.as_mut() {
        p.history = history;
    }
    Ok(chunk)
}

fn open_candidates(active: &Path) -> Result<Vec<Candidate>, BackfillReadError> {
    let unreadable = |reason: String| BackfillReadError::Unreadable {
        path: active.to_path_buf(),
        reason,
    };
    let Some(set) = list_file_set(active).map_err(|e| unreadable(e.to_string()))? else {
        return Ok(Vec::new());
    };
    let (opened, _vanished) = open_all(&set).map_err(|e| unreadable(e.to_string()))?;
    opened
        .into_iter()
        .map(|mut opened| {
            let prefix =
                read_prefix(&mut opened, PREFIX_BYTES).map_err(|source| BackfillReadError::Io {
                    path: opened.path.clone(),
                    source,
                })?;
            Ok(Candidate { opened, prefix })
        })
        .collect()
}

/// The first `n` decompressed bytes (fewer if the file is shorter), leaving
/// the file at its start.
fn read_prefix(f: &mut OpenedFile, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    if f.compressed {
        // A damaged or still-growing .gz gives what decodes.
        let _ = MultiGzDecoder::new(&f.file)
            .take(n as u64)
            .read_to_end(&mut buf);
        f.file.seek(SeekFrom::Start(0))?;
    } else {
        buf.resize(n, 0);
        let mut got = 0;
        while got < n {
            match f.file.read_at(&mut buf[got..], got as u64)? {
                0 => break,
                k => got += k,
            }
        }
        buf.truncate(got);
    }
    Ok(buf)
}

/// The first bytes of a plain file up to `end` (the position's identity).
fn plain_prefix(file: &File, end: u64) -> io::Result<Vec<u8>> {
    let n = usize::try_from(end).unwrap_or(usize::MAX).min(PREFIX_BYTES);
    let mut buf = vec![0; n];
    let mut got = 0;
    while got < n {
        match file.read_at(&mut buf[got..], got as u64)? {
            0 => break,
            k => got += k,
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// (file index, byte offset) of the line where Tetragon's most recent startup
/// begins, by the export-log snapshot's own fold; `None` when the files hold
/// no procFS line (the startup was rotated away: everything left is after it).
fn most_recent_startup(
    candidates: &mut [Candidate],
    dup: &[bool],
) -> Result<Option<(usize, u64)>, BackfillReadError> {
    let mut fold = Generation::<()>::default();
    let mut found = None;
    for (index, c) in candidates.iter_mut().enumerate() {
        if dup[index] {
            continue;
        }
        let io_err = |source| BackfillReadError::Io {
            path: c.opened.path.clone(),
            source,
        };
        let file = c.opened.file.try_clone().map_err(io_err)?;
        let mut lines = file_lines(file, c.opened.compressed);
        loop {
            let line_start = lines.bytes();
            let line_no = lines.line_no() + 1;
            let bytes = match lines.next_line() {
                Ok(Some(Line::Complete(b) | Line::Unterminated(b))) => b,
                Ok(Some(Line::TooLong { .. })) => continue,
                Ok(None) | Err(_) => break,
            };
            let Ok(text) = line_text(bytes) else { continue };
            let pos = LinePos {
                file_index: index,
                line_no,
            };
            let applied = match decode_light(text) {
                Some(light) => fold.apply(pos, light.event.fold_event(), || ()),
                None => match parse_text(text) {
                    ParsedLine::Event(e) => {
                        fold.apply(pos, crate::snapshot::export_log::FoldEvent::of(&e), || ())
                    }
                    _ => continue,
                },
            };
            if matches!(applied, Applied::StartupBegan | Applied::StartupInferred(_)) {
                found = Some((index, line_start));
            }
        }
        c.opened.file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    }
    Ok(found)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileRead {
    /// To its end.
    Done,
    /// At `max_lines`.
    Stopped,
}

/// Reads one file from decompressed byte `skip`, adding to `chunk`.
fn read_file(
    c: Candidate,
    skip: u64,
    is_active: bool,
    max_lines: u64,
    chunk: &mut Chunk,
    history: &mut HistoryStart,
) -> Result<FileRead, BackfillReadError> {
    let path = c.opened.path.clone();
    let io_err = |source| BackfillReadError::Io {
        path: path.clone(),
        source,
    };
    let compressed = c.opened.compressed;
    let identity = c.opened.file.try_clone().map_err(io_err)?;
    let mut lines = file_lines(c.opened.file, compressed);
    // Skipping through the decompressor: a .gz cannot be seeked into.
    let mut skipped = 0;
    while skipped < skip {
        match lines.next_line().map_err(io_err)? {
            Some(_) => skipped = lines.bytes(),
            None => break,
        }
    }
    if skipped > skip {
        // The stored offset is not a line end of this file: it cannot be the
        // file the position was taken in. Unreachable with Tetragon's files.
        tracing::warn!(file = %path.display(), offset = skip, "backfill position is not at a line end; continuing from the next line");
    }
    let mut consumed = lines.bytes();
    let mut read_any = false;
    loop {
        if chunk.lines >= max_lines {
            finish_file(
                chunk, &path, &c.prefix, &identity, compressed, consumed, read_any,
            )
            .map_err(io_err)?;
            return Ok(FileRead::Stopped);
        }
        let line = match lines.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                // A corrupt .gz tail or an I/O error: what was read stays
                // read; the rest of this file is given up (as the snapshot
                // reader does), later files still count.
                tracing::warn!(file = %path.display(), error = %e, "backfill stopped reading this export file early");
                break;
            }
        };
        let bytes = match line {
            // The active file's last line may still be being written: left
            // for the next read.
            Line::Unterminated(_) if is_active => break,
            Line::Unterminated(b) | Line::Complete(b) => Some(b),
            Line::TooLong { .. } => None,
        };
        chunk.lines += 1;
        read_any = true;
        match bytes.map(take_line) {
            Some(Taken::Event(event, procfs_exec, time)) => {
                history.observe(procfs_exec, time);
                match event.event {
                    Some(Event::ProcessExec(_)) => chunk.execs += 1,
                    _ => chunk.exits += 1,
                }
                chunk.events.push(*event);
            }
            Some(Taken::Other) => {}
            Some(Taken::Bad) | None => chunk.skipped += 1,
        }
        consumed = lines.bytes();
    }
    finish_file(
        chunk, &path, &c.prefix, &identity, compressed, consumed, read_any,
    )
    .map_err(io_err)?;
    Ok(FileRead::Done)
}

/// Records the position at `consumed` bytes of this file, if anything of it
/// was read.
fn finish_file(
    chunk: &mut Chunk,
    path: &Path,
    open_prefix: &[u8],
    file: &File,
    compressed: bool,
    consumed: u64,
    read_any: bool,
) -> io::Result<()> {
    if !read_any {
        return Ok(());
    }
    chunk.files.push(path.to_path_buf());
    // A .gz is complete, its prefix was read whole at open; a plain file may
    // have been a line short at open, so its prefix is read again now.
    let end = usize::try_from(consumed).unwrap_or(usize::MAX);
    let prefix = if compressed {
        open_prefix[..open_prefix.len().min(end)].to_vec()
    } else {
        plain_prefix(file, consumed)?
    };
    chunk.position = Some(Position {
        prefix,
        offset: consumed,
        history: HistoryStart::default(),
    });
    Ok(())
}

enum Taken {
    /// An exec or exit, whether it is a procFS exec, and its time (ms).
    Event(Box<GetEventsResponse>, bool, Option<u64>),
    /// A valid line of another kind.
    Other,
    Bad,
}

/// Classifies a line with the light decode and decodes exec and exit lines fully.
fn take_line(bytes: &[u8]) -> Taken {
    let Ok(text) = line_text(bytes) else {
        return Taken::Bad;
    };
    if let Some(light) = decode_light(text) {
        if matches!(light.event, LightEvent::Other) {
            return Taken::Other;
        }
    }
    match parse_text(text) {
        ParsedLine::Event(event) => {
            let time = event
                .time
                .as_ref()
                .and_then(|t| u64::try_from(t.seconds).ok())
                .zip(event.time.as_ref().map(|t| t.nanos))
                .map(|(s, n)| s * 1000 + u64::try_from(n / 1_000_000).unwrap_or(0));
            let procfs = match &event.event {
                Some(Event::ProcessExec(e)) => e
                    .process
                    .as_ref()
                    .is_some_and(|p| has_flag_word(&p.flags, "procFS")),
                Some(Event::ProcessExit(_)) => false,
                _ => return Taken::Other,
            };
            Taken::Event(event, procfs, time)
        }
        _ => Taken::Bad,
    }
}
