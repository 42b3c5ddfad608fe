//! `/v1/me/training-settings`: a free-form JSON document per user (zones, splits, anything an
//! app wants to keep), versioned so that two devices cannot silently overwrite each other.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, ErrorCode, Problem},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::Training;

/// Largest settings document.
pub const MAX_SETTINGS_BYTES: usize = 64 * 1024;

pub fn router() -> OpenApiRouter<Training> {
    OpenApiRouter::new().routes(routes!(get_settings, put_settings))
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn document_response(status: StatusCode, document: serde_json::Value, version: i64) -> Response {
    let mut response = (status, axum::Json(document)).into_response();
    response.headers_mut().insert(header::ETAG, etag(version));
    response
}

/// The caller's training settings (`{}` until set), with an `ETag`.
#[utoipa::path(
    get,
    path = "/v1/me/training-settings",
    tag = "training",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The document; ETag is its version (\"0\" when never set)", body = Object),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn get_settings(
    State(training): State<Training>,
    user: AuthUser,
) -> Result<Response, ApiError> {
    let row: Option<(serde_json::Value, i64)> =
        sqlx::query_as("SELECT document, version FROM training_settings WHERE user_id = $1")
            .bind(user.user_id)
            .fetch_optional(&training.db)
            .await?;
    let (document, version) = row.unwrap_or((serde_json::json!({}), 0));
    Ok(document_response(StatusCode::OK, document, version))
}

fn parse_version(value: &HeaderValue) -> Option<i64> {
    value
        .to_str()
        .ok()?
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

/// Replaces the caller's training settings. `If-Match` with the current `ETag` is required
/// once a document exists (`If-Match: "0"` or none to create the first one); a stale one is
/// 412, so a second device never silently overwrites the first.
#[utoipa::path(
    put,
    path = "/v1/me/training-settings",
    tag = "training",
    security(("bearer" = [])),
    request_body(content = Object, description = "Any JSON object, at most 64 KiB"),
    params(("If-Match" = Option<String>, Header, description = "The ETag of the version being replaced")),
    responses(
        (status = 200, description = "Stored; ETag is the new version", body = Object),
        (status = 400, description = "Not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match is stale", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing but a document exists", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn put_settings(
    State(training): State<Training>,
    user: AuthUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.len() > MAX_SETTINGS_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("training settings are limited to {MAX_SETTINGS_BYTES} bytes"),
        ));
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected a body with Content-Type: application/json",
        ));
    }
    let document: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|error| ApiError::validation(format!("invalid JSON body: {error}")))?;
    if !document.is_object() {
        return Err(ApiError::validation(
            "training settings must be a JSON object",
        ));
    }
    let expected =
        match headers.get(header::IF_MATCH) {
            Some(value) => Some(parse_version(value).ok_or_else(|| {
                ApiError::validation("If-Match must be an ETag this API returned")
            })?),
            None => None,
        };
    let mut tx = training.db.begin().await?;
    let current: Option<i64> =
        sqlx::query_scalar("SELECT version FROM training_settings WHERE user_id = $1 FOR UPDATE")
            .bind(user.user_id)
            .fetch_optional(&mut *tx)
            .await?;
    // Serialise first writes of the same user: the insert below conflicts for the loser.
    let current_version = current.unwrap_or(0);
    match expected {
        None if current.is_some() => {
            return Err(ApiError::new(
                ErrorCode::PreconditionRequired,
                "send If-Match with the ETag you last read, so no other device's change is lost",
            ));
        }
        Some(expected) if expected != current_version => {
            return Err(ApiError::new(
                ErrorCode::PreconditionFailed,
                "the settings changed since you read them; read them again and reapply your change",
            ));
        }
        _ => {}
    }
    let next = current_version + 1;
    let stored = sqlx::query(
        "INSERT INTO training_settings (user_id, document, version) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE SET document = $2, version = $3, updated_at = now()
         WHERE training_settings.version = $4",
    )
    .bind(user.user_id)
    .bind(&document)
    .bind(next)
    .bind(current_version)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if stored == 0 {
        return Err(ApiError::new(
            ErrorCode::PreconditionFailed,
            "the settings changed since you read them; read them again and reapply your change",
        ));
    }
    tx.commit().await?;
    Ok(document_response(StatusCode::OK, document, next))
}
