//! Signing-key rotation as verifiers see it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{PASSWORD, assert_problem, spawn_app_with, test_config};

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid")
}

async fn published_kids(app: &crate::helpers::TestApp) -> Vec<String> {
    let set: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    set["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| {
            assert_eq!(key["kty"], "OKP");
            assert_eq!(key["crv"], "Ed25519");
            assert_eq!(key["alg"], "EdDSA");
            key["kid"].as_str().expect("kid").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_new_key_is_accepted_at_once_and_a_retired_key_is_refused_after_the_cache_time() {
    let cache = Duration::from_secs(1);
    let app = spawn_app_with(stride_platform::config::Config {
        jwks_cache_seconds: cache.as_secs(),
        ..test_config()
    })
    .await;
    let admin = app.new_account().await;
    app.make_admin(&admin).await;
    let old_token = admin.access_token.clone();
    let old_kid = kid_of(&old_token);
    assert_eq!(published_kids(&app).await, vec![old_kid.clone()]);
    // The verifier has the old key cached.
    assert_eq!(
        app.get_authed("/v1/me", &old_token).await.status(),
        StatusCode::OK
    );

    let rotated = app
        .post_authed("/v1/admin/signing-keys", &old_token, None)
        .await;
    assert_eq!(rotated.status(), StatusCode::CREATED);
    let new_kid = rotated.json::<Value>().await.expect("json")["kid"]
        .as_str()
        .expect("kid")
        .to_owned();
    assert_ne!(new_kid, old_kid);
    let (new_token, _) = app.login_ok(&admin.email, PASSWORD).await;
    assert_eq!(kid_of(&new_token), new_kid, "the newest key signs");
    assert_eq!(
        app.get_authed("/v1/me", &new_token).await.status(),
        StatusCode::OK,
        "a token signed with the new key is accepted at once"
    );
    assert_eq!(
        app.get_authed("/v1/me", &old_token).await.status(),
        StatusCode::OK
    );
    let listed: Value = app
        .get_authed("/v1/admin/signing-keys", &new_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["keys"][0]["kid"], new_kid.as_str());
    assert_eq!(listed["keys"][0]["signing"], true);

    let retired = app
        .delete_authed(&format!("/v1/admin/signing-keys/{old_kid}"), &new_token)
        .await;
    assert_eq!(retired.status(), StatusCode::NO_CONTENT);
    assert_eq!(published_kids(&app).await, vec![new_kid.clone()]);
    tokio::time::sleep(cache + Duration::from_millis(300)).await;
    assert_problem(
        app.get_authed("/v1/me", &old_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        app.get_authed("/v1/me", &new_token).await.status(),
        StatusCode::OK
    );

    let last = app
        .delete_authed(&format!("/v1/admin/signing-keys/{new_kid}"), &new_token)
        .await;
    assert_problem(last, StatusCode::CONFLICT).await;
    let unknown = app
        .delete_authed("/v1/admin/signing-keys/no-such-key", &new_token)
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND).await;
}
