//! Where the backfill stopped, and the pure rules that decide where the next
//! read starts (no I/O: the reader hands in what the files look like).
//!
//! A file is identified by its first bytes ([`PREFIX_BYTES`], decompressed),
//! not by its name or inode: lumberjack renames `tetragon.log` to
//! `tetragon-<time>.log` (same inode), then compresses it into a new
//! `….log.gz` (new inode, same content), so only the content follows a file
//! through a rotation. Tetragon's lines start with an exec_id and carry a
//! nanosecond time, so one whole line already tells files apart; a position is
//! only ever recorded after at least one whole line of its file was read.
use serde::{Deserialize, Serialize};

use crate::time::UnixMillis;

/// How many leading bytes identify a file.
pub const PREFIX_BYTES: usize = 1024;

/// The version byte of the stored position.
pub const POSITION_V1: u8 = 1;

/// How far the backfill read, and since when its history is continuous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The first bytes (at most [`PREFIX_BYTES`]) of the file read last.
    pub prefix: Vec<u8>,
    /// Decompressed bytes of that file consumed, always at a line end.
    pub offset: u64,
    pub history: HistoryStart,
}

/// Since when the history read is known to be complete: every exec from then
/// on is in it. Tetragon scans `/proc` at startup (procFS lines) with its
/// sensors already loaded, so the first live event after a scan's last procFS
/// line is a safe start; a restart (new procFS lines) or a gap in what was read
/// moves it later. Conservative by design: a container that started a moment
/// before it is judged as started before the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryStart {
    pub since: Option<UnixMillis>,
    /// A startup scan (or a gap) was seen: the next live event sets `since`.
    pub awaiting_live: bool,
}

impl HistoryStart {
    /// Reading starts at a startup, at a gap, or with nothing known.
    pub fn unknown() -> Self {
        Self {
            since: None,
            awaiting_live: true,
        }
    }

    /// One exec or exit line: `procfs` for a procFS-flagged exec (a scan),
    /// `time` its top-level time.
    pub fn observe(&mut self, procfs_exec: bool, time: Option<UnixMillis>) {
        if procfs_exec {
            self.awaiting_live = true;
            return;
        }
        if self.awaiting_live {
            if let Some(t) = time {
                self.since = Some(t);
                self.awaiting_live = false;
            }
        }
    }

    /// Whether something that started at `start` was seen from its start.
    pub fn covers(&self, start: UnixMillis) -> bool {
        !self.awaiting_live && self.since.is_some_and(|s| start >= s)
    }
}

/// Where a read starts, decided from the stored position and the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// In the file holding the stored position, at its offset.
    Continue { file: usize, offset: u64 },
    /// No stored position: at Tetragon's most recent startup (found by the
    /// reader), or at the oldest file when no startup is in the files.
    Fresh,
    /// A position is stored but no file holds it: it was rotated away
    /// (`--export-file-max-backups`) and what came between is lost. Every file
    /// left is newer: read them all.
    Lost,
}

impl Start {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Continue { .. } => "continue",
            Self::Fresh => "fresh",
            Self::Lost => "lost",
        }
    }
}

/// Where to start, given each file's first bytes (oldest first) and the
/// stored position (pure).
pub fn plan_start(prefixes: &[Vec<u8>], stored: Option<&Position>) -> Start {
    let Some(stored) = stored else {
        return Start::Fresh;
    };
    match prefixes
        .iter()
        .position(|p| !stored.prefix.is_empty() && p.starts_with(&stored.prefix))
    {
        Some(file) => Start::Continue {
            file,
            offset: stored.offset,
        },
        None => Start::Lost,
    }
}

/// Files whose first bytes repeat an earlier file's are the same data seen
/// twice (a rotated file and its compressed copy, caught mid-compression):
/// only the first is read (pure). Empty files are kept (they hold nothing).
pub fn duplicates(prefixes: &[Vec<u8>]) -> Vec<bool> {
    prefixes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            !p.is_empty()
                && prefixes[..i]
                    .iter()
                    .any(|q| !q.is_empty() && (q.starts_with(p) || p.starts_with(q)))
        })
        .collect()
}

/// The stored form: only primitive fields, its serde shape is the format.
#[derive(Serialize, Deserialize)]
struct StoredPositionV1 {
    prefix: Vec<u8>,
    offset: u64,
    since: Option<u64>,
    awaiting_live: bool,
}

/// Version byte, then postcard.
pub fn encode_position(p: &Position) -> Vec<u8> {
    let stored = StoredPositionV1 {
        prefix: p.prefix.clone(),
        offset: p.offset,
        since: p.history.since,
        awaiting_live: p.history.awaiting_live,
    };
    postcard::to_extend(&stored, vec![POSITION_V1]).expect("encoding into a Vec cannot fail")
}

/// Refuses versions it does not know (a newer agent's record) and trailing bytes.
pub fn decode_position(bytes: &[u8]) -> Result<Position, String> {
    match bytes.split_first() {
        Some((&POSITION_V1, body)) => {
            let (s, rest): (StoredPositionV1, _) =
                postcard::take_from_bytes(body).map_err(|e| e.to_string())?;
            if !rest.is_empty() {
                return Err(format!("{} trailing bytes", rest.len()));
            }
            Ok(Position {
                prefix: s.prefix,
                offset: s.offset,
                history: HistoryStart {
                    since: s.since,
                    awaiting_live: s.awaiting_live,
                },
            })
        }
        Some((v, _)) => Err(format!(
            "unknown backfill position version {v} (this agent reads {POSITION_V1}): written by a newer agent"
        )),
        None => Err("empty backfill position record".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos(prefix: &[u8], offset: u64) -> Position {
        Position {
            prefix: prefix.to_vec(),
            offset,
            history: HistoryStart::unknown(),
        }
    }

    #[test]
    fn a_file_is_found_by_its_first_bytes_after_any_rename() {
        let files = vec![b"{\"a\":1}\n{\"b\"".to_vec(), b"{\"c\":3}\n".to_vec()];
        assert_eq!(plan_start(&files, None), Start::Fresh);
        assert_eq!(
            plan_start(&files, Some(&pos(b"{\"c\":3}\n", 8))),
            Start::Continue { file: 1, offset: 8 }
        );
        // Recorded while the file was shorter: still its start.
        assert_eq!(
            plan_start(&files, Some(&pos(b"{\"a\":1}\n", 8))),
            Start::Continue { file: 0, offset: 8 }
        );
        assert_eq!(
            plan_start(&files, Some(&pos(b"{\"z\":0}\n", 8))),
            Start::Lost
        );
        // A file shorter than the recorded prefix cannot be it.
        assert_eq!(
            plan_start(&[b"{\"c\"".to_vec()], Some(&pos(b"{\"c\":3}\n", 8))),
            Start::Lost
        );
        assert_eq!(plan_start(&files, Some(&pos(b"", 0))), Start::Lost);
    }

    #[test]
    fn the_same_data_twice_is_read_once() {
        let files = vec![
            b"one\n".to_vec(),
            b"one\ntwo".to_vec(),
            Vec::new(),
            b"three\n".to_vec(),
            Vec::new(),
        ];
        assert_eq!(duplicates(&files), [false, true, false, false, false]);
    }

    #[test]
    fn history_starts_at_the_first_live_event_after_a_scan() {
        let mut h = HistoryStart::unknown();
        assert!(!h.covers(10));
        h.observe(true, Some(1)); // procFS: a process's start time, not a clock
        h.observe(false, Some(100));
        h.observe(true, Some(2)); // the scan goes on, interleaved
        h.observe(false, Some(105));
        h.observe(false, Some(200));
        assert_eq!(h.since, Some(105));
        assert!(h.covers(105) && !h.covers(104));
        // A restart: a new scan.
        h.observe(true, Some(3));
        assert!(!h.covers(1_000));
        h.observe(false, None);
        h.observe(false, Some(300));
        assert!(h.covers(300) && !h.covers(299));
    }

    #[test]
    fn the_record_round_trips_and_refuses_newer_versions() {
        let p = Position {
            prefix: b"{\"process_exec\":{}}\n".to_vec(),
            offset: 1 << 40,
            history: HistoryStart {
                since: Some(1_764_430_000_000),
                awaiting_live: false,
            },
        };
        let bytes = encode_position(&p);
        assert_eq!(bytes[0], POSITION_V1);
        assert_eq!(decode_position(&bytes), Ok(p));
        let mut newer = bytes.clone();
        newer[0] = 2;
        assert!(decode_position(&newer)
            .unwrap_err()
            .contains("written by a newer agent"));
        let mut trailing = bytes;
        trailing.push(0);
        assert!(decode_position(&trailing).is_err());
        assert!(decode_position(&[]).is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode_position(&bytes);
        }
    }
}
