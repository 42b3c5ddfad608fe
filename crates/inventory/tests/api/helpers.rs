//! The inventory tests' app, gear and workouts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use stride_events::Envelope;
pub use stride_testkit::*;

/// Identity, training and inventory in one process.
pub async fn spawn_app() -> TestApp {
    spawn(
        &[
            &stride_identity::SERVICE,
            &stride_training::SERVICE,
            &stride_inventory::SERVICE,
        ],
        test_config(),
    )
    .await
}

/// Creates an item of gear and returns it.
pub async fn create_gear(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.post_authed("/v1/gear", token, Some(&body)).await;
    assert_eq!(response.status(), StatusCode::CREATED, "creating {body}");
    response.json().await.expect("json")
}

/// The id of a JSON object.
pub fn id(value: &Value) -> String {
    value["id"].as_str().expect("id").to_owned()
}

/// A finished manual workout through training's API.
pub async fn workout(
    app: &TestApp,
    token: &str,
    sport: &str,
    km: f64,
    start: DateTime<Utc>,
    gear_id: Option<&str>,
) -> Value {
    let minutes = km * 5.0;
    let response = app
        .post_authed(
            "/v1/activities",
            token,
            Some(&json!({
                "sport": sport,
                "status": "finished",
                "start_time": start.to_rfc3339(),
                "gear_id": gear_id,
                "summary": {
                    "elapsed_time_s": minutes * 60.0,
                    "moving_time_s": minutes * 60.0,
                    "distance_m": km * 1000.0
                }
            })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("json")
}

/// Hours ago.
pub fn hours_ago(hours: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::hours(hours)
}

/// The item once `check` holds (waits for the consumer, up to 20 s).
pub async fn gear_when(
    app: &TestApp,
    token: &str,
    gear_id: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let response = app.get_authed(&format!("/v1/gear/{gear_id}"), token).await;
        assert_eq!(response.status(), StatusCode::OK);
        last = response.json().await.expect("json");
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gear never reached the expected state: {last}");
}

/// The distance of an item's wear, metres.
pub fn worn_m(gear: &Value) -> f64 {
    gear["wear"]["distance_m"].as_f64().expect("distance")
}

/// Every event of `event_type` in the test's stream.
pub async fn events_of(app: &TestApp, event_type: &str) -> Vec<Envelope> {
    let client = async_nats::connect(&app.config.nats_url)
        .await
        .expect("nats");
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream
        .get_stream(app.config.stream_name("EVENTS"))
        .await
        .expect("stream");
    let info = stream.info().await.expect("info");
    let subject = stride_events::subject_for(&app.config.nats_prefix, event_type);
    let mut found = Vec::new();
    if info.state.messages == 0 {
        return found;
    }
    for sequence in info.state.first_sequence..=info.state.last_sequence {
        if let Ok(message) = stream.get_raw_message(sequence).await
            && message.subject.as_str() == subject
        {
            found.push(serde_json::from_slice(&message.payload).expect("envelope"));
        }
    }
    found
}

/// Publishes `envelope` as a broker would deliver it again (or out of order).
pub async fn republish(app: &TestApp, envelope: &Envelope) {
    let client = async_nats::connect(&app.config.nats_url)
        .await
        .expect("nats");
    let jetstream = async_nats::jetstream::new(client);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", uuid::Uuid::new_v4().to_string().as_str());
    jetstream
        .publish_with_headers(
            envelope.nats_subject(&app.config.nats_prefix),
            headers,
            serde_json::to_vec(envelope).expect("json").into(),
        )
        .await
        .expect("published")
        .await
        .expect("stored");
}
