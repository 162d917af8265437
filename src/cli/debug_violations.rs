//! `debug violations [KEY]` and `debug policies`: what the agent's exported
//! policies did, and how they stand on this node. Pure renderers over plain
//! data, like the rest of `debug`.
use serde::Serialize;

use super::debug_cmd::{DebugError, Format};
use crate::learner::key::LearnerKey;
use crate::learner::profile::Profile;
use crate::learner::view::ViolationView;
use crate::store::inspect::Table;

#[derive(Serialize)]
struct LearnerViolations<'a> {
    key: &'a LearnerKey,
    active: usize,
    evicted: u64,
    violations: Vec<ViolationView>,
}

/// Every learner with violations (or only `key`'s), newest first.
pub fn render_violations(
    profiles: &[Profile],
    key: Option<&str>,
    format: Format,
) -> Result<String, DebugError> {
    let want = key.map(LearnerKey::parse).transpose()?;
    let list: Vec<LearnerViolations<'_>> = profiles
        .iter()
        .filter(|p| want.as_ref().is_none_or(|k| &p.key == k))
        .filter(|p| want.is_some() || !p.violations.is_empty())
        .map(|p| LearnerViolations {
            key: &p.key,
            active: p.violations.active(),
            evicted: p.violations.evicted,
            violations: ViolationView::list(&p.violations),
        })
        .collect();
    if format == Format::Json {
        return Ok(serde_json::to_string_pretty(&list)? + "\n");
    }
    let mut t = Table::new(&[
        "KEY",
        "ID",
        "MODE",
        "ACK",
        "COUNT",
        "LAST SEEN",
        "POLICY",
        "PATH",
        "CALLER",
    ]);
    for l in &list {
        for v in &l.violations {
            t.push(&[
                l.key.to_string(),
                v.id.clone(),
                v.mode.to_string(),
                if v.acknowledged { "yes" } else { "no" }.to_string(),
                v.count.to_string(),
                v.last_seen.clone(),
                v.policy.clone(),
                v.path.clone(),
                v.caller.clone(),
            ]);
        }
    }
    let mut out = if t.is_empty() {
        "no violations\n".to_string()
    } else {
        t.render()
    };
    for l in list.iter().filter(|l| l.evicted > 0) {
        out.push_str(&format!(
            "{}: {} older violations not kept (the newest {} are)\n",
            crate::store::inspect::escape_for_terminal(&l.key.to_string()),
            l.evicted,
            crate::learner::violation::MAX_VIOLATIONS
        ));
    }
    Ok(out)
}

/// The admin socket's `/v1/policies` answer, as a table or as it is.
pub fn render_policies(value: &serde_json::Value, format: Format) -> Result<String, DebugError> {
    if format == Format::Json {
        return Ok(serde_json::to_string_pretty(value)? + "\n");
    }
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut t = Table::new(&[
        "NAME",
        "NAMESPACE",
        "STATE",
        "MODE",
        "KERNEL MEMORY",
        "ENFORCED",
        "MONITORED",
        "ERROR",
    ]);
    for p in value["policies"].as_array().into_iter().flatten() {
        t.push(&[
            text(&p["name"]),
            text(&p["namespace"]),
            text(&p["state"]),
            text(&p["mode"]),
            text(&p["kernel_memory_bytes"]),
            text(&p["enforced"]),
            text(&p["monitored"]),
            text(&p["error"]),
        ]);
    }
    let mut out = if t.is_empty() {
        "no policy of the agent's is loaded in Tetragon on this node\n".to_string()
    } else {
        t.render()
    };
    let missing: Vec<String> = value["workloads_without_policy"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    if !missing.is_empty() {
        out.push_str(&format!(
            "workloads learned on this node with no policy loaded here: {}\n",
            crate::store::inspect::escape_for_terminal(&missing.join(", "))
        ));
    }
    Ok(out)
}
