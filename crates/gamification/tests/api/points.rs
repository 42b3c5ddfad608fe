//! Points, the ledger, corrections and redemptions.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, points_when, spawn_app, workout};

#[tokio::test]
async fn a_finished_workout_earns_points_with_a_reason() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let empty: Value = app
        .get_authed("/v1/me/points", &athlete.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(empty["balance"], 0);
    workout(&app, &athlete.access_token, "run", 50.0, 10.0, 1).await;
    // 50 minutes at 1 point each and 10 km at 10 points each.
    let points = points_when(&app, &athlete.access_token, |p| p["balance"] == 150).await;
    assert_eq!(points["history"][0]["amount"], 150);
    assert!(
        points["history"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("run"))
    );
}

#[tokio::test]
async fn a_day_earns_at_most_the_daily_cap() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    for _ in 0..5 {
        workout(&app, &athlete.access_token, "run", 50.0, 10.0, 2).await;
    }
    let points = points_when(&app, &athlete.access_token, |p| {
        p["history"].as_array().is_some_and(|h| h.len() == 4)
    })
    .await;
    assert_eq!(points["balance"], 500, "{points}");
    // Another day earns again.
    workout(&app, &athlete.access_token, "run", 50.0, 10.0, 3).await;
    points_when(&app, &athlete.access_token, |p| p["balance"] == 650).await;
}

#[tokio::test]
async fn changing_or_deleting_a_workout_corrects_its_points_with_new_entries() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let activity = workout(&app, token, "run", 50.0, 10.0, 1).await;
    points_when(&app, token, |p| p["balance"] == 150).await;
    let path = format!("/v1/activities/{}", activity["id"].as_str().expect("id"));
    // As a ride the same workout earns 25 + 20 points.
    let patched = app
        .patch_authed(&path, token, &json!({"sport": "ride"}))
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let points = points_when(&app, token, |p| p["balance"] == 45).await;
    assert_eq!(points["history"][0]["amount"], -105);
    assert_eq!(
        app.delete_authed(&path, token).await.status(),
        StatusCode::NO_CONTENT
    );
    let points = points_when(&app, token, |p| p["balance"] == 0).await;
    let amounts: Vec<i64> = points["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["amount"].as_i64())
        .collect();
    assert_eq!(
        amounts,
        vec![-45, -105, 150],
        "history is appended to, never edited"
    );
}

#[tokio::test]
async fn fifty_concurrent_redemptions_against_a_balance_for_ten_let_exactly_ten_through() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = athlete.access_token.clone();
    // 50 minutes and 5 km of running: 100 points.
    workout(&app, &token, "run", 50.0, 5.0, 1).await;
    points_when(&app, &token, |p| p["balance"] == 100).await;
    let requests = (0..50).map(|i| {
        let client = app.client.clone();
        let url = app.url("/v1/me/points/redemptions");
        let token = token.clone();
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"amount": 10, "reason": format!("voucher {i}")}))
                .send()
                .await
                .expect("sent")
                .status()
        }
    });
    let statuses = join_all(requests).await;
    let granted = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((granted, refused), (10, 40), "{statuses:?}");
    let points: Value = app
        .get_authed("/v1/me/points?limit=100", &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(points["balance"], 0);
    assert_eq!(points["history"].as_array().map(Vec::len), Some(11));
}

#[tokio::test]
async fn a_retried_redemption_is_charged_once_and_bad_ones_are_refused() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    workout(&app, token, "run", 50.0, 10.0, 1).await;
    points_when(&app, token, |p| p["balance"] == 150).await;
    let redeem = |key: &'static str, amount: i64| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/v1/me/points/redemptions"))
                .bearer_auth(token)
                .header("idempotency-key", key)
                .json(&json!({"amount": amount, "reason": "socks"}))
                .send()
                .await
                .expect("sent")
        }
    };
    let first = redeem("socks-1", 40).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.expect("json");
    assert_eq!(first["balance"], 110);
    let retry = redeem("socks-1", 40).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(
        retry.json::<Value>().await.expect("json")["id"],
        first["id"]
    );
    assert_problem(
        redeem("socks-1", 41).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_problem(redeem("socks-2", 1000).await, StatusCode::CONFLICT).await;
    for body in [
        json!({"amount": 0, "reason": "x"}),
        json!({"amount": -5, "reason": "x"}),
        json!({"amount": 5, "reason": ""}),
        json!({"amount": 5}),
    ] {
        let response = app
            .post_authed("/v1/me/points/redemptions", token, Some(&body))
            .await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
    let points: Value = app
        .get_authed("/v1/me/points", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(points["balance"], 110, "charged once");
    assert_problem(
        app.client
            .get(app.url("/v1/me/points"))
            .send()
            .await
            .expect("sent"),
        StatusCode::UNAUTHORIZED,
    )
    .await;
}
