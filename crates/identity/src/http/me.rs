//! `/v1/me`: the caller's own account.

use axum::{extract::State, http::StatusCode};
use serde::Deserialize;
use stride_events::{Envelope, identity::UserDeleted};
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, Problem},
    http::{ClientIp, Json, double_option},
    outbox,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::UserResponse;
use crate::{
    Identity, NAME,
    domain::{
        DisplayName, NewPassword, ProfilePatch, TimeZone, Units, Visibility, check_heart_rates,
    },
    sessions::{self, RevokeReason, Which},
    store,
};

pub fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new()
        .routes(routes!(get_me, patch_me, delete_me))
        .routes(routes!(change_password))
}

fn gone() -> ApiError {
    ApiError::unauthorized("the account no longer exists")
}

/// The caller's account.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "identity",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account", body = UserResponse),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn get_me(
    State(identity): State<Identity>,
    user: AuthUser,
) -> Result<Json<UserResponse>, ApiError> {
    let mut connection = identity.db.acquire().await?;
    let row = store::user_by_id(&mut connection, user.user_id)
        .await?
        .ok_or_else(gone)?;
    Ok(Json(row.into()))
}

/// Fields to change; absent fields stay, `null` clears a clearable one.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchMeRequest {
    /// Public name, 1 to 64 characters.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Media id of the avatar, or null.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Uuid>)]
    pub avatar_id: Option<Option<Uuid>>,
    /// `metric` or `imperial`.
    #[serde(default)]
    pub units: Option<Units>,
    /// IANA time zone name, e.g. `Europe/Paris`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Year of birth (1900 to five years ago), or null.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i32>)]
    pub birth_year: Option<Option<i32>>,
    /// Body weight in kg (20 to 400), or null.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>)]
    pub weight_kg: Option<Option<f64>>,
    /// Maximum heart rate in bpm (100 to 250), or null.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i32>)]
    pub max_heart_rate: Option<Option<i32>>,
    /// Resting heart rate in bpm (25 to 120, below the maximum), or null.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i32>)]
    pub resting_heart_rate: Option<Option<i32>>,
    /// Visibility given to new activities.
    #[serde(default)]
    pub default_visibility: Option<Visibility>,
}

impl PatchMeRequest {
    fn parse(self) -> Result<ProfilePatch, ApiError> {
        let patch = ProfilePatch {
            display_name: self
                .display_name
                .as_deref()
                .map(DisplayName::parse)
                .transpose()?,
            avatar_id: self.avatar_id,
            units: self.units,
            time_zone: self.time_zone.as_deref().map(TimeZone::parse).transpose()?,
            birth_year: self.birth_year,
            weight_kg: self.weight_kg,
            max_heart_rate: self.max_heart_rate,
            resting_heart_rate: self.resting_heart_rate,
            default_visibility: self.default_visibility,
        };
        patch.check_ranges()?;
        Ok(patch)
    }
}

/// Changes the caller's profile and settings.
#[utoipa::path(
    patch,
    path = "/v1/me",
    tag = "identity",
    security(("bearer" = [])),
    request_body = PatchMeRequest,
    responses(
        (status = 200, description = "The changed account", body = UserResponse),
        (status = 400, description = "A value is out of range or unknown", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn patch_me(
    State(identity): State<Identity>,
    user: AuthUser,
    Json(request): Json<PatchMeRequest>,
) -> Result<Json<UserResponse>, ApiError> {
    let patch = request.parse()?;
    let mut tx = identity.db.begin().await?;
    let current = store::user_by_id_for_update(&mut tx, user.user_id)
        .await?
        .ok_or_else(gone)?;
    check_heart_rates(
        patch.max_heart_rate.unwrap_or(current.max_heart_rate),
        patch
            .resting_heart_rate
            .unwrap_or(current.resting_heart_rate),
    )?;
    let updated = store::apply_patch(&mut tx, &current, &patch).await?;
    let event = Envelope::new(NAME, updated.id.to_string(), &updated.updated_event())
        .map_err(ApiError::internal)?;
    outbox::enqueue(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(Json(updated.into()))
}

/// Deletes the caller's account. Every service erases this user's data when it receives
/// `identity.user_deleted.v1`.
#[utoipa::path(
    delete,
    path = "/v1/me",
    tag = "identity",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The account is deleted"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn delete_me(
    State(identity): State<Identity>,
    user: AuthUser,
) -> Result<StatusCode, ApiError> {
    let mut tx = identity.db.begin().await?;
    let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user.user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(gone());
    }
    let revoked = sessions::revoke_in(
        &mut tx,
        Which::AllOf(user.user_id),
        RevokeReason::AccountDeleted,
    )
    .await?;
    let event = Envelope::new(
        NAME,
        user.user_id.to_string(),
        &UserDeleted {
            user_id: user.user_id,
        },
    )
    .map_err(ApiError::internal)?;
    outbox::enqueue(&mut tx, &event).await?;
    tx.commit().await?;
    identity.sessions.cache_revocations(&revoked).await;
    tracing::info!(user_id = %user.user_id, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A password change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The password in use now.
    pub current_password: String,
    /// The new password (same policy as at registration).
    pub new_password: String,
}

/// Changes the caller's password and ends every other session.
#[utoipa::path(
    post,
    path = "/v1/me/password",
    tag = "identity",
    security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed; other sessions have ended"),
        (status = 400, description = "The new password is not acceptable", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated, or the current password is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Throttled; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn change_password(
    State(identity): State<Identity>,
    ClientIp(address): ClientIp,
    user: AuthUser,
    Json(request): Json<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let current = {
        let mut connection = identity.db.acquire().await?;
        store::user_by_id(&mut connection, user.user_id)
            .await?
            .ok_or_else(gone)?
    };
    // A stolen access token must not become a way to guess the password without limit.
    if let Some(delay) = identity
        .throttle
        .check(&current.email, address)
        .await
        .map_err(|error| ApiError::unavailable(error, 2))?
    {
        return Err(ApiError::too_many_requests(
            "too many wrong passwords; wait before trying again",
            delay.as_secs_f64().ceil() as u64,
        ));
    }
    let new_password = NewPassword::parse(
        &request.new_password,
        &[current.email.as_str(), current.display_name.as_str()],
    )?;
    if !identity
        .hashes
        .verify(
            Some(current.password_hash.clone()),
            request.current_password,
        )
        .await?
    {
        identity
            .throttle
            .failure(&current.email, address)
            .await
            .map_err(|error| ApiError::unavailable(error, 2))?;
        return Err(ApiError::unauthorized("the current password is wrong"));
    }
    let hash = identity
        .hashes
        .hash(new_password.expose().to_owned())
        .await?;
    let mut tx = identity.db.begin().await?;
    sqlx::query("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1")
        .bind(user.user_id)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
    let revoked = sessions::revoke_in(
        &mut tx,
        Which::AllOfExcept(user.user_id, user.session_id),
        RevokeReason::PasswordChanged,
    )
    .await?;
    tx.commit().await?;
    identity.sessions.cache_revocations(&revoked).await;
    Ok(StatusCode::NO_CONTENT)
}
