//! The access-token rejection matrix, per-endpoint privacy, and how passwords are stored.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Account, PASSWORD, TestApp, assert_problem, spawn_app};

/// The claims of a valid token, as a JSON object to tamper with.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json")
}

/// Signs `claims` with identity's real current key, as identity would.
async fn sign_with_real_key(app: &TestApp, claims: &Value) -> String {
    let (kid, private_key): (String, Vec<u8>) = sqlx::query_as(
        "SELECT kid, private_key FROM signing_keys WHERE retired_at IS NULL
         ORDER BY created_at DESC LIMIT 1",
    )
    .fetch_one(&app.db)
    .await
    .expect("a signing key");
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&private_key)).expect("signed")
}

async fn assert_refused(app: &TestApp, token: &str, case: &str) {
    let response = app.get_authed("/v1/me", token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn forged_expired_and_misdirected_tokens_are_all_refused() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let valid = &account.access_token;
    let claims = claims_of(valid);
    let now = chrono::Utc::now().timestamp();
    // Sanity: the same claims signed with the real key are accepted.
    let resigned = sign_with_real_key(&app, &claims).await;
    assert_eq!(
        app.get_authed("/v1/me", &resigned).await.status(),
        StatusCode::OK
    );

    // alg: none
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = valid.split('.').nth(1).expect("payload");
    assert_refused(&app, &format!("{none_header}.{payload}."), "alg none").await;

    // HS256 keyed with the public key (as raw bytes and as its JWK text).
    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let public_x = jwks["keys"][0]["x"].as_str().expect("x").to_owned();
    let kid = jwks["keys"][0]["kid"].as_str().expect("kid").to_owned();
    let public_bytes = URL_SAFE_NO_PAD.decode(&public_x).expect("bytes");
    for secret in [
        public_bytes.as_slice(),
        public_x.as_bytes(),
        jwks["keys"][0].to_string().as_bytes(),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let forged = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret))
            .expect("signed");
        assert_refused(&app, &forged, "HS256 with the public key").await;
    }

    let mut expired = claims.clone();
    expired["iat"] = json!(now - 7200);
    expired["nbf"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    assert_refused(&app, &sign_with_real_key(&app, &expired).await, "expired").await;

    let mut early = claims.clone();
    early["nbf"] = json!(now + 3600);
    early["exp"] = json!(now + 7200);
    assert_refused(
        &app,
        &sign_with_real_key(&app, &early).await,
        "nbf in the future",
    )
    .await;

    let mut wrong_issuer = claims.clone();
    wrong_issuer["iss"] = json!("someone-else");
    assert_refused(
        &app,
        &sign_with_real_key(&app, &wrong_issuer).await,
        "wrong iss",
    )
    .await;

    let mut wrong_audience = claims.clone();
    wrong_audience["aud"] = json!("another-api");
    assert_refused(
        &app,
        &sign_with_real_key(&app, &wrong_audience).await,
        "wrong aud",
    )
    .await;

    let mut not_access = claims.clone();
    not_access["typ"] = json!("refresh");
    assert_refused(
        &app,
        &sign_with_real_key(&app, &not_access).await,
        "typ refresh",
    )
    .await;

    // Tampered payload with the original signature, and a tampered signature.
    let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    let mut elevated = claims.clone();
    elevated["role"] = json!("admin");
    parts[1] = URL_SAFE_NO_PAD.encode(elevated.to_string());
    assert_refused(&app, &parts.join("."), "tampered payload").await;
    let mut signature = URL_SAFE_NO_PAD
        .decode(valid.split('.').nth(2).expect("signature"))
        .expect("bytes");
    signature[0] ^= 0x01;
    let tampered = format!(
        "{}.{}",
        valid.rsplit_once('.').expect("dot").0,
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert_refused(&app, &tampered, "tampered signature").await;

    // A refresh token is not an access token; neither is garbage.
    assert_refused(
        &app,
        &account.refresh_token,
        "refresh token as access token",
    )
    .await;
    assert_refused(&app, "not.a.jwt", "garbage").await;

    // Still valid after all that.
    assert_eq!(
        app.get_authed("/v1/me", valid).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn tokens_of_revoked_sessions_and_of_deleted_or_disabled_users_are_refused() {
    let app = spawn_app().await;
    let admin = app.new_account().await;
    app.make_admin(&admin).await;

    let logged_out = app.new_account().await;
    app.post_authed("/v1/auth/logout", &logged_out.access_token, None)
        .await;
    assert_refused(&app, &logged_out.access_token, "revoked session").await;

    let deleted = app.new_account().await;
    app.delete_authed("/v1/me", &deleted.access_token).await;
    assert_refused(&app, &deleted.access_token, "deleted user").await;

    let disabled = app.new_account().await;
    let response = app
        .post_authed(
            &format!("/v1/admin/users/{}/disable", disabled.user_id),
            &admin.access_token,
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_refused(&app, &disabled.access_token, "disabled user").await;
    // Even a token identity itself signs for that session is refused.
    let resigned = sign_with_real_key(&app, &claims_of(&disabled.access_token)).await;
    assert_refused(&app, &resigned, "re-signed token of a disabled user").await;
}

#[tokio::test]
async fn the_stored_password_hash_is_argon2id_with_owasp_parameters() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(account.user_id)
        .fetch_one(&app.db)
        .await
        .expect("stored");
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!hash.contains(PASSWORD));
}

async fn private_text(app: &TestApp, account: &Account) -> Vec<String> {
    vec![account.email.clone(), account.user_id.to_string()]
        .into_iter()
        .chain(std::iter::once(
            sqlx::query_scalar::<_, String>("SELECT password_hash FROM users WHERE id = $1")
                .bind(account.user_id)
                .fetch_one(&app.db)
                .await
                .expect("hash"),
        ))
        .collect()
}

#[tokio::test]
async fn no_endpoint_shows_a_user_another_users_private_data() {
    let app = spawn_app().await;
    let victim = app.new_account().await;
    let device: Value = app
        .post_authed(
            "/v1/devices",
            &victim.access_token,
            Some(&json!({"name": "Victim's watch", "kind": "watch"})),
        )
        .await
        .json()
        .await
        .expect("json");
    let attacker = app.new_account().await;
    let token = &attacker.access_token;
    let secrets = private_text(&app, &victim).await;
    let (victim_email, victim_hash) = (&secrets[0], &secrets[2]);

    let mut bodies = Vec::new();
    for path in [
        "/v1/me",
        "/v1/devices",
        "/v1/admin/users",
        "/v1/admin/signing-keys",
    ] {
        bodies.push(
            app.get_authed(path, token)
                .await
                .text()
                .await
                .expect("text"),
        );
    }
    // The public profile shows the name only.
    let profile = app
        .get_authed(&format!("/v1/users/{}", victim.user_id), token)
        .await;
    assert_eq!(profile.status(), StatusCode::OK);
    let profile: Value = profile.json().await.expect("json");
    assert_eq!(profile["display_name"], "Test Athlete");
    bodies.push(profile.to_string());
    for body in &bodies {
        assert!(
            !body.contains(victim_email.as_str()),
            "email leaked: {body}"
        );
        assert!(!body.contains(victim_hash.as_str()), "hash leaked: {body}");
        assert!(!body.contains("Victim's watch"), "device leaked: {body}");
    }
    // Writes aimed at the victim's objects fail and change nothing.
    let device_path = format!("/v1/devices/{}", device["id"].as_str().expect("id"));
    assert_problem(
        app.delete_authed(&device_path, token).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let patched = app
        .patch_authed("/v1/me", token, &json!({"display_name": "Mallory"}))
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let victim_me: Value = app
        .get_authed("/v1/me", &victim.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(victim_me["display_name"], "Test Athlete");
    let devices: Value = app
        .get_authed("/v1/devices", &victim.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(devices["devices"].as_array().map(Vec::len), Some(1));
    assert_problem(
        app.get_authed(&format!("/v1/users/{}", uuid::Uuid::now_v7()), token)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
}
