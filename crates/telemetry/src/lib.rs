//! The telemetry service: takes per-second samples from devices, never loses an accepted one,
//! and serves them back as activity streams.
//!
//! device → `POST /v1/telemetry/batches` ([`ingest`]: device credential, validation, the
//! activity must be the device owner's and active or paused) → JetStream stream `TELEMETRY`
//! (202 only once the broker has stored the batch; the dedup id is device and sequence
//! number) → [`writer`] drains it into InfluxDB in large line-protocol writes and acks only
//! after InfluxDB accepted them (on a thread and NATS connection of its own, so its CPU work
//! never holds up a request, and stopping while ingest across the replicas is heavy), then
//! trims what it stored from the buffer → [`streams`] reads
//! an activity's time window back.
//!
//! - [`rate`]: the per-device rate limit, counted in the process and shared through Redis in
//!   the background;
//! - [`samples`]: the batch format and its validation (pure), and [`wire`]: the protobuf
//!   body read in one pass, its samples allocated once;
//! - [`buffer`]: how an accepted batch is kept in the stream (its owner and layout in the
//!   headers), and [`columns`]: the layout, each field as a column of small differences;
//! - [`influx`]: the InfluxDB v1 HTTP client and line protocol;
//! - [`activities`]: a short-lived cache of training's answers about activities, renewed ahead
//!   of expiry;
//! - [`grpc`]: `Streams` for training (summaries at finish, imports of uploaded files);
//! - [`live`]: Server-Sent Events of accepted samples, fanned out through NATS for the workouts
//!   someone watches;
//! - [`load`]: every replica's ingest rate, shared through NATS, and when the writers stop
//!   for it;
//! - [`events`]: erasing a deleted user's samples;
//! - [`metrics`]: the broker's store time, and samples accepted against samples written.

pub mod activities;
pub mod buffer;
pub mod columns;
pub mod events;
pub mod grpc;
pub mod influx;
pub mod ingest;
pub mod live;
pub mod load;
pub mod metrics;
pub mod rate;
pub mod samples;
pub mod streams;
pub mod wire;
pub mod writer;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use async_nats::jetstream::stream;
use stride_platform::{
    broker::Broker,
    cache::Redis,
    config::Config,
    consumer::Consumer,
    device_auth::DeviceAuthenticator,
    server::grpc_channel,
    service::{Context, Service, ServiceSpec, Worker},
};
use stride_proto::training::v1::activities_client::ActivitiesClient;
use tokio_util::sync::CancellationToken;

use crate::{activities::ActivityCache, influx::Influx, metrics::TelemetryMetrics};

/// The service's name: its target and database suffix.
pub const NAME: &str = "telemetry";

/// The telemetry service's migrations (only the platform's tables).
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How the binary finds this service.
pub static SERVICE: ServiceSpec = ServiceSpec {
    name: NAME,
    migrations: &MIGRATIONS,
    build: |context| Box::pin(build(context)),
};

/// Shared state of the telemetry handlers.
#[derive(Clone, Debug)]
pub struct Telemetry {
    pub(crate) broker: Broker,
    pub(crate) redis: Redis,
    pub(crate) rates: Arc<rate::DeviceRates>,
    pub(crate) influx: Influx,
    pub(crate) devices: Arc<DeviceAuthenticator>,
    pub(crate) activities: Arc<ActivityCache>,
    pub(crate) config: Arc<Config>,
    pub(crate) live: live::LiveFanOut,
    pub(crate) metrics: TelemetryMetrics,
}

impl Telemetry {
    /// The subject of a user's batches.
    pub(crate) fn batch_subject(&self, user_id: &str) -> String {
        format!("{}telemetry.batches.{user_id}", self.broker.subject_prefix)
    }
}

/// The JetStream name of the telemetry buffer.
pub fn stream_name(config: &Config) -> String {
    config.stream_name("TELEMETRY")
}

/// Creates the stream, or brings an existing one's limits in line with the configuration.
async fn ensure_stream(broker: &Broker, config: &Config) -> anyhow::Result<()> {
    // Checked by `Config::check` to fit.
    let max_bytes = i64::try_from(config.telemetry_buffer_max_bytes).unwrap_or(i64::MAX);
    broker
        .jetstream
        .create_or_update_stream(stream::Config {
            name: stream_name(config),
            subjects: vec![format!("{}telemetry.batches.>", broker.subject_prefix)],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            // Kept by limits, and trimmed by the writers once stored and older than the
            // dedup window (see `writer::trim`): the age limit is only a backstop, for a
            // backlog that InfluxDB never takes.
            max_age: Duration::from_secs(7 * 86_400),
            duplicate_window: Duration::from_secs(config.telemetry_dedup_window_seconds),
            // Full, it refuses new batches: dropping old ones would lose accepted samples.
            max_bytes,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .with_context(|| {
            format!(
                "creating or updating the TELEMETRY stream (the broker must be able to \
                 reserve STRIDE_TELEMETRY_BUFFER_MAX_BYTES = {max_bytes} bytes of its \
                 JetStream storage)"
            )
        })?;
    Ok(())
}

/// Runs the process's writers (`STRIDE_TELEMETRY_WRITERS`) until `shutdown`.
///
/// They drain the buffer on a thread of their own at `SCHED_IDLE`, in
/// `STRIDE_BACKGROUND_CGROUP` when it is set, with their own NATS connection and InfluxDB
/// client: turning 100,000 samples into line protocol is tens of milliseconds of CPU. On the
/// request path's runtime it held up the broker connection that ingest waits on for its
/// acks; at nice 10 it still kept a core from nats-server for up to 40 ms while ingest
/// waited for an ack. Apart and idle, the kernel preempts it for either. Beside them, a task
/// follows the replicas' ingest load, which the writers stop for ([`load`]).
async fn run_writers(
    config: Arc<Config>,
    metrics: TelemetryMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let cgroup = config.background_cgroup.clone();
    stride_platform::thread::run_apart("telemetry-writer", cgroup.as_deref(), move || async move {
        let broker = Broker::connect(&config).await?;
        let influx = Influx::new(&config.influx_url, &config.influx_database);
        let yielding = writer::Yielding {
            load: load::ClusterLoad::default(),
            above: config.telemetry_drain_yield_above,
            at_most: Duration::from_secs(config.telemetry_drain_max_yield_seconds),
        };
        let mut writers = tokio::task::JoinSet::new();
        if yielding.above > 0 {
            let following = yielding
                .load
                .clone()
                .follow(broker.clone(), shutdown.clone());
            writers.spawn(async move {
                following.await;
                Ok(())
            });
        }
        let writer = writer::Writer::new(
            broker.clone(),
            stream_name(&config),
            influx,
            metrics,
            yielding,
        );
        for _ in 0..config.telemetry_writers {
            writers.spawn(writer.clone().run(shutdown.clone()));
        }
        if config.telemetry_writers > 0 {
            let trimming = writer::trim(broker.clone(), stream_name(&config), shutdown.clone());
            writers.spawn(async move {
                trimming.await;
                Ok(())
            });
        }
        while let Some(outcome) = writers.join_next().await {
            outcome.context("a telemetry writer panicked")??;
        }
        Ok(())
    })
    .await
}

async fn build(context: Context) -> anyhow::Result<Service> {
    let config = context.config.clone();
    ensure_stream(&context.broker, &config).await?;
    let influx = Influx::new(&config.influx_url, &config.influx_database);
    if let Err(error) = influx.ensure_database(&config.influx_retention).await {
        // The writer retries until InfluxDB is there; ingest does not need it.
        tracing::warn!(
            error = format!("{error:#}"),
            "cannot create the InfluxDB database yet"
        );
    }
    let (live_fan_out, live_batches) = live::LiveFanOut::new();
    let metrics = TelemetryMetrics::registered(&context.metrics);
    let training_url = config
        .training_grpc_url
        .clone()
        .context("the training gRPC address is not set")?;
    let state = Telemetry {
        broker: context.broker.clone(),
        redis: context.redis.clone(),
        rates: Arc::new(rate::DeviceRates::new(config.device_batches_per_second)),
        influx: influx.clone(),
        devices: Arc::new(DeviceAuthenticator::new(
            context.identity.clone(),
            Duration::from_secs(config.device_auth_cache_seconds),
        )),
        activities: Arc::new(ActivityCache::new(
            ActivitiesClient::new(grpc_channel(&training_url)?),
            Duration::from_secs(2),
        )),
        config: config.clone(),
        live: live_fan_out,
        metrics: metrics.clone(),
    };
    let state_for_grpc = state.clone();
    let state_for_live = state.clone();
    let (rates, redis) = (state.rates.clone(), state.redis.clone());
    let (load_broker, accepted) = (context.broker.clone(), metrics.samples_accepted.clone());
    let writers = (config.telemetry_writers > 0).then(|| {
        let (config, metrics) = (config.clone(), metrics.clone());
        Worker::new("telemetry-writers", move |token| {
            run_writers(config, metrics, token)
        })
    });
    let consumer = Consumer::new(
        NAME,
        context.db.clone(),
        context.broker.clone(),
        events::UserErasure { influx },
    );
    Ok(Service {
        name: NAME,
        router: ingest::router(
            config.ingest_max_in_flight as usize,
            usize::try_from(config.ingest_max_in_flight_bytes).unwrap_or(usize::MAX),
            metrics.clone(),
        )
        .merge(streams::router())
        .merge(live::router())
        .with_state(state),
        grpc: Some(grpc::routes(state_for_grpc)),
        workers: writers
            .into_iter()
            .chain([
                Worker::new("telemetry-consumer", move |token| consumer.run(token)),
                Worker::new("telemetry-live", move |token| {
                    live::fan_out(state_for_live, live_batches, token)
                }),
                Worker::new("telemetry-rates", move |token| {
                    rate::share(rates, redis, token)
                }),
                Worker::new("telemetry-load", move |token| async move {
                    load::report(load_broker, accepted, token).await;
                    Ok(())
                }),
            ])
            .collect(),
        db: context.db,
    })
}
