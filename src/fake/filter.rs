//! Tetragon's allow-list / deny-list semantics, for the subset of filter fields
//! the fake understands (`event_set`, `namespace`, `pid`, `policy_names`). A
//! filter matches when every field it sets matches; a request setting another
//! field is refused (documented).
use crate::tetragon::proto::{
    get_events_response::Event, EventType, Filter, GetEventsRequest, GetEventsResponse, Process,
};

pub fn event_type(ev: &GetEventsResponse) -> Option<EventType> {
    match ev.event.as_ref()? {
        Event::ProcessExec(_) => Some(EventType::ProcessExec),
        Event::ProcessExit(_) => Some(EventType::ProcessExit),
        Event::ProcessKprobe(_) => Some(EventType::ProcessKprobe),
        Event::ProcessTracepoint(_) => Some(EventType::ProcessTracepoint),
        Event::ProcessLsm(_) => Some(EventType::ProcessLsm),
        Event::RateLimitInfo(_) => Some(EventType::RateLimitInfo),
    }
}

fn process_of(ev: &GetEventsResponse) -> Option<&Process> {
    match ev.event.as_ref()? {
        Event::ProcessExec(e) => e.process.as_ref(),
        Event::ProcessExit(e) => e.process.as_ref(),
        Event::ProcessKprobe(e) => e.process.as_ref(),
        Event::ProcessTracepoint(e) => e.process.as_ref(),
        Event::ProcessLsm(e) => e.process.as_ref(),
        Event::RateLimitInfo(_) => None,
    }
}

fn policy_name(ev: &GetEventsResponse) -> &str {
    match ev.event.as_ref() {
        Some(Event::ProcessKprobe(e)) => &e.policy_name,
        Some(Event::ProcessTracepoint(e)) => &e.policy_name,
        Some(Event::ProcessLsm(e)) => &e.policy_name,
        _ => "",
    }
}

fn filter_matches(f: &Filter, ev: &GetEventsResponse) -> bool {
    let Some(kind) = event_type(ev) else {
        return false;
    };
    if !f.event_set.is_empty() && !f.event_set.contains(&(kind as i32)) {
        return false;
    }
    let process = process_of(ev);
    if !f.namespace.is_empty() {
        let ns = process
            .and_then(|p| p.pod.as_ref())
            .map(|p| p.namespace.as_str())
            .unwrap_or("");
        if !f.namespace.iter().any(|n| n == ns) {
            return false;
        }
    }
    // Tetragon (`pkg/filters/policies.go`): the event's policy name, which
    // only kprobe, tracepoint, uprobe and LSM events have, must be listed; an
    // event without one (exec, exit) never matches.
    if !f.policy_names.is_empty() {
        let name = policy_name(ev);
        if name.is_empty() || !f.policy_names.iter().any(|n| n == name) {
            return false;
        }
    }
    if !f.pid.is_empty() {
        let pid = process.and_then(|p| p.pid.as_ref()).map(|w| w.value);
        if !pid.is_some_and(|pid| f.pid.contains(&pid)) {
            return false;
        }
    }
    // Tetragon: only a policy event (kprobe, tracepoint, LSM, uprobe) can
    // match a filter that names policies.
    if !f.policy_names.is_empty() {
        let name = match ev.event.as_ref() {
            Some(Event::ProcessKprobe(e)) => Some(&e.policy_name),
            Some(Event::ProcessTracepoint(e)) => Some(&e.policy_name),
            Some(Event::ProcessLsm(e)) => Some(&e.policy_name),
            _ => None,
        };
        if !name.is_some_and(|n| f.policy_names.contains(n)) {
            return false;
        }
    }
    true
}

/// Filter fields the fake does not evaluate, set in `f`. The fake refuses such
/// requests rather than match wider than Tetragon would.
pub fn unsupported_fields(f: &Filter) -> Vec<&'static str> {
    let checks: [(&'static str, bool); 12] = [
        ("binary_regex", !f.binary_regex.is_empty()),
        ("health_check", f.health_check.is_some()),
        ("pid_set", !f.pid_set.is_empty()),
        ("pod_regex", !f.pod_regex.is_empty()),
        ("arguments_regex", !f.arguments_regex.is_empty()),
        ("labels", !f.labels.is_empty()),
        ("parent_binary_regex", !f.parent_binary_regex.is_empty()),
        ("cel_expression", !f.cel_expression.is_empty()),
        (
            "parent_arguments_regex",
            !f.parent_arguments_regex.is_empty(),
        ),
        ("container_id", !f.container_id.is_empty()),
        ("in_init_tree", f.in_init_tree.is_some()),
        ("ancestor_binary_regex", !f.ancestor_binary_regex.is_empty()),
    ];
    checks
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name)
        .collect()
}

/// Tetragon sends an event when it passes the allow-list (empty = everything)
/// and matches no deny-list filter.
pub fn passes(req: &GetEventsRequest, ev: &GetEventsResponse) -> bool {
    let allowed = req.allow_list.is_empty() || req.allow_list.iter().any(|f| filter_matches(f, ev));
    allowed && !req.deny_list.iter().any(|f| filter_matches(f, ev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tetragon::proto::{ProcessExec, ProcessExit, RateLimitInfo};

    fn ev(e: Event) -> GetEventsResponse {
        GetEventsResponse {
            event: Some(e),
            ..Default::default()
        }
    }

    #[test]
    fn allow_list_by_event_set() {
        let req = GetEventsRequest {
            allow_list: vec![Filter {
                event_set: vec![EventType::ProcessExec as i32],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(passes(
            &req,
            &ev(Event::ProcessExec(ProcessExec::default()))
        ));
        assert!(!passes(
            &req,
            &ev(Event::ProcessExit(ProcessExit::default()))
        ));
        assert!(!passes(
            &req,
            &ev(Event::RateLimitInfo(RateLimitInfo::default()))
        ));
        assert!(passes(
            &GetEventsRequest::default(),
            &ev(Event::ProcessExit(ProcessExit::default()))
        ));
    }

    #[test]
    fn unevaluated_fields_are_named() {
        let f = Filter {
            pod_regex: vec!["x".into()],
            event_set: vec![1],
            ..Default::default()
        };
        assert_eq!(unsupported_fields(&f), vec!["pod_regex"]);
        assert!(unsupported_fields(&Filter::default()).is_empty());
    }

    #[test]
    fn policy_names_match_only_policy_events_of_those_policies() {
        use crate::tetragon::proto::{ProcessKprobe, ProcessLsm, ProcessTracepoint};
        let req = GetEventsRequest {
            allow_list: vec![Filter {
                policy_names: vec!["a".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let kprobe = |name: &str| {
            ev(Event::ProcessKprobe(ProcessKprobe {
                policy_name: name.into(),
                ..Default::default()
            }))
        };
        assert!(passes(&req, &kprobe("a")));
        assert!(!passes(&req, &kprobe("b")));
        assert!(passes(
            &req,
            &ev(Event::ProcessLsm(ProcessLsm {
                policy_name: "a".into(),
                ..Default::default()
            }))
        ));
        assert!(passes(
            &req,
            &ev(Event::ProcessTracepoint(ProcessTracepoint {
                policy_name: "a".into(),
                ..Default::default()
            }))
        ));
        assert!(!passes(
            &req,
            &ev(Event::ProcessExec(ProcessExec::default()))
        ));
        // As a deny filter it keeps execs and other policies' events.
        let deny = GetEventsRequest {
            deny_list: req.allow_list.clone(),
            ..Default::default()
        };
        assert!(passes(
            &deny,
            &ev(Event::ProcessExec(ProcessExec::default()))
        ));
        assert!(!passes(&deny, &kprobe("a")));
        assert!(passes(&deny, &kprobe("b")));
    }

    #[test]
    fn deny_list_wins() {
        let req = GetEventsRequest {
            deny_list: vec![Filter {
                event_set: vec![EventType::ProcessExit as i32],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(!passes(
            &req,
            &ev(Event::ProcessExit(ProcessExit::default()))
        ));
        assert!(passes(
            &req,
            &ev(Event::ProcessExec(ProcessExec::default()))
        ));
    }
}
