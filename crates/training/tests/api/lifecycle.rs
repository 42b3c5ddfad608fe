//! planned → active → paused → finished / discarded, through the API.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_detail_says, assert_problem, create, spawn_app};

async fn act(
    app: &crate::helpers::TestApp,
    token: &str,
    id: &str,
    action: &str,
) -> reqwest::Response {
    app.post_authed(&format!("/v1/activities/{id}/{action}"), token, None)
        .await
}

#[tokio::test]
async fn a_workout_goes_from_planned_to_finished_with_a_summary() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let planned = create(
        &app,
        token,
        json!({"sport": "ride", "plan": {"intervals": [{"minutes": 5, "watts": 250}]}}),
    )
    .await;
    assert_eq!(planned["status"], "planned");
    assert_eq!(planned["source"], "live");
    assert_eq!(planned["start_time"], Value::Null);
    assert_eq!(planned["plan"]["intervals"][0]["watts"], 250);
    assert!(
        planned["name"]
            .as_str()
            .is_some_and(|name| name.ends_with("Ride"))
    );
    let id = planned["id"].as_str().expect("id").to_owned();

    for (action, status) in [
        ("start", "active"),
        ("pause", "paused"),
        ("resume", "active"),
        ("pause", "paused"),
    ] {
        let response = act(&app, token, &id, action).await;
        assert_eq!(response.status(), StatusCode::OK, "{action}");
        let activity: Value = response.json().await.expect("json");
        assert_eq!(activity["status"], status, "{action}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let finished: Value = act(&app, token, &id, "finish")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(finished["status"], "finished");
    assert!(finished["end_time"].is_string());
    let summary = &finished["summary"];
    let elapsed = summary["elapsed_time_s"].as_f64().expect("elapsed");
    let moving = summary["moving_time_s"].as_f64().expect("moving");
    assert!(
        elapsed > 0.0 && moving >= 0.0 && moving < elapsed,
        "{summary}"
    );
    // Without samples nothing else is known: null, never zero.
    for field in [
        "distance_m",
        "avg_heart_rate",
        "avg_power_w",
        "calories_kcal",
        "hr_zone_s",
    ] {
        assert_eq!(summary[field], Value::Null, "{field}");
    }
}

#[tokio::test]
async fn steps_that_the_state_does_not_allow_are_409s_that_say_why() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let planned = create(&app, token, json!({"sport": "run"})).await;
    let id = planned["id"].as_str().expect("id").to_owned();
    for action in ["pause", "resume", "finish"] {
        let problem =
            assert_problem(act(&app, token, &id, action).await, StatusCode::CONFLICT).await;
        assert_detail_says(&problem, "has not started");
    }
    assert_eq!(
        act(&app, token, &id, "start").await.status(),
        StatusCode::OK
    );
    let again = assert_problem(act(&app, token, &id, "start").await, StatusCode::CONFLICT).await;
    assert!(
        again["detail"]
            .as_str()
            .is_some_and(|d| d.contains("already started"))
    );
    assert_eq!(
        act(&app, token, &id, "discard").await.status(),
        StatusCode::OK
    );
    for action in ["start", "pause", "resume", "finish", "discard"] {
        assert_problem(act(&app, token, &id, action).await, StatusCode::CONFLICT).await;
    }
    let unknown = act(&app, token, &uuid::Uuid::now_v7().to_string(), "start").await;
    assert_problem(unknown, StatusCode::NOT_FOUND).await;
    let bad = app
        .post_authed("/v1/activities/xyz/start", token, None)
        .await;
    assert_problem(bad, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn an_active_workout_starts_now_and_only_its_owner_can_drive_it() {
    let app = spawn_app().await;
    let owner = app.new_account().await;
    let stranger = app.new_account().await;
    let active = create(
        &app,
        &owner.access_token,
        json!({"sport": "run", "status": "active", "visibility": "public"}),
    )
    .await;
    assert_eq!(active["status"], "active");
    assert!(active["start_time"].is_string());
    let id = active["id"].as_str().expect("id").to_owned();
    for action in ["pause", "finish", "discard"] {
        let response = act(&app, &stranger.access_token, &id, action).await;
        assert_problem(response, StatusCode::NOT_FOUND).await;
    }
    let still: Value = app
        .get_authed(&format!("/v1/activities/{id}"), &owner.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(still["status"], "active");
}
