//! The training tests' app: identity and training in one process.

use reqwest::StatusCode;
use serde_json::{Value, json};
pub use stride_testkit::*;

/// Starts identity and training.
pub async fn spawn_app() -> TestApp {
    spawn(
        &[&stride_identity::SERVICE, &stride_training::SERVICE],
        test_config(),
    )
    .await
}

/// Creates an activity and returns it.
pub async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.post_authed("/v1/activities", token, Some(&body)).await;
    assert_eq!(response.status(), StatusCode::CREATED, "created");
    response.json().await.expect("json")
}

/// A manual run of `distance_m` that started `hours_ago`.
pub fn manual_run(hours_ago: i64, distance_m: f64) -> Value {
    let start = chrono::Utc::now() - chrono::Duration::hours(hours_ago);
    json!({
        "sport": "run",
        "status": "finished",
        "start_time": start.to_rfc3339(),
        "summary": {"elapsed_time_s": 1800.0, "distance_m": distance_m}
    })
}
