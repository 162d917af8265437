//! `export --input FILE`: reads the documented profiles JSON (`export --format
//! json`, `debug dump --format json`) back into profiles. Pure: text in,
//! profiles or one error naming the input out.
//!
//! Strict where a mistake would change an allow-list: an unknown `state`,
//! `source` or partial reason (a newer agent's format) or a time that is not
//! RFC 3339 is an error, never a guess. Unknown extra keys are ignored, as the
//! README promises readers of this format. `completeness` and `ready` are
//! derived from `state` and `partial_reasons`, as everywhere else: what a file
//! says of them is not read, so files written before `ready` existed read the
//! same.
use thiserror::Error;

use crate::learner::profile::{ExecutableRecord, Profile};
use crate::learner::view::{ExecutableView, ProfileView};
use crate::time::{parse_rfc3339_ms, UnixMillis};

/// What an input file is called in messages (`-` is stdin).
pub fn input_name(arg: &str) -> String {
    if arg == "-" {
        "stdin".to_string()
    } else {
        arg.to_string()
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum InputError {
    #[error("{name} is not a profiles array as written by `export --format json` or `debug dump --format json`: {reason}; collect it again with `export --format json` from an agent of the same or an older version")]
    Parse { name: String, reason: String },
    #[error("{name}: learner {key}: {field} {value:?} is not an RFC 3339 time at or after 1970; collect the file again with `export --format json`")]
    Time {
        name: String,
        key: String,
        field: &'static str,
        value: String,
    },
}

/// Parses one input's text (named `name` in errors) into profiles.
pub fn parse_profiles(name: &str, text: &str) -> Result<Vec<Profile>, InputError> {
    let views: Vec<ProfileView> = serde_json::from_str(text).map_err(|e| InputError::Parse {
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    views
        .into_iter()
        .map(|v| profile_from_view(name, v))
        .collect()
}

/// The inverse of `Profile::to_view` (times are kept in milliseconds, as the
/// view writes them).
pub fn profile_from_view(name: &str, v: ProfileView) -> Result<Profile, InputError> {
    let key = v.key.to_string();
    let time = |field: &'static str, value: &str| -> Result<UnixMillis, InputError> {
        parse_rfc3339_ms(value).ok_or_else(|| InputError::Time {
            name: name.to_string(),
            key: key.clone(),
            field,
            value: value.to_string(),
        })
    };
    let record = |e: ExecutableView| -> Result<(String, ExecutableRecord), InputError> {
        let mut sources: std::collections::BTreeSet<_> = e.sources.into_iter().collect();
        sources.insert(e.source);
        let rec = ExecutableRecord {
            first_seen: time("first_seen", &e.first_seen)?,
            last_seen: time("last_seen", &e.last_seen)?,
            path: e.path,
            count: e.count,
            source: e.source,
            sources,
            exec_probe: e.exec_probe,
            exec_session: e.exec_session,
            views: e.views,
        };
        Ok((rec.path.clone(), rec))
    };
    let created_at = time("created_at", &v.created_at)?;
    let learning_since = time("learning_since", &v.learning_since)?;
    let last_new_at = time("last_new_at", &v.last_new_at)?;
    let mut p = Profile::new(v.key.clone(), created_at);
    p.state = v.state;
    p.learning_since = learning_since;
    p.last_new_at = last_new_at;
    p.drift_count = v.drift_count;
    p.partial_reasons = v.partial_reasons.into_iter().collect();
    // A path twice in one list (hand-edited files) is one executable.
    for e in v.executables {
        let (path, rec) = record(e)?;
        let rec = match p.executables.get(&path) {
            Some(have) => super::merge::merge_record(have, &rec),
            None => rec,
        };
        p.executables.insert(path, rec);
    }
    for e in v.deviations {
        let (path, rec) = record(e)?;
        let rec = match p.deviations.get(&path) {
            Some(have) => super::merge::merge_record(have, &rec),
            None => rec,
        };
        p.deviations.insert(path, rec);
    }
    p.pod_labels = crate::learner::pod_labels::PodLabels::from_view(&v.pod_labels);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::key::LearnerKey;
    use crate::learner::observation::{FactSource, Observation};
    use crate::learner::profile::PartialReason;
    use crate::learner::state::LearnerState;

    fn sample() -> Profile {
        let mut p = Profile::new(LearnerKey::new("shop", "Deployment", "web", "c"), 1_000);
        p.state = LearnerState::Stable;
        p.learning_since = 1_500;
        p.last_new_at = 2_000;
        p.drift_count = 3;
        p.partial_reasons.insert(PartialReason::EventsDropped);
        let mut r = ExecutableRecord::first(&Observation {
            path: "/bin/a\n\"{{ x }}\"".into(),
            at: 1_234,
            source: FactSource::Snapshot,
            exec_probe: true,
            exec_session: false,
        });
        r.last_seen = 9_999;
        r.count = 7;
        r.sources.insert(FactSource::Event);
        p.executables.insert(r.path.clone(), r.clone());
        r.path = "/bin/dev".into();
        p.deviations.insert(r.path.clone(), r);
        p
    }

    #[test]
    fn reads_back_what_the_json_export_writes() {
        let p = sample();
        let text = serde_json::to_string(&vec![p.to_view()]).unwrap();
        assert_eq!(parse_profiles("node-a.json", &text), Ok(vec![p]));
        assert_eq!(parse_profiles("empty", "[]"), Ok(vec![]));
    }

    #[test]
    fn bad_input_is_one_error_naming_the_file() {
        let view = serde_json::to_value(vec![sample().to_view()]).unwrap();
        let mut unknown_source = view.clone();
        unknown_source[0]["executables"][0]["source"] = "kernel-magic".into();
        let mut unknown_state = view.clone();
        unknown_state[0]["state"] = "enforcing".into();
        let mut bad_time = view.clone();
        bad_time[0]["executables"][0]["first_seen"] = "yesterday".into();
        let cases = [
            ("not json {".to_string(), "not a profiles array"),
            ("{\"key\": 1}".to_string(), "not a profiles array"),
            ("[{\"key\": {}}]".to_string(), "missing field"),
            (unknown_source.to_string(), "unknown variant `kernel-magic`"),
            (unknown_state.to_string(), "unknown variant `enforcing`"),
            (bad_time.to_string(), "first_seen \"yesterday\""),
        ];
        for (text, want) in cases {
            let err = parse_profiles("/data/node-b.json", &text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("/data/node-b.json"), "{msg}");
            assert!(msg.contains(want), "{want:?} not in {msg}");
        }
        assert_eq!(input_name("-"), "stdin");
    }

    #[test]
    fn ready_is_derived_not_read_and_may_be_absent() {
        let mut complete = sample();
        complete.partial_reasons.clear();
        let mut view = serde_json::to_value(vec![sample().to_view(), complete.to_view()]).unwrap();
        assert_eq!(view[1]["ready"], true);
        // An older agent's file: no `ready` key.
        view[0].as_object_mut().unwrap().remove("ready");
        view[1].as_object_mut().unwrap().remove("ready");
        let read = parse_profiles("old.json", &view.to_string()).unwrap();
        assert_eq!(read, vec![sample(), complete.clone()]);
        assert!(!read[0].to_view().ready && read[1].to_view().ready);
        // A file that claims `ready` for a partial profile does not make it so.
        view[0]["ready"] = true.into();
        let read = parse_profiles("edited.json", &view.to_string()).unwrap();
        assert!(!read[0].to_view().ready);
    }

    #[test]
    fn extra_keys_are_ignored() {
        let mut view = serde_json::to_value(vec![sample().to_view()]).unwrap();
        view[0]["added_in_a_later_version"] = serde_json::json!({"x": 1});
        assert_eq!(
            parse_profiles("f", &view.to_string()).unwrap(),
            vec![sample()]
        );
    }
}
