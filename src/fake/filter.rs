//! Tetragon's allow-list / deny-list semantics, for the subset of filter fields
//! the fake understands (`event_set`, `namespace`, `pid`). A filter matches when
//! every field it sets matches; other fields are not evaluated (documented).
use crate::tetragon::proto::{
    get_events_response::Event, EventType, Filter, GetEventsRequest, GetEventsResponse, Process,
};

pub fn event_type(ev: &GetEventsResponse) -> Option<EventType> {
    match ev.event.as_ref()? {
        Event::ProcessExec(_) => Some(EventType::ProcessExec),
        Event::ProcessExit(_) => Some(EventType::ProcessExit),
        Event::RateLimitInfo(_) => Some(EventType::RateLimitInfo),
    }
}

fn process_of(ev: &GetEventsResponse) -> Option<&Process> {
    match ev.event.as_ref()? {
        Event::ProcessExec(e) => e.process.as_ref(),
        Event::ProcessExit(e) => e.process.as_ref(),
        Event::RateLimitInfo(_) => None,
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
    if !f.pid.is_empty() {
        let pid = process.and_then(|p| p.pid.as_ref()).map(|w| w.value);
        if !pid.is_some_and(|pid| f.pid.contains(&pid)) {
            return false;
        }
    }
    true
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
