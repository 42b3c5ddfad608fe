//! `/v1/admin/*` and the roles.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stride_platform::device_auth::DeviceAuthenticator;
use stride_proto::identity::v1::user_directory_client::UserDirectoryClient;

use crate::helpers::{PASSWORD, assert_problem, spawn_app};

#[tokio::test]
async fn admin_endpoints_are_forbidden_to_users() {
    let app = spawn_app().await;
    let user = app.new_account().await;
    let victim = app.new_account().await;
    let token = &user.access_token;
    assert_problem(
        app.get_authed("/v1/admin/users", token).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let disable = format!("/v1/admin/users/{}/disable", victim.user_id);
    assert_problem(
        app.post_authed(&disable, token, None).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let enable = format!("/v1/admin/users/{}/enable", victim.user_id);
    assert_problem(
        app.post_authed(&enable, token, None).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_problem(
        app.get_authed("/v1/admin/signing-keys", token).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_problem(
        app.post_authed("/v1/admin/signing-keys", token, None).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_problem(
        app.delete_authed("/v1/admin/signing-keys/anything", token)
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(
        app.get_authed("/v1/me", &victim.access_token)
            .await
            .status(),
        StatusCode::OK
    );
    assert_problem(
        app.client
            .get(app.url("/v1/admin/users"))
            .send()
            .await
            .expect("sent"),
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn admins_page_through_accounts_with_a_cursor() {
    let app = spawn_app().await;
    let admin = app.new_account().await;
    app.make_admin(&admin).await;
    for _ in 0..3 {
        app.new_account().await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/admin/users?limit=2".to_owned();
    loop {
        let page: Value = app
            .get_authed(&path, &admin.access_token)
            .await
            .json()
            .await
            .expect("json");
        for user in page["users"].as_array().expect("users") {
            assert!(user.get("password_hash").is_none());
            seen.push(user["email"].as_str().expect("email").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/admin/users?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    seen.dedup();
    assert_eq!(seen.len(), 4, "no account twice");
    let filtered: Value = app
        .get_authed(
            &format!("/v1/admin/users?email={}", admin.email.to_uppercase()),
            &admin.access_token,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(filtered["users"].as_array().map(Vec::len), Some(1));
    for bad in [
        "/v1/admin/users?limit=0",
        "/v1/admin/users?limit=101",
        "/v1/admin/users?cursor=%%%",
    ] {
        assert_problem(
            app.get_authed(bad, &admin.access_token).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
}

#[tokio::test]
async fn a_disabled_account_loses_sessions_logins_and_devices_until_enabled() {
    let app = spawn_app().await;
    let admin = app.new_account().await;
    app.make_admin(&admin).await;
    let user = app.new_account().await;
    let device: Value = app
        .post_authed(
            "/v1/devices",
            &user.access_token,
            Some(&json!({"name": "Watch", "kind": "watch"})),
        )
        .await
        .json()
        .await
        .expect("json");
    let device_token = device["token"].as_str().expect("token").to_owned();

    let disabled = app
        .post_authed(
            &format!("/v1/admin/users/{}/disable", user.user_id),
            &admin.access_token,
            None,
        )
        .await;
    assert_eq!(disabled.status(), StatusCode::OK);
    let body: Value = disabled.json().await.expect("json");
    assert!(body["disabled_at"].is_string());
    assert_problem(
        app.get_authed("/v1/me", &user.access_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let refresh = app
        .post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": user.refresh_token}),
        )
        .await;
    assert_problem(refresh, StatusCode::UNAUTHORIZED).await;
    assert_problem(
        app.login(&user.email, PASSWORD).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let directory = UserDirectoryClient::connect(app.grpc_address.clone())
        .await
        .expect("grpc");
    let devices = DeviceAuthenticator::new(directory, Duration::from_millis(1));
    assert!(devices.authenticate(&device_token).await.is_err());

    let enabled = app
        .post_authed(
            &format!("/v1/admin/users/{}/enable", user.user_id),
            &admin.access_token,
            None,
        )
        .await;
    assert_eq!(enabled.status(), StatusCode::OK);
    app.login_ok(&user.email, PASSWORD).await;
    assert!(devices.authenticate(&device_token).await.is_ok());
}

#[tokio::test]
async fn admins_cannot_disable_themselves_or_unknown_accounts() {
    let app = spawn_app().await;
    let admin = app.new_account().await;
    app.make_admin(&admin).await;
    let own = app
        .post_authed(
            &format!("/v1/admin/users/{}/disable", admin.user_id),
            &admin.access_token,
            None,
        )
        .await;
    assert_problem(own, StatusCode::CONFLICT).await;
    let unknown = app
        .post_authed(
            &format!("/v1/admin/users/{}/disable", uuid::Uuid::now_v7()),
            &admin.access_token,
            None,
        )
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND).await;
}
