//! The v6 body: the v5 body (whose records may hold the `operator` source),
//! then the learner's violations (see the layout in `codec.rs`).
use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::v5::{from_v5_with, to_v5, StoredV5};
use crate::learner::profile::Profile;
use crate::learner::violation::{Violation, ViolationMode, Violations, MAX_VIOLATIONS};

/// Sources v6 knows: all of `SOURCE_CODES`.
const V6_SOURCES: usize = 6;

/// Do not reorder, retype or remove fields; a new format is a new version byte.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredViolationV6<'a> {
    id: Cow<'a, str>,
    policy: Cow<'a, str>,
    path: Cow<'a, str>,
    caller: Cow<'a, str>,
    /// 0 would-deny, 1 denied.
    mode: u8,
    first_seen: u64,
    last_seen: u64,
    count: u64,
    acknowledged: bool,
}

#[derive(Serialize, Deserialize)]
pub(super) struct StoredViolationsV6<'a> {
    list: Vec<StoredViolationV6<'a>>,
    evicted: u64,
}

pub(super) type StoredV6<'a> = (StoredV5<'a>, StoredViolationsV6<'a>);

fn mode_code(m: ViolationMode) -> u8 {
    match m {
        ViolationMode::WouldDeny => 0,
        ViolationMode::Denied => 1,
    }
}

pub(super) fn to_v6(p: &Profile) -> StoredV6<'_> {
    let list = p
        .violations
        .by_id
        .iter()
        .map(|(id, v)| StoredViolationV6 {
            id: Cow::Borrowed(id),
            policy: Cow::Borrowed(&v.policy),
            path: Cow::Borrowed(&v.path),
            caller: Cow::Borrowed(&v.caller),
            mode: mode_code(v.mode),
            first_seen: v.first_seen,
            last_seen: v.last_seen,
            count: v.count,
            acknowledged: v.acknowledged,
        })
        .collect();
    (
        to_v5(p),
        StoredViolationsV6 {
            list,
            evicted: p.violations.evicted,
        },
    )
}

pub(super) fn from_v6((v5, stored): StoredV6<'_>) -> Result<Profile, String> {
    let mut p = from_v5_with(v5, V6_SOURCES)?;
    if stored.list.len() > MAX_VIOLATIONS {
        return Err(format!("{} violations", stored.list.len()));
    }
    let mut out = Violations {
        evicted: stored.evicted,
        ..Default::default()
    };
    for v in stored.list {
        let mode = match v.mode {
            0 => ViolationMode::WouldDeny,
            1 => ViolationMode::Denied,
            other => return Err(format!("unknown violation mode code {other}")),
        };
        let id = v.id.into_owned();
        let violation = Violation {
            policy: v.policy.into_owned(),
            path: v.path.into_owned(),
            caller: v.caller.into_owned(),
            mode,
            first_seen: v.first_seen,
            last_seen: v.last_seen,
            count: v.count,
            acknowledged: v.acknowledged,
        };
        if out.by_id.insert(id.clone(), violation).is_some() {
            return Err(format!("duplicate violation {id:?}"));
        }
    }
    p.violations = out;
    Ok(p)
}
