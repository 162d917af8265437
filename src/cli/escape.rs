//! Human output carries paths chosen by workloads: escape what could forge
//! lines or reorder text on a terminal (controls, bidi overrides).
use std::borrow::Cow;

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}')
}

pub fn escape_for_terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

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
