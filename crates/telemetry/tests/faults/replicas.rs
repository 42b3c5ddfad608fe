//! Two telemetry processes behind one broker and one InfluxDB.

use std::time::{Duration, Instant};

use stride_platform::config::Config;
use tokio::task::JoinSet;

use crate::helpers::{
    AcceptedBatch, CountingProxy, Device, Encoding, PrivateInflux, PrivateNats, Store, Tally, at,
    deliver, device, device_client, expected_counts, fault_config, spawn, spawn_app,
};

const DEVICES: u64 = 4;
const BATCHES_PER_DEVICE: u64 = 16;
const SAMPLES_PER_BATCH: u64 = 250;

/// Sends a device's batches to the two processes in turn, as a load balancer would.
async fn record(
    bases: [String; 2],
    device: Device,
    deadline: Instant,
) -> (Device, Vec<AcceptedBatch>, Tally) {
    let client = device_client();
    let mut tally = Tally::default();
    let mut accepted = Vec::new();
    for seq in 0..BATCHES_PER_DEVICE {
        let base = &bases[(seq % 2) as usize];
        let samples = device.samples(seq * SAMPLES_PER_BATCH, SAMPLES_PER_BATCH);
        if let Some(batch) =
            deliver(&client, base, &device, seq, &samples, deadline, &mut tally).await
        {
            accepted.push(batch);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (device, accepted, tally)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_telemetry_processes_share_the_load() {
    let nats = PrivateNats::start().await;
    let influx = PrivateInflux::start().await;
    // Each process reaches InfluxDB through its own counting proxy, which tells which
    // process's writer wrote.
    let through_first = CountingProxy::start(&influx.url()).await;
    let through_second = CountingProxy::start(&influx.url()).await;
    let config = fault_config(&nats, &through_first.url);
    let first = spawn_app(config.clone()).await;
    // The second process runs only telemetry: same broker, InfluxDB, Redis and database
    // prefixes; identity, training and the signing keys are the first process's.
    let second = spawn(
        &[&stride_telemetry::SERVICE],
        Config {
            influx_url: through_second.url.clone(),
            identity_grpc_url: Some(first.grpc_address.clone()),
            training_grpc_url: Some(first.grpc_address.clone()),
            jwks_url: Some(first.url("/.well-known/jwks.json")),
            ..config.clone()
        },
    )
    .await;
    let mut devices = Vec::new();
    for index in 0..DEVICES {
        let encoding = if index % 2 == 0 {
            Encoding::Protobuf
        } else {
            Encoding::Json
        };
        devices.push(device(&first, encoding).await);
    }

    // A live viewer connected to the second process follows the first device's workout,
    // whose batches go to both processes.
    let viewer = live_viewer(&second, &devices[0]).await;

    let start = Instant::now();
    let deadline = start + Duration::from_secs(120);
    let mut recorders = JoinSet::new();
    for device in devices {
        recorders.spawn(record(
            [first.address.clone(), second.address.clone()],
            device,
            deadline,
        ));
    }
    let mut accepted = Vec::new();
    let mut tally = Tally::default();
    while let Some(recorded) = recorders.join_next().await {
        let (device, batches, device_tally) = recorded.expect("device task");
        tally.add(&device_tally);
        accepted.push((device, batches));
    }
    eprintln!("{} ingest done: {tally:?}", at(start));
    assert!(tally.unexpected.is_empty(), "{:?}", tally.unexpected);
    let accepted_batches: u64 = accepted
        .iter()
        .map(|(_, batches)| batches.len() as u64)
        .sum();
    assert_eq!(accepted_batches, DEVICES * BATCHES_PER_DEVICE);

    let store = Store::new(&influx.url(), &config.influx_database);
    let expected = expected_counts(&accepted);
    let counts = store.wait_for(&expected, Duration::from_secs(120)).await;
    let (first_writes, first_points) = through_first.written();
    let (second_writes, second_points) = through_second.written();
    eprintln!(
        "{} {} samples queryable; first process wrote {first_points} points in {first_writes} \
         writes, second {second_points} in {second_writes}",
        at(start),
        counts.values().sum::<u64>()
    );
    assert_eq!(counts, expected, "samples per device in InfluxDB");
    assert_eq!(
        counts.values().sum::<u64>(),
        DEVICES * BATCHES_PER_DEVICE * SAMPLES_PER_BATCH
    );
    store.assert_exactly(&accepted).await;
    assert!(
        first_points > 0 && second_points > 0,
        "both writers took part: {first_points} and {second_points} points"
    );
    assert!(
        first_points + second_points >= DEVICES * BATCHES_PER_DEVICE * SAMPLES_PER_BATCH,
        "every stored point was written by one of them"
    );
    let seen = viewer.await.expect("viewer task");
    assert_eq!(
        seen,
        BATCHES_PER_DEVICE * SAMPLES_PER_BATCH,
        "the viewer on the second process saw every sample, half of them posted to the first"
    );
}

/// Follows `device`'s workout on `app`'s live view; resolves to the number of `sample`
/// events seen once all of the device's samples arrived or 60 s passed.
async fn live_viewer(
    app: &crate::helpers::TestApp,
    device: &Device,
) -> tokio::task::JoinHandle<u64> {
    let mut response = app
        .client
        .get(app.url(&format!("/v1/activities/{}/live", device.activity_id)))
        .bearer_auth(&device.access_token)
        .send()
        .await
        .expect("live view");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    // Let the subscription reach the broker before anything is posted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::spawn(async move {
        let wanted = BATCHES_PER_DEVICE * SAMPLES_PER_BATCH;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut seen = 0;
        let mut carry = String::new();
        while seen < wanted {
            let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await
            else {
                break;
            };
            carry.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = carry.find('\n') {
                let line: String = carry.drain(..=end).collect();
                if line.trim_end() == "event: sample" {
                    seen += 1;
                }
            }
        }
        seen
    })
}
