//! The v5 body: the v4 body, then the learner's pod label sets (see the
//! layout in `codec.rs`).
use std::borrow::Cow;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::v3::StoredProfileV3;
use super::v4::{from_v4, to_v4, StoredViewsV4};
use crate::learner::pod_labels::{LabelSet, PodLabels, MAX_LABEL_SETS, MAX_PODS_PER_SET};
use crate::learner::profile::Profile;

/// Do not reorder, retype or remove fields; a new format is a new version byte.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredLabelSetV5<'a> {
    labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pods: Vec<Cow<'a, str>>,
}

pub(super) type StoredV5<'a> = (
    StoredProfileV3<'a>,
    StoredViewsV4<'a>,
    Vec<StoredLabelSetV5<'a>>,
);

pub(super) fn to_v5(p: &Profile) -> StoredV5<'_> {
    let (v3, views) = to_v4(p);
    let sets = p
        .pod_labels
        .sets
        .iter()
        .map(|(labels, pods)| StoredLabelSetV5 {
            labels: labels
                .iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
                .collect(),
            pods: pods.iter().map(|p| Cow::Borrowed(p.as_str())).collect(),
        })
        .collect();
    (v3, views, sets)
}

pub(super) fn from_v5((v3, views, sets): StoredV5<'_>) -> Result<Profile, String> {
    let mut p = from_v4((v3, views))?;
    if sets.len() > MAX_LABEL_SETS {
        return Err(format!("{} pod label sets", sets.len()));
    }
    let mut out = PodLabels::default();
    for s in sets {
        if s.pods.len() > MAX_PODS_PER_SET {
            return Err(format!("{} pods in a label set", s.pods.len()));
        }
        let n = s.labels.len();
        let labels: LabelSet = s
            .labels
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let m = s.pods.len();
        let pods: BTreeSet<String> = s.pods.into_iter().map(Cow::into_owned).collect();
        if labels.len() != n || pods.len() != m {
            return Err("duplicate label key or pod in a label set".into());
        }
        if out.sets.insert(labels, pods).is_some() {
            return Err("duplicate pod label set".into());
        }
    }
    p.pod_labels = out;
    Ok(p)
}
