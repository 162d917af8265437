//! Finding the export log: the active file, its rotated siblings, and their order.
//!
//! Tetragon writes through `cilium/lumberjack` with UTC names: `dir/stem.ext`
//! rotates to `dir/stem-2006-01-02T15-04-05.000.ext`, optionally compressed to
//! `….ext.gz` by way of a `….ext.gz.tmp`. Compression renames, writes the `.gz`,
//! then removes the plain file, so a listing can briefly show the same data twice.
//! This module keeps exactly one copy of each rotated file and orders them by the
//! time in their names (the event `time`s go backwards, so they cannot be used).
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::NaiveDateTime;

use super::error::ExportLogError;

/// Where Tetragon <= v1.7 writes its export log by default.
pub const LEGACY_EXPORT_LOG_PATH: &str = "/var/run/cilium/tetragon/tetragon.log";
/// Where later Tetragon releases write it by default.
pub const EXPORT_LOG_PATH: &str = "/var/log/tetragon/tetragon.log";

/// lumberjack's `backupTimeFormat` (Go layout `2006-01-02T15-04-05.000`).
const ROTATED_TIME_FORMAT: &str = "%Y-%m-%dT%H-%M-%S%.3f";
const ROTATED_TIME_LEN: usize = "2006-01-02T15-04-05.000".len();

/// Which export log to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportLogLocation {
    /// `--export-log PATH`: this active file and its rotated siblings.
    Path(PathBuf),
    /// No path given: every candidate that exists is considered and the one whose
    /// files were written most recently wins (a node upgraded across the default
    /// change may still hold a stale log at the old place).
    Search(Vec<PathBuf>),
}

impl Default for ExportLogLocation {
    fn default() -> Self {
        Self::Search(vec![
            PathBuf::from(LEGACY_EXPORT_LOG_PATH),
            PathBuf::from(EXPORT_LOG_PATH),
        ])
    }
}

impl ExportLogLocation {
    /// `Some(path)` from `--export-log`, or the default search.
    pub fn from_option(path: Option<PathBuf>) -> Self {
        path.map_or_else(Self::default, Self::Path)
    }
}

/// One file to read, in the order it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    pub path: PathBuf,
    pub compressed: bool,
    /// The compressed copy of a plain rotated file whose compression was in
    /// progress: read instead if the plain file vanishes before it is opened.
    pub compressed_twin: Option<PathBuf>,
}

/// The files of one export log, oldest first, active file last.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportFileSet {
    pub active: PathBuf,
    pub files: Vec<ExportFile>,
    /// Files of this log deliberately not read: `.gz.tmp` and duplicate `.gz` twins.
    pub ignored: Vec<PathBuf>,
}

/// What a directory entry is, relative to one active file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Active,
    Rotated {
        time: NaiveDateTime,
        compressed: bool,
    },
    /// A compression in progress (`.gz.tmp`): incomplete by definition.
    Temporary,
    Unrelated,
}

/// Classifies `name` against the active file name `active_name` (pure).
pub fn classify_name(active_name: &str, name: &str) -> NameKind {
    if name == active_name {
        return NameKind::Active;
    }
    // Go's filepath.Ext: the suffix from the last dot, or "".
    let (stem, ext) = match active_name.rfind('.') {
        Some(i) => active_name.split_at(i),
        None => (active_name, ""),
    };
    if let Some(base) = name.strip_suffix(".gz.tmp") {
        return match classify_name(active_name, base) {
            NameKind::Rotated { .. } => NameKind::Temporary,
            _ => NameKind::Unrelated,
        };
    }
    let Some(rest) = name.strip_prefix(stem).and_then(|r| r.strip_prefix('-')) else {
        return NameKind::Unrelated;
    };
    let (rest, compressed) = match rest.strip_suffix(".gz") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let Some(time_text) = rest.strip_suffix(ext) else {
        return NameKind::Unrelated;
    };
    let time = (time_text.len() == ROTATED_TIME_LEN)
        .then(|| NaiveDateTime::parse_from_str(time_text, ROTATED_TIME_FORMAT).ok())
        .flatten();
    match time {
        Some(time) => NameKind::Rotated { time, compressed },
        None => NameKind::Unrelated,
    }
}

/// Orders rotated entries by time and keeps one copy per time (the plain one,
/// with the `.gz` as its twin); the active file, if present, goes last (pure).
pub fn order_entries(dir: &Path, active_name: &str, names: &[String]) -> ExportFileSet {
    let mut rotated: Vec<(NaiveDateTime, bool, &str)> = Vec::new();
    let mut set = ExportFileSet {
        active: dir.join(active_name),
        ..ExportFileSet::default()
    };
    let mut active_present = false;
    for name in names {
        match classify_name(active_name, name) {
            NameKind::Active => active_present = true,
            NameKind::Rotated { time, compressed } => rotated.push((time, compressed, name)),
            NameKind::Temporary => set.ignored.push(dir.join(name)),
            NameKind::Unrelated => {}
        }
    }
    // Plain (false) sorts before compressed (true) for the same time.
    rotated.sort();
    let mut last_time = None;
    for (time, compressed, name) in rotated {
        let path = dir.join(name);
        if compressed && last_time == Some(time) {
            if let Some(last) = set.files.last_mut() {
                last.compressed_twin = Some(path.clone());
            }
            set.ignored.push(path);
            continue;
        }
        last_time = Some(time);
        set.files.push(ExportFile {
            path,
            compressed,
            compressed_twin: None,
        });
    }
    if active_present {
        set.files.push(ExportFile {
            path: set.active.clone(),
            compressed: false,
            compressed_twin: None,
        });
    }
    set
}

/// Lists the directory of `active` and orders its export files. `Ok(None)` when
/// the directory or every file of the log is missing.
pub fn list_file_set(active: &Path) -> Result<Option<ExportFileSet>, ExportLogError> {
    let dir = match active.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(active_name) = active.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ExportLogError::ListDir { dir, source }),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ExportLogError::ListDir {
            dir: dir.clone(),
            source,
        })?;
        // Non-UTF-8 names cannot be lumberjack's names: skip them.
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    let set = order_entries(&dir, active_name, &names);
    Ok((!set.files.is_empty()).then_some(set))
}

/// Resolves a location to the one file set to read.
pub fn discover(location: &ExportLogLocation) -> Result<ExportFileSet, ExportLogError> {
    let candidates: &[PathBuf] = match location {
        ExportLogLocation::Path(p) => std::slice::from_ref(p),
        ExportLogLocation::Search(c) => c,
    };
    let mut best: Option<(SystemTime, ExportFileSet)> = None;
    for candidate in candidates {
        let Some(set) = list_file_set(candidate)? else {
            continue;
        };
        let newest = newest_mtime(&set);
        if best.as_ref().is_none_or(|(t, _)| newest > *t) {
            best = Some((newest, set));
        }
    }
    best.map(|(_, set)| set)
        .ok_or_else(|| ExportLogError::NotFound {
            tried: candidates.to_vec(),
        })
}

fn newest_mtime(set: &ExportFileSet) -> SystemTime {
    set.files
        .iter()
        .filter_map(|f| fs::metadata(&f.path).and_then(|m| m.modified()).ok())
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A file opened for reading, with the path it was opened under.
#[derive(Debug)]
pub struct OpenedFile {
    pub path: PathBuf,
    pub compressed: bool,
    pub file: File,
}

/// Opens every file of the set before reading any. An open descriptor survives
/// lumberjack's rename and removal, so a rotation during the (possibly long)
/// read cannot make us skip or re-read data. Files that vanished since listing
/// (pruned by `--export-file-max-backups`, or a plain file replaced by its `.gz`)
/// are returned in the second list rather than failing the read.
pub fn open_all(set: &ExportFileSet) -> Result<(Vec<OpenedFile>, Vec<PathBuf>), ExportLogError> {
    let mut opened = Vec::with_capacity(set.files.len());
    let mut vanished = Vec::new();
    for f in &set.files {
        match open_one(&f.path, f.compressed)? {
            Some(o) => opened.push(o),
            None => match f
                .compressed_twin
                .as_deref()
                .map(|twin| open_one(twin, true))
            {
                Some(Ok(Some(o))) => opened.push(o),
                Some(Err(e)) => return Err(e),
                _ => vanished.push(f.path.clone()),
            },
        }
    }
    Ok((opened, vanished))
}

fn open_one(path: &Path, compressed: bool) -> Result<Option<OpenedFile>, ExportLogError> {
    match File::open(path) {
        Ok(file) => Ok(Some(OpenedFile {
            path: path.to_path_buf(),
            compressed,
            file,
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ExportLogError::Open {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, ROTATED_TIME_FORMAT).expect("test time")
    }

    #[test]
    fn classifies_lumberjack_names() {
        let a = "tetragon.log";
        assert_eq!(classify_name(a, "tetragon.log"), NameKind::Active);
        assert_eq!(
            classify_name(a, "tetragon-2026-11-29T15-00-38.986.log"),
            NameKind::Rotated {
                time: t("2026-11-29T15-00-38.986"),
                compressed: false
            }
        );
        assert_eq!(
            classify_name(a, "tetragon-2026-11-29T15-00-39.494.log.gz"),
            NameKind::Rotated {
                time: t("2026-11-29T15-00-39.494"),
                compressed: true
            }
        );
        assert_eq!(
            classify_name(a, "tetragon-2026-11-29T15-00-39.494.log.gz.tmp"),
            NameKind::Temporary
        );
        for other in [
            "tetragon.log.1",
            "tetragon-garbage.log",
            "other-2026-11-29T15-00-39.494.log",
            "tetragon-2026-11-29T15-00-39.494.json",
            "tetragon-2026-13-29T15-00-39.494.log",
        ] {
            assert_eq!(classify_name(a, other), NameKind::Unrelated, "{other}");
        }
    }

    #[test]
    fn name_without_extension() {
        assert!(matches!(
            classify_name("export", "export-2026-11-29T15-00-39.494"),
            NameKind::Rotated {
                compressed: false,
                ..
            }
        ));
        assert!(matches!(
            classify_name("export", "export-2026-11-29T15-00-39.494.gz"),
            NameKind::Rotated {
                compressed: true,
                ..
            }
        ));
    }

    #[test]
    fn orders_by_time_and_reads_a_duplicate_pair_once() {
        let names: Vec<String> = [
            "tetragon.log",
            "tetragon-2026-11-29T15-38-01.750.log.gz",
            "tetragon-2026-11-29T15-37-22.558.log.gz",
            "tetragon-2026-11-29T15-38-02.431.log.gz",
            "tetragon-2026-11-29T15-38-02.431.log",
            "tetragon-2026-11-29T15-38-03.000.log.gz.tmp",
            "tetragon-2026-11-29T15-38-03.000.log",
            "unrelated.txt",
        ]
        .map(String::from)
        .to_vec();
        let set = order_entries(Path::new("/d"), "tetragon.log", &names);
        let order: Vec<_> = set
            .files
            .iter()
            .map(|f| f.path.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            order,
            [
                "/d/tetragon-2026-11-29T15-37-22.558.log.gz",
                "/d/tetragon-2026-11-29T15-38-01.750.log.gz",
                "/d/tetragon-2026-11-29T15-38-02.431.log",
                "/d/tetragon-2026-11-29T15-38-03.000.log",
                "/d/tetragon.log",
            ]
        );
        assert_eq!(
            set.files[2].compressed_twin.as_deref(),
            Some(Path::new("/d/tetragon-2026-11-29T15-38-02.431.log.gz"))
        );
        assert_eq!(set.ignored.len(), 2);
    }

    #[test]
    fn rotated_files_without_active_file_still_form_a_set() {
        let names = vec!["tetragon-2026-11-29T15-37-22.558.log.gz".to_string()];
        let set = order_entries(Path::new("/d"), "tetragon.log", &names);
        assert_eq!(set.files.len(), 1);
        assert!(set.files[0].compressed);
    }
}
