//! The process snapshot: plain data describing the processes Tetragon knows to be
//! alive, with their container and pod metadata. Serialized as the documented
//! `snapshot --format json` contract.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which source produced a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotSource {
    DebugApi,
    ExportLog,
    None,
}

impl SnapshotSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DebugApi => "debug-api",
            Self::ExportLog => "export-log",
            Self::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    /// Tetragon's hint that this exec may come from a liveness/readiness exec probe.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub maybe_exec_probe: bool,
    /// When this container instance started (RFC 3339, Tetragon's
    /// `pod.container.start_time`); `None` when Tetragon gave none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    pub workload: String,
    pub workload_kind: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// One live process. `container`/`pod` are `None` for host processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotProcess {
    pub pid: u32,
    pub exec_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent_exec_id: String,
    pub binary: String,
    pub arguments: String,
    /// Tetragon's space-separated flag words, e.g. `procFS` or `execve clone`.
    pub flags: String,
    /// RFC 3339, as Tetragon reports it; `None` when Tetragon gave none.
    pub start_time: Option<String>,
    /// `false` typically means a `kubectl exec` session rather than the entrypoint's tree.
    #[serde(default = "default_true", skip_serializing_if = "Clone::clone")]
    pub in_init_tree: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    pub container: Option<ContainerInfo>,
    pub pod: Option<PodInfo>,
}

fn default_true() -> bool {
    true
}

impl SnapshotProcess {
    pub fn has_flag(&self, word: &str) -> bool {
        has_flag_word(&self.flags, word)
    }
}

/// Tetragon's `flags` is a list of words separated by spaces.
pub fn has_flag_word(flags: &str, word: &str) -> bool {
    flags.split_whitespace().any(|w| w == word)
}

/// A complete snapshot plus how it was obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessSnapshot {
    pub source: SnapshotSource,
    /// RFC 3339 time at which the snapshot was taken.
    pub taken_at: String,
    pub processes: Vec<SnapshotProcess>,
}
