//! The learner key: which profile an observed process belongs to.
//!
//! Key = (namespace, workload kind, workload, container name), so replicas of a
//! workload share one profile and container restarts keep it.
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Workload kind used for processes outside any pod (`--learn-host-processes`).
pub const HOST_KIND: &str = "Host";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LearnerKey {
    pub namespace: String,
    pub workload_kind: String,
    pub workload: String,
    pub container: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "learner key {0:?} is not NAMESPACE/KIND/WORKLOAD/CONTAINER (see `debug list` for the keys)"
)]
pub struct KeyParseError(pub String);

impl LearnerKey {
    pub fn new(namespace: &str, kind: &str, workload: &str, container: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            workload_kind: kind.to_string(),
            workload: workload.to_string(),
            container: container.to_string(),
        }
    }

    /// The one key that gathers all host processes of a node.
    pub fn host(node_name: &str) -> Self {
        Self::new("", HOST_KIND, node_name, "")
    }

    /// The key of a pod's container: workload fields when Tetragon sends them,
    /// else derived as Tetragon does (see `workload_of`).
    pub fn for_pod(
        namespace: &str,
        pod_name: &str,
        workload: &str,
        workload_kind: &str,
        labels: &BTreeMap<String, String>,
        container: &str,
    ) -> Self {
        let hash = labels.get("pod-template-hash").map(String::as_str);
        Self::for_pod_hash(
            namespace,
            pod_name,
            workload,
            workload_kind,
            hash,
            container,
        )
    }

    /// [`LearnerKey::for_pod`] given the pod's `pod-template-hash` label alone.
    pub fn for_pod_hash(
        namespace: &str,
        pod_name: &str,
        workload: &str,
        workload_kind: &str,
        pod_template_hash: Option<&str>,
        container: &str,
    ) -> Self {
        let (kind, workload) =
            workload_of_pod(pod_name, workload, workload_kind, pod_template_hash);
        Self {
            namespace: namespace.to_string(),
            workload_kind: kind,
            workload,
            container: container.to_string(),
        }
    }

    /// Parses the `Display` form. Kubernetes names cannot hold `/`, so the split is
    /// unambiguous; empty parts are allowed (the host key has empty ones).
    pub fn parse(s: &str) -> Result<Self, KeyParseError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [ns, kind, workload, container] if !kind.is_empty() && !workload.is_empty() => {
                Ok(Self::new(ns, kind, workload, container))
            }
            _ => Err(KeyParseError(s.to_string())),
        }
    }
}

impl fmt::Display for LearnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.namespace, self.workload_kind, self.workload, self.container
        )
    }
}

/// Derives (kind, workload) for a pod. Newer Tetragon sends `workload` and
/// `workload_kind`; older versions send neither, and then a Deployment's pod is
/// recognised the way Tetragon does it: a `pod-template-hash` label and a name of
/// the form `<base>-<hash>-<suffix>`. Everything else is learned as a bare Pod.
pub fn workload_of(
    pod_name: &str,
    workload: &str,
    workload_kind: &str,
    labels: &BTreeMap<String, String>,
) -> (String, String) {
    let hash = labels.get("pod-template-hash").map(String::as_str);
    workload_of_pod(pod_name, workload, workload_kind, hash)
}

/// [`workload_of`] given the pod's `pod-template-hash` label alone (the only
/// label it reads), so a caller need not build a label map.
pub fn workload_of_pod(
    pod_name: &str,
    workload: &str,
    workload_kind: &str,
    pod_template_hash: Option<&str>,
) -> (String, String) {
    if !workload.is_empty() && !workload_kind.is_empty() {
        return (workload_kind.to_string(), workload.to_string());
    }
    if let Some(hash) = pod_template_hash.filter(|h| !h.is_empty()) {
        let marker = format!("-{hash}-");
        if let Some(pos) = pod_name.rfind(&marker) {
            let base = &pod_name[..pos];
            let suffix = &pod_name[pos + marker.len()..];
            if !base.is_empty() && !suffix.is_empty() && !suffix.contains('-') {
                return ("Deployment".to_string(), base.to_string());
            }
        }
    }
    if !workload.is_empty() {
        // A workload name without a kind: keep the name, say we do not know the kind.
        return ("Pod".to_string(), workload.to_string());
    }
    ("Pod".to_string(), pod_name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn uses_workload_fields_when_present() {
        let got = workload_of("db-0", "db", "StatefulSet", &BTreeMap::new());
        assert_eq!(got, ("StatefulSet".into(), "db".into()));
    }

    #[test]
    fn derives_deployment_from_pod_template_hash() {
        let l = labels(&[("pod-template-hash", "6d4cf56db6")]);
        let got = workload_of("my-app-6d4cf56db6-rk7pq", "", "", &l);
        assert_eq!(got, ("Deployment".into(), "my-app".into()));
    }

    #[test]
    fn bare_pod_keeps_its_name() {
        assert_eq!(
            workload_of("xwing", "", "", &BTreeMap::new()),
            ("Pod".into(), "xwing".into())
        );
        // A hash label that does not match the name is not trusted.
        let l = labels(&[("pod-template-hash", "abc")]);
        assert_eq!(
            workload_of("other-xyz-1", "", "", &l),
            ("Pod".into(), "other-xyz-1".into())
        );
    }

    #[test]
    fn key_display_round_trips() {
        for key in [
            LearnerKey::new("ns", "Deployment", "web", "nginx"),
            LearnerKey::host("node-1"),
        ] {
            assert_eq!(LearnerKey::parse(&key.to_string()).unwrap(), key);
        }
        assert!(LearnerKey::parse("a/b/c").is_err());
    }
}
