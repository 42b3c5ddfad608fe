//! `GET /v1/activities/{id}/live`: Server-Sent Events with every accepted sample as it
//! arrives, and the latest sample on connect.
//!
//! Ingest publishes each accepted batch on the plain NATS subject `live.<activity id>` and
//! keeps its last sample in Redis, so a viewer connected to any replica sees samples posted
//! to any other.

use std::{convert::Infallible, time::Duration};

use axum::{
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

    /// Fans an accepted batch out to live viewers. Best effort: the batch is already durable,
    /// and a viewer that misses a moment still has the streams.
    pub(crate) async fn publish_live(&self, batch: &StoredBatch) {
        let payload = batch.encode_to_vec();
        if let Err(error) = self
            .broker
            .client
            .publish(self.live_subject(&batch.activity_id), payload.into())
            .await
        {
            tracing::debug!(%error, "live fan-out failed");
        }
        if let Some(last) = batch.samples.last() {
            let mut redis = self.redis.connection();
            let _: Result<(), _> = redis
                .set_ex(
                    self.last_sample_key(&batch.activity_id),
                    sample_json(last).to_string(),
                    LAST_SAMPLE_SECONDS,
                )
                .await;
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
