//! What a learner is told: one executable seen running in its container.
use serde::{Deserialize, Serialize};

use crate::time::UnixMillis;

/// Where an observation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FactSource {
    /// Tetragon's process cache via GetDebug.
    Snapshot,
    /// A live `process_exec` event.
    Event,
    /// A procFS line of Tetragon's JSON export log.
    ExportLog,
    /// A `process_exit` whose binary the profile did not hold: its exec was
    /// missed (dropped, or before the agent).
    Exit,
    /// An exec or exit of Tetragon's export log, read at start (backfill).
    Backfill,
    /// Allowed by the operator (`admin allow`), not seen running.
    Operator,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The executable path exactly as Tetragon reported it (may hold any bytes a
    /// container chose for a file name).
    pub path: String,
    pub at: UnixMillis,
    pub source: FactSource,
    /// Tetragon flagged the exec as a possible liveness/readiness exec probe.
    pub exec_probe: bool,
    /// The process is outside the container's init tree (e.g. `kubectl exec`).
    pub exec_session: bool,
}
