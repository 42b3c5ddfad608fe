//! The training service: the workout lifecycle (planned → active → paused → finished /
//! discarded), manual workouts, the history with its summaries, and per-user training
//! settings.
//!
//! - [`domain`]: sports, visibility, the lifecycle's transitions, checks of manual totals;
//! - [`samples`]: summaries of stored samples, asked from telemetry;
//! - [`store`]: SQL for activities;
//! - [`uploads`]: turning uploaded FIT, GPX and TCX files into activities;
//! - [`http`]: the REST API (`/v1/activities`, `/v1/uploads`, `/v1/me/training-settings`);
//! - [`grpc`]: `Activities` for other services (telemetry authorises ingest with it);
//! - [`events`]: the consumer of identity's events (erasing a deleted user's workouts).
//!
//! Published through the platform's outbox: `training.activity_started.v1`,
//! `training.activity_finished.v1` (the TrainingFinished event), `training.activity_updated.v1`
//! and `training.activity_deleted.v1`.

pub mod domain;
pub mod events;
pub mod grpc;
pub mod http;
pub mod samples;
pub mod store;
pub mod uploads;

use std::sync::Arc;

use anyhow::Context as _;
use sqlx::PgPool;
use stride_platform::server::grpc_channel;
use stride_platform::{
    config::Config,
    consumer::Consumer,
    outbox::Relay,
    service::{Context, Service, ServiceSpec, Worker},
};
use stride_proto::{
    identity::v1::user_directory_client::UserDirectoryClient,
    inventory::v1::gear_client::GearClient, telemetry::v1::streams_client::StreamsClient,
};
use tonic::transport::Channel;

/// The service's name: its target and database suffix.
pub const NAME: &str = "training";

/// The training service's migrations.
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How the binary finds this service.
pub static SERVICE: ServiceSpec = ServiceSpec {
    name: NAME,
    migrations: &MIGRATIONS,
    build: |context| Box::pin(build(context)),
};

/// Shared state of the training handlers.
#[derive(Clone, Debug)]
pub struct Training {
    pub(crate) db: PgPool,
    pub(crate) identity: UserDirectoryClient<Channel>,
    pub(crate) streams: StreamsClient<Channel>,
    pub(crate) gear: GearClient<Channel>,
    pub(crate) uploads: Arc<uploads::UploadQueue>,
    #[allow(dead_code)]
    pub(crate) config: Arc<Config>,
}

async fn build(context: Context) -> anyhow::Result<Service> {
    let telemetry_url = context
        .config
        .telemetry_grpc_url
        .clone()
        .context("the telemetry gRPC address is not set")?;
    let state = Training {
        db: context.db.clone(),
        identity: context.identity.clone(),
        streams: StreamsClient::new(grpc_channel(&telemetry_url)?)
            .max_decoding_message_size(16 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024),
        uploads: Arc::default(),
        gear: GearClient::new(grpc_channel(
            context
                .config
                .inventory_grpc_url
                .as_deref()
                .context("the inventory gRPC address is not set")?,
        )?),
        config: context.config.clone(),
    };
    let relay = Relay::new(context.db.clone(), context.broker.clone());
    let upload_worker = (state.clone(), state.uploads.clone());
    let consumer = Consumer::new(
        NAME,
        context.db.clone(),
        context.broker.clone(),
        events::IdentityEvents,
    );
    Ok(Service {
        name: NAME,
        router: http::router(state.clone()),
        grpc: Some(grpc::routes(state)),
        workers: vec![
            Worker::new("training-outbox-relay", move |token| relay.run(token)),
            Worker::new("training-consumer", move |token| consumer.run(token)),
            Worker::new("training-uploads", move |token| {
                uploads::run(upload_worker.0, upload_worker.1, token)
            }),
        ],
        db: context.db,
    })
}
