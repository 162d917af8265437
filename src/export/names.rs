//! Kubernetes-valid names from hostile workload names: DNS-1123 object names,
//! label keys and values, with a stable FNV-1a hash suffix whenever a name had
//! to be altered, so distinct workloads never share one.

/// Longest Kubernetes object name (a DNS-1123 subdomain).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label value.
pub const MAX_LABEL_VALUE_LEN: usize = 63;
const HASH_LEN: usize = 10;

/// FNV-1a 64: a stable hash (std's hasher may change between releases).
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn short_hash(parts: &[&str]) -> String {
    // Parts are joined with a byte no Kubernetes name holds, so ("a-b", "c")
    // and ("a", "b-c") hash apart.
    let joined = parts.join("\u{0}");
    format!("{:016x}", fnv1a(joined.as_bytes()))[..HASH_LEN].to_string()
}

/// Lowercases and maps every byte outside `[a-z0-9-.]` to `-`, collapses runs
/// of separators, trims them at both ends.
fn sanitize(s: &str, allow_dot: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        let keep =
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (allow_dot && c == '.');
        let c = if keep { c } else { '-' };
        let last_sep = out.ends_with(['-', '.']);
        if (c == '-' || c == '.') && (out.is_empty() || last_sep) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches(['-', '.']).to_string()
}

fn with_hash(base: &str, hash: &str, max: usize) -> String {
    let room = max - hash.len() - 1;
    let mut cut = base.len().min(room);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = base[..cut].trim_end_matches(['-', '.']);
    if head.is_empty() {
        hash.to_string()
    } else {
        format!("{head}-{hash}")
    }
}

/// A valid DNS-1123 subdomain name for a workload's object: `<kind>-<workload>`
/// lowercased. When that form had to be altered (characters replaced, or longer
/// than 253) a hash of the exact kind and workload is appended, so distinct
/// workloads never share a name.
pub fn object_name(kind: &str, workload: &str) -> String {
    let natural = format!("{}-{}", kind.to_lowercase(), workload);
    let clean = sanitize(&natural, true);
    if clean == natural && clean.len() <= MAX_NAME_LEN && is_dns1123_subdomain(&clean) {
        return clean;
    }
    with_hash(&clean, &short_hash(&[kind, workload]), MAX_NAME_LEN)
}

/// Prefix of a host learner's cluster-scoped policy name. Workload policies
/// are `<kind>-<workload>`, and no workload kind is `tetragon-learner`.
pub const HOST_POLICY_PREFIX: &str = "tetragon-learner-host-";

/// A valid DNS-1123 name for the host learner of `node`:
/// `tetragon-learner-host-<node>` lowercased, hash-suffixed when it had to be
/// altered (like [`object_name`]), so distinct nodes never share one.
pub fn host_policy_name(node: &str) -> String {
    let natural = format!("{HOST_POLICY_PREFIX}{node}");
    let clean = sanitize(&natural, true);
    if clean == natural && is_dns1123_subdomain(&clean) {
        return clean;
    }
    with_hash(&clean, &short_hash(&["Host", node]), MAX_NAME_LEN)
}

/// Kubernetes' DNS-1123 subdomain rule: at most 253 characters, dot-separated
/// labels of `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// Kubernetes' label value rule: empty, or at most 63 characters of
/// `[A-Za-z0-9-_.]` starting and ending alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    s.is_empty()
        || (b.len() <= MAX_LABEL_VALUE_LEN
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')))
}

/// Kubernetes' label key rule: optional DNS-1123 prefix and `/`, then a name of
/// at most 63 characters (same alphabet as a label value, not empty).
pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

/// The pod label value that selects a workload: the workload name when it is a
/// valid label value, else a sanitized, hash-suffixed form.
pub fn workload_label_value(workload: &str) -> String {
    if is_label_value(workload) {
        return workload.to_string();
    }
    let clean = sanitize(workload, true);
    with_hash(&clean, &short_hash(&[workload]), MAX_LABEL_VALUE_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns1123_and_distinct() {
        assert_eq!(object_name("Deployment", "web"), "deployment-web");
        assert_eq!(object_name("StatefulSet", "db.v2"), "statefulset-db.v2");
        let odd = object_name("Pod", "Web\n{{x}}");
        assert!(is_dns1123_subdomain(&odd), "{odd}");
        assert!(odd.starts_with("pod-web-x-"), "{odd}");
        assert_ne!(odd, object_name("Pod", "Web {{x}}"));
        let long = object_name("Deployment", &"a".repeat(400));
        assert_eq!(long.len(), MAX_NAME_LEN);
        assert!(is_dns1123_subdomain(&long));
        assert_ne!(long, object_name("Deployment", &"a".repeat(401)));
        let hostile = object_name("Pod", "\u{202e}--..");
        assert!(is_dns1123_subdomain(&hostile), "{hostile}");
    }

    #[test]
    fn host_policy_names_are_dns1123_and_distinct() {
        assert_eq!(host_policy_name("node-1"), "tetragon-learner-host-node-1");
        let odd = host_policy_name("Node_1\n{{x}}");
        assert!(is_dns1123_subdomain(&odd), "{odd}");
        assert!(odd.starts_with("tetragon-learner-host-node-1-x-"), "{odd}");
        assert_ne!(odd, host_policy_name("Node_1 {{x}}"));
        let long = host_policy_name(&"n".repeat(400));
        assert_eq!(long.len(), MAX_NAME_LEN);
        assert!(is_dns1123_subdomain(&long));
        assert!(is_dns1123_subdomain(&host_policy_name("")));
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(workload_label_value("web"), "web");
        for w in [
            "x".repeat(64),
            "web\n".into(),
            "-a-".into(),
            "\u{202e}".into(),
        ] {
            let v = workload_label_value(&w);
            assert!(is_label_value(&v) && !v.is_empty(), "{w:?} -> {v:?}");
        }
        assert!(is_label_key("app") && is_label_key("tetragon-learner.io/workload"));
        assert!(!is_label_key("Bad Key") && !is_label_key("x/") && !is_label_key("UP.per/x"));
    }
}
