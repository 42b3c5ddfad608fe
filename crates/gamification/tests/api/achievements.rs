//! Achievements and challenges.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_problem, points_when, spawn_app, workout};

async fn catalogue_when(app: &TestApp, token: &str, check: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = app
            .get_authed("/v1/achievements", token)
            .await
            .json()
            .await
            .expect("json");
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("achievements never reached the expected state: {last}");
}

fn unlocked(catalogue: &Value, id: &str) -> bool {
    catalogue["achievements"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a["id"] == id && a["unlocked_at"].is_string())
}

#[tokio::test]
async fn workouts_unlock_achievements_once_and_for_good() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let first = workout(&app, token, "run", 50.0, 10.0, 1).await;
    let catalogue = catalogue_when(&app, token, |c| unlocked(c, "first-workout")).await;
    let run_100k = catalogue["achievements"]
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["id"] == "run-100k")
        .expect("listed")
        .clone();
    assert_eq!(run_100k["current"], 10_000.0);
    assert_eq!(run_100k["target"], 100_000.0);
    assert!(run_100k["unlocked_at"].is_null());

    // Early morning (05:30 UTC, the athlete's zone) and a climb past Everest in one workout.
    let dawn = (chrono::Utc::now() - chrono::Duration::days(3))
        .date_naive()
        .and_hms_opt(5, 30, 0)
        .expect("time")
        .and_utc();
    let response = app
        .post_authed("/v1/activities", token, Some(&json!({
            "sport": "hike", "status": "finished", "start_time": dawn.to_rfc3339(),
            "summary": {"elapsed_time_s": 4.0 * 3600.0, "moving_time_s": 3.5 * 3600.0, "distance_m": 20_000.0, "elevation_gain_m": 9_000.0}
        })))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let catalogue = catalogue_when(&app, token, |c| unlocked(c, "everest")).await;
    assert!(unlocked(&catalogue, "early-bird"));
    assert!(unlocked(&catalogue, "long-haul"));
    assert!(!unlocked(&catalogue, "streak-7"));

    // Deleting the workout that earned them does not take them back.
    app.delete_authed(
        &format!("/v1/activities/{}", first["id"].as_str().expect("id")),
        token,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again: Value = app
        .get_authed("/v1/achievements", token)
        .await
        .json()
        .await
        .expect("json");
    assert!(unlocked(&again, "first-workout") && unlocked(&again, "everest"));

    // Anyone may see which achievements someone unlocked.
    let viewer = app.new_account().await;
    let theirs: Value = app
        .get_authed(
            &format!("/v1/users/{}/achievements", athlete.user_id),
            &viewer.access_token,
        )
        .await
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = theirs["achievements"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|a| a["achievement_id"].as_str())
        .collect();
    assert!(
        ids.contains(&"first-workout") && ids.contains(&"everest"),
        "{ids:?}"
    );
}

#[tokio::test]
async fn seven_days_in_a_row_make_a_streak() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    for day in [1, 2, 3, 4, 5, 6] {
        workout(&app, token, "walk", 30.0, 3.0, day).await;
    }
    workout(&app, token, "walk", 30.0, 3.0, 9).await;
    let catalogue = catalogue_when(&app, token, |c| {
        c["achievements"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["id"] == "streak-7" && a["current"] == 6.0)
    })
    .await;
    assert!(!unlocked(&catalogue, "streak-7"));
    workout(&app, token, "walk", 30.0, 3.0, 7).await;
    catalogue_when(&app, token, |c| unlocked(c, "streak-7")).await;
}

#[tokio::test]
async fn completing_a_challenge_inside_its_window_awards_points_and_an_achievement() {
    let app = spawn_app().await;
    let admin = app.new_account().await;
    app.make_admin(&admin).await;
    let (admin_token, _) = app.login_ok(&admin.email, PASSWORD).await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let now = chrono::Utc::now();
    let body = json!({
        "name": "Run 20 km this week",
        "metric": "distance",
        "sport": "run",
        "target": 20_000.0,
        "starts_at": (now - chrono::Duration::days(2)).to_rfc3339(),
        "ends_at": (now + chrono::Duration::days(2)).to_rfc3339(),
        "reward_points": 100
    });
    assert_problem(
        app.post_authed("/v1/challenges", token, Some(&body)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    for bad in [
        json!({"name": "x", "metric": "speed", "target": 1, "starts_at": now.to_rfc3339(), "ends_at": (now + chrono::Duration::days(1)).to_rfc3339()}),
        json!({"name": "x", "metric": "distance", "target": -1, "starts_at": now.to_rfc3339(), "ends_at": (now + chrono::Duration::days(1)).to_rfc3339()}),
        json!({"name": "x", "metric": "distance", "target": 1, "starts_at": now.to_rfc3339(), "ends_at": (now - chrono::Duration::days(1)).to_rfc3339()}),
    ] {
        assert_problem(
            app.post_authed("/v1/challenges", &admin_token, Some(&bad))
                .await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    let created = app
        .post_authed("/v1/challenges", &admin_token, Some(&body))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let challenge: Value = created.json().await.expect("json");
    let path = format!("/v1/challenges/{}", challenge["id"].as_str().expect("id"));
    let listed: Value = app
        .get_authed("/v1/challenges", token)
        .await
        .json()
        .await
        .expect("json");
    assert!(
        listed["challenges"]
            .as_array()
            .expect("list")
            .iter()
            .any(|c| c["id"] == challenge["id"])
    );

    assert_eq!(
        app.post_authed(&format!("{path}/join"), token, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    workout(&app, token, "run", 60.0, 12.0, 5).await; // before the window: does not count
    workout(&app, token, "run", 60.0, 12.0, 1).await;
    points_when(&app, token, |p| {
        p["history"].as_array().is_some_and(|h| h.len() == 2)
    })
    .await;
    let detail: Value = app
        .get_authed(&path, token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(detail["joined"], true);
    assert_eq!(detail["progress"], 12_000.0);
    assert!(detail["leaderboard"][0]["completed_at"].is_null());
    workout(&app, token, "run", 50.0, 10.0, 0).await;
    let points = points_when(&app, token, |p| {
        p["history"].as_array().into_iter().flatten().any(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("challenge completed"))
        })
    })
    .await;
    let reward = points["history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("challenge"))
        })
        .expect("reward")
        .clone();
    assert_eq!(reward["amount"], 100);
    let detail: Value = app
        .get_authed(&path, token)
        .await
        .json()
        .await
        .expect("json");
    assert!(detail["leaderboard"][0]["completed_at"].is_string());
    let achievement = format!("challenge-{}", challenge["id"].as_str().expect("id"));
    let mine: Value = app
        .get_authed(
            &format!("/v1/users/{}/achievements", athlete.user_id),
            token,
        )
        .await
        .json()
        .await
        .expect("json");
    assert!(
        mine["achievements"]
            .as_array()
            .expect("list")
            .iter()
            .any(|a| a["achievement_id"] == achievement.as_str())
    );

    assert_eq!(
        app.post_authed(&format!("{path}/leave"), token, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.post_authed(&format!("{path}/leave"), token, None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let missing = format!("/v1/challenges/{}", uuid::Uuid::now_v7());
    assert_problem(app.get_authed(&missing, token).await, StatusCode::NOT_FOUND).await;
    assert_problem(
        app.post_authed(&format!("{missing}/join"), token, None)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let mut ended = body.clone();
    ended["starts_at"] = json!((now - chrono::Duration::days(10)).to_rfc3339());
    ended["ends_at"] = json!((now - chrono::Duration::days(9)).to_rfc3339());
    let ended: Value = app
        .post_authed("/v1/challenges", &admin_token, Some(&ended))
        .await
        .json()
        .await
        .expect("json");
    let late = app
        .post_authed(
            &format!("/v1/challenges/{}/join", ended["id"].as_str().expect("id")),
            token,
            None,
        )
        .await;
    assert_problem(late, StatusCode::CONFLICT).await;
}
