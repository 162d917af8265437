//! `export`: learned profiles as the documented JSON, as Kubernetes policy
//! proposals, or as Tetragon `TracingPolicyNamespaced` allow-lists.
//!
//! Every renderer here is a pure function from `&[Profile]` to typed serde
//! structs (or a `serde_json::Value`); the text is produced by serde_json /
//! serde_yaml only, never by templates, so a hostile executable path is carried
//! exactly and cannot forge structure. The CLI shell is `cli::export_cmd`.
pub mod enforcement;
pub mod filter;
pub mod input;
pub mod json;
pub mod merge;
pub mod proposal;
pub mod tracing_policy;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::learner::key::HOST_KIND;
use crate::learner::profile::{Completeness, ExecutableRecord, PartialReason, Profile};
use crate::learner::state::LearnerState;

pub use enforcement::{PolicyHook, PolicyMode};

/// Prefix of every label and annotation key this tool writes.
pub const ANNOTATION_PREFIX: &str = "tetragon-learner.io/";
/// Pod label key a generated object selects its workload's pods by, unless the
/// operator names another one (`--workload-label`).
pub const DEFAULT_WORKLOAD_LABEL: &str = "tetragon-learner.io/workload";
/// `app.kubernetes.io/managed-by` value on every generated object.
pub const MANAGED_BY: &str = "tetragon-learner";
/// Longest Kubernetes object name (a DNS-1123 subdomain).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label value.
pub const MAX_LABEL_VALUE_LEN: usize = 63;
const HASH_LEN: usize = 10;

/// What goes into an allow-list, and how a tracing policy enforces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// Leave out executables only ever seen as Tetragon-flagged exec probes.
    /// Off by default: probes are part of the pod spec, and a denied liveness
    /// probe restarts the pod.
    pub exclude_exec_probes: bool,
    /// Keep executables only ever seen in `kubectl exec` sessions (outside the
    /// init tree and not a probe). Off by default: under enforcement such
    /// interactive sessions are denied.
    pub include_exec_sessions: bool,
    /// Pod label key used in generated selectors.
    pub workload_label: String,
    /// Tracing policies: Tetragon policy mode.
    pub mode: PolicyMode,
    /// Tracing policies: kprobe or BPF-LSM hook.
    pub hook: PolicyHook,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            exclude_exec_probes: false,
            include_exec_sessions: false,
            workload_label: DEFAULT_WORKLOAD_LABEL.to_string(),
            mode: PolicyMode::default(),
            hook: PolicyHook::default(),
        }
    }
}

/// What one learned executable is, for an allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecKind {
    /// Seen at least once as an ordinary process of the container.
    Ordinary,
    /// Only ever seen as a Tetragon-flagged exec probe.
    ProbeOnly,
    /// Only ever seen in `kubectl exec` sessions.
    SessionOnly,
}

impl ExecKind {
    /// The probe mark wins: before probes and sessions were told apart, every
    /// probe (Tetragon sends `in_init_tree: false` with `maybe_exec_probe:
    /// true`) was stored with both marks, and such a record is a probe.
    pub fn of(rec: &ExecutableRecord) -> Self {
        if rec.exec_probe {
            Self::ProbeOnly
        } else if rec.exec_session {
            Self::SessionOnly
        } else {
            Self::Ordinary
        }
    }
}

impl ExportOptions {
    /// Whether one learned executable belongs in an exported allow-list.
    pub fn keeps(&self, rec: &ExecutableRecord) -> bool {
        match ExecKind::of(rec) {
            ExecKind::Ordinary => true,
            ExecKind::ProbeOnly => !self.exclude_exec_probes,
            ExecKind::SessionOnly => self.include_exec_sessions,
        }
    }

    /// The exported allow-list of one profile, sorted by path (byte order).
    pub fn allowed<'a>(&self, p: &'a Profile) -> Vec<&'a str> {
        p.executables
            .values()
            .filter(|r| self.keeps(r))
            .map(|r| r.path.as_str())
            .collect()
    }
}

#[derive(Debug, Error)]
pub enum ExportError {
    #[error("the pod label key {0:?} given with --workload-label is not a valid Kubernetes label key; use e.g. `app` or `tetragon-learner.io/workload`")]
    BadLabelKey(String),
    #[error("YAML output failed: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("JSON output failed: {0}")]
    Json(#[from] serde_json::Error),
}

/// One workload of a namespace: the unit of a proposal or a tracing policy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkloadId {
    pub namespace: String,
    pub kind: String,
    pub workload: String,
}

/// A workload and its learners, one per container, sorted by container name.
#[derive(Debug, Clone)]
pub struct Workload<'a> {
    pub id: WorkloadId,
    pub profiles: Vec<&'a Profile>,
}

/// Why a profile cannot be exported as a Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Host processes (`--learn-host-processes`) belong to no namespace.
    Host,
    /// No namespace: a namespaced object cannot be placed.
    NoNamespace,
}

/// Groups profiles by (namespace, kind, workload) in a stable order. Host and
/// namespace-less profiles are returned apart: a namespaced object cannot hold
/// them.
pub fn group_by_workload(profiles: &[Profile]) -> (Vec<Workload<'_>>, Vec<(&Profile, Skip)>) {
    let mut groups: BTreeMap<WorkloadId, Vec<&Profile>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for p in profiles {
        if p.key.workload_kind == HOST_KIND {
            skipped.push((p, Skip::Host));
            continue;
        }
        if p.key.namespace.is_empty() {
            skipped.push((p, Skip::NoNamespace));
            continue;
        }
        let id = WorkloadId {
            namespace: p.key.namespace.clone(),
            kind: p.key.workload_kind.clone(),
            workload: p.key.workload.clone(),
        };
        groups.entry(id).or_default().push(p);
    }
    let workloads = groups
        .into_iter()
        .map(|(id, mut profiles)| {
            profiles.sort_by(|a, b| a.key.container.cmp(&b.key.container));
            Workload { id, profiles }
        })
        .collect();
    (workloads, skipped)
}

/// Keeps the profiles of one namespace (all when `None`).
pub fn in_namespace(profiles: Vec<Profile>, namespace: Option<&str>) -> Vec<Profile> {
    profiles
        .into_iter()
        .filter(|p| namespace.is_none_or(|ns| p.key.namespace == ns))
        .collect()
}

/// The least settled state of a workload's learners: `learning` if any is
/// learning, else `stable` if any is stable, else `locked`.
pub fn workload_state(w: &Workload<'_>) -> LearnerState {
    let states = || w.profiles.iter().map(|p| p.state);
    if states().any(|s| s == LearnerState::Learning) {
        LearnerState::Learning
    } else if states().any(|s| s == LearnerState::Stable) {
        LearnerState::Stable
    } else {
        LearnerState::Locked
    }
}

/// `partial` when any container's profile is partial.
pub fn workload_completeness(w: &Workload<'_>) -> Completeness {
    if w.profiles
        .iter()
        .any(|p| p.completeness() == Completeness::Partial)
    {
        Completeness::Partial
    } else {
        Completeness::Complete
    }
}

/// The `exec-sessions` annotation when session-only executables are left out.
pub const SESSIONS_DENIED: &str = "executables seen only in kubectl exec sessions are not in the allow-list: under enforcement, interactive sessions running them will be denied; export with --include-exec-sessions to allow them";

/// Per-container detail recorded (as JSON) in the `learners` annotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnerSummary {
    pub container: String,
    pub state: LearnerState,
    pub completeness: Completeness,
    pub partial_reasons: Vec<PartialReason>,
    /// Executables in the exported allow-list.
    pub allowed: usize,
    /// Learned executables left out (exec-probe-only / exec-session-only).
    pub excluded: usize,
    /// Executables seen while locked, never allowed.
    pub deviations: usize,
}

fn summary(p: &Profile, opts: &ExportOptions) -> LearnerSummary {
    let allowed = opts.allowed(p).len();
    LearnerSummary {
        container: p.key.container.clone(),
        state: p.state,
        completeness: p.completeness(),
        partial_reasons: p.partial_reasons.iter().copied().collect(),
        allowed,
        excluded: p.executables.len() - allowed,
        deviations: p.deviations.len(),
    }
}

fn reason_name(r: PartialReason) -> &'static str {
    match r {
        PartialReason::StartedBeforeAgent => "started-before-agent",
        PartialReason::EventsDropped => "events-dropped",
        PartialReason::TooManyExecutables => "too-many-executables",
        PartialReason::NoSnapshot => "no-snapshot",
    }
}

/// The warning for a partial profile: in the `warning` annotation and on stderr.
pub fn partial_warning(p: &Profile) -> Option<String> {
    if p.completeness() == Completeness::Complete {
        return None;
    }
    let reasons: Vec<&str> = p.partial_reasons.iter().map(|r| reason_name(*r)).collect();
    Some(format!(
        "learner {} is partial ({}): executables it ran before the agent saw it may be missing; review the allow-list before enforcing it",
        p.key,
        reasons.join(", ")
    ))
}

/// Annotations shared by proposals and tracing policies: the exact workload
/// (object names may be shortened), its state and completeness, per-container
/// detail, and a warning when any profile is partial.
pub fn annotations(
    w: &Workload<'_>,
    opts: &ExportOptions,
) -> Result<BTreeMap<String, String>, ExportError> {
    let key = |k: &str| format!("{ANNOTATION_PREFIX}{k}");
    let mut a = BTreeMap::new();
    a.insert(key("workload"), w.id.workload.clone());
    a.insert(key("workload-kind"), w.id.kind.clone());
    a.insert(key("state"), workload_state(w).as_str().to_string());
    a.insert(
        key("completeness"),
        workload_completeness(w).as_str().to_string(),
    );
    let summaries: Vec<LearnerSummary> = w.profiles.iter().map(|p| summary(p, opts)).collect();
    a.insert(key("learners"), serde_json::to_string(&summaries)?);
    let mut excluded = Vec::new();
    if opts.exclude_exec_probes {
        excluded.push("exec-probe-only");
    }
    if !opts.include_exec_sessions {
        excluded.push("exec-session-only");
        a.insert(key("exec-sessions"), SESSIONS_DENIED.to_string());
    }
    if !excluded.is_empty() {
        a.insert(key("excluded"), excluded.join(","));
    }
    let partial: Vec<String> = w
        .profiles
        .iter()
        .filter(|p| p.completeness() == Completeness::Partial)
        .map(|p| {
            let reasons: Vec<&str> = p.partial_reasons.iter().map(|r| reason_name(*r)).collect();
            format!("{} ({})", p.key.container, reasons.join(", "))
        })
        .collect();
    if !partial.is_empty() {
        a.insert(
            key("warning"),
            format!(
                "partial profile for container(s) {}: executables run before the agent saw them may be missing; review before enforcing",
                partial.join(", ")
            ),
        );
    }
    Ok(a)
}

/// The part of Kubernetes `ObjectMeta` a generated object sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// The metadata every exported object of workload `id` carries.
    pub fn for_workload(id: &WorkloadId, annotations: BTreeMap<String, String>) -> Self {
        Self {
            name: object_name(&id.kind, &id.workload),
            namespace: id.namespace.clone(),
            labels: object_labels(),
            annotations,
        }
    }
}

/// A Kubernetes label selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The selector of a workload's pods: `{<label key>: <workload label value>}`.
pub fn workload_pod_selector(
    w: &Workload<'_>,
    opts: &ExportOptions,
) -> Result<LabelSelector, ExportError> {
    if !is_label_key(&opts.workload_label) {
        return Err(ExportError::BadLabelKey(opts.workload_label.clone()));
    }
    Ok(LabelSelector {
        match_labels: BTreeMap::from([(
            opts.workload_label.clone(),
            workload_label_value(&w.id.workload),
        )]),
        match_expressions: Vec::new(),
    })
}

/// Multi-document YAML: serde_yaml's serializer writes one `---`-separated
/// document per value.
pub fn to_yaml_documents<T: Serialize>(objects: &[T]) -> Result<String, ExportError> {
    let mut buf = Vec::new();
    {
        let mut ser = serde_yaml::Serializer::new(&mut buf);
        for o in objects {
            o.serialize(&mut ser)?;
        }
    }
    // serde_yaml only ever writes UTF-8.
    String::from_utf8(buf)
        .map_err(|e| ExportError::Yaml(<serde_yaml::Error as serde::ser::Error>::custom(e)))
}

/// Labels on every generated object.
pub fn object_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        MANAGED_BY.to_string(),
    )])
}

/// FNV-1a 64: a stable hash (std's hasher may change between releases).
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn short_hash(parts: &[&str]) -> String {
    // Parts are joined with a byte no Kubernetes name holds, so ("a-b", "c")
    // and ("a", "b-c") hash apart.
    let joined = parts.join("\u{0}");
    format!("{:016x}", fnv1a(joined.as_bytes()))[..HASH_LEN].to_string()
}

/// Lowercases and maps every byte outside `[a-z0-9-.]` to `-`, collapses runs
/// of separators, trims them at both ends.
fn sanitize(s: &str, allow_dot: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        let keep =
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (allow_dot && c == '.');
        let c = if keep { c } else { '-' };
        let last_sep = out.ends_with(['-', '.']);
        if (c == '-' || c == '.') && (out.is_empty() || last_sep) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches(['-', '.']).to_string()
}

fn with_hash(base: &str, hash: &str, max: usize) -> String {
    let room = max - hash.len() - 1;
    let mut cut = base.len().min(room);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = base[..cut].trim_end_matches(['-', '.']);
    if head.is_empty() {
        hash.to_string()
    } else {
        format!("{head}-{hash}")
    }
}

/// A valid DNS-1123 subdomain name for a workload's object: `<kind>-<workload>`
/// lowercased. When that form had to be altered (characters replaced, or longer
/// than 253) a hash of the exact kind and workload is appended, so distinct
/// workloads never share a name.
pub fn object_name(kind: &str, workload: &str) -> String {
    let natural = format!("{}-{}", kind.to_lowercase(), workload);
    let clean = sanitize(&natural, true);
    if clean == natural && clean.len() <= MAX_NAME_LEN && is_dns1123_subdomain(&clean) {
        return clean;
    }
    with_hash(&clean, &short_hash(&[kind, workload]), MAX_NAME_LEN)
}

/// Kubernetes' DNS-1123 subdomain rule: at most 253 characters, dot-separated
/// labels of `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// Kubernetes' label value rule: empty, or at most 63 characters of
/// `[A-Za-z0-9-_.]` starting and ending alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    s.is_empty()
        || (b.len() <= MAX_LABEL_VALUE_LEN
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')))
}

/// Kubernetes' label key rule: optional DNS-1123 prefix and `/`, then a name of
/// at most 63 characters (same alphabet as a label value, not empty).
pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

/// The pod label value that selects a workload: the workload name when it is a
/// valid label value, else a sanitized, hash-suffixed form.
pub fn workload_label_value(workload: &str) -> String {
    if is_label_value(workload) {
        return workload.to_string();
    }
    let clean = sanitize(workload, true);
    with_hash(&clean, &short_hash(&[workload]), MAX_LABEL_VALUE_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::key::LearnerKey;
    use crate::learner::observation::{FactSource, Observation};

    fn rec(path: &str, probe: bool, session: bool) -> ExecutableRecord {
        ExecutableRecord::first(&Observation {
            path: path.into(),
            at: 1,
            source: FactSource::Event,
            exec_probe: probe,
            exec_session: session,
        })
    }

    #[test]
    fn names_are_dns1123_and_distinct() {
        assert_eq!(object_name("Deployment", "web"), "deployment-web");
        assert_eq!(object_name("StatefulSet", "db.v2"), "statefulset-db.v2");
        let odd = object_name("Pod", "Web\n{{x}}");
        assert!(is_dns1123_subdomain(&odd), "{odd}");
        assert!(odd.starts_with("pod-web-x-"), "{odd}");
        assert_ne!(odd, object_name("Pod", "Web {{x}}"));
        let long = object_name("Deployment", &"a".repeat(400));
        assert_eq!(long.len(), MAX_NAME_LEN);
        assert!(is_dns1123_subdomain(&long));
        assert_ne!(long, object_name("Deployment", &"a".repeat(401)));
        let hostile = object_name("Pod", "\u{202e}--..");
        assert!(is_dns1123_subdomain(&hostile), "{hostile}");
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(workload_label_value("web"), "web");
        for w in [
            "x".repeat(64),
            "web\n".into(),
            "-a-".into(),
            "\u{202e}".into(),
        ] {
            let v = workload_label_value(&w);
            assert!(is_label_value(&v) && !v.is_empty(), "{w:?} -> {v:?}");
        }
        assert!(is_label_key("app") && is_label_key("tetragon-learner.io/workload"));
        assert!(!is_label_key("Bad Key") && !is_label_key("x/") && !is_label_key("UP.per/x"));
    }

    #[test]
    fn probes_are_kept_and_sessions_left_out_by_default() {
        let mut p = Profile::new(LearnerKey::new("ns", "Deployment", "w", "c"), 0);
        for r in [
            rec("/bin/app", false, false),
            rec("/bin/probe", true, false),
            rec("/bin/sh", false, true),
        ] {
            p.executables.insert(r.path.clone(), r);
        }
        let mut o = ExportOptions::default();
        assert_eq!(o.allowed(&p), ["/bin/app", "/bin/probe"]);
        o.exclude_exec_probes = true;
        assert_eq!(o.allowed(&p), ["/bin/app"]);
        o.include_exec_sessions = true;
        assert_eq!(o.allowed(&p), ["/bin/app", "/bin/sh"]);
        o.exclude_exec_probes = false;
        assert_eq!(o.allowed(&p), ["/bin/app", "/bin/probe", "/bin/sh"]);
    }

    #[test]
    fn a_stored_record_marked_both_probe_and_session_is_a_probe() {
        // Written before probes and sessions were told apart.
        let old = rec("/usr/bin/pg_isready", true, true);
        assert_eq!(ExecKind::of(&old), ExecKind::ProbeOnly);
        assert!(ExportOptions::default().keeps(&old));
        let no_probes = ExportOptions {
            exclude_exec_probes: true,
            include_exec_sessions: true,
            ..ExportOptions::default()
        };
        assert!(!no_probes.keeps(&old));
    }

    #[test]
    fn grouping_puts_containers_of_a_workload_together_and_skips_host() {
        let ps = vec![
            Profile::new(LearnerKey::new("a", "Deployment", "w", "z"), 0),
            Profile::new(LearnerKey::host("node"), 0),
            Profile::new(LearnerKey::new("a", "Deployment", "w", "b"), 0),
            Profile::new(LearnerKey::new("a", "StatefulSet", "w", "b"), 0),
        ];
        let (ws, skipped) = group_by_workload(&ps);
        assert_eq!(ws.len(), 2);
        let names: Vec<&str> = ws[0]
            .profiles
            .iter()
            .map(|p| p.key.container.as_str())
            .collect();
        assert_eq!(names, ["b", "z"]);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].1, Skip::Host);
    }
}
