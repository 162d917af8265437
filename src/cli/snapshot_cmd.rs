//! `tetragon-learner snapshot`: one snapshot, printed as a table or as JSON.
use std::io::Write;

use clap::{Args, ValueEnum};

use crate::snapshot::model::ProcessSnapshot;
use crate::snapshot::policy::take;

use super::agent_args::TetragonArgs;
use super::escape::escape_for_terminal;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SnapshotFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub tetragon: TetragonArgs,
    #[arg(
        long,
        env = "TETRAGON_LEARNER_FORMAT",
        value_enum,
        default_value = "table"
    )]
    pub format: SnapshotFormat,
}

pub fn render_table(s: &ProcessSnapshot) -> String {
    let mut out = format!(
        "# source={} taken_at={} processes={}\n",
        s.source.as_str(),
        s.taken_at,
        s.processes.len()
    );
    out.push_str("PID\tNAMESPACE\tPOD\tCONTAINER\tBINARY\tFLAGS\n");
    for p in &s.processes {
        let (ns, pod) = p
            .pod
            .as_ref()
            .map(|p| (p.namespace.as_str(), p.name.as_str()))
            .unwrap_or(("-", "-"));
        let container = p.container.as_ref().map(|c| c.name.as_str()).unwrap_or("-");
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            p.pid,
            escape_for_terminal(ns),
            escape_for_terminal(pod),
            escape_for_terminal(container),
            escape_for_terminal(&p.binary),
            escape_for_terminal(&p.flags)
        ));
    }
    out
}

pub async fn run(args: SnapshotArgs) -> anyhow::Result<()> {
    let (mut snap, report) = take(&args.tetragon.snapshot_options()).await?;
    // Stable output for people and diffs.
    snap.processes
        .sort_by(|a, b| (a.pid, &a.exec_id).cmp(&(b.pid, &b.exec_id)));
    if let Some(reason) = &report.fallback_reason {
        tracing::warn!(reason = %reason, "GetDebug unavailable: snapshot served from the export log");
    }
    let text = match args.format {
        SnapshotFormat::Json => serde_json::to_string_pretty(&snap)? + "\n",
        SnapshotFormat::Table => render_table(&snap),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
