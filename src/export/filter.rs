//! `--workload KIND/NAME`: export a few workloads at a time (each loaded
//! Tetragon policy costs kernel memory on every node). Pure: parse and filter.
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::learner::profile::Profile;

/// One `--workload` value. The kind matches case-insensitively (`deployment/web`
/// as kubectl takes it), the name exactly.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkloadFilter {
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{0:?} is not KIND/NAME; give e.g. `Deployment/web` or `StatefulSet/db` (see `debug list` for the learned workloads)")]
pub struct WorkloadFilterError(pub String);

impl FromStr for WorkloadFilter {
    type Err = WorkloadFilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || WorkloadFilterError(s.to_string());
        // Kubernetes kinds and object names hold no `/`; split at the first one.
        let (kind, name) = s.split_once('/').ok_or_else(bad)?;
        if kind.is_empty()
            || name.is_empty()
            || name.contains('/')
            || !kind.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(bad());
        }
        Ok(Self {
            kind: kind.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for WorkloadFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

impl WorkloadFilter {
    pub fn matches(&self, p: &Profile) -> bool {
        p.key.workload_kind.eq_ignore_ascii_case(&self.kind) && p.key.workload == self.name
    }
}

/// Keeps the profiles of the given workloads (all when `filters` is empty),
/// and returns the filters that matched nothing.
pub fn in_workloads(
    profiles: Vec<Profile>,
    filters: &[WorkloadFilter],
) -> (Vec<Profile>, Vec<&WorkloadFilter>) {
    if filters.is_empty() {
        return (profiles, Vec::new());
    }
    let unmatched = filters
        .iter()
        .filter(|f| !profiles.iter().any(|p| f.matches(p)))
        .collect();
    let kept = profiles
        .into_iter()
        .filter(|p| filters.iter().any(|f| f.matches(p)))
        .collect();
    (kept, unmatched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::key::LearnerKey;

    fn p(kind: &str, workload: &str, container: &str) -> Profile {
        Profile::new(LearnerKey::new("ns", kind, workload, container), 0)
    }

    #[test]
    fn parses_kind_slash_name() {
        let f: WorkloadFilter = "Deployment/web".parse().unwrap();
        assert_eq!((f.kind.as_str(), f.name.as_str()), ("Deployment", "web"));
        assert_eq!(f.to_string(), "Deployment/web");
        for bad in ["web", "/web", "Deployment/", "", "a/b/c", "Deploy ment/web"] {
            let err = bad.parse::<WorkloadFilter>().unwrap_err();
            assert!(err.to_string().contains("KIND/NAME"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn keeps_every_container_of_the_named_workloads() {
        let ps = vec![
            p("Deployment", "web", "nginx"),
            p("Deployment", "web", "envoy"),
            p("StatefulSet", "web", "db"),
            p("Deployment", "api", "api"),
        ];
        let filters = vec![
            "deployment/web".parse().unwrap(),
            "Job/nope".parse().unwrap(),
        ];
        let (kept, unmatched) = in_workloads(ps.clone(), &filters);
        let containers: Vec<&str> = kept.iter().map(|p| p.key.container.as_str()).collect();
        assert_eq!(containers, ["nginx", "envoy"]);
        assert_eq!(unmatched.len(), 1);
        assert_eq!(unmatched[0].to_string(), "Job/nope");
        assert_eq!(in_workloads(ps, &[]).0.len(), 4);
    }
}
