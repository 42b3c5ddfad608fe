//! The telemetry service's own metrics, served with the platform's at `/metrics`.
//!
//! They answer an operator's two questions about the pipeline:
//! - how long devices wait: `stride_telemetry_buffer_store_seconds`, the time from handing a
//!   batch to JetStream to its ack, which is most of a `202`'s latency and nearly all of its
//!   tail (decoding, validating and the cached checks take well under a millisecond);
//! - whether InfluxDB keeps up: `stride_telemetry_samples_accepted_total` against
//!   `stride_telemetry_samples_written_total`, summed over the replicas, and
//!   `stride_telemetry_influx_write_failures_total` when it does not;
//! - whether the writers are stopped for heavy ingest: `stride_telemetry_writers_yielding`;
//!
//! and how close a process is to its ingest limits: `stride_telemetry_ingest_in_flight_bytes`
//! (against `STRIDE_INGEST_MAX_IN_FLIGHT_BYTES`) and `stride_telemetry_ingest_shed_total`,
//! the batches answered `503` because the process was at capacity.

use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};
use stride_platform::observability::Metrics;

/// The telemetry metrics of one process. Cheap to clone (shared counters).
#[derive(Debug, Clone)]
pub struct TelemetryMetrics {
    /// Samples in batches the broker stored (not counting duplicates).
    pub(crate) samples_accepted: Counter,
    /// Seconds from publishing a batch to the broker's ack.
    pub(crate) buffer_store_seconds: Histogram,
    /// Samples the writers wrote to InfluxDB (a redelivered batch counts again).
    pub(crate) samples_written: Counter,
    /// InfluxDB writes that failed and were retried.
    pub(crate) influx_write_failures: Counter,
    /// Bytes of batch bodies this process works on now, as ingest counts them.
    pub(crate) ingest_in_flight_bytes: Gauge,
    /// Batches answered `503` at once because the process was at its in-flight limits.
    pub(crate) ingest_shed: Counter,
    /// This process's writers stopped now because ingest is heavy.
    pub(crate) writers_yielding: Gauge,
}

impl Default for TelemetryMetrics {
    fn default() -> Self {
        Self {
            samples_accepted: Counter::default(),
            // Finer than the HTTP histogram's buckets at the low end, where a healthy broker
            // answers, so a p99 can be read against the 20 ms the ingest path aims at.
            buffer_store_seconds: Histogram::new([
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0,
            ]),
            samples_written: Counter::default(),
            influx_write_failures: Counter::default(),
            ingest_in_flight_bytes: Gauge::default(),
            ingest_shed: Counter::default(),
            writers_yielding: Gauge::default(),
        }
    }
}

impl TelemetryMetrics {
    /// New metrics, registered in the process's registry.
    pub fn registered(metrics: &Metrics) -> Self {
        let own = Self::default();
        metrics.register(
            "telemetry_samples_accepted",
            "Samples in batches the telemetry buffer stored (duplicates not counted)",
            own.samples_accepted.clone(),
        );
        metrics.register(
            "telemetry_buffer_store_seconds",
            "Time from publishing a telemetry batch to the broker's ack",
            own.buffer_store_seconds.clone(),
        );
        metrics.register(
            "telemetry_samples_written",
            "Samples the telemetry writers wrote to InfluxDB (a redelivered batch counts again)",
            own.samples_written.clone(),
        );
        metrics.register(
            "telemetry_influx_write_failures",
            "InfluxDB writes of telemetry that failed and were retried",
            own.influx_write_failures.clone(),
        );
        metrics.register(
            "telemetry_ingest_in_flight_bytes",
            "Bytes of telemetry batch bodies this process works on now (limit: \
             STRIDE_INGEST_MAX_IN_FLIGHT_BYTES)",
            own.ingest_in_flight_bytes.clone(),
        );
        metrics.register(
            "telemetry_ingest_shed",
            "Telemetry batches answered 503 because the process was at its in-flight limits",
            own.ingest_shed.clone(),
        );
        metrics.register(
            "telemetry_writers_yielding",
            "Telemetry writers of this process stopped now because ingest across the \
             replicas is above STRIDE_TELEMETRY_DRAIN_YIELD_ABOVE",
            own.writers_yielding.clone(),
        );
        own
    }
}
