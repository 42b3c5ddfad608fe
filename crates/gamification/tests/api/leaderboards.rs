//! `/v1/leaderboards/{metric}`.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, points_when, spawn_app, workout};

async fn board(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app
        .get_authed(&format!("/v1/leaderboards/{query}"), token)
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    response.json().await.expect("json")
}

#[tokio::test]
async fn boards_rank_by_metric_sport_and_period() {
    let app = spawn_app().await;
    let ada = app.new_account().await;
    let bo = app.new_account().await;
    workout(&app, &ada.access_token, "run", 50.0, 10.0, 0).await;
    workout(&app, &bo.access_token, "run", 60.0, 12.0, 0).await;
    workout(&app, &bo.access_token, "ride", 60.0, 30.0, 40).await;
    points_when(&app, &ada.access_token, |p| p["balance"] == 150).await;
    points_when(&app, &bo.access_token, |p| {
        p["history"].as_array().is_some_and(|h| h.len() == 2)
    })
    .await;

    let runs = board(&app, &ada.access_token, "distance?sport=run&period=week").await;
    let entries = runs["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["user_id"], bo.user_id.to_string());
    assert_eq!(entries[0]["rank"], 1);
    assert_eq!(entries[0]["score"], 12_000.0);
    assert_eq!(entries[0]["display_name"], "Test Athlete");
    assert_eq!(entries[1]["score"], 10_000.0);
    let all_time = board(&app, &ada.access_token, "distance").await;
    assert_eq!(
        all_time["entries"][0]["score"], 42_000.0,
        "all sports, all time"
    );
    let week = board(&app, &ada.access_token, "distance?period=week").await;
    assert_eq!(
        week["entries"][0]["score"], 12_000.0,
        "the old ride is not this week"
    );
    let me = board(&app, &ada.access_token, "points?around=me&limit=1").await;
    assert_eq!(me["entries"][0]["user_id"], ada.user_id.to_string());
    assert_eq!(me["entries"][0]["rank"], 2);
    for bad in [
        "speed",
        "distance?period=decade",
        "distance?around=you",
        "distance?limit=0",
        "distance?sport=Run!",
    ] {
        let response = app
            .get_authed(&format!("/v1/leaderboards/{bad}"), &ada.access_token)
            .await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
}
