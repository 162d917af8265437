//! Exported tracing policies on a generated cluster (300 workloads over 40
//! namespaces), checked by an independent oracle (`policy_eval`) reading the
//! YAML back: every learned exec of every workload is allowed by every policy
//! that applies to its pods, no policy applies to another workload's pods,
//! and an exec never learned is denied by the workload's own policy, for
//! every `--selector`, `--group` and `--hook`.
mod common;
mod policy_eval;

use std::collections::{BTreeMap, BTreeSet};

use tetragon_learner::cli::export_cmd::{render, ExportFormat};
use tetragon_learner::export::{
    ExportOptions, GroupBy, PolicyHook, PolicyMode, SelectorMode, DEFAULT_WORKLOAD_LABEL,
};
use tetragon_learner::learner::hook_view::HookView;
use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::learner::pod_labels::learnable_labels;
use tetragon_learner::learner::profile::Profile;

use common::{record, with};
use policy_eval::{evaluate, parse, Pod, Policy, Process, Verdict};

type Labels = BTreeMap<String, String>;

/// One executable: the path it was run as, and the files the kprobe/LSM
/// (`opened`) and the raw tracepoint (`loaded`) compare.
#[derive(Debug, Clone)]
struct Exec {
    path: String,
    opened: String,
    loaded: String,
}

#[derive(Debug, Clone)]
struct Container {
    name: String,
    execs: Vec<Exec>,
}

#[derive(Debug, Clone)]
struct GenWorkload {
    namespace: String,
    kind: &'static str,
    name: String,
    containers: Vec<Container>,
    /// The pods as they run: (name, every label, instance ones included).
    pods: Vec<(String, Labels)>,
    /// Whether its learners learned the pods' labels (false: profiles from
    /// before pod labels were learned).
    labels_learned: bool,
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const KINDS: [&str; 4] = ["Deployment", "StatefulSet", "DaemonSet", "CronJob"];

/// `workloads` workloads over `namespaces` namespaces: label styles
/// `app.kubernetes.io/*`, only `app`, `k8s-app`, custom keys with dots and
/// slashes; some pairs sharing every label (twins); multi-container pods;
/// rollouts (a `version` label that changed); CronJob runs labelled with
/// their Job's name; one workload whose labels were never learned; one
/// CronJob whose pods carry only run labels.
fn cluster(namespaces: usize, workloads: usize) -> Vec<GenWorkload> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out: Vec<GenWorkload> = Vec::new();
    for i in 0..workloads {
        let ns = format!("ns-{:02}", i % namespaces);
        let kind = KINDS[i % KINDS.len()];
        let name = format!("svc{i:03}");
        let style = i % 7;
        let mut common = match style {
            0 | 5 => labels(&[
                ("app.kubernetes.io/name", &name),
                ("app.kubernetes.io/instance", &format!("{name}-prod")),
                ("app.kubernetes.io/part-of", "shop"),
            ]),
            1 | 6 => labels(&[("app", &name), ("tier", "backend")]),
            2 => labels(&[("k8s-app", &name)]),
            3 => labels(&[
                ("example.com/component", &format!("{name}.v1-a")),
                ("team", "payments"),
            ]),
            _ => labels(&[("app.kubernetes.io/name", &name), ("tier", "frontend")]),
        };
        // Twins: every 50th workload copies the labels of the previous
        // workload of its namespace.
        if i % 50 == 49 {
            let prev = out
                .iter()
                .rev()
                .find(|w| w.namespace == ns)
                .expect("a previous workload in the namespace");
            common = prev.pods[0].1.clone();
            for k in [
                "pod-template-hash",
                "controller-revision-hash",
                "statefulset.kubernetes.io/pod-name",
                "job-name",
                "batch.kubernetes.io/job-name",
                "controller-uid",
                "batch.kubernetes.io/controller-uid",
                "version",
            ] {
                common.remove(k);
            }
        }
        let no_selectable = i == 123;
        if no_selectable {
            common = Labels::new();
        }
        let n_pods = 1 + rng.below(3) as usize;
        let mut pods = Vec::new();
        for p in 0..n_pods {
            let mut l = common.clone();
            let pod = match kind {
                "Deployment" => {
                    let hash = if p == 0 { "5d8f7c6b9d" } else { "7f9c4b2a1e" };
                    l.insert("pod-template-hash".into(), hash.into());
                    // A rollout changed the version label.
                    l.insert("version".into(), format!("v{}", 1 + p.min(1)));
                    format!("{name}-{hash}-{p}")
                }
                "StatefulSet" => {
                    let pod = format!("{name}-{p}");
                    l.insert("controller-revision-hash".into(), format!("{name}-6c"));
                    l.insert("statefulset.kubernetes.io/pod-name".into(), pod.clone());
                    pod
                }
                "DaemonSet" => {
                    l.insert("controller-revision-hash".into(), "85bd7".into());
                    format!("{name}-node{p}")
                }
                _ => {
                    let job = format!("{name}-2890{p}");
                    l.insert("job-name".into(), job.clone());
                    l.insert("batch.kubernetes.io/job-name".into(), job.clone());
                    l.insert("controller-uid".into(), format!("uid-{i}-{p}"));
                    format!("{job}-x{p}")
                }
            };
            pods.push((pod, l));
        }
        let mut containers = vec![Container {
            name: "main".into(),
            execs: Vec::new(),
        }];
        if i % 3 == 0 {
            containers.push(Container {
                name: "istio-proxy".into(),
                execs: Vec::new(),
            });
        }
        for (ci, c) in containers.iter_mut().enumerate() {
            let own = format!("/usr/local/bin/{name}-{ci}");
            c.execs.push(Exec {
                path: own.clone(),
                opened: own.clone(),
                loaded: own,
            });
            if rng.below(2) == 0 {
                c.execs.push(Exec {
                    path: "/bin/sh".into(),
                    opened: "/usr/bin/dash".into(),
                    loaded: "/usr/bin/dash".into(),
                });
            }
            if rng.below(3) == 0 {
                let script = format!("/opt/{name}/entry.sh");
                c.execs.push(Exec {
                    path: script.clone(),
                    opened: script,
                    loaded: "/usr/bin/dash".into(),
                });
            }
            for k in 0..rng.below(3) {
                let tool = format!("/usr/bin/tool{}", (i as u64 + k) % 11);
                c.execs.push(Exec {
                    path: tool.clone(),
                    opened: tool.clone(),
                    loaded: tool,
                });
            }
        }
        out.push(GenWorkload {
            namespace: ns,
            kind,
            name,
            containers,
            pods,
            labels_learned: i != 279,
        });
    }
    out
}

/// The learners' profiles of the generated cluster, as the agent keeps them.
fn profiles(cluster: &[GenWorkload]) -> Vec<Profile> {
    let mut out = Vec::new();
    for w in cluster {
        for c in &w.containers {
            let records = c
                .execs
                .iter()
                .map(|e| {
                    record(&e.path)
                        .view(HookView::Opened, &e.opened)
                        .view(HookView::Loaded, &e.loaded)
                        .build()
                })
                .collect();
            let mut p = with(
                Profile::new(
                    LearnerKey::new(&w.namespace, w.kind, &w.name, &c.name),
                    1_000,
                ),
                records,
            );
            if w.labels_learned {
                for (pod, l) in &w.pods {
                    let kept = learnable_labels(l.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                        .expect("learnable");
                    p.pod_labels.observe(kept, pod);
                }
            }
            out.push(p);
        }
    }
    out
}

fn compared(e: &Exec, hook: PolicyHook) -> &str {
    match hook {
        PolicyHook::Kprobe | PolicyHook::Lsm => &e.opened,
        PolicyHook::Tracepoint => &e.loaded,
    }
}

/// What one export did, for the report.
#[derive(Debug, Default)]
struct Outcome {
    policies: usize,
    learned: usize,
    fallback: usize,
    info: String,
    warnings: Vec<String>,
}

fn own_policy_name(w: &GenWorkload, group: GroupBy) -> String {
    match group {
        GroupBy::Workload => format!("{}-{}", w.kind.to_lowercase(), w.name),
        GroupBy::Namespace => format!("namespace-{}", w.namespace),
    }
}

/// Exports `cluster` with `opts` and checks every guarantee with the oracle.
fn check(cluster: &[GenWorkload], opts: &ExportOptions) -> Outcome {
    let ps = profiles(cluster);
    let out = render(&ps, ExportFormat::TracingPolicy, opts).expect("render");
    let policies = parse(&out.text);
    let by_name: BTreeMap<&str, &Policy> = policies.iter().map(|p| (p.name.as_str(), p)).collect();
    assert_eq!(by_name.len(), policies.len(), "policy names collide");
    let mut by_ns: BTreeMap<&str, Vec<&Policy>> = BTreeMap::new();
    for p in &policies {
        by_ns
            .entry(p.namespace.as_deref().unwrap_or(""))
            .or_default()
            .push(p);
    }
    let mut outcome = Outcome {
        policies: policies.len(),
        ..Outcome::default()
    };
    for w in cluster {
        let own_name = own_policy_name(w, opts.group);
        let own = by_name
            .get(own_name.as_str())
            .unwrap_or_else(|| panic!("no policy {own_name}"));
        // The operator follows the export: a policy selecting by the workload
        // label needs that label on the pod template.
        let by_label = own.pod_selector.as_ref().is_some_and(|s| {
            s["matchLabels"].get(DEFAULT_WORKLOAD_LABEL).is_some()
                || s["matchExpressions"][0]["key"] == DEFAULT_WORKLOAD_LABEL
        });
        if opts.group == GroupBy::Workload {
            if by_label {
                outcome.fallback += 1;
            } else {
                outcome.learned += 1;
            }
        }
        let candidates = by_ns.get(w.namespace.as_str()).cloned().unwrap_or_default();
        for (pod, pod_labels) in &w.pods {
            let mut pod_labels = pod_labels.clone();
            if by_label {
                pod_labels.insert(DEFAULT_WORKLOAD_LABEL.into(), w.name.clone());
            }
            for c in &w.containers {
                let process = Process {
                    pod: Some(Pod {
                        namespace: &w.namespace,
                        labels: &pod_labels,
                        container: &c.name,
                    }),
                };
                let applying: Vec<&str> = candidates
                    .iter()
                    .filter(|p| policy_eval::applies(p, &process))
                    .map(|p| p.name.as_str())
                    .collect();
                assert_eq!(
                    applying,
                    [own_name.as_str()],
                    "pod {pod} container {} of {}/{}: the policies applying are its own only",
                    c.name,
                    w.namespace,
                    w.name
                );
                for e in &c.execs {
                    assert_eq!(
                        evaluate(&candidates, &process, compared(e, opts.hook)),
                        Verdict::Allowed,
                        "{}/{} {pod} {}: learned {:?} denied",
                        w.namespace,
                        w.name,
                        c.name,
                        e
                    );
                }
                let never = evaluate(&candidates, &process, "/usr/bin/never-learned");
                let want = vec![own_name.clone()];
                match opts.mode {
                    PolicyMode::Enforce => assert_eq!(never, Verdict::Denied(want)),
                    PolicyMode::Monitor => assert_eq!(never, Verdict::WouldDeny(want)),
                }
            }
        }
    }
    let lines = out.stderr_lines(true);
    outcome.info = lines
        .iter()
        .find(|l| l.starts_with("info: "))
        .cloned()
        .expect("the count and memory line");
    outcome.warnings = lines
        .iter()
        .filter(|l| l.starts_with("warning: "))
        .cloned()
        .collect();
    outcome
}

fn opts(selector: SelectorMode, group: GroupBy, hook: PolicyHook) -> ExportOptions {
    ExportOptions {
        selector,
        group,
        hook,
        mode: PolicyMode::Enforce,
        ..ExportOptions::default()
    }
}

#[test]
fn a_300_workload_cluster_is_selected_by_its_labels_and_packs_into_40_policies() {
    let c = cluster(40, 300);
    assert_eq!(c.len(), 300);
    let kprobe = PolicyHook::Kprobe;
    let learned = check(&c, &opts(SelectorMode::Learned, GroupBy::Workload, kprobe));
    eprintln!("learned/workload: {learned:#?}");
    assert_eq!(learned.policies, 300);
    assert_eq!(learned.learned + learned.fallback, 300);
    // Fallbacks: 5 pairs of twins (10; the sixth pair is in ns-39), the
    // CronJob whose pods carry only run labels, and ns-39, where one
    // workload's labels were never learned: it and its 6 neighbours.
    let fallback_line = learned
        .warnings
        .iter()
        .find(|l| l.contains("no learned pod selector"))
        .expect("fallbacks are warned");
    assert!(
        fallback_line.starts_with("warning: 18 of 300 workloads have no learned pod selector and fall back to the workload label tetragon-learner.io/workload (6 beside a workload without labels learned, 10 sharing all their labels with another workload, 1 without a label all their pods share, 1 without pod labels learned)"),
        "{fallback_line}"
    );
    assert_eq!((learned.learned, learned.fallback), (282, 18));
    assert!(learned
        .warnings
        .iter()
        .any(|l| l.contains("policies with a pod or namespace filter exceed the limit of 128")));
    assert!(
        learned.info.starts_with("info: 300 tracing policies"),
        "{}",
        learned.info
    );

    let packed = check(&c, &opts(SelectorMode::Learned, GroupBy::Namespace, kprobe));
    eprintln!("learned/namespace: {packed:#?}");
    assert_eq!(packed.policies, 40);
    assert!(
        packed.info.starts_with("info: 40 tracing policies"),
        "{}",
        packed.info
    );
    assert!(!packed.warnings.iter().any(|l| l.contains("exceed")));
    assert!(packed
        .warnings
        .iter()
        .any(|l| l.starts_with("warning: --group namespace: ") && l.contains("never ran")));

    let by_label = check(
        &c,
        &opts(SelectorMode::WorkloadLabel, GroupBy::Workload, kprobe),
    );
    assert_eq!((by_label.policies, by_label.fallback), (300, 300));
    let by_label_ns = check(
        &c,
        &opts(SelectorMode::WorkloadLabel, GroupBy::Namespace, kprobe),
    );
    assert_eq!(by_label_ns.policies, 40);
}

#[test]
fn every_hook_and_mode_keeps_the_guarantees_on_a_smaller_cluster() {
    let c = cluster(8, 60);
    for hook in PolicyHook::ALL {
        for group in [GroupBy::Workload, GroupBy::Namespace] {
            for mode in [PolicyMode::Monitor, PolicyMode::Enforce] {
                let o = ExportOptions {
                    mode,
                    ..opts(SelectorMode::Learned, group, hook)
                };
                check(&c, &o);
            }
        }
    }
}

/// Under `--group workload` a workload may not run what only a neighbour
/// ran; under `--group namespace` it may (the gain the warning counts).
#[test]
fn a_neighbours_executable_is_denied_per_workload_and_allowed_per_namespace() {
    let c = cluster(4, 12);
    let ps = profiles(&c);
    let a = &c[0];
    let b = c
        .iter()
        .find(|w| w.namespace == a.namespace && w.name != a.name)
        .expect("a neighbour");
    let theirs = &b.containers[0].execs[0].opened;
    let mine: BTreeSet<&String> = a
        .containers
        .iter()
        .flat_map(|c| c.execs.iter().map(|e| &e.opened))
        .collect();
    assert!(!mine.contains(theirs));
    for (group, want_denied) in [(GroupBy::Workload, true), (GroupBy::Namespace, false)] {
        let out = render(
            &ps,
            ExportFormat::TracingPolicy,
            &opts(SelectorMode::Learned, group, PolicyHook::Kprobe),
        )
        .expect("render");
        let policies = parse(&out.text);
        let refs: Vec<&Policy> = policies.iter().collect();
        let process = Process {
            pod: Some(Pod {
                namespace: &a.namespace,
                labels: &a.pods[0].1,
                container: "main",
            }),
        };
        let v = evaluate(&refs, &process, theirs);
        assert_eq!(
            matches!(v, Verdict::Denied(_)),
            want_denied,
            "{group:?}: {v:?}"
        );
    }
}

/// Label keys and values are carried exactly, quotes included, and a
/// selector on them matches exactly the pods that carry them.
#[test]
fn hostile_label_values_are_carried_exactly() {
    let odd = Labels::from([
        (
            "example.com/owner".to_string(),
            "it's \"q\": #{x} - *a".to_string(),
        ),
        ("app".to_string(), "web".to_string()),
    ]);
    let other = Labels::from([("app".to_string(), "web".to_string())]);
    let mut a = with(
        Profile::new(LearnerKey::new("ns", "Deployment", "a", "c"), 0),
        vec![record("/bin/a").view(HookView::Opened, "/bin/a").build()],
    );
    a.pod_labels.observe(odd.clone(), "a-1");
    let mut b = with(
        Profile::new(LearnerKey::new("ns", "Deployment", "b", "c"), 0),
        vec![record("/bin/b").view(HookView::Opened, "/bin/b").build()],
    );
    b.pod_labels.observe(other.clone(), "b-1");
    let out = render(
        &[a, b],
        ExportFormat::TracingPolicy,
        &opts(SelectorMode::Learned, GroupBy::Workload, PolicyHook::Kprobe),
    )
    .expect("render");
    let policies = parse(&out.text);
    let pa = policies
        .iter()
        .find(|p| p.name == "deployment-a")
        .expect("a");
    assert_eq!(
        pa.pod_selector,
        Some(serde_json::json!({"matchLabels": {"example.com/owner": "it's \"q\": #{x} - *a"}}))
    );
    let refs: Vec<&Policy> = policies.iter().collect();
    let pod = |labels| Process {
        pod: Some(Pod {
            namespace: "ns",
            labels,
            container: "c",
        }),
    };
    assert_eq!(
        evaluate(&refs, &pod(&odd), "/bin/b"),
        Verdict::Denied(vec!["deployment-a".into()])
    );
    // b's pods carry only app=web, which a's pods carry too: b falls back.
    let pb = policies
        .iter()
        .find(|p| p.name == "deployment-b")
        .expect("b");
    assert_eq!(
        pb.pod_selector,
        Some(serde_json::json!({"matchLabels": {DEFAULT_WORKLOAD_LABEL: "b"}}))
    );
    assert_eq!(evaluate(&refs, &pod(&other), "/bin/a"), Verdict::Allowed);
}

/// Every exported name, per workload or per namespace, is one the agent
/// recognises as its own (it follows its policies' events).
#[test]
fn the_agent_recognises_every_exported_name() {
    use tetragon_learner::tetragon::observe::enforcing::is_agents_policy;
    let c = cluster(4, 20);
    let ps = profiles(&c);
    for group in [GroupBy::Workload, GroupBy::Namespace] {
        let o = opts(SelectorMode::Learned, group, PolicyHook::Kprobe);
        let out = render(&ps, ExportFormat::TracingPolicy, &o).expect("render");
        for p in parse(&out.text) {
            let ns = p.namespace.clone().unwrap_or_default();
            assert!(
                is_agents_policy(&p.name, &ns),
                "{group:?}: {} in {ns}",
                p.name
            );
        }
    }
}

/// The flags: `--group namespace` is for tracing policies only, a malformed
/// budget is a usage error, and the count line reflects `--node-cpus`.
#[test]
fn binary_flags_for_selectors_groups_and_limits() {
    const BIN: &str = env!("CARGO_BIN_EXE_tetragon-learner");
    let tmp = tempfile::TempDir::new().expect("tempdir");
    let input = tmp.path().join("cluster.json");
    let json = render(
        &profiles(&cluster(4, 20)),
        ExportFormat::Json,
        &ExportOptions::default(),
    )
    .expect("json");
    std::fs::write(&input, json.text).expect("write");
    let run = |extra: &[&str]| {
        std::process::Command::new(BIN)
            .args(["export", "--input"])
            .arg(&input)
            .args(extra)
            .output()
            .expect("runs")
    };
    let out = run(&["--format", "proposal", "--group", "namespace"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--group namespace applies to --format tracingpolicy only"));
    let out = run(&[
        "--format",
        "tracingpolicy",
        "--kernel-memory-budget",
        "lots",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a size"));
    let out = run(&[
        "--format",
        "tracingpolicy",
        "--group",
        "namespace",
        "--node-cpus",
        "96",
        "--hook",
        "tracepoint",
    ]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let info: Vec<&str> = stderr.lines().filter(|l| l.starts_with("info: ")).collect();
    assert_eq!(
        info,
        ["info: 4 tracing policies (4 with a pod or namespace filter, Tetragon's limit 128 per node): estimated kernel memory per node 12.2 MiB at 96 CPUs for --hook tracepoint (about 3.1 MiB each; budget 256.0 MiB); every node loads every policy"]
    );
    assert_eq!(
        policy_eval::parse(&String::from_utf8_lossy(&out.stdout)).len(),
        4
    );
    let out = run(&[
        "--format",
        "tracingpolicy",
        "--max-policies",
        "10",
        "--kernel-memory-budget",
        "1MiB",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "warning: 20 policies with a pod or namespace filter exceed the limit of 10 per node"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("exceeds the budget of 1.0 MiB (--kernel-memory-budget)"),
        "{stderr}"
    );
}

/// `--workload` selects what is written, not what a selector is told apart
/// from: every workload of the namespace still counts.
#[test]
fn a_selection_is_told_apart_from_the_whole_namespace() {
    use tetragon_learner::cli::export_cmd::render_in;
    let mk = |name: &str, tier: &str| {
        let mut p = with(
            Profile::new(LearnerKey::new("ns", "Deployment", name, "c"), 0),
            vec![record("/bin/x").view(HookView::Opened, "/bin/x").build()],
        );
        p.pod_labels.observe(
            labels(&[("team", "x"), ("role", "api"), ("tier", tier)]),
            &format!("{name}-1"),
        );
        p
    };
    let all = vec![mk("a", "1"), mk("b", "2")];
    let only_a = vec![all[0].clone()];
    let o = opts(SelectorMode::Learned, GroupBy::Workload, PolicyHook::Kprobe);
    for format in [ExportFormat::TracingPolicy, ExportFormat::Proposal] {
        let out = render_in(&all, &only_a, format, &o).expect("render");
        let docs = policy_eval::documents(&out.text);
        assert_eq!(docs.len(), 1);
        let sel = docs[0]["spec"]
            .get("podSelector")
            .unwrap_or(&docs[0]["spec"]["selector"]);
        assert_eq!(
            sel,
            &serde_json::json!({"matchLabels": {"tier": "1"}}),
            "{format:?}"
        );
        // Alone, `role: api` would have been chosen, and it selects b's pods.
        let alone = render(&only_a, format, &o).expect("render");
        assert!(alone.text.contains("role: api"), "{}", alone.text);
    }
}
