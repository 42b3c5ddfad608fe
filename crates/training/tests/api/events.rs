//! Training's events on the broker, the gRPC `Activities` service, and erasure when a user
//! is deleted.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stride_events::training::{
    ActivityDeleted, ActivityFinished, ActivityStarted, ActivityUpdated,
};
use stride_proto::training::v1::{
    GetActivityRequest, ListSummariesRequest, activities_client::ActivitiesClient,
};

use crate::helpers::{create, manual_run, spawn_app};

#[tokio::test]
async fn finishing_changing_and_deleting_publish_what_consumers_need() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let live = create(
        &app,
        token,
        json!({"sport": "ride", "status": "active", "visibility": "public"}),
    )
    .await;
    let live_id = live["id"].as_str().expect("id").to_owned();
    let started: ActivityStarted = app.events("training.activity_started.v1", 1).await[0]
        .decode()
        .expect("typed");
    assert_eq!(started.activity.activity_id.to_string(), live_id);
    app.post_authed(&format!("/v1/activities/{live_id}/finish"), token, None)
        .await;
    let manual = create(&app, token, manual_run(2, 10_000.0)).await;
    let finished = app.events("training.activity_finished.v1", 2).await;
    let manual_event: ActivityFinished = finished
        .iter()
        .map(|e| e.decode::<ActivityFinished>().expect("typed"))
        .find(|e| e.activity.activity_id.to_string() == manual["id"].as_str().expect("id"))
        .expect("the manual workout's event");
    assert_eq!(manual_event.activity.owner_id, athlete.user_id);
    assert_eq!(manual_event.activity.sport, "run");
    assert_eq!(manual_event.activity.summary.distance_m, Some(10_000.0));
    assert!(manual_event.activity.start_time.is_some() && manual_event.activity.end_time.is_some());

    let path = format!("/v1/activities/{}", manual["id"].as_str().expect("id"));
    let gear = uuid::Uuid::now_v7();
    app.patch_authed(
        &path,
        token,
        &json!({"sport": "trail_run", "gear_id": gear}),
    )
    .await;
    let updated: ActivityUpdated = app.events("training.activity_updated.v1", 1).await[0]
        .decode()
        .expect("typed");
    assert_eq!(updated.previous.sport, "run");
    assert_eq!(updated.activity.sport, "trail_run");
    assert_eq!(updated.activity.gear_id, Some(gear));
    // A rename alone changes nothing consumers derive from; it publishes no update.
    app.patch_authed(&path, token, &json!({"name": "Renamed"}))
        .await;

    assert_eq!(
        app.delete_authed(&path, token).await.status(),
        StatusCode::NO_CONTENT
    );
    let deleted: ActivityDeleted = app.events("training.activity_deleted.v1", 1).await[0]
        .decode()
        .expect("typed");
    assert!(deleted.was_finished);
    assert_eq!(deleted.activity.gear_id, Some(gear));
    let db = app.database("training").await;
    let updates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE event_type = 'training.activity_updated.v1'",
    )
    .fetch_one(&db)
    .await
    .expect("count");
    assert_eq!(updates, 1);
}

#[tokio::test]
async fn other_services_read_activities_over_grpc() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let manual = create(&app, token, manual_run(2, 3000.0)).await;
    create(&app, token, manual_run(30, 4000.0)).await;
    create(&app, token, json!({"sport": "swim"})).await;
    let mut activities = ActivitiesClient::connect(app.grpc_address.clone())
        .await
        .expect("grpc");
    let info = activities
        .get_activity(GetActivityRequest {
            activity_id: manual["id"].as_str().expect("id").to_owned(),
        })
        .await
        .expect("found")
        .into_inner();
    assert_eq!(info.owner_id, athlete.user_id.to_string());
    assert_eq!(info.status, "finished");
    assert!(!info.start_time.is_empty() && !info.end_time.is_empty());
    let missing = activities
        .get_activity(GetActivityRequest {
            activity_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .expect_err("missing");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let from = (chrono::Utc::now() - chrono::Duration::hours(24)).to_rfc3339();
    let items = activities
        .list_summaries(ListSummariesRequest {
            user_id: athlete.user_id.to_string(),
            from,
            to: String::new(),
            limit: 0,
        })
        .await
        .expect("listed")
        .into_inner()
        .items;
    assert_eq!(items.len(), 1, "finished ones inside the window only");
    let summary: Value = serde_json::from_str(&items[0].summary_json).expect("json");
    assert_eq!(summary["distance_m"], 3000.0);
}

#[tokio::test]
async fn deleting_the_account_erases_its_workouts() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let keeper = app.new_account().await;
    create(&app, &athlete.access_token, manual_run(2, 1000.0)).await;
    create(&app, &keeper.access_token, manual_run(2, 1000.0)).await;
    app.client
        .put(app.url("/v1/me/training-settings"))
        .bearer_auth(&athlete.access_token)
        .json(&json!({"zones": [1, 2, 3]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        app.delete_authed("/v1/me", &athlete.access_token)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let db = app.database("training").await;
    let mut remaining = -1;
    for _ in 0..100 {
        remaining = sqlx::query_scalar::<_, i64>(
            "SELECT (SELECT count(*) FROM activities WHERE owner_id = $1)
                  + (SELECT count(*) FROM training_settings WHERE user_id = $1)",
        )
        .bind(athlete.user_id)
        .fetch_one(&db)
        .await
        .expect("count");
        if remaining == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        remaining, 0,
        "the deleted user's workouts and settings are erased"
    );
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM activities WHERE owner_id = $1")
        .bind(keeper.user_id)
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(kept, 1);
}
