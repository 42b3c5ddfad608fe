//! Registration, login, refresh and logout.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, assert_detail_says, assert_problem, spawn_app};

#[tokio::test]
async fn registering_returns_the_new_account_without_any_secret() {
    let app = spawn_app().await;
    let response = app
        .register("  Ada.Lovelace@Example.ORG ", PASSWORD, "Ada")
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["location"], "/v1/me");
    let user: Value = response.json().await.expect("json");
    assert_eq!(user["email"], "ada.lovelace@example.org");
    assert_eq!(user["display_name"], "Ada");
    assert_eq!(user["role"], "user");
    assert_eq!(user["units"], "metric");
    assert!(user.get("password_hash").is_none() && user.get("password").is_none());
    assert!(!user.to_string().contains("argon2"));
}

#[tokio::test]
async fn an_email_can_be_registered_only_once_whatever_its_case() {
    let app = spawn_app().await;
    let first = app.register("grace@example.org", PASSWORD, "Grace").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let second = app.register("GRACE@example.org", PASSWORD, "Other").await;
    let problem = assert_problem(second, StatusCode::CONFLICT).await;
    assert_eq!(problem["type"], "urn:stride:problem:conflict");
}

#[tokio::test]
async fn weak_short_and_overlong_passwords_are_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    for (password, why) in [
        ("short1!", "at least 8"),
        ("password123", "too common"),
        ("12345678", "too common"),
        ("linus.torvalds", "built from the email"),
    ] {
        let response = app
            .register("linus.torvalds@example.org", password, "Linus")
            .await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            problem["type"], "urn:stride:problem:validation-error",
            "{why}"
        );
    }
    let overlong = "k".repeat(257);
    let response = app
        .register("linus.torvalds@example.org", &overlong, "Linus")
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST).await;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(users, 0, "no refused registration left an account behind");
    // A 64-character passphrase with no composition rules is fine.
    let passphrase: String = "marble orchard ".repeat(5).chars().take(64).collect();
    let response = app
        .register("linus.torvalds@example.org", &passphrase, "Linus")
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    app.login_ok("linus.torvalds@example.org", &passphrase)
        .await;
}

#[tokio::test]
async fn malformed_registrations_are_clear_4xx_problems() {
    let app = spawn_app().await;
    for body in [
        json!({"email": "not-an-email", "password": PASSWORD, "display_name": "X"}),
        json!({"email": "x@example.org", "password": PASSWORD, "display_name": "   "}),
        json!({"email": "x@example.org", "password": PASSWORD}),
        json!({"email": "x@example.org", "password": PASSWORD, "display_name": "X", "role": "admin"}),
    ] {
        let response = app.post_json("/v1/auth/register", &body).await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
    let response = app
        .client
        .post(app.url("/v1/auth/register"))
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let response = app
        .client
        .post(app.url("/v1/auth/register"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_problem(response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn login_gives_tokens_and_wrong_credentials_get_the_same_answer() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let response = app.login(&account.email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Value = response.json().await.expect("json");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert!(
        tokens["refresh_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("srt_"))
    );

    let wrong_password = assert_problem(
        app.login(&account.email, "violet quartz lantern 43").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let unknown_email = assert_problem(
        app.login("nobody@example.org", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        wrong_password["detail"], unknown_email["detail"],
        "an unknown email is not revealed"
    );
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_the_new_access_token_works() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let response = app
        .post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": account.refresh_token}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Value = response.json().await.expect("json");
    let new_refresh = tokens["refresh_token"].as_str().expect("refresh");
    assert_ne!(new_refresh, account.refresh_token);
    let access = tokens["access_token"].as_str().expect("access");
    let me = app.get_authed("/v1/me", access).await;
    assert_eq!(me.status(), StatusCode::OK);
    // The rotated token works once more.
    let again = app
        .post_json("/v1/auth/refresh", &json!({"refresh_token": new_refresh}))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    let unknown = app
        .post_json("/v1/auth/refresh", &json!({"refresh_token": "srt_forged"}))
        .await;
    assert_problem(unknown, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_revokes_the_whole_session() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let rotated: Value = app
        .post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": account.refresh_token}),
        )
        .await
        .json()
        .await
        .expect("json");
    let newest_refresh = rotated["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let newest_access = rotated["access_token"].as_str().expect("access").to_owned();

    // An attacker replays the first, already spent, refresh token.
    let replay = app
        .post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": account.refresh_token}),
        )
        .await;
    let problem = assert_problem(replay, StatusCode::UNAUTHORIZED).await;
    assert_detail_says(&problem, "already used");

    // Every token of the family is dead now.
    for access in [&account.access_token, &newest_access] {
        assert_problem(
            app.get_authed("/v1/me", access).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    let legit = app
        .post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": newest_refresh}),
        )
        .await;
    assert_problem(legit, StatusCode::UNAUTHORIZED).await;
    // Other sessions of the same user are untouched.
    let (other_access, _) = app.login_ok(&account.email, PASSWORD).await;
    assert_eq!(
        app.get_authed("/v1/me", &other_access).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn logout_ends_only_the_current_session() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let (second_access, _) = app.login_ok(&account.email, PASSWORD).await;
    let response = app
        .post_authed("/v1/auth/logout", &account.access_token, None)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get_authed("/v1/me", &account.access_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let refresh = app
        .post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": account.refresh_token}),
        )
        .await;
    assert_problem(refresh, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        app.get_authed("/v1/me", &second_access).await.status(),
        StatusCode::OK
    );
    // Without a token there is nothing to log out of.
    let anonymous = app.post_json("/v1/auth/logout", &json!({})).await;
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_user_only() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let other_user = app.new_account().await;
    let (second_access, second_refresh) = app.login_ok(&account.email, PASSWORD).await;
    let response = app
        .post_authed("/v1/auth/logout-all", &account.access_token, None)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for access in [&account.access_token, &second_access] {
        assert_problem(
            app.get_authed("/v1/me", access).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    let refresh = app
        .post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": second_refresh}),
        )
        .await;
    assert_problem(refresh, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        app.get_authed("/v1/me", &other_user.access_token)
            .await
            .status(),
        StatusCode::OK
    );
}
