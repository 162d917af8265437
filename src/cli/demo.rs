//! `tetragon-learner demo`: the fake Tetragon and the agent in one process, on
//! the built-in scenario; prints what was learned per container.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use clap::Args;

use crate::agent::{Agent, AgentConfig};
use crate::fake::scenario::{ExpectedKey, Scenario};
use crate::fake::{FakeSource, FakeTetragon};
use crate::ingest::facts::IngestConfig;
use crate::learner::config::LearnerConfig;
use crate::learner::key::LearnerKey;
use crate::learner::profile::Profile;
use crate::snapshot::policy::{SnapshotOptions, SourcePolicy};
use crate::tetragon::address::TetragonAddress;
use crate::tetragon::connection::actor::ConnectionConfig;
use crate::tetragon::connection::machine::BackoffPolicy;
use crate::tetragon::observe::policy::HookViewChoice;

use super::escape::escape_for_terminal;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run this scenario instead of the built-in one.
    #[arg(long, env = "TETRAGON_LEARNER_DEMO_SCENARIO")]
    pub scenario: Option<std::path::PathBuf>,
    /// Give up waiting for the scenario to be learned after this long.
    #[arg(long, env = "TETRAGON_LEARNER_DEMO_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub fn demo_agent_config(address: TetragonAddress, db: std::path::PathBuf) -> AgentConfig {
    AgentConfig {
        db,
        quarantine_corrupt_db: false,
        connection: ConnectionConfig {
            address: address.clone(),
            connect_timeout: Duration::from_secs(5),
            backoff: BackoffPolicy {
                base: Duration::from_millis(100),
                cap: Duration::from_secs(2),
            },
            grace: Duration::from_millis(300),
            resnapshot_interval: None,
            snapshot_retry: Duration::from_secs(1),
            policy_names: HookViewChoice::All.policy_names(),
            followed_policies: None,
        },
        snapshot: SnapshotOptions {
            policy: SourcePolicy::Auto,
            address,
            timeout: Duration::from_secs(5),
            max_message_size: 64 << 20,
            export_log: None,
        },
        ingest: IngestConfig::default(),
        learner: LearnerConfig::default(),
        tick: Duration::from_millis(200),
        lazy_checkpoint: Duration::from_millis(500),
        backfill: None,
        hook_view: HookViewChoice::All,
        policy_refresh: Duration::from_secs(2),
    }
}

/// What the scenario's oracle expects, per learner key.
pub type Expected = BTreeMap<ExpectedKey, BTreeSet<String>>;

/// The learner key a scenario wrote out, as the agent spells keys (a plain
/// copy of the fields: the oracle's key is never derived by the agent's rule).
pub fn learner_key(k: &ExpectedKey) -> LearnerKey {
    LearnerKey::new(&k.namespace, &k.workload_kind, &k.workload, &k.container)
}

/// True once every expected executable is durable.
pub fn learned_all(profiles: &[Profile], expected: &Expected) -> bool {
    expected.iter().all(|(key, paths)| {
        let key = learner_key(key);
        profiles
            .iter()
            .find(|p| p.key == key)
            .is_some_and(|p| paths.iter().all(|path| p.executables.contains_key(path)))
    })
}

pub fn render_profiles(profiles: &[Profile]) -> String {
    let mut out = String::new();
    for p in profiles {
        let partial: Vec<String> = p
            .partial_reasons
            .iter()
            .filter_map(|r| {
                serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
            })
            .collect();
        out.push_str(&format!(
            "{}  state={} {}{}\n",
            escape_for_terminal(&p.key.to_string()),
            p.state.as_str(),
            p.completeness().as_str(),
            if partial.is_empty() {
                String::new()
            } else {
                format!(" ({})", partial.join(", "))
            }
        ));
        for (path, e) in &p.executables {
            let mut marks = Vec::new();
            if e.exec_probe {
                marks.push("exec-probe");
            }
            if e.exec_session {
                marks.push("exec-session");
            }
            out.push_str(&format!(
                "    {:<40} count={:<4} source={:<10} {}\n",
                escape_for_terminal(path),
                e.count,
                serde_json::to_value(e.source)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                marks.join(",")
            ));
        }
    }
    out
}

/// What to do next with what was learned: the safe rollout, starting with
/// the policies `export` would write in monitor mode (nothing denied yet).
pub fn rollout_hint(profiles: &[Profile]) -> String {
    use crate::export::{tracing_policy, ExecKind, ExportOptions};
    let opts = ExportOptions::default();
    let policies = tracing_policy::policies(profiles, &opts)
        .map(|p| p.policies.len())
        .unwrap_or(0);
    let marked = |kind: ExecKind| -> Vec<String> {
        profiles
            .iter()
            .flat_map(|p| {
                p.executables
                    .values()
                    .filter(move |r| ExecKind::of(r) == kind)
                    .map(move |r| {
                        escape_for_terminal(&format!("{} {}", p.key.workload, r.path)).into_owned()
                    })
            })
            .collect()
    };
    let probes = marked(ExecKind::ProbeOnly);
    let sessions = marked(ExecKind::SessionOnly);
    let mut out = format!(
        "\nSafe rollout: `export --format tracingpolicy` would write {policies} TracingPolicyNamespaced in monitor mode (nothing is denied yet).\n"
    );
    if !probes.is_empty() {
        out.push_str(&format!(
            "  exec probes allowed (a denied probe restarts its pod): {}\n",
            probes.join(", ")
        ));
    }
    if !sessions.is_empty() {
        out.push_str(&format!(
            "  kubectl exec sessions left out (denied under enforcement unless --include-exec-sessions): {}\n",
            sessions.join(", ")
        ));
    }
    out.push_str(
        "  1. tetragon-learner export --admin-socket /run/tetragon-learner/admin.sock --format tracingpolicy --mode monitor --output policies.yaml\n\
         \x20 2. kubectl apply -f policies.yaml, then read what they would deny, per workload: tetragon-learner debug violations --admin-socket /run/tetragon-learner/admin.sock\n\
         \x20    (legitimate: admin allow KEY PATH and re-export; not: admin ack KEY ID)\n\
         \x20 3. when nothing legitimate shows up: tetra tracingpolicy set-mode --namespace <ns> <name> enforce (per node), or re-export with --mode enforce and apply\n",
    );
    out
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let scenario = match &args.scenario {
        Some(p) => Scenario::from_file(p)?,
        None => Scenario::demo(),
    };
    // Checked before anything starts: the demo's verdict needs the oracle.
    scenario.expected_profiles(0)?;
    let dir = tempfile::Builder::new()
        .prefix("tetragon-learner-demo")
        .tempdir()?;
    let socket = TetragonAddress::Unix(dir.path().join("tetragon.sock"));
    let mut fake =
        FakeTetragon::start(&socket, FakeSource::Scenario(scenario.clone()), None).await?;
    let agent = Agent::start(demo_agent_config(
        fake.address.clone(),
        dir.path().join("db"),
    ))
    .await?;
    if scenario.activity.total_execs > 0 {
        let _ = tokio::time::timeout(args.timeout, fake.activity_done()).await;
    }
    let started = Instant::now();
    while !learned_all(
        &agent.durable_profiles(),
        &scenario.expected_profiles(fake.execs_done())?,
    ) && started.elapsed() < args.timeout
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.shutdown().await?;
    let profiles = agent.durable_profiles();
    let complete = learned_all(&profiles, &scenario.expected_profiles(fake.execs_done())?);
    fake.stop().await;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "tetragon-learner demo: fake Tetragon ({} containers, {} execs) -> agent\n",
        scenario.containers.len(),
        scenario.activity.total_execs
    )?;
    out.write_all(render_profiles(&profiles).as_bytes())?;
    writeln!(
        out,
        "\n{} learners; every executable of the scenario learned: {}",
        profiles.len(),
        if complete { "yes" } else { "NO" }
    )?;
    out.write_all(rollout_hint(&profiles).as_bytes())?;
    anyhow::ensure!(
        complete,
        "the agent did not learn the whole scenario within {:?}",
        args.timeout
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::key::LearnerKey;
    use crate::learner::observation::{FactSource, Observation};
    use crate::learner::profile::ExecutableRecord;

    #[test]
    fn the_hint_starts_in_monitor_mode_and_names_probes_and_sessions() {
        let mut p = Profile::new(LearnerKey::new("shop", "StatefulSet", "db", "pg"), 0);
        for (path, probe, session) in [
            ("/bin/postgres", false, false),
            ("/bin/pg_isready", true, false),
            ("/bin/bash", false, true),
        ] {
            let r = ExecutableRecord::first(&Observation {
                path: path.into(),
                at: 1,
                source: FactSource::Event,
                exec_probe: probe,
                exec_session: session,
            });
            p.executables.insert(path.into(), r);
        }
        let hint = rollout_hint(&[p]);
        assert!(hint.contains("would write 1 TracingPolicyNamespaced in monitor mode"));
        assert!(hint.contains(
            "exec probes allowed (a denied probe restarts its pod): db /bin/pg_isready\n"
        ));
        assert!(hint
            .contains("(denied under enforcement unless --include-exec-sessions): db /bin/bash\n"));
        assert!(hint.contains("--format tracingpolicy --mode monitor"));
        assert!(hint.contains("set-mode --namespace <ns> <name> enforce"));
    }
}
