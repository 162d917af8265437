//! `export --format json`: the documented profiles array, identical to
//! `debug dump --format json` (see `learner::view`). Every learned executable is
//! listed with its `exec_probe` / `exec_session` marks: the include flags shape
//! allow-lists, not this inventory.
use crate::learner::profile::Profile;
use crate::learner::view::ProfileView;

use super::error::ExportError;

/// The exact text printed: pretty JSON and a final newline.
pub fn render(profiles: &[Profile]) -> Result<String, ExportError> {
    let views: Vec<ProfileView> = profiles.iter().map(Profile::to_view).collect();
    let mut text = serde_json::to_string_pretty(&views)?;
    text.push('\n');
    Ok(text)
}
