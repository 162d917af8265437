//! The sled database behind a small interface: open (with schema checks), load
//! every profile, write a batch durably. Only the Checkpointer writes.
use std::path::{Path, PathBuf};

use crate::learner::key::LearnerKey;
use crate::learner::profile::Profile;

use super::codec::{decode_profile, encode_profile};
use super::error::StoreError;
use super::health::StorageState;

/// Bumped when the layout changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;
const META_TREE: &str = "meta";
const PROFILES_TREE: &str = "profiles";
/// How far the backfill read the export log (see `backfill::position`): a
/// tree of its own with one versioned record, so older agents ignore it.
const BACKFILL_TREE: &str = "backfill";
const BACKFILL_POSITION_KEY: &[u8] = b"position";
const SCHEMA_KEY: &[u8] = b"schema_version";
const APP_KEY: &[u8] = b"application";
const APP_NAME: &[u8] = b"tetragon-learner";

/// A record that did not decode: (key, reason).
pub type BadRecord = (String, String);

/// Written beside sled's files when the database is created: sled 0.34 opens a
/// damaged `db` file as an empty database, and this marker is how such a reset
/// is told apart from a new database.
const MARKER_FILE: &str = "tetragon-learner.db";

#[derive(Clone)]
pub struct Store {
    /// The database as the operator named it (errors and reports name this).
    path: PathBuf,
    /// Where sled's files are: `path`, or a private copy of it (readers).
    dir: PathBuf,
    db: sled::Db,
    profiles: sled::Tree,
    /// Number of learner records: counted once at open (sled's `len` scans the
    /// whole tree), then kept up to date by `write_durably`.
    records: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The private copy a reader opened; removed with the last clone.
    _copy: Option<std::sync::Arc<tempfile::TempDir>>,
    storage: StorageHandle,
}

/// Whether writes work, shared by every clone of a store: the Checkpointer
/// updates it, `/readyz` reports it, `run` exits when it gives up.
pub type StorageHandle = std::sync::Arc<StorageShared>;

pub struct StorageShared {
    state: parking_lot::RwLock<StorageState>,
    gave_up: tokio::sync::watch::Sender<bool>,
    faults: FaultSwitch,
}

impl StorageShared {
    fn new() -> Self {
        Self {
            state: parking_lot::RwLock::new(StorageState::Ok),
            gave_up: tokio::sync::watch::channel(false).0,
            faults: FaultSwitch::default(),
        }
    }

    pub fn state(&self) -> StorageState {
        self.state.read().clone()
    }

    pub fn set_state(&self, state: StorageState) {
        let gave_up = matches!(state, StorageState::GaveUp { .. });
        *self.state.write() = state;
        if gave_up {
            self.gave_up.send_replace(true);
        }
    }

    /// Becomes true when the store gave up (see `store::health`).
    pub fn gave_up(&self) -> tokio::sync::watch::Receiver<bool> {
        self.gave_up.subscribe()
    }

    /// Fault injection behind the store interface (tests, drills).
    pub fn faults(&self) -> &FaultSwitch {
        &self.faults
    }
}

/// Simulated disk faults: `disk_full` fails writes and the space probe;
/// `sticky` fails writes only, as sled 0.34 does after ENOSPC until reopened.
#[derive(Debug, Default)]
pub struct FaultSwitch {
    pub disk_full: std::sync::atomic::AtomicBool,
    pub sticky: std::sync::atomic::AtomicBool,
}

impl FaultSwitch {
    fn check(&self, probe: bool) -> Result<(), String> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.disk_full.load(SeqCst) || (!probe && self.sticky.load(SeqCst)) {
            return Err("injected fault: No space left on device (os error 28)".into());
        }
        Ok(())
    }
}

/// What `open` found in the directory.
fn classify_open_error(path: &Path, e: sled::Error) -> StoreError {
    let reason = e.to_string();
    match e {
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock || reason.contains("lock") =>
        {
            StoreError::Locked {
                path: path.to_path_buf(),
            }
        }
        sled::Error::Io(io) => StoreError::Io {
            path: path.to_path_buf(),
            reason: io.to_string(),
        },
        _ => StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        },
    }
}

/// A directory holding files but no sled `conf`/`db` is someone else's data.
fn check_not_foreign(path: &Path) -> Result<(), StoreError> {
    if path.exists() && !path.is_dir() {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            reason: "it is a file; --db takes a directory".into(),
        });
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return Ok(());
    };
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty()
        || names
            .iter()
            .any(|n| n == "conf" || n == "db" || n == MARKER_FILE)
    {
        return Ok(());
    }
    Err(StoreError::Foreign {
        path: path.to_path_buf(),
        reason: format!(
            "it holds {} other {} and no sled database",
            names.len(),
            if names.len() == 1 { "file" } else { "files" }
        ),
    })
}

impl Store {
    /// Opens or creates the database. Never resets anything: a database that
    /// fails to open is an error naming the path.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        check_not_foreign(path)?;
        make_private(path)?;
        let had_marker = path.join(MARKER_FILE).exists();
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(|e| classify_open_error(path, e))?;
        let io = |e: sled::Error| StoreError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let meta = db.open_tree(META_TREE).map_err(io)?;
        let profiles = db.open_tree(PROFILES_TREE).map_err(io)?;
        match (
            meta.get(APP_KEY).map_err(io)?,
            meta.get(SCHEMA_KEY).map_err(io)?,
        ) {
            (None, None) if had_marker => {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    reason: "the database was created by tetragon-learner but sled opened it empty (its db file is damaged)".into(),
                });
            }
            (None, None) if profiles.is_empty() && db.is_empty() => {
                meta.insert(APP_KEY, APP_NAME).map_err(io)?;
                meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(io)?;
                db.flush().map_err(io)?;
                write_marker(path, 0)?;
            }
            (Some(app), Some(v)) if app.as_ref() == APP_NAME => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt {
                        path: path.to_path_buf(),
                        reason: "schema version record is malformed".into(),
                    })?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        path: path.to_path_buf(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
            // Our marker file is beside it: the database is ours and its
            // schema record was lost or damaged, not a foreign database.
            _ if had_marker => {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    reason: "tetragon-learner's schema record is missing or damaged (its db file is damaged)".into(),
                })
            }
            _ => {
                return Err(StoreError::Foreign {
                    path: path.to_path_buf(),
                    reason: "a sled database without tetragon-learner's schema record".into(),
                })
            }
        }
        let written = read_marker(path);
        let count = profiles.len();
        if count < written {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: format!(
                    "sled recovered {count} learner records but {written} were written before (its db file is damaged)"
                ),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            dir: path.to_path_buf(),
            db,
            profiles,
            records: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(count)),
            _copy: None,
            storage: std::sync::Arc::new(StorageShared::new()),
        })
    }

    /// Opens a checked private copy (see `preflight`): reports and errors name
    /// the original, whose files are never opened.
    pub fn open_copy(copy: super::preflight::DbCopy) -> Result<Self, StoreError> {
        let original = copy.original().to_path_buf();
        let tmp = copy.into_tempdir();
        let mut store = Self::open(tmp.path()).map_err(|e| e.at_path(&original))?;
        store.path = original;
        store._copy = Some(std::sync::Arc::new(tmp));
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, e: sled::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    pub fn schema_version(&self) -> u32 {
        SCHEMA_VERSION
    }

    /// Every stored profile; a record that does not decode is an error.
    pub fn load_all(&self) -> Result<Vec<Profile>, StoreError> {
        let (good, bad) = self.scan()?;
        match bad.into_iter().next() {
            Some((key, reason)) => Err(StoreError::BadRecord {
                path: self.path.clone(),
                key,
                reason,
            }),
            None => Ok(good),
        }
    }

    /// Decodes every record, returning the good ones and the problems.
    pub fn scan(&self) -> Result<(Vec<Profile>, Vec<BadRecord>), StoreError> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for item in self.profiles.iter() {
            let (k, v) = item.map_err(|e| self.io(e))?;
            let key = String::from_utf8_lossy(&k).into_owned();
            match decode_profile(&v) {
                Ok(p) if p.key.to_string() == key => good.push(p),
                Ok(p) => bad.push((key, format!("record holds key {}", p.key))),
                Err(e) => bad.push((key, e.to_string())),
            }
        }
        Ok((good, bad))
    }

    pub fn get(&self, key: &LearnerKey) -> Result<Option<Profile>, StoreError> {
        let Some(v) = self
            .profiles
            .get(key.to_string().as_bytes())
            .map_err(|e| self.io(e))?
        else {
            return Ok(None);
        };
        decode_profile(&v)
            .map(Some)
            .map_err(|e| StoreError::BadRecord {
                path: self.path.clone(),
                key: key.to_string(),
                reason: e.to_string(),
            })
    }

    /// Writes the profiles in one batch and flushes: durable on return.
    /// Blocking: call it off the async workers.
    pub fn write_durably(&self, profiles: &[Profile]) -> Result<(), StoreError> {
        self.storage
            .faults
            .check(false)
            .map_err(|reason| StoreError::Io {
                path: self.path.clone(),
                reason,
            })?;
        let mut batch = sled::Batch::default();
        let mut new_records = 0;
        for p in profiles {
            if !self
                .profiles
                .contains_key(p.key.to_string().as_bytes())
                .map_err(|e| self.io(e))?
            {
                new_records += 1;
            }
            batch.insert(p.key.to_string().as_bytes(), encode_profile(p));
        }
        self.profiles.apply_batch(batch).map_err(|e| self.io(e))?;
        self.db.flush().map_err(|e| self.io(e))?;
        // Records are never deleted, so the count only grows: a reopened database
        // with fewer records than this lost some (see `open`). The data is durable
        // already; a marker that cannot be written only weakens that check.
        use std::sync::atomic::Ordering;
        let records = self.records.fetch_add(new_records, Ordering::SeqCst) + new_records;
        // The count changes only with new records: rewriting an equal marker
        // would cost a file write and a rename per group commit for nothing.
        if new_records == 0 {
            return Ok(());
        }
        if let Err(e) = write_marker(&self.dir, records) {
            tracing::warn!(error = %e, "cannot update the record-count marker; damage detection on the next start is weaker");
        }
        Ok(())
    }

    /// The backfill position record as stored (decoded by `backfill::position`).
    pub fn backfill_position(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let tree = self.db.open_tree(BACKFILL_TREE).map_err(|e| self.io(e))?;
        Ok(tree
            .get(BACKFILL_POSITION_KEY)
            .map_err(|e| self.io(e))?
            .map(|v| v.to_vec()))
    }

    /// Writes the backfill position and flushes: durable on return. Blocking.
    pub fn write_backfill_position(&self, record: &[u8]) -> Result<(), StoreError> {
        self.storage
            .faults
            .check(false)
            .map_err(|reason| StoreError::Io {
                path: self.path.clone(),
                reason,
            })?;
        let tree = self.db.open_tree(BACKFILL_TREE).map_err(|e| self.io(e))?;
        tree.insert(BACKFILL_POSITION_KEY, record)
            .map_err(|e| self.io(e))?;
        self.db.flush().map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Write health shared by every clone.
    pub fn storage(&self) -> &StorageHandle {
        &self.storage
    }

    /// Whether the disk takes writes again: 1 MiB (two of sled's segments'
    /// worth of headroom would be more, but a full disk fails this already)
    /// written, synced and removed beside the database. Blocking.
    pub fn probe_space(&self) -> Result<(), StoreError> {
        use std::io::Write;
        let io = |reason: String| StoreError::Io {
            path: self.path.clone(),
            reason,
        };
        self.storage.faults.check(true).map_err(io)?;
        let probe = self.dir.join(".space-probe");
        let result = (|| {
            let mut f = std::fs::File::create(&probe)?;
            f.write_all(&vec![0u8; 1024 * 1024])?;
            f.sync_all()
        })();
        let _ = std::fs::remove_file(&probe);
        result.map_err(|e| io(e.to_string()))
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.records.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The database directory is owner-only (0700) and its files lose any group
/// and world bits: learned profiles describe every workload on the node.
fn make_private(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |e: std::io::Error| StoreError::Io {
        path: dir.to_path_buf(),
        reason: format!("cannot make it owner-only: {e}"),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let mode = meta.permissions().mode();
        if meta.is_file() && mode & 0o077 != 0 {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(io)?;
        }
    }
    Ok(())
}

/// Records the number of learner records known to be durable. Written after the
/// sled flush, so it never exceeds what is on disk.
fn write_marker(dir: &Path, records: usize) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{MARKER_FILE}.tmp"));
    let io = |e: std::io::Error| StoreError::Io {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::write(
        &tmp,
        format!("schema {SCHEMA_VERSION}\nrecords {records}\n"),
    )
    .map_err(io)?;
    std::fs::rename(&tmp, dir.join(MARKER_FILE)).map_err(io)
}

fn read_marker(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join(MARKER_FILE))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("records ")
                    .and_then(|n| n.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Moves a database that failed to open aside (`<dir>.corrupt-<unix ms>`), so a
/// fresh one can be created; the old files are kept for inspection.
pub fn quarantine(path: &Path, now_ms: u64) -> Result<PathBuf, StoreError> {
    let mut to = path.as_os_str().to_owned();
    to.push(format!(".corrupt-{now_ms}"));
    let to = PathBuf::from(to);
    std::fs::rename(path, &to).map_err(|e| StoreError::Quarantine {
        path: path.to_path_buf(),
        to: to.clone(),
        reason: e.to_string(),
    })?;
    Ok(to)
}
