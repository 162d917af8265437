//! `tetragon-learner fake-tetragon`: serve the fake Tetragon until interrupted.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::fake::export_writer::HELM_DEFAULT_EXPORT_DENY_NAMESPACES;
use crate::fake::replay;
use crate::fake::scenario::{DebugFault, Scenario};
use crate::fake::{FakeSource, FakeTetragon};
use crate::tetragon::address::TetragonAddress;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DebugFaultArg {
    Ok,
    Unimplemented,
    Error,
    Empty,
}

#[derive(Debug, Args)]
pub struct FakeArgs {
    /// Where to listen: unix:///path.sock, http://host:port or host:port (port 0 picks one).
    #[arg(long, env = "TETRAGON_LEARNER_FAKE_LISTEN")]
    pub listen: TetragonAddress,
    /// Scenario file (YAML); without it (and without --replay) the built-in demo scenario.
    #[arg(
        long,
        env = "TETRAGON_LEARNER_FAKE_SCENARIO",
        conflicts_with = "replay"
    )]
    pub scenario: Option<PathBuf>,
    /// Replay a Tetragon JSON export file: its procFS lines fill the process cache,
    /// the rest is streamed in order.
    #[arg(long, env = "TETRAGON_LEARNER_FAKE_REPLAY")]
    pub replay: Option<PathBuf>,
    /// Replay speed in events per second (0 = as fast as possible).
    #[arg(
        long,
        env = "TETRAGON_LEARNER_FAKE_REPLAY_RATE",
        default_value_t = 1000
    )]
    pub replay_rate: u32,
    /// Also write a Tetragon-style JSON export log of what is served.
    #[arg(long, env = "TETRAGON_LEARNER_FAKE_EXPORT_LOG")]
    pub export_log: Option<PathBuf>,
    /// Override the scenario's exec rate (execs per second, 0 = as fast as possible).
    #[arg(long, env = "TETRAGON_LEARNER_FAKE_RATE")]
    pub rate: Option<u32>,
    /// Override the scenario's number of execs (0 = forever).
    #[arg(long, env = "TETRAGON_LEARNER_FAKE_TOTAL_EXECS")]
    pub total_execs: Option<u64>,
    /// Fault: end every GetEvents stream normally after N events.
    #[arg(long, env = "TETRAGON_LEARNER_FAKE_END_STREAM_AFTER")]
    pub end_stream_after: Option<u64>,
    /// Fault: abort every GetEvents stream with UNAVAILABLE after N events.
    #[arg(long, env = "TETRAGON_LEARNER_FAKE_ABORT_STREAM_AFTER")]
    pub abort_stream_after: Option<u64>,
    /// Fault: how GetDebug answers.
    #[arg(long, env = "TETRAGON_LEARNER_FAKE_GETDEBUG", value_enum)]
    pub getdebug: Option<DebugFaultArg>,
    /// Fault: delay every GetDebug answer by this many milliseconds.
    #[arg(long, env = "TETRAGON_LEARNER_FAKE_GETDEBUG_DELAY_MS")]
    pub getdebug_delay_ms: Option<u64>,
    /// Add N host processes to the process cache (to make a huge GetDebug dump).
    #[arg(long, env = "TETRAGON_LEARNER_FAKE_EXTRA_HOST_PROCESSES")]
    pub extra_host_processes: Option<u32>,
    /// Leave these namespaces out of the export log (not the gRPC stream), like
    /// Tetragon's `--export-deny-list '{"namespace":[..]}'`; an empty entry is
    /// host processes (no pod). `',cilium,kube-system'` is the Helm chart's default.
    /// Overrides the scenario's `export_deny_namespaces`.
    #[arg(
        long,
        env = "TETRAGON_LEARNER_FAKE_EXPORT_DENY_NAMESPACES",
        value_delimiter = ',',
        num_args = 1,
        allow_hyphen_values = true,
        conflicts_with = "export_helm_default_deny_list"
    )]
    pub export_deny_namespaces: Option<Vec<String>>,
    /// Shorthand for the Helm chart's default export deny list: namespaces
    /// `""` (host), `cilium` and `kube-system`.
    #[arg(long, env = "TETRAGON_LEARNER_FAKE_EXPORT_HELM_DEFAULT_DENY_LIST")]
    pub export_helm_default_deny_list: bool,
}

impl FakeArgs {
    fn apply_overrides(&self, s: &mut Scenario) {
        if let Some(r) = self.rate {
            s.activity.rate_per_sec = r;
        }
        if let Some(n) = self.total_execs {
            s.activity.total_execs = n;
        }
        let f = &mut s.faults;
        f.end_stream_after = self.end_stream_after.or(f.end_stream_after);
        f.abort_stream_after = self.abort_stream_after.or(f.abort_stream_after);
        if let Some(d) = self.getdebug {
            f.getdebug = match d {
                DebugFaultArg::Ok => DebugFault::Ok,
                DebugFaultArg::Unimplemented => DebugFault::Unimplemented,
                DebugFaultArg::Error => DebugFault::Error,
                DebugFaultArg::Empty => DebugFault::Empty,
            };
        }
        if let Some(ms) = self.getdebug_delay_ms {
            f.getdebug_delay_ms = ms;
        }
        if let Some(n) = self.extra_host_processes {
            f.extra_host_processes = n;
        }
        if self.export_helm_default_deny_list {
            s.export_deny_namespaces = HELM_DEFAULT_EXPORT_DENY_NAMESPACES
                .iter()
                .map(|n| n.to_string())
                .collect();
        } else if let Some(ns) = &self.export_deny_namespaces {
            s.export_deny_namespaces = ns.clone();
        }
    }

    pub fn source(&self) -> anyhow::Result<FakeSource> {
        let mut scenario = match &self.scenario {
            Some(path) => Scenario::from_file(path)?,
            None => Scenario::demo(),
        };
        self.apply_overrides(&mut scenario);
        Ok(match &self.replay {
            Some(path) => FakeSource::Replay {
                replay: replay::load(path)?,
                rate_per_sec: self.replay_rate,
                faults: scenario.faults,
                export_deny_namespaces: scenario.export_deny_namespaces,
            },
            None => FakeSource::Scenario(scenario),
        })
    }
}

pub async fn run(args: FakeArgs) -> anyhow::Result<()> {
    let mut signals =
        super::signals::ShutdownSignals::install().context("installing signal handlers")?;
    let fake =
        FakeTetragon::start(&args.listen, args.source()?, args.export_log.as_deref()).await?;
    // Scripts read this line to learn the address (port 0 picks a free one).
    println!("fake-tetragon listening on {}", fake.address);
    signals.wait().await;
    fake.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        fake: FakeArgs,
    }

    fn deny_of(args: &[&str]) -> Vec<String> {
        let mut argv = vec!["x", "--listen", "127.0.0.1:0"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("parses");
        let mut s = Scenario::default();
        cli.fake.apply_overrides(&mut s);
        s.export_deny_namespaces
    }

    #[test]
    fn export_deny_namespaces_keep_the_empty_host_entry() {
        assert_eq!(
            deny_of(&["--export-deny-namespaces", ",cilium,kube-system"]),
            ["", "cilium", "kube-system"]
        );
        assert_eq!(
            deny_of(&["--export-helm-default-deny-list"]),
            ["", "cilium", "kube-system"]
        );
        assert_eq!(deny_of(&["--export-deny-namespaces", "a,b"]), ["a", "b"]);
        assert!(deny_of(&[]).is_empty());
    }
}
