//! Pure helpers behind `debug`: statistics over stored profiles, and plain-text
//! tables that carry hostile strings (paths a container chose) without letting
//! them forge rows or reorder text on a terminal. Nothing here does I/O.
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::learner::profile::Profile;
use crate::learner::state::LearnerState;
use crate::time::UnixMillis;

/// Counts over a set of profiles, plus what the store says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub schema_version: u32,
    pub learners: usize,
    /// Every state is present, with 0 when no learner is in it.
    pub learners_by_state: BTreeMap<String, usize>,
    pub executables: usize,
    pub deviations: usize,
    /// Learners whose profile may miss executables (see `PartialReason`).
    pub partial_learners: usize,
    pub size_on_disk_bytes: u64,
}

/// Everything `debug` shows, read from a store in one go: the same data comes
/// from a stopped agent's directory or, as JSON, from a running agent's admin
/// socket (which reads its own store, so it reports only what is durable).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DbScan {
    pub path: std::path::PathBuf,
    pub schema_version: u32,
    pub size_on_disk_bytes: u64,
    pub profiles: Vec<Profile>,
    /// Records that did not decode: (key, reason).
    pub bad: Vec<(String, String)>,
}

impl DbScan {
    /// Blocking: scans every record.
    pub fn read(store: &crate::store::Store) -> Result<Self, crate::store::StoreError> {
        let (profiles, bad) = store.scan()?;
        Ok(Self {
            path: store.path().to_path_buf(),
            schema_version: store.schema_version(),
            size_on_disk_bytes: store.size_on_disk(),
            profiles,
            bad,
        })
    }

    /// A running agent's scan: profiles from what the Checkpointer confirmed as
    /// flushed (so nothing merely applied but not yet durable is shown), bad
    /// records from the on-disk scan. Blocking.
    pub fn read_durable(
        store: &crate::store::Store,
        durable: Vec<Profile>,
    ) -> Result<Self, crate::store::StoreError> {
        let (_, bad) = store.scan()?;
        Ok(Self {
            path: store.path().to_path_buf(),
            schema_version: store.schema_version(),
            size_on_disk_bytes: store.size_on_disk(),
            profiles: durable,
            bad,
        })
    }

    pub fn stats(&self) -> Stats {
        stats(&self.profiles, self.schema_version, self.size_on_disk_bytes)
    }
}

pub fn stats(profiles: &[Profile], schema_version: u32, size_on_disk_bytes: u64) -> Stats {
    let mut by_state: BTreeMap<String, usize> = LearnerState::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for p in profiles {
        *by_state.entry(p.state.as_str().to_string()).or_default() += 1;
    }
    Stats {
        schema_version,
        learners: profiles.len(),
        learners_by_state: by_state,
        executables: profiles.iter().map(|p| p.executables.len()).sum(),
        deviations: profiles.iter().map(|p| p.deviations.len()).sum(),
        partial_learners: profiles
            .iter()
            .filter(|p| !p.partial_reasons.is_empty())
            .count(),
        size_on_disk_bytes,
    }
}

/// The latest time the profile itself changed: creation, start of the current
/// learning period (drift, unlock, reset) or the last new executable.
pub fn last_change(p: &Profile) -> UnixMillis {
    p.created_at.max(p.learning_since).max(p.last_new_at)
}

/// Characters that must not reach a terminal raw: C0/C1 controls and DEL (line
/// breaks, escape sequences), Unicode line separators, and the invisible
/// format characters that reorder or hide text (bidi embeddings, overrides and
/// isolates, directional and zero-width marks, BOM).
fn needs_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{61c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// Escapes a string for human output. `\` becomes `\\`, so the escaped text is
/// unambiguous: a path that literally holds `\n` reads `\\n`. Unchanged text is
/// borrowed.
pub fn escape_for_terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || needs_escape(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A left-aligned text table. Every cell (header too) is escaped when added and never cut:
/// a long path widens its column instead of being truncated.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header
                .iter()
                .map(|h| escape_for_terminal(h).into_owned())
                .collect(),
            rows: Vec::new(),
        }
    }

    pub fn push<S: AsRef<str>>(&mut self, cells: &[S]) {
        let row = cells
            .iter()
            .map(|c| escape_for_terminal(c.as_ref()).into_owned())
            .collect();
        self.rows.push(row);
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Columns separated by two spaces, one line per row, trailing newline.
    pub fn render(&self) -> String {
        let cols = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; cols];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end_matches(' '));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::key::LearnerKey;
    use crate::learner::profile::PartialReason;

    #[test]
    fn escapes_controls_bidi_and_backslash_and_borrows_clean_text() {
        assert!(matches!(
            escape_for_terminal("/usr/bin/env"),
            Cow::Borrowed(_)
        ));
        let got = escape_for_terminal("a\nb\tc\r\u{1b}[31m\u{85}\u{202e}x\u{2066}\u{200f}\\n");
        assert_eq!(
            got,
            "a\\nb\\tc\\r\\u{1b}[31m\\u{85}\\u{202e}x\\u{2066}\\u{200f}\\\\n"
        );
        assert!(!got.chars().any(needs_escape));
        // Printable non-ASCII stays readable.
        assert_eq!(escape_for_terminal("/opt/ünï/日本"), "/opt/ünï/日本");
    }

    #[test]
    fn table_aligns_escapes_and_never_truncates() {
        let long = "/x".repeat(2_000);
        let mut t = Table::new(&["PATH", "N"]);
        t.push(&[long.as_str(), "1"]);
        t.push(&["/bin/evil\nFAKE  ROW", "2"]);
        let text = t.render();
        assert_eq!(text.lines().count(), 3);
        assert!(text.contains(&long));
        assert!(text.contains("/bin/evil\\nFAKE  ROW"));
        let n_col = text.lines().next().map(|l| l.find('N')).unwrap_or_default();
        assert_eq!(n_col, Some(long.len() + 2));
    }

    #[test]
    fn stats_count_every_state() {
        let mut a = Profile::new(LearnerKey::new("ns", "Pod", "a", "c"), 0);
        a.partial_reasons.insert(PartialReason::EventsDropped);
        let mut b = Profile::new(LearnerKey::new("ns", "Pod", "b", "c"), 0);
        b.state = LearnerState::Locked;
        let s = stats(&[a, b], 1, 42);
        assert_eq!(s.learners, 2);
        assert_eq!(s.partial_learners, 1);
        assert_eq!(s.learners_by_state.get("stable"), Some(&0));
        assert_eq!(s.learners_by_state.get("locked"), Some(&1));
        assert_eq!(s.size_on_disk_bytes, 42);
    }
}
