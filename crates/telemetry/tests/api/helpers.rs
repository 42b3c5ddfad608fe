//! The telemetry tests' app and devices.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stride_platform::config::Config;
pub use stride_testkit::*;

/// Starts identity, training and telemetry with `config`.
pub async fn spawn_app_with(config: Config) -> TestApp {
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

/// Starts identity, training and telemetry.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_config()).await
}

/// An athlete with a device and an active workout.
pub struct Recording {
    pub account: Account,
    pub device_id: String,
    pub device_token: String,
    pub activity_id: String,
    pub start_ms: i64,
}

/// Registers an athlete, a device and an active workout of `sport` with `visibility`.
pub async fn recording(app: &TestApp, sport: &str, visibility: &str) -> Recording {
    let account = app.new_account().await;
    let device: Value = app
        .post_authed(
            "/v1/devices",
            &account.access_token,
            Some(&json!({"name": "Edge", "kind": "bike_computer"})),
        )
        .await
        .json()
        .await
        .expect("json");
    let device_id = device["id"].as_str().expect("id").to_owned();
    // Start in the past so an hour of samples lies before now.
    let start = chrono::Utc::now() - chrono::Duration::hours(2);
    let activity = app
        .post_authed(
            "/v1/activities",
            &account.access_token,
            Some(&json!({
                "sport": sport,
                "status": "active",
                "visibility": visibility,
                "device_id": device_id,
                "start_time": start.to_rfc3339(),
            })),
        )
        .await;
    assert_eq!(activity.status(), StatusCode::CREATED);
    let activity: Value = activity.json().await.expect("json");
    Recording {
        account,
        device_token: device["token"].as_str().expect("token").to_owned(),
        device_id,
        activity_id: activity["id"].as_str().expect("id").to_owned(),
        start_ms: start.timestamp_millis(),
    }
}

/// `count` one-second samples from `first` seconds after the start: a ride along a line.
pub fn samples(recording: &Recording, first: i64, count: i64) -> Vec<Value> {
    (first..first + count)
        .map(|second| {
            json!({
                "time": recording.start_ms + 60_000 + second * 1000,
                "lat": 45.0 + second as f64 * 0.00005,
                "lon": 7.0,
                "altitude_m": 200.0 + (second % 60) as f64,
                "heart_rate": 120 + (second % 40),
                "cadence": 85,
                "power_w": 200 + (second % 50),
                "speed_mps": 5.5,
            })
        })
        .collect()
}

/// Posts a JSON batch with the device credential.
pub async fn post_batch(
    app: &TestApp,
    recording: &Recording,
    seq: u64,
    samples: Vec<Value>,
) -> reqwest::Response {
    app.client
        .post(app.url("/v1/telemetry/batches"))
        .bearer_auth(&recording.device_token)
        .json(&json!({"activity_id": recording.activity_id, "seq": seq, "samples": samples}))
        .send()
        .await
        .expect("sent")
}

/// Posts a protobuf body (`stride.telemetry.v1.SampleBatch`) with the device credential.
pub async fn post_protobuf(
    app: &TestApp,
    recording: &Recording,
    body: Vec<u8>,
) -> reqwest::Response {
    post_body(app, recording, "application/x-protobuf", body).await
}

/// Posts a body as it is, of the given content type, with the device credential.
pub async fn post_body(
    app: &TestApp,
    recording: &Recording,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .post(app.url("/v1/telemetry/batches"))
        .bearer_auth(&recording.device_token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("sent")
}

/// The activity's streams once `count` samples are queryable (waits for the writer).
pub async fn streams_with(
    app: &TestApp,
    token: &str,
    activity_id: &str,
    query: &str,
    count: usize,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..150 {
        let response = app
            .get_authed(
                &format!("/v1/activities/{activity_id}/streams{query}"),
                token,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        last = response.json().await.expect("json");
        let size = last
            .as_object()
            .and_then(|streams| streams.values().next())
            .and_then(|stream| stream["original_size"].as_u64())
            .unwrap_or(0) as usize;
        if size >= count {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {count} samples became queryable: {last}");
}
