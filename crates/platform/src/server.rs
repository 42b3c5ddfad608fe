//! The server: mounts the enabled services on one HTTP and one gRPC port, adds health,
//! readiness, metrics and the OpenAPI document, runs the workers, and shuts everything down
//! gracefully.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{
    Extension, Router,
    extract::DefaultBodyLimit,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use serde_json::json;
use stride_proto::identity::v1::user_directory_client::UserDirectoryClient;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;

use crate::{
    auth::{Authenticator, SessionChecker, TokenVerifier},
    broker::Broker,
    cache::Redis,
    config::Config,
    db,
    error::{ApiError, ErrorCode, Problem},
    http::TrustedProxies,
    observability::{self, Metrics},
    service::{Context, Service, ServiceSpec, Worker},
};

/// Largest request body accepted unless a route sets its own limit.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stride API",
        description = "Self-hostable backend for connected sports training. Errors are RFC 9457 \
                       problem+json documents whose `type` is `urn:stride:problem:<slug>`.",
        license(name = "AGPL-3.0-or-later")
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// A running process: its bound addresses and the means to stop it.
pub struct RunningApp {
    /// Where HTTP listens.
    pub http_addr: SocketAddr,
    /// Where gRPC listens.
    pub grpc_addr: SocketAddr,
    shutdown: CancellationToken,
    servers: JoinSet<anyhow::Result<()>>,
    workers: JoinSet<(String, anyhow::Result<()>)>,
    grace: Duration,
}

impl std::fmt::Debug for RunningApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningApp")
            .field("http_addr", &self.http_addr)
            .field("grpc_addr", &self.grpc_addr)
            .finish_non_exhaustive()
    }
}

impl RunningApp {
    /// Stops accepting, lets in-flight requests and worker items finish (up to the grace
    /// period), then returns.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let grace = self.grace;
        let drain = async {
            while let Some(result) = self.servers.join_next().await {
                if let Ok(Err(error)) = result {
                    tracing::error!(error = format!("{error:#}"), "server stopped with an error");
                }
            }
            while let Some(result) = self.workers.join_next().await {
                if let Ok((name, Err(error))) = result {
                    tracing::error!(worker = %name, error = format!("{error:#}"), "worker stopped with an error");
                }
            }
        };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!("shutdown grace period elapsed; abandoning unfinished work");
            self.servers.abort_all();
            self.workers.abort_all();
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// Runs until one of `signals` arrives, then stops gracefully.
    pub async fn run_until_signal(self, signals: ShutdownSignals) -> anyhow::Result<()> {
        signals.recv().await;
        tracing::info!("shutdown signal received; finishing in-flight work");
        self.stop().await
    }
}

/// SIGINT and SIGTERM, listened for from the moment this is made.
///
/// Make it before the servers start: until a listener is installed, SIGTERM has its default
/// action and kills the process outright, so an orchestrator that stops a process just after
/// it became ready would otherwise cut its in-flight requests and workers short.
#[derive(Debug)]
pub struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the listeners. Needs a Tokio runtime with its IO driver.
    pub fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for the first of the signals.
    pub async fn recv(self) {
        #[cfg(unix)]
        {
            let Self {
                mut interrupt,
                mut terminate,
            } = self;
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn loopback_if_unspecified(address: SocketAddr) -> SocketAddr {
    if address.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], address.port()))
    } else {
        address
    }
}

/// A lazily connecting gRPC channel to another service.
pub fn grpc_channel(url: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("{url} is not a gRPC URL"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_lazy())
}

/// Applies every enabled service's migrations (creating the databases when missing).
pub async fn migrate(config: &Config, specs: &[&ServiceSpec]) -> anyhow::Result<()> {
    for spec in specs {
        let pool = db::connect(config, spec.name).await?;
        db::migrate(&pool, spec.migrations)
            .await
            .with_context(|| format!("migrating {}", spec.name))?;
        tracing::info!(service = spec.name, "migrated");
        pool.close().await;
    }
    Ok(())
}

/// Binds the ports, connects to the stores, migrates and starts the enabled services.
pub async fn start(mut config: Config, specs: &[&ServiceSpec]) -> anyhow::Result<RunningApp> {
    let http_listener = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding HTTP to {}", config.http_addr))?;
    let grpc_listener = TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("binding gRPC to {}", config.grpc_addr))?;
    let http_addr = http_listener.local_addr()?;
    let grpc_addr = grpc_listener.local_addr()?;
    // Unset service addresses mean "this process", which is right in the all-in-one mode.
    let identity_url = config
        .identity_grpc_url
        .get_or_insert_with(|| format!("http://{}", loopback_if_unspecified(grpc_addr)))
        .clone();
    for url in [
        &mut config.training_grpc_url,
        &mut config.telemetry_grpc_url,
        &mut config.inventory_grpc_url,
    ] {
        url.get_or_insert_with(|| format!("http://{}", loopback_if_unspecified(grpc_addr)));
    }
    let jwks_url = config
        .jwks_url
        .get_or_insert_with(|| {
            format!(
                "http://{}/.well-known/jwks.json",
                loopback_if_unspecified(http_addr)
            )
        })
        .clone();
    let config = Arc::new(config);

    let redis = Redis::connect(&config).await?;
    let broker = Broker::connect(&config).await?;
    let metrics = Arc::new(Metrics::default());
    let identity = UserDirectoryClient::new(grpc_channel(&identity_url)?);
    let auth = Arc::new(Authenticator::new(
        TokenVerifier::new(
            jwks_url,
            config.jwt_issuer.clone(),
            config.jwt_audience.clone(),
            Duration::from_secs(config.jwks_cache_seconds),
        ),
        SessionChecker::new(redis.clone(), identity.clone()),
    ));

    let mut services: Vec<Service> = Vec::with_capacity(specs.len());
    for spec in specs {
        let pool = db::connect(&config, spec.name).await?;
        db::migrate(&pool, spec.migrations)
            .await
            .with_context(|| format!("migrating {}", spec.name))?;
        let context = Context {
            config: config.clone(),
            db: pool,
            redis: redis.clone(),
            broker: broker.clone(),
            auth: auth.clone(),
            identity: identity.clone(),
            metrics: metrics.clone(),
        };
        let service = (spec.build)(context)
            .await
            .with_context(|| format!("starting {}", spec.name))?;
        services.push(service);
    }

    let shutdown = CancellationToken::new();
    let mut api = OpenApiRouter::with_openapi(ApiDoc::openapi());
    let mut grpc = Router::new();
    let mut workers: Vec<Worker> = Vec::new();
    let mut pools = Vec::new();
    for service in services {
        api = api.merge(service.router);
        if let Some(routes) = service.grpc {
            grpc = grpc.merge(routes);
        }
        workers.extend(service.workers);
        pools.push((service.name, service.db));
    }
    let (api_router, openapi) = api.split_for_parts();
    let openapi = Arc::new(openapi);
    let readiness = Arc::new(Readiness {
        pools,
        redis: redis.clone(),
        broker: broker.clone(),
    });
    let trusted = TrustedProxies(Arc::new(config.trusted_proxy_networks()?));
    let observed_metrics = metrics.clone();
    let router = api_router
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get({
                let readiness = readiness.clone();
                move || async move { readiness.check().await }
            }),
        )
        .route(
            "/metrics",
            get({
                let metrics = metrics.clone();
                move || async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route(
            "/v1/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move { axum::Json(openapi.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(DEFAULT_BODY_LIMIT))
        .layer(axum::middleware::from_fn(move |request, next| {
            observability::observe(observed_metrics.clone(), request, next)
        }))
        .layer(Extension(auth.clone()))
        .layer(Extension(trusted));

    let mut servers = JoinSet::new();
    let http_shutdown = shutdown.clone();
    servers.spawn(async move {
        axum::serve(
            http_listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(http_shutdown.cancelled_owned())
        .await
        .context("HTTP server failed")
    });
    let grpc_shutdown = shutdown.clone();
    servers.spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener);
        tonic::transport::Server::builder()
            .add_routes(tonic::service::Routes::from(
                grpc.fallback(grpc_unimplemented),
            ))
            .serve_with_incoming_shutdown(incoming, grpc_shutdown.cancelled_owned())
            .await
            .context("gRPC server failed")
    });
    let mut worker_set = JoinSet::new();
    for worker in workers {
        let token = shutdown.child_token();
        let name = worker.name.clone();
        worker_set.spawn(async move {
            let result = (worker.run)(token).await;
            if let Err(error) = &result {
                tracing::error!(worker = %name, error = format!("{error:#}"), "worker failed");
            }
            (name, result)
        });
    }
    tracing::info!(%http_addr, %grpc_addr, services = ?specs.iter().map(|s| s.name).collect::<Vec<_>>(), "stride is serving");
    Ok(RunningApp {
        http_addr,
        grpc_addr,
        shutdown,
        servers,
        workers: worker_set,
        grace: config.shutdown_grace(),
    })
}

/// The answer to a gRPC call of a service this process does not run.
async fn grpc_unimplemented() -> axum::response::Response {
    (
        [
            (header::CONTENT_TYPE, "application/grpc"),
            (axum::http::HeaderName::from_static("grpc-status"), "12"),
        ],
        "",
    )
        .into_response()
}

struct Readiness {
    pools: Vec<(&'static str, sqlx::PgPool)>,
    redis: Redis,
    broker: Broker,
}

impl Readiness {
    async fn check(&self) -> axum::response::Response {
        let timeout = Duration::from_secs(2);
        let mut checks = serde_json::Map::new();
        let mut ready = true;
        for (name, pool) in &self.pools {
            let result = tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(pool)).await;
            let ok = matches!(result, Ok(Ok(_)));
            ready &= ok;
            checks.insert(
                format!("postgres:{name}"),
                json!(if ok { "ok" } else { "down" }),
            );
        }
        let redis_ok = self.redis.ping().await.is_ok();
        ready &= redis_ok;
        checks.insert("redis".into(), json!(if redis_ok { "ok" } else { "down" }));
        let nats_ok = self.broker.ping().await.is_ok();
        ready &= nats_ok;
        checks.insert("nats".into(), json!(if nats_ok { "ok" } else { "down" }));
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (
            status,
            axum::Json(
                json!({"status": if ready { "ready" } else { "not ready" }, "checks": checks}),
            ),
        )
            .into_response()
    }
}
