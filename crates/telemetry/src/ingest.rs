//! `POST /v1/telemetry/batches`: device ingest into the durable buffer.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse as _,
};
use serde::Serialize;
use stride_platform::{
    error::{ApiError, ErrorCode, Problem},
    http::Json,
    observability,
};
use stride_proto::telemetry::v1::SampleBatch;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Telemetry, buffer,
    live::{LiveBatch, sample_json},
    metrics::TelemetryMetrics,
    samples::{JsonBatch, MAX_BATCH_BYTES, validate},
    wire::WireError,
};

/// How much ingest one process works on at once: at most `batches` requests holding at most
/// `bytes` of bodies between them.
#[derive(Debug, Clone)]
struct InFlight {
    batches: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    metrics: TelemetryMetrics,
}

/// A batch's share of [`InFlight`], given back when its request ends, however it ends.
struct Admitted {
    _batch: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
    charge: i64,
    metrics: TelemetryMetrics,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.metrics.ingest_in_flight_bytes.dec_by(self.charge);
    }
}

impl InFlight {
    /// Room for a body counted as `charge` bytes, if there is some.
    fn admit(&self, charge: u32) -> Option<Admitted> {
        let batch = self.batches.clone().try_acquire_owned().ok()?;
        let bytes = self.bytes.clone().try_acquire_many_owned(charge).ok()?;
        self.metrics
            .ingest_in_flight_bytes
            .inc_by(i64::from(charge));
        Some(Admitted {
            _batch: batch,
            _bytes: bytes,
            charge: i64::from(charge),
            metrics: self.metrics.clone(),
        })
    }
}

/// The ingest route, working on at most `max_batches` batches and `max_bytes` bytes of
/// bodies at once.
pub fn router(
    max_batches: usize,
    max_bytes: usize,
    metrics: TelemetryMetrics,
) -> OpenApiRouter<Telemetry> {
    let in_flight = InFlight {
        batches: Arc::new(Semaphore::new(max_batches)),
        bytes: Arc::new(Semaphore::new(max_bytes.min(Semaphore::MAX_PERMITS))),
        metrics,
    };
    OpenApiRouter::new()
        .routes(routes!(ingest))
        .route_layer(axum::middleware::from_fn(move |request, next| {
            shed_load(in_flight.clone(), request, next)
        }))
        // A batch a second from every device: its successes are logged at debug only.
        .route_layer(axum::middleware::map_response(observability::routine))
}

/// The bytes a request's body is counted as while it is worked on: its `Content-Length`,
/// and the largest batch when it has none (a chunked body) or declares more (it is refused
/// with `413` once read that far).
fn body_charge(headers: &HeaderMap) -> u32 {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let largest = MAX_BATCH_BYTES as u64;
    // At most 1 MiB, so it fits.
    declared
        .map_or(largest, |length| length.min(largest))
        .max(1) as u32
}

/// Answers `503` at once, before the body is read, when the process already works on as
/// many batches, or as many bytes of them, as it may: past that point every extra request
/// only lengthens the wait of all of them, and holds its body in memory, until the broker's
/// answers time out.
async fn shed_load(
    in_flight: InFlight,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(_admitted) = in_flight.admit(body_charge(request.headers())) else {
        in_flight.metrics.ingest_shed.inc();
        return ApiError::new(
            ErrorCode::Unavailable,
            "telemetry ingest is at capacity; keep the batch and retry after Retry-After",
        )
        .retry_after(1)
        .into_response();
    };
    next.run(request).await
}

/// What was accepted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// Samples in the batch.
    pub accepted: usize,
    /// The batch had been accepted before, within the dedup window (a retry); it is stored
    /// once.
    pub duplicate: bool,
}

fn device_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "a device credential is required (Authorization: Bearer sdv_...)",
            )
        })
}

/// The batch in `body`.
fn parse(headers: &HeaderMap, body: &[u8]) -> Result<SampleBatch, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/x-protobuf")
        || content_type.starts_with("application/protobuf")
    {
        return crate::wire::decode(body).map_err(|error| match error {
            WireError::TooManySamples(_) => ApiError::validation(error.to_string()),
            _ => ApiError::validation(format!("invalid protobuf batch: {error}")),
        });
    }
    if content_type.starts_with("application/json") {
        let json: JsonBatch = serde_json::from_slice(body)
            .map_err(|error| ApiError::validation(format!("invalid JSON batch: {error}")))?;
        return json
            .into_proto()
            .map_err(|error| ApiError::validation(error.to_string()));
    }
    Err(ApiError::new(
        ErrorCode::UnsupportedMediaType,
        "send application/json or application/x-protobuf",
    ))
}

/// `429` when the device has sent more than `STRIDE_DEVICE_BATCHES_PER_SECOND` batches in
/// this second (counted in the process; see [`crate::rate`]).
fn check_rate(telemetry: &Telemetry, device_id: uuid::Uuid) -> Result<(), ApiError> {
    if telemetry
        .rates
        .admit(device_id, chrono::Utc::now().timestamp())
    {
        return Ok(());
    }
    Err(ApiError::too_many_requests(
        "this device sends batches too fast; send larger batches less often",
        1,
    ))
}

/// Seconds a device waits before sending again to a full buffer: it drains at InfluxDB's pace.
const FULL_RETRY_AFTER_SECONDS: u64 = 30;

/// The answer when the broker did not store a batch: `503` either way, and a full buffer
/// (`STRIDE_TELEMETRY_BUFFER_MAX_BYTES`) says so.
fn not_stored(error: async_nats::jetstream::context::PublishError) -> ApiError {
    let full = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<async_nats::jetstream::Error>())
        .is_some_and(|refusal| refusal.to_string().contains("maximum bytes exceeded"));
    if full {
        // Every batch is refused while it is full: say so once every 10 s, not each time.
        static WARNED_AT: AtomicI64 = AtomicI64::new(0);
        let now = chrono::Utc::now().timestamp();
        let last = WARNED_AT.load(Ordering::Relaxed);
        if now - last >= 10
            && WARNED_AT
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!("the telemetry buffer is full; refusing batches until it drains");
        }
        return ApiError::new(
            ErrorCode::Unavailable,
            "the telemetry buffer is full while the sample store catches up; keep the batch \
             and retry after Retry-After",
        )
        .retry_after(FULL_RETRY_AFTER_SECONDS);
    }
    ApiError::unavailable(error, 2)
}

/// Accepts a batch of samples from a device, for an active or paused workout of its owner.
/// `202` means the batch is durably stored; a retry with the same `seq` within the dedup
/// window (`STRIDE_TELEMETRY_DEDUP_WINDOW_SECONDS`, 10 minutes by default) is answered
/// `duplicate: true` and stored once, and a later one rewrites the same points.
#[utoipa::path(
    post,
    path = "/v1/telemetry/batches",
    tag = "telemetry",
    security(("bearer" = [])),
    request_body(content = JsonBatch, description = "JSON, or application/x-protobuf (stride.telemetry.v1.SampleBatch); at most 3,600 samples and 1 MiB"),
    responses(
        (status = 202, description = "Stored in the durable buffer", body = Accepted),
        (status = 400, description = "Which sample is invalid and why; nothing was kept", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown or revoked device credential", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such activity of the device's owner", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The activity is not active or paused", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The device sent more than `STRIDE_DEVICE_BATCHES_PER_SECOND` batches this second; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The buffer is unavailable or full (`STRIDE_TELEMETRY_BUFFER_MAX_BYTES`), or this process already works on `STRIDE_INGEST_MAX_IN_FLIGHT` batches or `STRIDE_INGEST_MAX_IN_FLIGHT_BYTES` bytes of them; keep the batch and retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn ingest(
    State(telemetry): State<Telemetry>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let device = telemetry
        .devices
        .authenticate(device_token(&headers)?)
        .await?;
    if body.len() > MAX_BATCH_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            "a batch is limited to 1 MiB",
        ));
    }
    let batch = parse(&headers, &body)?;
    let activity_id = validate(&batch, chrono::Utc::now().timestamp_millis())
        .map_err(|error| ApiError::validation(error.to_string()))?;
    check_rate(&telemetry, device.device_id)?;
    let device_id = device.device_id.to_string();
    let activity = telemetry
        .activities
        .get(activity_id)
        .await?
        .filter(|activity| activity.owner_id == device.user_id.to_string())
        .ok_or_else(|| ApiError::not_found("no such activity of this device's owner"))?;
    if !matches!(activity.status.as_str(), "active" | "paused") {
        return Err(ApiError::conflict(format!(
            "the activity is {}; samples are accepted while it is active or paused",
            activity.status
        )));
    }
    let count = batch.samples.len();
    let user_id = device.user_id.to_string();
    let (headers, payload) = buffer::message(&user_id, &device_id, &batch);
    let publishing = std::time::Instant::now();
    let ack = telemetry
        .broker
        .jetstream
        .publish_with_headers(telemetry.batch_subject(&user_id), headers, payload.clone())
        .await
        .map_err(|error| ApiError::unavailable(error, 2))?
        .await
        .map_err(not_stored)?;
    telemetry
        .metrics
        .buffer_store_seconds
        .observe(publishing.elapsed().as_secs_f64());
    if !ack.duplicate {
        telemetry.metrics.samples_accepted.inc_by(count as u64);
        telemetry.live.send(LiveBatch {
            last: batch
                .samples
                .last()
                .map(|sample| sample_json(sample).to_string()),
            activity_id: batch.activity_id,
            user_id,
            device_id,
            payload,
        });
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: count,
            duplicate: ack.duplicate,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_length(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_LENGTH,
            value.parse().expect("a header value"),
        );
        headers
    }

    #[test]
    fn a_body_counts_as_its_declared_length_up_to_the_largest_batch() {
        assert_eq!(body_charge(&with_length("72000")), 72_000);
        assert_eq!(body_charge(&with_length("1048576")), 1_048_576);
        assert_eq!(
            body_charge(&with_length("0")),
            1,
            "an empty body still counts"
        );
        for larger in ["1048577", "99999999999999999999"] {
            assert_eq!(body_charge(&with_length(larger)), 1_048_576, "{larger}");
        }
        for unknown in [HeaderMap::new(), with_length("-5"), with_length("lots")] {
            assert_eq!(body_charge(&unknown), 1_048_576, "{unknown:?}");
        }
    }
}
