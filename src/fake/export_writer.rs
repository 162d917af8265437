//! Writes a Tetragon-style JSON export log: one protojson `GetEventsResponse`
//! per line, snake_case names, startup procFS execs first.
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::tetragon::proto::GetEventsResponse;

#[derive(Debug, Error)]
#[error(
    "cannot write fake export log {path}: {source}; check the directory exists and is writable"
)]
pub struct ExportWriteError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

pub struct ExportWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl ExportWriter {
    /// Appends, as Tetragon does when it restarts on an existing file.
    pub fn open(path: &Path) -> Result<Self, ExportWriteError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| ExportWriteError {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    pub fn write(&mut self, ev: &GetEventsResponse) -> Result<(), ExportWriteError> {
        let err = |source| ExportWriteError {
            path: self.path.clone(),
            source,
        };
        serde_json::to_writer(&mut self.out, ev).map_err(|e| err(std::io::Error::other(e)))?;
        self.out.write_all(b"\n").map_err(err)
    }

    pub fn flush(&mut self) -> Result<(), ExportWriteError> {
        self.out.flush().map_err(|source| ExportWriteError {
            path: self.path.clone(),
            source,
        })
    }
}
