//! Sample batches as devices send them, and their validation: pure, no I/O.

use chrono::{DateTime, Utc};
use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, SeqAccess, Visitor},
};
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
    #[schema(value_type = Vec<JsonSample>)]
    pub samples: JsonSamples,
}

/// The samples of a JSON batch, read in one pass straight into their wire form.
///
/// At most [`MAX_SAMPLES`] are kept: the rest are only counted, so a 1 MiB body of tiny
/// samples (about 95,000 of `{"time":1}`) costs the samples a batch may hold, not tens of
/// megabytes, before it is refused. The first timestamp that cannot be read is kept as
/// the batch's error and the samples after it are only counted.
#[derive(Debug, Clone, Default)]
pub struct JsonSamples {
    samples: Vec<Sample>,
    /// Samples in the body, kept or not.
    count: usize,
    /// The first sample whose time could not be read.
    bad_time: Option<BatchError>,
}

impl<'de> Deserialize<'de> for JsonSamples {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Samples;
        impl<'de> Visitor<'de> for Samples {
            type Value = JsonSamples;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("an array of samples")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonSamples, A::Error> {
                let mut read = JsonSamples::default();
                while read.count < MAX_SAMPLES && read.bad_time.is_none() {
                    let Some(sample) = seq.next_element::<JsonSample>()? else {
                        return Ok(read);
                    };
                    match sample.into_proto() {
                        Ok(sample) => read.samples.push(sample),
                        Err(reason) => {
                            read.bad_time = Some(BatchError::Sample {
                                index: read.count,
                                reason,
                            });
                        }
                    }
                    read.count += 1;
                }
                // Past the limit, or past a bad time: only counted, never kept.
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    read.count += 1;
                }
                Ok(read)
            }
        }
        deserializer.deserialize_seq(Samples)
    }
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

impl JsonSample {
    /// The sample in its wire form, its timestamp parsed.
    fn into_proto(self) -> Result<Sample, String> {
        Ok(Sample {
            time_ms: parse_time(&self.time)?,
            lat: self.lat,
            lon: self.lon,
            altitude_m: self.altitude_m,
            heart_rate: self.heart_rate,
            cadence: self.cadence,
            power_w: self.power_w,
            speed_mps: self.speed_mps,
            distance_m: self.distance_m,
            temperature_c: self.temperature_c,
        })
    }
}

impl JsonBatch {
    /// The batch in its wire form; too many samples, or a timestamp that could not be
    /// read, refuse it.
    pub fn into_proto(self) -> Result<SampleBatch, BatchError> {
        let JsonSamples {
            samples,
            count,
            bad_time,
        } = self.samples;
        if count > MAX_SAMPLES {
            return Err(too_many(count));
        }
        if let Some(error) = bad_time {
            return Err(error);
        }
        Ok(SampleBatch {
            activity_id: self.activity_id.to_string(),
            seq: self.seq,
            samples,
        })
    }
}

fn too_many(count: usize) -> BatchError {
    BatchError::Batch(format!(
        "a batch holds at most {MAX_SAMPLES} samples, this one has {count}"
    ))
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
        return Err(too_many(batch.samples.len()));
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

    fn json_batch(samples: &str) -> JsonBatch {
        serde_json::from_str(&format!(
            r#"{{"activity_id":"{}","seq":1,"samples":[{samples}]}}"#,
            Uuid::nil()
        ))
        .expect("readable")
    }

    #[test]
    fn a_json_body_of_tiny_samples_keeps_no_more_than_a_batch_holds_and_says_how_many_it_had() {
        // About 1 MiB: the most a body may be, and 26 times the samples a batch may hold.
        let swollen = json_batch(&[r#"{"time":1}"#; 95_000].join(","));
        assert_eq!(swollen.samples.count, 95_000);
        assert!(swollen.samples.samples.len() <= MAX_SAMPLES);
        assert_eq!(
            swollen.into_proto().expect_err("too many").to_string(),
            "a batch holds at most 3600 samples, this one has 95000"
        );

        let full = json_batch(&[r#"{"time":1,"heart_rate":100}"#; MAX_SAMPLES].join(","));
        assert_eq!(full.into_proto().expect("read").samples.len(), MAX_SAMPLES);
    }

    #[test]
    fn the_first_unreadable_json_time_is_the_error_and_what_follows_is_only_counted() {
        let batch = json_batch(
            r#"{"time":1,"cadence":80},{"time":"yesterday","cadence":80},{"time":"soon"},{"time":2}"#,
        );
        assert_eq!(batch.samples.count, 4);
        assert_eq!(batch.samples.samples.len(), 1);
        assert_eq!(
            batch.into_proto().expect_err("refused").to_string(),
            r#"sample 1: time "yesterday" is neither RFC 3339 nor epoch milliseconds"#
        );
        // Too many is said first, as a protobuf body says it before reading a sample.
        let both = json_batch(&[r#"{"time":"never"}"#; MAX_SAMPLES + 1].join(","));
        assert_eq!(
            both.into_proto().expect_err("refused").to_string(),
            "a batch holds at most 3600 samples, this one has 3601"
        );
    }

    /// A JSON sample's time: epoch milliseconds, RFC 3339 text, or text that is neither.
    fn json_time() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            (0i64..2_000_000_000_000).prop_map(serde_json::Value::from),
            (0i64..2_000_000_000).prop_map(|secs| serde_json::Value::from(
                DateTime::from_timestamp(secs, 0)
                    .expect("in range")
                    .to_rfc3339()
            )),
            "[a-z0-9: -]{0,12}".prop_map(serde_json::Value::from),
        ]
    }

    proptest! {
        /// Read in one pass, a JSON batch is what reading every sample and then parsing
        /// each time gives: the same samples, or the first sample whose time is unreadable.
        #[test]
        fn json_samples_read_in_one_pass_match_reading_them_all_first(
            samples in proptest::collection::vec(
                (json_time(), proptest::option::of(20.0f64..250.0)),
                0..40,
            )
        ) {
            let samples: Vec<serde_json::Value> = samples
                .into_iter()
                .map(|(time, hr)| serde_json::json!({"time": time, "heart_rate": hr}))
                .collect();
            let body = serde_json::json!({"activity_id": Uuid::nil(), "seq": 3, "samples": samples});
            let expected: Result<Vec<Sample>, BatchError> =
                serde_json::from_value::<Vec<JsonSample>>(body["samples"].clone())
                    .expect("samples")
                    .into_iter()
                    .enumerate()
                    .map(|(index, sample)| {
                        sample.into_proto().map_err(|reason| BatchError::Sample { index, reason })
                    })
                    .collect();
            let read = serde_json::from_value::<JsonBatch>(body)
                .expect("readable")
                .into_proto()
                .map(|batch| batch.samples);
            prop_assert_eq!(read, expected);
        }

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
