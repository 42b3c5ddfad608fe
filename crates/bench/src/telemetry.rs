//! The telemetry issue's "Measure" scenario, in one run against one server:
//!
//! 1. durable accept: many devices post batches back to back (closed loop) for a while, in
//!    JSON and protobuf, 100 and 1,000 samples a batch; samples answered `202` per second. After
//!    each, the run waits until InfluxDB holds every accepted sample, so one phase's backlog does
//!    not slow the next;
//! 2. end to end: protobuf 1,000-sample batches at full speed for a while; accepted samples ÷
//!    the time from the first batch until InfluxDB counts all of them. Next to it, InfluxDB's
//!    own rate for the same number of equal points written by one client straight to `/write`,
//!    1,000 lines a write (and the writer's own write size), into a separate database, once
//!    the end-to-end phase has drained and before phase 3, so that nothing else writes to
//!    InfluxDB meanwhile;
//! 3. ingest latency at half the protobuf 1,000-sample accept rate, open loop (latency from
//!    when a batch was due; each batch is built before it is due, as a device has it ready).
//!    The loop starts with `--latency-warm-up-secs` (2) at the same rate that are reported
//!    apart and not counted: after the drain that ends phase 2 the server has idled for
//!    minutes, its caches have expired and its database pools have closed their idle
//!    connections, and that cold start is not the steady state the figure is about;
//! 4. during 3, a probe device posts a 10-sample batch every 100 ms while a viewer follows its
//!    workout on `GET /v1/activities/{id}/live`: the delay from each batch's `202` to its first
//!    sample arriving as an SSE `sample` event;
//! 5. the server's resident memory, sampled during the load phases, and its peak;
//! 6. bytes on disk per sample: InfluxDB's files for the run's database (TSM and WAL) ÷ the
//!    samples it holds, when the data folder is given.
//!
//! Nothing is asserted: the figures are written down, not judged here.

use std::{
    collections::HashMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use prost::Message as _;
use reqwest::{Client, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use stride_proto::telemetry::v1 as proto;

use crate::{
    api::{self, Account},
    procfs::{self, CpuSnapshot, CpuUsage, Memory},
    stats::{self, LatencySummary},
};

/// The InfluxDB measurement and fields the telemetry writer uses (`stride_telemetry::influx`).
const MEASUREMENT: &str = "samples";

/// Options of `stride-bench telemetry`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Base URL of the server's HTTP port.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// InfluxDB (v1 HTTP API) the server writes to.
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    pub influx_url: String,
    /// The server's InfluxDB database (`STRIDE_INFLUX_DATABASE`).
    #[arg(long, default_value = "stride")]
    pub influx_database: String,
    /// InfluxDB's data folder (`[data] dir`), to measure bytes on disk; its WAL folder is
    /// taken as `../wal` unless given.
    #[arg(long)]
    pub influx_data_dir: Option<PathBuf>,
    /// InfluxDB's WAL folder (`[data] wal-dir`).
    #[arg(long)]
    pub influx_wal_dir: Option<PathBuf>,
    /// Devices posting at once (each its own account, device and active workout).
    #[arg(long, default_value_t = 32)]
    pub devices: usize,
    /// Length of each durable-accept phase, seconds.
    #[arg(long, default_value_t = 5)]
    pub accept_secs: u64,
    /// Length of the end-to-end phase, seconds.
    #[arg(long, default_value_t = 10)]
    pub end_to_end_secs: u64,
    /// Length of the half-rate latency phase, seconds.
    #[arg(long, default_value_t = 10)]
    pub latency_secs: u64,
    /// Seconds at the half rate before the measured window of phase 3, in the same open
    /// loop and not counted in its figures (reported apart): the caches, connection pools
    /// and the writer start from idle after the drain that ends phase 2.
    #[arg(long, default_value_t = 2)]
    pub latency_warm_up_secs: u64,
    /// Longest wait, seconds, before phase 3 for the machine to go quiet: under 0.1 of a
    /// core busy in each of 3 seconds in a row. What earlier phases leave behind (InfluxDB
    /// compacting the direct rounds' points, the kernel writing back the broker's files)
    /// would otherwise share the cores with phase 3. The wait is reported; 0 does not wait.
    #[arg(long, default_value_t = 300)]
    pub settle_max_secs: u64,
    /// Lines per direct InfluxDB write (comma-separated).
    #[arg(long, default_value = "1000,20000", value_delimiter = ',')]
    pub direct_batch_lines: Vec<usize>,
    /// Longest wait for InfluxDB to hold every accepted sample, seconds.
    #[arg(long, default_value_t = 300)]
    pub drain_timeout_secs: u64,
    /// Pid of the `stride serve` process, for its memory and CPU use (Linux).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Run only the latency phase (3) with the live probe (4), at this many samples/s,
    /// instead of the whole run: for comparing settings of the request path quickly.
    #[arg(long)]
    pub latency_only_at: Option<f64>,
    /// With `--latency-only-at`: first load the server for this many seconds as the
    /// end-to-end phase does (closed loop, protobuf, 1,000-sample batches), wait for the
    /// drain (bounded by `--drain-timeout-secs`), and only then run phase 3. For telling
    /// which state a whole run leaves behind (a full stream, a busy InfluxDB) slows phase 3.
    #[arg(long, default_value_t = 0, requires = "latency_only_at")]
    pub load_first_secs: u64,
    /// Write every measured request of phase 3 to this file, one line each: the Unix time
    /// in milliseconds it was due, its latency in milliseconds, and 1 if it was accepted
    /// (0 if not), and how late in milliseconds the client began sending it. For lining
    /// slow requests up with what else the machine did then.
    #[arg(long, value_name = "FILE")]
    pub latency_trace: Option<PathBuf>,
}

/// One closed-loop accept phase.
#[derive(Debug, Clone, Serialize)]
pub struct AcceptFigures {
    /// `json` or `protobuf`.
    pub encoding: &'static str,
    /// Samples per batch.
    pub batch_samples: usize,
    /// Samples answered `202` per second of the phase.
    pub samples_per_second: f64,
    /// Batches answered `202`.
    pub batches: u64,
    /// Other answers and transport errors.
    pub failed: u64,
    /// The first failure.
    pub first_failure: Option<String>,
    /// The last failure, when there was more than one: failures of two kinds show both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// Batch latency (send to `202`).
    pub latency: Option<LatencySummary>,
    /// Open loop only: the latency of the accepted batches due in each second of the phase
    /// (`None` for a second with none), so a stall at the start (cold caches) tells apart
    /// from a tail spread over the phase.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency_by_second: Vec<Option<LatencySummary>>,
    /// Open loop only: the latency of the batches of the warm-up before the measured
    /// window, at the same rate and not counted above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm_up_latency: Option<LatencySummary>,
    /// Seconds from the phase's end until InfluxDB held every sample it accepted.
    pub drained_after_secs: Option<f64>,
    /// Who used the CPU during the phase.
    pub cpu: Option<CpuUsage>,
}

/// Accepted to queryable.
#[derive(Debug, Clone, Serialize)]
pub struct EndToEndFigures {
    /// Samples accepted.
    pub samples: u64,
    /// Accept rate during the sending.
    pub accepted_per_second: f64,
    /// Seconds from the first batch until InfluxDB counted every accepted sample.
    pub queryable_after_secs: f64,
    /// `samples ÷ queryable_after_secs`.
    pub samples_per_second: f64,
    /// Who used the CPU from the first batch until all were queryable.
    pub cpu: Option<CpuUsage>,
}

/// One client writing line protocol straight to InfluxDB.
#[derive(Debug, Clone, Serialize)]
pub struct DirectFigures {
    /// Lines per write.
    pub batch_lines: usize,
    /// Points written.
    pub points: u64,
    /// Points per second.
    pub points_per_second: f64,
    /// Who used the CPU.
    pub cpu: Option<CpuUsage>,
}

/// The live view.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveFigures {
    /// Batches the probe had accepted.
    pub batches: u64,
    /// Batches whose first sample arrived on the stream.
    pub seen: u64,
    /// Of those, seen before the `202` reached the probe (counted as 0 ms below).
    pub seen_before_accepted: u64,
    /// From the batch's `202` to its first sample's SSE event.
    pub delay_from_accepted: Option<LatencySummary>,
    /// From sending the batch to its first sample's SSE event.
    pub delay_from_sent: Option<LatencySummary>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Bytes on disk.
#[derive(Debug, Clone, Serialize)]
pub struct DiskFigures {
    /// The database.
    pub database: String,
    /// Points InfluxDB counts in it (`count(hr)`).
    pub samples: u64,
    /// Files under `data/<database>` (TSM, index).
    pub data_bytes: u64,
    /// Files under `wal/<database>`.
    pub wal_bytes: u64,
    /// `data_bytes ÷ samples`.
    pub data_bytes_per_sample: f64,
    /// `(data_bytes + wal_bytes) ÷ samples`.
    pub total_bytes_per_sample: f64,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Always `telemetry`.
    pub scenario: &'static str,
    /// Server under test.
    pub base_url: String,
    /// Devices.
    pub devices: usize,
    /// (1) durable accept.
    pub accept: Vec<AcceptFigures>,
    /// (2) end to end.
    pub end_to_end: Option<EndToEndFigures>,
    /// (2) InfluxDB direct.
    pub direct: Vec<DirectFigures>,
    /// (3) the rate of the latency phase, samples per second.
    pub half_rate_samples_per_second: f64,
    /// (3) latency at half the rate, from when each batch was due.
    pub half_rate: Option<AcceptFigures>,
    /// Before (3): the wait for the machine to go quiet (none with `--settle-max-secs 0`).
    pub settled_before_half_rate: Option<procfs::Settled>,
    /// (4) the live view during (3).
    pub live: LiveFigures,
    /// (5) highest VmRSS seen while sampling during load, and VmHWM at the end.
    pub server_rss_max_kib: Option<u64>,
    /// (5) memory at the end.
    pub server_memory: Option<Memory>,
    /// (6) bytes on disk, the pipeline's database and the direct one.
    pub disk: Vec<DiskFigures>,
}

/// A device with an active workout and its own clock and batch counter.
struct Device {
    /// Its id, the `device_id` tag of its points.
    id: uuid::Uuid,
    token: String,
    activity_id: uuid::Uuid,
    seq: AtomicU64,
    /// Time of the next sample, epoch milliseconds: one sample a second, continuing across
    /// phases so no two samples of a device share a time.
    next_time_ms: AtomicU64,
    /// Time of its first sample: readings follow the seconds since.
    start_ms: u64,
    number: u64,
    /// Its readings for one [`TRACK_SECONDS`] loop, made once: computing six sines a
    /// sample while the load runs cost the load generator a tenth of a core that the
    /// server under test then lacked.
    track: Vec<proto::Sample>,
    /// Time of the latest sample of an accepted batch (0: none yet).
    last_accepted_ms: AtomicU64,
}

/// Seconds after which a device's readings repeat.
const TRACK_SECONDS: u64 = 3600;

/// A device's readings for each second of its [`TRACK_SECONDS`] loop.
fn track(number: u64) -> Vec<proto::Sample> {
    (0..TRACK_SECONDS)
        .map(|index| reading(number, index))
        .collect()
}

/// One second's reading of device `number` at sample `index`: plausible, gently changing
/// values (InfluxDB's compression depends on them). Devices loop over the first
/// [`TRACK_SECONDS`] of them.
pub(crate) fn reading(number: u64, index: u64) -> proto::Sample {
    let t = index as f64;
    let phase = number as f64 * 0.7;
    proto::Sample {
        time_ms: 0,
        lat: Some(46.0 + number as f64 * 0.01 + (t * 0.0007 + phase).sin() * 0.01),
        lon: Some(14.5 + (t * 0.0005 + phase).cos() * 0.01),
        altitude_m: Some(300.0 + ((t * 0.01).sin() * 40.0 * 10.0).round() / 10.0),
        heart_rate: Some((140.0 + (t * 0.02 + phase).sin() * 15.0).round()),
        cadence: Some((85.0 + (t * 0.05).sin() * 4.0).round()),
        power_w: None,
        speed_mps: Some(((3.2 + (t * 0.03 + phase).sin() * 0.4) * 100.0).round() / 100.0),
        // Wraps every 50,000 s (160 km), inside the accepted range however long the run.
        distance_m: Some(((t % 50_000.0) * 3.2 * 10.0).round() / 10.0),
        temperature_c: None,
    }
}

impl Device {
    /// The next batch of `count` samples: its content type, body and first sample time.
    /// Notes that the batch of `count` samples from `first_ms` was accepted.
    fn accepted(&self, first_ms: i64, count: usize) {
        let last = first_ms as u64 + (count as u64).saturating_sub(1) * 1000;
        self.last_accepted_ms.fetch_max(last, Ordering::Relaxed);
    }

    fn next_batch(&self, count: usize, protobuf: bool) -> (&'static str, Vec<u8>, i64) {
        let first = self
            .next_time_ms
            .fetch_add(count as u64 * 1000, Ordering::Relaxed);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let base_index = (first - self.start_ms) / 1000;
        let samples: Vec<proto::Sample> = (0..count as u64)
            .map(|k| proto::Sample {
                time_ms: (first + k * 1000) as i64,
                ..self.track[((base_index + k) % TRACK_SECONDS) as usize]
            })
            .collect();
        (
            content_type(protobuf),
            encode(self.activity_id, seq, samples, protobuf),
            first as i64,
        )
    }
}

fn content_type(protobuf: bool) -> &'static str {
    if protobuf {
        "application/x-protobuf"
    } else {
        "application/json"
    }
}

fn encode(
    activity_id: uuid::Uuid,
    seq: u64,
    samples: Vec<proto::Sample>,
    protobuf: bool,
) -> Vec<u8> {
    if protobuf {
        return proto::SampleBatch {
            activity_id: activity_id.to_string(),
            seq,
            samples,
        }
        .encode_to_vec();
    }
    let samples: Vec<serde_json::Value> = samples
        .iter()
        .map(|s| {
            json!({
                "time": s.time_ms, "lat": s.lat, "lon": s.lon, "altitude_m": s.altitude_m,
                "heart_rate": s.heart_rate, "cadence": s.cadence, "speed_mps": s.speed_mps,
                "distance_m": s.distance_m,
            })
        })
        .collect();
    serde_json::to_vec(&json!({"activity_id": activity_id, "seq": seq, "samples": samples}))
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct Created {
    id: uuid::Uuid,
}

#[derive(Deserialize)]
struct CreatedDevice {
    id: uuid::Uuid,
    token: String,
}

/// Registers a device for `account` and starts a public workout on it.
async fn set_up_device(
    client: &Client,
    base_url: &str,
    account: &Account,
    number: u64,
    first_time_ms: u64,
) -> anyhow::Result<Device> {
    let response = client
        .post(format!("{base_url}/v1/devices"))
        .bearer_auth(&account.access_token)
        .json(&json!({"name": format!("Bench watch {number}"), "kind": "watch"}))
        .send()
        .await
        .context("POST /v1/devices")?;
    if response.status() != StatusCode::CREATED {
        bail!("registering a device: {}", api::describe(response).await);
    }
    let device: CreatedDevice = response.json().await.context("reading the device")?;
    let response = client
        .post(format!("{base_url}/v1/activities"))
        .bearer_auth(&account.access_token)
        .json(
            &json!({"sport": "run", "status": "active", "device_id": device.id,
            "visibility": "public"}),
        )
        .send()
        .await
        .context("POST /v1/activities")?;
    if response.status() != StatusCode::CREATED {
        bail!("starting a workout: {}", api::describe(response).await);
    }
    let activity: Created = response.json().await.context("reading the workout")?;
    Ok(Device {
        id: device.id,
        token: device.token,
        activity_id: activity.id,
        seq: AtomicU64::new(0),
        next_time_ms: AtomicU64::new(first_time_ms),
        start_ms: first_time_ms,
        number,
        track: track(number),
        last_accepted_ms: AtomicU64::new(0),
    })
}

/// Posts one batch; `Ok(accepted samples)` on 202.
async fn post_batch(
    client: &Client,
    url: &str,
    token: &str,
    content_type: &'static str,
    body: Vec<u8>,
) -> Result<u64, String> {
    #[derive(Deserialize)]
    struct Accepted {
        accepted: u64,
    }
    let response = client
        .post(url)
        .bearer_auth(token)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .map_err(|error| error.to_string())?;
    if response.status() != StatusCode::ACCEPTED {
        return Err(api::describe(response).await);
    }
    response
        .json::<Accepted>()
        .await
        .map(|accepted| accepted.accepted)
        .map_err(|error| error.to_string())
}

#[derive(Default)]
struct Tally {
    samples: u64,
    batches: u64,
    failed: u64,
    first_failure: Option<String>,
    last_failure: Option<String>,
    latencies: Vec<Duration>,
    /// Samples accepted after the window closed: stored, but not part of the rate.
    late: u64,
}

impl Tally {
    fn add(&mut self, outcome: Result<u64, String>, latency: Duration) {
        match outcome {
            Ok(samples) => {
                self.samples += samples;
                self.batches += 1;
                self.latencies.push(latency);
            }
            Err(failure) => {
                self.failed += 1;
                if self.first_failure.is_none() {
                    self.first_failure = Some(failure);
                } else {
                    self.last_failure = Some(failure);
                }
            }
        }
    }

    /// The first and the last failure of this tally and then `later`'s.
    fn failures_then(&self, later: &Tally) -> (Option<String>, Option<String>) {
        let mut in_order = [
            &self.first_failure,
            &self.last_failure,
            &later.first_failure,
            &later.last_failure,
        ]
        .into_iter()
        .flatten();
        let first = in_order.next().cloned();
        (first, in_order.last().cloned())
    }

    fn merge(&mut self, other: Tally) {
        self.samples += other.samples;
        self.batches += other.batches;
        self.failed += other.failed;
        (self.first_failure, self.last_failure) = self.failures_then(&other);
        self.latencies.extend(other.latencies);
    }
}

/// Samples the server's VmRSS until dropped, keeping the highest.
struct RssSampler {
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: Option<u32>, keep: Arc<AtomicU64>) -> Self {
        let task = tokio::spawn(async move {
            let Some(pid) = pid else { return };
            loop {
                if let Ok(memory) = procfs::memory(pid) {
                    keep.fetch_max(memory.rss_kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Self { task }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Bench {
    client: Client,
    batches_url: String,
    /// The server's `/metrics`: a drain's progress, and its counters when one stalls.
    metrics_url: String,
    devices: Vec<Arc<Device>>,
    influx: Influx,
    server_pid: Option<u32>,
    /// Samples accepted so far (all phases).
    accepted_total: AtomicU64,
    drain_timeout: Duration,
}

fn cpu_between(
    before: Option<CpuSnapshot>,
    after: Option<CpuSnapshot>,
    pid: Option<u32>,
) -> Option<CpuUsage> {
    Some(CpuUsage::between(&before?, &after?, pid))
}

impl Bench {
    /// Closed loop: every device posts its next batch as soon as the last one was answered.
    async fn closed_loop(
        &self,
        batch_samples: usize,
        protobuf: bool,
        window: Duration,
    ) -> anyhow::Result<(Tally, Option<CpuUsage>)> {
        let deadline = Instant::now() + window;
        let cpu_before = CpuSnapshot::take(self.server_pid).ok();
        let mut tasks = Vec::new();
        for device in &self.devices {
            let (client, url, device) = (
                self.client.clone(),
                self.batches_url.clone(),
                device.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    let (content_type, body, first) = device.next_batch(batch_samples, protobuf);
                    let started = Instant::now();
                    let outcome =
                        post_batch(&client, &url, &device.token, content_type, body).await;
                    if outcome.is_ok() {
                        device.accepted(first, batch_samples);
                    }
                    if Instant::now() <= deadline {
                        tally.add(outcome, started.elapsed());
                    } else if let Ok(samples) = outcome {
                        // Stored all the same: it counts for the drain, not for the rate.
                        tally.late += samples;
                    }
                }
                tally
            }));
        }
        let mut tally = Tally::default();
        let mut late = 0;
        for task in tasks {
            let mut part = task.await.context("device task")?;
            late += std::mem::take(&mut part.late);
            tally.merge(part);
        }
        let cpu_after = CpuSnapshot::take(self.server_pid).ok();
        self.accepted_total
            .fetch_add(tally.samples + late, Ordering::Relaxed);
        Ok((tally, cpu_between(cpu_before, cpu_after, self.server_pid)))
    }

    /// Waits until InfluxDB counts every sample accepted so far; returns how long that took
    /// (until the answer of the count that found them all).
    ///
    /// Counting millions of points costs InfluxDB seconds of CPU, which would slow the very
    /// writes being waited for (the direct writes it is compared with are not counted while
    /// they run). So the wait polls a cheap sign, each device's latest accepted sample, and
    /// counts everything only once those are all stored. Progress is read from the server's
    /// `samples_written_total`, which costs InfluxDB nothing.
    ///
    /// An accepted sample must never be lost, so a drain whose server has written nothing
    /// new for [`STALL`] counts once more and, if samples are still missing, fails the run
    /// with the server's own accepted and written counts, rather than waiting out the
    /// timeout and reporting a figure as if nothing were wrong.
    async fn drain(&self) -> anyhow::Result<Option<Duration>> {
        const STALL: Duration = Duration::from_secs(90);
        let started = Instant::now();
        let expected = self.accepted_total.load(Ordering::Relaxed);
        let mut last_count: Option<Instant> = None;
        let mut last_progress_read: Option<Instant> = None;
        let (mut most_written, mut gained_at) = (None, Instant::now());
        loop {
            if last_progress_read.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
                last_progress_read = Some(Instant::now());
                let written = self.server_written().await;
                // Unreadable counters count as progress: the timeout still ends the wait.
                if written.is_none() || written > most_written {
                    (most_written, gained_at) = (written, Instant::now());
                }
            }
            let stalled = gained_at.elapsed() >= STALL;
            let timed_out = started.elapsed() > self.drain_timeout;
            let recount_allowed =
                last_count.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
            if stalled || timed_out || (recount_allowed && self.latest_samples_stored().await?) {
                let count = self.influx.count().await?;
                last_count = Some(Instant::now());
                if count >= expected {
                    return Ok(Some(started.elapsed()));
                }
                if stalled {
                    bail!(
                        "InfluxDB holds {count} of {expected} accepted samples and the server \
                         has written none for {} s: {} accepted samples are missing. The \
                         server says: {}",
                        STALL.as_secs(),
                        expected - count,
                        self.server_counts().await
                    );
                }
                if timed_out {
                    eprintln!(
                        "InfluxDB holds {count} of {expected} samples after the drain timeout"
                    );
                    return Ok(None);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The server's `/metrics` page, if it answers.
    async fn server_metrics(&self) -> Option<String> {
        let response = self.client.get(&self.metrics_url).send().await.ok()?;
        response.text().await.ok()
    }

    /// The server's `stride_telemetry_samples_written_total`, if its `/metrics` answers.
    async fn server_written(&self) -> Option<u64> {
        counter(&self.server_metrics().await?, WRITTEN)
    }

    /// The server's accepted and written sample counters, as words for a message.
    async fn server_counts(&self) -> String {
        let Some(page) = self.server_metrics().await else {
            return "nothing: its /metrics does not answer".to_owned();
        };
        let shown = |value: Option<u64>| value.map_or("none".to_owned(), |v| v.to_string());
        format!(
            "{} accepted, {} written",
            shown(counter(&page, ACCEPTED)),
            shown(counter(&page, WRITTEN))
        )
    }

    /// Whether every device's latest accepted sample is in InfluxDB: one request, a
    /// one-point query per device.
    async fn latest_samples_stored(&self) -> anyhow::Result<bool> {
        let latest: Vec<(uuid::Uuid, u64)> = self
            .devices
            .iter()
            .map(|device| (device.id, device.last_accepted_ms.load(Ordering::Relaxed)))
            .filter(|(_, ms)| *ms > 0)
            .collect();
        if latest.is_empty() {
            return Ok(true);
        }
        let query = latest
            .iter()
            .map(|(id, ms)| {
                format!(
                    "SELECT count(hr) FROM {MEASUREMENT} WHERE device_id = '{id}' AND time = {ms}ms"
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let body = self.influx.query(&self.influx.database, &query).await?;
        let results = body["results"].as_array().cloned().unwrap_or_default();
        Ok(results.len() == latest.len()
            && results
                .iter()
                .all(|result| result["series"][0]["values"][0][1].as_u64() == Some(1)))
    }

    async fn accept_phase(
        &self,
        batch_samples: usize,
        protobuf: bool,
        window: Duration,
    ) -> anyhow::Result<AcceptFigures> {
        let encoding = if protobuf { "protobuf" } else { "json" };
        eprintln!(
            "accept: {encoding}, {batch_samples} samples a batch, {} devices, {} s",
            self.devices.len(),
            window.as_secs()
        );
        let (tally, cpu) = self.closed_loop(batch_samples, protobuf, window).await?;
        let drained = self.drain().await?;
        Ok(AcceptFigures {
            encoding,
            batch_samples,
            samples_per_second: tally.samples as f64 / window.as_secs_f64(),
            batches: tally.batches,
            failed: tally.failed,
            first_failure: tally.first_failure,
            last_failure: tally.last_failure,
            latency: stats::summarize(&tally.latencies),
            latency_by_second: Vec::new(),
            warm_up_latency: None,
            drained_after_secs: drained.map(|d| d.as_secs_f64()),
            cpu,
        })
    }

    async fn end_to_end(&self, window: Duration) -> anyhow::Result<EndToEndFigures> {
        eprintln!(
            "end to end: protobuf, 1000 samples a batch, {} s, then until queryable",
            window.as_secs()
        );
        let cpu_before = CpuSnapshot::take(self.server_pid).ok();
        let started = Instant::now();
        let (tally, _) = self.closed_loop(1000, true, window).await?;
        let drained = self.drain().await?;
        let cpu_after = CpuSnapshot::take(self.server_pid).ok();
        let queryable_after = started.elapsed();
        if drained.is_none() {
            bail!("InfluxDB did not receive every accepted sample in time");
        }
        Ok(EndToEndFigures {
            samples: tally.samples,
            accepted_per_second: tally.samples as f64 / window.as_secs_f64(),
            queryable_after_secs: queryable_after.as_secs_f64(),
            samples_per_second: tally.samples as f64 / queryable_after.as_secs_f64(),
            cpu: cpu_between(cpu_before, cpu_after, self.server_pid),
        })
    }

    /// Open loop at `samples_per_second` in 1,000-sample protobuf batches, devices in turn:
    /// `warm_up` at the rate, not counted, then the measured `window`.
    async fn open_loop(
        &self,
        samples_per_second: f64,
        warm_up: Duration,
        window: Duration,
        trace_file: Option<&Path>,
    ) -> anyhow::Result<AcceptFigures> {
        let batches_per_second = (samples_per_second / 1000.0).max(1.0);
        let interval = Duration::from_secs_f64(1.0 / batches_per_second);
        let warm_up_batches = (warm_up.as_secs_f64() * batches_per_second).round() as usize;
        let total = warm_up_batches + (window.as_secs_f64() * batches_per_second).round() as usize;
        let mut cpu_before = None;
        let began = tokio::time::Instant::now();
        let began_unix = std::time::SystemTime::now();
        let mut trace = String::new();
        let mut tasks = Vec::with_capacity(total);
        for index in 0..total {
            let due = began + interval.mul_f64(index as f64);
            let device = self.devices[index % self.devices.len()].clone();
            // A device has its batch in hand when it is due: building it is the client's
            // time, not the server's. Late building still shows, since latency is counted
            // from when the batch was due.
            let (content_type, body, first) = device.next_batch(1000, true);
            tokio::time::sleep_until(due).await;
            if index == warm_up_batches {
                cpu_before = CpuSnapshot::take(self.server_pid).ok();
            }
            let (client, url) = (self.client.clone(), self.batches_url.clone());
            tasks.push(tokio::spawn(async move {
                // How late the client itself began: a busy machine delays the bench too.
                let started_late = due.elapsed();
                let outcome = post_batch(&client, &url, &device.token, content_type, body).await;
                if outcome.is_ok() {
                    device.accepted(first, 1000);
                }
                (outcome, due.elapsed(), started_late)
            }));
        }
        let (mut tally, mut warm_up_tally) = (Tally::default(), Tally::default());
        let seconds = window.as_secs_f64().ceil() as usize;
        let mut by_second = vec![Vec::new(); seconds.max(1)];
        for (index, task) in tasks.into_iter().enumerate() {
            let (outcome, latency, started_late) = task.await.context("batch task")?;
            let Some(measured) = index.checked_sub(warm_up_batches) else {
                warm_up_tally.add(outcome, latency);
                continue;
            };
            if trace_file.is_some() {
                let due = began_unix + interval.mul_f64(index as f64);
                let due_ms = due
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64()
                    * 1000.0;
                let _ = writeln!(
                    trace,
                    "{due_ms:.1} {:.2} {} {:.2}",
                    latency.as_secs_f64() * 1000.0,
                    u8::from(outcome.is_ok()),
                    started_late.as_secs_f64() * 1000.0
                );
            }
            if outcome.is_ok() {
                let second = (measured as f64 / batches_per_second) as usize;
                let last = by_second.len() - 1;
                by_second[second.min(last)].push(latency);
            }
            tally.add(outcome, latency);
        }
        let cpu_after = CpuSnapshot::take(self.server_pid).ok();
        if let Some(path) = trace_file {
            std::fs::write(path, trace)
                .with_context(|| format!("writing the trace to {}", path.display()))?;
        }
        self.accepted_total
            .fetch_add(tally.samples + warm_up_tally.samples, Ordering::Relaxed);
        let drained = self.drain().await?;
        let (first_failure, last_failure) = warm_up_tally.failures_then(&tally);
        Ok(AcceptFigures {
            encoding: "protobuf",
            batch_samples: 1000,
            samples_per_second: tally.samples as f64 / window.as_secs_f64(),
            batches: tally.batches,
            // A failure in the warm-up counts too: every batch was expected to be accepted.
            failed: tally.failed + warm_up_tally.failed,
            first_failure,
            last_failure,
            latency: stats::summarize(&tally.latencies),
            latency_by_second: by_second
                .iter()
                .map(|latencies| stats::summarize(latencies))
                .collect(),
            warm_up_latency: stats::summarize(&warm_up_tally.latencies),
            drained_after_secs: drained.map(|d| d.as_secs_f64()),
            cpu: cpu_between(cpu_before, cpu_after, self.server_pid),
        })
    }
}

/// The few InfluxDB v1 calls the scenario makes.
#[derive(Clone)]
struct Influx {
    client: Client,
    url: String,
    database: String,
}

impl Influx {
    async fn query(&self, database: &str, query: &str) -> anyhow::Result<serde_json::Value> {
        let response = self
            .client
            .post(format!("{}/query", self.url))
            .form(&[("db", database), ("q", query)])
            .send()
            .await
            .context("InfluxDB is unreachable")?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .with_context(|| format!("InfluxDB answered {status} unreadably"))?;
        if let Some(error) = body["results"][0]["error"].as_str() {
            bail!("InfluxDB refused {query:?}: {error}");
        }
        Ok(body)
    }

    /// Points in `database` (`count(hr)`: every bench sample has a heart rate).
    async fn count_in(&self, database: &str) -> anyhow::Result<u64> {
        let body = self
            .query(database, &format!("SELECT count(hr) FROM {MEASUREMENT}"))
            .await?;
        Ok(body["results"][0]["series"][0]["values"][0][1]
            .as_u64()
            .unwrap_or(0))
    }

    async fn count(&self) -> anyhow::Result<u64> {
        self.count_in(&self.database).await
    }

    async fn write(&self, database: &str, lines: String) -> anyhow::Result<()> {
        let response = self
            .client
            .post(format!("{}/write", self.url))
            .query(&[("db", database), ("precision", "ms")])
            .body(lines)
            .send()
            .await
            .context("InfluxDB is unreachable")?;
        if response.status() != StatusCode::NO_CONTENT {
            bail!("InfluxDB write: {}", api::describe(response).await);
        }
        Ok(())
    }
}

/// Line protocol as the telemetry writer makes it, for `count` samples of device `number`,
/// one a second from `start_ms`.
fn lines(
    user: &str,
    device: &str,
    number: u64,
    start_ms: u64,
    first_index: u64,
    count: u64,
) -> String {
    let mut out = String::with_capacity(count as usize * 160);
    for index in first_index..first_index + count {
        let s = reading(number, index % TRACK_SECONDS);
        let _ = writeln!(
            out,
            "{MEASUREMENT},user_id={user},device_id={device} lat={},lon={},alt={},hr={},cad={},\
             spd={},dist={} {}",
            s.lat.unwrap_or_default(),
            s.lon.unwrap_or_default(),
            s.altitude_m.unwrap_or_default(),
            s.heart_rate.unwrap_or_default(),
            s.cadence.unwrap_or_default(),
            s.speed_mps.unwrap_or_default(),
            s.distance_m.unwrap_or_default(),
            start_ms + index * 1000
        );
    }
    out
}

/// One client writes `points` points to `database`, `batch_lines` a write, the next write
/// leaving when the last was answered; the lines are made on another thread beforehand-ish
/// (a small queue), so making them costs the writer no time.
async fn direct_writes(
    influx: &Influx,
    database: &str,
    devices: u64,
    points: u64,
    batch_lines: usize,
    start_ms: u64,
    server_pid: Option<u32>,
) -> anyhow::Result<DirectFigures> {
    influx
        .query(database, &format!("CREATE DATABASE \"{database}\""))
        .await?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<String>(4);
    let batch = batch_lines.max(1) as u64;
    let maker = std::thread::spawn(move || {
        // Devices in turn, `batch` consecutive seconds each, like the pipeline's batches.
        let mut written = 0;
        let mut next_index: HashMap<u64, u64> = HashMap::new();
        let mut device = 0;
        while written < points {
            let count = batch.min(points - written);
            let mut text = String::new();
            let mut left = count;
            while left > 0 {
                let take = left.min(1000);
                let index = next_index.entry(device).or_insert(0);
                text.push_str(&lines(
                    &format!("direct-user-{device}"),
                    &format!("direct-device-{device}"),
                    device,
                    start_ms,
                    *index,
                    take,
                ));
                *index += take;
                device = (device + 1) % devices.max(1);
                left -= take;
            }
            if sender.blocking_send(text).is_err() {
                return;
            }
            written += count;
        }
    });
    // The first write is made before timing starts, so the queue is full when it does.
    let mut written = 0;
    let mut elapsed = Duration::ZERO;
    let cpu_before = CpuSnapshot::take(server_pid).ok();
    while let Some(text) = receiver.recv().await {
        let count = text.lines().count() as u64;
        let started = Instant::now();
        influx.write(database, text).await?;
        elapsed += started.elapsed();
        written += count;
    }
    let cpu_after = CpuSnapshot::take(server_pid).ok();
    maker
        .join()
        .map_err(|_| anyhow::anyhow!("line maker panicked"))?;
    Ok(DirectFigures {
        batch_lines,
        points: written,
        points_per_second: written as f64 / elapsed.as_secs_f64().max(1e-9),
        cpu: cpu_between(cpu_before, cpu_after, server_pid),
    })
}

/// The server's counter of samples it accepted.
const ACCEPTED: &str = "stride_telemetry_samples_accepted_total";
/// The server's counter of samples its writers stored in InfluxDB.
const WRITTEN: &str = "stride_telemetry_samples_written_total";

/// The unlabelled counter `name` from a Prometheus text page.
fn counter(metrics: &str, name: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse::<f64>()
            .ok()
            .map(|value| value as u64)
    })
}

/// Total size of the files under `path` (0 when it does not exist).
fn disk_usage(path: &Path) -> u64 {
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !metadata.is_dir() {
        return metadata.len();
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| disk_usage(&entry.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// The probe's record of its batches: first sample time -> (sent, accepted).
type Sent = Arc<Mutex<HashMap<i64, (Instant, Instant)>>>;
/// The viewer's record: sample time -> received.
type Seen = Arc<Mutex<HashMap<i64, Instant>>>;

/// Follows `GET /v1/activities/{id}/live`, noting when each `sample` event arrives.
async fn watch_live(
    client: Client,
    url: String,
    token: String,
    seen: Seen,
    connected: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<()> {
    let mut response = client
        .get(&url)
        .bearer_auth(&token)
        .header(header::ACCEPT, "text/event-stream")
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .context("GET live")?;
    if response.status() != StatusCode::OK {
        bail!("live view: {}", api::describe(response).await);
    }
    let _ = connected.send(());
    let mut buffer = String::new();
    let mut event = String::new();
    while let Some(chunk) = response.chunk().await.context("reading the live view")? {
        let received = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find('\n') {
            let line = buffer[..end].trim_end_matches('\r').to_owned();
            buffer.drain(..=end);
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_owned();
            } else if let Some(data) = line.strip_prefix("data:") {
                if event == "sample" {
                    let value: serde_json::Value =
                        serde_json::from_str(data.trim()).unwrap_or_default();
                    if let Some(time) = value["time"].as_i64() {
                        seen.lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .entry(time)
                            .or_insert(received);
                    }
                }
            } else if line.is_empty() {
                event.clear();
            }
        }
    }
    Ok(())
}

/// A probe device posts a 10-sample batch (samples 10 ms apart, from now) every 100 ms.
async fn probe(
    client: Client,
    batches_url: String,
    device: Arc<Device>,
    sent: Sent,
    until: Instant,
) -> anyhow::Result<()> {
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    let mut last_ms = 0;
    let mut seq = 1_000_000;
    while Instant::now() < until {
        ticks.tick().await;
        let now_ms = chrono::Utc::now().timestamp_millis().max(last_ms + 100);
        last_ms = now_ms;
        seq += 1;
        let samples = (0..10)
            .map(|k| proto::Sample {
                time_ms: now_ms - 100 + k * 10,
                ..reading(device.number, (now_ms / 1000) as u64)
            })
            .collect();
        let first = now_ms - 100;
        let body = encode(device.activity_id, seq, samples, true);
        let started = Instant::now();
        if post_batch(
            &client,
            &batches_url,
            &device.token,
            content_type(true),
            body,
        )
        .await
        .is_ok()
        {
            sent.lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .insert(first, (started, Instant::now()));
        }
    }
    Ok(())
}

fn live_figures(sent: &Sent, seen: &Seen) -> LiveFigures {
    let (Ok(sent), Ok(seen)) = (sent.lock(), seen.lock()) else {
        return LiveFigures::default();
    };
    let mut figures = LiveFigures {
        batches: sent.len() as u64,
        ..LiveFigures::default()
    };
    let (mut from_accepted, mut from_sent) = (Vec::new(), Vec::new());
    for (time, (sent_at, accepted_at)) in sent.iter() {
        let Some(received) = seen.get(time) else {
            continue;
        };
        figures.seen += 1;
        if received < accepted_at {
            figures.seen_before_accepted += 1;
        }
        from_accepted.push(received.saturating_duration_since(*accepted_at));
        from_sent.push(received.saturating_duration_since(*sent_at));
    }
    figures.delay_from_accepted = stats::summarize(&from_accepted);
    figures.delay_from_sent = stats::summarize(&from_sent);
    figures
}

/// Runs the scenario. Progress goes to stderr.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    anyhow::ensure!(options.devices > 0, "--devices must be at least 1");
    let base_url = options.base_url.trim_end_matches('/').to_owned();
    let client = api::http_client()?;
    api::check_ready(&client, &base_url).await?;
    let influx = Influx {
        client: client.clone(),
        url: options.influx_url.trim_end_matches('/').to_owned(),
        database: options.influx_database.clone(),
    };
    let already = influx.count().await.unwrap_or(0);
    let run = api::run_id();
    eprintln!(
        "setting up {} devices and a probe (run {run})",
        options.devices
    );
    let accounts = api::accounts(&client, &base_url, &run, options.devices + 1).await?;
    // One sample a second from 150 days ago: room for 13 million samples a device before
    // its clock passes the server's limit (a day ahead of now). A whole run on a machine
    // that accepted 5.3 M samples/s sent 3.5 M a device; with 40 days of room, as before,
    // its last seconds were refused as being in the future.
    let first_time_ms =
        (chrono::Utc::now() - chrono::Duration::days(150)).timestamp_millis() as u64 / 1000 * 1000;
    let mut devices = Vec::new();
    for (number, account) in accounts.iter().enumerate() {
        devices.push(Arc::new(
            set_up_device(&client, &base_url, account, number as u64, first_time_ms).await?,
        ));
    }
    let probe_device = devices.pop().context("a probe device")?;
    let probe_account = accounts.last().context("a probe account")?.clone();
    let bench = Bench {
        client: api::http_client()?,
        batches_url: format!("{base_url}/v1/telemetry/batches"),
        metrics_url: format!("{base_url}/metrics"),
        devices,
        influx: influx.clone(),
        server_pid: options.server_pid,
        accepted_total: AtomicU64::new(already),
        drain_timeout: Duration::from_secs(options.drain_timeout_secs),
    };
    let highest_rss = Arc::new(AtomicU64::new(0));
    let sampler = RssSampler::start(options.server_pid, highest_rss.clone());

    // Warm up: connections, caches of device credentials and workouts.
    let (warm_up, _) = bench.closed_loop(10, true, Duration::from_secs(2)).await?;
    if warm_up.batches == 0 {
        bail!(
            "no batch was accepted while warming up; first failure: {}",
            warm_up.first_failure.unwrap_or_default()
        );
    }
    bench.drain().await?;

    let accept_window = Duration::from_secs(options.accept_secs);
    let mut accept = Vec::new();
    let mut end_to_end = None;
    let half_rate = if let Some(rate) = options.latency_only_at {
        if options.load_first_secs > 0 {
            eprintln!(
                "load first: protobuf, 1000 samples a batch, {} s, then the drain",
                options.load_first_secs
            );
            let (tally, _) = bench
                .closed_loop(1000, true, Duration::from_secs(options.load_first_secs))
                .await?;
            let drained = bench.drain().await?;
            eprintln!(
                "load first: {} samples accepted, {}",
                tally.samples,
                drained.map_or("not all queryable".to_owned(), |d| format!(
                    "all queryable after {:.1} s",
                    d.as_secs_f64()
                ))
            );
        }
        rate
    } else {
        for (protobuf, batch) in [(false, 100), (false, 1000), (true, 100), (true, 1000)] {
            accept.push(bench.accept_phase(batch, protobuf, accept_window).await?);
        }
        let figures = bench
            .end_to_end(Duration::from_secs(options.end_to_end_secs))
            .await?;
        let max_rate = accept
            .iter()
            .filter(|a| a.encoding == "protobuf" && a.batch_samples == 1000)
            .map(|a| a.samples_per_second)
            .fold(figures.accepted_per_second, f64::max);
        end_to_end = Some(figures);
        max_rate / 2.0
    };
    // InfluxDB direct, on the same number of points as the end-to-end phase, right after
    // its drain, while nothing else writes to InfluxDB. After phase 3 the server's writers
    // drain that phase's backlog for minutes, and a direct round then shares InfluxDB with
    // them.
    let direct_database = format!("{}_direct", options.influx_database);
    let mut direct = Vec::new();
    let direct_rounds = match &end_to_end {
        Some(_) => options.direct_batch_lines.as_slice(),
        None => &[],
    };
    let direct_points = end_to_end.as_ref().map_or(0, |e| e.samples);
    for (round, &batch_lines) in direct_rounds.iter().enumerate() {
        eprintln!(
            "InfluxDB direct: {direct_points} points, {batch_lines} lines a write, one client"
        );
        direct.push(
            direct_writes(
                &influx,
                &direct_database,
                bench.devices.len() as u64,
                direct_points,
                batch_lines,
                // Each round its own (earlier) seconds, so no round overwrites another's points.
                first_time_ms.saturating_sub(round as u64 * 4_000_000_000),
                options.server_pid,
            )
            .await?,
        );
    }

    let settled = if options.settle_max_secs > 0 {
        eprintln!(
            "waiting up to {} s for the machine to go quiet before phase 3",
            options.settle_max_secs
        );
        Some(
            procfs::settle(
                SETTLED_BELOW_CORES,
                SETTLED_FOR_SECS,
                Duration::from_secs(options.settle_max_secs),
                options.server_pid,
            )
            .await?,
        )
    } else {
        None
    };
    eprintln!(
        "latency: open loop at {half_rate:.0} samples/s, {} s of warm-up then {} s measured, \
         live probe alongside",
        options.latency_warm_up_secs, options.latency_secs
    );
    let window = Duration::from_secs(options.latency_secs);
    let warm_up = Duration::from_secs(options.latency_warm_up_secs);
    // The probe's token from the set-up has expired by now (15 minutes on a slow day's
    // whole run): its viewer logs in again.
    let probe_account =
        api::log_in(&client, &base_url, &probe_account.email, options.devices).await?;
    let (sent, seen): (Sent, Seen) = Default::default();
    let (connected, on_connect) = tokio::sync::oneshot::channel();
    let viewer = tokio::spawn(watch_live(
        api::http_client()?,
        format!("{base_url}/v1/activities/{}/live", probe_device.activity_id),
        probe_account.access_token.clone(),
        seen.clone(),
        connected,
    ));
    let mut live_error = None;
    if tokio::time::timeout(Duration::from_secs(10), on_connect)
        .await
        .is_err()
    {
        live_error = Some("the live view did not connect within 10 s".to_owned());
    }
    let prober = tokio::spawn(probe(
        api::http_client()?,
        bench.batches_url.clone(),
        probe_device.clone(),
        sent.clone(),
        Instant::now() + warm_up + window,
    ));
    let half = bench
        .open_loop(half_rate, warm_up, window, options.latency_trace.as_deref())
        .await?;
    prober.await.context("probe task")??;
    tokio::time::sleep(Duration::from_secs(1)).await;
    viewer.abort();
    if let Ok(Ok(Err(error))) = tokio::time::timeout(Duration::from_secs(1), viewer).await {
        live_error.get_or_insert(format!("{error:#}"));
    }
    let mut live = live_figures(&sent, &seen);
    live.error = live_error;
    let server_memory = options.server_pid.map(procfs::memory).transpose()?;
    drop(sampler);

    let mut disk = Vec::new();
    if let Some(data_dir) = options
        .influx_data_dir
        .as_ref()
        .filter(|_| end_to_end.is_some())
    {
        eprintln!("waiting 30 s for InfluxDB to snapshot its caches, then measuring its files");
        tokio::time::sleep(Duration::from_secs(30)).await;
        let wal_dir = options
            .influx_wal_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("../wal"));
        for database in [options.influx_database.clone(), direct_database.clone()] {
            let samples = influx.count_in(&database).await?;
            let data_bytes = disk_usage(&data_dir.join(&database));
            let wal_bytes = disk_usage(&wal_dir.join(&database));
            let per = |bytes: u64| bytes as f64 / samples.max(1) as f64;
            disk.push(DiskFigures {
                database,
                samples,
                data_bytes,
                wal_bytes,
                data_bytes_per_sample: per(data_bytes),
                total_bytes_per_sample: per(data_bytes + wal_bytes),
            });
        }
    }
    // The direct database is the bench's own; the pipeline's belongs to the server's run.
    let _ = influx
        .query(
            &direct_database,
            &format!("DROP DATABASE \"{direct_database}\""),
        )
        .await;

    Ok(Report {
        scenario: "telemetry",
        base_url,
        devices: bench.devices.len(),
        accept,
        end_to_end,
        direct,
        half_rate_samples_per_second: half_rate,
        half_rate: Some(half),
        settled_before_half_rate: settled,
        live,
        server_rss_max_kib: options
            .server_pid
            .map(|_| highest_rss.load(Ordering::Relaxed)),
        server_memory,
        disk,
    })
}

/// The first failure and, when it differs, the last: a phase whose batches began to fail
/// for another reason partway shows both.
fn failure_lines(out: &mut String, figures: &AcceptFigures) {
    if let Some(failure) = &figures.first_failure {
        let _ = writeln!(out, "  first failure: {failure}");
    }
    if let Some(failure) = figures
        .last_failure
        .as_ref()
        .filter(|last| Some(*last) != figures.first_failure.as_ref())
    {
        let _ = writeln!(out, "  last failure: {failure}");
    }
}

/// The machine counts as quiet before phase 3 below this many busy cores...
const SETTLED_BELOW_CORES: f64 = 0.1;
/// ...in each of this many seconds in a row.
const SETTLED_FOR_SECS: u32 = 3;

/// How long the benchmark waited before phase 3 for the machine to go quiet.
fn settled_line(settled: &procfs::Settled) -> String {
    if settled.quiet {
        format!(
            "  before it: {:.0} s of waiting for the machine to go quiet (under \
             {SETTLED_BELOW_CORES} of a core busy for {SETTLED_FOR_SECS} s in a row)",
            settled.waited_secs
        )
    } else {
        format!(
            "  before it: the machine was still busy after {:.0} s of waiting; its last \
             second:\n{}",
            settled.waited_secs,
            api::cpu_line("", Some(&settled.last_second))
        )
    }
}

/// p99/max of each second, in order; `-` for a second without an accepted batch.
fn by_second_line(seconds: &[Option<LatencySummary>]) -> String {
    let seconds: Vec<String> = seconds
        .iter()
        .map(|second| {
            second.map_or_else(
                || "-".to_owned(),
                |s| format!("{:.1}/{:.1}", s.p99_ms, s.max_ms),
            )
        })
        .collect();
    format!("  p99/max ms by second of the phase: {}", seconds.join(" "))
}

/// The report for people.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "telemetry benchmark against {} ({} devices)",
        report.base_url, report.devices
    );
    let _ = writeln!(out, "(1) durable accept, closed loop:");
    for a in &report.accept {
        let _ = writeln!(
            out,
            "  {:<8} {:>5} samples/batch: {:>10.0} samples/s ({} batches, {} failed); \
             InfluxDB had them {:.1} s after the phase",
            a.encoding,
            a.batch_samples,
            a.samples_per_second,
            a.batches,
            a.failed,
            a.drained_after_secs.unwrap_or(f64::NAN)
        );
        let _ = writeln!(
            out,
            "{}",
            api::latency_line("batch latency", a.latency.as_ref())
        );
        let _ = writeln!(out, "{}", api::cpu_line("", a.cpu.as_ref()));
        failure_lines(&mut out, a);
    }
    if let Some(e) = &report.end_to_end {
        let _ = writeln!(
            out,
            "(2) end to end, protobuf 1000: {} samples accepted at {:.0}/s, all queryable after \
             {:.1} s: {:.0} samples/s",
            e.samples, e.accepted_per_second, e.queryable_after_secs, e.samples_per_second
        );
        let _ = writeln!(out, "{}", api::cpu_line("end to end", e.cpu.as_ref()));
        for d in &report.direct {
            let _ = writeln!(
                out,
                "    InfluxDB direct, one client, {} lines a write: {} points at {:.0} points/s; \
                 pipeline ÷ direct = {:.2}",
                d.batch_lines,
                d.points,
                d.points_per_second,
                e.samples_per_second / d.points_per_second
            );
            let _ = writeln!(out, "  {}", api::cpu_line("direct", d.cpu.as_ref()));
        }
    }
    if let Some(h) = &report.half_rate {
        let _ = writeln!(
            out,
            "(3) open loop at {:.0} samples/s (half the most accepted): {:.0} accepted/s, {} \
             failed",
            report.half_rate_samples_per_second, h.samples_per_second, h.failed
        );
        if let Some(settled) = &report.settled_before_half_rate {
            let _ = writeln!(out, "{}", settled_line(settled));
        }
        let _ = writeln!(
            out,
            "{}",
            api::latency_line("latency from due", h.latency.as_ref())
        );
        if let Some(warm_up) = &h.warm_up_latency {
            let _ = writeln!(
                out,
                "{}",
                api::latency_line("warm-up before it (not counted)", Some(warm_up))
            );
        }
        if !h.latency_by_second.is_empty() {
            let _ = writeln!(out, "{}", by_second_line(&h.latency_by_second));
        }
        let _ = writeln!(out, "{}", api::cpu_line("", h.cpu.as_ref()));
        failure_lines(&mut out, h);
    }
    let l = &report.live;
    let _ = writeln!(
        out,
        "(4) live view during (3): {} probe batches, {} seen ({} before their 202)",
        l.batches, l.seen, l.seen_before_accepted
    );
    let _ = writeln!(
        out,
        "{}",
        api::latency_line("202 to SSE event", l.delay_from_accepted.as_ref())
    );
    let _ = writeln!(
        out,
        "{}",
        api::latency_line("sent to SSE event", l.delay_from_sent.as_ref())
    );
    if let Some(error) = &l.error {
        let _ = writeln!(out, "  live view error: {error}");
    }
    if let (Some(highest), Some(memory)) = (report.server_rss_max_kib, &report.server_memory) {
        let _ = writeln!(
            out,
            "(5) server memory: highest VmRSS sampled under load {:.1} MiB; at the end RSS \
             {:.1} MiB, peak (VmHWM) {:.1} MiB",
            highest as f64 / 1024.0,
            memory.rss_mib(),
            memory.peak_rss_mib()
        );
    }
    for d in &report.disk {
        let _ = writeln!(
            out,
            "(6) {}: {} samples, data {:.1} MiB + WAL {:.1} MiB: {:.2} bytes/sample (data), \
             {:.2} with the WAL",
            d.database,
            d.samples,
            d.data_bytes as f64 / 1048576.0,
            d.wal_bytes as f64 / 1048576.0,
            d.data_bytes_per_sample,
            d.total_bytes_per_sample
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_keeps_the_first_and_the_last_failure_in_order() {
        let tally = |failures: &[&str]| {
            let mut tally = Tally::default();
            tally.add(Ok(1000), Duration::from_millis(2));
            for failure in failures {
                tally.add(Err((*failure).to_owned()), Duration::from_millis(1));
            }
            tally
        };
        let text = |failure: Option<String>| failure.unwrap_or_default();
        let (first, last) = tally(&["503", "503"]).failures_then(&tally(&["400", "400"]));
        assert_eq!((text(first), text(last)), ("503".into(), "400".into()));
        let (first, last) = tally(&[]).failures_then(&tally(&["400"]));
        assert_eq!((first.as_deref(), last), (Some("400"), None));
        let (first, last) = tally(&["503"]).failures_then(&tally(&["400"]));
        assert_eq!(
            (first.as_deref(), last.as_deref()),
            (Some("503"), Some("400"))
        );
        let mut merged = tally(&["503"]);
        merged.merge(tally(&["400", "timeout"]));
        assert_eq!(merged.failed, 3);
        assert_eq!(
            (
                merged.first_failure.as_deref(),
                merged.last_failure.as_deref()
            ),
            (Some("503"), Some("timeout"))
        );
    }

    #[test]
    fn a_second_without_accepted_batches_keeps_its_place() {
        let second = |ms: u64| stats::summarize(&[Duration::from_millis(ms)]);
        let line = by_second_line(&[second(12), None, second(30)]);
        assert_eq!(
            line,
            "  p99/max ms by second of the phase: 12.0/12.0 - 30.0/30.0"
        );
    }

    #[test]
    fn the_written_count_is_read_from_its_own_line_only() {
        let page = "# HELP stride_telemetry_samples_written_total Samples stored.\n\
                    # TYPE stride_telemetry_samples_written_total counter\n\
                    stride_telemetry_samples_written_total_created 1.7e9\n\
                    stride_telemetry_samples_accepted_total 84213280\n\
                    stride_telemetry_samples_written_total 84213270\n";
        assert_eq!(counter(page, WRITTEN), Some(84_213_270));
        assert_eq!(counter(page, ACCEPTED), Some(84_213_280));
        assert_eq!(counter("stride_up 1\n", WRITTEN), None);
    }
}
