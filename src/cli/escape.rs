//! Human output carries paths chosen by workloads: escape what could forge
//! lines or reorder text on a terminal (controls, bidi overrides).
// One implementation serves every human output; it lives beside the table
// renderer that uses it most.
pub use crate::store::inspect::escape_for_terminal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bidi_but_keeps_text() {
        assert_eq!(escape_for_terminal("/bin/ls"), "/bin/ls");
        assert_eq!(
            escape_for_terminal("a\nb\u{202e}c\u{1b}"),
            "a\\nb\\u{202e}c\\u{1b}"
        );
        assert_eq!(escape_for_terminal("{{ x }} %n \"q\""), "{{ x }} %n \"q\"");
    }
}
