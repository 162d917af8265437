//! Writes a Tetragon-style JSON export log: one protojson `GetEventsResponse`
//! per line, snake_case names, startup procFS execs first. Like Tetragon's
//! `--export-deny-list`, an optional namespace deny filter leaves events out of
//! the file (not out of the gRPC stream).
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::tetragon::proto::{Filter, GetEventsRequest, GetEventsResponse};

use super::filter;

/// The namespaces of the Tetragon Helm chart's default `exportDenyList`
/// (`{"namespace":["", "cilium", "kube-system"]}`): `""` is every process
/// without pod info, i.e. host processes, `<kernel>` included.
pub const HELM_DEFAULT_EXPORT_DENY_NAMESPACES: [&str; 3] = ["", "cilium", "kube-system"];

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
    /// Tetragon's export deny list, as one namespace filter (none: write all).
    deny: Option<GetEventsRequest>,
    denied: u64,
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
            deny: None,
            denied: 0,
        })
    }

    /// Leaves out events of processes in these Kubernetes namespaces, with
    /// Tetragon's semantics: one deny filter `{"namespace": [..]}`, where a
    /// process without pod info has namespace `""`. Empty: export everything
    /// (the Tetragon binary's default).
    pub fn with_deny_namespaces(mut self, namespaces: &[String]) -> Self {
        self.deny = (!namespaces.is_empty()).then(|| GetEventsRequest {
            deny_list: vec![Filter {
                namespace: namespaces.to_vec(),
                ..Filter::default()
            }],
            ..GetEventsRequest::default()
        });
        self
    }

    /// Events left out by the deny list so far.
    pub fn denied(&self) -> u64 {
        self.denied
    }

    /// Writes one event, unless the deny list leaves it out.
    pub fn write(&mut self, ev: &GetEventsResponse) -> Result<(), ExportWriteError> {
        if self.deny.as_ref().is_some_and(|d| !filter::passes(d, ev)) {
            self.denied += 1;
            return Ok(());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tetragon::proto::{get_events_response::Event, Pod, Process, ProcessExec};

    fn exec(pid: u32, namespace: Option<&str>) -> GetEventsResponse {
        GetEventsResponse {
            event: Some(Event::ProcessExec(ProcessExec {
                process: Some(Process {
                    exec_id: format!("id{pid}"),
                    pid: Some(pbjson_types::UInt32Value { value: pid }),
                    pod: namespace.map(|ns| Pod {
                        namespace: ns.into(),
                        ..Pod::default()
                    }),
                    ..Process::default()
                }),
                ..ProcessExec::default()
            })),
            ..GetEventsResponse::default()
        }
    }

    #[test]
    fn helm_default_deny_list_keeps_only_other_namespaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tetragon.log");
        let deny: Vec<String> = HELM_DEFAULT_EXPORT_DENY_NAMESPACES
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut w = ExportWriter::open(&path)
            .expect("open")
            .with_deny_namespaces(&deny);
        for ev in [
            exec(0, None),
            exec(1, Some("kube-system")),
            exec(2, Some("cilium")),
            exec(3, Some("shop")),
        ] {
            w.write(&ev).expect("write");
        }
        w.flush().expect("flush");
        assert_eq!(w.denied(), 3);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("\"shop\""), "{text}");
    }
}
