//! `--replay FILE`: serve events captured in Tetragon's export format. The
//! procFS execs at the top of a startup become the initial process cache; every
//! other exec/exit line is played as the live feed, in file order.
use std::io::BufRead;
use std::path::Path;

use thiserror::Error;

use crate::snapshot::model::has_flag_word;
use crate::tetragon::proto::{get_events_response::Event, GetEventsResponse};

#[derive(Debug, Error)]
#[error("cannot read replay file {path}: {source}; give a Tetragon JSON export file (one event per line)")]
pub struct ReplayError {
    path: String,
    #[source]
    source: std::io::Error,
}

#[derive(Debug, Default)]
pub struct Replay {
    pub node_name: String,
    /// procFS `process_exec` events: the cache Tetragon had after its /proc scan.
    pub startup: Vec<GetEventsResponse>,
    /// Everything else, played in order.
    pub feed: Vec<GetEventsResponse>,
    /// Lines that were not Tetragon events (counted, skipped).
    pub skipped_lines: u64,
}

fn is_procfs_exec(ev: &GetEventsResponse) -> bool {
    matches!(&ev.event, Some(Event::ProcessExec(e)) if e.process.as_ref().is_some_and(|p| has_flag_word(&p.flags, "procFS")))
}

pub fn load(path: &Path) -> Result<Replay, ReplayError> {
    let err = |source| ReplayError {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut replay = Replay::default();
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line.map_err(err)?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<GetEventsResponse>(&line) {
            Ok(ev) if ev.event.is_some() => {
                if replay.node_name.is_empty() {
                    replay.node_name = ev.node_name.clone();
                }
                if is_procfs_exec(&ev) {
                    replay.startup.push(ev);
                } else {
                    replay.feed.push(ev);
                }
            }
            _ => replay.skipped_lines += 1,
        }
    }
    if replay.node_name.is_empty() {
        replay.node_name = "replay-node".to_string();
    }
    Ok(replay)
}
