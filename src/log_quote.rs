//! Names in log lines come from workloads (a container picks its file names) and
//! can be megabytes long: a log line quotes at most a bounded prefix of one.
//! Outputs meant to carry the exact value (JSON, exports, tables) do not use this.
use std::borrow::Cow;

/// Longest prefix of a name quoted in a log line, in bytes.
pub const MAX_LOGGED_BYTES: usize = 256;

/// `s` when short enough; else its first `MAX_LOGGED_BYTES` (cut on a char
/// boundary) and a note of how many bytes were left out.
pub fn bounded(s: &str) -> Cow<'_, str> {
    bounded_to(s, MAX_LOGGED_BYTES)
}

pub fn bounded_to(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}...[{} more bytes]", &s[..end], s.len() - end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_pass_unchanged_and_long_ones_are_cut_on_a_char_boundary() {
        assert!(matches!(bounded("/bin/sh"), Cow::Borrowed("/bin/sh")));
        let long = "é".repeat(1000); // 2 bytes each
        let got = bounded_to(&long, 5);
        assert_eq!(got, "éé...[1996 more bytes]");
        let exact = "a".repeat(MAX_LOGGED_BYTES);
        assert_eq!(bounded(&exact), exact.as_str());
        let over = "a".repeat(MAX_LOGGED_BYTES + 1);
        assert!(bounded(&over).ends_with("...[1 more bytes]"));
    }
}
