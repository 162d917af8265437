//! `export` on profiles with hostile paths: JSON equals `debug dump`, proposals
//! validate against the WorkloadPolicyProposal CRD, tracing policies against
//! Tetragon's TracingPolicyNamespaced schema, and every output parses back with
//! the exact paths and the same number of objects.
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;
use tetragon_learner::cli::debug_cmd::{render_dump, Format};
use tetragon_learner::cli::export_cmd::{
    render, run, write_file, ExportArgs, ExportCmdError, ExportFormat,
};
use tetragon_learner::export::{
    in_namespace, is_dns1123_subdomain, is_label_value, object_name, ExportError, ExportOptions,
    GroupBy, PolicyHook, PolicyMode, SelectorMode, DEFAULT_WORKLOAD_LABEL,
};
use tetragon_learner::learner::hook_view::HookView;
use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::learner::profile::{ExecutableRecord, PartialReason, Profile};
use tetragon_learner::learner::state::LearnerState;
use tetragon_learner::store::Store;

use common::{record, with, HOSTILE};

const BIN: &str = env!("CARGO_BIN_EXE_tetragon-learner");
const PROPOSAL_CRD: &str =
    include_str!("fixtures/schemas/security.rancher.io_workloadpolicyproposals.yaml");
const TRACING_POLICY_SCHEMA: &str =
    include_str!("fixtures/schemas/tracingpolicynamespaced-cilium.io.json");
/// The cluster-scoped `TracingPolicy` schema (host learners' policies).
const CLUSTER_TRACING_POLICY_SCHEMA: &str =
    include_str!("fixtures/schemas/tracingpolicy-cilium.io.json");

/// 4 KB of path built from everything a YAML or JSON writer could trip on.
fn long_path() -> String {
    let unit = "/d\"i'r\n{{ $x }}%n%s\u{202e}\u{2066}\\: #-\r\t";
    let mut p = String::from("/opt");
    while p.len() < 4096 {
        p.push_str(unit);
    }
    p
}

fn hostile_paths() -> Vec<String> {
    vec![HOSTILE.to_string(), long_path()]
}

/// Two workloads in `shop` (web: two containers, one partial; db: locked with a
/// deviation), a probe-only DaemonSet in `kube-system`, and a host learner.
fn profiles() -> Vec<Profile> {
    let mut nginx = with(
        Profile::new(LearnerKey::new("shop", "Deployment", "web", "nginx"), 1_000),
        vec![
            record("/usr/sbin/nginx").build(),
            record(HOSTILE).build(),
            record(&long_path()).build(),
            record("/bin/healthcheck").probe(true).build(),
            record("/bin/bash").session(true).build(),
        ],
    );
    nginx
        .partial_reasons
        .insert(PartialReason::StartedBeforeAgent);
    let web_pod = labels(&[("app.kubernetes.io/name", "web"), ("tier", "front")]);
    nginx.pod_labels.observe(web_pod.clone(), "web-7d9f-a");
    nginx.pod_labels.observe(web_pod.clone(), "web-7d9f-b");
    let mut sidecar = with(
        Profile::new(LearnerKey::new("shop", "Deployment", "web", "envoy"), 1_000),
        vec![record("/usr/local/bin/envoy").build()],
    );
    sidecar.state = LearnerState::Stable;
    sidecar.pod_labels.observe(web_pod, "web-7d9f-a");
    let mut db = with(
        Profile::new(
            LearnerKey::new("shop", "StatefulSet", "db", "postgres"),
            1_000,
        ),
        vec![record("/usr/bin/postgres").build()],
    );
    let sh = record("/bin/sh").build();
    db.deviations.insert(sh.path.clone(), sh);
    db.state = LearnerState::Locked;
    db.pod_labels
        .observe(labels(&[("app", "db"), ("tier", "back")]), "db-0");
    let mut agent = with(
        Profile::new(
            LearnerKey::new("kube-system", "DaemonSet", "agent", "agent"),
            1_000,
        ),
        vec![record("/bin/probe").probe(true).build()],
    );
    agent
        .pod_labels
        .observe(labels(&[("k8s-app", "agent")]), "agent-x1");
    let host = with(
        Profile::new(LearnerKey::host("node-1"), 1_000),
        vec![record("/usr/bin/kubelet").build()],
    );
    vec![nginx, sidecar, db, agent, host]
}

fn opts() -> ExportOptions {
    ExportOptions::default()
}

/// Today's selector: `{tetragon-learner.io/workload: <workload>}`.
fn by_label() -> ExportOptions {
    ExportOptions {
        selector: SelectorMode::WorkloadLabel,
        ..ExportOptions::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every YAML document of a multi-document stream, as JSON values. serde_yaml
/// reads an empty stream as one null document; like kubectl, count it as none.
fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).expect("YAML parses");
            serde_json::to_value(v).expect("YAML maps to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn proposal_validator() -> jsonschema::Validator {
    let crd: serde_yaml::Value = serde_yaml::from_str(PROPOSAL_CRD).expect("CRD parses");
    let crd = serde_json::to_value(crd).expect("CRD as JSON");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    jsonschema::validator_for(&version["schema"]["openAPIV3Schema"]).expect("schema compiles")
}

/// Validates a tracing policy against the schema of its kind:
/// `TracingPolicyNamespaced` (workloads) or `TracingPolicy` (hosts). The
/// `x-kubernetes-validations` rules (a namespaced policy has no hostSelector)
/// are not JSON Schema; the tests check them by hand.
struct TracingPolicyValidator {
    namespaced: jsonschema::Validator,
    cluster: jsonschema::Validator,
}

impl TracingPolicyValidator {
    fn iter_errors<'a>(
        &'a self,
        doc: &'a Value,
    ) -> Box<dyn Iterator<Item = jsonschema::ValidationError<'a>> + 'a> {
        match doc["kind"].as_str() {
            Some("TracingPolicyNamespaced") => Box::new(self.namespaced.iter_errors(doc)),
            Some("TracingPolicy") => {
                assert!(doc["metadata"].get("namespace").is_none(), "{doc:#}");
                Box::new(self.cluster.iter_errors(doc))
            }
            other => panic!("not a tracing policy kind: {other:?}"),
        }
    }
}

fn tracing_policy_validator() -> TracingPolicyValidator {
    let compile = |text: &str| {
        let schema: Value = serde_json::from_str(text).expect("schema parses");
        jsonschema::validator_for(&schema).expect("schema compiles")
    };
    TracingPolicyValidator {
        namespaced: compile(TRACING_POLICY_SCHEMA),
        cluster: compile(CLUSTER_TRACING_POLICY_SCHEMA),
    }
}

trait Validates {
    fn errors(&self, doc: &Value) -> Vec<String>;
}

impl Validates for jsonschema::Validator {
    fn errors(&self, doc: &Value) -> Vec<String> {
        self.iter_errors(doc)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect()
    }
}

impl Validates for TracingPolicyValidator {
    fn errors(&self, doc: &Value) -> Vec<String> {
        self.iter_errors(doc)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect()
    }
}

fn assert_valid(validator: &dyn Validates, doc: &Value) {
    let errors = validator.errors(doc);
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
}

fn find<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no object {name}"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string"))
        .collect()
}

#[test]
fn json_is_the_debug_dump_array() {
    let ps = profiles();
    let out = render(&ps, ExportFormat::Json, &opts()).expect("render");
    assert_eq!(out.text, render_dump(&ps, Format::Json).expect("dump"));
    assert_eq!(out.objects, ps.len());
    let back: Vec<Value> = serde_json::from_str(&out.text).expect("json");
    assert_eq!(back.len(), ps.len());
    assert_eq!(back[0]["key"]["container"], "nginx");
    // The inventory keeps every executable, marks included.
    assert_eq!(back[0]["executables"].as_array().expect("array").len(), 5);
}

#[test]
fn proposals_validate_against_the_crd_one_per_workload() {
    let out = render(&profiles(), ExportFormat::Proposal, &opts()).expect("render");
    let docs = yaml_docs(&out.text);
    assert_eq!(
        docs.len(),
        3,
        "web, db, agent; the host learner is left out"
    );
    assert_eq!(out.objects, docs.len());
    let v = proposal_validator();
    for d in &docs {
        assert_valid(&v, d);
        assert_eq!(d["apiVersion"], "security.rancher.io/v1alpha1");
        assert_eq!(d["kind"], "WorkloadPolicyProposal");
        assert!(is_dns1123_subdomain(
            d["metadata"]["name"].as_str().expect("name")
        ));
        assert_eq!(
            d["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "tetragon-learner"
        );
    }
    let web = find(&docs, "deployment-web");
    assert_eq!(web["metadata"]["namespace"], "shop");
    assert_eq!(
        web["spec"]["selector"],
        serde_json::json!({"matchLabels": {"app.kubernetes.io/name": "web"}})
    );
    let old = render(&profiles(), ExportFormat::Proposal, &by_label()).expect("render");
    assert_eq!(
        find(&yaml_docs(&old.text), "deployment-web")["spec"]["selector"]["matchLabels"]
            [DEFAULT_WORKLOAD_LABEL],
        "web"
    );
    let rules = &web["spec"]["rulesByContainer"];
    assert_eq!(
        rules.as_object().expect("map").keys().collect::<Vec<_>>(),
        ["envoy", "nginx"]
    );
    let mut want = vec![
        "/bin/healthcheck".to_string(),
        "/usr/sbin/nginx".to_string(),
    ];
    want.extend(hostile_paths());
    want.sort();
    assert_eq!(strings(&rules["nginx"]["executables"]["allowed"]), want);
    assert_eq!(
        strings(&rules["envoy"]["executables"]["allowed"]),
        ["/usr/local/bin/envoy"]
    );
    // Deviations are never allowed.
    let db = find(&docs, "statefulset-db");
    assert_eq!(
        strings(&db["spec"]["rulesByContainer"]["postgres"]["executables"]["allowed"]),
        ["/usr/bin/postgres"]
    );
    // A probe-only container's probe is allowed by default.
    let agent = find(&docs, "daemonset-agent");
    assert_eq!(
        strings(&agent["spec"]["rulesByContainer"]["agent"]["executables"]["allowed"]),
        ["/bin/probe"]
    );
}

#[test]
fn annotations_carry_state_completeness_and_a_partial_warning() {
    let out = render(&profiles(), ExportFormat::Proposal, &opts()).expect("render");
    let docs = yaml_docs(&out.text);
    let web = &find(&docs, "deployment-web")["metadata"]["annotations"];
    let key = |k: &str| format!("tetragon-learner.io/{k}");
    assert_eq!(web[key("state")], "learning");
    assert_eq!(web[key("completeness")], "partial");
    assert_eq!(web[key("workload")], "web");
    assert_eq!(web[key("workload-kind")], "Deployment");
    assert!(web[key("warning")]
        .as_str()
        .expect("warning")
        .contains("nginx (started-before-agent)"));
    let learners: Value =
        serde_json::from_str(web[key("learners")].as_str().expect("learners")).expect("json");
    assert_eq!(learners[1]["container"], "nginx");
    assert_eq!(learners[1]["allowed"], 4);
    assert_eq!(
        learners[1]["excluded"], 1,
        "the kubectl exec session's /bin/bash"
    );
    assert_eq!(web[key("excluded")], "exec-session-only");
    assert!(web[key("exec-sessions")]
        .as_str()
        .expect("sessions note")
        .contains("interactive sessions running them will be denied"));
    let db = &find(&docs, "statefulset-db")["metadata"]["annotations"];
    assert_eq!(db[key("state")], "locked");
    assert_eq!(db[key("completeness")], "complete");
    assert!(db.get(key("warning")).is_none());
    // The stderr warnings: one summary line per concern; the learners,
    // executables and workloads behind each under --verbose. Ready: envoy
    // (stable) and postgres (locked); not ready: nginx (partial) and agent
    // (learning); the host learner is not exported.
    assert_eq!(
        out.stderr_lines(false),
        [
            "warning: 2 of 4 learners are not ready (1 partial, 1 still learning): their allow-lists may miss executables; review them before enforcing; --verbose lists them",
            "warning: 1 executable seen only in kubectl exec sessions is left out of the allow-lists: under enforcement interactive sessions running them will be denied; add --include-exec-sessions to allow them; --verbose lists them",
            "warning: 1 learner is not exported as namespaced objects (1 host); --verbose lists them",
        ]
    );
    assert_eq!(
        out.stderr_lines(true),
        [
            "warning: 2 of 4 learners are not ready (1 partial, 1 still learning): their allow-lists may miss executables; review them before enforcing",
            "  shop/Deployment/web/nginx: learning, partial (started-before-agent)",
            "  kube-system/DaemonSet/agent/agent: learning, complete",
            "warning: 1 executable seen only in kubectl exec sessions is left out of the allow-lists: under enforcement interactive sessions running them will be denied; add --include-exec-sessions to allow them",
            "  shop/Deployment/web/nginx /bin/bash",
            "warning: 1 learner is not exported as namespaced objects (1 host)",
            "  /Host/node-1/: host processes belong to no namespace",
        ]
    );
}

#[test]
fn tracing_policies_validate_against_tetragons_schema() {
    let out = render(&profiles(), ExportFormat::TracingPolicy, &opts()).expect("render");
    let docs = yaml_docs(&out.text);
    assert_eq!(
        docs.len(),
        4,
        "web, db and agent (its probe is allowed), and the host learner"
    );
    assert_eq!(out.objects, 4);
    let v = tracing_policy_validator();
    for d in &docs {
        assert_valid(&v, d);
        assert_eq!(d["apiVersion"], "cilium.io/v1alpha1");
        assert!(d["spec"].get("hostSelector").is_none());
        // Monitor mode by default.
        assert_eq!(
            d["spec"]["options"],
            serde_json::json!([{"name": "policy-mode", "value": "monitor"}])
        );
    }
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "TracingPolicyNamespaced",
            "TracingPolicyNamespaced",
            "TracingPolicyNamespaced",
            "TracingPolicy"
        ]
    );
    let agent = find(&docs, "daemonset-agent");
    assert_eq!(
        strings(&agent["spec"]["kprobes"][0]["selectors"][0]["matchArgs"][0]["values"]),
        ["/bin/probe"]
    );
    // The host learner: cluster-scoped, no pod scope, its own name.
    let host = find(&docs, "tetragon-learner-host-node-1");
    assert!(host["metadata"].get("namespace").is_none());
    assert!(host["spec"].get("podSelector").is_none());
    assert!(host["spec"].get("containerSelector").is_none());
    assert_eq!(
        strings(&host["spec"]["kprobes"][0]["selectors"][0]["matchArgs"][0]["values"]),
        ["/usr/bin/kubelet"]
    );
    assert!(host["metadata"]["annotations"]["tetragon-learner.io/scope"]
        .as_str()
        .expect("scope")
        .contains("every host process"));
    let web = find(&docs, "deployment-web");
    assert_eq!(web["metadata"]["namespace"], "shop");
    let spec = &web["spec"];
    // Selected by the labels its pods carry (learned), no relabelling.
    assert_eq!(
        spec["podSelector"],
        serde_json::json!({"matchLabels": {"app.kubernetes.io/name": "web"}})
    );
    assert_eq!(
        web["metadata"]["annotations"]["tetragon-learner.io/selector"],
        "learned: app.kubernetes.io/name (from 2 pods, 1 label set): carried by every pod of the workload and by no pod of another learned workload of the namespace"
    );
    assert_eq!(
        find(&docs, "statefulset-db")["spec"]["podSelector"]["matchLabels"],
        serde_json::json!({"app": "db"})
    );
    // With --selector workload-label: today's selector, pods relabelled.
    let old = render(&profiles(), ExportFormat::TracingPolicy, &by_label()).expect("render");
    let old_docs = yaml_docs(&old.text);
    assert_eq!(
        find(&old_docs, "deployment-web")["spec"]["podSelector"],
        serde_json::json!({"matchLabels": {DEFAULT_WORKLOAD_LABEL: "web"}})
    );
    assert!(find(&old_docs, "deployment-web")["metadata"]["annotations"]
        ["tetragon-learner.io/selector"]
        .as_str()
        .expect("selector")
        .starts_with("workload-label (--selector workload-label)"));
    let containers = &spec["containerSelector"]["matchExpressions"][0];
    assert_eq!(containers["key"], "name");
    assert_eq!(containers["operator"], "In");
    assert_eq!(strings(&containers["values"]), ["envoy", "nginx"]);
    let kprobe = &spec["kprobes"][0];
    assert_eq!(kprobe["call"], "security_bprm_creds_for_exec");
    assert_eq!(kprobe["syscall"], false);
    assert_eq!(kprobe["args"][0]["index"], 0);
    assert_eq!(kprobe["args"][0]["type"], "linux_binprm");
    assert!(spec.get("lsmhooks").is_none());
    let selector = &kprobe["selectors"][0];
    assert_eq!(selector["matchArgs"][0]["index"], 0);
    assert_eq!(selector["matchArgs"][0]["operator"], "NotEqual");
    let mut want = vec![
        "/bin/healthcheck".to_string(),
        "/usr/local/bin/envoy".to_string(),
        "/usr/sbin/nginx".to_string(),
    ];
    want.extend(hostile_paths());
    want.sort();
    assert_eq!(strings(&selector["matchArgs"][0]["values"]), want);
    assert_eq!(selector["matchActions"][0]["action"], "Override");
    assert_eq!(selector["matchActions"][0]["argError"], -1);
    assert_eq!(
        web["metadata"]["annotations"]["tetragon-learner.io/completeness"],
        "partial"
    );
    // The session-only /bin/bash is left out, and stderr says so.
    assert!(out.stderr_lines(true).contains(
        &"warning: 1 executable seen only in kubectl exec sessions is left out of the allow-lists: under enforcement interactive sessions running them will be denied; add --include-exec-sessions to allow them".to_string()
    ));
    assert!(out
        .stderr_lines(true)
        .contains(&"  shop/Deployment/web/nginx /bin/bash".to_string()));
}

/// The six shapes (monitor|enforce x kprobe|lsm|tracepoint) validate against
/// Tetragon's schema, for workloads and hosts alike, carry the same allow-list
/// (these records have no hook views: every entry is its learned path) and
/// differ only in the policy-mode option, the hook, its argument and action.
#[test]
fn every_mode_and_hook_validates_and_carries_the_learned_allow_list() {
    let v = tracing_policy_validator();
    let mut want = vec![
        "/bin/healthcheck".to_string(),
        "/usr/local/bin/envoy".to_string(),
        "/usr/sbin/nginx".to_string(),
    ];
    want.extend(hostile_paths());
    want.sort();
    for (mode, mode_name) in [
        (PolicyMode::Monitor, "monitor"),
        (PolicyMode::Enforce, "enforce"),
    ] {
        for hook in [PolicyHook::Kprobe, PolicyHook::Lsm, PolicyHook::Tracepoint] {
            let o = ExportOptions {
                mode,
                hook,
                ..opts()
            };
            let out = render(&profiles(), ExportFormat::TracingPolicy, &o).expect("render");
            let docs = yaml_docs(&out.text);
            assert_eq!(docs.len(), 4);
            for d in &docs {
                assert_valid(&v, d);
                assert_eq!(
                    d["spec"]["options"],
                    serde_json::json!([{"name": "policy-mode", "value": mode_name}])
                );
            }
            let spec = &find(&docs, "deployment-web")["spec"];
            assert_eq!(
                spec["options"],
                serde_json::json!([{"name": "policy-mode", "value": mode_name}])
            );
            let only = |key: &str| {
                for other in ["kprobes", "lsmhooks", "tracepoints"] {
                    let n = spec
                        .get(other)
                        .map_or(0, |h| h.as_array().expect("hooks").len());
                    assert_eq!(n, usize::from(other == key), "{other} in {spec:#}");
                }
                &spec[key][0]
            };
            let (hooked, index, action) = match hook {
                PolicyHook::Kprobe => {
                    let h = only("kprobes");
                    assert_eq!(h["call"], "security_bprm_creds_for_exec");
                    assert_eq!(h["syscall"], false);
                    (
                        h,
                        0,
                        serde_json::json!([{"action": "Override", "argError": -1}]),
                    )
                }
                PolicyHook::Lsm => {
                    let h = only("lsmhooks");
                    assert_eq!(h["hook"], "bprm_creds_for_exec");
                    (
                        h,
                        0,
                        serde_json::json!([{"action": "Override", "argError": -1}]),
                    )
                }
                PolicyHook::Tracepoint => {
                    // As the live-tested enf-raw-kill.yaml.
                    let h = only("tracepoints");
                    assert_eq!(h["subsystem"], "sched");
                    assert_eq!(h["event"], "sched_process_exec");
                    assert_eq!(h["raw"], true);
                    (h, 2, serde_json::json!([{"action": "Sigkill"}]))
                }
            };
            assert_eq!(
                hooked["args"],
                serde_json::json!([{"index": index, "type": "linux_binprm"}])
            );
            let selectors = hooked["selectors"].as_array().expect("selectors");
            assert_eq!(selectors.len(), 1);
            let match_args = selectors[0]["matchArgs"].as_array().expect("matchArgs");
            assert_eq!(match_args.len(), 1);
            assert_eq!(match_args[0]["index"], index);
            assert_eq!(match_args[0]["operator"], "NotEqual");
            assert_eq!(
                strings(&match_args[0]["values"]),
                want,
                "{mode_name} {hook:?}"
            );
            assert_eq!(selectors[0]["matchActions"], action);
            let enforcement = spec_annotation(&docs, "deployment-web", "enforcement");
            match hook {
                PolicyHook::Tracepoint => {
                    assert!(enforcement.contains("exit 137"), "{enforcement}");
                    assert!(enforcement.contains("interpreter"), "{enforcement}");
                    assert!(enforcement.contains("process_exec"), "{enforcement}");
                }
                _ => assert!(enforcement.contains("EPERM"), "{enforcement}"),
            }
            // The host learner: the same shape, cluster-scoped.
            let host = &find(&docs, "tetragon-learner-host-node-1")["spec"];
            assert_eq!(host["options"], spec["options"]);
            let key = ["kprobes", "lsmhooks", "tracepoints"][match hook {
                PolicyHook::Kprobe => 0,
                PolicyHook::Lsm => 1,
                PolicyHook::Tracepoint => 2,
            }];
            assert_eq!(
                host[key][0]["selectors"][0]["matchActions"],
                selectors[0]["matchActions"]
            );
        }
    }
}

fn spec_annotation(docs: &[Value], name: &str, key: &str) -> String {
    find(docs, name)["metadata"]["annotations"][format!("tetragon-learner.io/{key}")]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} annotation on {name}"))
        .to_string()
}

#[test]
fn exclude_probes_and_include_sessions_change_the_lists() {
    let all = ExportOptions {
        include_exec_sessions: true,
        ..opts()
    };
    let out = render(&profiles(), ExportFormat::TracingPolicy, &all).expect("render");
    let docs = yaml_docs(&out.text);
    assert_eq!(docs.len(), 4);
    let web = find(&docs, "deployment-web");
    let values = strings(&web["spec"]["kprobes"][0]["selectors"][0]["matchArgs"][0]["values"]);
    assert!(values.contains(&"/bin/healthcheck") && values.contains(&"/bin/bash"));
    let annotations = &web["metadata"]["annotations"];
    assert!(annotations.get("tetragon-learner.io/excluded").is_none());
    assert!(annotations
        .get("tetragon-learner.io/exec-sessions")
        .is_none());
    let no_probes = ExportOptions {
        exclude_exec_probes: true,
        ..opts()
    };
    let out = render(&profiles(), ExportFormat::TracingPolicy, &no_probes).expect("render");
    let docs = yaml_docs(&out.text);
    assert_eq!(
        docs.len(),
        3,
        "agent has nothing left but its probe; web, db, host"
    );
    let lines = out.stderr_lines(true);
    for want in [
        "warning: 2 executables seen only as exec probes are left out of the allow-lists (--exclude-exec-probes): under enforcement the liveness/readiness probes that run them fail and their pods restart",
        "  shop/Deployment/web/nginx /bin/healthcheck",
        "  kube-system/DaemonSet/agent/agent /bin/probe",
        "warning: 1 workload gets no tracing policy: nothing exportable in its allow-list (enforcing an empty one would deny every exec); see --include-exec-sessions",
        "  DaemonSet kube-system/agent",
    ] {
        assert!(lines.contains(&want.to_string()), "{want:?} not in {lines:#?}");
    }
    let web = find(&docs, "deployment-web");
    assert_eq!(
        web["metadata"]["annotations"]["tetragon-learner.io/excluded"],
        "exec-probe-only,exec-session-only"
    );
    let out = render(&profiles(), ExportFormat::Proposal, &no_probes).expect("render");
    let docs = yaml_docs(&out.text);
    let nginx = strings(
        &find(&docs, "deployment-web")["spec"]["rulesByContainer"]["nginx"]["executables"]
            ["allowed"],
    );
    assert!(!nginx.contains(&"/bin/healthcheck"));
    assert!(!nginx.contains(&"/bin/bash"));
    assert!(nginx.contains(&"/usr/sbin/nginx"));
}

/// Every output carries each hostile path exactly and parses back into as many
/// objects as were rendered.
#[test]
fn hostile_paths_round_trip_in_every_format() {
    let ps = profiles();
    let tp_validator = tracing_policy_validator();
    let crd_validator = proposal_validator();
    for format in [
        ExportFormat::Json,
        ExportFormat::Proposal,
        ExportFormat::TracingPolicy,
    ] {
        let out = render(&ps, format, &opts()).expect("render");
        let (docs, found): (Vec<Value>, Vec<String>) = match format {
            ExportFormat::Json => {
                let docs: Vec<Value> = serde_json::from_str(&out.text).expect("json");
                let paths = docs
                    .iter()
                    .flat_map(|d| d["executables"].as_array().expect("array").clone())
                    .map(|e| e["path"].as_str().expect("path").to_owned())
                    .collect();
                (docs, paths)
            }
            ExportFormat::Proposal => {
                let docs = yaml_docs(&out.text);
                let paths = docs
                    .iter()
                    .flat_map(|d| {
                        d["spec"]["rulesByContainer"]
                            .as_object()
                            .expect("map")
                            .values()
                            .flat_map(|c| strings(&c["executables"]["allowed"]))
                            .map(str::to_owned)
                            .collect::<Vec<_>>()
                    })
                    .collect();
                (docs, paths)
            }
            ExportFormat::TracingPolicy => {
                let docs = yaml_docs(&out.text);
                let paths = docs
                    .iter()
                    .flat_map(|d| {
                        strings(&d["spec"]["kprobes"][0]["selectors"][0]["matchArgs"][0]["values"])
                            .into_iter()
                            .map(str::to_owned)
                            .collect::<Vec<_>>()
                    })
                    .collect();
                (docs, paths)
            }
        };
        assert_eq!(docs.len(), out.objects, "{format:?}");
        for hostile in hostile_paths() {
            assert_eq!(
                found.iter().filter(|p| **p == hostile).count(),
                1,
                "{format:?} lost or altered {hostile:?}"
            );
        }
        // Nothing forged a document: every object still validates.
        for d in &docs {
            match format {
                ExportFormat::Json => assert!(d["key"].is_object()),
                ExportFormat::Proposal => assert_valid(&crd_validator, d),
                ExportFormat::TracingPolicy => assert_valid(&tp_validator, d),
            }
        }
        // YAML outputs start each object with its own `---` document marker.
        if format != ExportFormat::Json {
            let markers = out.text.lines().filter(|l| *l == "---").count();
            assert!(markers + 1 >= docs.len(), "{format:?}: {markers} markers");
        }
    }
}

#[test]
fn hostile_and_long_workload_names_give_valid_distinct_objects() {
    let long = "w".repeat(300);
    let odd = "Web\n{{ x }}\u{202e}";
    let ps = vec![
        with(
            Profile::new(LearnerKey::new("shop", "Deployment", &long, "c"), 0),
            vec![record("/bin/a").build()],
        ),
        with(
            Profile::new(LearnerKey::new("shop", "Pod", odd, "c"), 0),
            vec![record("/bin/b").build()],
        ),
        with(
            Profile::new(LearnerKey::new("shop", "Pod", "Web {{ x }}", "c"), 0),
            vec![record("/bin/c").build()],
        ),
    ];
    let tp = tracing_policy_validator();
    let crd = proposal_validator();
    for (format, v) in [
        (ExportFormat::TracingPolicy, &tp as &dyn Validates),
        (ExportFormat::Proposal, &crd),
    ] {
        let out = render(&ps, format, &opts()).expect("render");
        let docs = yaml_docs(&out.text);
        assert_eq!(docs.len(), 3);
        let mut names: Vec<&str> = docs
            .iter()
            .map(|d| d["metadata"]["name"].as_str().expect("name"))
            .collect();
        for (d, n) in docs.iter().zip(&names) {
            assert_valid(v, d);
            assert!(is_dns1123_subdomain(n) && n.len() <= 253, "{n}");
            let label = d["spec"]
                .get("podSelector")
                .unwrap_or(&d["spec"]["selector"])["matchLabels"][DEFAULT_WORKLOAD_LABEL]
                .as_str()
                .expect("label");
            assert!(is_label_value(label), "{label:?}");
        }
        // The exact workload survives in an annotation.
        assert!(docs
            .iter()
            .any(|d| d["metadata"]["annotations"]["tetragon-learner.io/workload"] == odd));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 3, "names collide: {names:?}");
    }
    assert_eq!(object_name("Deployment", &long).len(), 253);
}

#[test]
fn namespace_filter_keeps_one_namespace() {
    let ps = in_namespace(profiles(), Some("kube-system"));
    assert_eq!(ps.len(), 1);
    let out = render(&ps, ExportFormat::Proposal, &opts()).expect("render");
    assert_eq!(yaml_docs(&out.text).len(), 1);
    let none = in_namespace(profiles(), Some("nope"));
    let out = render(&none, ExportFormat::TracingPolicy, &opts()).expect("render");
    assert_eq!(out.objects, 0);
    assert!(yaml_docs(&out.text).is_empty());
    assert_eq!(
        out.stderr_lines(true),
        [
            "warning: no learner profiles to export",
            "info: 0 tracing policies (0 with a pod or namespace filter, Tetragon's limit 128 per node): estimated kernel memory per node 0 KiB at 16 CPUs for --hook kprobe (about 2.0 MiB each; budget 256.0 MiB); every node loads every policy"
        ]
    );
}

#[test]
fn a_bad_workload_label_key_is_a_clear_error() {
    let bad = ExportOptions {
        workload_label: "not a key!".into(),
        ..by_label()
    };
    let err = render(&profiles(), ExportFormat::Proposal, &bad).expect_err("bad key");
    assert!(matches!(err, ExportError::BadLabelKey(_)));
    assert!(err.to_string().contains("--workload-label"), "{err}");
    let app = ExportOptions {
        workload_label: "app".into(),
        ..by_label()
    };
    let out = render(&profiles(), ExportFormat::TracingPolicy, &app).expect("render");
    assert_eq!(
        find(&yaml_docs(&out.text), "deployment-web")["spec"]["podSelector"]["matchLabels"]["app"],
        "web"
    );
}

/// A stopped agent's database holding `profiles()`.
fn database() -> (TempDir, PathBuf) {
    let tmp = TempDir::new().expect("tempdir");
    let dir = tmp.path().join("db");
    let store = Store::open(&dir).expect("open");
    store.write_durably(&profiles()).expect("write");
    drop(store);
    (tmp, dir)
}

fn args(db: &Path, format: ExportFormat, output: Option<PathBuf>) -> ExportArgs {
    ExportArgs {
        db: Some(db.to_path_buf()),
        admin_socket: None,
        input: Vec::new(),
        format,
        output,
        namespace: None,
        workload: Vec::new(),
        mode: PolicyMode::Monitor,
        hook: PolicyHook::Kprobe,
        exclude_exec_probes: false,
        include_exec_probes: false,
        include_exec_sessions: false,
        selector: SelectorMode::Learned,
        workload_label: DEFAULT_WORKLOAD_LABEL.to_string(),
        group: GroupBy::Workload,
        node_cpus: 16,
        max_policies: 128,
        kernel_memory_budget: 256 << 20,
        verbose: false,
    }
}

/// sled releases its directory lock a moment after the last handle drops.
fn run_retrying(make: impl Fn() -> ExportArgs) -> anyhow::Result<()> {
    for _ in 0..500 {
        match run(make()) {
            Err(e) if e.to_string().contains("locked") => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            other => return other,
        }
    }
    panic!("database stayed locked");
}

#[test]
fn run_writes_the_file_from_a_real_database() {
    let (tmp, db) = database();
    let file = tmp.path().join("policies.yaml");
    run_retrying(|| args(&db, ExportFormat::TracingPolicy, Some(file.clone()))).expect("export");
    let text = std::fs::read_to_string(&file).expect("written");
    let docs = yaml_docs(&text);
    assert_eq!(docs.len(), 4);
    let v = tracing_policy_validator();
    for d in &docs {
        assert_valid(&v, d);
    }
    let expected = render(&profiles(), ExportFormat::TracingPolicy, &opts()).expect("render");
    assert_eq!(text, expected.text, "the database holds exactly profiles()");
}

#[test]
fn write_errors_name_the_file_and_what_to_do() {
    let tmp = TempDir::new().expect("tempdir");
    let path = tmp.path().join("no-such-dir").join("out.yaml");
    let err = write_file(&path, "x").expect_err("no directory");
    assert!(matches!(err, ExportCmdError::Write { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("out.yaml") && msg.contains("exists and is writable"),
        "{msg}"
    );
    let missing = tmp.path().join("nope");
    let err = run_retrying(|| args(&missing, ExportFormat::Json, None)).expect_err("no db");
    assert!(err.to_string().contains("no database at"), "{err}");
}

#[test]
fn binary_exit_codes_and_stdout() {
    let (tmp, db) = database();
    // Usage: no --format.
    let out = Command::new(BIN)
        .args(["export", "--db"])
        .arg(&db)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    // Runtime error: one line naming the path.
    let missing = tmp.path().join("missing");
    let out = Command::new(BIN)
        .args(["export", "--format", "json", "--db"])
        .arg(&missing)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing"), "{stderr}");
    // Proposals on stdout; warnings (escaped) on stderr; env vars work.
    let mut ok = None;
    for _ in 0..500 {
        let out = Command::new(BIN)
            .args(["export", "--db"])
            .arg(&db)
            .env("TETRAGON_LEARNER_EXPORT_FORMAT", "proposal")
            .env("TETRAGON_LEARNER_EXPORT_NAMESPACE", "shop")
            .output()
            .expect("runs");
        if String::from_utf8_lossy(&out.stderr).contains("locked") {
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        }
        ok = Some(out);
        break;
    }
    let out = ok.expect("database stayed locked");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let docs = yaml_docs(&String::from_utf8(out.stdout).expect("utf-8"));
    assert_eq!(docs.len(), 2, "only shop's workloads");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "warning: 1 of 3 learners is not ready (1 partial): their allow-lists may miss executables; review them before enforcing; --verbose lists them",
            "warning: 1 executable seen only in kubectl exec sessions is left out of the allow-lists: under enforcement interactive sessions running them will be denied; add --include-exec-sessions to allow them; --verbose lists them",
        ]
    );
}

/// A record seen through both hook views as itself (a plain binary).
fn verified(path: &str) -> ExecutableRecord {
    record(path)
        .view(HookView::Opened, path)
        .view(HookView::Loaded, path)
        .build()
}

/// Many not-ready learners are one stderr line; `--verbose` lists them, one
/// escaped line each, so a hostile key cannot forge a `warning:` line.
#[test]
fn binary_summarises_not_ready_learners_and_lists_them_with_verbose() {
    let mut ps = Vec::new();
    for i in 0..70 {
        let mut p = with(
            Profile::new(
                LearnerKey::new("big", "Deployment", &format!("w{i:02}"), "c"),
                1_000,
            ),
            vec![verified("/bin/app")],
        );
        // 62 stable but partial, 8 complete but still learning.
        if i < 62 {
            p.state = LearnerState::Stable;
            p.partial_reasons.insert(PartialReason::StartedBeforeAgent);
        }
        ps.push(p);
    }
    // 4 locked and complete: ready.
    for i in 70..74 {
        let mut p = with(
            Profile::new(
                LearnerKey::new("big", "Deployment", &format!("w{i:02}"), "c"),
                1_000,
            ),
            vec![verified("/bin/app")],
        );
        p.state = LearnerState::Locked;
        ps.push(p);
    }
    ps.push(with(
        Profile::new(
            LearnerKey::new("big", "Pod", "evil\nwarning: forged", "c"),
            1_000,
        ),
        vec![verified("/bin/app")],
    ));
    let tmp = TempDir::new().expect("tempdir");
    let input = tmp.path().join("cluster.json");
    let json = render(&ps, ExportFormat::Json, &opts()).expect("json");
    std::fs::write(&input, json.text).expect("write");
    let export = |verbose: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "export",
            "--format",
            "tracingpolicy",
            "--selector",
            "workload-label",
            "--input",
        ])
        .arg(&input);
        if verbose {
            cmd.arg("--verbose");
        }
        let out = cmd.output().expect("runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stderr).expect("utf-8")
    };
    let summary = "warning: 71 of 75 learners are not ready (62 partial, 9 still learning): their allow-lists may miss executables; review them before enforcing";
    let info = "info: 75 tracing policies (75 with a pod or namespace filter, Tetragon's limit 128 per node): estimated kernel memory per node 150.9 MiB at 16 CPUs for --hook kprobe (about 2.0 MiB each; budget 256.0 MiB); every node loads every policy";
    assert_eq!(
        export(false),
        format!("{summary}; --verbose lists them\n{info}\n")
    );
    let verbose = export(true);
    let lines: Vec<&str> = verbose.lines().collect();
    assert_eq!(lines.len(), 73, "{verbose}");
    assert_eq!(lines[72], info);
    assert_eq!(lines[0], summary);
    assert_eq!(
        lines[1],
        "  big/Deployment/w00/c: stable, partial (started-before-agent)"
    );
    assert_eq!(
        lines[62],
        "  big/Deployment/w61/c: stable, partial (started-before-agent)"
    );
    assert_eq!(lines[63], "  big/Deployment/w62/c: learning, complete");
    assert_eq!(
        lines[71],
        "  big/Pod/evil\\nwarning: forged/c: learning, complete"
    );
}

/// One workload per way a learned path and the hook's file differ (namespace
/// `cases`, container `c`), and a host learner. Views as Tetragon reports
/// them (see `tests/fixtures/real/hook-events/README.md`).
fn view_cases() -> Vec<Profile> {
    use tetragon_learner::learner::observation::FactSource;
    use HookView::{Loaded, Opened};
    let workload = |name: &str, records: Vec<ExecutableRecord>| {
        let mut p = with(
            Profile::new(LearnerKey::new("cases", "Deployment", name, "c"), 1_000),
            records,
        );
        p.state = LearnerState::Stable;
        p
    };
    let memfd = "/memfd:payload (deleted)";
    let mut host = with(
        Profile::new(LearnerKey::host("node-1"), 1_000),
        vec![
            record("/bin/sh")
                .view(Opened, "/usr/bin/dash")
                .view(Loaded, "/usr/bin/dash")
                .build(),
            record("/t/x.sh")
                .view(Opened, "/t/x.sh")
                .view(Loaded, "/usr/bin/dash")
                .build(),
        ],
    );
    host.state = LearnerState::Stable;
    vec![
        // A symlinked dir: /bin -> usr/bin, sh -> dash; seen opened only.
        workload(
            "symlink",
            vec![record("/bin/sh").view(Opened, "/usr/bin/dash").build()],
        ),
        // A busybox applet farm; cat never seen loaded.
        workload(
            "applets",
            vec![
                record("/bin/ls")
                    .view(Opened, "/bin/busybox")
                    .view(Loaded, "/bin/busybox")
                    .build(),
                record("/bin/cat").view(Opened, "/bin/busybox").build(),
            ],
        ),
        // A #! script: itself when opened, its interpreter when loaded.
        workload(
            "script",
            vec![record("/opt/x.sh")
                .view(Opened, "/opt/x.sh")
                .view(Loaded, "/usr/bin/dash")
                .build()],
        ),
        // A procFS entry: named by /proc/PID/exe, like the loaded file.
        workload(
            "procfs",
            vec![record("/usr/bin/dash")
                .source(FactSource::Snapshot)
                .view(Loaded, "/usr/bin/dash")
                .build()],
        ),
        workload(
            "fileless",
            vec![
                record(memfd)
                    .view(Opened, memfd)
                    .view(Loaded, memfd)
                    .build(),
                record("/usr/bin/python3")
                    .view(Opened, "/usr/bin/python3")
                    .view(Loaded, "/usr/bin/python3")
                    .build(),
            ],
        ),
        // Learned from a snapshot, never seen through a hook.
        workload(
            "unverified",
            vec![record("/usr/local/bin/app")
                .source(FactSource::Snapshot)
                .build()],
        ),
        // Hostile view paths pass through unharmed.
        workload(
            "hostile",
            vec![record("/bin/h")
                .view(Opened, HOSTILE)
                .view(Loaded, &long_path())
                .build()],
        ),
        host,
    ]
}

/// The `values` of each policy for `hook`, by object name.
fn values_by_name(docs: &[Value], hook: PolicyHook) -> Vec<(String, Vec<String>)> {
    let key = match hook {
        PolicyHook::Kprobe => "kprobes",
        PolicyHook::Lsm => "lsmhooks",
        PolicyHook::Tracepoint => "tracepoints",
    };
    docs.iter()
        .map(|d| {
            let values = strings(&d["spec"][key][0]["selectors"][0]["matchArgs"][0]["values"]);
            (
                d["metadata"]["name"].as_str().expect("name").to_string(),
                values.into_iter().map(str::to_owned).collect(),
            )
        })
        .collect()
}

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Each shape lists what its hook compares: the exact lists, written by hand.
#[test]
fn each_shape_lists_the_files_its_hook_compares() {
    let opened = vec![
        (
            "deployment-applets",
            owned(&["/bin/busybox", "/bin/cat", "/bin/ls"]),
        ),
        ("deployment-fileless", owned(&["/usr/bin/python3"])),
        ("deployment-hostile", owned(&[HOSTILE, "/bin/h"])),
        ("deployment-procfs", owned(&["/usr/bin/dash"])),
        ("deployment-script", owned(&["/opt/x.sh"])),
        ("deployment-symlink", owned(&["/bin/sh", "/usr/bin/dash"])),
        ("deployment-unverified", owned(&["/usr/local/bin/app"])),
        (
            "tetragon-learner-host-node-1",
            owned(&["/bin/sh", "/t/x.sh", "/usr/bin/dash"]),
        ),
    ];
    let loaded = vec![
        (
            "deployment-applets",
            owned(&["/bin/busybox", "/bin/cat", "/bin/ls"]),
        ),
        ("deployment-fileless", owned(&["/usr/bin/python3"])),
        (
            "deployment-hostile",
            vec!["/bin/h".to_string(), long_path()],
        ),
        ("deployment-procfs", owned(&["/usr/bin/dash"])),
        ("deployment-script", owned(&["/opt/x.sh", "/usr/bin/dash"])),
        ("deployment-symlink", owned(&["/bin/sh"])),
        ("deployment-unverified", owned(&["/usr/local/bin/app"])),
        (
            "tetragon-learner-host-node-1",
            owned(&["/bin/sh", "/t/x.sh", "/usr/bin/dash"]),
        ),
    ];
    let v = tracing_policy_validator();
    for (hook, want) in [
        (PolicyHook::Kprobe, &opened),
        (PolicyHook::Lsm, &opened),
        (PolicyHook::Tracepoint, &loaded),
    ] {
        for mode in [PolicyMode::Monitor, PolicyMode::Enforce] {
            let o = ExportOptions {
                hook,
                mode,
                ..opts()
            };
            let out = render(&view_cases(), ExportFormat::TracingPolicy, &o).expect("render");
            let docs = yaml_docs(&out.text);
            for d in &docs {
                assert_valid(&v, d);
            }
            let got = values_by_name(&docs, hook);
            let want: Vec<(String, Vec<String>)> = want
                .iter()
                .map(|(n, vs)| (n.to_string(), vs.clone()))
                .collect();
            assert_eq!(got, want, "{hook:?} {mode:?}");
        }
    }
}

/// Executables never seen through the shape's view are named on stderr (one
/// summary, counts per shape), counted in an annotation and listed in the
/// JSON; fileless names are warned about per workload.
#[test]
fn unverified_and_fileless_executables_are_reported_per_shape() {
    let kprobe = render(&view_cases(), ExportFormat::TracingPolicy, &by_label()).expect("render");
    let lines = kprobe.stderr_lines(true);
    assert_eq!(
        lines,
        [
            "warning: 2 exported executables are unverified for --hook kprobe: never seen through its opened view (learned from a snapshot, backfill or an exit, or with observation off), so the allow-list holds the paths they were learned under, which this hook may never compare (a symlink, a script); such workloads need one restart under a monitor-mode policy so the observe policy sees their real paths, before enforcing (unverified per shape: kprobe/lsm: 2, tracepoint: 3)",
            "  cases/Deployment/procfs/c /usr/bin/dash",
            "  cases/Deployment/unverified/c /usr/local/bin/app",
            "warning: 1 workload executes fileless binaries (memfd, /dev/fd, deleted files) that no allow-list can name: under enforcement its policy will deny them (1 name left out)",
            "  cases/Deployment/fileless/c /memfd:payload (deleted)",
            "warning: 1 host learner is exported as a cluster-scoped TracingPolicy without a pod scope: it applies to every host process (and every container process) of every node it is loaded on, not only the node it was learned on; load it only there",
            "  /Host/node-1/ -> TracingPolicy tetragon-learner-host-node-1",
            "info: 8 tracing policies (7 with a pod or namespace filter, Tetragon's limit 128 per node): estimated kernel memory per node 16.1 MiB at 16 CPUs for --hook kprobe (about 2.0 MiB each; budget 256.0 MiB); every node loads every policy",
        ]
    );
    let tracepoint = ExportOptions {
        hook: PolicyHook::Tracepoint,
        ..by_label()
    };
    let out = render(&view_cases(), ExportFormat::TracingPolicy, &tracepoint).expect("render");
    let lines = out.stderr_lines(true);
    assert_eq!(
        lines[..4],
        [
            "warning: 3 exported executables are unverified for --hook tracepoint: never seen through its loaded view (learned from a snapshot, backfill or an exit, or with observation off), so the allow-list holds the paths they were learned under, which this hook may never compare (a symlink, a script); such workloads need one restart under a monitor-mode policy so the observe policy sees their real paths, before enforcing (unverified per shape: kprobe/lsm: 2, tracepoint: 3)",
            "  cases/Deployment/applets/c /bin/cat",
            "  cases/Deployment/symlink/c /bin/sh",
            "  cases/Deployment/unverified/c /usr/local/bin/app",
        ]
    );
    // Annotations: a count where there is something to say.
    let kdocs = yaml_docs(&kprobe.text);
    let tdocs = yaml_docs(&out.text);
    let note = |docs: &[Value], name: &str, key: &str| {
        find(docs, name)["metadata"]["annotations"]
            .get(format!("tetragon-learner.io/{key}"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let procfs_k = note(&kdocs, "deployment-procfs", "unverified").expect("unverified");
    assert!(
        procfs_k.starts_with("1 executable never seen through the opened view (kprobe hook)"),
        "{procfs_k}"
    );
    assert_eq!(note(&tdocs, "deployment-procfs", "unverified"), None);
    let symlink_t = note(&tdocs, "deployment-symlink", "unverified").expect("unverified");
    assert!(
        symlink_t.starts_with("1 executable never seen through the loaded view (tracepoint hook)"),
        "{symlink_t}"
    );
    assert_eq!(note(&kdocs, "deployment-symlink", "unverified"), None);
    let fileless = note(&kdocs, "deployment-fileless", "fileless").expect("fileless");
    assert!(
        fileless.starts_with("1 fileless name executed"),
        "{fileless}"
    );
    // The JSON: `unverified` per profile, derived; fileless names stay listed.
    let json = render(&view_cases(), ExportFormat::Json, &opts()).expect("json");
    let profiles: Vec<Value> = serde_json::from_str(&json.text).expect("json");
    let unverified: Vec<(String, Value)> = profiles
        .iter()
        .map(|p| {
            (
                p["key"]["workload"].as_str().expect("workload").to_string(),
                p.get("unverified").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    assert_eq!(
        unverified,
        [
            (
                "symlink".to_string(),
                serde_json::json!({"loaded": ["/bin/sh"]})
            ),
            (
                "applets".to_string(),
                serde_json::json!({"loaded": ["/bin/cat"]})
            ),
            ("script".to_string(), Value::Null),
            (
                "procfs".to_string(),
                serde_json::json!({"opened": ["/usr/bin/dash"]})
            ),
            ("fileless".to_string(), Value::Null),
            (
                "unverified".to_string(),
                serde_json::json!({"opened": ["/usr/local/bin/app"], "loaded": ["/usr/local/bin/app"]})
            ),
            ("hostile".to_string(), Value::Null),
            ("node-1".to_string(), Value::Null),
        ]
    );
    let fileless_exe = &profiles[4]["executables"][0];
    assert_eq!(fileless_exe["path"], "/memfd:payload (deleted)");
    assert_eq!(
        fileless_exe["opened"],
        serde_json::json!(["/memfd:payload (deleted)"])
    );
    // Hostile view paths round-trip through the JSON exactly.
    let hostile = &profiles[6]["executables"][0];
    assert_eq!(hostile["opened"], serde_json::json!([HOSTILE]));
    assert_eq!(hostile["loaded"], serde_json::json!([long_path()]));
}

const REAL_RAW_KILL: &str = include_str!("fixtures/real/hook-events/policies/enf-raw-kill.yaml");

/// What the live test does: a host learner exported with `--hook tracepoint
/// --mode enforce` through the binary is the shape of the live-tested
/// `enf-raw-kill.yaml`, and only uses spec keys real Tetragon knows.
#[test]
fn the_host_tracepoint_policy_has_the_live_tested_shape() {
    let tmp = TempDir::new().expect("tempdir");
    let input = tmp.path().join("host.json");
    let host: Vec<Profile> = view_cases()
        .into_iter()
        .filter(|p| p.key.workload_kind == "Host")
        .collect();
    let json = render(&host, ExportFormat::Json, &opts()).expect("json");
    std::fs::write(&input, json.text).expect("write");
    let out = Command::new(BIN)
        .args([
            "export",
            "--format",
            "tracingpolicy",
            "--hook",
            "tracepoint",
            "--mode",
            "enforce",
            "--input",
        ])
        .arg(&input)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let docs = yaml_docs(&String::from_utf8(out.stdout).expect("utf-8"));
    assert_eq!(docs.len(), 1);
    let ours = &docs[0];
    assert_valid(&tracing_policy_validator(), ours);
    assert_eq!(ours["kind"], "TracingPolicy");
    assert_eq!(ours["metadata"]["name"], "tetragon-learner-host-node-1");
    let spec = ours["spec"].as_object().expect("spec");
    assert_eq!(
        spec.keys().collect::<Vec<_>>(),
        ["options", "tracepoints"],
        "only keys real Tetragon (and load-confined) knows"
    );
    assert_eq!(
        ours["spec"]["options"],
        serde_json::json!([{"name": "policy-mode", "value": "enforce"}])
    );
    let real: serde_yaml::Value = serde_yaml::from_str(REAL_RAW_KILL).expect("real policy");
    let real = serde_json::to_value(real).expect("as JSON");
    let (theirs, mine) = (
        &real["spec"]["tracepoints"][0],
        &ours["spec"]["tracepoints"][0],
    );
    for k in ["subsystem", "event", "raw", "args"] {
        assert_eq!(mine[k], theirs[k], "{k}");
    }
    let (theirs, mine) = (&theirs["selectors"][0], &mine["selectors"][0]);
    assert_eq!(mine["matchActions"], theirs["matchActions"]);
    for k in ["index", "operator"] {
        assert_eq!(mine["matchArgs"][0][k], theirs["matchArgs"][0][k], "{k}");
    }
    assert_eq!(
        strings(&mine["matchArgs"][0]["values"]),
        ["/bin/sh", "/t/x.sh", "/usr/bin/dash"]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("every host process"), "{stderr}");
}

/// `--group namespace`: one policy per namespace (and the host's), valid
/// against Tetragon's schema, the union of the namespace's lists, selected
/// by a label key every workload carries (`In` its values) or, with none,
/// every pod of the namespace.
#[test]
fn namespace_policies_validate_and_hold_the_union() {
    let v = tracing_policy_validator();
    let packed = ExportOptions {
        group: GroupBy::Namespace,
        ..opts()
    };
    let out = render(&profiles(), ExportFormat::TracingPolicy, &packed).expect("render");
    let docs = yaml_docs(&out.text);
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "namespace-kube-system",
            "namespace-shop",
            "tetragon-learner-host-node-1"
        ]
    );
    for d in &docs {
        assert_valid(&v, d);
    }
    let shop = find(&docs, "namespace-shop");
    // web carries app.kubernetes.io/name and tier, db app and tier: tier is
    // the key both carry.
    assert_eq!(
        shop["spec"]["podSelector"],
        serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["back", "front"]}]})
    );
    assert_eq!(
        strings(&shop["spec"]["containerSelector"]["matchExpressions"][0]["values"]),
        ["envoy", "nginx", "postgres"]
    );
    let values = strings(&shop["spec"]["kprobes"][0]["selectors"][0]["matchArgs"][0]["values"]);
    assert!(values.contains(&"/usr/bin/postgres") && values.contains(&"/usr/sbin/nginx"));
    assert_eq!(
        shop["metadata"]["annotations"]["tetragon-learner.io/workloads"],
        "[\"Deployment/web\",\"StatefulSet/db\"]"
    );
    let lines = out.stderr_lines(true);
    assert!(
        lines.contains(
            &"  StatefulSet shop/db: +5 (1 of its own, 6 in the namespace's list)".to_string()
        ),
        "{lines:#?}"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("info: 3 tracing policies (2 with a pod or namespace filter, Tetragon's limit 128 per node): estimated kernel memory per node 6.0 MiB at 16 CPUs for --hook kprobe (about 2.0 MiB each; budget 256.0 MiB); every node loads every policy")
    );
}
