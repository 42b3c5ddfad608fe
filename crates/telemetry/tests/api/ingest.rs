//! `POST /v1/telemetry/batches`.

use std::{io::Write as _, net::TcpStream, time::Duration};

use prost::Message as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use stride_proto::telemetry::v1::{Sample, SampleBatch};

use crate::helpers::{
    PrivateRedis, Recording, TestApp, assert_detail_says, assert_problem, metric_in, post_batch,
    post_body, post_protobuf, recording, samples, spawn, spawn_app, spawn_app_with, streams_with,
    test_config,
};

#[tokio::test]
async fn accepted_batches_become_queryable_and_a_retry_is_stored_once() {
    let app = spawn_app().await;
    let ride = recording(&app, "ride", "private").await;
    let first = post_batch(&app, &ride, 1, samples(&ride, 0, 300)).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let body: Value = first.json().await.expect("json");
    assert_eq!(body, json!({"accepted": 300, "duplicate": false}));
    let retry = post_batch(&app, &ride, 1, samples(&ride, 0, 300)).await;
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    assert_eq!(
        retry.json::<Value>().await.expect("json")["duplicate"],
        true
    );
    let second = post_batch(&app, &ride, 2, samples(&ride, 300, 200)).await;
    assert_eq!(second.status(), StatusCode::ACCEPTED);

    let streams = streams_with(&app, &ride.account.access_token, &ride.activity_id, "", 500).await;
    assert_eq!(
        streams["time"]["original_size"], 500,
        "nothing lost, nothing doubled"
    );
    assert_eq!(
        streams["heartrate"]["data"].as_array().map(Vec::len),
        Some(500)
    );
    assert_eq!(streams["watts"]["data"][0], 200.0);
    assert_eq!(streams["latlng"]["data"][0], json!([45.0, 7.0]));
}

#[tokio::test]
async fn metrics_count_accepted_and_written_samples_and_time_the_broker() {
    let app = spawn_app().await;
    let ride = recording(&app, "ride", "private").await;
    let accepted = post_batch(&app, &ride, 1, samples(&ride, 0, 300)).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let retry = post_batch(&app, &ride, 1, samples(&ride, 0, 300)).await;
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    let invalid = post_batch(&app, &ride, 2, vec![json!({"time": "yesterday"})]).await;
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    streams_with(&app, &ride.account.access_token, &ride.activity_id, "", 300).await;

    // The writer counts right after InfluxDB's answer, a moment after the samples show.
    let mut text = String::new();
    for _ in 0..50 {
        text = app.metrics().await;
        if metric_in(&text, "stride_telemetry_samples_written_total") >= 300.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric_in(&text, "stride_telemetry_samples_accepted_total"),
        300.0,
        "the retry is a duplicate and the invalid batch never reached the broker: {text}"
    );
    assert_eq!(
        metric_in(&text, "stride_telemetry_samples_written_total"),
        300.0,
        "{text}"
    );
    assert_eq!(
        metric_in(&text, "stride_telemetry_buffer_store_seconds_count"),
        2.0,
        "both stored batches were timed, the duplicate too: {text}"
    );
    assert_eq!(
        metric_in(&text, "stride_telemetry_influx_write_failures_total"),
        0.0,
        "{text}"
    );
}

#[tokio::test]
async fn protobuf_batches_are_accepted_too() {
    let app = spawn_app().await;
    let ride = recording(&app, "ride", "private").await;
    let batch = SampleBatch {
        activity_id: ride.activity_id.clone(),
        seq: 9,
        samples: (0..120)
            .map(|second| Sample {
                time_ms: ride.start_ms + 60_000 + second * 1000,
                heart_rate: Some(150.0),
                power_w: Some(230.0),
                ..Sample::default()
            })
            .collect(),
    };
    let response = post_protobuf(&app, &ride, batch.encode_to_vec()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let streams = streams_with(
        &app,
        &ride.account.access_token,
        &ride.activity_id,
        "?types=heartrate",
        120,
    )
    .await;
    assert_eq!(streams["heartrate"]["data"][119], 150.0);
    assert!(streams.get("latlng").is_none(), "only the types asked for");
}

#[tokio::test]
async fn a_protobuf_batch_with_fields_unknown_here_is_taken_and_only_its_samples_are_kept() {
    let app = spawn_app().await;
    let ride = recording(&app, "ride", "private").await;
    let batch = SampleBatch {
        activity_id: ride.activity_id.clone(),
        seq: 1,
        samples: (0..60)
            .map(|second| Sample {
                time_ms: ride.start_ms + second * 1000,
                heart_rate: Some(140.0),
                ..Sample::default()
            })
            .collect(),
    };
    // A newer device's batch: field 15, unknown to this version, with 200 KB in it.
    let mut body = batch.encode_to_vec();
    body.extend_from_slice(&[0x7a, 0xc0, 0x9a, 0x0c]);
    body.extend(std::iter::repeat_n(b'x', 200_000));
    let response = post_protobuf(&app, &ride, body).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let streams = streams_with(
        &app,
        &ride.account.access_token,
        &ride.activity_id,
        "?types=heartrate",
        60,
    )
    .await;
    assert_eq!(streams["heartrate"]["data"][59], 140.0);
    let state = buffer_state(&app).await;
    assert_eq!(state.messages, 1);
    assert!(
        state.bytes < 10_000,
        "the buffer keeps the samples, not the unknown field: {} bytes",
        state.bytes
    );
}

#[tokio::test]
async fn the_buffer_keeps_a_recording_in_under_a_third_of_its_protobuf_and_reads_it_back_exactly() {
    let app = spawn_app().await;
    let ride = recording(&app, "ride", "private").await;
    // A second-by-second ride as a device records it: GPS at full precision, the rest
    // rounded to what the sensors resolve.
    let batch = SampleBatch {
        activity_id: ride.activity_id.clone(),
        seq: 1,
        samples: (0..1_000i64)
            .map(|second| {
                let t = second as f64;
                Sample {
                    time_ms: ride.start_ms + 60_000 + second * 1000,
                    lat: Some(46.05 + (t * 0.0007).sin() * 0.01),
                    lon: Some(14.5 + (t * 0.0005).cos() * 0.01),
                    altitude_m: Some(300.0 + ((t * 0.01).sin() * 400.0).round() / 10.0),
                    heart_rate: Some((140.0 + (t * 0.02).sin() * 15.0).round()),
                    cadence: Some((85.0 + (t * 0.05).sin() * 4.0).round()),
                    power_w: Some((210.0 + (t * 0.07).sin() * 40.0).round()),
                    speed_mps: Some(((8.2 + (t * 0.03).sin() * 0.4) * 100.0).round() / 100.0),
                    distance_m: Some((t * 82.0).round() / 10.0),
                    temperature_c: None,
                }
            })
            .collect(),
    };
    let body = batch.encode_to_vec();
    let response = post_protobuf(&app, &ride, body.clone()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let state = buffer_state(&app).await;
    assert!(
        state.bytes * 3 < body.len() as u64,
        "the buffer holds {} bytes of a {}-byte batch",
        state.bytes,
        body.len()
    );
    let streams = streams_with(
        &app,
        &ride.account.access_token,
        &ride.activity_id,
        "?types=latlng,altitude,heartrate,watts,velocity_smooth,distance",
        1_000,
    )
    .await;
    for (at, sample) in [0usize, 1, 499, 999].map(|at| (at, &batch.samples[at])) {
        assert_eq!(
            streams["latlng"]["data"][at],
            json!([sample.lat, sample.lon]),
            "sample {at}"
        );
        assert_eq!(streams["altitude"]["data"][at], json!(sample.altitude_m));
        assert_eq!(streams["heartrate"]["data"][at], json!(sample.heart_rate));
        assert_eq!(streams["watts"]["data"][at], json!(sample.power_w));
        assert_eq!(streams["distance"]["data"][at], json!(sample.distance_m));
    }
}

#[tokio::test]
async fn a_bad_batch_says_which_sample_and_why_and_none_of_it_is_kept() {
    let app = spawn_app().await;
    let ride = recording(&app, "ride", "private").await;
    let mut bad = samples(&ride, 0, 50);
    bad[17]["heart_rate"] = json!(400);
    let problem = assert_problem(
        post_batch(&app, &ride, 1, bad).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_detail_says(&problem, "sample 17");
    assert_detail_says(&problem, "heart_rate");
    let mut backwards = samples(&ride, 0, 10);
    backwards.swap(3, 4);
    let problem = assert_problem(
        post_batch(&app, &ride, 2, backwards).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_detail_says(&problem, "sample 4");
    for body in [
        json!({"activity_id": ride.activity_id, "seq": 3, "samples": []}),
        json!({"activity_id": ride.activity_id, "seq": 3, "samples": [{"time": "yesterday", "heart_rate": 100}]}),
        json!({"activity_id": ride.activity_id, "seq": 3, "samples": [{"time": 1, "heart_rate": 100}]}),
        json!({"activity_id": "nope", "seq": 3, "samples": samples(&ride, 0, 1)}),
        json!({"activity_id": ride.activity_id, "samples": samples(&ride, 0, 1)}),
    ] {
        let response = app
            .client
            .post(app.url("/v1/telemetry/batches"))
            .bearer_auth(&ride.device_token)
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
    let too_many = samples(&ride, 0, 3601);
    let problem = assert_problem(
        post_batch(&app, &ride, 4, too_many).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_detail_says(&problem, "at most 3600 samples, this one has 3601");
    // Tiny JSON samples near the 1 MiB limit: refused with their count, as protobuf's are.
    let swollen = format!(
        r#"{{"activity_id":"{}","seq":4,"samples":[{}]}}"#,
        ride.activity_id,
        [r#"{"time":1}"#; 90_000].join(",")
    );
    let response = post_body(&app, &ride, "application/json", swollen).await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_detail_says(&problem, "at most 3600 samples, this one has 90000");
    let garbage = post_protobuf(&app, &ride, vec![0xff; 64]).await;
    assert_problem(garbage, StatusCode::BAD_REQUEST).await;
    // Protobuf samples are counted before they are read: 3,601 empty ones (two bytes each)
    // are refused as too many, not read into memory first.
    let swollen = post_protobuf(&app, &ride, [0x1a, 0x00].repeat(3601)).await;
    let problem = assert_problem(swollen, StatusCode::BAD_REQUEST).await;
    assert_detail_says(&problem, "at most 3600 samples, this one has 3601");
    let text = app
        .client
        .post(app.url("/v1/telemetry/batches"))
        .bearer_auth(&ride.device_token)
        .body("hr=150")
        .send()
        .await
        .expect("sent");
    assert_problem(text, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // A valid batch afterwards shows that nothing of the refused ones was kept.
    assert_eq!(
        post_batch(&app, &ride, 5, samples(&ride, 0, 10))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let streams = streams_with(&app, &ride.account.access_token, &ride.activity_id, "", 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = streams_with(&app, &ride.account.access_token, &ride.activity_id, "", 10).await;
    assert_eq!(streams["time"]["original_size"], 10);
    assert_eq!(again["time"]["original_size"], 10);
}

#[tokio::test]
async fn only_a_valid_device_of_the_owner_may_send_and_only_while_recording() {
    let app = spawn_app_with(stride_platform::config::Config {
        device_auth_cache_seconds: 1,
        ..test_config()
    })
    .await;
    let ride = recording(&app, "ride", "private").await;
    let other = recording(&app, "run", "private").await;
    let anonymous = app
        .client
        .post(app.url("/v1/telemetry/batches"))
        .json(&json!({"activity_id": ride.activity_id, "seq": 1, "samples": samples(&ride, 0, 1)}))
        .send()
        .await
        .expect("sent");
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    // A user's access token is not a device credential.
    let user_token = app
        .client
        .post(app.url("/v1/telemetry/batches"))
        .bearer_auth(&ride.account.access_token)
        .json(&json!({"activity_id": ride.activity_id, "seq": 1, "samples": samples(&ride, 0, 1)}))
        .send()
        .await
        .expect("sent");
    assert_problem(user_token, StatusCode::UNAUTHORIZED).await;
    // Another athlete's device cannot write into this workout.
    let mut intruder = samples(&ride, 0, 5);
    intruder.truncate(5);
    let foreign = app
        .client
        .post(app.url("/v1/telemetry/batches"))
        .bearer_auth(&other.device_token)
        .json(&json!({"activity_id": ride.activity_id, "seq": 1, "samples": intruder}))
        .send()
        .await
        .expect("sent");
    assert_problem(foreign, StatusCode::NOT_FOUND).await;

    // Finished: refused within the cache time.
    let finish = app
        .post_authed(
            &format!("/v1/activities/{}/finish", ride.activity_id),
            &ride.account.access_token,
            None,
        )
        .await;
    assert_eq!(finish.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let late = post_batch(&app, &ride, 2, samples(&ride, 0, 5)).await;
    let problem = assert_problem(late, StatusCode::CONFLICT).await;
    assert_detail_says(&problem, "finished");

    // Revoked: refused within the cache time.
    assert_eq!(
        post_batch(&app, &other, 1, samples(&other, 0, 5))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let revoke = app
        .delete_authed(
            &format!("/v1/devices/{}", other.device_id),
            &other.account.access_token,
        )
        .await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_problem(
        post_batch(&app, &other, 2, samples(&other, 5, 5)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn a_device_that_sends_too_fast_is_told_to_slow_down() {
    let app = spawn_app_with(stride_platform::config::Config {
        device_batches_per_second: 3,
        ..test_config()
    })
    .await;
    let ride = recording(&app, "ride", "private").await;
    let mut statuses = Vec::new();
    for seq in 0..12 {
        let response = post_batch(&app, &ride, seq, samples(&ride, seq as i64 * 2, 2)).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
        }
        statuses.push(response.status());
    }
    assert!(statuses.contains(&StatusCode::ACCEPTED));
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

/// Sleeps until just after the next Unix second starts; that second.
async fn start_of_a_second() -> i64 {
    let into = chrono::Utc::now().timestamp_subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1_000 - into.min(999)) + 5)).await;
    chrono::Utc::now().timestamp()
}

/// Posts `count` two-sample batches of `ride` to `app`, numbered on from `seq`; their statuses.
async fn send(app: &TestApp, ride: &Recording, seq: &mut u64, count: u64) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for _ in 0..count {
        let batch = samples(ride, *seq as i64 * 2, 2);
        statuses.push(post_batch(app, ride, *seq, batch).await.status());
        *seq += 1;
    }
    statuses
}

/// Waits, for most of a second, until Redis holds `count` under `key`; whether it did.
async fn count_reaches(
    redis: &mut redis::aio::MultiplexedConnection,
    key: &str,
    count: u32,
) -> bool {
    for _ in 0..90 {
        let held: Option<u32> = redis::cmd("GET")
            .arg(key)
            .query_async(redis)
            .await
            .expect("Redis answers");
        if held == Some(count) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn replicas_share_a_devices_count_so_it_is_held_to_its_limit_on_both() {
    let redis = PrivateRedis::start().await;
    let config = stride_platform::config::Config {
        redis_url: redis.url().into(),
        device_batches_per_second: 10,
        ..test_config()
    };
    let first = spawn_app_with(config.clone()).await;
    // A second telemetry process, as a load balancer's other replica: the same broker,
    // Redis and prefixes, and the first process's identity and training.
    let second = spawn(
        &[&stride_telemetry::SERVICE],
        stride_platform::config::Config {
            identity_grpc_url: Some(first.grpc_address.clone()),
            training_grpc_url: Some(first.grpc_address.clone()),
            jwks_url: Some(first.url("/.well-known/jwks.json")),
            ..config.clone()
        },
    )
    .await;
    let ride = recording(&first, "ride", "private").await;
    let mut connection = redis::Client::open(redis.url())
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let mut seq = 0;
    // Each try must fit in one second: one that does not is tried again.
    for _ in 0..5 {
        let second_now = start_of_a_second().await;
        let key = format!(
            "{}rate:device:{}:{second_now}",
            config.redis_prefix, ride.device_id
        );
        let on_first = send(&first, &ride, &mut seq, 6).await;
        let shared = count_reaches(&mut connection, &key, 6).await;
        let one_on_second = send(&second, &ride, &mut seq, 1).await;
        let shared = shared && count_reaches(&mut connection, &key, 7).await;
        // The second process has its answer from Redis a moment after Redis counted.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let more_on_second = send(&second, &ride, &mut seq, 5).await;
        if !shared || chrono::Utc::now().timestamp() != second_now {
            continue;
        }
        assert_eq!(on_first, [StatusCode::ACCEPTED; 6]);
        assert_eq!(one_on_second, [StatusCode::ACCEPTED]);
        assert_eq!(
            more_on_second,
            [
                StatusCode::ACCEPTED,
                StatusCode::ACCEPTED,
                StatusCode::ACCEPTED,
                StatusCode::TOO_MANY_REQUESTS,
                StatusCode::TOO_MANY_REQUESTS
            ],
            "the second process knew of the first's six: 10 in all"
        );
        return;
    }
    panic!("no try fitted in one second");
}

#[tokio::test]
async fn with_redis_away_ingest_still_stores_batches_and_holds_devices_to_their_limit() {
    let mut redis = PrivateRedis::start().await;
    let app = spawn_app_with(stride_platform::config::Config {
        redis_url: redis.url().into(),
        device_batches_per_second: 3,
        ..test_config()
    })
    .await;
    let ride = recording(&app, "ride", "private").await;
    let mut seq = 0;
    assert_eq!(send(&app, &ride, &mut seq, 1).await, [StatusCode::ACCEPTED]);
    redis.kill();
    let mut accepted = 1;
    let mut held = false;
    for _ in 0..5 {
        let second_now = start_of_a_second().await;
        let statuses = send(&app, &ride, &mut seq, 5).await;
        accepted += statuses
            .iter()
            .filter(|status| **status == StatusCode::ACCEPTED)
            .count();
        if chrono::Utc::now().timestamp() != second_now {
            continue;
        }
        assert_eq!(
            statuses,
            [
                StatusCode::ACCEPTED,
                StatusCode::ACCEPTED,
                StatusCode::ACCEPTED,
                StatusCode::TOO_MANY_REQUESTS,
                StatusCode::TOO_MANY_REQUESTS
            ]
        );
        held = true;
        break;
    }
    assert!(held, "no try fitted in one second");
    // Sessions need Redis to read the streams back.
    redis.restart().await;
    let streams = streams_with(
        &app,
        &ride.account.access_token,
        &ride.activity_id,
        "",
        accepted * 2,
    )
    .await;
    assert_eq!(
        streams["time"]["original_size"],
        accepted * 2,
        "every accepted batch is stored"
    );
}

#[tokio::test]
async fn past_its_in_flight_limit_ingest_sheds_batches_that_a_retry_stores_once() {
    let app = spawn_app_with(stride_platform::config::Config {
        ingest_max_in_flight: 1,
        device_batches_per_second: 100_000,
        ..test_config()
    })
    .await;
    let ride = std::sync::Arc::new(recording(&app, "ride", "private").await);
    let app = std::sync::Arc::new(app);
    let sends = (0..80u64).map(|seq| {
        let (app, ride) = (app.clone(), ride.clone());
        tokio::spawn(async move {
            let response = post_batch(&app, &ride, seq, samples(&ride, seq as i64 * 10, 10)).await;
            (seq, response)
        })
    });
    let (mut accepted, mut shed) = (0, Vec::new());
    for send in futures_util::future::join_all(sends).await {
        let (seq, response) = send.expect("task");
        match response.status() {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(response.headers().contains_key("retry-after"));
                let problem = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
                assert_detail_says(&problem, "capacity");
                shed.push(seq);
            }
            other => panic!("batch {seq}: unexpected {other}"),
        }
    }
    assert!(accepted > 0, "nothing was accepted");
    assert!(
        !shed.is_empty(),
        "80 concurrent batches never exceeded a limit of 1"
    );
    // A shed batch was not kept: sent again one at a time, it is new, not a duplicate.
    for seq in &shed {
        let retry = post_batch(&app, &ride, *seq, samples(&ride, *seq as i64 * 10, 10)).await;
        assert_eq!(retry.status(), StatusCode::ACCEPTED);
        assert_eq!(
            retry.json::<Value>().await.expect("json"),
            json!({"accepted": 10, "duplicate": false})
        );
    }
    // And every batch is stored exactly once.
    let streams = streams_with(&app, &ride.account.access_token, &ride.activity_id, "", 800).await;
    assert_eq!(streams["time"]["original_size"], 800, "nothing lost");
}

/// Starts a batch request that declares `declared` bytes of body (chunked when `None`) and
/// sends only its first bytes, so that the server holds it in flight until the socket is
/// dropped.
fn open_batch_request(app: &TestApp, recording: &Recording, declared: Option<usize>) -> TcpStream {
    let host = app.address.trim_start_matches("http://");
    let mut socket = TcpStream::connect(host).expect("the server listens");
    let (length, first) = match declared {
        Some(bytes) => (format!("content-length: {bytes}"), "{\"samples\": ["),
        None => (
            "transfer-encoding: chunked".to_owned(),
            "d\r\n{\"samples\": [\r\n",
        ),
    };
    write!(
        socket,
        "POST /v1/telemetry/batches HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\n{length}\r\n\r\n{first}",
        recording.device_token
    )
    .expect("the head is sent");
    socket
}

/// Waits until the bytes ingest counts in flight are `bytes`.
async fn until_in_flight(app: &TestApp, bytes: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = app.metric("stride_telemetry_ingest_in_flight_bytes").await;
        if now == bytes {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "in flight: {now}, not {bytes}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ingest_sheds_by_the_bytes_in_flight_counting_each_body_by_its_declared_length() {
    let app = spawn_app_with(stride_platform::config::Config {
        ingest_max_in_flight_bytes: 1024 * 1024,
        device_batches_per_second: 100_000,
        ..test_config()
    })
    .await;
    let ride = recording(&app, "ride", "private").await;
    let (big, small) = (samples(&ride, 0, 3_000), samples(&ride, 3_000, 10));

    // A body that declares 800,000 bytes leaves 248,576 of the 1 MiB for others: a batch of
    // 3,000 samples (about 380 KB) is refused at once, and a small one still goes through.
    let held = open_batch_request(&app, &ride, Some(800_000));
    until_in_flight(&app, 800_000.0).await;
    let refused = post_batch(&app, &ride, 1, big.clone()).await;
    assert!(refused.headers().contains_key("retry-after"));
    let problem = assert_problem(refused, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_detail_says(&problem, "capacity");
    let fits = post_batch(&app, &ride, 2, small.clone()).await;
    assert_eq!(fits.status(), StatusCode::ACCEPTED, "a small batch fits");
    drop(held);
    until_in_flight(&app, 0.0).await;

    // A chunked body, whose length nobody knows, counts as the largest batch: while it is
    // open even a small batch waits its turn.
    let held = open_batch_request(&app, &ride, None);
    until_in_flight(&app, 1_048_576.0).await;
    let refused = post_batch(&app, &ride, 3, samples(&ride, 3_010, 10)).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.metric("stride_telemetry_ingest_shed_total").await, 2.0);
    drop(held);
    until_in_flight(&app, 0.0).await;

    // Sent again, the refused batches are new: nothing of them was kept.
    for (seq, batch) in [(1, big), (3, samples(&ride, 3_010, 10))] {
        let retry = post_batch(&app, &ride, seq, batch).await;
        assert_eq!(retry.status(), StatusCode::ACCEPTED);
        assert_eq!(
            retry.json::<Value>().await.expect("json")["duplicate"],
            false
        );
    }
    let streams = streams_with(
        &app,
        &ride.account.access_token,
        &ride.activity_id,
        "",
        3_020,
    )
    .await;
    assert_eq!(
        streams["time"]["original_size"], 3_020,
        "nothing lost or doubled"
    );
}

/// What the telemetry buffer holds, as the broker reports it.
async fn buffer_state(app: &TestApp) -> async_nats::jetstream::stream::State {
    let client = async_nats::connect(&app.config.nats_url)
        .await
        .expect("the broker answers");
    let mut stream = async_nats::jetstream::new(client)
        .get_stream(stride_telemetry::stream_name(&app.config))
        .await
        .expect("the TELEMETRY stream");
    stream.info().await.expect("stream info").state.clone()
}

/// The telemetry buffer's messages held, and the sequence of the last one ever stored.
async fn buffer(app: &TestApp) -> (u64, u64) {
    let state = buffer_state(app).await;
    (state.messages, state.last_sequence)
}

/// [`buffer`] once it holds nothing, or after a few trimming rounds.
async fn buffer_once_trimmed(app: &TestApp) -> (u64, u64) {
    let deadline = tokio::time::Instant::now() + stride_telemetry::writer::TRIM_EVERY * 6;
    let mut state = buffer(app).await;
    while state.0 > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        state = buffer(app).await;
    }
    state
}

#[tokio::test]
async fn stored_batches_leave_the_buffer_after_the_dedup_window() {
    let app = spawn_app_with(stride_platform::config::Config {
        telemetry_dedup_window_seconds: 2,
        ..test_config()
    })
    .await;
    let ride = recording(&app, "ride", "private").await;
    for (seq, first) in [(1, 0), (2, 300)] {
        let sent = post_batch(&app, &ride, seq, samples(&ride, first, 300)).await;
        assert_eq!(sent.status(), StatusCode::ACCEPTED);
    }
    let again = post_batch(&app, &ride, 2, samples(&ride, 300, 300)).await;
    assert_eq!(
        again.json::<Value>().await.expect("json")["duplicate"],
        true,
        "within the window a batch sent again is known"
    );
    streams_with(&app, &ride.account.access_token, &ride.activity_id, "", 600).await;
    assert_eq!(buffer(&app).await.1, 2, "two batches stored in the buffer");
    // Stored in InfluxDB and older than the window: the writers trim them.
    assert_eq!(
        buffer_once_trimmed(&app).await,
        (0, 2),
        "the stored batches left the buffer"
    );
    // Past the window a batch sent again is stored again, and rewrites the same points.
    let late = post_batch(&app, &ride, 1, samples(&ride, 0, 300)).await;
    assert_eq!(
        late.json::<Value>().await.expect("json"),
        json!({"accepted": 300, "duplicate": false})
    );
    let third = post_batch(&app, &ride, 3, samples(&ride, 600, 100)).await;
    assert_eq!(third.status(), StatusCode::ACCEPTED);
    let streams = streams_with(&app, &ride.account.access_token, &ride.activity_id, "", 700).await;
    assert_eq!(
        streams["time"]["original_size"], 700,
        "nothing lost, nothing doubled"
    );
    assert_eq!(buffer(&app).await.1, 4);
}

#[tokio::test]
async fn a_full_buffer_refuses_batches_until_it_drains() {
    let app = spawn_app_with(stride_platform::config::Config {
        telemetry_buffer_max_bytes: 1024 * 1024,
        telemetry_dedup_window_seconds: 2,
        device_batches_per_second: 100_000,
        ..test_config()
    })
    .await;
    let ride = recording(&app, "ride", "private").await;
    // Fifty samples a second, so that 1,000 batches stay in the workout's past.
    let batch = |seq: u64| -> Vec<Value> {
        let first = (seq as i64 - 1) * 300;
        samples(&ride, first, 300)
            .into_iter()
            .enumerate()
            .map(|(index, mut sample)| {
                sample["time"] = json!(ride.start_ms + 60_000 + (first + index as i64) * 20);
                sample
            })
            .collect()
    };
    // About 3 KB a batch in the buffer: it is full after some 330 of them.
    let mut accepted = 0;
    let mut refused = None;
    for seq in 1..=1_000u64 {
        let sent = post_batch(&app, &ride, seq, batch(seq)).await;
        match sent.status() {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                let retry_after = sent.headers().get("retry-after").cloned();
                let problem = assert_problem(sent, StatusCode::SERVICE_UNAVAILABLE).await;
                assert_detail_says(&problem, "full");
                assert_eq!(
                    retry_after.as_ref().and_then(|value| value.to_str().ok()),
                    Some("30")
                );
                refused = Some(seq);
                break;
            }
            other => panic!("batch {seq}: unexpected {other}"),
        }
    }
    let refused = refused.expect("a 1 MiB buffer filled up within 1,000 batches of 3 KB");
    assert!(accepted >= 20, "only {accepted} batches fitted");
    // Nothing of the refused batch was kept.
    assert_eq!(buffer(&app).await.1, accepted, "batches stored");
    let count = (accepted * 300) as usize;
    streams_with(
        &app,
        &ride.account.access_token,
        &ride.activity_id,
        "",
        count,
    )
    .await;
    // Once InfluxDB has them and the window has passed, the writers trim them and the
    // device's batch is taken.
    buffer_once_trimmed(&app).await;
    let again = post_batch(&app, &ride, refused, batch(refused)).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let streams = streams_with(
        &app,
        &ride.account.access_token,
        &ride.activity_id,
        "",
        count + 300,
    )
    .await;
    assert_eq!(streams["time"]["original_size"], count as u64 + 300);
}
