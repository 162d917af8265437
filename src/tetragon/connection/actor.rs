//! The TetragonConnection actor: drives the pure connection machine with real
//! I/O. It opens `GetEvents` (allow-list: exec, exit, rate-limit info), hands
//! events on as `EventBatch` (one batch in flight: the next is read while the
//! ingester takes it in, and handed on once the ingester has (its inputs are in
//! the learners' bounded mailboxes): backpressure, never an unbounded queue), asks the SnapshotBuilder for a snapshot once each stream is up, and
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

use crate::telemetry::events::{ConnectFailed, Connected, Emit, StreamLive};
use crate::telemetry::metrics::Metrics;
use crate::tetragon::address::TetragonAddress;
use crate::tetragon::client::{connect, get_events_lean};
use crate::tetragon::proto::lean::GetEventsResponse;
use crate::tetragon::proto::{EventType, Filter, GetEventsRequest};
use crate::time::{now_ms, UnixMillis};

use super::machine::{
    BackoffPolicy, ConnAction, ConnEvent, ConnState, ConnTimings, Connection, Timer,
};
use super::messages::{EventBatch, SnapshotUnavailable, TakeSnapshot};

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
    /// Policies whose hook events the stream carries too (the agent's own
    /// observe policies); empty: exec, exit and rate-limit events only.
    pub policy_names: Vec<String>,
    /// More policies to follow, as they come and go (the agent's exported
    /// policies loaded on this node): a change re-subscribes the stream.
    pub followed_policies: Option<watch::Receiver<Vec<String>>>,
}

/// What the rest of the agent may know about the connection (`/readyz`, the
/// admin status). Written only through [`Driver::update`], which keeps the
/// `tetragon_connected` gauge equal to `ready`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionStatus {
    /// `connected` while Tetragon answers on the current connection (what
    /// `ready` says), `disconnected` otherwise: the state an operator reads.
    pub status: LinkStatus,
    /// The machine's state (Connecting, Live, Backoff, ...).
    pub state: ConnState,
    /// Tetragon answered on this connection: the event stream opened, or a
    /// snapshot succeeded (a quiet Tetragon sends no stream headers until the
    /// first event). What `/readyz` reports.
    pub ready: bool,
    /// When `status` last changed (Unix ms; 0 before the first change).
    pub since: UnixMillis,
    pub connects: u64,
    /// Why the agent is not connected: the latest failure since the last
    /// working connection. Cleared once Tetragon answers again, so a
    /// recovered agent shows no stale error.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkStatus {
    Connected,
    Disconnected,
}

impl Default for ConnectionStatus {
    fn default() -> Self {
        Self {
            status: LinkStatus::Disconnected,
            state: ConnState::Disconnected,
            ready: false,
            since: 0,
            connects: 0,
            last_error: None,
        }
    }
}

impl ConnectionStatus {
    /// Tetragon answers (or stopped answering) at `now`.
    pub fn set_ready(&mut self, ready: bool, now: UnixMillis) {
        let status = if ready {
            self.last_error = None;
            LinkStatus::Connected
        } else {
            LinkStatus::Disconnected
        };
        if status != self.status {
            self.status = status;
            self.since = now;
        }
        self.ready = ready;
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
        let driver = Driver::new(
            self.cfg.clone(),
            self.events.clone(),
            self.snapshots.clone(),
            self.metrics.clone(),
            self.status.clone(),
            self.stop.subscribe(),
        );
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

/// What the agent asks Tetragon for: execs, exits and rate-limit notices, and
/// the hook events of `policy_names` only (an event passes when any allow
/// filter matches; within a filter every field must), so other policies'
/// events never flood the agent.
pub fn events_request(policy_names: &[String]) -> GetEventsRequest {
    let mut allow_list = vec![Filter {
        event_set: vec![
            EventType::ProcessExec as i32,
            EventType::ProcessExit as i32,
            EventType::RateLimitInfo as i32,
        ],
        ..Default::default()
    }];
    if !policy_names.is_empty() {
        allow_list.push(Filter {
            event_set: vec![
                EventType::ProcessKprobe as i32,
                EventType::ProcessTracepoint as i32,
                EventType::ProcessLsm as i32,
            ],
            policy_names: policy_names.to_vec(),
            ..Default::default()
        });
    }
    GetEventsRequest {
        allow_list,
        deny_list: vec![],
    }
}

type SnapshotFuture = Pin<
    Box<dyn std::future::Future<Output = Result<Result<(), SnapshotUnavailable>, MailboxError>>>,
>;

type OpenFuture =
    Pin<Box<dyn std::future::Future<Output = Result<Streaming<GetEventsResponse>, String>>>>;

/// Sends the GetEvents request and waits for the response headers. Tetragon's
/// server (grpc-go) sends them with the first event, so on a quiet node this
/// waits until something happens: it runs inside the select loop, never before
/// it, so the grace timer and shutdown are not held up.
fn open_events(
    channel: tonic::transport::Channel,
    address: String,
    policy_names: Vec<String>,
) -> OpenFuture {
    Box::pin(async move {
        get_events_lean(channel, events_request(&policy_names), 16 * 1024 * 1024)
            .await
            .map_err(|s| {
                format!(
                    "GetEvents at {address} failed: {:?}: {}",
                    s.code(),
                    s.message()
                )
            })
    })
}

/// The machine's timers, at most one of each; a timer that fired is gone.
#[derive(Default)]
struct Timers {
    running: Vec<(Timer, Pin<Box<tokio::time::Sleep>>)>,
}

impl Timers {
    fn start(&mut self, timer: Timer, after: Duration) {
        self.cancel(timer);
        self.running
            .push((timer, Box::pin(tokio::time::sleep(after))));
    }

    fn cancel(&mut self, timer: Timer) {
        self.running.retain(|(t, _)| *t != timer);
    }

    /// The timers of one connection (the backoff runs between connections).
    fn cancel_connection_timers(&mut self) {
        self.running.retain(|(t, _)| *t == Timer::Backoff);
    }

    /// The next timer to fire, forgotten once fired; pending while none runs.
    /// Cancel-safe: nothing is lost when another branch of a select wins.
    async fn fired(&mut self) -> Timer {
        std::future::poll_fn(|cx| {
            let due = self
                .running
                .iter_mut()
                .position(|(_, sleep)| std::future::Future::poll(sleep.as_mut(), cx).is_ready());
            match due {
                Some(i) => std::task::Poll::Ready(self.running.swap_remove(i).0),
                None => std::task::Poll::Pending,
            }
        })
        .await
    }
}

/// What one connection has under way: the stream being opened, the stream,
/// the snapshot asked for.
#[derive(Default)]
struct Link {
    opening: Option<OpenFuture>,
    stream: Option<Streaming<GetEventsResponse>>,
    snapshot: Option<SnapshotFuture>,
}

struct Driver {
    cfg: ConnectionConfig,
    events: Recipient<EventBatch>,
    snapshots: Recipient<TakeSnapshot>,
    metrics: Arc<Metrics>,
    status: Arc<RwLock<ConnectionStatus>>,
    stop: watch::Receiver<bool>,
    timers: Timers,
    link: Link,
    /// The batch handed on last, until the ingester has handled it. One batch
    /// is read and decoded while the previous one is handled (the two run on
    /// different threads), and no more: the next waits for this one.
    in_flight: Option<HandOn>,
}

type HandOn = Pin<Box<dyn std::future::Future<Output = Result<(), MailboxError>>>>;

/// What a read of the stream gave: a batch to hand on, and whether the
/// stream ended right after it (a status that ends the stream after some
/// events is yielded once: the events are delivered first).
fn read_batch(
    first: GetEventsResponse,
    stream: &mut Streaming<GetEventsResponse>,
) -> (Vec<GetEventsResponse>, Option<String>) {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match stream.next().now_or_never() {
            Some(Some(Ok(ev))) => batch.push(ev),
            Some(Some(Err(status))) => return (batch, Some(stream_error(&status))),
            Some(None) => return (batch, Some(STREAM_ENDED.to_string())),
            None => break,
        }
    }
    (batch, None)
}

const STREAM_ENDED: &str = "event stream ended by Tetragon";

fn stream_error(status: &tonic::Status) -> String {
    format!(
        "event stream failed: {:?}: {}",
        status.code(),
        status.message()
    )
}

impl Driver {
    fn new(
        cfg: ConnectionConfig,
        events: Recipient<EventBatch>,
        snapshots: Recipient<TakeSnapshot>,
        metrics: Arc<Metrics>,
        status: Arc<RwLock<ConnectionStatus>>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            cfg,
            events,
            snapshots,
            metrics,
            status,
            stop,
            timers: Timers::default(),
            link: Link::default(),
            in_flight: None,
        }
    }

    /// The one place the connection status changes; the connected gauge
    /// follows it, so `/metrics` and `/readyz` never disagree.
    fn update(&self, change: impl FnOnce(&mut ConnectionStatus)) {
        let mut st = self.status.write();
        change(&mut st);
        StreamLive { live: st.ready }.emit(&self.metrics);
    }

    fn set_error(&self, error: String) {
        self.update(|st| st.last_error = Some(error));
    }

    fn stream_failed(&self, e: String) -> ConnEvent {
        tracing::warn!(address = %self.cfg.address, error = %e, "event stream failed; reconnecting");
        self.set_error(e);
        ConnEvent::StreamEnded
    }

    /// Connects (a shutdown meanwhile wins: a blackholed address must not hold
    /// it up) and starts opening the stream; the event that follows.
    async fn connect(&mut self) -> ConnEvent {
        let connected = tokio::select! {
            r = connect(&self.cfg.address, self.cfg.connect_timeout) => r,
            _ = self.stop.changed() => return ConnEvent::Shutdown,
        };
        match connected {
            Ok(channel) => {
                let mut names = self.cfg.policy_names.clone();
                if let Some(followed) = self.cfg.followed_policies.as_mut() {
                    names.extend(followed.borrow_and_update().iter().cloned());
                }
                self.link.opening = Some(open_events(channel, self.cfg.address.to_string(), names));
                self.update(|st| st.connects += 1);
                Connected {
                    address: &self.cfg.address,
                    reconnect: self.status.read().connects > 1,
                }
                .emit(&self.metrics);
                ConnEvent::Connected
            }
            Err(e) => {
                ConnectFailed {
                    address: &self.cfg.address,
                    error: &e,
                }
                .emit(&self.metrics);
                self.set_error(e.to_string());
                ConnEvent::ConnectFailed
            }
        }
    }

    /// Carries out the machine's actions; an action that does I/O at once
    /// (connecting) may produce the next event.
    async fn execute(&mut self, actions: Vec<ConnAction>) -> Option<ConnEvent> {
        let mut next = None;
        for action in actions {
            match action {
                ConnAction::Connect => next = Some(self.connect().await),
                ConnAction::StartTimer(timer, after) => self.timers.start(timer, after),
                ConnAction::CancelTimer(timer) => self.timers.cancel(timer),
                ConnAction::TakeSnapshot(reason) => {
                    let ask = self.snapshots.send(TakeSnapshot { reason });
                    self.link.snapshot = Some(Box::pin(ask));
                }
                ConnAction::SetReady(ready) => self.update(|st| st.set_ready(ready, now_ms())),
                ConnAction::CloseStream => {
                    self.link = Link::default();
                    self.timers.cancel_connection_timers();
                }
            }
        }
        next
    }

    /// Waits for what happens next: a timer, the stream opening, a snapshot's
    /// answer, events (handed on once the batch before is handled), or shutdown.
    /// `None`: events were handed on and the machine has nothing to hear.
    async fn wait(&mut self, m: &Connection) -> Option<ConnEvent> {
        let link = &mut self.link;
        let followed = &mut self.cfg.followed_policies;
        let event = tokio::select! {
            _ = self.stop.changed() => ConnEvent::Shutdown,
            Ok(()) = async { followed.as_mut().expect("guarded by is_some").changed().await }, if followed.is_some() && link.stream.is_some() => {
                tracing::info!("re-subscribing to Tetragon's events: the agent's policies on this node changed");
                ConnEvent::StreamEnded
            }
            timer = self.timers.fired() => timer.event(),
            res = async { link.opening.as_mut().expect("guarded by is_some").await }, if link.opening.is_some() => {
                link.opening = None;
                match res {
                    Ok(s) => {
                        tracing::info!(address = %self.cfg.address, "event stream open");
                        link.stream = Some(s);
                        ConnEvent::StreamOpened
                    }
                    Err(e) => self.stream_failed(e),
                }
            }
            res = async { link.snapshot.as_mut().expect("guarded by is_some").await }, if link.snapshot.is_some() => {
                link.snapshot = None;
                match res {
                    Ok(Ok(())) => ConnEvent::SnapshotDone,
                    _ => ConnEvent::SnapshotFailed,
                }
            }
            item = async { link.stream.as_mut().expect("guarded by is_some").next().await }, if link.stream.is_some() => {
                match item {
                    Some(Ok(first)) => {
                        let Some(stream) = link.stream.as_mut() else { return Some(ConnEvent::StreamEnded) };
                        let (batch, ended) = read_batch(first, stream);
                        // The batch before must be handled first; the send
                        // queues this one at once (the ingester's mailbox
                        // holds at most this batch and snapshots), so order
                        // is kept, and it is handled while the next is read.
                        let before = self.in_flight.take();
                        let settled = match before {
                            Some(before) => before.await.is_ok(),
                            None => true,
                        };
                        let send = self.events.send(EventBatch(batch));
                        self.in_flight = Some(Box::pin(send));
                        if !settled {
                            // Nobody takes events anymore: the agent is going down.
                            ConnEvent::Shutdown
                        } else if let Some(e) = ended {
                            self.stream_failed(e)
                        } else if m.awaits_first_event() {
                            ConnEvent::FirstEvent
                        } else {
                            return None;
                        }
                    }
                    Some(Err(status)) => self.stream_failed(stream_error(&status)),
                    None => self.stream_failed(STREAM_ENDED.to_string()),
                }
            }
        };
        Some(event)
    }

    async fn run(mut self) {
        let mut m = Connection::new(ConnTimings {
            backoff: self.cfg.backoff,
            grace: self.cfg.grace,
            resnapshot_interval: self.cfg.resnapshot_interval,
            snapshot_retry: self.cfg.snapshot_retry,
        });
        let mut next = ConnEvent::Start;
        loop {
            let actions = match m.on(next, rand::random::<f64>()) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error = %e, "connection state machine refused an event");
                    vec![]
                }
            };
            self.update(|st| st.state = m.state);
            let follow = self.execute(actions).await;
            if m.state == ConnState::Stopped {
                // The last batch is handled before the connection says it
                // stopped: no event is forwarded after that.
                if let Some(last) = self.in_flight.take() {
                    let _ = last.await;
                }
                return;
            }
            next = match follow {
                Some(event) => event,
                None => loop {
                    if let Some(event) = self.wait(&m).await {
                        break event;
                    }
                },
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recovered_connection_shows_no_stale_error() {
        let mut st = ConnectionStatus {
            last_error: Some("event stream failed: Unavailable".into()),
            ..Default::default()
        };
        st.set_ready(false, 10);
        assert_eq!(st.status, LinkStatus::Disconnected);
        assert_eq!(st.since, 0, "no change: still disconnected");
        assert!(st.last_error.is_some(), "why it is down stays shown");
        st.set_ready(true, 20);
        assert_eq!(
            (st.status, st.ready, st.since),
            (LinkStatus::Connected, true, 20)
        );
        assert_eq!(st.last_error, None);
        // Ready again (headers after a snapshot): no change of state.
        st.set_ready(true, 30);
        assert_eq!(st.since, 20);
        st.set_ready(false, 40);
        assert_eq!(
            (st.status, st.ready, st.since),
            (LinkStatus::Disconnected, false, 40)
        );
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["status"], "disconnected");
    }
}
