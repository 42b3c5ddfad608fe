//! Sample batches as devices send them, and their validation: pure, no I/O.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use stride_proto::telemetry::v1::{Sample, SampleBatch};
use uuid::Uuid;

/// Most samples in one batch.
pub const MAX_SAMPLES: usize = 3600;
/// Largest batch body.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// A timestamp as JSON: RFC 3339 text or Unix epoch milliseconds.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum JsonTime {
    /// Unix epoch milliseconds.
    EpochMillis(i64),
    /// RFC 3339.
    Text(String),
}

/// One sample as JSON.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonSample {
    /// When it was taken.
    pub time: JsonTime,
    /// Degrees, -90 to 90 (with `lon`).
    pub lat: Option<f64>,
    /// Degrees, -180 to 180 (with `lat`).
    pub lon: Option<f64>,
    /// Metres above sea level.
    pub altitude_m: Option<f64>,
    /// Beats per minute, 20 to 250.
    pub heart_rate: Option<f64>,
    /// Revolutions or steps per minute, 0 to 300.
    pub cadence: Option<f64>,
    /// Watts, 0 to 3000.
    pub power_w: Option<f64>,
    /// Metres per second, 0 to 100.
    pub speed_mps: Option<f64>,
    /// Metres since the start, as the device counts them.
    pub distance_m: Option<f64>,
    /// Degrees Celsius, -60 to 70.
    pub temperature_c: Option<f64>,
}

/// A batch as JSON.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonBatch {
    /// The active or paused workout the samples belong to.
    pub activity_id: Uuid,
    /// Per-device sequence number; a retried batch keeps its number.
    pub seq: u64,
    /// 1 to 3600 samples, in time order.
    pub samples: Vec<JsonSample>,
}

/// Why a batch was refused: which sample, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    /// The batch as a whole.
    #[error("{0}")]
    Batch(String),
    /// One sample.
    #[error("sample {index}: {reason}")]
    Sample {
        /// Zero-based position in `samples`.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

fn parse_time(time: &JsonTime) -> Result<i64, String> {
    match time {
        JsonTime::EpochMillis(millis) => Ok(*millis),
        JsonTime::Text(text) => DateTime::parse_from_rfc3339(text)
            .map(|at| at.with_timezone(&Utc).timestamp_millis())
            .map_err(|_| format!("time {text:?} is neither RFC 3339 nor epoch milliseconds")),
    }
}

impl JsonBatch {
    /// The batch in its wire form, with every timestamp parsed.
    pub fn into_proto(self) -> Result<SampleBatch, BatchError> {
        let samples = self
            .samples
            .into_iter()
            .enumerate()
            .map(|(index, sample)| {
                Ok(Sample {
                    time_ms: parse_time(&sample.time)
                        .map_err(|reason| BatchError::Sample { index, reason })?,
                    lat: sample.lat,
                    lon: sample.lon,
                    altitude_m: sample.altitude_m,
                    heart_rate: sample.heart_rate,
                    cadence: sample.cadence,
                    power_w: sample.power_w,
                    speed_mps: sample.speed_mps,
                    distance_m: sample.distance_m,
                    temperature_c: sample.temperature_c,
                })
            })
            .collect::<Result<_, BatchError>>()?;
        Ok(SampleBatch {
            activity_id: self.activity_id.to_string(),
            seq: self.seq,
            samples,
        })
    }
}

/// A sample's optional values in the proto's order: `lat`, `lon`, `altitude_m`,
/// `heart_rate`, `cadence`, `power_w`, `speed_mps`, `distance_m`, `temperature_c`.
pub fn values(sample: &Sample) -> [Option<f64>; 9] {
    [
        sample.lat,
        sample.lon,
        sample.altitude_m,
        sample.heart_rate,
        sample.cadence,
        sample.power_w,
        sample.speed_mps,
        sample.distance_m,
        sample.temperature_c,
    ]
}

/// Earliest accepted sample time (2000-01-01).
const EARLIEST_MS: i64 = 946_684_800_000;

fn check_range(name: &str, value: Option<f64>, low: f64, high: f64) -> Result<(), String> {
    match value {
        Some(value) if !value.is_finite() => Err(format!("{name} is not a number")),
        Some(value) if !(low..=high).contains(&value) => {
            Err(format!("{name} {value} is outside {low} to {high}"))
        }
        _ => Ok(()),
    }
}

fn check_sample(sample: &Sample, now_ms: i64) -> Result<(), String> {
    if sample.time_ms < EARLIEST_MS || sample.time_ms > now_ms + 86_400_000 {
        return Err("time is before 2000 or more than a day in the future".into());
    }
    if sample.lat.is_some() != sample.lon.is_some() {
        return Err("lat and lon come together".into());
    }
    check_range("lat", sample.lat, -90.0, 90.0)?;
    check_range("lon", sample.lon, -180.0, 180.0)?;
    check_range("altitude_m", sample.altitude_m, -500.0, 9000.0)?;
    check_range("heart_rate", sample.heart_rate, 20.0, 250.0)?;
    check_range("cadence", sample.cadence, 0.0, 300.0)?;
    check_range("power_w", sample.power_w, 0.0, 3000.0)?;
    check_range("speed_mps", sample.speed_mps, 0.0, 100.0)?;
    check_range("distance_m", sample.distance_m, 0.0, 10_000_000.0)?;
    check_range("temperature_c", sample.temperature_c, -60.0, 70.0)?;
    if values(sample).iter().all(Option::is_none) {
        return Err("a sample needs at least one value besides its time".into());
    }
    Ok(())
}

/// Checks a whole batch: size, time order, physical ranges. The first problem is reported.
pub fn validate(batch: &SampleBatch, now_ms: i64) -> Result<Uuid, BatchError> {
    let activity_id = Uuid::parse_str(&batch.activity_id)
        .map_err(|_| BatchError::Batch("activity_id must be a UUID".into()))?;
    if batch.samples.is_empty() {
        return Err(BatchError::Batch(
            "a batch needs at least one sample".into(),
        ));
    }
    if batch.samples.len() > MAX_SAMPLES {
        return Err(BatchError::Batch(format!(
            "a batch holds at most {MAX_SAMPLES} samples, this one has {}",
            batch.samples.len()
        )));
    }
    let mut previous = i64::MIN;
    for (index, sample) in batch.samples.iter().enumerate() {
        check_sample(sample, now_ms).map_err(|reason| BatchError::Sample { index, reason })?;
        if sample.time_ms < previous {
            return Err(BatchError::Sample {
                index,
                reason: "time goes backwards; samples must be in time order".into(),
            });
        }
        previous = sample.time_ms;
    }
    Ok(activity_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_795_000_000_000;

    fn sample(time_ms: i64) -> Sample {
        Sample {
            time_ms,
            heart_rate: Some(140.0),
            ..Sample::default()
        }
    }

    fn batch(samples: Vec<Sample>) -> SampleBatch {
        SampleBatch {
            activity_id: Uuid::nil().to_string(),
            seq: 1,
            samples,
        }
    }

    #[test]
    fn a_sane_batch_passes() {
        let samples = (0..3600)
            .map(|i| sample(NOW - 3_600_000 + i * 1000))
            .collect();
        assert!(validate(&batch(samples), NOW).is_ok());
    }

    #[test]
    fn problems_name_the_sample_and_the_reason() {
        let mut samples: Vec<Sample> = (0..5).map(|i| sample(NOW - 10_000 + i * 1000)).collect();
        samples[3].heart_rate = Some(400.0);
        let error = validate(&batch(samples), NOW).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "sample 3: heart_rate 400 is outside 20 to 250"
        );

        let mut samples: Vec<Sample> = (0..5).map(|i| sample(NOW - 10_000 + i * 1000)).collect();
        samples[2].time_ms = NOW - 20_000;
        assert!(matches!(
            validate(&batch(samples), NOW),
            Err(BatchError::Sample { index: 2, .. })
        ));

        let mut lonely = sample(NOW);
        lonely.lat = Some(45.0);
        assert!(validate(&batch(vec![lonely]), NOW).is_err());
        assert!(validate(&batch(vec![]), NOW).is_err());
        let too_many = (0..3601).map(|i| sample(NOW - 4_000_000 + i)).collect();
        assert!(validate(&batch(too_many), NOW).is_err());
        let empty = Sample {
            time_ms: NOW,
            ..Sample::default()
        };
        assert!(validate(&batch(vec![empty]), NOW).is_err());
    }

    #[test]
    fn json_times_may_be_text_or_epoch_millis() {
        let json = serde_json::json!({
            "activity_id": Uuid::nil(),
            "seq": 7,
            "samples": [
                {"time": "2026-11-25T10:00:00Z", "heart_rate": 120},
                {"time": 1_795_000_000_000_i64, "power_w": 200}
            ]
        });
        let batch: JsonBatch = serde_json::from_value(json).expect("readable");
        let proto = batch.into_proto().expect("parsed");
        assert_eq!(proto.samples[0].time_ms, 1_795_600_800_000);
        assert_eq!(proto.samples[1].time_ms, 1_795_000_000_000);
    }

    proptest! {
        #[test]
        fn validation_never_panics_and_accepts_only_ordered_in_range_samples(
            values in proptest::collection::vec((0i64..10_000, proptest::option::of(-500.0f64..500.0)), 1..50)
        ) {
            let samples: Vec<Sample> = values
                .iter()
                .map(|(offset, hr)| Sample { time_ms: NOW - 100_000 + offset, heart_rate: *hr, ..Sample::default() })
                .collect();
            let ordered = samples.windows(2).all(|pair| pair[0].time_ms <= pair[1].time_ms);
            let in_range = samples.iter().all(|s| s.heart_rate.is_some_and(|hr| (20.0..=250.0).contains(&hr)));
            prop_assert_eq!(validate(&batch(samples), NOW).is_ok(), ordered && in_range);
        }
    }
}
