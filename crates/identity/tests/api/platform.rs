//! What the platform adds around identity: health, readiness, metrics, request ids, the
//! OpenAPI document, problem+json for unknown routes, body limits, gRPC, graceful shutdown.

use reqwest::StatusCode;
use serde_json::{Value, json};
use stride_proto::identity::v1::{
    CheckSessionRequest, GetProfilesRequest, user_directory_client::UserDirectoryClient,
};

use crate::helpers::{PASSWORD, assert_problem, spawn_app};

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    let health = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["checks"]["postgres:identity"], "ok");
    assert_eq!(ready["checks"]["redis"], "ok");
    assert_eq!(ready["checks"]["nats"], "ok");

    app.new_account().await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            r#"stride_http_requests_total{method="POST",route="/v1/auth/register",status="201"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(
            |line| line.starts_with("stride_http_request_duration_seconds_bucket")
                && line.contains(r#"method="POST""#)
                && line.contains(r#"route="/v1/auth/login""#)
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn request_ids_are_honoured_or_generated() {
    let app = spawn_app().await;
    let echoed = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .expect("sent");
    assert_eq!(echoed.headers()["x-request-id"], "client-chosen-42");
    let generated = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    let id = generated.headers()["x-request-id"].to_str().expect("ascii");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let hostile = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "a\tb<script>")
        .send()
        .await
        .expect("sent");
    assert_ne!(hostile.headers()["x-request-id"], "a\tb<script>");
}

#[tokio::test]
async fn the_openapi_document_describes_every_identity_endpoint() {
    let app = spawn_app().await;
    let document: Value = app
        .client
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    for path in [
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/auth/logout-all",
        "/v1/me",
        "/v1/me/password",
        "/v1/devices",
        "/v1/devices/{id}",
        "/v1/users/{id}",
        "/v1/admin/users",
        "/v1/admin/users/{id}/disable",
        "/v1/admin/users/{id}/enable",
        "/v1/admin/signing-keys",
        "/v1/admin/signing-keys/{kid}",
        "/.well-known/jwks.json",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is missing");
    }
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_huge_bodies_are_problems() {
    let app = spawn_app().await;
    let unknown = app
        .client
        .get(app.url("/v1/nothing-here"))
        .send()
        .await
        .expect("sent");
    assert_problem(unknown, StatusCode::NOT_FOUND).await;
    let wrong_method = app
        .client
        .put(app.url("/v1/auth/login"))
        .send()
        .await
        .expect("sent");
    assert_problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await;
    let huge = json!({"email": "x@example.org", "password": "p".repeat(2 * 1024 * 1024), "display_name": "X"});
    let response = app.post_json("/v1/auth/register", &huge).await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn the_user_directory_answers_profiles_and_session_checks_over_grpc() {
    let app = spawn_app().await;
    let account = app.new_account().await;
    let mut directory = UserDirectoryClient::connect(app.grpc_address.clone())
        .await
        .expect("grpc");
    let profiles = directory
        .get_profiles(GetProfilesRequest {
            user_ids: vec![
                account.user_id.to_string(),
                uuid::Uuid::now_v7().to_string(),
            ],
        })
        .await
        .expect("answered")
        .into_inner()
        .profiles;
    assert_eq!(profiles.len(), 1, "unknown ids are left out");
    assert_eq!(profiles[0].display_name, "Test Athlete");
    assert_eq!(profiles[0].time_zone, "UTC");
    let bad = directory
        .get_profiles(GetProfilesRequest {
            user_ids: vec!["nope".into()],
        })
        .await
        .expect_err("invalid");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            account.access_token.split('.').nth(1).expect("payload"),
        )
        .expect("base64"),
    )
    .expect("json");
    let session_id = claims["sid"].as_str().expect("sid").to_owned();
    let active = directory
        .check_session(CheckSessionRequest {
            session_id: session_id.clone(),
        })
        .await
        .expect("answered")
        .into_inner();
    assert!(active.active);
    assert_eq!(active.user_id, account.user_id.to_string());
    app.post_authed("/v1/auth/logout", &account.access_token, None)
        .await;
    let ended = directory
        .check_session(CheckSessionRequest { session_id })
        .await
        .expect("answered")
        .into_inner();
    assert!(!ended.active);
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    let mut app = spawn_app().await;
    let account = app.new_account().await;
    let client = app.client.clone();
    let url = app.url("/v1/auth/login");
    let body = json!({"email": account.email, "password": PASSWORD});
    let in_flight = tokio::spawn(async move { client.post(url).json(&body).send().await });
    // The login hashes for tens of milliseconds; stop while it runs.
    tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    app.stop().await;
    let response = in_flight.await.expect("joined").expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        reqwest::get(app.url("/healthz")).await.is_err(),
        "no new connections after shutdown"
    );
}
