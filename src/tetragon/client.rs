//! Opening a gRPC channel to Tetragon over TCP or a unix socket.
use std::time::Duration;

use hyper_util::rt::TokioIo;
use thiserror::Error;
use tonic::transport::{Channel, Endpoint};

use super::address::TetragonAddress;
use super::proto::fine_guidance_sensors_client::FineGuidanceSensorsClient;
use super::proto::{lean, GetEventsRequest};

#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("cannot connect to Tetragon at {address}: {detail}; check that Tetragon runs and that --tetragon-address points at its gRPC server")]
    Transport { address: String, detail: String },
    #[error("invalid Tetragon address {address}: {source}")]
    InvalidUri {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Connects eagerly, so a wrong address fails here with a clear error instead of at
/// the first call.
pub async fn connect(
    address: &TetragonAddress,
    connect_timeout: Duration,
) -> Result<Channel, ConnectError> {
    let shown = address.to_string();
    let endpoint = match address {
        TetragonAddress::Tcp(hostport) => Endpoint::from_shared(format!("http://{hostport}")),
        // The authority is ignored by the unix connector below.
        TetragonAddress::Unix(_) => Endpoint::from_shared("http://tetragon.local".to_string()),
    }
    .map_err(|source| ConnectError::InvalidUri {
        address: shown.clone(),
        source,
    })?
    .connect_timeout(connect_timeout)
    .tcp_nodelay(true)
    // A Tetragon that vanished without closing the connection (node trouble, a
    // frozen process) is noticed by HTTP/2 pings instead of waiting forever.
    // Tetragon's grpc-go server allows one ping per 5 minutes and none without an
    // open stream (more earns a GOAWAY "too_many_pings"), so stay above that.
    .http2_keep_alive_interval(Duration::from_secs(330))
    .keep_alive_timeout(Duration::from_secs(20))
    .keep_alive_while_idle(false);

    let result = match address {
        TetragonAddress::Tcp(_) => endpoint.connect().await,
        TetragonAddress::Unix(path) => {
            let path = path.clone();
            endpoint
                .connect_with_connector(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
                .await
        }
    };
    result.map_err(|e| ConnectError::Transport {
        address: shown,
        detail: cause_chain(&e),
    })
}

/// A client with the receive limit raised: a busy node's process cache is large.
pub fn client(channel: Channel, max_message_size: usize) -> FineGuidanceSensorsClient<Channel> {
    FineGuidanceSensorsClient::new(channel).max_decoding_message_size(max_message_size)
}

/// Opens `GetEvents` with the lean response type (`proto/tetragon/lean.proto`):
/// the same RPC on the same path as the generated client's `get_events`, whose
/// frames are decoded into only the fields the agent reads. Written out
/// because the generated stub is tied to the full response type.
pub async fn get_events_lean(
    channel: Channel,
    request: GetEventsRequest,
    max_message_size: usize,
) -> Result<tonic::Streaming<lean::GetEventsResponse>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(max_message_size);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
    let codec = tonic_prost::ProstCodec::<GetEventsRequest, lean::GetEventsResponse>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/tetragon.FineGuidanceSensors/GetEvents",
    );
    let mut req = tonic::Request::new(request);
    req.extensions_mut().insert(tonic::GrpcMethod::new(
        "tetragon.FineGuidanceSensors",
        "GetEvents",
    ));
    Ok(grpc.server_streaming(req, path, codec).await?.into_inner())
}

/// "transport error" alone says nothing: keep every distinct message down the
/// source chain (e.g. the OS error of the socket connect).
fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}
