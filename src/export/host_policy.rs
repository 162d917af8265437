//! A host learner (`--learn-host-processes`, key kind `Host`) as a Tetragon
//! `TracingPolicy`: cluster-scoped (no namespace), with no pod or container
//! selector, the same three shapes as a workload's policy. Named
//! `tetragon-learner-host-<node>` (`names::host_policy_name`), so it never
//! collides with a workload's `<kind>-<workload>`.
//!
//! Such a policy has no pod scope: it applies to every process of every node
//! it is loaded on (container processes included), so load it only where
//! that node's host allow-list is meant to hold (the annotations and the
//! stderr warning say so).
use crate::learner::profile::Profile;

use super::annotations::{annotations, ANNOTATION_PREFIX};
use super::error::ExportError;
use super::grouping::{Workload, WorkloadId};
use super::hook_lists;
use super::k8s::ObjectMeta;
use super::names::host_policy_name;
use super::options::ExportOptions;
use super::policy_spec::{TracingPolicy, API_VERSION, KIND_CLUSTER};
use super::shapes::shape_annotations;
use super::tracing_policy::spec;

/// What the `scope` annotation and the stderr warning say of a host policy.
pub const HOST_SCOPE: &str = "a cluster-scoped TracingPolicy without a pod scope: it applies to every host process (and every container process) of every node it is loaded on, not only the node it was learned on; load it only there";

/// The host learner `p`'s policy, or `None` when its allow-list is empty.
pub fn host_policy(
    p: &Profile,
    opts: &ExportOptions,
) -> Result<Option<TracingPolicy>, ExportError> {
    let w = Workload {
        id: WorkloadId::of_host(p),
        profiles: vec![p],
    };
    let allowed = hook_lists::allow_list(&w.profiles, opts, opts.hook.view());
    if allowed.is_empty() {
        return Ok(None);
    }
    let mut a = annotations(&w, opts)?;
    a.extend(shape_annotations(&w.profiles, opts, "host processes"));
    a.insert(format!("{ANNOTATION_PREFIX}scope"), HOST_SCOPE.to_string());
    Ok(Some(TracingPolicy {
        api_version: API_VERSION.to_string(),
        kind: KIND_CLUSTER.to_string(),
        metadata: ObjectMeta::cluster_scoped(host_policy_name(&p.key.workload), a),
        spec: spec(allowed, opts, None, None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::enforcement::PolicyHook;
    use crate::learner::hook_view::HookView;
    use crate::learner::key::LearnerKey;
    use crate::learner::observation::{FactSource, Observation};
    use crate::learner::profile::ExecutableRecord;

    #[test]
    fn a_host_learner_is_a_cluster_scoped_policy_without_pod_scope() {
        let mut p = Profile::new(LearnerKey::host("node-1"), 0);
        let mut r = ExecutableRecord::first(&Observation {
            path: "/bin/sh".into(),
            at: 1,
            source: FactSource::Event,
            exec_probe: false,
            exec_session: false,
        });
        r.views.add(HookView::Loaded, "/usr/bin/dash");
        p.executables.insert(r.path.clone(), r);
        let opts = ExportOptions {
            hook: PolicyHook::Tracepoint,
            ..ExportOptions::default()
        };
        let tp = host_policy(&p, &opts).expect("renders").expect("a policy");
        assert_eq!(tp.kind, "TracingPolicy");
        assert_eq!(tp.metadata.name, "tetragon-learner-host-node-1");
        assert_eq!(tp.metadata.namespace, "");
        assert!(tp.spec.pod_selector.is_none() && tp.spec.container_selector.is_none());
        assert_eq!(
            tp.spec.tracepoints[0].selectors[0].match_args[0].values,
            ["/bin/sh", "/usr/bin/dash"]
        );
        assert_eq!(
            tp.metadata.annotations["tetragon-learner.io/scope"],
            HOST_SCOPE
        );
        let empty = Profile::new(LearnerKey::host("node-2"), 0);
        assert_eq!(host_policy(&empty, &opts).expect("renders"), None);
    }
}
