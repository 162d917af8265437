//! The fake's loaded tracing policies, as Tetragon's sensor manager keeps them:
//! keyed by (name, namespace, domain), ids from 2 (1 is Tetragon's "all pods"
//! filter id; the real lists start at 2), a refused policy listed in
//! `TP_STATE_LOAD_ERROR` until deleted or re-added, modes, action counters.
use thiserror::Error;

use crate::tetragon::proto::{
    TracingPolicyActionCounters, TracingPolicyMode, TracingPolicyState, TracingPolicyStats,
    TracingPolicyStatus,
};

use super::policy_spec::{Kernel, Mode, PolicyObject, PolicyParseError};

/// The domain of policies added over gRPC without one.
pub const GRPC_DOMAIN: &str = "grpc";
/// The domain of policies loaded at start (Tetragon's `--tracing-policy-dir`).
pub const STATIC_DOMAIN: &str = "static";
const FIRST_ID: u64 = 2;

/// Errors in Tetragon's words (the key prints as Go prints the struct).
#[derive(Debug, Error)]
pub enum PolicyError {
    #[error(transparent)]
    Parse(#[from] PolicyParseError),
    #[error("failed to add tracing policy {{{name} {namespace} {domain}}}, a sensor collection with the key already exists")]
    Exists {
        name: String,
        namespace: String,
        domain: String,
    },
    /// The policy is listed in `TP_STATE_LOAD_ERROR` with this text.
    #[error("{0}")]
    Load(String),
    #[error("tracing policy {{{name} {namespace} {domain}}} does not exist")]
    NotFound {
        name: String,
        namespace: String,
        domain: String,
    },
    #[error("cannot set policy mode on a policy that is monitor only")]
    MonitorOnly,
}

#[derive(Debug, Clone)]
pub enum PolicyState {
    Enabled,
    LoadError(String),
}

#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    pub id: u64,
    pub domain: String,
    pub object: PolicyObject,
    pub state: PolicyState,
    pub mode: Mode,
    pub filter_id: u64,
    pub counters: TracingPolicyActionCounters,
}

impl LoadedPolicy {
    pub fn name(&self) -> &str {
        &self.object.metadata.name
    }

    pub fn enabled(&self) -> bool {
        matches!(self.state, PolicyState::Enabled)
    }

    fn status(&self) -> TracingPolicyStatus {
        let mut st = TracingPolicyStatus {
            id: self.id,
            name: self.name().to_string(),
            namespace: self.object.namespace().to_string(),
            domain: self.domain.clone(),
            ..TracingPolicyStatus::default()
        };
        match &self.state {
            PolicyState::LoadError(e) => {
                st.error = e.clone();
                st.state = TracingPolicyState::TpStateLoadError as i32;
                st.mode = TracingPolicyMode::TpModeUnknown as i32;
            }
            PolicyState::Enabled => {
                let sensors = self.object.sensors();
                st.sensors = sensors.iter().map(|(n, _)| n.to_string()).collect();
                st.kernel_memory_bytes = sensors.iter().map(|(_, b)| b).sum();
                st.enabled = true;
                st.filter_id = self.filter_id;
                st.state = TracingPolicyState::TpStateEnabled as i32;
                st.mode = match self.mode {
                    Mode::Enforce => TracingPolicyMode::TpModeEnforce,
                    Mode::Monitor => TracingPolicyMode::TpModeMonitor,
                    Mode::MonitorOnly => TracingPolicyMode::TpModeMonitorOnly,
                } as i32;
                st.stats = Some(TracingPolicyStats {
                    action_counters: Some(self.counters),
                });
            }
        }
        st
    }
}

#[derive(Debug)]
pub struct PolicyTable {
    pub kernel: Kernel,
    pub in_kubernetes: bool,
    next_id: u64,
    /// In id order.
    policies: Vec<LoadedPolicy>,
}

impl PolicyTable {
    pub fn new(kernel: Kernel, in_kubernetes: bool) -> Self {
        Self {
            kernel,
            in_kubernetes,
            next_id: FIRST_ID,
            policies: Vec::new(),
        }
    }

    fn position(&self, name: &str, namespace: &str, domain: &str) -> Option<usize> {
        self.policies.iter().position(|p| {
            p.name() == name && p.object.namespace() == namespace && p.domain == domain
        })
    }

    /// `AddTracingPolicy`: a name already loaded is refused; one in load
    /// error is replaced; a policy the kernel cannot load stays listed in
    /// load error and the call fails with its error.
    pub fn add(&mut self, yaml: &str, domain: &str) -> Result<u64, PolicyError> {
        let object = PolicyObject::from_yaml(yaml)?;
        let domain = if domain.is_empty() {
            GRPC_DOMAIN
        } else {
            domain
        };
        let (name, namespace) = (object.metadata.name.clone(), object.namespace().to_string());
        if let Some(i) = self.position(&name, &namespace, domain) {
            if self.policies[i].enabled() {
                return Err(PolicyError::Exists {
                    name,
                    namespace,
                    domain: domain.to_string(),
                });
            }
            self.policies.remove(i);
        }
        let id = self.next_id;
        self.next_id += 1;
        let error = object.load_error(&self.kernel, self.in_kubernetes);
        let filtered = self.in_kubernetes
            && (!namespace.is_empty()
                || object.spec.pod_selector.is_some()
                || object.spec.container_selector.is_some());
        self.policies.push(LoadedPolicy {
            id,
            domain: domain.to_string(),
            mode: object.initial_mode().unwrap_or(Mode::MonitorOnly),
            state: error
                .clone()
                .map_or(PolicyState::Enabled, PolicyState::LoadError),
            filter_id: if filtered { id } else { 0 },
            object,
            counters: TracingPolicyActionCounters::default(),
        });
        match error {
            Some(e) => Err(PolicyError::Load(e)),
            None => Ok(id),
        }
    }

    /// `DeleteTracingPolicy` (domain "" = grpc).
    pub fn delete(&mut self, name: &str, namespace: &str, domain: &str) -> Result<(), PolicyError> {
        let domain = if domain.is_empty() {
            GRPC_DOMAIN
        } else {
            domain
        };
        let i = self
            .position(name, namespace, domain)
            .ok_or_else(|| PolicyError::NotFound {
                name: name.to_string(),
                namespace: namespace.to_string(),
                domain: domain.to_string(),
            })?;
        self.policies.remove(i);
        Ok(())
    }

    /// `ListTracingPolicies` (domain "" = every domain), in id order.
    pub fn list(&self, domain: &str) -> Vec<TracingPolicyStatus> {
        self.policies
            .iter()
            .filter(|p| domain.is_empty() || p.domain == domain)
            .map(LoadedPolicy::status)
            .collect()
    }

    /// `tetra tp set-mode`: takes effect for the next hook call. A policy in
    /// monitor_only mode refuses, as Tetragon does.
    pub fn set_mode(
        &mut self,
        name: &str,
        namespace: &str,
        enforce: bool,
    ) -> Result<(), PolicyError> {
        let p = self
            .policies
            .iter_mut()
            .find(|p| p.name() == name && p.object.namespace() == namespace && p.enabled())
            .ok_or_else(|| PolicyError::NotFound {
                name: name.to_string(),
                namespace: namespace.to_string(),
                domain: GRPC_DOMAIN.to_string(),
            })?;
        if p.mode == Mode::MonitorOnly {
            return Err(PolicyError::MonitorOnly);
        }
        p.mode = if enforce {
            Mode::Enforce
        } else {
            Mode::Monitor
        };
        Ok(())
    }

    /// Loaded policies, in id order.
    pub fn enabled(&self) -> impl Iterator<Item = &LoadedPolicy> {
        self.policies.iter().filter(|p| p.enabled())
    }

    pub fn counters_mut(&mut self, id: u64) -> Option<&mut TracingPolicyActionCounters> {
        self.policies
            .iter_mut()
            .find(|p| p.id == id)
            .map(|p| &mut p.counters)
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBSERVE: &str = "kind: TracingPolicy\nmetadata: {name: obs}\nspec:\n  kprobes:\n  - {call: security_bprm_creds_for_exec, args: [{index: 0, type: linux_binprm}]}\n";
    const OVERRIDE_SYSCALL: &str = "kind: TracingPolicy\nmetadata: {name: bad}\nspec:\n  kprobes:\n  - call: sys_execve\n    syscall: true\n    selectors:\n    - matchActions: [{action: Override, argError: -1}]\n";

    #[test]
    fn add_list_delete_round_trip() {
        let mut t = PolicyTable::new(Kernel::default(), true);
        assert_eq!(t.add(OBSERVE, "").unwrap(), 2);
        let err = t.add(OBSERVE, "").unwrap_err();
        assert_eq!(err.to_string(), "failed to add tracing policy {obs  grpc}, a sensor collection with the key already exists");
        let list = t.list("");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].mode, TracingPolicyMode::TpModeMonitorOnly as i32);
        assert_eq!(list[0].kernel_memory_bytes, 393_216);
        assert_eq!(list[0].sensors, vec!["generic_kprobe"]);
        assert!(t.list("k8s").is_empty());
        t.delete("obs", "", "").unwrap();
        assert_eq!(
            t.delete("obs", "", "").unwrap_err().to_string(),
            "tracing policy {obs  grpc} does not exist"
        );
        assert!(t.list("").is_empty());
    }

    #[test]
    fn a_refused_policy_stays_listed_and_can_be_re_added() {
        let vm = Kernel {
            override_return: false,
            ..Kernel::default()
        };
        let mut t = PolicyTable::new(vm, true);
        let err = t.add(OVERRIDE_SYSCALL, "").unwrap_err();
        assert!(matches!(err, PolicyError::Load(_)));
        let list = t.list("");
        assert_eq!(list[0].state, TracingPolicyState::TpStateLoadError as i32);
        assert_eq!(list[0].error, err.to_string());
        assert!(list[0].stats.is_none() && !list[0].enabled);
        assert_eq!(t.enabled().count(), 0);
        // Tetragon lets a load_error entry be overridden (a new id).
        assert!(t.add(OVERRIDE_SYSCALL, "").is_err());
        assert_eq!(t.list("")[0].id, 3);
    }

    #[test]
    fn set_mode_refuses_monitor_only_and_unknown() {
        let mut t = PolicyTable::new(Kernel::default(), true);
        t.add(OBSERVE, "").unwrap();
        assert!(matches!(
            t.set_mode("obs", "", true),
            Err(PolicyError::MonitorOnly)
        ));
        assert!(matches!(
            t.set_mode("nope", "", true),
            Err(PolicyError::NotFound { .. })
        ));
    }
}
