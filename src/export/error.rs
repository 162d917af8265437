//! The one error type of every export renderer.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ExportError {
    #[error("the pod label key {0:?} given with --workload-label is not a valid Kubernetes label key; use e.g. `app` or `tetragon-learner.io/workload`")]
    BadLabelKey(String),
    #[error("YAML output failed: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("JSON output failed: {0}")]
    Json(#[from] serde_json::Error),
}
