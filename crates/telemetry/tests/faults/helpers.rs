//! The fault tests' apps, simulated devices, InfluxDB checks and a counting InfluxDB proxy.

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use prost::Message as _;
use serde_json::{Value, json};
use stride_platform::config::Config;
use stride_proto::telemetry::v1::{Sample, SampleBatch};
use stride_telemetry::influx::{Influx, MEASUREMENT};
pub use stride_testkit::*;

/// Starts identity, training and telemetry with `config`.
pub async fn spawn_app(config: Config) -> TestApp {
    spawn(
        &[
            &stride_identity::SERVICE,
            &stride_training::SERVICE,
            &stride_telemetry::SERVICE,
        ],
        config,
    )
    .await
}

/// A test configuration on the private broker and InfluxDB at `influx_url`; PostgreSQL and
/// Redis are the shared servers, with this test's own names.
pub fn fault_config(nats: &PrivateNats, influx_url: &str) -> Config {
    Config {
        nats_url: nats.url(),
        influx_url: influx_url.to_owned(),
        // The simulated devices replay recorded workouts faster than real time; the rate
        // limit has its own API test.
        device_batches_per_second: 1_000,
        ..test_config()
    }
}

/// The configuration with HTTP and gRPC on fixed spare ports, so that a restarted app is
/// found where devices already send (as behind a load balancer).
pub fn on_fixed_ports(config: Config) -> Config {
    Config {
        http_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
        grpc_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
        ..config
    }
}

/// Seconds since `start`, for the tests' timelines.
pub fn at(start: Instant) -> String {
    format!("[{:>6.1}s]", start.elapsed().as_secs_f64())
}

/// How a device sends its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Protobuf,
}

/// An athlete's device recording an active workout.
#[derive(Debug, Clone)]
pub struct Device {
    pub user_id: String,
    /// The owner's access token (for reading the workout back).
    pub access_token: String,
    pub device_id: String,
    pub token: String,
    pub activity_id: String,
    pub start_ms: i64,
    pub encoding: Encoding,
}

/// Registers an athlete, a device and a ride that started four hours ago, through the API.
pub async fn device(app: &TestApp, encoding: Encoding) -> Device {
    let account = app.new_account().await;
    let created = app
        .post_authed(
            "/v1/devices",
            &account.access_token,
            Some(&json!({"name": "Edge", "kind": "bike_computer"})),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let device: Value = created.json().await.expect("json");
    let device_id = device["id"].as_str().expect("id").to_owned();
    // Four hours back, so that every replayed sample lies before now.
    let start = chrono::Utc::now() - chrono::Duration::hours(4);
    let activity = app
        .post_authed(
            "/v1/activities",
            &account.access_token,
            Some(&json!({
                "sport": "ride",
                "status": "active",
                "visibility": "private",
                "device_id": device_id,
                "start_time": start.to_rfc3339(),
            })),
        )
        .await;
    assert_eq!(activity.status(), StatusCode::CREATED);
    let activity: Value = activity.json().await.expect("json");
    Device {
        user_id: account.user_id.to_string(),
        access_token: account.access_token.clone(),
        device_id,
        token: device["token"].as_str().expect("token").to_owned(),
        activity_id: activity["id"].as_str().expect("id").to_owned(),
        start_ms: start.timestamp_millis(),
        encoding,
    }
}

impl Device {
    /// When the device took its `index`-th sample: one a second from a minute after the start.
    pub fn time_ms(&self, index: u64) -> i64 {
        self.start_ms + 60_000 + index as i64 * 1000
    }

    /// Samples `first..first + count` of a ride along a line.
    pub fn samples(&self, first: u64, count: u64) -> Vec<Sample> {
        (first..first + count)
            .map(|index| Sample {
                time_ms: self.time_ms(index),
                lat: Some(45.0 + index as f64 * 0.00005),
                lon: Some(7.0),
                altitude_m: Some(200.0 + (index % 60) as f64),
                heart_rate: Some(120.0 + (index % 40) as f64),
                cadence: Some(85.0),
                power_w: Some(200.0 + (index % 50) as f64),
                speed_mps: Some(5.5),
                ..Sample::default()
            })
            .collect()
    }

    fn body(&self, seq: u64, samples: &[Sample]) -> (&'static str, Vec<u8>) {
        match self.encoding {
            Encoding::Protobuf => (
                "application/x-protobuf",
                SampleBatch {
                    activity_id: self.activity_id.clone(),
                    seq,
                    samples: samples.to_vec(),
                }
                .encode_to_vec(),
            ),
            Encoding::Json => {
                let samples: Vec<Value> = samples
                    .iter()
                    .map(|sample| {
                        json!({
                            "time": sample.time_ms,
                            "lat": sample.lat,
                            "lon": sample.lon,
                            "altitude_m": sample.altitude_m,
                            "heart_rate": sample.heart_rate,
                            "cadence": sample.cadence,
                            "power_w": sample.power_w,
                            "speed_mps": sample.speed_mps,
                        })
                    })
                    .collect();
                let body = json!({"activity_id": self.activity_id, "seq": seq, "samples": samples});
                ("application/json", serde_json::to_vec(&body).expect("json"))
            }
        }
    }
}

/// The answer to one ingest request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 202.
    Accepted { duplicate: bool },
    /// 503 (with Retry-After) or 429: keep the batch and retry.
    RetryLater(StatusCode),
    /// No HTTP answer at all: the process is down or restarting.
    Unreachable(String),
    /// Anything else, with the body.
    Other(StatusCode, String),
}

/// A client as a device has one: no cookies, a timeout.
pub fn device_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

/// Sends one batch once.
pub async fn send(
    client: &reqwest::Client,
    base: &str,
    device: &Device,
    seq: u64,
    samples: &[Sample],
) -> Answer {
    let (content_type, body) = device.body(seq, samples);
    let response = client
        .post(format!("{base}/v1/telemetry/batches"))
        .bearer_auth(&device.token)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => return Answer::Unreachable(error.to_string()),
    };
    let status = response.status();
    match status {
        StatusCode::ACCEPTED => {
            let body: Value = match response.json().await {
                Ok(body) => body,
                Err(error) => return Answer::Unreachable(error.to_string()),
            };
            Answer::Accepted {
                duplicate: body["duplicate"] == true,
            }
        }
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
            assert!(
                response.headers().contains_key(header::RETRY_AFTER),
                "{status} without Retry-After"
            );
            Answer::RetryLater(status)
        }
        _ => Answer::Other(status, response.text().await.unwrap_or_default()),
    }
}

/// A batch a device got 202 for.
#[derive(Debug, Clone)]
pub struct AcceptedBatch {
    pub seq: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub samples: u64,
}

/// What a device saw while delivering its batches.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub requests: u64,
    pub retry_later: u64,
    pub unreachable: u64,
    /// 202s that said the batch had been stored before (a retry of a stored batch).
    pub duplicates: u64,
    /// Answers a device cannot act on (500, 4xx): the test fails on them.
    pub unexpected: Vec<String>,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.retry_later += other.retry_later;
        self.unreachable += other.unreachable;
        self.duplicates += other.duplicates;
        self.unexpected.extend(other.unexpected.iter().cloned());
    }
}

/// Delivers a batch as a device does: on 503, 429 or no connection it keeps the batch and
/// retries the same `seq` after a short wait, until 202 or `deadline`. Other answers are
/// retried too (a device cannot do better) but recorded as unexpected.
pub async fn deliver(
    client: &reqwest::Client,
    base: &str,
    device: &Device,
    seq: u64,
    samples: &[Sample],
    deadline: Instant,
    tally: &mut Tally,
) -> Option<AcceptedBatch> {
    while Instant::now() < deadline {
        tally.requests += 1;
        match send(client, base, device, seq, samples).await {
            Answer::Accepted { duplicate } => {
                tally.duplicates += u64::from(duplicate);
                return Some(AcceptedBatch {
                    seq,
                    first_ms: samples.first().map_or(0, |sample| sample.time_ms),
                    last_ms: samples.last().map_or(0, |sample| sample.time_ms),
                    samples: samples.len() as u64,
                });
            }
            Answer::RetryLater(_) => tally.retry_later += 1,
            Answer::Unreachable(_) => tally.unreachable += 1,
            Answer::Other(status, body) => {
                tally.unexpected.push(format!("seq {seq}: {status} {body}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// Reads what InfluxDB holds, bypassing the service.
pub struct Store {
    http: reqwest::Client,
    url: String,
    database: String,
    influx: Influx,
}

impl Store {
    pub fn new(influx_url: &str, database: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            url: influx_url.to_owned(),
            database: database.to_owned(),
            influx: Influx::new(influx_url, database),
        }
    }

    /// Stored samples per device, as InfluxDB counts them; `None` while it does not answer.
    pub async fn counts(&self) -> Option<BTreeMap<String, u64>> {
        let response = self
            .http
            .post(format!("{}/query", self.url))
            .form(&[
                ("db", self.database.as_str()),
                (
                    "q",
                    &format!("SELECT count(hr) FROM {MEASUREMENT} GROUP BY device_id"),
                ),
            ])
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body: Value = response.json().await.ok()?;
        let mut counts = BTreeMap::new();
        for series in body["results"][0]["series"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let device = series["tags"]["device_id"].as_str()?.to_owned();
            let count = series["values"][0][1].as_u64()?;
            counts.insert(device, count);
        }
        Some(counts)
    }

    /// Waits until InfluxDB holds `expected` samples per device (or `limit` passed); returns
    /// the last counts seen.
    pub async fn wait_for(
        &self,
        expected: &BTreeMap<String, u64>,
        limit: Duration,
    ) -> BTreeMap<String, u64> {
        let deadline = Instant::now() + limit;
        let mut last = BTreeMap::new();
        while Instant::now() < deadline {
            if let Some(counts) = self.counts().await {
                last = counts;
                if &last == expected {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        last
    }

    /// The times of a device's stored samples, through the service's own read path.
    pub async fn times(&self, device: &Device) -> Vec<i64> {
        self.influx
            .samples(
                &device.user_id,
                Some(&device.device_id),
                device.start_ms,
                device.start_ms + 86_400_000,
            )
            .await
            .expect("InfluxDB answers")
            .into_iter()
            .map(|row| row.time_ms)
            .collect()
    }

    /// Asserts that InfluxDB holds exactly the samples of the accepted batches of each device:
    /// every batch's first and last sample is there, no time is there twice and nothing else
    /// is there.
    pub async fn assert_exactly(&self, accepted: &[(Device, Vec<AcceptedBatch>)]) {
        for (device, batches) in accepted {
            let times = self.times(device).await;
            let stored: HashSet<i64> = times.iter().copied().collect();
            assert_eq!(
                stored.len(),
                times.len(),
                "device {}: a sample is stored twice",
                device.device_id
            );
            for batch in batches {
                assert!(
                    stored.contains(&batch.first_ms) && stored.contains(&batch.last_ms),
                    "device {}: batch {} was accepted but is not stored",
                    device.device_id,
                    batch.seq
                );
            }
            let expected: u64 = batches.iter().map(|batch| batch.samples).sum();
            assert_eq!(
                times.len() as u64,
                expected,
                "device {}: stored samples against accepted samples",
                device.device_id
            );
        }
    }
}

/// Accepted samples per device id.
pub fn expected_counts(accepted: &[(Device, Vec<AcceptedBatch>)]) -> BTreeMap<String, u64> {
    accepted
        .iter()
        .map(|(device, batches)| {
            (
                device.device_id.clone(),
                batches.iter().map(|batch| batch.samples).sum(),
            )
        })
        .collect()
}

/// What the broker holds for the telemetry buffer: (batches ever stored in the stream, the
/// messages it still holds, the writer consumer's unacknowledged and undelivered messages).
pub async fn buffer_state(config: &Config) -> Option<(u64, u64, u64, u64)> {
    let client = async_nats::connect(&config.nats_url).await.ok()?;
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream
        .get_stream(stride_telemetry::stream_name(config))
        .await
        .ok()?;
    let state = stream.info().await.ok()?.state.clone();
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_consumer(stride_telemetry::writer::DURABLE)
        .await
        .ok()?;
    let info = consumer.info().await.ok()?;
    // Each installation's stream is new, so its sequences count the batches ever stored.
    Some((
        state.last_sequence,
        state.messages,
        info.num_ack_pending as u64,
        info.num_pending,
    ))
}

/// An HTTP proxy in front of InfluxDB that counts the writes and points passing through it,
/// so a test can tell which process wrote.
pub struct CountingProxy {
    pub url: String,
    counters: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

struct ProxyState {
    client: reqwest::Client,
    target: String,
    writes: AtomicU64,
    points: AtomicU64,
}

impl CountingProxy {
    pub async fn start(target: &str) -> Self {
        let counters = Arc::new(ProxyState {
            client: reqwest::Client::new(),
            target: target.trim_end_matches('/').to_owned(),
            writes: AtomicU64::new(0),
            points: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bound");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let router = axum::Router::new()
            .fallback(forward)
            .with_state(counters.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.ok();
        });
        Self {
            url,
            counters,
            task,
        }
    }

    /// Successful `/write` requests and the points in them.
    pub fn written(&self) -> (u64, u64) {
        (
            self.counters.writes.load(Ordering::Relaxed),
            self.counters.points.load(Ordering::Relaxed),
        )
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    State(proxy): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |path| path.as_str());
    let is_write = uri.path() == "/write";
    let points = if is_write {
        body.split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
            .count() as u64
    } else {
        0
    };
    let mut request = proxy
        .client
        .request(method, format!("{}{path}", proxy.target))
        .body(body);
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let body = response.bytes().await.unwrap_or_default();
    if is_write && status.is_success() {
        proxy.writes.fetch_add(1, Ordering::Relaxed);
        proxy.points.fetch_add(points, Ordering::Relaxed);
    }
    let mut answer = (status, body).into_response();
    if let Some(content_type) = content_type {
        answer
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    answer
}
