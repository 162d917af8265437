//! Names in log lines come from workloads (a container picks its file names) and
//! can be megabytes long: a log line quotes at most a bounded prefix of one.
//! Outputs meant to carry the exact value (JSON, exports, tables) do not use this.
use std::borrow::Cow;
use std::fmt::Display;

/// Longest prefix of a name quoted in a log line, in bytes.
pub const MAX_LOGGED_BYTES: usize = 256;

/// `s` when short enough; else its first `MAX_LOGGED_BYTES` (cut on a char
/// boundary) and a note of how many bytes were left out.
pub fn bounded(s: &str) -> Cow<'_, str> {
    bounded_to(s, MAX_LOGGED_BYTES)
}

/// A workload-controlled name as a log field: bounded, and with control
/// characters, quotes and backslashes escaped, so that one name is one field
/// of one line in the human format too.
pub fn name(s: &str) -> String {
    bounded(s).escape_debug().to_string()
}

/// [`name`] of a value shown through `Display` (a learner key: its parts are
/// pod, workload and container names).
pub fn display(v: &impl Display) -> String {
    name(&v.to_string())
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

    #[test]
    fn a_logged_name_is_one_bounded_escaped_field() {
        let hostile = format!("/tmp/x\n\"{{{{}}}}\u{1b}[31m{}", "z".repeat(1 << 20));
        let got = name(&hostile);
        // 256 bytes at most, each escaped to at most 10 (\u{10ffff}), plus the note.
        assert!(got.len() <= MAX_LOGGED_BYTES * 10 + 32, "{}", got.len());
        assert!(got.starts_with(r#"/tmp/x\n\"{{}}\u{1b}[31mzzz"#), "{got}");
        assert!(!got.chars().any(char::is_control));
        assert!(got.ends_with(" more bytes]"));
        assert_eq!(name("/bin/sh"), "/bin/sh");
        assert_eq!(
            display(&format_args!("ns/{}", "w".repeat(300))).len(),
            256 + "...[47 more bytes]".len()
        );
    }
}
