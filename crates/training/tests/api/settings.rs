//! `/v1/me/training-settings` with ETag / If-Match.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};

async fn put(
    app: &TestApp,
    token: &str,
    body: &Value,
    if_match: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .put(app.url("/v1/me/training-settings"))
        .bearer_auth(token)
        .json(body);
    if let Some(etag) = if_match {
        request = request.header("if-match", etag);
    }
    request.send().await.expect("sent")
}

fn etag(response: &reqwest::Response) -> String {
    response.headers()["etag"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

#[tokio::test]
async fn two_devices_cannot_silently_overwrite_each_other() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    let empty = app.get_authed("/v1/me/training-settings", token).await;
    assert_eq!(empty.status(), StatusCode::OK);
    let first_etag = etag(&empty);
    assert_eq!(empty.json::<Value>().await.expect("json"), json!({}));

    let zones = json!({"heart_rate_zones": [120, 140, 155, 170, 185], "splits": "km"});
    let stored = put(&app, token, &zones, Some(&first_etag)).await;
    assert_eq!(stored.status(), StatusCode::OK);
    let watch_etag = etag(&stored);
    assert_ne!(watch_etag, first_etag);

    // The phone still holds the first ETag: its write is refused, the watch's stays.
    let phone = put(&app, token, &json!({"splits": "mile"}), Some(&first_etag)).await;
    assert_problem(phone, StatusCode::PRECONDITION_FAILED).await;
    let blind = put(&app, token, &json!({"splits": "mile"}), None).await;
    assert_problem(blind, StatusCode::PRECONDITION_REQUIRED).await;
    let read = app.get_authed("/v1/me/training-settings", token).await;
    assert_eq!(etag(&read), watch_etag);
    assert_eq!(read.json::<Value>().await.expect("json"), zones);

    let updated = put(&app, token, &json!({"splits": "mile"}), Some(&watch_etag)).await;
    assert_eq!(updated.status(), StatusCode::OK);
    // Another user's settings are their own.
    let other = app.new_account().await;
    let theirs: Value = app
        .get_authed("/v1/me/training-settings", &other.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(theirs, json!({}));
}

#[tokio::test]
async fn settings_must_be_a_json_object_of_at_most_64_kib() {
    let app = spawn_app().await;
    let athlete = app.new_account().await;
    let token = &athlete.access_token;
    assert_problem(
        put(&app, token, &json!([1, 2, 3]), None).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let huge = json!({"notes": "x".repeat(70 * 1024)});
    assert_problem(
        put(&app, token, &huge, None).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    let not_json = app
        .client
        .put(app.url("/v1/me/training-settings"))
        .bearer_auth(token)
        .body("zones=5")
        .send()
        .await
        .expect("sent");
    assert_problem(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let bad_etag = put(&app, token, &json!({}), Some("\"soon\"")).await;
    assert_problem(bad_etag, StatusCode::BAD_REQUEST).await;
    let read: Value = app
        .get_authed("/v1/me/training-settings", token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(read, json!({}), "nothing refused was stored");
    let anonymous = app
        .client
        .get(app.url("/v1/me/training-settings"))
        .send()
        .await
        .expect("sent");
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
}
