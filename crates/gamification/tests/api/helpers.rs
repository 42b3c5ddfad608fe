//! The gamification tests' app and workouts.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stride_platform::config::Config;
pub use stride_testkit::*;

/// Identity, training and gamification in one process.
pub async fn spawn_app_with(config: Config) -> TestApp {
    spawn(
        &[
            &stride_identity::SERVICE,
            &stride_training::SERVICE,
            &stride_gamification::SERVICE,
        ],
        config,
    )
    .await
}

/// Identity, training and gamification with the default test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_config()).await
}

/// A finished manual workout of `sport`, `minutes` long over `km`, `days_ago` days ago.
pub async fn workout(
    app: &TestApp,
    token: &str,
    sport: &str,
    minutes: f64,
    km: f64,
    days_ago: i64,
) -> Value {
    let start = chrono::Utc::now() - chrono::Duration::days(days_ago) - chrono::Duration::hours(3);
    let response = app
        .post_authed(
            "/v1/activities",
            token,
            Some(&json!({
                "sport": sport,
                "status": "finished",
                "start_time": start.to_rfc3339(),
                "summary": {
                    "elapsed_time_s": minutes * 60.0,
                    "moving_time_s": minutes * 60.0,
                    "distance_m": km * 1000.0,
                    "elevation_gain_m": km * 10.0
                }
            })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("json")
}

/// The caller's points once `check` holds (waits for the consumer, up to 20 s).
pub async fn points_when(app: &TestApp, token: &str, check: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let response = app.get_authed("/v1/me/points?limit=100", token).await;
        assert_eq!(response.status(), StatusCode::OK);
        last = response.json().await.expect("json");
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("points never reached the expected state: {last}");
}
