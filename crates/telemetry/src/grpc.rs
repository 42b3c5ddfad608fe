//! gRPC `Streams`: summaries of stored samples (training asks at finish), and imports of the
//! samples of uploaded files.

use chrono::{DateTime, TimeZone, Utc};
use stride_formats::{Activity, Athlete, Format, Sport, analyze};
use stride_proto::telemetry::v1::{
    ImportRequest, ImportResponse, Sample, StoredBatch, SummarizeRequest, SummarizeResponse,
    streams_server::{Streams, StreamsServer},
};
use tonic::{Request, Response, Status};

use crate::{
    Telemetry,
    influx::{Row, write_lines},
};

/// Lines per InfluxDB write when importing.
const IMPORT_CHUNK: usize = 5_000;

/// Most samples one import may carry.
const MAX_IMPORT_SAMPLES: usize = 500_000;

/// The gRPC routes of telemetry.
pub fn routes(telemetry: Telemetry) -> axum::Router {
    stride_platform::service::grpc_router(
        StreamsServer::new(telemetry)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(16 * 1024 * 1024),
    )
}

/// The series tag that holds an activity's samples: the recording device for live
/// workouts, a per-activity tag for imported ones, none (all the owner's devices) otherwise.
pub fn device_tag(source: &str, device_id: &str, activity_id: &str) -> Option<String> {
    if source == "upload" {
        Some(format!("import-{activity_id}"))
    } else if !device_id.is_empty() {
        Some(device_id.to_owned())
    } else {
        None
    }
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn to_formats(row: &Row) -> stride_formats::Sample {
    let [
        lat,
        lon,
        altitude_m,
        heart_rate,
        cadence,
        power_w,
        speed_mps,
        distance_m,
        temperature_c,
    ] = row.values;
    stride_formats::Sample {
        time: time(row.time_ms),
        lat,
        lon,
        altitude_m,
        heart_rate,
        cadence,
        power_w,
        speed_mps,
        distance_m,
        temperature_c,
    }
}

/// Keeps only values within the ingest ranges; a file's zero heart rate means "no reading".
fn sanitise(sample: &Sample) -> Option<Sample> {
    let keep = |value: Option<f64>, low: f64, high: f64| {
        value.filter(|v| v.is_finite() && (low..=high).contains(v))
    };
    let (lat, lon) = match (
        keep(sample.lat, -90.0, 90.0),
        keep(sample.lon, -180.0, 180.0),
    ) {
        (Some(lat), Some(lon)) => (Some(lat), Some(lon)),
        _ => (None, None),
    };
    let cleaned = Sample {
        time_ms: sample.time_ms,
        lat,
        lon,
        altitude_m: keep(sample.altitude_m, -500.0, 9000.0),
        heart_rate: keep(sample.heart_rate, 20.0, 250.0),
        cadence: keep(sample.cadence, 0.0, 300.0),
        power_w: keep(sample.power_w, 0.0, 3000.0),
        speed_mps: keep(sample.speed_mps, 0.0, 100.0),
        distance_m: keep(sample.distance_m, 0.0, 10_000_000.0),
        temperature_c: keep(sample.temperature_c, -60.0, 70.0),
    };
    let has_value = [
        cleaned.lat,
        cleaned.altitude_m,
        cleaned.heart_rate,
        cleaned.cadence,
        cleaned.power_w,
        cleaned.speed_mps,
        cleaned.distance_m,
        cleaned.temperature_c,
    ]
    .iter()
    .any(Option::is_some);
    has_value.then_some(cleaned)
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// How long a summary waits for the writer to store batches accepted before it was asked.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Telemetry {
    /// Waits (bounded) until the writer has stored every batch of `user_id` that the buffer
    /// accepted so far, so a summary asked right after the last 202 includes that batch.
    async fn wait_for_writer(&self, user_id: &str) {
        let Ok(stream) = self
            .broker
            .jetstream
            .get_stream(crate::stream_name(&self.config))
            .await
        else {
            return;
        };
        let Ok(last) = stream
            .get_last_raw_message_by_subject(&self.batch_subject(user_id))
            .await
        else {
            return; // nothing was ever accepted for this user
        };
        let Ok(mut writer) = stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(crate::writer::DURABLE)
            .await
        else {
            return;
        };
        let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
        while tokio::time::Instant::now() < deadline {
            match writer.info().await {
                Ok(info) if info.ack_floor.stream_sequence >= last.sequence => return,
                Ok(_) => {}
                Err(_) => return,
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tracing::warn!(%user_id, "summarising before the writer caught up");
    }
}

#[tonic::async_trait]
impl Streams for Telemetry {
    async fn summarize(
        &self,
        request: Request<SummarizeRequest>,
    ) -> Result<Response<SummarizeResponse>, Status> {
        let request = request.into_inner();
        if request.source == "live" {
            self.wait_for_writer(&request.owner_id).await;
        }
        let tag = device_tag(&request.source, &request.device_id, &request.activity_id);
        let rows = self
            .influx
            .samples(
                &request.owner_id,
                tag.as_deref(),
                request.start_time_ms,
                request.end_time_ms,
            )
            .await
            .map_err(|error| {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot read samples to summarise"
                );
                Status::unavailable("the sample store is unavailable")
            })?;
        if rows.is_empty() {
            return Ok(Response::new(SummarizeResponse {
                sample_count: 0,
                summary_json: String::new(),
                splits_json: "[]".into(),
                best_efforts_json: "[]".into(),
            }));
        }
        let samples: Vec<stride_formats::Sample> = rows.iter().map(to_formats).collect();
        let activity = Activity {
            format: Format::Fit,
            sport: Sport::from_name(&request.sport),
            sport_name: Some(request.sport.clone()),
            start_time: time(request.start_time_ms),
            samples,
            segment_starts: Vec::new(),
            laps: Vec::new(),
            legs: Vec::new(),
            totals: Default::default(),
            source: Default::default(),
        };
        let athlete = Athlete {
            max_heart_rate: request.max_heart_rate,
            resting_heart_rate: request.resting_heart_rate,
            weight_kg: request.weight_kg,
            ..Athlete::default()
        };
        let analysis = tokio::task::spawn_blocking(move || analyze(&activity, &athlete))
            .await
            .map_err(|_| Status::internal("summarising failed"))?;
        Ok(Response::new(SummarizeResponse {
            sample_count: rows.len() as u64,
            summary_json: json(&analysis.summary),
            splits_json: json(&analysis.splits),
            best_efforts_json: json(&analysis.best_efforts),
        }))
    }

    async fn import(
        &self,
        request: Request<ImportRequest>,
    ) -> Result<Response<ImportResponse>, Status> {
        let request = request.into_inner();
        if request.samples.len() > MAX_IMPORT_SAMPLES {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_IMPORT_SAMPLES} samples per import"
            )));
        }
        let tag = format!("import-{}", request.activity_id);
        let samples: Vec<Sample> = request.samples.iter().filter_map(sanitise).collect();
        let stored = samples.len() as u64;
        for chunk in samples.chunks(IMPORT_CHUNK) {
            let batch = StoredBatch {
                user_id: request.owner_id.clone(),
                device_id: tag.clone(),
                activity_id: request.activity_id.clone(),
                seq: 0,
                samples: chunk.to_vec(),
            };
            let mut lines = String::new();
            write_lines(&batch, &mut lines);
            self.influx.write(lines).await.map_err(|error| {
                tracing::warn!(error = format!("{error:#}"), "import write failed");
                Status::unavailable("the sample store is unavailable")
            })?;
        }
        Ok(Response::new(ImportResponse { stored }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imported_values_outside_the_ranges_are_dropped_not_stored() {
        let sample = Sample {
            time_ms: 1,
            heart_rate: Some(0.0),
            power_w: Some(250.0),
            lat: Some(95.0),
            lon: Some(7.0),
            ..Sample::default()
        };
        let cleaned = sanitise(&sample).expect("power is kept");
        assert_eq!(cleaned.heart_rate, None);
        assert_eq!((cleaned.lat, cleaned.lon), (None, None));
        assert_eq!(cleaned.power_w, Some(250.0));
        assert!(
            sanitise(&Sample {
                time_ms: 1,
                heart_rate: Some(0.0),
                ..Sample::default()
            })
            .is_none()
        );
    }

    #[test]
    fn uploads_have_their_own_series() {
        assert_eq!(device_tag("upload", "", "a1").as_deref(), Some("import-a1"));
        assert_eq!(device_tag("live", "d1", "a1").as_deref(), Some("d1"));
        assert_eq!(device_tag("live", "", "a1"), None);
    }
}
