//! `--group namespace`: one `TracingPolicyNamespaced` per namespace instead
//! of one per workload, so a cluster stays within Tetragon's 128 filtered
//! policies per node and pays the per-policy kernel memory once per
//! namespace. The price: a namespaced policy has one selector list, so its
//! allow-list is the union of its workloads' lists (and its container
//! selector the union of their container names): every workload of the
//! namespace may run what any of them ran. The export says per workload how
//! many executables it gains.
//!
//! Pod scope (`namespace_selector`): a Kubernetes label selector cannot say
//! "these labels or those", so the union of per-workload selectors is not
//! expressible in general. What is sound:
//! - `--selector workload-label`: `<label> In [<workload>...]`.
//! - learned: a label key that every workload of the namespace carries on all
//!   its pods (well-known keys first), as `<key> In [<their values>]`: every
//!   learned pod matches, and pods of workloads never learned (no such value)
//!   are left alone.
//! - else no `podSelector`: every pod of the namespace (whose containers
//!   have one of the names), including pods of workloads the agent never
//!   learned, which the union list may deny. A warning names such namespaces.
//!
//! The policy is named `namespace-<ns>` (`names::object_name("Namespace",
//! ns)`): no workload kind is `Namespace`, so it never collides with a
//! workload's `<kind>-<workload>`, and the agent recognises it as its own.
use std::collections::{BTreeMap, BTreeSet};

use super::annotations::{annotations, ANNOTATION_PREFIX};
use super::error::ExportError;
use super::grouping::{Workload, WorkloadId};
use super::hook_lists;
use super::k8s::{is_in, LabelSelector, ObjectMeta};
use super::names::{is_label_key, workload_label_value};
use super::options::{ExportOptions, SelectorMode};
use super::policy_spec::{TracingPolicy, API_VERSION, KIND_NAMESPACED};
use super::selector::{ranked_keys, selectable};
use super::shapes::shape_annotations;
use super::tracing_policy::spec;

/// The kind name a namespace policy is named after (`namespace-<ns>`).
pub const NAMESPACE_KIND: &str = "Namespace";

/// What packing a workload into its namespace's policy adds to its list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gain {
    pub id: WorkloadId,
    /// Entries of its own allow-list.
    pub own: usize,
    /// Entries of its namespace's (union) list.
    pub union: usize,
}

/// The namespace policies and what they cost in precision.
#[derive(Debug, Clone, Default)]
pub struct Packed {
    pub policies: Vec<TracingPolicy>,
    /// Per workload, in (namespace, kind, workload) order.
    pub gains: Vec<Gain>,
    /// Namespaces whose policy selects every pod (no common label).
    pub whole_namespace: Vec<String>,
    /// Workloads of namespaces with nothing exportable.
    pub empty: Vec<WorkloadId>,
}

/// The pod selector of a namespace policy holding `ws` (one namespace), and
/// what the `selector` annotation says; `None` selects every pod.
pub fn namespace_selector(
    ws: &[&Workload<'_>],
    opts: &ExportOptions,
) -> Result<(Option<LabelSelector>, String), ExportError> {
    if opts.selector == SelectorMode::WorkloadLabel {
        if !is_label_key(&opts.workload_label) {
            return Err(ExportError::BadLabelKey(opts.workload_label.clone()));
        }
        let values: BTreeSet<String> = ws
            .iter()
            .map(|w| workload_label_value(&w.id.workload))
            .collect();
        return Ok((
            Some(is_in(&opts.workload_label, values)),
            format!(
                "workload-label (--selector workload-label): pods carrying {} with one of the {} workloads' names",
                opts.workload_label,
                ws.len()
            ),
        ));
    }
    let common: Vec<_> = ws.iter().map(|w| selectable(w)).collect();
    let key = common.first().and_then(|first| {
        ranked_keys(first)
            .into_iter()
            .find(|k| common.iter().all(|c| c.contains_key(*k)))
    });
    match key {
        Some(k) => {
            let values: BTreeSet<String> =
                common.iter().filter_map(|c| c.get(k).cloned()).collect();
            Ok((
                Some(is_in(k, values)),
                format!(
                    "learned: {k} In the values the {} workloads' pods carry (every pod of each carried its value)",
                    ws.len()
                ),
            ))
        }
        None => Ok((
            None,
            "whole namespace: no label is carried by every pod of every workload of the namespace, so the policy selects every pod of the namespace (with one of the container names), workloads never learned included".to_string(),
        )),
    }
}

/// One policy per namespace of `workloads` (sorted by namespace).
pub fn namespace_policies(
    workloads: &[Workload<'_>],
    opts: &ExportOptions,
) -> Result<Packed, ExportError> {
    let mut by_ns: BTreeMap<&str, Vec<&Workload<'_>>> = BTreeMap::new();
    for w in workloads {
        by_ns.entry(w.id.namespace.as_str()).or_default().push(w);
    }
    let mut out = Packed::default();
    for (ns, ws) in by_ns {
        let profiles: Vec<_> = ws.iter().flat_map(|w| w.profiles.iter().copied()).collect();
        let view = opts.hook.view();
        let allowed = hook_lists::allow_list(&profiles, opts, view);
        if allowed.is_empty() {
            out.empty.extend(ws.iter().map(|w| w.id.clone()));
            continue;
        }
        for w in &ws {
            out.gains.push(Gain {
                id: w.id.clone(),
                own: hook_lists::allow_list(&w.profiles, opts, view).len(),
                union: allowed.len(),
            });
        }
        let (pods, how) = namespace_selector(&ws, opts)?;
        if pods.is_none() {
            out.whole_namespace.push(ns.to_string());
        }
        let containers: BTreeSet<String> =
            profiles.iter().map(|p| p.key.container.clone()).collect();
        let id = WorkloadId {
            namespace: ns.to_string(),
            kind: NAMESPACE_KIND.to_string(),
            workload: ns.to_string(),
        };
        let all = Workload {
            id: id.clone(),
            profiles: profiles.clone(),
        };
        let key = |k: &str| format!("{ANNOTATION_PREFIX}{k}");
        let mut a = annotations(&all, opts)?;
        a.extend(shape_annotations(
            &profiles,
            opts,
            "union of the namespace's workloads' allow-lists",
        ));
        a.insert(key("selector"), how);
        let members: Vec<String> = ws
            .iter()
            .map(|w| format!("{}/{}", w.id.kind, w.id.workload))
            .collect();
        a.insert(key("workloads"), serde_json::to_string(&members)?);
        a.insert(
            key("scope"),
            format!(
                "one policy for the {} workloads of the namespace (--group namespace): each may run what any of them ran",
                ws.len()
            ),
        );
        out.policies.push(TracingPolicy {
            api_version: API_VERSION.to_string(),
            kind: KIND_NAMESPACED.to_string(),
            metadata: ObjectMeta::for_workload(&id, a),
            spec: spec(allowed, opts, pods, Some(is_in("name", containers))),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::grouping::group_by_workload;
    use crate::learner::key::LearnerKey;
    use crate::learner::observation::{FactSource, Observation};
    use crate::learner::pod_labels::LabelSet;
    use crate::learner::profile::{ExecutableRecord, Profile};

    fn profile(ns: &str, w: &str, c: &str, labels: &[(&str, &str)], exes: &[&str]) -> Profile {
        let mut p = Profile::new(LearnerKey::new(ns, "Deployment", w, c), 0);
        let set: LabelSet = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !labels.is_empty() {
            p.pod_labels.observe(set, &format!("{w}-1"));
        }
        for e in exes {
            let r = ExecutableRecord::first(&Observation {
                path: (*e).into(),
                at: 1,
                source: FactSource::Event,
                exec_probe: false,
                exec_session: false,
            });
            p.executables.insert(r.path.clone(), r);
        }
        p
    }

    #[test]
    fn one_policy_per_namespace_with_the_union_and_a_common_key() {
        let ps = vec![
            profile(
                "shop",
                "web",
                "nginx",
                &[("app", "web"), ("tier", "f")],
                &["/a", "/b"],
            ),
            profile("shop", "db", "pg", &[("app", "db")], &["/c"]),
            profile("blog", "x", "c", &[("app", "x")], &["/x"]),
            profile("blog", "y", "c", &[("k8s-app", "y")], &["/y"]),
        ];
        let (ws, _) = group_by_workload(&ps);
        let out = namespace_policies(&ws, &ExportOptions::default()).expect("packs");
        let names: Vec<&str> = out
            .policies
            .iter()
            .map(|p| p.metadata.name.as_str())
            .collect();
        assert_eq!(names, ["namespace-blog", "namespace-shop"]);
        let shop = &out.policies[1].spec;
        assert_eq!(
            shop.pod_selector,
            Some(is_in("app", ["db".to_string(), "web".to_string()].into()))
        );
        assert_eq!(
            shop.kprobes[0].selectors[0].match_args[0].values,
            ["/a", "/b", "/c"]
        );
        assert_eq!(
            shop.container_selector,
            Some(is_in(
                "name",
                ["nginx".to_string(), "pg".to_string()].into()
            ))
        );
        // blog: no key in common, every pod of the namespace.
        assert_eq!(out.policies[0].spec.pod_selector, None);
        assert_eq!(out.whole_namespace, ["blog"]);
        let db = out
            .gains
            .iter()
            .find(|g| g.id.workload == "db")
            .expect("db");
        assert_eq!((db.own, db.union), (1, 3));
        let by_label = ExportOptions {
            selector: SelectorMode::WorkloadLabel,
            ..ExportOptions::default()
        };
        let out = namespace_policies(&ws, &by_label).expect("packs");
        assert_eq!(
            out.policies[1].spec.pod_selector,
            Some(is_in(
                "tetragon-learner.io/workload",
                ["db".to_string(), "web".to_string()].into()
            ))
        );
    }
}
