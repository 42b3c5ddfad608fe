//! `/v1/me`: profile, password change, account deletion.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, assert_problem, spawn_app};

#[tokio::test]
async fn the_profile_is_returned_to_its_owner_and_needs_a_token() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let me: Value = app
        .get_authed("/v1/me", &account.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["email"], account.email.as_str());
    assert_eq!(me["id"], account.user_id.to_string());
    let anonymous = app
        .client
        .get(app.url("/v1/me"))
        .send()
        .await
        .expect("sent");
    assert!(anonymous.headers().contains_key("www-authenticate"));
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn patching_changes_given_fields_clears_nulls_and_keeps_the_rest() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let avatar = uuid::Uuid::now_v7();
    let response = app
        .patch_authed(
            "/v1/me",
            &account.access_token,
            &json!({
                "display_name": "Eliud",
                "avatar_id": avatar,
                "units": "imperial",
                "time_zone": "Africa/Nairobi",
                "birth_year": 1984,
                "weight_kg": 52.5,
                "max_heart_rate": 190,
                "resting_heart_rate": 38,
                "default_visibility": "public"
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.expect("json");
    assert_eq!(me["display_name"], "Eliud");
    assert_eq!(me["avatar_id"], avatar.to_string());
    assert_eq!(me["units"], "imperial");
    assert_eq!(me["time_zone"], "Africa/Nairobi");
    assert_eq!(me["weight_kg"], 52.5);
    assert_eq!(me["default_visibility"], "public");

    let cleared: Value = app
        .patch_authed("/v1/me", &account.access_token, &json!({"weight_kg": null}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(cleared["weight_kg"], Value::Null);
    assert_eq!(cleared["max_heart_rate"], 190, "untouched fields stay");
    let read_back: Value = app
        .get_authed("/v1/me", &account.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(read_back, cleared);
}

#[tokio::test]
async fn invalid_profile_changes_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let before: Value = app
        .get_authed("/v1/me", &account.access_token)
        .await
        .json()
        .await
        .expect("json");
    for body in [
        json!({"time_zone": "Mars/Olympus_Mons"}),
        json!({"units": "furlongs"}),
        json!({"weight_kg": -3}),
        json!({"birth_year": 1700}),
        json!({"max_heart_rate": 300}),
        json!({"max_heart_rate": 150, "resting_heart_rate": 150}),
        json!({"display_name": ""}),
        json!({"email": "new@example.org"}),
        json!({"role": "admin"}),
    ] {
        let response = app
            .patch_authed("/v1/me", &account.access_token, &body)
            .await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
    let after: Value = app
        .get_authed("/v1/me", &account.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(before, after);
}

#[tokio::test]
async fn changing_the_password_ends_the_other_sessions_only() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let (other_access, _) = app.login_ok(&account.email, PASSWORD).await;
    let new_password = "granite meadow falcon 7";

    let wrong = app
        .post_authed(
            "/v1/me/password",
            &account.access_token,
            Some(&json!({"current_password": "not it at all 99", "new_password": new_password})),
        )
        .await;
    assert_problem(wrong, StatusCode::UNAUTHORIZED).await;
    let weak = app
        .post_authed(
            "/v1/me/password",
            &account.access_token,
            Some(&json!({"current_password": PASSWORD, "new_password": "password1"})),
        )
        .await;
    assert_problem(weak, StatusCode::BAD_REQUEST).await;

    let changed = app
        .post_authed(
            "/v1/me/password",
            &account.access_token,
            Some(&json!({"current_password": PASSWORD, "new_password": new_password})),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_authed("/v1/me", &account.access_token)
            .await
            .status(),
        StatusCode::OK
    );
    assert_problem(
        app.get_authed("/v1/me", &other_access).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(
        app.login(&account.email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    app.login_ok(&account.email, new_password).await;
}

#[tokio::test]
async fn deleting_the_account_ends_its_sessions_and_frees_the_email() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let device = app
        .post_authed(
            "/v1/devices",
            &account.access_token,
            Some(&json!({"name": "Forerunner", "kind": "watch"})),
        )
        .await;
    assert_eq!(device.status(), StatusCode::CREATED);
    let deleted = app.delete_authed("/v1/me", &account.access_token).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get_authed("/v1/me", &account.access_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(
        app.login(&account.email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let devices: i64 = sqlx::query_scalar("SELECT count(*) FROM devices")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(devices, 0, "the account's devices are gone with it");
    let again = app.register(&account.email, PASSWORD, "Back again").await;
    assert_eq!(again.status(), StatusCode::CREATED);
    // A second delete with the dead token is refused.
    assert_problem(
        app.delete_authed("/v1/me", &account.access_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}
