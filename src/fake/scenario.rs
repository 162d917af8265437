//! Scenario files for the fake Tetragon: the node's processes, what its containers
//! run while the agent watches, and the faults to inject.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::files::{self, FileTable};
use super::policy_spec::Kernel;

/// The scenario `demo` runs when no file is given.
pub const DEMO_SCENARIO: &str = include_str!("demo-scenario.yaml");

#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("cannot read scenario file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("scenario {origin} is not valid: {source}; see the scenario format in the README")]
    Parse {
        origin: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("scenario {origin} is not valid: {reason}")]
    Invalid { origin: String, reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default = "default_node")]
    pub node_name: String,
    /// Kernel threads (`[kworker/N]`) in the process cache, as a real node has.
    #[serde(default = "default_kernel_threads")]
    pub kernel_threads: u32,
    /// Executables running on the host, outside any pod.
    #[serde(default)]
    pub host_processes: Vec<String>,
    #[serde(default)]
    pub containers: Vec<ContainerSpec>,
    #[serde(default)]
    pub activity: Activity,
    #[serde(default)]
    pub faults: Faults,
    /// Namespaces left out of the export log (not the gRPC stream), as
    /// Tetragon's `--export-deny-list '{"namespace":[..]}'`; `""` = processes
    /// without pod info (host). Empty = the Tetragon binary's default (export
    /// all); `["", "cilium", "kube-system"]` = the Helm chart's default.
    #[serde(default)]
    pub export_deny_namespaces: Vec<String>,
    /// The host's files (symlinks, scripts) for `host_processes`.
    #[serde(default)]
    pub host_files: FileTable,
    /// What the fake's kernel can load (default: everything).
    #[serde(default)]
    pub kernel: Kernel,
    /// Tetragon runs with Kubernetes (pod info, policy filters). Outside it a
    /// policy with podSelector/containerSelector is refused.
    #[serde(default = "default_true")]
    pub kubernetes: bool,
    /// Tracing policies loaded at start (domain `static`, as from
    /// `--tracing-policy-dir`): YAML objects or strings. One the kernel cannot
    /// load is listed in load_error.
    #[serde(default)]
    pub tracing_policies: Vec<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    pub namespace: String,
    pub pod: String,
    /// Left empty to imitate Tetragon versions that do not send workload fields.
    #[serde(default)]
    pub workload: String,
    #[serde(default)]
    pub workload_kind: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub container: String,
    /// The learner key an agent must file this container under, written out
    /// (`NAMESPACE/KIND/WORKLOAD/CONTAINER`): the oracle's answer, never
    /// derived by the agent's own rule. Needed only by `expected_profiles`.
    #[serde(default)]
    pub expect_key: Option<ExpectedKey>,
    #[serde(default)]
    pub image: String,
    /// Already running when the fake starts: only a snapshot can see these.
    #[serde(default)]
    pub running: Vec<ExecSpec>,
    /// Executed while the fake runs, round robin across all containers.
    #[serde(default)]
    pub execs: Vec<ExecSpec>,
    /// The container's files (symlinks, scripts); other paths are plain files.
    #[serde(default)]
    pub files: FileTable,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSpec {
    pub binary: String,
    #[serde(default)]
    pub arguments: String,
    /// Tetragon's `maybe_exec_probe` hint.
    #[serde(default)]
    pub probe: bool,
    /// Outside the container's init tree, like a `kubectl exec` session.
    #[serde(default)]
    pub session: bool,
    /// The working directory (default `/`); `binary` may be relative to it.
    #[serde(default)]
    pub cwd: Option<String>,
}

impl ExecSpec {
    pub fn cwd(&self) -> &str {
        self.cwd.as_deref().unwrap_or("/")
    }
}

/// A learner key as the scenario's author wrote it: the fake's own plain type,
/// so the oracle shares no code with the agent's key rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExpectedKey {
    pub namespace: String,
    pub workload_kind: String,
    pub workload: String,
    pub container: String,
}

impl TryFrom<String> for ExpectedKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.split('/').collect::<Vec<_>>().as_slice() {
            [ns, kind, workload, container]
                if [ns, kind, workload, container]
                    .iter()
                    .all(|p| !p.is_empty()) =>
            {
                Ok(Self {
                    namespace: ns.to_string(),
                    workload_kind: kind.to_string(),
                    workload: workload.to_string(),
                    container: container.to_string(),
                })
            }
            _ => Err(format!(
                "expect_key {s:?} is not NAMESPACE/KIND/WORKLOAD/CONTAINER"
            )),
        }
    }
}

impl From<ExpectedKey> for String {
    fn from(k: ExpectedKey) -> String {
        format!(
            "{}/{}/{}/{}",
            k.namespace, k.workload_kind, k.workload, k.container
        )
    }
}

/// When the activity starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartMode {
    /// When the first GetEvents client connects (deterministic tests and demos).
    #[default]
    OnFirstClient,
    /// At once, whether or not anybody listens (a live node).
    Immediately,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activity {
    /// Exec events per second (0 = as fast as possible).
    #[serde(default = "default_rate")]
    pub rate_per_sec: u32,
    /// How many execs to perform in all; 0 = forever.
    #[serde(default)]
    pub total_execs: u64,
    /// Each exec'd process exits right after it started (an exit event follows).
    #[serde(default = "default_true")]
    pub exit_after_exec: bool,
    #[serde(default)]
    pub start: StartMode,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            rate_per_sec: default_rate(),
            total_execs: 0,
            exit_after_exec: true,
            start: StartMode::default(),
        }
    }
}

/// What GetDebug does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DebugFault {
    #[default]
    Ok,
    /// Like Tetragon older than v1.3, which has no process-cache dump.
    Unimplemented,
    /// An internal error.
    Error,
    /// An empty cache, like Tetragon run with `--disable-process-cache`.
    Empty,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// End each GetEvents stream normally after this many events.
    #[serde(default)]
    pub end_stream_after: Option<u64>,
    /// Abort each GetEvents stream with UNAVAILABLE after this many events.
    #[serde(default)]
    pub abort_stream_after: Option<u64>,
    #[serde(default)]
    pub getdebug: DebugFault,
    /// Delay every GetDebug answer by this many milliseconds.
    #[serde(default)]
    pub getdebug_delay_ms: u64,
    /// Extra host processes in the cache (`/usr/bin/sleep`), to make huge dumps.
    #[serde(default)]
    pub extra_host_processes: u32,
    /// `unimplemented`: Add/Delete/ListTracingPolicies answer Unimplemented,
    /// as an old Tetragon.
    #[serde(default)]
    pub tracing_policies: PolicyFault,
}

/// What the tracing-policy RPCs do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyFault {
    #[default]
    Ok,
    Unimplemented,
}

impl Default for Scenario {
    /// As an empty scenario file: the serde defaults.
    fn default() -> Self {
        Self {
            node_name: default_node(),
            kernel_threads: default_kernel_threads(),
            host_processes: Vec::new(),
            containers: Vec::new(),
            activity: Activity::default(),
            faults: Faults::default(),
            export_deny_namespaces: Vec::new(),
            host_files: FileTable::new(),
            kernel: Kernel::default(),
            kubernetes: true,
            tracing_policies: Vec::new(),
        }
    }
}

fn default_node() -> String {
    "fake-node".to_string()
}
fn default_kernel_threads() -> u32 {
    4
}
fn default_rate() -> u32 {
    100
}
fn default_true() -> bool {
    true
}

impl Scenario {
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = serde_yaml::from_str(text).map_err(|source| ScenarioError::Parse {
            origin: origin.to_string(),
            source,
        })?;
        s.validate(origin)?;
        Ok(s)
    }

    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    pub fn demo() -> Self {
        // The embedded scenario is tested; a failure here is a build defect.
        Self::from_yaml(DEMO_SCENARIO, "built-in demo").expect("built-in demo scenario is valid")
    }

    fn validate(&self, origin: &str) -> Result<(), ScenarioError> {
        let invalid = |reason: String| ScenarioError::Invalid {
            origin: origin.to_string(),
            reason,
        };
        for c in &self.containers {
            if c.namespace.is_empty() || c.pod.is_empty() || c.container.is_empty() {
                return Err(invalid(format!(
                    "container {:?} of pod {:?} needs namespace, pod and container",
                    c.container, c.pod
                )));
            }
        }
        let host =
            files::normalized(&self.host_files).map_err(|e| invalid(format!("host_files: {e}")))?;
        for p in &self.host_processes {
            files::exec_files(&host, "/", p).map_err(|e| invalid(format!("host process: {e}")))?;
        }
        for c in &self.containers {
            let table = files::normalized(&c.files)
                .map_err(|e| invalid(format!("files of pod {:?}: {e}", c.pod)))?;
            for e in c.running.iter().chain(&c.execs) {
                files::exec_files(&table, e.cwd(), &e.binary)
                    .map_err(|err| invalid(format!("exec in pod {:?}: {err}", c.pod)))?;
            }
        }
        for p in &self.tracing_policies {
            if !(p.is_mapping() || p.is_string()) {
                return Err(invalid(
                    "tracing_policies holds YAML objects or strings".into(),
                ));
            }
        }
        if self.activity.total_execs > 0 && self.exec_plan_len() == 0 {
            return Err(invalid(
                "activity.total_execs > 0 but no container has execs".into(),
            ));
        }
        Ok(())
    }

    /// The round-robin order of execs: (container index, exec index).
    pub fn exec_plan(&self) -> Vec<(usize, usize)> {
        let longest = self
            .containers
            .iter()
            .map(|c| c.execs.len())
            .max()
            .unwrap_or(0);
        let mut plan = Vec::new();
        for round in 0..longest {
            for (ci, c) in self.containers.iter().enumerate() {
                if round < c.execs.len() {
                    plan.push((ci, round));
                }
            }
        }
        plan
    }

    fn exec_plan_len(&self) -> usize {
        self.containers.iter().map(|c| c.execs.len()).sum()
    }

    /// The oracle: what an agent that saw the snapshot and every event must have
    /// learned per key, once `execs_done` execs happened (pod processes only).
    /// Every container needs its `expect_key`.
    pub fn expected_profiles(
        &self,
        execs_done: u64,
    ) -> Result<BTreeMap<ExpectedKey, BTreeSet<String>>, ScenarioError> {
        let keys = self
            .containers
            .iter()
            .map(|c| {
                c.expect_key.clone().ok_or_else(|| ScenarioError::Invalid {
                    origin: "scenario".into(),
                    reason: format!(
                        "container {:?} of pod {:?} has no expect_key: the oracle needs the learner key written out (NAMESPACE/KIND/WORKLOAD/CONTAINER)",
                        c.container, c.pod
                    ),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut out: BTreeMap<ExpectedKey, BTreeSet<String>> = BTreeMap::new();
        // As Tetragon names them: a running process by `/proc/PID/exe` (the
        // loaded file), an exec by its path made absolute.
        let tables: Vec<FileTable> = self
            .containers
            .iter()
            .map(|c| files::normalized(&c.files).unwrap_or_else(|_| c.files.clone()))
            .collect();
        for ((c, key), table) in self.containers.iter().zip(&keys).zip(&tables) {
            out.entry(key.clone()).or_default().extend(
                c.running
                    .iter()
                    .filter(|e| !e.binary.is_empty())
                    .map(|e| files::exec_files_or_plain(table, e.cwd(), &e.binary).loaded),
            );
        }
        let plan = self.exec_plan();
        if !plan.is_empty() {
            for step in 0..execs_done {
                let (ci, ei) = plan[(step % plan.len() as u64) as usize];
                let e = &self.containers[ci].execs[ei];
                out.entry(keys[ci].clone())
                    .or_default()
                    .insert(files::exec_binary(e.cwd(), &e.binary));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_scenario_parses_and_has_an_oracle() {
        let s = Scenario::demo();
        assert!(!s.containers.is_empty());
        let expected = s.expected_profiles(s.activity.total_execs).unwrap();
        assert!(expected.values().all(|set| !set.is_empty()));
        let billing = "billing/Deployment/invoicer/app".to_string();
        assert!(expected.contains_key(&ExpectedKey::try_from(billing).unwrap()));
    }

    #[test]
    fn an_oracle_needs_every_key_written_out() {
        let s = Scenario::from_yaml(
            "containers:\n- {namespace: a, pod: p, container: c, running: [{binary: /x}]}\n",
            "t",
        )
        .unwrap();
        let err = s.expected_profiles(0).unwrap_err();
        assert!(err.to_string().contains("expect_key"), "{err}");
    }

    #[test]
    fn a_malformed_expected_key_is_refused() {
        let err = Scenario::from_yaml(
            "containers:\n- {namespace: a, pod: p, container: c, expect_key: a/Pod/p}\n",
            "t",
        )
        .unwrap_err();
        assert!(err.to_string().contains("NAMESPACE/KIND"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = Scenario::from_yaml("node_name: x\nbogus: 1\n", "test").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn the_oracle_names_processes_as_tetragon_does() {
        let s = Scenario::from_yaml(
            "containers:\n- namespace: a\n  pod: p\n  container: c\n  expect_key: a/Pod/p/c\n  files: {/bin/sh: {link: busybox}, /x.sh: {script: /bin/sh}}\n  running: [{binary: /x.sh}]\n  execs: [{binary: ./run, cwd: /app}, {binary: /bin/sh}]\n",
            "t",
        )
        .unwrap();
        let all: Vec<String> = s
            .expected_profiles(2)
            .unwrap()
            .into_values()
            .flatten()
            .collect();
        assert_eq!(all, vec!["/app/run", "/bin/busybox", "/bin/sh"]);
    }

    #[test]
    fn a_symlink_loop_or_relative_file_key_is_refused() {
        let looped = "containers:\n- {namespace: a, pod: p, container: c, files: {/a: {link: /b}, /b: {link: /a}}, execs: [{binary: /a}]}\n";
        assert!(Scenario::from_yaml(looped, "t").is_err());
        let rel = "host_files: {bin/x: binary}\n";
        assert!(Scenario::from_yaml(rel, "t").is_err());
    }

    #[test]
    fn exec_plan_is_round_robin() {
        let s = Scenario::from_yaml(
            "containers:\n- {namespace: a, pod: p, container: c, execs: [{binary: /x}, {binary: /y}]}\n- {namespace: a, pod: q, container: c, execs: [{binary: /z}]}\n",
            "t",
        )
        .unwrap();
        assert_eq!(s.exec_plan(), vec![(0, 0), (1, 0), (0, 1)]);
    }
}
