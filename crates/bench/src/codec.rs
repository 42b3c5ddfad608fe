//! The CPU the ingest path spends on a batch's bytes, without a server: reading the device's
//! protobuf (prost's generated decoder, and [`stride_telemetry::wire`] that the server uses),
//! validating it, and laying it out in columns for the buffer. One thread, the load
//! generator's readings; each figure is the median of nine timed rounds.

use std::{fmt::Write as _, hint::black_box, time::Instant};

use prost::Message as _;
use serde::Serialize;
use stride_proto::telemetry::v1 as proto;
use stride_telemetry::{columns, samples, wire};

/// How long each round of a stage runs, at least.
const ROUND_SECONDS: f64 = 0.2;
/// Rounds of each stage; the median is reported.
const ROUNDS: usize = 9;

/// One stage's cost for one batch size.
#[derive(Debug, Serialize)]
pub struct Stage {
    pub stage: &'static str,
    pub samples: usize,
    /// Median over the rounds, microseconds a batch.
    pub micros_per_batch: f64,
    pub nanos_per_sample: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub protobuf_bytes_per_sample: f64,
    pub columns_bytes_per_sample: f64,
    pub stages: Vec<Stage>,
}

/// A batch of `count` of the load generator's readings, one a second.
fn batch(count: usize) -> proto::SampleBatch {
    let now_ms = chrono::Utc::now().timestamp_millis() - count as i64 * 1000;
    proto::SampleBatch {
        activity_id: uuid::Uuid::new_v4().to_string(),
        seq: 1,
        samples: (0..count as u64)
            .map(|index| proto::Sample {
                time_ms: now_ms + index as i64 * 1000,
                ..crate::telemetry::reading(3, index)
            })
            .collect(),
    }
}

/// One stage's work on the batch.
type Work<'a> = Box<dyn FnMut() + 'a>;

/// Microseconds per call of `work` in a round of at least [`ROUND_SECONDS`].
fn round(work: &mut dyn FnMut()) -> f64 {
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed().as_secs_f64() < ROUND_SECONDS {
        for _ in 0..16 {
            work();
        }
        calls += 16;
    }
    started.elapsed().as_secs_f64() * 1e6 / calls as f64
}

/// Times every stage for batches of 100 and 1,000 samples. The stages take turns, a round
/// each, so that a slower spell of the machine falls on all of them alike.
pub fn run() -> anyhow::Result<Report> {
    let mut stages = Vec::new();
    let mut sizes = (0.0, 0.0);
    for count in [100, 1000] {
        let batch = batch(count);
        let body = batch.encode_to_vec();
        anyhow::ensure!(wire::decode(&body)? == batch, "the decoders disagree");
        let now_ms = chrono::Utc::now().timestamp_millis();
        samples::validate(&batch, now_ms)?;
        sizes = (
            body.len() as f64 / count as f64,
            columns::encode(&batch).len() as f64 / count as f64,
        );
        let mut work: Vec<(&'static str, Work)> = vec![
            (
                "decode (prost's generated decoder)",
                Box::new(|| drop(black_box(proto::SampleBatch::decode(black_box(&body[..]))))),
            ),
            (
                "decode (wire, the server's)",
                Box::new(|| drop(black_box(wire::decode(black_box(&body))))),
            ),
            (
                "validate",
                Box::new(|| drop(black_box(samples::validate(black_box(&batch), now_ms)))),
            ),
            (
                "columns::encode",
                Box::new(|| drop(black_box(columns::encode(black_box(&batch))))),
            ),
            (
                "the three, as the server runs them",
                Box::new(|| {
                    let batch = wire::decode(black_box(&body)).expect("a batch");
                    samples::validate(&batch, now_ms).expect("valid");
                    black_box(columns::encode(&batch));
                }),
            ),
        ];
        let mut rounds = vec![Vec::with_capacity(ROUNDS); work.len()];
        for _ in 0..ROUNDS {
            for ((_, work), rounds) in work.iter_mut().zip(&mut rounds) {
                rounds.push(round(work));
            }
        }
        for ((stage, _), mut rounds) in work.into_iter().zip(rounds) {
            rounds.sort_by(f64::total_cmp);
            let micros_per_batch = rounds[ROUNDS / 2];
            stages.push(Stage {
                stage,
                samples: count,
                micros_per_batch,
                nanos_per_sample: micros_per_batch * 1000.0 / count as f64,
            });
        }
    }
    Ok(Report {
        scenario: "codec",
        protobuf_bytes_per_sample: sizes.0,
        columns_bytes_per_sample: sizes.1,
        stages,
    })
}

/// The report for people.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ingest codec, one thread ({:.1} protobuf bytes a sample, {:.1} in columns):",
        report.protobuf_bytes_per_sample, report.columns_bytes_per_sample
    );
    for stage in &report.stages {
        let _ = writeln!(
            out,
            "  {:>5} samples  {:<36} {:>9.1} µs a batch  {:>6.1} ns a sample",
            stage.samples, stage.stage, stage.micros_per_batch, stage.nanos_per_sample
        );
    }
    out
}
