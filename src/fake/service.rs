//! The fake's implementation of `tetragon.FineGuidanceSensors`.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::tetragon::proto::{
    fine_guidance_sensors_server::FineGuidanceSensors, get_debug_response, ConfigFlag,
    DumpProcessCacheResArgs, GetDebugRequest, GetDebugResponse, GetEventsRequest,
    GetEventsResponse, GetHealthStatusRequest, GetHealthStatusResponse, GetVersionRequest,
    GetVersionResponse, HealthStatus, HealthStatusResult, HealthStatusType, LogLevel,
};

use crate::tetragon::proto::{
    AddTracingPolicyRequest, AddTracingPolicyResponse, DeleteTracingPolicyRequest,
    DeleteTracingPolicyResponse, ListTracingPoliciesRequest, ListTracingPoliciesResponse,
};

use super::filter::{passes, unsupported_fields};
use super::scenario::{DebugFault, PolicyFault};
use super::state::FakeState;

/// What the fake reports as its Tetragon version.
pub const FAKE_VERSION: &str = "v1.8.0-fake";

pub struct FakeService {
    pub state: Arc<FakeState>,
}

type EventResult = Result<GetEventsResponse, Status>;

/// Forwards the live feed to one client until a fault or the client ends it.
async fn forward(
    state: Arc<FakeState>,
    req: GetEventsRequest,
    mut rx: mpsc::Receiver<GetEventsResponse>,
    tx: mpsc::Sender<EventResult>,
) {
    let end_after = state.faults.end_stream_after;
    let abort_after = state.faults.abort_stream_after;
    let mut sent: u64 = 0;
    let mut stopping = state.stopping.subscribe();
    loop {
        if abort_after.is_some_and(|n| sent >= n) {
            let _ = tx
                .send(Err(Status::unavailable(
                    "fake tetragon: stream aborted by fault injection",
                )))
                .await;
            return;
        }
        if end_after.is_some_and(|n| sent >= n) {
            return;
        }
        let received = tokio::select! {
            r = rx.recv() => Some(r),
            _ = stopping.wait_for(|s| *s) => None,
        };
        let Some(received) = received else {
            let _ = tx
                .send(Err(Status::unavailable("fake tetragon is shutting down")))
                .await;
            return;
        };
        // Closed: the fake is gone. (What a full queue dropped is counted by
        // `FakeState::publish`, silently for the client, as Tetragon does.)
        let Some(ev) = received else { return };
        if !passes(&req, &ev) {
            continue;
        }
        if tx.send(Ok(ev)).await.is_err() {
            return; // client went away
        }
        sent += 1;
    }
}

#[tonic::async_trait]
impl FineGuidanceSensors for FakeService {
    type GetEventsStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = EventResult> + Send>>;

    async fn get_events(
        &self,
        request: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetEventsStream>, Status> {
        let req = request.into_inner();
        let unsupported: Vec<&str> = req
            .allow_list
            .iter()
            .chain(&req.deny_list)
            .flat_map(unsupported_fields)
            .collect();
        if !unsupported.is_empty() {
            return Err(Status::invalid_argument(format!(
                "fake tetragon does not evaluate filter fields {unsupported:?}; use event_set, namespace, pid or policy_names"
            )));
        }
        // Subscribe before anything can be published for this client.
        let rx = self.state.subscribe();
        self.state
            .counters
            .streams_opened
            .fetch_add(1, Ordering::Relaxed);
        self.state.first_client.notify_one();
        let (tx, mut out) = mpsc::channel(1024);
        tokio::spawn(forward(self.state.clone(), req, rx, tx));
        // Tetragon's server (grpc-go) sends the response headers together with
        // the first event, so a client's call does not return on a quiet node
        // until something happens. The fake does the same, so the agent is tested
        // against it.
        let rest = |out| Box::pin(ReceiverStream::new(out)) as Self::GetEventsStream;
        match out.recv().await {
            Some(Ok(first)) => Ok(Response::new(Box::pin(
                tokio_stream::once(Ok(first)).chain(ReceiverStream::new(out)),
            ))),
            Some(Err(status)) => Err(status),
            None => Ok(Response::new(rest(out))),
        }
    }

    async fn get_health(
        &self,
        _: Request<GetHealthStatusRequest>,
    ) -> Result<Response<GetHealthStatusResponse>, Status> {
        Ok(Response::new(GetHealthStatusResponse {
            health_status: vec![HealthStatus {
                event: HealthStatusType::Status as i32,
                status: HealthStatusResult::HealthStatusRunning as i32,
                details: "running".to_string(),
            }],
        }))
    }

    async fn get_version(
        &self,
        _: Request<GetVersionRequest>,
    ) -> Result<Response<GetVersionResponse>, Status> {
        Ok(Response::new(GetVersionResponse {
            version: FAKE_VERSION.to_string(),
        }))
    }

    async fn get_debug(
        &self,
        request: Request<GetDebugRequest>,
    ) -> Result<Response<GetDebugResponse>, Status> {
        self.state
            .counters
            .debug_calls
            .fetch_add(1, Ordering::Relaxed);
        let req = request.into_inner();
        let faults = &self.state.faults;
        if faults.getdebug_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.getdebug_delay_ms)).await;
        }
        match faults.getdebug {
            DebugFault::Unimplemented => return Err(Status::unimplemented("unknown flag")),
            DebugFault::Error => {
                return Err(Status::internal(
                    "fake tetragon: GetDebug failed by fault injection",
                ))
            }
            DebugFault::Ok | DebugFault::Empty => {}
        }
        match ConfigFlag::try_from(req.flag) {
            Ok(ConfigFlag::DumpProcessCache) => {
                let processes = if faults.getdebug == DebugFault::Empty {
                    Vec::new()
                } else {
                    self.state.node.lock().dump()
                };
                Ok(Response::new(GetDebugResponse {
                    flag: ConfigFlag::DumpProcessCache as i32,
                    arg: Some(get_debug_response::Arg::Processes(
                        DumpProcessCacheResArgs { processes },
                    )),
                }))
            }
            Ok(ConfigFlag::LogLevel) => Ok(Response::new(GetDebugResponse {
                flag: ConfigFlag::LogLevel as i32,
                arg: Some(get_debug_response::Arg::Level(LogLevel::Info as i32)),
            })),
            // Tetragon answers an unknown flag with code Unknown.
            Err(_) => Err(Status::unknown(format!(
                "client requested unknown config flag {}",
                req.flag
            ))),
        }
    }

    async fn add_tracing_policy(
        &self,
        request: Request<AddTracingPolicyRequest>,
    ) -> Result<Response<AddTracingPolicyResponse>, Status> {
        self.policies_served("AddTracingPolicy")?;
        let req = request.into_inner();
        // Tetragon returns plain Go errors: gRPC code Unknown, the text as is.
        self.state
            .policies
            .lock()
            .add(&req.yaml, &req.domain)
            .map_err(|e| Status::unknown(e.to_string()))?;
        Ok(Response::new(AddTracingPolicyResponse {}))
    }

    async fn delete_tracing_policy(
        &self,
        request: Request<DeleteTracingPolicyRequest>,
    ) -> Result<Response<DeleteTracingPolicyResponse>, Status> {
        self.policies_served("DeleteTracingPolicy")?;
        let req = request.into_inner();
        self.state
            .policies
            .lock()
            .delete(&req.name, &req.namespace, &req.domain)
            .map_err(|e| Status::unknown(e.to_string()))?;
        Ok(Response::new(DeleteTracingPolicyResponse {}))
    }

    async fn list_tracing_policies(
        &self,
        request: Request<ListTracingPoliciesRequest>,
    ) -> Result<Response<ListTracingPoliciesResponse>, Status> {
        self.policies_served("ListTracingPolicies")?;
        let domain = request.into_inner().domain;
        Ok(Response::new(ListTracingPoliciesResponse {
            policies: self.state.policies.lock().list(&domain),
        }))
    }
}

impl FakeService {
    /// The `tracing_policies: unimplemented` fault: an old Tetragon.
    /// (grpc-go's answer for a method the server does not have.)
    fn policies_served(&self, method: &str) -> Result<(), Status> {
        match self.state.faults.tracing_policies {
            PolicyFault::Ok => Ok(()),
            PolicyFault::Unimplemented => Err(Status::unimplemented(format!(
                "unknown method {method} for service tetragon.FineGuidanceSensors"
            ))),
        }
    }
}
