//! The live process table: which learner each running process belongs to.
//! Snapshot entries and execs go in, exits go out.
use std::collections::HashMap;

use crate::learner::key::LearnerKey;

#[derive(Debug, Default)]
pub struct ProcessTable {
    live: HashMap<String, LearnerKey>,
}

impl ProcessTable {
    pub fn exec(&mut self, exec_id: String, key: LearnerKey) {
        self.live.insert(exec_id, key);
    }

    pub fn exit(&mut self, exec_id: &str) -> Option<LearnerKey> {
        self.live.remove(exec_id)
    }

    /// A snapshot is the truth about what runs now: it replaces the table.
    pub fn replace(&mut self, entries: impl IntoIterator<Item = (String, LearnerKey)>) {
        self.live = entries.into_iter().collect();
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_exit_and_replace() {
        let mut t = ProcessTable::default();
        let k = LearnerKey::new("ns", "Pod", "p", "c");
        t.exec("a".into(), k.clone());
        t.exec("b".into(), k.clone());
        assert_eq!(t.exit("a"), Some(k.clone()));
        assert_eq!(t.exit("a"), None);
        t.replace([("z".to_string(), k)]);
        assert_eq!(t.len(), 1);
    }
}
