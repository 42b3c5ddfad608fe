//! Session state survives Redis flushes, restarts and outages: PostgreSQL is the record.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PrivateRedis, assert_problem, spawn_app_with, test_config};

#[tokio::test]
async fn a_revoked_session_stays_revoked_across_redis_flush_restart_and_outage() {
    let mut redis = PrivateRedis::start().await;
    let app = spawn_app_with(stride_platform::config::Config {
        redis_url: redis.url().into(),
        ..test_config()
    })
    .await;
    let revoked = app.new_account().await;
    let active = app.new_account().await;
    let response = app
        .post_authed("/v1/auth/logout", &revoked.access_token, None)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let check = |label: &'static str| {
        let app = &app;
        let revoked = revoked.access_token.clone();
        let active = active.access_token.clone();
        async move {
            let refused = app.get_authed("/v1/me", &revoked).await;
            assert_eq!(
                refused.status(),
                StatusCode::UNAUTHORIZED,
                "revoked, {label}"
            );
            let accepted = app.get_authed("/v1/me", &active).await;
            assert_eq!(accepted.status(), StatusCode::OK, "active, {label}");
        }
    };
    check("with the cache warm").await;

    let client = redis::Client::open(redis.url()).expect("url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut connection)
        .await
        .expect("flushed");
    check("after FLUSHALL").await;

    redis.kill();
    check("while Redis is down").await;
    // Logging out while Redis is down still takes effect everywhere.
    let revoked_during_outage = active.clone();
    let response = app
        .post_authed("/v1/auth/logout", &revoked_during_outage.access_token, None)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get_authed("/v1/me", &revoked_during_outage.access_token)
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Logins need the throttle, which lives in Redis: refused with a retry hint, not let through.
    let login = app
        .post_json(
            "/v1/auth/login",
            &json!({"email": revoked.email, "password": revoked.password}),
        )
        .await;
    assert_eq!(login.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(login.headers().contains_key("retry-after"));

    redis.restart().await;
    // The connection manager reconnects on its own; give it a few attempts.
    let mut refused_after_restart = false;
    for _ in 0..50 {
        let response = app
            .get_authed("/v1/me", &revoked_during_outage.access_token)
            .await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "never let in after restart"
        );
        let login = app
            .post_json(
                "/v1/auth/login",
                &json!({"email": revoked.email, "password": revoked.password}),
            )
            .await;
        if login.status() == StatusCode::OK {
            refused_after_restart = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        refused_after_restart,
        "logins work again once Redis is back"
    );
    assert_problem(
        app.get_authed("/v1/me", &revoked.access_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}
