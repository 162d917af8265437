//! Starting and stopping the fake Tetragon on a TCP port or a unix socket.
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::Server;

use crate::tetragon::address::TetragonAddress;
use crate::tetragon::proto::fine_guidance_sensors_server::FineGuidanceSensorsServer;
use crate::time::now_ms;

use super::export_writer::{ExportWriteError, ExportWriter};
use super::feed;
use super::hook_events::{run_exec, Outcome};
use super::node::FakeNode;
use super::policies::{PolicyError, PolicyTable, STATIC_DOMAIN};
use super::replay::Replay;
use super::scenario::{ContainerSpec, ExecSpec, Faults, Scenario};
use super::service::FakeService;
use super::state::FakeState;

#[derive(Debug, Error)]
pub enum FakeError {
    #[error("fake tetragon cannot listen on {address}: {source}; pick a free port or a writable socket path")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Export(#[from] ExportWriteError),
}

/// What the fake serves.
pub enum FakeSource {
    Scenario(Scenario),
    Replay {
        replay: Replay,
        rate_per_sec: u32,
        faults: Faults,
        /// As [`Scenario::export_deny_namespaces`].
        export_deny_namespaces: Vec<String>,
    },
}

/// A running fake Tetragon. Dropping it does not stop it; call `stop`.
pub struct FakeTetragon {
    pub address: TetragonAddress,
    pub state: Arc<FakeState>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    feed: JoinHandle<()>,
}

impl FakeTetragon {
    pub async fn start(
        listen: &TetragonAddress,
        source: FakeSource,
        export_log: Option<&Path>,
    ) -> Result<Self, FakeError> {
        let deny = match &source {
            FakeSource::Scenario(s) => &s.export_deny_namespaces,
            FakeSource::Replay {
                export_deny_namespaces,
                ..
            } => export_deny_namespaces,
        };
        let mut export = export_log
            .map(|path| ExportWriter::open(path).map(|w| w.with_deny_namespaces(deny)))
            .transpose()?;
        let boot = now_ms();
        let (node, faults) = match &source {
            FakeSource::Scenario(s) => (FakeNode::new(s, boot), s.faults.clone()),
            FakeSource::Replay { replay, faults, .. } => {
                let mut node = FakeNode::empty(&replay.node_name, boot);
                replay.startup.iter().for_each(|ev| node.apply(ev));
                (node, faults.clone())
            }
        };
        if let Some(w) = export.as_mut() {
            // Tetragon writes its /proc scan to the export log when it starts
            // (through the same export deny list as every other event).
            let startup = match &source {
                FakeSource::Scenario(_) => node.startup_events(boot),
                FakeSource::Replay { replay, .. } => replay.startup.clone(),
            };
            for ev in &startup {
                w.write(ev)?;
            }
            w.flush()?;
        }
        let policies = match &source {
            FakeSource::Scenario(s) => preload(s),
            FakeSource::Replay { .. } => PolicyTable::new(Default::default(), true),
        };
        let state = Arc::new(FakeState::new(node, faults, export).with_policies(policies));
        let (tx, rx) = oneshot::channel::<()>();
        let (address, server) = serve(listen, state.clone(), rx).await?;
        let feed = match source {
            FakeSource::Scenario(s) => tokio::spawn(feed::run_scenario(state.clone(), s)),
            FakeSource::Replay {
                replay,
                rate_per_sec,
                ..
            } => tokio::spawn(feed::run_replay(state.clone(), replay, rate_per_sec)),
        };
        tracing::info!(%address, "fake tetragon listening");
        Ok(Self {
            address,
            state,
            shutdown: Some(tx),
            server,
            feed,
        })
    }

    pub fn execs_done(&self) -> u64 {
        self.state.counters.execs_done.load(Ordering::Relaxed)
    }

    pub fn streams_opened(&self) -> u64 {
        self.state.counters.streams_opened.load(Ordering::Relaxed)
    }

    pub fn debug_calls(&self) -> u64 {
        self.state.counters.debug_calls.load(Ordering::Relaxed)
    }

    /// A rollout, as Tetragon reports it: every process of the pod
    /// `namespace/old_pod` exits, then `new` (another pod, so another container
    /// id) starts now with its `running` processes. Returns the new
    /// container's index.
    pub fn rollout(&self, namespace: &str, old_pod: &str, new: ContainerSpec) -> usize {
        let now = crate::time::now_ms();
        let (ci, events) = {
            let mut node = self.state.node.lock();
            let mut events = node.stop_pod(namespace, old_pod, now);
            let (ci, execs) = node.start_container(new, now);
            events.extend(execs);
            (ci, events)
        };
        for ev in events {
            self.state.publish(ev);
        }
        ci
    }

    /// Container `ci` execs `binary` now and the process exits right after;
    /// with `lose_exec`, its exec event is lost on the way (as Tetragon drops
    /// events for a slow client) and only the rest is published.
    pub fn exec_in(&self, ci: usize, binary: &str, lose_exec: bool) {
        let spec = ExecSpec {
            binary: binary.to_string(),
            ..Default::default()
        };
        self.exec_spec_in(ci, &spec, lose_exec);
    }

    /// Container `ci` execs `spec` now (with its cwd and arguments), under
    /// the loaded policies; the process exits right after unless a policy
    /// denied or killed it first. Returns what happened.
    pub fn exec_spec_in(&self, ci: usize, spec: &ExecSpec, lose_exec: bool) -> Outcome {
        let now = crate::time::now_ms();
        let (events, outcome) = {
            let mut node = self.state.node.lock();
            let mut policies = self.state.policies.lock();
            run_exec(&mut node, &mut policies, ci, spec, now, true)
        };
        for ev in events {
            let is_exec = matches!(
                ev.event,
                Some(crate::tetragon::proto::get_events_response::Event::ProcessExec(_))
            );
            if !(lose_exec && is_exec) {
                self.state.publish(ev);
            }
        }
        outcome
    }

    /// `tetra tp set-mode NAME enforce|monitor`: the next exec sees it.
    pub fn set_policy_mode(
        &self,
        name: &str,
        namespace: &str,
        enforce: bool,
    ) -> Result<(), PolicyError> {
        self.state
            .policies
            .lock()
            .set_mode(name, namespace, enforce)
    }

    /// Waits until the scenario's activity is over (never, for endless ones).
    pub async fn activity_done(&mut self) {
        let _ = (&mut self.feed).await;
    }

    /// Stops serving: open streams end, like a Tetragon that goes away.
    pub async fn stop(mut self) {
        self.feed.abort();
        // End every open stream, then let the server shut down gracefully; cut it
        // if a client does not let go.
        let _ = self.state.stopping.send(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.server)
            .await
            .is_err()
        {
            self.server.abort();
        }
        if let TetragonAddress::Unix(path) = &self.address {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The scenario's kernel, with its policies loaded as Tetragon loads a
/// `--tracing-policy-dir` (domain `static`); a refused one stays listed.
fn preload(s: &Scenario) -> PolicyTable {
    let mut table = PolicyTable::new(s.kernel, s.kubernetes);
    for p in &s.tracing_policies {
        let yaml = match p.as_str() {
            Some(text) => Ok(text.to_string()),
            None => serde_yaml::to_string(p),
        };
        let result = yaml
            .map_err(|e| e.to_string())
            .and_then(|y| table.add(&y, STATIC_DOMAIN).map_err(|e| e.to_string()));
        if let Err(error) = result {
            tracing::warn!(%error, "fake tetragon: scenario tracing policy not loaded");
        }
    }
    table
}

async fn serve(
    listen: &TetragonAddress,
    state: Arc<FakeState>,
    shutdown: oneshot::Receiver<()>,
) -> Result<(TetragonAddress, JoinHandle<()>), FakeError> {
    let bind_err = |source| FakeError::Bind {
        address: listen.to_string(),
        source,
    };
    let service = FineGuidanceSensorsServer::new(FakeService { state })
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(16 * 1024 * 1024);
    let router = Server::builder().add_service(service);
    let signal = async {
        let _ = shutdown.await;
    };
    match listen {
        TetragonAddress::Tcp(hostport) => {
            let addr: SocketAddr = tokio::net::lookup_host(hostport)
                .await
                .map_err(bind_err)?
                .next()
                .ok_or_else(|| {
                    bind_err(std::io::Error::other("host name resolved to no address"))
                })?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(bind_err)?;
            let local = listener.local_addr().map_err(bind_err)?;
            let task = tokio::spawn(async move {
                if let Err(e) = router
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal)
                    .await
                {
                    tracing::error!(error = %e, "fake tetragon server failed");
                }
            });
            Ok((TetragonAddress::Tcp(local.to_string()), task))
        }
        TetragonAddress::Unix(path) => {
            crate::unix_socket::remove_stale_socket(path).map_err(bind_err)?;
            let listener = tokio::net::UnixListener::bind(path).map_err(bind_err)?;
            let task = tokio::spawn(async move {
                if let Err(e) = router
                    .serve_with_incoming_shutdown(UnixListenerStream::new(listener), signal)
                    .await
                {
                    tracing::error!(error = %e, "fake tetragon server failed");
                }
            });
            Ok((TetragonAddress::Unix(path.clone()), task))
        }
    }
}
