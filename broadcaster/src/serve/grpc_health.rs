//! The `grpc.health.v1.Health` service, as the spec has it. tonic-health's own service ends a
//! `Watch` of a name it does not know with `NOT_FOUND`; the spec says to send
//! `SERVICE_UNKNOWN` and keep the call open, then send the real status once the name becomes
//! known (a client may watch a stream's health before the updater's first tick). `Check` of an
//! unknown name is `NOT_FOUND`, as specified.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use stallwatch_core::sync::lock;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// Every name's current status; a name only watched so far holds `ServiceUnknown`.
#[derive(Default)]
struct Registry {
    services: Mutex<HashMap<String, watch::Sender<ServingStatus>>>,
}

/// Sets service statuses; cloned freely.
#[derive(Clone, Default)]
pub struct HealthReporter {
    registry: Arc<Registry>,
}

impl HealthReporter {
    /// Sets `name`'s status; watchers of it see the change.
    pub fn set(&self, name: &str, status: ServingStatus) {
        let mut services = lock(&self.registry.services);
        match services.get(name) {
            Some(sender) => {
                sender.send_replace(status);
            }
            None => {
                services.insert(name.to_string(), watch::channel(status).0);
            }
        }
    }

    /// The tonic service answering `Check` and `Watch` from this reporter's statuses.
    pub fn service(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService {
            registry: self.registry.clone(),
        })
    }
}

/// The `grpc.health.v1.Health` implementation.
pub struct HealthService {
    registry: Arc<Registry>,
}

type WatchResponses = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let name = &request.get_ref().service;
        let status = lock(&self.registry.services)
            .get(name)
            .map(|s| *s.borrow())
            .filter(|s| *s != ServingStatus::ServiceUnknown);
        match status {
            Some(status) => Ok(Response::new(response(status))),
            None => Err(Status::not_found(format!("unknown service {name:?}"))),
        }
    }

    type WatchStream = WatchResponses;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchResponses>, Status> {
        let name = request.into_inner().service;
        let receiver = {
            let mut services = lock(&self.registry.services);
            // Names only ever watched, whose watchers all left, would otherwise pile up: any
            // client may watch any name.
            services.retain(|_, s| {
                *s.borrow() != ServingStatus::ServiceUnknown || s.receiver_count() > 0
            });
            services
                .entry(name)
                .or_insert_with(|| watch::channel(ServingStatus::ServiceUnknown).0)
                .subscribe()
        };
        let updates = WatchStream::new(receiver).map(|status| Ok(response(status)));
        Ok(Response::new(Box::pin(updates)))
    }
}

#[cfg(test)]
mod tests;
