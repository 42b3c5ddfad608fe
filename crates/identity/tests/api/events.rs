//! Identity's events reach the broker through the outbox.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use stride_events::{
    Envelope,
    identity::{UserDeleted, UserRegistered, UserUpdated},
};

use crate::helpers::{TestApp, spawn_app};

/// The last event of `event_type` on the broker, waiting for the relay up to 10 s.
async fn last_event(app: &TestApp, event_type: &str) -> Envelope {
    let client = async_nats::connect(&app.config.nats_url)
        .await
        .expect("nats");
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream
        .get_stream(app.config.stream_name("EVENTS"))
        .await
        .expect("the EVENTS stream exists");
    let subject = stride_events::subject_for(&app.config.nats_prefix, event_type);
    for _ in 0..100 {
        if let Ok(message) = stream.get_last_raw_message_by_subject(&subject).await {
            let envelope: Envelope = serde_json::from_slice(&message.payload).expect("an envelope");
            return envelope;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {event_type} event reached the broker");
}

#[tokio::test]
async fn registering_updating_and_deleting_an_account_publish_their_events() {
    let app = spawn_app().await;
    let account = app.new_account().await;

    let registered = last_event(&app, "identity.user_registered.v1").await;
    assert_eq!(registered.producer, "identity");
    assert_eq!(registered.subject, account.user_id.to_string());
    let data: UserRegistered = registered.decode().expect("typed");
    assert_eq!(data.user_id, account.user_id);

    let patched = app
        .patch_authed(
            "/v1/me",
            &account.access_token,
            &json!({"time_zone": "Asia/Tokyo", "weight_kg": 61.0}),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let updated: UserUpdated = last_event(&app, "identity.user_updated.v1")
        .await
        .decode()
        .expect("typed");
    assert_eq!(updated.time_zone, "Asia/Tokyo");
    assert_eq!(updated.weight_kg, Some(61.0));

    let deleted = app.delete_authed("/v1/me", &account.access_token).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone: UserDeleted = last_event(&app, "identity.user_deleted.v1")
        .await
        .decode()
        .expect("typed");
    assert_eq!(gone.user_id, account.user_id);

    // The relay marks an event sent just after the broker stored it, so the last event can
    // be seen on the broker a moment before its mark.
    let mut unsent = i64::MAX;
    for _ in 0..50 {
        unsent = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(&app.db)
            .await
            .expect("count");
        if unsent == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(unsent, 0, "the relay marked every event sent");
}

#[tokio::test]
async fn a_refused_change_publishes_nothing() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let refused = app
        .patch_authed(
            "/v1/me",
            &account.access_token,
            &json!({"time_zone": "Nowhere/Land"}),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let updates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE event_type = 'identity.user_updated.v1'",
    )
    .fetch_one(&app.db)
    .await
    .expect("count");
    assert_eq!(updates, 0);
}
