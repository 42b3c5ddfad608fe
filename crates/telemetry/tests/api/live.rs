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

#[tokio::test]
async fn only_workouts_someone_watches_cross_the_broker_live() {
    use futures_util::StreamExt as _;

    let app = spawn_app().await;
    let ride = recording(&app, "ride", "public").await;
    let viewer = app.new_account().await;
    let nats = async_nats::connect(&app.config.nats_url)
        .await
        .expect("nats");
    let mut on_the_wire = nats
        .subscribe(format!(
            "{}live.{}",
            app.config.nats_prefix, ride.activity_id
        ))
        .await
        .expect("subscribed");
    nats.flush().await.expect("subscription registered");

    // Nobody watches: the batch is stored and its last sample kept, but nothing is published.
    assert_eq!(
        post_batch(&app, &ride, 1, samples(&ride, 0, 5))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(1), on_the_wire.next())
            .await
            .is_err(),
        "a batch nobody watches was published"
    );

    // Once a viewer is connected (the answer comes after the watch is registered), every
    // batch crosses, and the viewer starts from the unpublished batch's last sample.
    let stream = connect(&app, &viewer.access_token, &ride.activity_id).await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(
        post_batch(&app, &ride, 2, samples(&ride, 5, 5))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    tokio::time::timeout(Duration::from_secs(5), on_the_wire.next())
        .await
        .expect("a watched batch is published")
        .expect("a message");
    let events = read_events(stream, 6).await;
    assert_eq!(events.len(), 6);
    assert_eq!(events[0].0, "latest");
    assert_eq!(events[0].1["time"], ride.start_ms + 60_000 + 4_000);
    assert!(events[1..].iter().all(|(name, _)| name == "sample"));
    assert_eq!(events[1].1["time"], ride.start_ms + 60_000 + 5_000);
    assert_eq!(events[5].1["time"], ride.start_ms + 60_000 + 9_000);
}
