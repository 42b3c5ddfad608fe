//! `/v1/devices`: device credentials for watches, bike computers, straps and phones.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, Problem},
    http::{Json, Path},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    Identity,
    domain::{DeviceKind, DeviceName},
    sessions::new_secret,
    store::DeviceRow,
};

/// Prefix of device tokens, so a leaked one is recognisable.
pub const DEVICE_TOKEN_PREFIX: &str = "sdv_";

/// Most active devices per account.
const MAX_DEVICES: i64 = 50;

pub fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new()
        .routes(routes!(create_device, list_devices))
        .routes(routes!(revoke_device))
}

/// A device to register.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeviceRequest {
    /// A name for the owner, 1 to 64 characters.
    pub name: String,
    /// What it is.
    pub kind: DeviceKind,
}

/// A registered device with its credential, which is shown only here.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedDevice {
    /// Device id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: DeviceKind,
    /// The device credential (`Authorization: Bearer` for device endpoints). Shown once.
    pub token: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// Registers a device and returns its credential once.
#[utoipa::path(
    post,
    path = "/v1/devices",
    tag = "identity",
    security(("bearer" = [])),
    request_body = CreateDeviceRequest,
    responses(
        (status = 201, description = "The device and its credential", body = CreatedDevice),
        (status = 400, description = "Invalid name or kind", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Too many devices", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn create_device(
    State(identity): State<Identity>,
    user: AuthUser,
    Json(request): Json<CreateDeviceRequest>,
) -> Result<(StatusCode, Json<CreatedDevice>), ApiError> {
    let name = DeviceName::parse(&request.name)?;
    let (token, hash) = new_secret(DEVICE_TOKEN_PREFIX);
    let id = Uuid::now_v7();
    let mut tx = identity.db.begin().await?;
    // Lock the owner's row so two concurrent registrations cannot both pass the limit.
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(user.user_id)
        .execute(&mut *tx)
        .await?;
    let active: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM devices WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user.user_id)
    .fetch_one(&mut *tx)
    .await?;
    if active >= MAX_DEVICES {
        return Err(ApiError::conflict(format!(
            "an account can have at most {MAX_DEVICES} devices; revoke one first"
        )));
    }
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO devices (id, user_id, name, kind, token_hash) VALUES ($1, $2, $3, $4, $5)
         RETURNING created_at",
    )
    .bind(id)
    .bind(user.user_id)
    .bind(name.as_str())
    .bind(request.kind.as_str())
    .bind(&hash)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedDevice {
            id,
            name: name.as_str().to_owned(),
            kind: request.kind,
            token,
            created_at,
        }),
    ))
}

/// The caller's devices.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceList {
    /// Active devices, newest first.
    pub devices: Vec<DeviceRow>,
}

/// Lists the caller's active devices (without credentials).
#[utoipa::path(
    get,
    path = "/v1/devices",
    tag = "identity",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The devices", body = DeviceList),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn list_devices(
    State(identity): State<Identity>,
    user: AuthUser,
) -> Result<Json<DeviceList>, ApiError> {
    let devices = sqlx::query_as(
        "SELECT id, name, kind, created_at FROM devices
         WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id DESC",
    )
    .bind(user.user_id)
    .fetch_all(&identity.db)
    .await?;
    Ok(Json(DeviceList { devices }))
}

/// Revokes a device credential. Services that cache device checks refuse it within
/// `STRIDE_DEVICE_AUTH_CACHE_SECONDS`.
#[utoipa::path(
    delete,
    path = "/v1/devices/{id}",
    tag = "identity",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Device id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such device of the caller", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn revoke_device(
    State(identity): State<Identity>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let revoked = sqlx::query(
        "UPDATE devices SET revoked_at = now()
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(user.user_id)
    .execute(&identity.db)
    .await?
    .rows_affected();
    if revoked == 0 {
        return Err(ApiError::not_found("no such device"));
    }
    Ok(StatusCode::NO_CONTENT)
}
