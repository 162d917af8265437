//! The v4 body: the v3 body, then the hook views of every record (see the
//! layout in `codec.rs`). The views follow the v3 records in their order, one
//! entry per record, so v3's mirror structs and checks are reused unchanged.
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::v3::{from_v3_with, to_v3, StoredProfileV3, V3_SOURCES};
use crate::learner::hook_view::{HookPaths, MAX_VIEW_PATHS};
use crate::learner::profile::{ExecutableRecord, Profile};

/// Do not reorder, retype or remove fields; a new format is a new version byte.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredViewsV4<'a> {
    executables: Vec<StoredRecordViewsV4<'a>>,
    deviations: Vec<StoredRecordViewsV4<'a>>,
}

#[derive(Serialize, Deserialize)]
struct StoredRecordViewsV4<'a> {
    opened: Vec<Cow<'a, str>>,
    loaded: Vec<Cow<'a, str>>,
}

fn list(set: &BTreeSet<String>) -> Vec<Cow<'_, str>> {
    set.iter().map(|p| Cow::Borrowed(p.as_str())).collect()
}

fn record_views(m: &BTreeMap<String, ExecutableRecord>) -> Vec<StoredRecordViewsV4<'_>> {
    m.values()
        .map(|r| StoredRecordViewsV4 {
            opened: list(&r.views.opened),
            loaded: list(&r.views.loaded),
        })
        .collect()
}

pub(super) fn to_v4(p: &Profile) -> (StoredProfileV3<'_>, StoredViewsV4<'_>) {
    (
        to_v3(p),
        StoredViewsV4 {
            executables: record_views(&p.executables),
            deviations: record_views(&p.deviations),
        },
    )
}

/// A view's paths: sorted, unique, at most `MAX_VIEW_PATHS` (what the learner
/// can hold), or the record is refused.
fn view_set(what: &str, paths: Vec<Cow<'_, str>>) -> Result<BTreeSet<String>, String> {
    if paths.len() > MAX_VIEW_PATHS {
        return Err(format!("{} hook paths in {what}", paths.len()));
    }
    let mut out = BTreeSet::new();
    for p in paths {
        let p = p.into_owned();
        if out.last().is_some_and(|last: &String| *last >= p) {
            return Err(format!("hook paths out of order in {what}"));
        }
        out.insert(p);
    }
    Ok(out)
}

fn apply_views(
    what: &str,
    records: &mut BTreeMap<String, ExecutableRecord>,
    views: Vec<StoredRecordViewsV4<'_>>,
) -> Result<(), String> {
    if views.len() != records.len() {
        return Err(format!(
            "{} view entries for {} {what}",
            views.len(),
            records.len()
        ));
    }
    for (rec, v) in records.values_mut().zip(views) {
        rec.views = HookPaths {
            opened: view_set(what, v.opened)?,
            loaded: view_set(what, v.loaded)?,
        };
    }
    Ok(())
}

pub(super) fn from_v4(stored: (StoredProfileV3<'_>, StoredViewsV4<'_>)) -> Result<Profile, String> {
    from_v4_with(stored, V3_SOURCES)
}

/// The v4 body, for a version that knows the first `known` source codes.
pub(super) fn from_v4_with(
    (profile, views): (StoredProfileV3<'_>, StoredViewsV4<'_>),
    known: usize,
) -> Result<Profile, String> {
    let mut p = from_v3_with(profile, known)?;
    apply_views("executables", &mut p.executables, views.executables)?;
    apply_views("deviations", &mut p.deviations, views.deviations)?;
    Ok(p)
}
