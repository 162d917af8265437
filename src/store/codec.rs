//! Versioned encoding of stored values: one version byte, then the body.
//!
//! - **v5** (written): the v4 body, then the learner's pod label sets
//!   (`learner/pod_labels.rs`):
//!
//!   ```text
//!   v4 body
//!   label sets   varint count (at most MAX_LABEL_SETS), then sets
//!   set = labels: varint count, then (key string, value string);
//!         pods: varint count (at most MAX_PODS_PER_SET), then strings
//!   ```
//! - **v4** (read only): the v3 body, then the hook views of every record
//!   (`learner/hook_view.rs`), in the order of v3's records:
//!
//!   ```text
//!   v3 body
//!   executable views    varint count (= executables), then views
//!   deviation views     varint count (= deviations), then views
//!   views = opened: varint count, then strings; loaded: the same
//!           (each sorted, unique, at most MAX_VIEW_PATHS)
//!   ```
//! - **v3** (read only): v2's layout with room for what v2 cannot hold (the
//!   `exit` and `backfill` sources, the `no-snapshot` reason) and the
//!   completeness tracking. postcard 1.x of [`StoredProfileV3`]:
//!
//!   ```text
//!   namespace, workload_kind, workload, container   string
//!   state                                           u8 (0 learning, 1 stable, 2 locked)
//!   created_at, learning_since, last_new_at         varint u64 (ms)
//!   executables                                     varint count, then records
//!   deviations                                      varint count, then records
//!   drift_count                                     varint u64
//!   partial_reasons                                 u8 bitset (bit 0 started-before-agent,
//!                                                   1 events-dropped, 2 too-many-executables,
//!                                                   3 no-snapshot)
//!   instances                                       varint count, then instances
//!   gap_at                                          option varint
//!   healed_at                                       varint count, then (u8 reason code, varint ms)
//!   record   = path string, first_seen varint, last_seen varint, count varint,
//!              sources u8 (bit i = source code i), source u8 (code), flags u8
//!              (bit 0 exec_probe, bit 1 exec_session)
//!   source   = 0 snapshot, 1 event, 2 export-log, 3 exit, 4 backfill
//!   reason   = the bit number of partial_reasons
//!   instance = container id string, started_at option varint, first_seen varint,
//!              last_seen varint, gone_at option varint, flags u8 (bit 0 seen_from_start)
//!   option   = u8 0 (none) or 1 then the value
//!   ```
//!
//!   Decoding is strict as for v2: unknown codes or bits, duplicate paths,
//!   instance ids or healed reasons and trailing bytes are errors.
//! - **v2** (read only): a compact binary body, [postcard] 1.x of the private
//!   mirror struct [`StoredProfileV2`]. Its wire format is, in order:
//!
//!   ```text
//!   namespace, workload_kind, workload, container   string
//!   state                                           u8 (0 learning, 1 stable, 2 locked)
//!   created_at, learning_since, last_new_at         varint u64 (ms)
//!   executables                                     varint count, then records
//!   deviations                                      varint count, then records
//!   drift_count                                     varint u64
//!   partial_reasons                                 u8 bitset (bit 0 started-before-agent,
//!                                                   bit 1 events-dropped,
//!                                                   bit 2 too-many-executables)
//!   record = path string, first_seen varint, last_seen varint, count varint, flags u8
//!   flags  = bits 0-2 sources (bit 0 snapshot, 1 event, 2 export-log),
//!            bits 3-4 source (0 snapshot, 1 event, 2 export-log),
//!            bit 5 exec_probe, bit 6 exec_session, bit 7 zero
//!   string = varint byte length, then UTF-8;  varint = LEB128 (postcard)
//!   ```
//!
//!   Each path is stored once (the record's `path` is rebuilt from it), field
//!   names are not stored and times are varints: 0.85× the logical size
//!   where JSON was 3.6×. The mirror struct is converted field by field, so a
//!   change to `Profile` (or to its serde attributes, which shape the JSON view)
//!   cannot silently change this format: it fails to compile here, and the golden
//!   bytes test pins the layout. Decoding is strict: unknown codes or bits,
//!   duplicate paths and trailing bytes are errors, never guesses.
//! - **v1** (read only): JSON of `Profile`. Databases written before v2 keep
//!   loading; a record is rewritten as v2 the next time its learner is written
//!   (any change or checkpoint), so a database migrates record by record.
//!
//! A new value encoding does not bump the store's `SCHEMA_VERSION`: that number
//! describes the layout (trees, keys, meta records) and makes an older agent
//! refuse a database it cannot read at all. Value versions are per record, and
//! a database holding both v1 and v2 records is valid. The trade-off: an agent
//! older than v2 fails on the first v2 record with `unknown value version 2`
//! (a clear error, no misreading) instead of at open; downgrading after v2
//! records were written needs the database moved aside.
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::learner::completeness::Tracking;
use crate::learner::key::LearnerKey;
use crate::learner::observation::FactSource;
use crate::learner::profile::{ExecutableRecord, PartialReason, Profile};
use crate::learner::state::LearnerState;

pub const PROFILE_VALUE_V1: u8 = 1;
pub const PROFILE_VALUE_V2: u8 = 2;
pub const PROFILE_VALUE_V3: u8 = 3;
pub const PROFILE_VALUE_V4: u8 = 4;
pub const PROFILE_VALUE_V5: u8 = 5;

/// The on-disk v2 body. Only primitive fields: its serde shape is the format.
/// Do not reorder, retype or remove fields; a new format is a new version byte.
#[derive(Serialize, Deserialize)]
struct StoredProfileV2<'a> {
    namespace: Cow<'a, str>,
    workload_kind: Cow<'a, str>,
    workload: Cow<'a, str>,
    container: Cow<'a, str>,
    state: u8,
    created_at: u64,
    learning_since: u64,
    last_new_at: u64,
    executables: Vec<StoredRecordV2<'a>>,
    deviations: Vec<StoredRecordV2<'a>>,
    drift_count: u64,
    partial_reasons: u8,
}

#[derive(Serialize, Deserialize)]
struct StoredRecordV2<'a> {
    path: Cow<'a, str>,
    first_seen: u64,
    last_seen: u64,
    count: u64,
    flags: u8,
}

const STATE_CODES: [LearnerState; 3] = [
    LearnerState::Learning,
    LearnerState::Stable,
    LearnerState::Locked,
];
/// Source codes; v2 knows only the first three.
const SOURCE_CODES: [FactSource; 5] = [
    FactSource::Snapshot,
    FactSource::Event,
    FactSource::ExportLog,
    FactSource::Exit,
    FactSource::Backfill,
];
const V2_SOURCES: usize = 3;
/// Reason codes (bit numbers); v2 knows only the first three.
const REASON_CODES: [PartialReason; 4] = [
    PartialReason::StartedBeforeAgent,
    PartialReason::EventsDropped,
    PartialReason::TooManyExecutables,
    PartialReason::NoSnapshot,
];
const V2_REASONS: usize = 3;

const SOURCE_SHIFT: u8 = 3;
const FLAG_EXEC_PROBE: u8 = 1 << 5;
const FLAG_EXEC_SESSION: u8 = 1 << 6;
const FLAG_KNOWN: u8 = 0b0111_1111;

fn state_code(s: LearnerState) -> u8 {
    match s {
        LearnerState::Learning => 0,
        LearnerState::Stable => 1,
        LearnerState::Locked => 2,
    }
}

fn source_code(s: FactSource) -> u8 {
    match s {
        FactSource::Snapshot => 0,
        FactSource::Event => 1,
        FactSource::ExportLog => 2,
        FactSource::Exit => 3,
        FactSource::Backfill => 4,
    }
}

fn reason_code(r: PartialReason) -> u8 {
    match r {
        PartialReason::StartedBeforeAgent => 0,
        PartialReason::EventsDropped => 1,
        PartialReason::TooManyExecutables => 2,
        PartialReason::NoSnapshot => 3,
    }
}

fn record_to_v2<'a>(path: &'a str, r: &ExecutableRecord) -> StoredRecordV2<'a> {
    let sources = r
        .sources
        .iter()
        .fold(0u8, |bits, s| bits | 1 << source_code(*s));
    let mut flags = sources | source_code(r.source) << SOURCE_SHIFT;
    if r.exec_probe {
        flags |= FLAG_EXEC_PROBE;
    }
    if r.exec_session {
        flags |= FLAG_EXEC_SESSION;
    }
    StoredRecordV2 {
        // The map key, not `r.path`: they are equal in every profile the
        // learner builds, and the key is what a lookup uses.
        path: Cow::Borrowed(path),
        first_seen: r.first_seen,
        last_seen: r.last_seen,
        count: r.count,
        flags,
    }
}

fn records_from_v2(
    what: &str,
    stored: Vec<StoredRecordV2<'_>>,
) -> Result<BTreeMap<String, ExecutableRecord>, String> {
    let mut out = BTreeMap::new();
    for r in stored {
        if r.flags & !FLAG_KNOWN != 0 {
            return Err(format!("unknown flag bits {:#04x} in {what}", r.flags));
        }
        let sources: BTreeSet<FactSource> = SOURCE_CODES[..V2_SOURCES]
            .iter()
            .enumerate()
            .filter(|(i, _)| r.flags & 1 << i != 0)
            .map(|(_, s)| *s)
            .collect();
        let code = (r.flags >> SOURCE_SHIFT) & 0b11;
        let source = *SOURCE_CODES[..V2_SOURCES]
            .get(usize::from(code))
            .ok_or_else(|| format!("unknown source code {code} in {what}"))?;
        let path = r.path.into_owned();
        let rec = ExecutableRecord {
            path: path.clone(),
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            count: r.count,
            source,
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

fn records_to_v2(m: &BTreeMap<String, ExecutableRecord>) -> Vec<StoredRecordV2<'_>> {
    m.iter().map(|(path, r)| record_to_v2(path, r)).collect()
}

fn to_v2(p: &Profile) -> StoredProfileV2<'_> {
    StoredProfileV2 {
        namespace: Cow::Borrowed(&p.key.namespace),
        workload_kind: Cow::Borrowed(&p.key.workload_kind),
        workload: Cow::Borrowed(&p.key.workload),
        container: Cow::Borrowed(&p.key.container),
        state: state_code(p.state),
        created_at: p.created_at,
        learning_since: p.learning_since,
        last_new_at: p.last_new_at,
        executables: records_to_v2(&p.executables),
        deviations: records_to_v2(&p.deviations),
        drift_count: p.drift_count,
        partial_reasons: reason_bits(&p.partial_reasons),
    }
}

fn from_v2(s: StoredProfileV2<'_>) -> Result<Profile, String> {
    let state = *STATE_CODES
        .get(usize::from(s.state))
        .ok_or_else(|| format!("unknown state code {}", s.state))?;
    let partial_reasons = reasons_from_bits(s.partial_reasons, V2_REASONS)?;
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
        executables: records_from_v2("executables", s.executables)?,
        deviations: records_from_v2("deviations", s.deviations)?,
        drift_count: s.drift_count,
        partial_reasons,
        tracking: Tracking::default(),
    })
}

/// The reasons of a bitset whose first `known` bits have a meaning.
fn reasons_from_bits(bits: u8, known: usize) -> Result<BTreeSet<PartialReason>, String> {
    let known_bits = (1u8 << known) - 1;
    if bits & !known_bits != 0 {
        return Err(format!("unknown partial reason bits {bits:#04x}"));
    }
    Ok(REASON_CODES[..known]
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & 1 << i != 0)
        .map(|(_, r)| *r)
        .collect())
}

fn reason_bits(reasons: &BTreeSet<PartialReason>) -> u8 {
    reasons
        .iter()
        .fold(0u8, |bits, r| bits | 1 << reason_code(*r))
}

/// The value the store writes: v5.
pub fn encode_profile(p: &Profile) -> Vec<u8> {
    // Only integers, strings and sequences of known length, into a Vec: postcard
    // cannot fail here. Should it ever, v1 (JSON of the whole profile) still decodes.
    match postcard::to_extend(&v5::to_v5(p), vec![PROFILE_VALUE_V5]) {
        Ok(out) => out,
        Err(e) => {
            tracing::error!(error = %e, "v5 profile encoding failed; writing v1");
            encode_profile_v1(p)
        }
    }
}

/// The v4 value of `p`, for tests that build databases of the previous
/// version; an error when `p` holds pod labels.
pub fn encode_profile_v4(p: &Profile) -> Result<Vec<u8>, String> {
    if !p.pod_labels.is_empty() {
        return Err("pod labels, which v4 cannot hold".into());
    }
    postcard::to_extend(&v4::to_v4(p), vec![PROFILE_VALUE_V4]).map_err(|e| e.to_string())
}

/// Whether `p` holds hook views or pod labels, which v3 and older cannot hold.
fn has_views(p: &Profile) -> bool {
    !p.pod_labels.is_empty()
        || p.executables
            .values()
            .chain(p.deviations.values())
            .any(|r| !r.views.is_empty())
}

/// The v3 value of `p`, for tests that build databases of the previous
/// version; an error when `p` holds hook views.
pub fn encode_profile_v3(p: &Profile) -> Result<Vec<u8>, String> {
    if has_views(p) {
        return Err("hook views, which v3 cannot hold".into());
    }
    postcard::to_extend(&v3::to_v3(p), vec![PROFILE_VALUE_V3]).map_err(|e| e.to_string())
}

/// The v2 value of `p`, for tests and benchmarks that build older databases;
/// an error when `p` holds what v2 cannot (sources `exit`/`backfill`, reason
/// `no-snapshot`, completeness tracking).
pub fn encode_profile_v2(p: &Profile) -> Result<Vec<u8>, String> {
    let v2_source = |r: &ExecutableRecord| {
        r.sources
            .iter()
            .chain([&r.source])
            .all(|s| usize::from(source_code(*s)) < V2_SOURCES)
    };
    if !p
        .executables
        .values()
        .chain(p.deviations.values())
        .all(v2_source)
    {
        return Err("a source v2 cannot hold".into());
    }
    if p.partial_reasons.contains(&PartialReason::NoSnapshot) {
        return Err("reason no-snapshot, which v2 cannot hold".into());
    }
    if p.tracking != Tracking::default() {
        return Err("completeness tracking, which v2 cannot hold".into());
    }
    if has_views(p) {
        return Err("hook views, which v2 cannot hold".into());
    }
    postcard::to_extend(&to_v2(p), vec![PROFILE_VALUE_V2]).map_err(|e| e.to_string())
}

/// The legacy v1 value (version byte + JSON). No longer written by the store;
/// kept to measure against and to build old databases in tests.
pub fn encode_profile_v1(p: &Profile) -> Vec<u8> {
    let mut out = vec![PROFILE_VALUE_V1];
    // Profile holds only strings, numbers and maps with string keys: it always
    // serializes.
    if let Err(e) = serde_json::to_writer(&mut out, p) {
        tracing::error!(error = %e, "profile serialization failed");
    }
    out
}

/// Why a stored value is not a profile (the store names the record).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid v1 profile: {0}")]
    V1(#[source] serde_json::Error),
    #[error("invalid v{version} profile: {source}")]
    Postcard {
        version: u8,
        #[source]
        source: postcard::Error,
    },
    #[error("invalid v{version} profile: {count} trailing bytes")]
    TrailingBytes { version: u8, count: usize },
    /// Decoded, but holds a code or a combination this agent does not know.
    #[error("invalid v{version} profile: {what}")]
    Content { version: u8, what: String },
    #[error("unknown value version {0}")]
    UnknownVersion(u8),
    #[error("empty value")]
    Empty,
}

/// The postcard body of a v2 or v3 value, whole: trailing bytes are an error.
fn take_whole<'a, T: serde::Deserialize<'a>>(
    version: u8,
    body: &'a [u8],
) -> Result<T, DecodeError> {
    let (stored, rest) = postcard::take_from_bytes::<T>(body)
        .map_err(|source| DecodeError::Postcard { version, source })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            version,
            count: rest.len(),
        });
    }
    Ok(stored)
}

pub fn decode_profile(bytes: &[u8]) -> Result<Profile, DecodeError> {
    match bytes.split_first() {
        Some((&PROFILE_VALUE_V1, body)) => serde_json::from_slice(body).map_err(DecodeError::V1),
        Some((&PROFILE_VALUE_V2, body)) => {
            let version = PROFILE_VALUE_V2;
            let stored: StoredProfileV2<'_> = take_whole(version, body)?;
            from_v2(stored).map_err(|what| DecodeError::Content { version, what })
        }
        Some((&PROFILE_VALUE_V3, body)) => {
            let version = PROFILE_VALUE_V3;
            let stored: v3::StoredProfileV3<'_> = take_whole(version, body)?;
            v3::from_v3(stored).map_err(|what| DecodeError::Content { version, what })
        }
        Some((&PROFILE_VALUE_V4, body)) => {
            let version = PROFILE_VALUE_V4;
            let stored: (v3::StoredProfileV3<'_>, v4::StoredViewsV4<'_>) =
                take_whole(version, body)?;
            v4::from_v4(stored).map_err(|what| DecodeError::Content { version, what })
        }
        Some((&PROFILE_VALUE_V5, body)) => {
            let version = PROFILE_VALUE_V5;
            let stored: v5::StoredV5<'_> = take_whole(version, body)?;
            v5::from_v5(stored).map_err(|what| DecodeError::Content { version, what })
        }
        Some((&v, _)) => Err(DecodeError::UnknownVersion(v)),
        None => Err(DecodeError::Empty),
    }
}

mod v3;
mod v4;
mod v5;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::completeness::Instance;
    use proptest::prelude::*;

    fn rec(path: &str, first: u64, last: u64, count: u64, source: FactSource) -> ExecutableRecord {
        ExecutableRecord {
            path: path.into(),
            first_seen: first,
            last_seen: last,
            count,
            source,
            sources: BTreeSet::from([source]),
            exec_probe: false,
            exec_session: false,
            views: Default::default(),
        }
    }

    /// A small profile touching every field.
    fn small() -> Profile {
        let mut p = Profile::new(LearnerKey::new("ns", "Deployment", "web", "app"), 1_000);
        p.state = LearnerState::Locked;
        p.learning_since = 2_000;
        p.last_new_at = 300;
        let mut sh = rec("/bin/sh", 1_000, 1_500, 3, FactSource::Snapshot);
        sh.sources.insert(FactSource::Event);
        sh.exec_probe = true;
        p.executables.insert(sh.path.clone(), sh);
        let mut nc = rec("/x", 5, 6, 1, FactSource::ExportLog);
        nc.exec_session = true;
        p.deviations.insert(nc.path.clone(), nc);
        p.drift_count = 2;
        p.partial_reasons.insert(PartialReason::EventsDropped);
        p
    }

    #[test]
    fn round_trips_and_refuses_unknown_versions() {
        let p = Profile::new(LearnerKey::new("ns", "Deployment", "web", "app"), 5);
        assert_eq!(encode_profile(&p)[0], PROFILE_VALUE_V5);
        assert_eq!(decode_profile(&encode_profile_v4(&p).unwrap()).unwrap(), p);
        assert_eq!(decode_profile(&encode_profile(&p)).unwrap(), p);
        assert_eq!(decode_profile(&encode_profile_v3(&p).unwrap()).unwrap(), p);
        assert_eq!(decode_profile(&encode_profile_v2(&p).unwrap()).unwrap(), p);
        assert_eq!(decode_profile(&encode_profile_v1(&p)).unwrap(), p);
        assert!(decode_profile(&[9, b'{', b'}'])
            .unwrap_err()
            .to_string()
            .contains("version 9"));
        assert!(decode_profile(&[]).is_err());
    }

    /// Pins the v2 format: if this fails, the on-disk format changed and old
    /// databases would misread. Add a new version byte instead.
    #[test]
    fn v2_golden_bytes() {
        #[rustfmt::skip]
        let golden: &[u8] = &[
            2,                                               // value version
            2, b'n', b's',                                   // namespace
            10, b'D', b'e', b'p', b'l', b'o', b'y', b'm', b'e', b'n', b't',
            3, b'w', b'e', b'b',                             // workload
            3, b'a', b'p', b'p',                             // container
            2,                                               // state: locked
            0xe8, 0x07,                                      // created_at 1000
            0xd0, 0x0f,                                      // learning_since 2000
            0xac, 0x02,                                      // last_new_at 300
            1,                                               // 1 executable
            7, b'/', b'b', b'i', b'n', b'/', b's', b'h',     //   path
            0xe8, 0x07, 0xdc, 0x0b, 3,                       //   1000, 1500, count 3
            0b0010_0011,                                     //   probe, source snapshot, {snapshot, event}
            1,                                               // 1 deviation
            2, b'/', b'x', 5, 6, 1,                          //   path, 5, 6, count 1
            0b0101_0100,                                     //   session, source export-log, {export-log}
            2,                                               // drift_count
            0b10,                                            // partial: events-dropped
        ];
        let p = small();
        assert_eq!(encode_profile_v2(&p).unwrap(), golden);
        assert_eq!(decode_profile(golden).unwrap(), p);
    }

    /// `small()` plus what only v3 holds: sources exit and backfill, reason
    /// no-snapshot, two instances, a gap time and a healed reason.
    fn small_v3() -> Profile {
        let mut p = small();
        let mut exe = rec("/e", 7, 8, 1, FactSource::Exit);
        exe.sources.insert(FactSource::Backfill);
        p.executables.insert(exe.path.clone(), exe);
        p.partial_reasons.insert(PartialReason::NoSnapshot);
        p.tracking.instances.insert(
            "c1".into(),
            Instance {
                started_at: Some(100),
                seen_from_start: true,
                first_seen: 150,
                last_seen: 200,
                gone_at: None,
            },
        );
        p.tracking.instances.insert(
            "c0".into(),
            Instance {
                started_at: None,
                seen_from_start: false,
                first_seen: 1,
                last_seen: 2,
                gone_at: Some(3),
            },
        );
        p.tracking.gap_at = Some(300);
        p.tracking
            .healed_at
            .insert(PartialReason::StartedBeforeAgent, 1_000);
        p
    }

    /// Pins the v3 format, as `v2_golden_bytes` pins v2.
    #[test]
    fn v3_golden_bytes() {
        #[rustfmt::skip]
        let golden: &[u8] = &[
            3,                                               // value version
            2, b'n', b's',                                   // namespace
            10, b'D', b'e', b'p', b'l', b'o', b'y', b'm', b'e', b'n', b't',
            3, b'w', b'e', b'b',                             // workload
            3, b'a', b'p', b'p',                             // container
            2,                                               // state: locked
            0xe8, 0x07,                                      // created_at 1000
            0xd0, 0x0f,                                      // learning_since 2000
            0xac, 0x02,                                      // last_new_at 300
            2,                                               // 2 executables
            7, b'/', b'b', b'i', b'n', b'/', b's', b'h',     //   path
            0xe8, 0x07, 0xdc, 0x0b, 3,                       //   1000, 1500, count 3
            0b0_0011, 0, 0b01,                               //   {snapshot, event}, snapshot, probe
            2, b'/', b'e', 7, 8, 1,                          //   path, 7, 8, count 1
            0b1_1000, 3, 0,                                  //   {exit, backfill}, exit, no flags
            1,                                               // 1 deviation
            2, b'/', b'x', 5, 6, 1,                          //   path, 5, 6, count 1
            0b0_0100, 2, 0b10,                               //   {export-log}, export-log, session
            2,                                               // drift_count
            0b1010,                                          // partial: events-dropped, no-snapshot
            2,                                               // 2 instances
            2, b'c', b'0', 0, 1, 2, 1, 3, 0,                 //   c0: no start, 1, 2, gone 3, -
            2, b'c', b'1', 1, 100, 0x96, 0x01, 0xc8, 0x01, 0, 1, // c1: start 100, 150, 200, live, from start
            1, 0xac, 0x02,                                   // gap_at 300
            1, 0, 0xe8, 0x07,                                // healed: started-before-agent at 1000
        ];
        let p = small_v3();
        assert_eq!(encode_profile_v3(&p).unwrap(), golden);
        assert_eq!(decode_profile(golden).unwrap(), p);
        assert!(encode_profile_v2(&p).is_err(), "v2 cannot hold it");
        // v4 is the v3 body, then one (empty) views entry per record; v5
        // adds the (empty) label sets.
        let mut v4 = golden.to_vec();
        v4[0] = PROFILE_VALUE_V4;
        v4.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(encode_profile_v4(&p).unwrap(), v4);
        let mut v5 = v4.clone();
        v5[0] = PROFILE_VALUE_V5;
        v5.push(0);
        assert_eq!(encode_profile(&p), v5);
    }

    /// Pins the v4 views, as `v3_golden_bytes` pins v3.
    #[test]
    fn v4_golden_views_and_strictness() {
        use crate::learner::hook_view::HookView;
        let mut p = small_v3();
        let sh = p.executables.get_mut("/bin/sh").unwrap();
        sh.views.add(HookView::Opened, "/usr/bin/dash");
        sh.views.add(HookView::Loaded, "/usr/bin/dash");
        let x = p.deviations.get_mut("/x").unwrap();
        x.views.add(HookView::Loaded, "/a");
        x.views.add(HookView::Loaded, "/b");
        let bytes = encode_profile_v4(&p).unwrap();
        let v3_len = encode_profile_v3(&small_v3()).unwrap().len();
        #[rustfmt::skip]
        let views: &[u8] = &[
            2,                                               // 2 executable entries
            1, 13, b'/', b'u', b's', b'r', b'/', b'b', b'i', b'n', b'/', b'd', b'a', b's', b'h',
            1, 13, b'/', b'u', b's', b'r', b'/', b'b', b'i', b'n', b'/', b'd', b'a', b's', b'h',
            0, 0,                                            //   /e: none
            1,                                               // 1 deviation entry
            0, 2, 2, b'/', b'a', 2, b'/', b'b',              //   no opened; loaded /a, /b
        ];
        assert_eq!(&bytes[v3_len..], views);
        assert_eq!(decode_profile(&bytes).unwrap(), p);
        // A views count that differs from the records, paths out of order:
        // refused, never guessed.
        let mut short = bytes.clone();
        short[v3_len] = 1;
        assert!(decode_profile(&short).is_err());
        let mut swapped = bytes.clone();
        let n = swapped.len();
        swapped[n - 4] = b'b';
        swapped[n - 1] = b'a';
        assert!(decode_profile(&swapped)
            .unwrap_err()
            .to_string()
            .contains("out of order"));
    }

    #[test]
    fn v3_refuses_malformed_bodies() {
        let good = encode_profile_v3(&small_v3()).unwrap();
        let err = |bytes: &[u8]| decode_profile(bytes).unwrap_err().to_string();
        assert!(err(&good[..good.len() - 1]).contains("invalid v3 profile"));
        assert!(err(&[&good[..], &[0]].concat()).contains("trailing"));
        let at = |needle: &[u8]| {
            good.windows(needle.len())
                .position(|w| w == needle)
                .unwrap()
        };
        let e_record = at(&[2, b'/', b'e', 7, 8, 1]) + 6;
        let mut bad = good.clone();
        bad[e_record] |= 0b10_0000;
        assert!(err(&bad).contains("unknown source bits"));
        let mut bad = good.clone();
        bad[e_record + 1] = 5;
        assert!(err(&bad).contains("unknown source code 5"));
        let mut bad = good.clone();
        bad[e_record + 2] = 0b100;
        assert!(err(&bad).contains("unknown flag bits"));
        let reasons = at(&[2, 0b1010, 2]) + 1;
        let mut bad = good.clone();
        bad[reasons] = 0b1_0000;
        assert!(err(&bad).contains("unknown partial reason"));
        let c0_flags = at(&[2, b'c', b'0', 0, 1, 2, 1, 3, 0]) + 8;
        let mut bad = good.clone();
        bad[c0_flags] = 2;
        assert!(err(&bad).contains("unknown instance flag"));
        let healed = good.len() - 3;
        let mut bad = good.clone();
        bad[healed] = 4;
        assert!(err(&bad).contains("unknown healed reason code 4"));
        // Duplicates: instance ids, healed reasons.
        let mut dup = good.clone();
        let c1 = at(&[2, b'c', b'1']);
        dup[c1 + 2] = b'0';
        assert!(err(&dup).contains("duplicate instance \"c0\""));
        let mut twice = good.clone();
        let n = twice.len();
        twice[n - 4] = 2;
        twice.extend([0, 1]);
        assert!(err(&twice).contains("duplicate healed reason"));
    }

    #[test]
    fn v2_is_smaller_than_v1() {
        let p = small();
        let (v1, v2) = (
            encode_profile_v1(&p).len(),
            encode_profile_v2(&p).unwrap().len(),
        );
        assert!(v2 * 5 < v1, "v2 {v2} bytes, v1 {v1} bytes");
        assert!(
            encode_profile_v3(&p).unwrap().len() <= v2 + 8,
            "v3 costs little more"
        );
        // v4: one byte per view per record, and two counts.
        assert!(encode_profile(&p).len() <= v2 + 8 + 2 + 2 * 3);
    }

    #[test]
    fn v2_refuses_malformed_bodies() {
        let good = encode_profile_v2(&small()).unwrap();
        let err = |bytes: &[u8]| decode_profile(bytes).unwrap_err().to_string();
        assert!(err(&good[..good.len() - 1]).contains("invalid v2 profile"));
        assert!(err(&[&good[..], &[0]].concat()).contains("trailing"));
        assert!(err(&[2]).contains("invalid v2 profile"));

        let at = |needle: &[u8]| {
            good.windows(needle.len())
                .position(|w| w == needle)
                .unwrap()
        };
        let state = at(&[3, b'a', b'p', b'p']) + 4;
        let mut bad = good.clone();
        bad[state] = 3;
        assert!(err(&bad).contains("unknown state code 3"));

        let sh_flags = at(&[0xe8, 0x07, 0xdc, 0x0b, 3]) + 5;
        let mut bad = good.clone();
        bad[sh_flags] |= 0x80;
        assert!(err(&bad).contains("unknown flag bits"));
        let mut bad = good.clone();
        bad[sh_flags] |= 0b11 << SOURCE_SHIFT;
        assert!(err(&bad).contains("unknown source code 3"));

        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] = 0b1000;
        assert!(err(&bad).contains("unknown partial reason"));

        // Two records with the same path.
        let p = small();
        let mut stored = to_v2(&p);
        stored.executables.push(StoredRecordV2 {
            path: Cow::Borrowed("/bin/sh"),
            first_seen: 1,
            last_seen: 1,
            count: 1,
            flags: 0b010,
        });
        let dup = postcard::to_extend(&stored, vec![PROFILE_VALUE_V2]).unwrap();
        assert!(err(&dup).contains("duplicate path \"/bin/sh\" in executables"));
        // Codes only v3 knows are refused in v2.
        let sh_flags = at(&[0xe8, 0x07, 0xdc, 0x0b, 3]) + 5;
        let mut bad = good.clone();
        bad[sh_flags] = 0b01_1000 | 0b010;
        assert!(err(&bad).contains("unknown source code 3"));
    }

    fn hostile_path() -> impl Strategy<Value = String> {
        prop_oneof![
            "/[a-z0-9._/-]{0,60}",
            any::<String>(),
            "\\PC{0,40}[\n\r\t\u{0}\u{202e}\u{200f}\u{feff}\u{1b}]\\PC{0,40}",
            (0usize..4096).prop_map(|n| format!("/{}", "\u{202e}é\n\0x".repeat(n / 8 + 500))),
            Just(String::new()),
        ]
    }

    fn source() -> impl Strategy<Value = FactSource> {
        prop::sample::select(SOURCE_CODES.to_vec())
    }

    fn tracking() -> impl Strategy<Value = Tracking> {
        let instance = (
            prop::option::of(any::<u64>()),
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
            prop::option::of(any::<u64>()),
        )
            .prop_map(
                |(started_at, seen_from_start, first_seen, last_seen, gone_at)| Instance {
                    started_at,
                    seen_from_start,
                    first_seen,
                    last_seen,
                    gone_at,
                },
            );
        (
            prop::collection::btree_map(hostile_path(), instance, 0..4),
            prop::option::of(any::<u64>()),
            prop::collection::btree_map(
                prop::sample::select(REASON_CODES.to_vec()),
                any::<u64>(),
                0..4,
            ),
        )
            .prop_map(|(instances, gap_at, healed_at)| Tracking {
                instances,
                gap_at,
                healed_at,
            })
    }

    fn pod_labels() -> impl Strategy<Value = crate::learner::pod_labels::PodLabels> {
        prop::collection::btree_map(
            prop::collection::btree_map(hostile_path(), hostile_path(), 0..4),
            prop::collection::btree_set(hostile_path(), 0..4),
            0..3,
        )
        .prop_map(|sets| crate::learner::pod_labels::PodLabels { sets })
    }

    fn record(path: String) -> impl Strategy<Value = ExecutableRecord> {
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            source(),
            prop::collection::btree_set(source(), 0..=3),
            any::<bool>(),
            any::<bool>(),
            prop::collection::btree_set(hostile_path(), 0..3),
            prop::collection::btree_set(hostile_path(), 0..3),
        )
            .prop_map(
                move |(
                    first_seen,
                    last_seen,
                    count,
                    source,
                    sources,
                    exec_probe,
                    exec_session,
                    opened,
                    loaded,
                )| {
                    ExecutableRecord {
                        path: path.clone(),
                        first_seen,
                        last_seen,
                        count,
                        source,
                        sources,
                        exec_probe,
                        exec_session,
                        views: crate::learner::hook_view::HookPaths { opened, loaded },
                    }
                },
            )
    }

    fn records() -> impl Strategy<Value = BTreeMap<String, ExecutableRecord>> {
        prop::collection::vec(hostile_path(), 0..6).prop_flat_map(|paths| {
            paths
                .into_iter()
                .map(|p| record(p.clone()).prop_map(move |r| (p.clone(), r)))
                .collect::<Vec<_>>()
                .prop_map(|pairs| pairs.into_iter().collect::<BTreeMap<_, _>>())
        })
    }

    fn profile() -> impl Strategy<Value = Profile> {
        (
            (
                hostile_path(),
                hostile_path(),
                hostile_path(),
                hostile_path(),
            ),
            prop::sample::select(STATE_CODES.to_vec()),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
            records(),
            records(),
            prop::collection::btree_set(prop::sample::select(REASON_CODES.to_vec()), 0..=3),
            prop_oneof![1 => Just(Tracking::default()), 2 => tracking()],
            pod_labels(),
        )
            .prop_map(
                |(
                    (ns, kind, workload, container),
                    state,
                    (created_at, learning_since, last_new_at, drift_count),
                    executables,
                    deviations,
                    partial_reasons,
                    tracking,
                    pod_labels,
                )| Profile {
                    key: LearnerKey::new(&ns, &kind, &workload, &container),
                    state,
                    created_at,
                    learning_since,
                    last_new_at,
                    executables,
                    deviations,
                    drift_count,
                    partial_reasons,
                    tracking,
                    pod_labels,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_version_round_trips_exactly_or_refuses(p in profile()) {
            let v5 = encode_profile(&p);
            prop_assert_eq!(v5[0], PROFILE_VALUE_V5);
            prop_assert_eq!(&decode_profile(&v5).unwrap(), &p);
            if let Ok(v4) = encode_profile_v4(&p) {
                prop_assert_eq!(&decode_profile(&v4).unwrap(), &p);
            }
            // v3 holds it exactly or refuses it.
            if let Ok(v3) = encode_profile_v3(&p) {
                prop_assert_eq!(&decode_profile(&v3).unwrap(), &p);
            }
            // v2 holds it exactly or refuses it.
            if let Ok(v2) = encode_profile_v2(&p) {
                prop_assert_eq!(v2[0], PROFILE_VALUE_V2);
                prop_assert_eq!(&decode_profile(&v2).unwrap(), &p);
            }
            let v1 = encode_profile_v1(&p);
            prop_assert_eq!(v1[0], PROFILE_VALUE_V1);
            prop_assert_eq!(&decode_profile(&v1).unwrap(), &p);
        }

        /// Whatever the bytes, decoding answers (a profile or an error), never
        /// panics.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            version in prop_oneof![Just(PROFILE_VALUE_V2), Just(PROFILE_VALUE_V3)],
            body in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut bytes = vec![version];
            bytes.extend(body);
            let _ = decode_profile(&bytes);
        }
    }
}
