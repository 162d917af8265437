//! Backfill: at start, learn from the history Tetragon's JSON export log
//! still holds, so what ran (and ended) before the agent started teaches too.
//!
//! The rule: with `--export-log PATH` readable (and `--backfill on`, the
//! default), the agent reads, before it opens the event stream, every exec
//! and exit logged since Tetragon's most recent startup (rotated and `.gz`
//! siblings included, oldest first), and each teaches its learner with source
//! `backfill`. It remembers in sled how far it read (the file, known by its
//! first bytes, and the offset in it), so the next start reads only what is
//! new, and a rotation between two reads (rename, compression) loses nothing.
//! A container that started after the history began (the first live event
//! after Tetragon's `/proc` scan) was seen from its start.
//!
//! - [`position`]: the stored position and the pure rules of where to start;
//! - [`reader`]: the blocking read of one chunk of lines;
//! - [`runner`]: the async loop (read, hand over, wait until durable, save);
//! - [`messages`]: what it hands on.
pub mod messages;
pub mod position;
pub mod reader;
pub mod runner;

pub use messages::{BackfillIngested, Backfilled};
pub use position::{HistoryStart, Position};
pub use runner::{run_backfill, BackfillConfig, BackfillReport, BackfillSinks};
