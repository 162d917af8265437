//! A gRPC server that serves stored frames as they are: `GetDebug` answers the
//! stored dump, `GetEvents` streams every stored event once and then stays open
//! (as Tetragon does). Its codec's encoder copies the stored bytes into the gRPC
//! frame and never re-encodes, so a client is bounded only by its own work.
//!
//! It runs on its own OS thread with a current-thread tokio runtime, so its CPU
//! time is measured apart (`RUSAGE_THREAD`).
use std::convert::Infallible;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prost::bytes::{Buf, BufMut, Bytes};
use tetragon_learner::tetragon::address::TetragonAddress;
use tetragon_learner::tetragon::proto::{GetDebugRequest, GetEventsRequest};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::{Request, Response, Status};

use super::feed::Feed;

/// Writes stored message bytes as they are; decodes requests with prost.
struct PassThrough<Req>(PhantomData<Req>);

impl<Req> Default for PassThrough<Req> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

struct StoredEncoder;

impl Encoder for StoredEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

struct RequestDecoder<Req>(PhantomData<Req>);

impl<Req: prost::Message + Default> Decoder for RequestDecoder<Req> {
    type Item = Req;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Req>, Status> {
        let len = src.remaining();
        let req = Req::decode(src.copy_to_bytes(len))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Some(req))
    }
}

impl<Req: prost::Message + Default + Send + 'static> Codec for PassThrough<Req> {
    type Encode = Bytes;
    type Decode = Req;
    type Encoder = StoredEncoder;
    type Decoder = RequestDecoder<Req>;
    fn encoder(&mut self) -> StoredEncoder {
        StoredEncoder
    }
    fn decoder(&mut self) -> RequestDecoder<Req> {
        RequestDecoder(PhantomData)
    }
}

type EventStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, Status>> + Send + 'static>>;

struct GetEvents(Arc<Feed>);

impl tonic::server::ServerStreamingService<GetEventsRequest> for GetEvents {
    type Response = Bytes;
    type ResponseStream = EventStream;
    type Future = BoxFuture<Response<EventStream>, Status>;
    fn call(&mut self, _: Request<GetEventsRequest>) -> Self::Future {
        let feed = self.0.clone();
        Box::pin(async move {
            let n = feed.events.len();
            // A Bytes clone is a reference count: nothing is copied or encoded here.
            let frames = futures::stream::iter(0..n).map(move |i| Ok(feed.events[i].clone()));
            // Like Tetragon, the stream stays open after the last event.
            let stream: EventStream = Box::pin(frames.chain(futures::stream::pending()));
            Ok(Response::new(stream))
        })
    }
}

struct GetDebug(Arc<Feed>);

impl tonic::server::UnaryService<GetDebugRequest> for GetDebug {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;
    fn call(&mut self, _: Request<GetDebugRequest>) -> Self::Future {
        let dump = self.0.debug.clone();
        Box::pin(async move { Ok(Response::new(dump)) })
    }
}

/// The two routes the agent uses, under Tetragon's service name.
#[derive(Clone)]
struct WireService(Arc<Feed>);

impl tonic::server::NamedService for WireService {
    const NAME: &'static str = "tetragon.FineGuidanceSensors";
}

impl<B> Service<http::Request<B>> for WireService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let feed = self.0.clone();
        match req.uri().path() {
            "/tetragon.FineGuidanceSensors/GetEvents" => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(PassThrough::<GetEventsRequest>::default());
                Ok(grpc.server_streaming(GetEvents(feed), req).await)
            }),
            "/tetragon.FineGuidanceSensors/GetDebug" => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(PassThrough::<GetDebugRequest>::default());
                Ok(grpc.unary(GetDebug(feed), req).await)
            }),
            _ => Box::pin(async move {
                Ok(Status::unimplemented("not served by the wire bench").into_http())
            }),
        }
    }
}

use futures::StreamExt as _;

/// The server on its own thread; `cpu()` is that thread's CPU time.
pub struct WireServer {
    pub address: TetragonAddress,
    cpu: mpsc::Sender<oneshot::Sender<Duration>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WireServer {
    pub fn start(socket: &Path, feed: Arc<Feed>) -> std::io::Result<Self> {
        let listener = std::os::unix::net::UnixListener::bind(socket)?;
        listener.set_nonblocking(true)?;
        let (cpu_tx, mut cpu_rx) = mpsc::channel::<oneshot::Sender<Duration>>(4);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("wire-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("wire server runtime");
                rt.block_on(async move {
                    tokio::spawn(async move {
                        while let Some(reply) = cpu_rx.recv().await {
                            let _ = reply.send(crate::common::cpu_time(libc::RUSAGE_THREAD));
                        }
                    });
                    let listener = match tokio::net::UnixListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("wire server: {e}");
                            return;
                        }
                    };
                    let serve = tonic::transport::Server::builder()
                        .add_service(WireService(feed))
                        .serve_with_incoming(UnixListenerStream::new(listener));
                    // Not a graceful shutdown: the event stream never ends by
                    // itself; dropping the runtime cuts the connections.
                    tokio::select! {
                        served = serve => {
                            if let Err(e) = served {
                                eprintln!("wire server: {e}");
                            }
                        }
                        _ = stop_rx => {}
                    }
                });
            })?;
        Ok(Self {
            address: TetragonAddress::Unix(socket.to_path_buf()),
            cpu: cpu_tx,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub async fn cpu(&self) -> Duration {
        let (tx, rx) = oneshot::channel();
        if self.cpu.send(tx).await.is_err() {
            return Duration::ZERO;
        }
        rx.await.unwrap_or_default()
    }

    /// Stops serving; an open stream is cut.
    pub fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
