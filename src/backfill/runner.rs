//! The async shell: reads the export log in chunks off the async workers,
//! hands each chunk's events to the ingester, waits until what they taught is
//! durable, then saves the position past them. A crash anywhere in between
//! re-reads the chunk rather than skipping it: the executables it teaches are
//! sets (nothing changes), only their sighting counts may grow twice.
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;
use thiserror::Error;

use super::messages::Backfilled;
use super::position::{encode_position, Position, Start};
use super::reader::{read_chunk, BackfillReadError, Chunk};
use crate::learner::observation::FactSource;
use crate::store::checkpointer::{CheckpointError, DurableView, FlushAll, SaveBackfillPosition};
use crate::telemetry::events::{BackfillChunkRead, Emit};
use crate::telemetry::metrics::Metrics;

/// Lines per chunk: bounds the memory of one hand-over (about 2 KB per event).
pub const CHUNK_LINES: u64 = 4096;

/// How long the backfill waits for a chunk's facts to become durable before
/// it gives up (the position is then not moved: the chunk is read again at
/// the next start).
const DURABLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct BackfillConfig {
    /// The active export file (`--export-log`); rotated siblings beside it.
    pub export_log: PathBuf,
    pub chunk_lines: u64,
}

impl BackfillConfig {
    pub fn new(export_log: PathBuf) -> Self {
        Self {
            export_log,
            chunk_lines: CHUNK_LINES,
        }
    }
}

/// Where the backfill's messages go.
pub struct BackfillSinks {
    pub ingester: Recipient<Backfilled>,
    pub flush: Recipient<FlushAll>,
    pub save: Recipient<SaveBackfillPosition>,
    pub durable: DurableView,
    pub metrics: Arc<Metrics>,
}

/// What one backfill contributed (logged, and kept for status and tests).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BackfillReport {
    /// `fresh` (from Tetragon's most recent startup), `continue` (from the
    /// stored position) or `lost` (the stored position was rotated away).
    pub start: Option<&'static str>,
    pub lines: u64,
    pub execs: u64,
    pub exits: u64,
    pub skipped_lines: u64,
    /// Executables (and deviations) first learned from the backfill.
    pub new_executables: u64,
    pub chunks: u64,
    pub files: Vec<PathBuf>,
    pub duration_ms: u64,
}

#[derive(Debug, Error)]
pub enum BackfillError {
    #[error(transparent)]
    Read(#[from] BackfillReadError),
    #[error("backfill reader stopped unexpectedly: {0}")]
    Join(#[source] tokio::task::JoinError),
    #[error("the ingester stopped during the backfill: {0}")]
    Ingester(#[source] MailboxError),
    #[error("backfilled executables did not become durable within {0:?}; the position was not moved, so they are read again at the next start")]
    NotDurable(Duration),
    #[error("saving the backfill position failed: {0}; the history read since the last saved position is read again at the next start")]
    Save(#[source] CheckpointError),
}

/// Reads everything new in the export log and teaches it. Call it before the
/// stream starts (see `agent.rs` for why).
pub async fn run_backfill(
    cfg: &BackfillConfig,
    mut stored: Option<Position>,
    sinks: &BackfillSinks,
) -> Result<BackfillReport, BackfillError> {
    let started = Instant::now();
    let mut report = BackfillReport::default();
    let baseline = backfill_records(&sinks.durable);
    loop {
        let chunk = {
            let path = cfg.export_log.clone();
            let from = stored.clone();
            let max = cfg.chunk_lines.max(1);
            tokio::task::spawn_blocking(move || read_chunk(&path, from.as_ref(), max))
                .await
                .map_err(BackfillError::Join)??
        };
        if report.start.is_none() {
            report.start = chunk.start.map(Start::as_str);
            if chunk.start == Some(Start::Lost) {
                tracing::warn!(export_log = %cfg.export_log.display(),
                    "the export file the backfill stopped in was rotated away: history logged between then and the oldest file left is lost");
            }
        }
        let Chunk {
            events,
            lines,
            execs,
            exits,
            skipped,
            position,
            files,
            more,
            ..
        } = chunk;
        if lines > 0 {
            let history = position.as_ref().map(|p| p.history).unwrap_or_default();
            let ingested = sinks
                .ingester
                .send(Backfilled { events, history })
                .await
                .map_err(BackfillError::Ingester)?;
            if !wait_durable(&ingested.held, sinks).await {
                return Err(BackfillError::NotDurable(DURABLE_TIMEOUT));
            }
            if let Some(p) = &position {
                sinks
                    .save
                    .send(SaveBackfillPosition(encode_position(p)))
                    .await
                    .map_err(|e| BackfillError::Save(e.into()))?
                    .map_err(BackfillError::Save)?;
            }
            let learned = backfill_records(&sinks.durable).saturating_sub(baseline);
            BackfillChunkRead {
                lines,
                execs,
                exits,
                new_executables: learned.saturating_sub(report.new_executables),
            }
            .emit(&sinks.metrics);
            report.new_executables = learned;
            report.lines += lines;
            report.execs += execs;
            report.exits += exits;
            report.skipped_lines += skipped;
            report.chunks += 1;
            for f in files {
                if !report.files.contains(&f) {
                    report.files.push(f);
                }
            }
            stored = position;
        }
        if !more || lines == 0 {
            break;
        }
    }
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        export_log = %cfg.export_log.display(),
        start = report.start,
        lines = report.lines,
        execs = report.execs,
        exits = report.exits,
        skipped_lines = report.skipped_lines,
        new_executables = report.new_executables,
        files = report.files.len(),
        duration_ms = report.duration_ms,
        "backfill from Tetragon's export log done"
    );
    Ok(report)
}

/// Waits until every learner the chunk reached holds its paths on disk.
async fn wait_durable(
    held: &[(crate::learner::key::LearnerKey, BTreeSet<String>)],
    sinks: &BackfillSinks,
) -> bool {
    let deadline = Instant::now() + DURABLE_TIMEOUT;
    loop {
        // The learners' writes may still be on their way to the Checkpointer:
        // flushing and looking again until they landed.
        let _ = sinks.flush.send(FlushAll).await;
        let done = {
            let view = sinks.durable.read();
            held.iter().all(|(key, paths)| {
                view.get(key).is_some_and(|p| {
                    paths.iter().all(|path| {
                        p.executables.contains_key(path) || p.deviations.contains_key(path)
                    })
                })
            })
        };
        if done {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Durable executables and deviations first learned from the backfill.
fn backfill_records(durable: &DurableView) -> u64 {
    let view = durable.read();
    view.values()
        .flat_map(|p| p.executables.values().chain(p.deviations.values()))
        .filter(|r| r.source == FactSource::Backfill)
        .count() as u64
}
