//! Pure decisions of a loaded policy: does a hook's selector fire for these
//! argument values, with which action; is a container in a policy's scope.
use std::collections::BTreeMap;

use super::policy_spec::{Action, LabelSelector, MatchArg, PolicyObject, Selector};

/// What a hook does on one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The event's `action`: the enforcing action if the selector holds one,
    /// else Post.
    pub action: Action,
    /// Whether an event is sent.
    pub post: bool,
    /// `argError` of an Override.
    pub arg_error: Option<i32>,
}

/// The hook families, which differ in what they post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookFamily {
    /// kprobes and tracepoints: a hook without selectors posts every call, a
    /// matching selector posts unless it says NoPost.
    Kprobe,
    /// LSM hooks: nothing without selectors; a matching selector posts only
    /// with a Post or an enforcing action (real: lsm-observe-noselector posts
    /// nothing, lsm-observe-post does).
    Lsm,
}

/// Whether one matchArgs entry holds for `value`.
pub fn arg_matches(m: &MatchArg, value: &str) -> bool {
    let v = m.values.iter();
    match m.operator.as_str() {
        "Equal" => v.clone().any(|x| x == value),
        "NotEqual" => v.clone().all(|x| x != value),
        "Prefix" => v.clone().any(|x| value.starts_with(x.as_str())),
        "NotPrefix" => v.clone().all(|x| !value.starts_with(x.as_str())),
        "Postfix" => v.clone().any(|x| value.ends_with(x.as_str())),
        "NotPostfix" => v.clone().all(|x| !value.ends_with(x.as_str())),
        _ => false,
    }
}

fn selector_matches<'a>(s: &Selector, arg: &impl Fn(u32) -> Option<&'a str>) -> bool {
    s.match_args
        .iter()
        .all(|m| arg(m.index).is_some_and(|v| arg_matches(m, v)))
}

/// What a hook with these selectors does for a call whose declared argument
/// `index` has value `arg(index)`. `None`: nothing happens.
pub fn decide<'a>(
    selectors: &[Selector],
    family: HookFamily,
    arg: impl Fn(u32) -> Option<&'a str>,
) -> Option<Decision> {
    if selectors.is_empty() {
        return (family == HookFamily::Kprobe).then_some(Decision {
            action: Action::Post,
            post: true,
            arg_error: None,
        });
    }
    let s = selectors.iter().find(|s| selector_matches(s, &arg))?;
    let actions: Vec<(Action, Option<i32>)> = s
        .match_actions
        .iter()
        .filter_map(|a| Action::parse(&a.action).map(|x| (x, a.arg_error)))
        .collect();
    let enforcing = actions
        .iter()
        .find(|(a, _)| matches!(a, Action::Override | Action::Sigkill))
        .copied();
    let has = |x: Action| actions.iter().any(|(a, _)| *a == x);
    let post = match family {
        HookFamily::Kprobe => !has(Action::NoPost),
        HookFamily::Lsm => has(Action::Post) || enforcing.is_some(),
    };
    if !post && enforcing.is_none() {
        return None;
    }
    Some(Decision {
        action: enforcing.map_or(Action::Post, |(a, _)| a),
        post,
        arg_error: enforcing.and_then(|(_, e)| e),
    })
}

/// Kubernetes label selector semantics (matchLabels and matchExpressions
/// In, NotIn, Exists, DoesNotExist, all ANDed).
pub fn labels_match(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().all(|e| {
            let got = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => got.is_some_and(|g| e.values.contains(g)),
                "NotIn" => !got.is_some_and(|g| e.values.contains(g)),
                "Exists" => got.is_some(),
                "DoesNotExist" => got.is_none(),
                _ => false,
            }
        })
}

/// A pod's identity as a policy filter sees it.
pub struct PodView<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub container: &'a str,
}

/// Whether a loaded policy acts on a process of `pod` (None: a host process).
/// Outside Kubernetes every policy is node-wide (a TracingPolicyNamespaced
/// without selectors has FILTERID 0). In Kubernetes a TracingPolicy without
/// pod/container selectors is node-wide; otherwise only pods of its namespace
/// (if namespaced) whose labels and container name (`name`) match.
pub fn applies_to(policy: &PolicyObject, in_kubernetes: bool, pod: Option<&PodView>) -> bool {
    let ns = policy.namespace();
    let spec = &policy.spec;
    if !in_kubernetes
        || (ns.is_empty() && spec.pod_selector.is_none() && spec.container_selector.is_none())
    {
        return true;
    }
    let Some(pod) = pod else { return false };
    if !ns.is_empty() && pod.namespace != ns {
        return false;
    }
    let container = BTreeMap::from([("name".to_string(), pod.container.to_string())]);
    spec.pod_selector
        .as_ref()
        .is_none_or(|s| labels_match(s, pod.labels))
        && spec
            .container_selector
            .as_ref()
            .is_none_or(|s| labels_match(s, &container))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> PolicyObject {
        PolicyObject::from_yaml(yaml).unwrap()
    }

    fn hook_selectors(p: &PolicyObject) -> Vec<Selector> {
        p.spec
            .kprobes
            .first()
            .map(|k| k.selectors.clone())
            .or_else(|| p.spec.lsmhooks.first().map(|l| l.selectors.clone()))
            .unwrap()
    }

    const ALLOWLIST: &str = "kind: TracingPolicy\nmetadata: {name: a}\nspec:\n  kprobes:\n  - call: security_bprm_creds_for_exec\n    args: [{index: 0, type: linux_binprm}]\n    selectors:\n    - matchArgs: [{index: 0, operator: NotEqual, values: [/bin/busybox, /t/x.sh]}]\n      matchActions: [{action: Override, argError: -1}]\n";

    #[test]
    fn a_not_equal_allow_list_fires_only_off_the_list() {
        let p = policy(ALLOWLIST);
        let s = hook_selectors(&p);
        assert_eq!(
            decide(&s, HookFamily::Kprobe, |_| Some("/bin/busybox")),
            None
        );
        assert_eq!(
            decide(&s, HookFamily::Kprobe, |_| Some("/t/unlisted")),
            Some(Decision {
                action: Action::Override,
                post: true,
                arg_error: Some(-1)
            })
        );
        // An argument the hook does not have never matches.
        assert_eq!(decide(&s, HookFamily::Kprobe, |_| None), None);
    }

    #[test]
    fn hooks_without_selectors_post_except_lsm() {
        let post = Decision {
            action: Action::Post,
            post: true,
            arg_error: None,
        };
        assert_eq!(decide(&[], HookFamily::Kprobe, |_| None), Some(post));
        assert_eq!(decide(&[], HookFamily::Lsm, |_| None), None);
        let with_post = vec![Selector {
            match_actions: vec![super::super::policy_spec::MatchAction {
                action: "Post".into(),
                arg_error: None,
            }],
            ..Selector::default()
        }];
        assert_eq!(decide(&with_post, HookFamily::Lsm, |_| None), Some(post));
        let bare = vec![Selector::default()];
        assert_eq!(decide(&bare, HookFamily::Lsm, |_| None), None);
        assert_eq!(decide(&bare, HookFamily::Kprobe, |_| None), Some(post));
    }

    #[test]
    fn operators() {
        let m = |op: &str| MatchArg {
            index: 0,
            operator: op.into(),
            values: vec!["/usr/".into(), "/x".into()],
        };
        assert!(arg_matches(&m("Prefix"), "/usr/bin/id"));
        assert!(!arg_matches(&m("NotPrefix"), "/usr/bin/id"));
        assert!(arg_matches(&m("Postfix"), "/a/x"));
        assert!(arg_matches(&m("NotPostfix"), "/a/y"));
        assert!(arg_matches(&m("Equal"), "/x"));
        assert!(!arg_matches(&m("NotEqual"), "/x"));
    }

    #[test]
    fn namespaced_scope_with_pod_and_container_selectors() {
        let p = policy("kind: TracingPolicyNamespaced\nmetadata: {name: a, namespace: shop}\nspec:\n  podSelector:\n    matchLabels: {app: web}\n    matchExpressions: [{key: tier, operator: NotIn, values: [debug]}]\n  containerSelector:\n    matchExpressions: [{key: name, operator: In, values: [nginx]}]\n");
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let pod = |ns, c| PodView {
            namespace: ns,
            labels: &labels,
            container: c,
        };
        assert!(applies_to(&p, true, Some(&pod("shop", "nginx"))));
        assert!(!applies_to(&p, true, Some(&pod("shop", "sidecar"))));
        assert!(!applies_to(&p, true, Some(&pod("other", "nginx"))));
        assert!(!applies_to(&p, true, None));
        let node_wide = policy(ALLOWLIST);
        assert!(applies_to(&node_wide, true, None));
        let ns_only =
            policy("kind: TracingPolicyNamespaced\nmetadata: {name: a, namespace: shop}\n");
        assert!(applies_to(&ns_only, true, Some(&pod("shop", "x"))));
        assert!(!applies_to(&ns_only, true, Some(&pod("bank", "x"))));
        // Outside Kubernetes it filters nothing (FILTERID 0).
        assert!(applies_to(&ns_only, false, Some(&pod("bank", "x"))));
    }

    #[test]
    fn label_expressions() {
        let labels = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let sel = |op: &str, key: &str| LabelSelector {
            match_expressions: vec![super::super::policy_spec::LabelExpression {
                key: key.into(),
                operator: op.into(),
                values: vec!["1".into()],
            }],
            ..LabelSelector::default()
        };
        assert!(labels_match(&sel("Exists", "a"), &labels));
        assert!(labels_match(&sel("DoesNotExist", "b"), &labels));
        assert!(labels_match(&sel("In", "a"), &labels));
        assert!(!labels_match(&sel("NotIn", "a"), &labels));
        assert!(labels_match(&sel("NotIn", "b"), &labels));
    }
}
