//! How a service describes itself to the server: its name, migrations, HTTP routes, gRPC
//! services and background workers. A service knows nothing of how it is deployed; the server
//! mounts whichever services are enabled.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::{PgPool, migrate::Migrator};
use stride_proto::identity::v1::user_directory_client::UserDirectoryClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    auth::Authenticator, broker::Broker, cache::Redis, config::Config, observability::Metrics,
};

/// The static description of a service: what the binary's target list points at.
pub struct ServiceSpec {
    /// The target name, also its database name suffix (`identity`).
    pub name: &'static str,
    /// The service's own migrations.
    pub migrations: &'static Migrator,
    /// Builds the running service from the shared context.
    pub build: fn(Context) -> BoxFuture<'static, anyhow::Result<Service>>,
}

impl std::fmt::Debug for ServiceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceSpec")
            .field("name", &self.name)
            .finish()
    }
}

/// Everything a service gets from the platform.
#[derive(Clone, Debug)]
pub struct Context {
    /// The process configuration (with this process's own addresses filled in).
    pub config: Arc<Config>,
    /// A pool on the service's own database, migrated.
    pub db: PgPool,
    /// Redis.
    pub redis: Redis,
    /// The broker.
    pub broker: Broker,
    /// Verifies access tokens.
    pub auth: Arc<Authenticator>,
    /// A client of identity's `UserDirectory`.
    pub identity: UserDirectoryClient<Channel>,
    /// The metrics registry, for the service's own metrics.
    pub metrics: Arc<Metrics>,
}

/// A long-running task of a service (relay, consumer, writer). It must return soon after its
/// token is cancelled, having finished the item in hand.
pub struct Worker {
    /// For logs.
    pub name: String,
    /// The task.
    pub run: Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> + Send>,
}

impl Worker {
    /// A named worker.
    pub fn new<F, Fut>(name: impl Into<String>, run: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self {
            name: name.into(),
            run: Box::new(move |token| Box::pin(run(token))),
        }
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("name", &self.name).finish()
    }
}

/// A built service, ready to be mounted.
pub struct Service {
    /// Its name.
    pub name: &'static str,
    /// HTTP routes with their OpenAPI description (state already applied).
    pub router: OpenApiRouter,
    /// gRPC services, made with [`grpc_router`] (mergeable: it has no fallback).
    pub grpc: Option<axum::Router>,
    /// Background workers.
    pub workers: Vec<Worker>,
    /// The database, checked by `/readyz`.
    pub db: PgPool,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The router of one gRPC service, mergeable with other services' routers (unlike
/// `tonic::service::Routes::into_axum_router`, it adds no fallback).
pub fn grpc_router<S>(service: S) -> axum::Router
where
    S: tower::Service<axum::http::Request<axum::body::Body>, Error = std::convert::Infallible>
        + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Response: axum::response::IntoResponse,
    S::Future: Send + 'static,
{
    axum::Router::new().route_service(&format!("/{}/{{*rest}}", S::NAME), service)
}
