//! Versioned encoding of stored values: one version byte, then JSON. JSON keeps
//! records readable with generic tools and tolerant of added fields; the version
//! byte lets a later encoding coexist with this one.
use crate::learner::profile::Profile;

pub const PROFILE_VALUE_V1: u8 = 1;

pub fn encode_profile(p: &Profile) -> Vec<u8> {
    let mut out = vec![PROFILE_VALUE_V1];
    // Profile holds only strings, numbers and maps with string keys: it always
    // serializes.
    if let Err(e) = serde_json::to_writer(&mut out, p) {
        tracing::error!(error = %e, "profile serialization failed");
    }
    out
}

pub fn decode_profile(bytes: &[u8]) -> Result<Profile, String> {
    match bytes.split_first() {
        Some((&PROFILE_VALUE_V1, body)) => {
            serde_json::from_slice(body).map_err(|e| format!("invalid v1 profile: {e}"))
        }
        Some((v, _)) => Err(format!("unknown value version {v}")),
        None => Err("empty value".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::key::LearnerKey;

    #[test]
    fn round_trips_and_refuses_unknown_versions() {
        let p = Profile::new(LearnerKey::new("ns", "Deployment", "web", "app"), 5);
        assert_eq!(decode_profile(&encode_profile(&p)).unwrap(), p);
        assert!(decode_profile(&[9, b'{', b'}'])
            .unwrap_err()
            .contains("version 9"));
        assert!(decode_profile(&[]).is_err());
    }
}
