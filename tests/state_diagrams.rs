//! The pictures in `state-diagrams/` must be exactly the transition tables in
//! code. Each machine (learner, report ledger, connection, connection actions)
//! gets one test function calling `check_diagram`; so does completeness.
use std::collections::BTreeSet;
use std::path::PathBuf;

use tetragon_learner::diagram::{self, Edge};
use tetragon_learner::learner::state::{self, LearnerState};

fn read(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Fails when the file's arrows differ from the table (listing what is missing
/// and extra), when its text differs from the rendering (printing the text to
/// paste), or when the README does not show it.
fn check_diagram(file: &str, expected_edges: BTreeSet<Edge>, rendered: &str) {
    let text = read(&format!("state-diagrams/{file}"));
    let parsed = diagram::parse_transitions(&text);
    let missing: Vec<_> = expected_edges.difference(&parsed).collect();
    let extra: Vec<_> = parsed.difference(&expected_edges).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "state-diagrams/{file} drifted from the code.\nmissing: {missing:?}\nextra: {extra:?}\n\
         expected text:\n{rendered}"
    );
    assert_eq!(
        text, rendered,
        "state-diagrams/{file} is not the rendered text; replace it with:\n{rendered}"
    );
    let readme = read("state-diagrams/README.md");
    assert!(
        readme.contains(&format!("```mermaid\n{rendered}```")),
        "state-diagrams/README.md must show {file} verbatim in a ```mermaid block"
    );
}

#[test]
fn learner_diagram_matches_code() {
    let edges = state::diagram_edges();
    let expected = diagram::edge_set(LearnerState::INITIAL.diagram_name(), &edges);
    // The table and the state list agree with what the diagram draws.
    assert_eq!(expected.len(), state::transitions().len() + 1);
    check_diagram("learner.mmd", expected, &state::render_diagram());
}

#[test]
fn connection_diagram_matches_code() {
    use tetragon_learner::tetragon::connection::machine;
    let edges = machine::diagram_edges();
    let expected = diagram::edge_set("Disconnected", &edges);
    assert_eq!(expected.len(), machine::transitions().len() + 1);
    check_diagram("connection.mmd", expected, &machine::render_diagram());
}

#[test]
fn report_ledger_diagram_matches_code() {
    use tetragon_learner::learner::ledger::{self, NewsState};
    let edges = ledger::diagram_edges();
    let expected = diagram::edge_set(NewsState::INITIAL.name(), &edges);
    assert_eq!(expected.len(), ledger::transitions().len() + 1);
    check_diagram("report-ledger.mmd", expected, &ledger::render_diagram());
}

#[test]
fn connection_actions_diagram_matches_code() {
    use tetragon_learner::tetragon::connection::machine;
    let edges = machine::action_diagram_edges();
    let edges: Vec<(&str, &str, &str)> = edges
        .iter()
        .map(|(from, label, to)| (*from, label.as_str(), *to))
        .collect();
    let expected = diagram::edge_set("Disconnected", &edges);
    assert_eq!(expected.len(), machine::transitions().len() + 1);
    check_diagram(
        "connection-actions.mmd",
        expected,
        &machine::render_action_diagram(),
    );
}

#[test]
fn completeness_diagram_matches_code() {
    use tetragon_learner::learner::completeness;
    let edges = completeness::diagram_edges();
    let expected = diagram::edge_set(completeness::diagram_state(None), &edges);
    assert_eq!(expected.len(), edges.len() + 1);
    check_diagram(
        "completeness.mmd",
        expected,
        &completeness::render_diagram(),
    );
}
