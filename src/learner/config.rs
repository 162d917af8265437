//! Learner timing: how long a profile must stay quiet, and learn at all, before
//! it is called stable. Plain data so it can come from flags, env or a ConfigMap.
use serde::{Deserialize, Serialize};

/// 30 minutes: long enough for cron-like helpers and probes to show up once.
pub const DEFAULT_STABILITY_WINDOW_MS: u64 = 30 * 60 * 1000;
/// A profile (and, while locked, its deviations) holds at most this many
/// executables: a container that execs random file names in a loop must not
/// grow the agent's memory and disk without bound.
pub const DEFAULT_MAX_EXECUTABLES: usize = 5_000;
/// 1 hour: a container that happens to be quiet right after the agent starts
/// must not be declared stable before it had a fair chance to do things.
pub const DEFAULT_MIN_LEARNING_MS: u64 = 60 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearnerConfig {
    /// Nothing new may have been learned for this long before `Learning → Stable`.
    pub stability_window_ms: u64,
    /// The current learning period must have lasted at least this long too.
    pub min_learning_ms: u64,
    /// Beyond this many executables (or deviations), new ones are not recorded
    /// and the profile is marked partial (too-many-executables).
    pub max_executables: usize,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        Self {
            stability_window_ms: DEFAULT_STABILITY_WINDOW_MS,
            min_learning_ms: DEFAULT_MIN_LEARNING_MS,
            max_executables: DEFAULT_MAX_EXECUTABLES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_half_an_hour_and_an_hour() {
        let cfg = LearnerConfig::default();
        assert_eq!(cfg.stability_window_ms, 1_800_000);
        assert_eq!(cfg.min_learning_ms, 3_600_000);
    }

    #[test]
    fn missing_fields_take_defaults() {
        let cfg: LearnerConfig = serde_json::from_str(r#"{"min_learning_ms":5}"#).unwrap();
        assert_eq!(cfg.min_learning_ms, 5);
        assert_eq!(cfg.stability_window_ms, DEFAULT_STABILITY_WINDOW_MS);
        assert!(serde_json::from_str::<LearnerConfig>(r#"{"typo_ms":5}"#).is_err());
    }
}
