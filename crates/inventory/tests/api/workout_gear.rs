//! Training refuses gear that is not the workout owner's, asking inventory over gRPC.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_detail_says, assert_problem, create_gear, id, spawn_app};

#[tokio::test]
async fn a_workout_may_name_only_its_owners_gear() {
    let app = spawn_app().await;
    let owner = app.new_account().await;
    let other = app.new_account().await;
    let shoes = create_gear(
        &app,
        &owner.access_token,
        json!({"name": "Trail shoes", "kind": "shoes"}),
    )
    .await;
    let theirs = create_gear(
        &app,
        &other.access_token,
        json!({"name": "Their shoes", "kind": "shoes"}),
    )
    .await;
    let start = (chrono::Utc::now() - chrono::Duration::hours(3)).to_rfc3339();
    let body = |gear: String| {
        json!({"sport": "run", "status": "finished", "start_time": start,
               "gear_id": gear, "summary": {"elapsed_time_s": 1800}})
    };
    let own = app
        .post_authed(
            "/v1/activities",
            &owner.access_token,
            Some(&body(id(&shoes))),
        )
        .await;
    assert_eq!(own.status(), StatusCode::CREATED);
    let activity = own.json::<serde_json::Value>().await.expect("json");
    for gear in [id(&theirs), uuid::Uuid::now_v7().to_string()] {
        let refused = app
            .post_authed("/v1/activities", &owner.access_token, Some(&body(gear)))
            .await;
        let problem = assert_problem(refused, StatusCode::BAD_REQUEST).await;
        assert_detail_says(&problem, "gear_id");
    }
    let path = format!("/v1/activities/{}", id(&activity));
    let patch = app
        .patch_authed(&path, &owner.access_token, &json!({"gear_id": id(&theirs)}))
        .await;
    assert_problem(patch, StatusCode::BAD_REQUEST).await;
    let kept: serde_json::Value = app
        .get_authed(&path, &owner.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        kept["gear_id"],
        id(&shoes).as_str(),
        "the refused change changed nothing"
    );
    let list: serde_json::Value = app
        .get_authed("/v1/activities", &owner.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["activities"].as_array().map(Vec::len), Some(1));
}
