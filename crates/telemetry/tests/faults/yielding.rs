//! Writers that stop draining into InfluxDB while ingest is heavy, on whichever replica it
//! arrives, and that never stop for longer than the longest yield.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use stride_platform::config::Config;

use crate::helpers::{
    AcceptedBatch, CountingProxy, Device, Encoding, PrivateInflux, PrivateNats, Store, Tally,
    TestApp, at, deliver, device, device_client, expected_counts, fault_config, metric_in, spawn,
    spawn_app,
};

const SAMPLES_PER_BATCH: u64 = 100;

/// 1,000 samples a second, the heavy ingest of these tests.
const BATCH_EVERY: Duration = Duration::from_millis(100);

/// Above this many samples a second across the replicas, the writers stop.
const YIELD_ABOVE: u64 = 10;

const YIELDING: &str = "stride_telemetry_writers_yielding";

/// A device sending a batch every [`BATCH_EVERY`] until it is stopped.
struct Streaming {
    accepted_samples: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Device, Vec<AcceptedBatch>, Tally)>,
}

impl Streaming {
    /// Starts `device` sending to `base`.
    fn start(base: String, device: Device) -> Self {
        let accepted_samples = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(stream(base, device, accepted_samples.clone(), stop.clone()));
        Self {
            accepted_samples,
            stop,
            task,
        }
    }

    /// Samples accepted so far.
    fn accepted(&self) -> u64 {
        self.accepted_samples.load(Ordering::Relaxed)
    }

    /// Stops the device and returns what it had accepted; fails on answers a device cannot
    /// act on.
    async fn stop(self) -> Vec<(Device, Vec<AcceptedBatch>)> {
        self.stop.store(true, Ordering::Relaxed);
        let (device, batches, tally) = self.task.await.expect("device task");
        eprintln!("device done: {tally:?}");
        assert!(tally.unexpected.is_empty(), "{:?}", tally.unexpected);
        vec![(device, batches)]
    }
}

/// Sends the device's batches to `base` every [`BATCH_EVERY`] until `stop`, counting the
/// samples accepted in `accepted_samples`.
async fn stream(
    base: String,
    device: Device,
    accepted_samples: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> (Device, Vec<AcceptedBatch>, Tally) {
    let client = device_client();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tally = Tally::default();
    let mut accepted = Vec::new();
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        let samples = device.samples(seq * SAMPLES_PER_BATCH, SAMPLES_PER_BATCH);
        if let Some(batch) =
            deliver(&client, &base, &device, seq, &samples, deadline, &mut tally).await
        {
            accepted_samples.fetch_add(batch.samples, Ordering::Relaxed);
            accepted.push(batch);
        }
        seq += 1;
        tokio::time::sleep(BATCH_EVERY).await;
    }
    (device, accepted, tally)
}

/// The most writers `metrics_url` reported stopped, read every 100 ms until `stop`.
async fn most_yielding(metrics_url: String, stop: Arc<AtomicBool>) -> f64 {
    let client = reqwest::Client::new();
    let mut most = 0.0_f64;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(response) = client.get(&metrics_url).send().await
            && let Ok(text) = response.text().await
        {
            most = most.max(metric_in(&text, YIELDING));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    most
}

/// The telemetry-only second process of `first`'s platform, with `config`.
async fn second_process(first: &TestApp, config: Config) -> TestApp {
    spawn(
        &[&stride_telemetry::SERVICE],
        Config {
            identity_grpc_url: Some(first.grpc_address.clone()),
            training_grpc_url: Some(first.grpc_address.clone()),
            jwks_url: Some(first.url("/.well-known/jwks.json")),
            ..config
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_stop_for_heavy_ingest_on_another_replica_and_drain_once_it_is_quiet() {
    let nats = PrivateNats::start().await;
    let influx = PrivateInflux::start().await;
    let through = CountingProxy::start(&influx.url()).await;
    // The first process takes the devices' batches and writes nothing to InfluxDB.
    let config = Config {
        telemetry_writers: 0,
        ..fault_config(&nats, &influx.url())
    };
    let first = spawn_app(config.clone()).await;
    // The second only writes, and hears of the first's ingest through the broker.
    let second = second_process(
        &first,
        Config {
            influx_url: through.url.clone(),
            telemetry_writers: 2,
            telemetry_drain_yield_above: YIELD_ABOVE,
            telemetry_drain_max_yield_seconds: 600,
            ..config.clone()
        },
    )
    .await;
    let device = device(&first, Encoding::Protobuf).await;

    let start = Instant::now();
    let streaming = Streaming::start(first.address.clone(), device);
    // The first batches may be written before the first report of the load arrives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, points_at_3s) = through.written();
    let yielding = second.metric(YIELDING).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, points_at_8s) = through.written();
    let accepted_at_8s = streaming.accepted();
    let accepted = streaming.stop().await;
    eprintln!(
        "{} {accepted_at_8s} samples accepted by 8 s; points written by 3 s: {points_at_3s}, \
         by 8 s: {points_at_8s}; writers yielding at 3 s: {yielding}",
        at(start)
    );
    assert!(
        accepted_at_8s >= 3_000,
        "ingest went on at about 1,000 samples/s: {accepted_at_8s}"
    );
    assert_eq!(yielding, 2.0, "both writers of the second process stopped");
    assert_eq!(
        points_at_8s, points_at_3s,
        "nothing was written to InfluxDB while ingest went on"
    );

    // Quiet now: the backlog drains at once, every sample exactly once.
    let expected = expected_counts(&accepted);
    let store = Store::new(&influx.url(), &config.influx_database);
    let counts = store.wait_for(&expected, Duration::from_secs(30)).await;
    eprintln!("{} queryable: {counts:?}", at(start));
    assert_eq!(
        counts, expected,
        "the backlog drained once ingest was quiet"
    );
    store.assert_exactly(&accepted).await;
    assert_eq!(second.metric(YIELDING).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_stopped_for_ingest_drain_after_the_longest_yield_while_it_goes_on() {
    let nats = PrivateNats::start().await;
    let influx = PrivateInflux::start().await;
    let config = Config {
        telemetry_drain_yield_above: YIELD_ABOVE,
        telemetry_drain_max_yield_seconds: 2,
        ..fault_config(&nats, &influx.url())
    };
    let app = spawn_app(config.clone()).await;
    let device = device(&app, Encoding::Json).await;
    let store = Store::new(&influx.url(), &config.influx_database);

    let start = Instant::now();
    let streaming = Streaming::start(app.address.clone(), device);
    let watching = tokio::spawn(most_yielding(app.url("/metrics"), streaming.stop.clone()));
    // Ingest stays heavy for 12 s. What was accepted by 6 s must be queryable by 12 s: the
    // writers stop for at most 2 s at a stretch, then catch up.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let accepted_at_6s = streaming.accepted();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stored_at_12s: u64 = store.counts().await.unwrap_or_default().values().sum();
    let accepted_at_12s = streaming.accepted();
    let accepted = streaming.stop().await;
    let most_yielding = watching.await.expect("watching task");
    eprintln!(
        "{} accepted by 6 s: {accepted_at_6s}, by 12 s: {accepted_at_12s}; queryable at 12 s: \
         {stored_at_12s}; at most {most_yielding} writers stopped",
        at(start)
    );
    assert!(
        accepted_at_6s >= 3_000,
        "ingest was heavy: {accepted_at_6s}"
    );
    assert_eq!(most_yielding, 2.0, "the writers did stop for ingest");
    assert!(
        stored_at_12s >= accepted_at_6s,
        "samples reached InfluxDB within the longest yield while ingest went on: \
         {stored_at_12s} queryable at 12 s, {accepted_at_6s} accepted by 6 s"
    );

    let expected = expected_counts(&accepted);
    let counts = store.wait_for(&expected, Duration::from_secs(30)).await;
    assert_eq!(counts, expected);
    store.assert_exactly(&accepted).await;
}
