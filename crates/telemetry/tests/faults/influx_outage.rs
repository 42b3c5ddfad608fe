//! Steady ingest through a 30-second InfluxDB outage.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::task::JoinSet;

use crate::helpers::{
    AcceptedBatch, Answer, Device, Encoding, PrivateInflux, PrivateNats, Store, at, device,
    device_client, expected_counts, fault_config, send, spawn_app,
};

const DEVICES: u64 = 3;
const SAMPLES_PER_BATCH: u64 = 10;

/// An answer and whether InfluxDB was down when the request was sent.
type Answered = (bool, Answer);

/// Sends a batch every 100 ms until `stop`, recording every answer.
async fn stream(
    base: String,
    device: Device,
    influx_down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> (Device, Vec<AcceptedBatch>, Vec<Answered>) {
    let client = device_client();
    let mut accepted = Vec::new();
    let mut answers = Vec::new();
    let mut seq = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let samples = device.samples(seq * SAMPLES_PER_BATCH, SAMPLES_PER_BATCH);
        let down = influx_down.load(Ordering::Relaxed);
        let answer = send(&client, &base, &device, seq, &samples).await;
        if matches!(answer, Answer::Accepted { .. }) {
            accepted.push(AcceptedBatch {
                seq,
                first_ms: samples[0].time_ms,
                last_ms: samples[samples.len() - 1].time_ms,
                samples: SAMPLES_PER_BATCH,
            });
        }
        answers.push((down, answer));
        seq += 1;
    }
    (device, accepted, answers)
}

/// Starts [`stream`] for each of `devices`, sending to `base`.
fn stream_all(
    base: &str,
    devices: Vec<Device>,
    influx_down: &Arc<AtomicBool>,
    stop: &Arc<AtomicBool>,
) -> JoinSet<(Device, Vec<AcceptedBatch>, Vec<Answered>)> {
    let mut streams = JoinSet::new();
    for device in devices {
        streams.spawn(stream(
            base.to_owned(),
            device,
            influx_down.clone(),
            stop.clone(),
        ));
    }
    streams
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_keeps_answering_while_influxdb_is_down_and_the_backlog_drains_after() {
    let nats = PrivateNats::start().await;
    let mut influx = PrivateInflux::start().await;
    let config = fault_config(&nats, &influx.url());
    let app = spawn_app(config.clone()).await;
    let mut devices = Vec::new();
    for index in 0..DEVICES {
        let encoding = if index % 2 == 0 {
            Encoding::Json
        } else {
            Encoding::Protobuf
        };
        devices.push(device(&app, encoding).await);
    }

    let start = Instant::now();
    let influx_down = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut streams = stream_all(&app.address, devices, &influx_down, &stop);
    tokio::time::sleep(Duration::from_secs(5)).await;
    eprintln!("{} SIGKILL influxd for 30 s", at(start));
    influx_down.store(true, Ordering::Relaxed);
    influx.kill();
    tokio::time::sleep(Duration::from_secs(30)).await;
    influx.restart().await;
    influx_down.store(false, Ordering::Relaxed);
    eprintln!("{} influxd is back", at(start));
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);

    let mut accepted = Vec::new();
    let mut answers = Vec::new();
    while let Some(streamed) = streams.join_next().await {
        let (device, batches, device_answers) = streamed.expect("device task");
        accepted.push((device, batches));
        answers.extend(device_answers);
    }
    let during_outage = answers.iter().filter(|(down, _)| *down).count();
    let refused: Vec<&Answered> = answers
        .iter()
        .filter(|(_, answer)| !matches!(answer, Answer::Accepted { .. }))
        .collect();
    eprintln!(
        "{} ingest done: {} answers, {during_outage} while InfluxDB was down, {} not 202",
        at(start),
        answers.len(),
        refused.len()
    );
    assert!(during_outage > 0, "batches were sent during the outage");
    assert!(refused.is_empty(), "answers other than 202: {refused:?}");

    let store = Store::new(&config.influx_url, &config.influx_database);
    let expected = expected_counts(&accepted);
    let drain = Instant::now();
    let counts = store.wait_for(&expected, Duration::from_secs(120)).await;
    eprintln!(
        "{} {} samples queryable after {:.1}s of waiting",
        at(start),
        counts.values().sum::<u64>(),
        drain.elapsed().as_secs_f64()
    );
    assert_eq!(counts, expected, "samples per device in InfluxDB");
    store.assert_exactly(&accepted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_older_than_the_dedup_window_is_kept_until_influxdb_has_it() {
    let nats = PrivateNats::start().await;
    let mut influx = PrivateInflux::start().await;
    // A short window, so the buffer's trimming (every 5 s) looks at batches that aged past
    // it while none could be written yet.
    let config = stride_platform::config::Config {
        telemetry_dedup_window_seconds: 2,
        ..fault_config(&nats, &influx.url())
    };
    let app = spawn_app(config.clone()).await;
    let mut devices = Vec::new();
    for encoding in [Encoding::Json, Encoding::Protobuf] {
        devices.push(device(&app, encoding).await);
    }
    let start = Instant::now();
    eprintln!("{} SIGKILL influxd before the first batch", at(start));
    influx.kill();
    let (influx_down, stop) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut streams = stream_all(&app.address, devices, &influx_down, &stop);
    // Three trimming rounds see batches older than the window, none of them stored.
    tokio::time::sleep(Duration::from_secs(16)).await;
    stop.store(true, Ordering::Relaxed);
    let mut accepted = Vec::new();
    while let Some(streamed) = streams.join_next().await {
        let (device, batches, answers) = streamed.expect("device task");
        assert!(
            answers
                .iter()
                .all(|(_, answer)| matches!(answer, Answer::Accepted { .. })),
            "every batch is accepted while InfluxDB is away"
        );
        accepted.push((device, batches));
    }
    influx.restart().await;
    eprintln!("{} influxd is back", at(start));

    let store = Store::new(&config.influx_url, &config.influx_database);
    let expected = expected_counts(&accepted);
    let counts = store.wait_for(&expected, Duration::from_secs(120)).await;
    assert_eq!(counts, expected, "samples per device in InfluxDB");
    store.assert_exactly(&accepted).await;
}
