//! The v3 body (see the layout in `codec.rs`). Mirror structs of primitive
//! fields only, converted field by field: a change to `Profile` fails to
//! compile here instead of silently changing the format.
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{
    reason_bits, reason_code, reasons_from_bits, source_code, state_code, REASON_CODES,
    SOURCE_CODES, STATE_CODES,
};
use crate::learner::completeness::{Instance, Tracking};
use crate::learner::key::LearnerKey;
use crate::learner::observation::FactSource;
use crate::learner::profile::{ExecutableRecord, Profile};

/// Do not reorder, retype or remove fields; a new format is a new version byte.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredProfileV3<'a> {
    namespace: Cow<'a, str>,
    workload_kind: Cow<'a, str>,
    workload: Cow<'a, str>,
    container: Cow<'a, str>,
    state: u8,
    created_at: u64,
    learning_since: u64,
    last_new_at: u64,
    executables: Vec<StoredRecordV3<'a>>,
    deviations: Vec<StoredRecordV3<'a>>,
    drift_count: u64,
    partial_reasons: u8,
    instances: Vec<StoredInstanceV3<'a>>,
    gap_at: Option<u64>,
    healed_at: Vec<(u8, u64)>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct StoredRecordV3<'a> {
    path: Cow<'a, str>,
    first_seen: u64,
    last_seen: u64,
    count: u64,
    sources: u8,
    source: u8,
    flags: u8,
}

#[derive(Serialize, Deserialize)]
pub(super) struct StoredInstanceV3<'a> {
    id: Cow<'a, str>,
    started_at: Option<u64>,
    first_seen: u64,
    last_seen: u64,
    gone_at: Option<u64>,
    flags: u8,
}

const FLAG_EXEC_PROBE: u8 = 1;
const FLAG_EXEC_SESSION: u8 = 1 << 1;
const FLAG_SEEN_FROM_START: u8 = 1;

fn record_to_v3<'a>(path: &'a str, r: &ExecutableRecord) -> StoredRecordV3<'a> {
    let mut flags = 0;
    if r.exec_probe {
        flags |= FLAG_EXEC_PROBE;
    }
    if r.exec_session {
        flags |= FLAG_EXEC_SESSION;
    }
    StoredRecordV3 {
        path: Cow::Borrowed(path),
        first_seen: r.first_seen,
        last_seen: r.last_seen,
        count: r.count,
        sources: r
            .sources
            .iter()
            .fold(0u8, |bits, s| bits | 1 << source_code(*s)),
        source: source_code(r.source),
        flags,
    }
}

fn source_of(code: u8, what: &str) -> Result<FactSource, String> {
    SOURCE_CODES
        .get(usize::from(code))
        .copied()
        .ok_or_else(|| format!("unknown source code {code} in {what}"))
}

fn records_from_v3(
    what: &str,
    stored: Vec<StoredRecordV3<'_>>,
) -> Result<BTreeMap<String, ExecutableRecord>, String> {
    let known_sources = (1u8 << SOURCE_CODES.len()) - 1;
    let mut out = BTreeMap::new();
    for r in stored {
        if r.flags & !(FLAG_EXEC_PROBE | FLAG_EXEC_SESSION) != 0 {
            return Err(format!("unknown flag bits {:#04x} in {what}", r.flags));
        }
        if r.sources & !known_sources != 0 {
            return Err(format!("unknown source bits {:#04x} in {what}", r.sources));
        }
        let sources: BTreeSet<FactSource> = SOURCE_CODES
            .iter()
            .enumerate()
            .filter(|(i, _)| r.sources & 1 << i != 0)
            .map(|(_, s)| *s)
            .collect();
        let path = r.path.into_owned();
        let rec = ExecutableRecord {
            path: path.clone(),
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            count: r.count,
            source: source_of(r.source, what)?,
            sources,
            exec_probe: r.flags & FLAG_EXEC_PROBE != 0,
            exec_session: r.flags & FLAG_EXEC_SESSION != 0,
            views: Default::default(),
        };
        if let Some(dup) = out.insert(path, rec) {
            return Err(format!("duplicate path {:?} in {what}", dup.path));
        }
    }
    Ok(out)
}

fn records_to_v3(m: &BTreeMap<String, ExecutableRecord>) -> Vec<StoredRecordV3<'_>> {
    m.iter().map(|(path, r)| record_to_v3(path, r)).collect()
}

pub(super) fn to_v3(p: &Profile) -> StoredProfileV3<'_> {
    let t = &p.tracking;
    StoredProfileV3 {
        namespace: Cow::Borrowed(&p.key.namespace),
        workload_kind: Cow::Borrowed(&p.key.workload_kind),
        workload: Cow::Borrowed(&p.key.workload),
        container: Cow::Borrowed(&p.key.container),
        state: state_code(p.state),
        created_at: p.created_at,
        learning_since: p.learning_since,
        last_new_at: p.last_new_at,
        executables: records_to_v3(&p.executables),
        deviations: records_to_v3(&p.deviations),
        drift_count: p.drift_count,
        partial_reasons: reason_bits(&p.partial_reasons),
        instances: t
            .instances
            .iter()
            .map(|(id, i)| StoredInstanceV3 {
                id: Cow::Borrowed(id),
                started_at: i.started_at,
                first_seen: i.first_seen,
                last_seen: i.last_seen,
                gone_at: i.gone_at,
                flags: if i.seen_from_start {
                    FLAG_SEEN_FROM_START
                } else {
                    0
                },
            })
            .collect(),
        gap_at: t.gap_at,
        healed_at: t
            .healed_at
            .iter()
            .map(|(r, at)| (reason_code(*r), *at))
            .collect(),
    }
}

pub(super) fn from_v3(s: StoredProfileV3<'_>) -> Result<Profile, String> {
    let state = *STATE_CODES
        .get(usize::from(s.state))
        .ok_or_else(|| format!("unknown state code {}", s.state))?;
    let mut instances = BTreeMap::new();
    for i in s.instances {
        if i.flags & !FLAG_SEEN_FROM_START != 0 {
            return Err(format!("unknown instance flag bits {:#04x}", i.flags));
        }
        let id = i.id.into_owned();
        let inst = Instance {
            started_at: i.started_at,
            seen_from_start: i.flags & FLAG_SEEN_FROM_START != 0,
            first_seen: i.first_seen,
            last_seen: i.last_seen,
            gone_at: i.gone_at,
        };
        if instances.insert(id.clone(), inst).is_some() {
            return Err(format!("duplicate instance {id:?}"));
        }
    }
    let mut healed_at = BTreeMap::new();
    for (code, at) in s.healed_at {
        let reason = *REASON_CODES
            .get(usize::from(code))
            .ok_or_else(|| format!("unknown healed reason code {code}"))?;
        if healed_at.insert(reason, at).is_some() {
            return Err(format!("duplicate healed reason {reason}"));
        }
    }
    Ok(Profile {
        pod_labels: Default::default(),
        key: LearnerKey {
            namespace: s.namespace.into_owned(),
            workload_kind: s.workload_kind.into_owned(),
            workload: s.workload.into_owned(),
            container: s.container.into_owned(),
        },
        state,
        created_at: s.created_at,
        learning_since: s.learning_since,
        last_new_at: s.last_new_at,
        executables: records_from_v3("executables", s.executables)?,
        deviations: records_from_v3("deviations", s.deviations)?,
        drift_count: s.drift_count,
        partial_reasons: reasons_from_bits(s.partial_reasons, REASON_CODES.len())?,
        tracking: Tracking {
            instances,
            gap_at: s.gap_at,
            healed_at,
        },
    })
}
