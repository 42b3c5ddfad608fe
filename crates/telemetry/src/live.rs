//! `GET /v1/activities/{id}/live`: Server-Sent Events with every accepted sample as it
//! arrives, and the latest sample on connect.
//!
//! Ingest hands each accepted batch to this process's fan-out task and answers at once; the
//! task keeps each activity's last sample in Redis and publishes the batch on the plain NATS
//! subject `live.<activity id>`, so a viewer connected to any replica sees samples posted to
//! any other.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    response::sse::{Event, KeepAlive, Sse},
};
use futures_util::{Stream, StreamExt, stream};
use prost::Message as _;
use redis::AsyncCommands;
use serde_json::{Value, json};
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, Problem},
    http::Path,
};
use stride_proto::telemetry::v1::{Sample, StoredBatch};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::Telemetry;

/// How long the last sample of an activity is kept for viewers who connect later.
const LAST_SAMPLE_SECONDS: u64 = 6 * 3600;

pub fn router() -> OpenApiRouter<Telemetry> {
    OpenApiRouter::new().routes(routes!(live))
}

impl Telemetry {
    /// The live subject of an activity.
    pub(crate) fn live_subject(&self, activity_id: &str) -> String {
        format!("{}live.{activity_id}", self.broker.subject_prefix)
    }

    fn last_sample_key(&self, activity_id: &str) -> String {
        self.redis.key(format!("live:last:{activity_id}"))
    }
}

/// An accepted batch on its way to live viewers.
#[derive(Debug)]
pub(crate) struct LiveBatch {
    /// The activity.
    pub activity_id: String,
    /// The batch as stored in the buffer (a `StoredBatch`).
    pub payload: Bytes,
    /// Its last sample as the live view sends it.
    pub last: Option<String>,
}

/// Hands accepted batches to [`fan_out`] without waiting for it: the `202` waits only for
/// what makes a batch durable.
#[derive(Debug, Clone)]
pub(crate) struct LiveFanOut {
    sender: mpsc::Sender<LiveBatch>,
    /// Bytes of the batches queued and not yet published.
    queued: Arc<AtomicUsize>,
}

impl LiveFanOut {
    /// A fan-out and the receiver [`fan_out`] works from.
    pub(crate) fn new() -> (Self, mpsc::Receiver<LiveBatch>) {
        let (sender, receiver) = mpsc::channel(FAN_OUT_QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        (Self { sender, queued }, receiver)
    }

    /// Queues a batch. Best effort: when the queue is full (in batches or in bytes, say
    /// while the broker or Redis stalls) the batch is not shown live. It is durable
    /// already, and a viewer still has the streams.
    pub(crate) fn send(&self, batch: LiveBatch) {
        let bytes = batch.payload.len();
        if self.queued.fetch_add(bytes, Ordering::Relaxed) + bytes > FAN_OUT_BYTES
            || self.sender.try_send(batch).is_err()
        {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            tracing::debug!("live fan-out queue full; a batch is not shown live");
        }
    }

    /// A queued batch of `bytes` was published (or given up).
    fn done(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Batches waiting for the fan-out, at most.
const FAN_OUT_QUEUE: usize = 4096;

/// Bytes waiting for the fan-out, at most: the memory a stalled fan-out may hold.
const FAN_OUT_BYTES: usize = 16 << 20;

/// Batches taken per round, at most.
const FAN_OUT_ROUND: usize = 256;

/// Fans accepted batches out to live viewers, in the order this process accepted them,
/// until `shutdown`. Each round first keeps every activity's last sample in Redis (one
/// pipeline), then publishes the batches on `live.<activity>`, so a viewer who has seen a
/// sample and reconnects gets at least that one as `latest`.
pub(crate) async fn fan_out(
    telemetry: Telemetry,
    mut batches: mpsc::Receiver<LiveBatch>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut round = Vec::with_capacity(FAN_OUT_ROUND);
    loop {
        let taken = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            taken = batches.recv_many(&mut round, FAN_OUT_ROUND) => taken,
        };
        if taken == 0 {
            return Ok(());
        }
        let mut last = HashMap::new();
        for batch in &round {
            if let Some(sample) = &batch.last {
                last.insert(batch.activity_id.as_str(), sample.as_str());
            }
        }
        let mut pipe = redis::pipe();
        for (activity_id, sample) in last {
            pipe.set_ex(
                telemetry.last_sample_key(activity_id),
                sample,
                LAST_SAMPLE_SECONDS,
            )
            .ignore();
        }
        let mut redis = telemetry.redis.connection();
        if let Err(error) = pipe.query_async::<()>(&mut redis).await {
            tracing::debug!(%error, "cannot keep the latest live samples");
        }
        for batch in round.drain(..) {
            let bytes = batch.payload.len();
            if let Err(error) = telemetry
                .broker
                .client
                .publish(telemetry.live_subject(&batch.activity_id), batch.payload)
                .await
            {
                tracing::debug!(%error, "live fan-out failed");
            }
            telemetry.live.done(bytes);
        }
    }
}

/// A sample as the live view sends it.
pub fn sample_json(sample: &Sample) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("time".into(), json!(sample.time_ms));
    for (name, value) in [
        ("lat", sample.lat),
        ("lon", sample.lon),
        ("altitude_m", sample.altitude_m),
        ("heart_rate", sample.heart_rate),
        ("cadence", sample.cadence),
        ("power_w", sample.power_w),
        ("speed_mps", sample.speed_mps),
        ("distance_m", sample.distance_m),
        ("temperature_c", sample.temperature_c),
    ] {
        if let Some(value) = value {
            object.insert(name.into(), json!(value));
        }
    }
    Value::Object(object)
}

/// Live samples of an activity as Server-Sent Events: a `latest` event with the last known
/// sample on connect (when there is one), then a `sample` event per accepted sample.
#[utoipa::path(
    get,
    path = "/v1/activities/{id}/live",
    tag = "telemetry",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Activity id")),
    responses(
        (status = 200, description = "text/event-stream of `latest` and `sample` events, each a JSON sample", content_type = "text/event-stream"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such activity the caller may see", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn live(
    State(telemetry): State<Telemetry>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let activity = telemetry
        .activities
        .get(id)
        .await?
        .filter(|activity| {
            activity.owner_id == user.user_id.to_string() || activity.visibility == "public"
        })
        .ok_or_else(|| ApiError::not_found("no such activity"))?;
    let subscription = telemetry
        .broker
        .client
        .subscribe(telemetry.live_subject(&activity.activity_id))
        .await
        .map_err(|error| ApiError::unavailable(error, 2))?;
    let mut redis = telemetry.redis.connection();
    let latest: Option<String> = redis
        .get(telemetry.last_sample_key(&activity.activity_id))
        .await
        .unwrap_or(None);
    let first = stream::iter(
        latest
            .map(|sample| Ok(Event::default().event("latest").data(sample)))
            .into_iter(),
    );
    let samples = subscription.flat_map(|message| {
        let events: Vec<Result<Event, Infallible>> = StoredBatch::decode(message.payload.as_ref())
            .map(|batch| {
                batch
                    .samples
                    .iter()
                    .map(|sample| {
                        Ok(Event::default()
                            .event("sample")
                            .data(sample_json(sample).to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        stream::iter(events)
    });
    Ok(Sse::new(first.chain(samples))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(bytes: usize) -> LiveBatch {
        LiveBatch {
            activity_id: "a".into(),
            payload: Bytes::from(vec![0; bytes]),
            last: None,
        }
    }

    #[test]
    fn a_stalled_fan_out_holds_at_most_its_byte_budget_and_frees_it_as_it_publishes() {
        let (fan_out, mut receiver) = LiveFanOut::new();
        for _ in 0..40 {
            fan_out.send(batch(1 << 20));
        }
        let mut queued = Vec::new();
        while let Ok(batch) = receiver.try_recv() {
            queued.push(batch);
        }
        assert_eq!(queued.len(), FAN_OUT_BYTES >> 20);
        // Once they are published there is room again.
        for batch in &queued {
            fan_out.done(batch.payload.len());
        }
        fan_out.send(batch(1 << 20));
        assert!(receiver.try_recv().is_ok());
    }
}
