//! A tiny Mermaid `stateDiagram-v2` reader and writer, just enough to keep the
//! pictures in `state-diagrams/` equal to the transition tables in code: the code
//! renders its table, a test compares the file with it and parses the file back
//! into a set of edges. Generic over state machines (learner, connection).
use std::collections::BTreeSet;

/// Mermaid's pseudo-state for "start" (and "end").
pub const START: &str = "[*]";

/// One arrow: (from, label, to). The label is `""` when the arrow has none.
pub type Edge = (String, String, String);

/// Renders a diagram: a `[*] --> initial` arrow, then one arrow per edge in the
/// given order (so the file diffs cleanly when the table changes).
/// `generated_from` names the code the text comes from, for whoever opens the file.
pub fn render_mermaid(initial: &str, edges: &[(&str, &str, &str)], generated_from: &str) -> String {
    let mut out = String::from("stateDiagram-v2\n");
    out.push_str(&format!(
        "    %% Generated from {generated_from}; do not edit by hand.\n"
    ));
    out.push_str(
        "    %% `cargo test --test state_diagrams` fails on drift and prints this text.\n",
    );
    out.push_str(&arrow(START, "", initial));
    for (from, label, to) in edges {
        out.push_str(&arrow(from, label, to));
    }
    out
}

fn arrow(from: &str, label: &str, to: &str) -> String {
    if label.is_empty() {
        format!("    {from} --> {to}\n")
    } else {
        format!("    {from} --> {to}: {label}\n")
    }
}

/// The edges a renderer would draw for this table, as `parse_transitions` reads
/// them back: the start arrow plus every edge.
pub fn edge_set(initial: &str, edges: &[(&str, &str, &str)]) -> BTreeSet<Edge> {
    let start = (START.to_string(), String::new(), initial.to_string());
    edges
        .iter()
        .map(|(from, label, to)| (from.to_string(), label.to_string(), to.to_string()))
        .chain(std::iter::once(start))
        .collect()
}

/// Reads every `A --> B` or `A --> B: label` line of a diagram as (A, label, B).
/// Everything else (header, `%%` comments, `state`/`note`/`direction` lines) is
/// skipped: only arrows carry transitions. A malformed arrow is kept as read (for
/// example with an empty state name) so a comparison with the code fails loudly
/// instead of the line silently vanishing.
pub fn parse_transitions(text: &str) -> BTreeSet<Edge> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("%%"))
        .filter_map(|line| {
            let (from, rest) = line.split_once("-->")?;
            let (to, label) = rest.split_once(':').unwrap_or((rest, ""));
            Some((
                from.trim().to_string(),
                label.trim().to_string(),
                to.trim().to_string(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: &str, label: &str, to: &str) -> Edge {
        (from.into(), label.into(), to.into())
    }

    #[test]
    fn parses_arrows_and_skips_the_rest() {
        let text = "\
stateDiagram-v2
    direction LR
    %% A --> B: not an arrow, a comment
    state Up
    note right of Up : a note: not an arrow
    [*] --> Idle
    Idle --> Up : connect
    Up-->Idle:drop: with colon
";
        let want: BTreeSet<Edge> = [
            edge("[*]", "", "Idle"),
            edge("Idle", "connect", "Up"),
            edge("Up", "drop: with colon", "Idle"),
        ]
        .into();
        assert_eq!(parse_transitions(text), want);
    }

    #[test]
    fn malformed_arrow_is_kept_so_comparisons_fail() {
        assert_eq!(
            parse_transitions("--> B"),
            BTreeSet::from([edge("", "", "B")])
        );
    }

    #[test]
    fn render_then_parse_round_trips() {
        let edges = [("A", "go", "B"), ("B", "back", "A"), ("B", "", "[*]")];
        let text = render_mermaid("A", &edges, "a test");
        assert!(text.starts_with("stateDiagram-v2\n"));
        assert!(text.contains("    [*] --> A\n    A --> B: go\n"));
        assert_eq!(parse_transitions(&text), edge_set("A", &edges));
    }
}
