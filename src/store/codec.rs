//! Versioned encoding of stored values: one version byte, then the body.
//!
//! - **v2** (written): a compact binary body, [postcard] 1.x of the private
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
//!            bits 3-4 source (0 snapshot, 1 event, 2 export-log, 3 backfill),
//!            bit 5 exec_probe, bit 6 exec_session, bit 7 source backfill
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

use crate::learner::key::LearnerKey;
use crate::learner::observation::FactSource;
use crate::learner::profile::{ExecutableRecord, PartialReason, Profile};
use crate::learner::state::LearnerState;

pub const PROFILE_VALUE_V1: u8 = 1;
pub const PROFILE_VALUE_V2: u8 = 2;

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
const SOURCE_CODES: [FactSource; 4] = [
    FactSource::Snapshot,
    FactSource::Event,
    FactSource::ExportLog,
    FactSource::Backfill,
];
const REASON_CODES: [PartialReason; 3] = [
    PartialReason::StartedBeforeAgent,
    PartialReason::EventsDropped,
    PartialReason::TooManyExecutables,
];

const SOURCE_SHIFT: u8 = 3;
const FLAG_EXEC_PROBE: u8 = 1 << 5;
const FLAG_EXEC_SESSION: u8 = 1 << 6;

/// The bit of `source` in the sources set: bits 0-2 in code order, backfill
/// (code 3, added later) in bit 7, the one bit left.
fn source_bit(s: FactSource) -> u8 {
    match source_code(s) {
        3 => 1 << 7,
        code => 1 << code,
    }
}

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
        FactSource::Backfill => 3,
    }
}

fn reason_code(r: PartialReason) -> u8 {
    match r {
        PartialReason::StartedBeforeAgent => 0,
        PartialReason::EventsDropped => 1,
        PartialReason::TooManyExecutables => 2,
    }
}

fn record_to_v2<'a>(path: &'a str, r: &ExecutableRecord) -> StoredRecordV2<'a> {
    let sources = r.sources.iter().fold(0u8, |bits, s| bits | source_bit(*s));
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
        // Every bit of `flags` has a meaning since backfill took bit 7.
        let sources: BTreeSet<FactSource> = SOURCE_CODES
            .iter()
            .filter(|s| r.flags & source_bit(**s) != 0)
            .copied()
            .collect();
        let code = (r.flags >> SOURCE_SHIFT) & 0b11;
        let source = *SOURCE_CODES
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
        partial_reasons: p
            .partial_reasons
            .iter()
            .fold(0u8, |bits, r| bits | 1 << reason_code(*r)),
    }
}

fn from_v2(s: StoredProfileV2<'_>) -> Result<Profile, String> {
    let state = *STATE_CODES
        .get(usize::from(s.state))
        .ok_or_else(|| format!("unknown state code {}", s.state))?;
    let known_reasons = (1u8 << REASON_CODES.len()) - 1;
    if s.partial_reasons & !known_reasons != 0 {
        return Err(format!(
            "unknown partial reason bits {:#04x}",
            s.partial_reasons
        ));
    }
    let partial_reasons = REASON_CODES
        .iter()
        .enumerate()
        .filter(|(i, _)| s.partial_reasons & 1 << i != 0)
        .map(|(_, r)| *r)
        .collect();
    Ok(Profile {
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
    })
}

/// The value the store writes: v2.
pub fn encode_profile(p: &Profile) -> Vec<u8> {
    // Only integers, strings and sequences of known length, into a Vec: postcard
    // cannot fail here. Should it ever, v1 still decodes.
    match postcard::to_extend(&to_v2(p), vec![PROFILE_VALUE_V2]) {
        Ok(out) => out,
        Err(e) => {
            tracing::error!(error = %e, "v2 profile encoding failed; writing v1");
            encode_profile_v1(p)
        }
    }
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

pub fn decode_profile(bytes: &[u8]) -> Result<Profile, DecodeError> {
    match bytes.split_first() {
        Some((&PROFILE_VALUE_V1, body)) => serde_json::from_slice(body).map_err(DecodeError::V1),
        Some((&PROFILE_VALUE_V2, body)) => {
            let version = PROFILE_VALUE_V2;
            let (stored, rest) = postcard::take_from_bytes::<StoredProfileV2<'_>>(body)
                .map_err(|source| DecodeError::Postcard { version, source })?;
            if !rest.is_empty() {
                return Err(DecodeError::TrailingBytes {
                    version,
                    count: rest.len(),
                });
            }
            from_v2(stored).map_err(|what| DecodeError::Content { version, what })
        }
        Some((&v, _)) => Err(DecodeError::UnknownVersion(v)),
        None => Err(DecodeError::Empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(encode_profile(&p)[0], PROFILE_VALUE_V2);
        assert_eq!(decode_profile(&encode_profile(&p)).unwrap(), p);
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
        assert_eq!(encode_profile(&p), golden);
        assert_eq!(decode_profile(golden).unwrap(), p);
    }

    #[test]
    fn v2_is_smaller_than_v1() {
        let p = small();
        let (v1, v2) = (encode_profile_v1(&p).len(), encode_profile(&p).len());
        assert!(v2 * 5 < v1, "v2 {v2} bytes, v1 {v1} bytes");
    }

    #[test]
    fn v2_refuses_malformed_bodies() {
        let good = encode_profile(&small());
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
        // Every flag bit and source code has a meaning since backfill took the
        // last ones: bit 7 and code 3 decode as backfill.
        let mut bad = good.clone();
        bad[sh_flags] |= 0x80 | 0b11 << SOURCE_SHIFT;
        let p = decode_profile(&bad).expect("backfill bits decode");
        assert_eq!(p.executables["/bin/sh"].source, FactSource::Backfill);
        assert!(p.executables["/bin/sh"]
            .sources
            .contains(&FactSource::Backfill));

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

    fn record(path: String) -> impl Strategy<Value = ExecutableRecord> {
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            source(),
            prop::collection::btree_set(source(), 0..=4),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                move |(first_seen, last_seen, count, source, sources, exec_probe, exec_session)| {
                    ExecutableRecord {
                        path: path.clone(),
                        first_seen,
                        last_seen,
                        count,
                        source,
                        sources,
                        exec_probe,
                        exec_session,
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
            prop::collection::btree_set(prop::sample::select(REASON_CODES.to_vec()), 0..=2),
        )
            .prop_map(
                |(
                    (ns, kind, workload, container),
                    state,
                    (created_at, learning_since, last_new_at, drift_count),
                    executables,
                    deviations,
                    partial_reasons,
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
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn v2_and_v1_round_trip_exactly(p in profile()) {
            let v2 = encode_profile(&p);
            prop_assert_eq!(v2[0], PROFILE_VALUE_V2);
            prop_assert_eq!(&decode_profile(&v2).unwrap(), &p);
            let v1 = encode_profile_v1(&p);
            prop_assert_eq!(v1[0], PROFILE_VALUE_V1);
            prop_assert_eq!(&decode_profile(&v1).unwrap(), &p);
        }

        /// Whatever the bytes, decoding answers (a profile or an error), never
        /// panics.
        #[test]
        fn v2_decoding_arbitrary_bytes_never_panics(body in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = vec![PROFILE_VALUE_V2];
            bytes.extend(body);
            let _ = decode_profile(&bytes);
        }
    }
}
