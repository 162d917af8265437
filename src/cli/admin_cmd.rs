//! `tetragon-learner admin`: operator commands for a running agent, through its
//! admin socket. Each answers once the change is durable.
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::api::admin_client::{encode_query_value, request};
use crate::learner::key::LearnerKey;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The running agent's admin socket (`run --admin-socket`).
    #[arg(long, env = "TETRAGON_LEARNER_ADMIN_SOCKET")]
    pub admin_socket: PathBuf,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Freeze a profile: new executables become deviations (KEY = NAMESPACE/KIND/WORKLOAD/CONTAINER).
    Lock { key: String },
    /// Resume learning on a locked profile.
    Unlock { key: String },
    /// Forget a profile's executables and deviations and learn again.
    Reset { key: String },
    /// Allow PATH (as the policy checks it, the violation's path) for KEY:
    /// it joins the profile (source operator), its violations are cleared,
    /// and the next export allows it.
    Allow { key: String, path: String },
    /// Acknowledge violation ID of KEY (see `debug violations`): kept, no
    /// longer counted as active.
    Ack { key: String, id: String },
    /// Connection and snapshot status (JSON).
    Status,
    /// Take a fresh process snapshot through the agent (JSON).
    Snapshot,
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let (method, path) = match &args.command {
        AdminCommand::Lock { key } => ("POST", keyed("lock", key)?),
        AdminCommand::Unlock { key } => ("POST", keyed("unlock", key)?),
        AdminCommand::Reset { key } => ("POST", keyed("reset", key)?),
        AdminCommand::Allow { key, path } => (
            "POST",
            format!("{}&path={}", keyed("allow", key)?, encode_query_value(path)),
        ),
        AdminCommand::Ack { key, id } => (
            "POST",
            format!("{}&id={}", keyed("ack", key)?, encode_query_value(id)),
        ),
        AdminCommand::Status => ("GET", "/v1/status".to_string()),
        AdminCommand::Snapshot => ("GET", "/v1/snapshot".to_string()),
    };
    let body = request(&args.admin_socket, method, &path)?;
    // Re-serialize through serde so the output is valid, pretty JSON whatever the paths hold.
    let value: serde_json::Value = serde_json::from_slice(&body)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &value)?;
    writeln!(out)?;
    Ok(())
}

fn keyed(verb: &str, key: &str) -> anyhow::Result<String> {
    LearnerKey::parse(key).map_err(|e| super::UsageError(e.to_string()))?;
    Ok(format!("/v1/{verb}?key={}", encode_query_value(key)))
}
