//! 100,000 samples while the broker, InfluxDB and the writer process die in turn.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::task::JoinSet;

use crate::helpers::{
    AcceptedBatch, Device, Encoding, PrivateInflux, PrivateNats, Store, Tally, at, buffer_state,
    deliver, device, device_client, expected_counts, fault_config, on_fixed_ports, spawn_app,
};

const DEVICES: u64 = 10;
const BATCHES_PER_DEVICE: u64 = 20;
const SAMPLES_PER_BATCH: u64 = 500;
const ALL_BATCHES: u64 = DEVICES * BATCHES_PER_DEVICE;

/// Sends a device's batches one after another, each until it is accepted.
async fn record(
    base: String,
    device: Device,
    progress: Arc<AtomicU64>,
    deadline: Instant,
) -> (Device, Vec<AcceptedBatch>, Tally) {
    let client = device_client();
    let mut tally = Tally::default();
    let mut accepted = Vec::new();
    for seq in 0..BATCHES_PER_DEVICE {
        let samples = device.samples(seq * SAMPLES_PER_BATCH, SAMPLES_PER_BATCH);
        let Some(batch) =
            deliver(&client, &base, &device, seq, &samples, deadline, &mut tally).await
        else {
            break;
        };
        accepted.push(batch);
        progress.fetch_add(1, Ordering::Relaxed);
        // A device sends a batch now and then, so the faults below land mid-ingest.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    (device, accepted, tally)
}

/// Waits until `target` batches were accepted (or the deadline passed), and checks that
/// ingest is still going on, so the next fault lands mid-ingest.
async fn accepted_at_least(progress: &AtomicU64, target: u64, deadline: Instant) {
    while progress.load(Ordering::Relaxed) < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        progress.load(Ordering::Relaxed) < ALL_BATCHES,
        "ingest ended before the next fault"
    );
}

/// Ten devices send 100,000 samples in 200 batches while nats-server is SIGKILLed and
/// restarted, then influxd, then the app (the writer) is stopped and a fresh one started on the
/// same address. Devices keep a batch until it is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_accepted_sample_is_lost_or_doubled_when_the_broker_influxdb_and_writer_die() {
    let mut nats = PrivateNats::start().await;
    let mut influx = PrivateInflux::start().await;
    let config = on_fixed_ports(fault_config(&nats, &influx.url()));
    let mut app = spawn_app(config.clone()).await;
    // Stopped apps are kept to the end: dropping a TestApp removes the test's EVENTS stream,
    // which the running one uses.
    let mut stopped = Vec::new();
    let base = app.address.clone();
    let mut devices = Vec::new();
    for index in 0..DEVICES {
        let encoding = if index % 2 == 0 {
            Encoding::Protobuf
        } else {
            Encoding::Json
        };
        devices.push(device(&app, encoding).await);
    }

    let start = Instant::now();
    let deadline = start + Duration::from_secs(180);
    let progress = Arc::new(AtomicU64::new(0));
    let mut recorders = JoinSet::new();
    for device in devices {
        recorders.spawn(record(base.clone(), device, progress.clone(), deadline));
    }

    accepted_at_least(&progress, ALL_BATCHES / 5, deadline).await;
    eprintln!(
        "{} {} batches accepted; SIGKILL nats-server",
        at(start),
        progress.load(Ordering::Relaxed)
    );
    nats.kill();
    // Longer than the app waits for a JetStream acknowledgement, so devices get 503s.
    tokio::time::sleep(Duration::from_secs(8)).await;
    nats.restart().await;
    eprintln!("{} nats-server is back", at(start));

    let before = progress.load(Ordering::Relaxed);
    accepted_at_least(&progress, before + ALL_BATCHES / 10, deadline).await;
    eprintln!(
        "{} {} batches accepted; SIGKILL influxd",
        at(start),
        progress.load(Ordering::Relaxed)
    );
    influx.kill();
    tokio::time::sleep(Duration::from_secs(8)).await;
    influx.restart().await;
    eprintln!("{} influxd is back", at(start));

    let before = progress.load(Ordering::Relaxed);
    accepted_at_least(&progress, before + ALL_BATCHES / 10, deadline).await;
    eprintln!(
        "{} {} batches accepted; stopping the app",
        at(start),
        progress.load(Ordering::Relaxed)
    );
    app.stop().await;
    stopped.push(app);
    eprintln!("{} app stopped; starting a new one", at(start));
    let app = spawn_app(config.clone()).await;
    assert_eq!(
        app.address, base,
        "the new process answers where devices send"
    );
    eprintln!("{} the new app runs", at(start));

    let mut accepted = Vec::new();
    let mut tally = Tally::default();
    while let Some(recorded) = recorders.join_next().await {
        let (device, batches, device_tally) = recorded.expect("device task");
        tally.add(&device_tally);
        accepted.push((device, batches));
    }
    let accepted_batches: usize = accepted.iter().map(|(_, batches)| batches.len()).sum();
    eprintln!(
        "{} ingest done: {accepted_batches} batches accepted, {tally:?}",
        at(start)
    );

    let store = Store::new(&config.influx_url, &config.influx_database);
    let expected = expected_counts(&accepted);
    let drain = Instant::now();
    let mut counts = Default::default();
    let mut seen = None;
    while drain.elapsed() < Duration::from_secs(180) {
        counts = store.counts().await.unwrap_or_default();
        let now = (counts.values().sum::<u64>(), buffer_state(&config).await);
        if seen.as_ref() != Some(&now) {
            eprintln!(
                "{} {} samples in InfluxDB; buffer (stored, held, unacked, undelivered): {:?}",
                at(start),
                now.0,
                now.1
            );
            seen = Some(now);
        }
        if counts == expected {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "{} stopped waiting {:.1}s after ingest ended",
        at(start),
        drain.elapsed().as_secs_f64()
    );

    assert!(tally.unexpected.is_empty(), "{:?}", tally.unexpected);
    assert!(
        tally.retry_later > 0,
        "devices were told to retry while the broker was down"
    );
    assert_eq!(
        accepted_batches as u64, ALL_BATCHES,
        "every batch was accepted in the end"
    );
    assert_eq!(counts, expected, "samples per device in InfluxDB");
    assert_eq!(
        counts.values().sum::<u64>(),
        DEVICES * BATCHES_PER_DEVICE * SAMPLES_PER_BATCH
    );
    store.assert_exactly(&accepted).await;
    // A retried batch is stored once in the buffer too.
    // (The writers trim what they stored from the stream, so count what it ever stored.)
    let (stored, _, _, _) = buffer_state(&config).await.expect("the broker answers");
    assert_eq!(
        stored, ALL_BATCHES,
        "batches stored in the TELEMETRY stream"
    );
}
