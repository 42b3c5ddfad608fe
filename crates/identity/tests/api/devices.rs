//! `/v1/devices` and device authentication as telemetry will use it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stride_platform::device_auth::DeviceAuthenticator;
use stride_proto::identity::v1::user_directory_client::UserDirectoryClient;

use crate::helpers::{TestApp, assert_problem, spawn_app};

async fn create_device(app: &TestApp, token: &str, name: &str, kind: &str) -> Value {
    let response = app
        .post_authed(
            "/v1/devices",
            token,
            Some(&json!({"name": name, "kind": kind})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("json")
}

async fn authenticator(app: &TestApp, ttl: Duration) -> DeviceAuthenticator {
    let client = UserDirectoryClient::connect(app.grpc_address.clone())
        .await
        .expect("grpc connects");
    DeviceAuthenticator::new(client, ttl)
}

#[tokio::test]
async fn a_device_gets_a_credential_once_and_is_listed_without_it() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let device = create_device(&app, &account.access_token, "Edge 530", "bike_computer").await;
    let token = device["token"].as_str().expect("token");
    assert!(token.starts_with("sdv_"));
    assert_eq!(device["kind"], "bike_computer");
    let list: Value = app
        .get_authed("/v1/devices", &account.access_token)
        .await
        .json()
        .await
        .expect("json");
    let devices = list["devices"].as_array().expect("array");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["id"], device["id"]);
    assert!(
        !list.to_string().contains(token),
        "the credential is never shown again"
    );
}

#[tokio::test]
async fn bad_device_requests_are_refused() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    for body in [
        json!({"name": "Toaster", "kind": "toaster"}),
        json!({"name": "", "kind": "watch"}),
        json!({"name": "x".repeat(65), "kind": "watch"}),
        json!({"kind": "watch"}),
    ] {
        let response = app
            .post_authed("/v1/devices", &account.access_token, Some(&body))
            .await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
    let anonymous = app
        .post_json("/v1/devices", &json!({"name": "x", "kind": "watch"}))
        .await;
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    let list: Value = app
        .get_authed("/v1/devices", &account.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["devices"].as_array().map(Vec::len), Some(0));
    let bad_id = app
        .delete_authed("/v1/devices/not-a-uuid", &account.access_token)
        .await;
    assert_problem(bad_id, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn a_device_authenticates_until_revoked_and_is_refused_within_the_cache_time() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let device = create_device(&app, &account.access_token, "Strap", "hr_strap").await;
    let token = device["token"].as_str().expect("token");
    let cache = Duration::from_millis(500);
    let devices = authenticator(&app, cache).await;

    let authenticated = devices.authenticate(token).await.expect("valid credential");
    assert_eq!(authenticated.user_id, account.user_id);
    assert_eq!(
        authenticated.device_id.to_string(),
        device["id"].as_str().expect("id")
    );
    assert_eq!(authenticated.kind, "hr_strap");
    assert!(devices.authenticate("sdv_forged").await.is_err());

    let path = format!("/v1/devices/{}", device["id"].as_str().expect("id"));
    let revoked = app.delete_authed(&path, &account.access_token).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(cache + Duration::from_millis(100)).await;
    let refused = devices.authenticate(token).await.expect_err("revoked");
    assert_eq!(
        refused.code(),
        stride_platform::error::ErrorCode::Unauthorized
    );
    let again = app.delete_authed(&path, &account.access_token).await;
    assert_problem(again, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn nobody_can_see_or_revoke_another_users_device() {
    let app = spawn_app().await;
    let owner = app.new_account().await;
    let stranger = app.new_account().await;
    let device = create_device(&app, &owner.access_token, "Phone", "phone").await;
    let list: Value = app
        .get_authed("/v1/devices", &stranger.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["devices"].as_array().map(Vec::len), Some(0));
    let path = format!("/v1/devices/{}", device["id"].as_str().expect("id"));
    let response = app.delete_authed(&path, &stranger.access_token).await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
    let devices = authenticator(&app, Duration::from_millis(1)).await;
    assert!(
        devices
            .authenticate(device["token"].as_str().expect("token"))
            .await
            .is_ok(),
        "the owner's device still works"
    );
}
