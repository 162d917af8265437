//! Classifying one line of the export log (pure).
use crate::tetragon::proto::GetEventsResponse;

/// What a line holds.
#[derive(Debug)]
pub enum ParsedLine {
    Event(Box<GetEventsResponse>),
    Blank,
    NonUtf8,
    /// Not JSON, or not a `GetEventsResponse` (wrong field types).
    Malformed,
}

/// Parses one protojson `GetEventsResponse` line. Unknown fields and event kinds
/// are accepted (the generated serde code ignores them) so a newer Tetragon's
/// log still reads; unknown kinds come back with `event: None`.
pub fn parse_line(bytes: &[u8]) -> ParsedLine {
    let text = match line_text(bytes) {
        Ok(text) => text,
        Err(skip) => return skip,
    };
    parse_text(text)
}

/// The line as text, or why it is skipped before any decoding
/// ([`ParsedLine::NonUtf8`] or [`ParsedLine::Blank`]).
pub fn line_text(bytes: &[u8]) -> Result<&str, ParsedLine> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(ParsedLine::NonUtf8);
    };
    if text.trim().is_empty() {
        return Err(ParsedLine::Blank);
    }
    Ok(text)
}

/// The full decode of a line [`line_text`] let through.
pub fn parse_text(text: &str) -> ParsedLine {
    match serde_json::from_str::<GetEventsResponse>(text) {
        Ok(event) => ParsedLine::Event(Box::new(event)),
        Err(_) => ParsedLine::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tetragon::proto::get_events_response::Event;

    #[test]
    fn classifies_lines() {
        assert!(matches!(parse_line(b"  "), ParsedLine::Blank));
        assert!(matches!(parse_line(b"\xff{}"), ParsedLine::NonUtf8));
        assert!(matches!(
            parse_line(b"{\"process_exec\":"),
            ParsedLine::Malformed
        ));
        assert!(matches!(parse_line(b"[1,2]"), ParsedLine::Malformed));
        assert!(matches!(
            parse_line(br#"{"process_exec":{"process":{"pid":"x"}}}"#),
            ParsedLine::Malformed
        ));
    }

    #[test]
    fn unknown_kinds_parse_without_an_event() {
        let ParsedLine::Event(e) =
            parse_line(br#"{"process_loader":{"path":"f"},"node_name":"vm"}"#)
        else {
            panic!("should parse");
        };
        assert!(e.event.is_none());
        assert_eq!(e.node_name, "vm");
    }

    #[test]
    fn exec_lines_parse() {
        let line = br#"{"process_exec":{"process":{"exec_id":"dm06MTow","pid":0,"binary":"<kernel>","flags":"procFS"}},"node_name":"vm","time":"2026-11-29T14:47:16.824628294Z"}"#;
        let ParsedLine::Event(e) = parse_line(line) else {
            panic!("should parse");
        };
        assert!(matches!(e.event, Some(Event::ProcessExec(_))));
    }
}
