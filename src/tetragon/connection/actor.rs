//! The TetragonConnection actor: drives the pure connection machine with real
//! I/O. It opens `GetEvents` (allow-list: exec, exit, rate-limit info), hands
//! events on as `EventBatch` (awaiting the recipient: backpressure, never an
//! unbounded queue), asks the SnapshotBuilder for a snapshot once each stream is up, and
//! reconnects with capped, jittered backoff.
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::FutureExt;
use parking_lot::RwLock;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::Streaming;

use crate::api::metrics::Metrics;
use crate::tetragon::address::TetragonAddress;
use crate::tetragon::client::{client, connect};
use crate::tetragon::proto::{EventType, Filter, GetEventsRequest, GetEventsResponse};

use super::machine::{BackoffPolicy, ConnAction, ConnEvent, ConnState, Connection};
use super::messages::{EventBatch, TakeSnapshot};

/// Events handed on in one message, at most.
const MAX_BATCH: usize = 512;

#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub address: TetragonAddress,
    pub connect_timeout: Duration,
    pub backoff: BackoffPolicy,
    /// Snapshot after this long without a first event (an idle node still needs one).
    pub grace: Duration,
    /// Periodic re-snapshot; `None` disables it.
    pub resnapshot_interval: Option<Duration>,
    /// Wait before retrying a failed snapshot.
    pub snapshot_retry: Duration,
}

/// What the rest of the agent may know about the connection.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionStatus {
    pub state: ConnState,
    /// Tetragon answered on this connection: the event stream opened, or a
    /// snapshot succeeded (a quiet Tetragon sends no stream headers until the
    /// first event). What `/readyz` reports.
    pub ready: bool,
    pub connects: u64,
    pub last_error: Option<String>,
}

impl Default for ConnectionStatus {
    fn default() -> Self {
        Self {
            state: ConnState::Disconnected,
            ready: false,
            connects: 0,
            last_error: None,
        }
    }
}

/// Stop the connection for good; resolves once no event can be forwarded anymore.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

pub struct TetragonConnection {
    cfg: ConnectionConfig,
    events: Recipient<EventBatch>,
    snapshots: Recipient<TakeSnapshot>,
    metrics: Arc<Metrics>,
    pub status: Arc<RwLock<ConnectionStatus>>,
    stop: watch::Sender<bool>,
    /// Set when the driver has returned.
    stopped: watch::Sender<bool>,
}

impl TetragonConnection {
    pub fn new(
        cfg: ConnectionConfig,
        events: Recipient<EventBatch>,
        snapshots: Recipient<TakeSnapshot>,
        metrics: Arc<Metrics>,
        status: Arc<RwLock<ConnectionStatus>>,
    ) -> Self {
        let (stop, _) = watch::channel(false);
        let (stopped, _) = watch::channel(false);
        Self {
            cfg,
            events,
            snapshots,
            metrics,
            status,
            stop,
            stopped,
        }
    }
}

impl Actor for TetragonConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let driver = Driver {
            cfg: self.cfg.clone(),
            events: self.events.clone(),
            snapshots: self.snapshots.clone(),
            metrics: self.metrics.clone(),
            status: self.status.clone(),
            stop: self.stop.subscribe(),
        };
        ctx.spawn(driver.run().into_actor(self).map(|(), act, ctx| {
            let _ = act.stopped.send(true);
            ctx.stop();
        }));
    }
}

impl Handler<Shutdown> for TetragonConnection {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        let _ = self.stop.send(true);
        let mut stopped = self.stopped.subscribe();
        Box::pin(async move {
            // Err: the actor is gone, so the driver is too.
            let _ = stopped.wait_for(|s| *s).await;
        })
    }
}

pub fn events_request() -> GetEventsRequest {
    GetEventsRequest {
        allow_list: vec![Filter {
            event_set: vec![
                EventType::ProcessExec as i32,
                EventType::ProcessExit as i32,
                EventType::RateLimitInfo as i32,
            ],
            ..Default::default()
        }],
        deny_list: vec![],
    }
}

type SnapshotFuture =
    Pin<Box<dyn std::future::Future<Output = Result<Result<(), String>, MailboxError>>>>;

struct Driver {
    cfg: ConnectionConfig,
    events: Recipient<EventBatch>,
    snapshots: Recipient<TakeSnapshot>,
    metrics: Arc<Metrics>,
    status: Arc<RwLock<ConnectionStatus>>,
    stop: watch::Receiver<bool>,
}

fn sleep_opt(d: Option<Duration>) -> Option<Pin<Box<tokio::time::Sleep>>> {
    d.map(|d| Box::pin(tokio::time::sleep(d)))
}

async fn maybe_sleep(s: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match s {
        Some(s) => s.await,
        None => std::future::pending().await,
    }
}

type OpenFuture =
    Pin<Box<dyn std::future::Future<Output = Result<Streaming<GetEventsResponse>, String>>>>;

/// Sends the GetEvents request and waits for the response headers. Tetragon's
/// server (grpc-go) sends them with the first event, so on a quiet node this
/// waits until something happens: it runs inside the select loop, never before
/// it, so the grace timer and shutdown are not held up.
fn open_events(channel: tonic::transport::Channel, address: String) -> OpenFuture {
    Box::pin(async move {
        let mut c = client(channel, 16 * 1024 * 1024);
        let resp = c.get_events(events_request()).await.map_err(|s| {
            format!(
                "GetEvents at {address} failed: {:?}: {}",
                s.code(),
                s.message()
            )
        })?;
        Ok(resp.into_inner())
    })
}

impl Driver {
    fn set_state(&self, m: &Connection, err: Option<String>) {
        let mut st = self.status.write();
        st.state = m.state;
        if !m.is_streaming() {
            st.ready = false;
        }
        if err.is_some() {
            st.last_error = err;
        }
    }

    fn stream_failed(&self, m: &Connection, e: String) -> ConnEvent {
        tracing::warn!(address = %self.cfg.address, error = %e, "event stream failed; reconnecting");
        self.set_state(m, Some(e));
        ConnEvent::StreamEnded
    }

    async fn run(mut self) {
        let mut m = Connection::new(self.cfg.backoff);
        let mut opening: Option<OpenFuture> = None;
        let mut stream: Option<Streaming<GetEventsResponse>> = None;
        let mut grace = None;
        let mut backoff = None;
        let mut resnapshot = None;
        let mut snapshot: Option<SnapshotFuture> = None;
        let mut next = Some(ConnEvent::Start);
        loop {
            if let Some(event) = next.take() {
                let from = m.state;
                let actions = match m.on(event, rand::random::<f64>()) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::error!(error = %e, "connection state machine refused an event");
                        vec![]
                    }
                };
                self.set_state(&m, None);
                for action in actions {
                    match action {
                        ConnAction::Connect => {
                            let connecting = tokio::select! {
                                r = connect(&self.cfg.address, self.cfg.connect_timeout) => Some(r),
                                // A blackholed address must not hold up a shutdown.
                                _ = self.stop.changed() => None,
                            };
                            let Some(connected) = connecting else {
                                next = Some(ConnEvent::Shutdown);
                                break;
                            };
                            match connected {
                                Ok(channel) => {
                                    opening =
                                        Some(open_events(channel, self.cfg.address.to_string()));
                                    let mut st = self.status.write();
                                    st.connects += 1;
                                    if st.connects > 1 {
                                        self.metrics.reconnects.inc();
                                    }
                                    tracing::info!(address = %self.cfg.address, "connected; event stream requested");
                                    next = Some(ConnEvent::Connected);
                                }
                                Err(e) => {
                                    tracing::warn!(address = %self.cfg.address, error = %e, "cannot reach Tetragon; backing off");
                                    self.set_state(&m, Some(e.to_string()));
                                    next = Some(ConnEvent::ConnectFailed);
                                }
                            }
                        }
                        ConnAction::ArmGrace => grace = sleep_opt(Some(self.cfg.grace)),
                        ConnAction::RequestSnapshot => {
                            grace = None;
                            resnapshot = None;
                            let reason = if from == ConnState::Live {
                                "periodic or retry"
                            } else {
                                "stream up"
                            };
                            snapshot = Some(Box::pin(self.snapshots.send(TakeSnapshot { reason })));
                        }
                        ConnAction::ScheduleSnapshotRetry => {
                            resnapshot = sleep_opt(Some(self.cfg.snapshot_retry))
                        }
                        ConnAction::Sleep(d) => backoff = sleep_opt(Some(d)),
                        ConnAction::CloseStream => {
                            opening = None;
                            stream = None;
                            grace = None;
                            resnapshot = None;
                            snapshot = None;
                        }
                    }
                }
                if m.state == ConnState::Live && resnapshot.is_none() {
                    resnapshot = sleep_opt(self.cfg.resnapshot_interval);
                }
                if m.state == ConnState::Stopped {
                    return;
                }
                continue;
            }
            tokio::select! {
                _ = self.stop.changed() => next = Some(ConnEvent::Shutdown),
                _ = maybe_sleep(&mut backoff), if backoff.is_some() => { backoff = None; next = Some(ConnEvent::BackoffElapsed); }
                _ = maybe_sleep(&mut grace), if grace.is_some() => { grace = None; next = Some(ConnEvent::GraceElapsed); }
                _ = maybe_sleep(&mut resnapshot), if resnapshot.is_some() => { resnapshot = None; next = Some(ConnEvent::ResnapshotDue); }
                res = async { opening.as_mut().expect("guarded by is_some").await }, if opening.is_some() => {
                    opening = None;
                    match res {
                        Ok(s) => {
                            tracing::info!(address = %self.cfg.address, "event stream open");
                            self.status.write().ready = true;
                            stream = Some(s);
                        }
                        Err(e) => next = Some(self.stream_failed(&m, e)),
                    }
                }
                res = async { snapshot.as_mut().expect("guarded by is_some").await }, if snapshot.is_some() => {
                    snapshot = None;
                    next = Some(match res {
                        Ok(Ok(_)) => {
                            self.status.write().ready = true;
                            ConnEvent::SnapshotDone
                        }
                        _ => ConnEvent::SnapshotFailed,
                    });
                }
                item = async { stream.as_mut().expect("guarded by is_some").next().await }, if stream.is_some() => {
                    match item {
                        Some(Ok(first)) => {
                            let mut batch = vec![first];
                            // A status that ends the stream after some events is
                            // yielded once: keep it, deliver the events, then fail.
                            let mut ended: Option<String> = None;
                            if let Some(s) = stream.as_mut() {
                                while batch.len() < MAX_BATCH {
                                    match s.next().now_or_never() {
                                        Some(Some(Ok(ev))) => batch.push(ev),
                                        Some(Some(Err(status))) => {
                                            ended = Some(format!("event stream failed: {:?}: {}", status.code(), status.message()));
                                            break;
                                        }
                                        Some(None) => {
                                            ended = Some("event stream ended by Tetragon".to_string());
                                            break;
                                        }
                                        None => break,
                                    }
                                }
                            }
                            if self.events.send(EventBatch(batch)).await.is_err() {
                                next = Some(ConnEvent::Shutdown);
                            } else if let Some(e) = ended {
                                next = Some(self.stream_failed(&m, e));
                            } else if m.state == ConnState::Streaming {
                                next = Some(ConnEvent::FirstEvent);
                            }
                        }
                        Some(Err(status)) => {
                            next = Some(self.stream_failed(&m, format!("event stream failed: {:?}: {}", status.code(), status.message())));
                        }
                        None => next = Some(self.stream_failed(&m, "event stream ended by Tetragon".to_string())),
                    }
                }
            }
        }
    }
}
