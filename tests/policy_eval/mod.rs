//! A test oracle: what Tetragon would do with exported tracing policies, by
//! its documented selector semantics, read back from the YAML text (never
//! from the exporter's structs, and calling none of its code).
//!
//! - A `TracingPolicyNamespaced` applies only to pods of its namespace; a
//!   cluster-scoped `TracingPolicy` to every process (pods or not) unless its
//!   selectors narrow it.
//! - `podSelector`: `matchLabels` AND every `matchExpressions` requirement
//!   (`In`, `NotIn`, `Exists`, `DoesNotExist`); absent or empty matches all.
//! - `containerSelector`: the same, over the label set `{name: <container>}`.
//! - Each hook's selectors: a selector fires when all its `matchArgs` hold
//!   (`Equal`, `NotEqual`, `Prefix`, `Postfix` on the compared path); a fired
//!   `Override` or `Sigkill` denies the exec, unless the policy's
//!   `policy-mode` option is `monitor`, where it is only reported.
#![allow(dead_code)]
use std::collections::BTreeMap;

use serde_json::Value;

/// A process: the pod it runs in (None for a host process) and its container.
#[derive(Debug, Clone)]
pub struct Process<'a> {
    pub pod: Option<Pod<'a>>,
}

#[derive(Debug, Clone)]
pub struct Pod<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub container: &'a str,
}

/// One policy, as read from the YAML.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub pod_selector: Option<Value>,
    pub container_selector: Option<Value>,
    pub monitor: bool,
    /// Every selector of every hook.
    pub selectors: Vec<Selector>,
    pub doc: Value,
}

/// One hook selector: its `matchArgs` as (operator, values), its actions.
#[derive(Debug, Clone)]
pub struct Selector {
    pub args: Vec<(String, Vec<String>)>,
    pub actions: Vec<String>,
}

/// What the policies do to one exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Denied by these enforcing policies.
    Denied(Vec<String>),
    /// Only monitor-mode policies would deny it.
    WouldDeny(Vec<String>),
}

/// Every document of a multi-document YAML stream, as JSON values.
pub fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| {
            let v: serde_yaml::Value =
                serde::Deserialize::deserialize(doc).expect("YAML document parses");
            serde_json::to_value(v).expect("YAML maps to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The tracing policies of a YAML stream.
pub fn parse(yaml: &str) -> Vec<Policy> {
    documents(yaml)
        .into_iter()
        .map(|doc| {
            let kind = doc["kind"].as_str().expect("kind").to_string();
            assert!(
                kind == "TracingPolicy" || kind == "TracingPolicyNamespaced",
                "{kind}"
            );
            let spec = &doc["spec"];
            let monitor = spec["options"]
                .as_array()
                .map(|o| {
                    o.iter()
                        .any(|o| o["name"] == "policy-mode" && o["value"] == "monitor")
                })
                .unwrap_or(false);
            let mut selectors = Vec::new();
            for list in ["kprobes", "lsmhooks", "tracepoints"] {
                for hook in spec[list].as_array().into_iter().flatten() {
                    for sel in hook["selectors"].as_array().into_iter().flatten() {
                        let args = sel["matchArgs"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|a| {
                                (
                                    a["operator"].as_str().expect("operator").to_string(),
                                    strings(&a["values"]),
                                )
                            })
                            .collect();
                        let actions = sel["matchActions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|a| a["action"].as_str().expect("action").to_string())
                            .collect();
                        selectors.push(Selector { args, actions });
                    }
                }
            }
            Policy {
                name: doc["metadata"]["name"].as_str().expect("name").to_string(),
                namespace: doc["metadata"]["namespace"].as_str().map(str::to_string),
                pod_selector: spec.get("podSelector").cloned(),
                container_selector: spec.get("containerSelector").cloned(),
                kind,
                monitor,
                selectors,
                doc,
            }
        })
        .collect()
}

/// Kubernetes label selector semantics over `labels`.
pub fn selects(selector: Option<&Value>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = selector.filter(|s| !s.is_null()) else {
        return true;
    };
    let match_labels = sel["matchLabels"].as_object().cloned().unwrap_or_default();
    let labels_ok = match_labels
        .iter()
        .all(|(k, v)| labels.get(k).map(String::as_str) == Some(v.as_str().expect("value")));
    let exprs_ok = sel["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().expect("key");
            let values = strings(&e["values"]);
            let have = labels.get(key);
            match e["operator"].as_str().expect("operator") {
                "In" => have.is_some_and(|v| values.contains(v)),
                "NotIn" => have.is_none_or(|v| !values.contains(v)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                other => panic!("unknown selector operator {other}"),
            }
        });
    labels_ok && exprs_ok
}

/// Whether `policy` applies to `process`.
pub fn applies(policy: &Policy, process: &Process<'_>) -> bool {
    match (&process.pod, policy.kind.as_str()) {
        (None, "TracingPolicyNamespaced") => false,
        (None, _) => policy.pod_selector.is_none() && policy.container_selector.is_none(),
        (Some(pod), kind) => {
            if kind == "TracingPolicyNamespaced"
                && policy.namespace.as_deref() != Some(pod.namespace)
            {
                return false;
            }
            let container = BTreeMap::from([("name".to_string(), pod.container.to_string())]);
            selects(policy.pod_selector.as_ref(), pod.labels)
                && selects(policy.container_selector.as_ref(), &container)
        }
    }
}

fn arg_holds(op: &str, values: &[String], path: &str) -> bool {
    match op {
        "Equal" => values.iter().any(|v| v == path),
        "NotEqual" => !values.iter().any(|v| v == path),
        "Prefix" => values.iter().any(|v| path.starts_with(v.as_str())),
        "Postfix" => values.iter().any(|v| path.ends_with(v.as_str())),
        other => panic!("unknown matchArgs operator {other}"),
    }
}

/// Whether `policy` (applying) denies an exec whose compared file is `path`.
pub fn denies(policy: &Policy, path: &str) -> bool {
    policy.selectors.iter().any(|s| {
        s.args
            .iter()
            .all(|(op, values)| arg_holds(op, values, path))
            && s.actions.iter().any(|a| a == "Override" || a == "Sigkill")
    })
}

/// The verdict of every applying policy on an exec of `path` by `process`.
pub fn evaluate(policies: &[&Policy], process: &Process<'_>, path: &str) -> Verdict {
    let mut enforced = Vec::new();
    let mut monitored = Vec::new();
    for p in policies.iter().filter(|p| applies(p, process)) {
        if denies(p, path) {
            if p.monitor {
                monitored.push(p.name.clone());
            } else {
                enforced.push(p.name.clone());
            }
        }
    }
    if !enforced.is_empty() {
        Verdict::Denied(enforced)
    } else if !monitored.is_empty() {
        Verdict::WouldDeny(monitored)
    } else {
        Verdict::Allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicyNamespaced
metadata: {name: deployment-web, namespace: shop}
spec:
  podSelector:
    matchLabels: {app: web}
    matchExpressions:
    - {key: tier, operator: NotIn, values: [db]}
    - {key: canary, operator: DoesNotExist}
  containerSelector: {matchExpressions: [{key: name, operator: In, values: [nginx]}]}
  options: [{name: policy-mode, value: enforce}]
  kprobes:
  - call: security_bprm_creds_for_exec
    selectors:
    - matchArgs: [{index: 0, operator: NotEqual, values: [/usr/sbin/nginx]}]
      matchActions: [{action: Override, argError: -1}]
---
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: tetragon-learner-host-n}
spec:
  options: [{name: policy-mode, value: monitor}]
  tracepoints:
  - selectors:
    - matchArgs: [{index: 2, operator: Prefix, values: [/tmp/]}]
      matchActions: [{action: Sigkill}]
"#;

    #[test]
    fn the_oracle_follows_the_documented_semantics() {
        let ps = parse(YAML);
        let refs: Vec<&Policy> = ps.iter().collect();
        let web = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let canary = BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("canary".to_string(), "1".to_string()),
        ]);
        let pod = |labels, ns, c| Process {
            pod: Some(Pod {
                namespace: ns,
                labels,
                container: c,
            }),
        };
        assert_eq!(
            evaluate(&refs, &pod(&web, "shop", "nginx"), "/usr/sbin/nginx"),
            Verdict::Allowed
        );
        assert_eq!(
            evaluate(&refs, &pod(&web, "shop", "nginx"), "/bin/sh"),
            Verdict::Denied(vec!["deployment-web".into()])
        );
        for (labels, ns, c) in [
            (&web, "blog", "nginx"),
            (&web, "shop", "envoy"),
            (&canary, "shop", "nginx"),
        ] {
            assert_eq!(
                evaluate(&refs, &pod(labels, ns, c), "/bin/sh"),
                Verdict::Allowed
            );
        }
        // The cluster-wide monitor policy: every process, reported only.
        assert_eq!(
            evaluate(&refs, &Process { pod: None }, "/tmp/x"),
            Verdict::WouldDeny(vec!["tetragon-learner-host-n".into()])
        );
        assert_eq!(
            evaluate(&refs, &pod(&web, "blog", "x"), "/tmp/x"),
            Verdict::WouldDeny(vec!["tetragon-learner-host-n".into()])
        );
        assert!(selects(Some(&serde_json::json!({})), &web));
        assert!(selects(
            Some(&serde_json::json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]})),
            &web
        ));
    }
}
