//! `GET /v1/activities/{id}/live`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, post_batch, recording, samples, spawn_app};

/// Reads server-sent events until `count` events arrived or the deadline passed.
async fn read_events(mut response: reqwest::Response, count: usize) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.len() < count {
        let chunk = tokio::time::timeout_at(deadline, response.chunk()).await;
        let Ok(Ok(Some(chunk))) = chunk else { break };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim());
                }
            }
            if !data.is_empty() {
                events.push((name, serde_json::from_str(&data).expect("json data")));
            }
        }
    }
    events
}

async fn connect(app: &TestApp, token: &str, activity_id: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/v1/activities/{activity_id}/live")))
        .bearer_auth(token)
        .send()
        .await
        .expect("connected")
}

#[tokio::test]
async fn a_viewer_sees_each_accepted_sample_and_the_latest_one_on_connect() {
    let app = spawn_app().await;
    let ride = recording(&app, "ride", "public").await;
    let viewer = app.new_account().await;
    let stream = connect(&app, &viewer.access_token, &ride.activity_id).await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    // Give the subscription a moment to be registered at the broker.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        post_batch(&app, &ride, 1, samples(&ride, 0, 5))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let events = read_events(stream, 5).await;
    assert_eq!(events.len(), 5);
    assert!(events.iter().all(|(name, _)| name == "sample"));
    assert_eq!(events[0].1["heart_rate"], 120.0);
    assert_eq!(events[4].1["time"], ride.start_ms + 60_000 + 4_000);

    // A late viewer starts from the latest position.
    let late = connect(&app, &ride.account.access_token, &ride.activity_id).await;
    let first = read_events(late, 1).await;
    assert_eq!(first[0].0, "latest");
    assert_eq!(first[0].1["time"], ride.start_ms + 60_000 + 4_000);
    assert!(first[0].1["lat"].is_number());
}

#[tokio::test]
async fn private_live_views_are_for_their_owner_only() {
    let app = spawn_app().await;
    let ride = recording(&app, "run", "private").await;
    let stranger = app.new_account().await;
    assert_problem(
        connect(&app, &stranger.access_token, &ride.activity_id).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let anonymous = app
        .client
        .get(app.url(&format!("/v1/activities/{}/live", ride.activity_id)))
        .send()
        .await
        .expect("sent");
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        connect(&app, &ride.account.access_token, &ride.activity_id)
            .await
            .status(),
        StatusCode::OK
    );
}
