//! `GET /v1/activities/{id}/live`: Server-Sent Events with every accepted sample as it
//! arrives, and the latest sample on connect.
//!
//! Ingest hands each accepted batch to this process's fan-out task and answers at once; the
//! task keeps each activity's last sample in Redis and publishes the batch on the plain NATS
//! subject `live.<activity id>`, so a viewer connected to any replica sees samples posted to
//! any other.
//!
//! Most workouts have nobody watching them live, so a batch is published only while its
//! activity has a viewer somewhere: each open live view keeps a short-lived watch key in
//! Redis (refreshed while it is open), and the fan-out asks for those keys in the same Redis
//! round trip that keeps the last samples. Without this every accepted byte crossed the
//! broker twice, once to be stored and once to be dropped for want of a subscriber. When
//! Redis cannot answer, the fan-out publishes everything rather than leave a viewer blind.

use std::{
    collections::{HashMap, HashSet},
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
use redis::AsyncCommands;
use serde_json::{Value, json};
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, Problem},
    http::Path,
};
use stride_proto::telemetry::v1::Sample;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{Telemetry, buffer};

/// How long the last sample of an activity is kept for viewers who connect later.
const LAST_SAMPLE_SECONDS: u64 = 6 * 3600;

/// How long an activity counts as watched after its last viewer's last refresh. A viewer
/// whose process died stops the fan-out of its activity after at most this long.
const WATCH_SECONDS: u64 = 30;

/// How often an open live view refreshes its watch key.
const WATCH_REFRESH: Duration = Duration::from_secs(10);

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

    /// Present while somebody watches the activity live.
    fn watch_key(&self, activity_id: &str) -> String {
        self.redis.key(format!("live:watch:{activity_id}"))
    }
}

/// An accepted batch on its way to live viewers.
#[derive(Debug)]
pub(crate) struct LiveBatch {
    /// The activity.
    pub activity_id: String,
    /// Its owner.
    pub user_id: String,
    /// The device that sent it.
    pub device_id: String,
    /// The batch as stored in the buffer (see [`buffer`](crate::buffer)).
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

/// Rounds begin at least this far apart. A round per batch cost a Redis round trip and a
/// wake-up of Redis and of this task for every batch accepted; a viewer waits at most this
/// much longer.
const FAN_OUT_EVERY: Duration = Duration::from_millis(10);

/// Fans accepted batches out to live viewers, in the order this process accepted them,
/// until `shutdown`, in rounds at least [`FAN_OUT_EVERY`] apart. Each round first keeps
/// every activity's last sample in Redis and asks which of the round's activities are
/// watched (one pipeline), then publishes the watched activities' batches on
/// `live.<activity>`, so a viewer who has seen a sample and reconnects gets at least that
/// one as `latest`.
pub(crate) async fn fan_out(
    telemetry: Telemetry,
    mut batches: mpsc::Receiver<LiveBatch>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut round = Vec::with_capacity(FAN_OUT_ROUND);
    let mut next_round = tokio::time::Instant::now();
    loop {
        let taken = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            taken = async {
                // What arrived since the last round waits for the next together.
                tokio::time::sleep_until(next_round).await;
                batches.recv_many(&mut round, FAN_OUT_ROUND).await
            } => taken,
        };
        if taken == 0 {
            return Ok(());
        }
        next_round = tokio::time::Instant::now() + FAN_OUT_EVERY;
        let watched = keep_last_and_find_watched(&telemetry, &round).await;
        for batch in round.drain(..) {
            let bytes = batch.payload.len();
            if watched
                .as_ref()
                .is_none_or(|watched| watched.contains(batch.activity_id.as_str()))
                && let Err(error) = telemetry
                    .broker
                    .client
                    .publish_with_headers(
                        telemetry.live_subject(&batch.activity_id),
                        buffer::payload_headers(&batch.user_id, &batch.device_id),
                        batch.payload,
                    )
                    .await
            {
                tracing::debug!(%error, "live fan-out failed");
            }
            telemetry.live.done(bytes);
        }
    }
}

/// Keeps the last sample of each activity in `round` and answers which of them have a
/// viewer, in one Redis round trip; `None` when Redis did not answer.
async fn keep_last_and_find_watched(
    telemetry: &Telemetry,
    round: &[LiveBatch],
) -> Option<HashSet<String>> {
    let mut last = HashMap::new();
    for batch in round {
        let entry = last.entry(batch.activity_id.as_str()).or_insert(None);
        if let Some(sample) = &batch.last {
            *entry = Some(sample.as_str());
        }
    }
    let mut pipe = redis::pipe();
    for (activity_id, sample) in &last {
        if let Some(sample) = sample {
            pipe.set_ex(
                telemetry.last_sample_key(activity_id),
                *sample,
                LAST_SAMPLE_SECONDS,
            )
            .ignore();
        }
    }
    let activities: Vec<&str> = last.into_keys().collect();
    for activity_id in &activities {
        pipe.exists(telemetry.watch_key(activity_id));
    }
    let mut redis = telemetry.redis.connection();
    match pipe.query_async::<Vec<bool>>(&mut redis).await {
        Ok(flags) => Some(
            activities
                .into_iter()
                .zip(flags)
                .filter(|(_, watched)| *watched)
                .map(|(activity_id, _)| activity_id.to_owned())
                .collect(),
        ),
        Err(error) => {
            tracing::debug!(%error, "cannot keep the latest live samples or find viewers");
            None
        }
    }
}

/// Marks the activity as watched for the next [`WATCH_SECONDS`]. Best effort: without
/// Redis the fan-out publishes everything anyway.
async fn mark_watched(
    telemetry: &Telemetry,
    redis: &mut redis::aio::ConnectionManager,
    activity_id: &str,
) {
    if let Err(error) = redis
        .set_ex::<_, _, ()>(telemetry.watch_key(activity_id), 1, WATCH_SECONDS)
        .await
    {
        tracing::debug!(%error, "cannot mark a live view");
    }
}

/// Renews the mark every [`WATCH_REFRESH`] until `stop` (the live view closed).
async fn keep_watching(telemetry: Telemetry, activity_id: String, stop: CancellationToken) {
    let mut redis = telemetry.redis.connection();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(WATCH_REFRESH) => {}
        }
        mark_watched(&telemetry, &mut redis, &activity_id).await;
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
    // The broker has the subscription before the fan-out can learn of the viewer, so
    // nothing the fan-out publishes for this view from then on is missed.
    telemetry
        .broker
        .client
        .flush()
        .await
        .map_err(|error| ApiError::unavailable(error, 2))?;
    let mut redis = telemetry.redis.connection();
    mark_watched(&telemetry, &mut redis, &activity.activity_id).await;
    let stop_watching = CancellationToken::new();
    tokio::spawn(keep_watching(
        telemetry.clone(),
        activity.activity_id.clone(),
        stop_watching.clone(),
    ));
    // Dropped with the event stream, when the viewer goes away.
    let watching = stop_watching.drop_guard();
    let latest: Option<String> = redis
        .get(telemetry.last_sample_key(&activity.activity_id))
        .await
        .unwrap_or(None);
    let first = stream::iter(
        latest
            .map(|sample| Ok(Event::default().event("latest").data(sample)))
            .into_iter(),
    );
    let samples = subscription.flat_map(move |message| {
        // The live view holds the watch for as long as it is open.
        let _watching = &watching;
        let events: Vec<Result<Event, Infallible>> =
            buffer::decode(message.headers.as_ref(), message.payload.as_ref())
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
            user_id: "u".into(),
            device_id: "d".into(),
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
