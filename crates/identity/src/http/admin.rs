//! `/v1/admin/*`: accounts and signing keys, for administrators only.
//!
//! The role is re-read from the database on every call, so a demoted administrator loses
//! access at once even while their access token still says `admin`.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use stride_events::Envelope;
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, Problem},
    http::{Json, PageParams, Path, Query, encode_cursor},
    outbox,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    Identity, NAME,
    domain::{Email, Role},
    keys::{KeyInfo, Retire},
    sessions::{self, RevokeReason, Which},
    store::{self, AdminUserRow},
};

pub fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
        .routes(routes!(list_keys, rotate_key))
        .routes(routes!(retire_key))
}

async fn require_admin(identity: &Identity, caller: &AuthUser) -> Result<(), ApiError> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM users WHERE id = $1 AND disabled_at IS NULL")
            .bind(caller.user_id)
            .fetch_optional(&identity.db)
            .await?;
    match role.as_deref().map(Role::from_stored) {
        Some(Role::Admin) => Ok(()),
        _ => Err(ApiError::forbidden("this needs the admin role")),
    }
}

/// Filters of the account list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UserFilter {
    /// Only the account with this email.
    pub email: Option<String>,
}

/// A page of accounts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserPage {
    /// Accounts, oldest first.
    pub users: Vec<AdminUserRow>,
    /// Cursor of the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Lists accounts.
#[utoipa::path(
    get,
    path = "/v1/admin/users",
    tag = "admin",
    security(("bearer" = [])),
    params(PageParams, UserFilter),
    responses(
        (status = 200, description = "A page of accounts", body = UserPage),
        (status = 400, description = "Bad cursor, limit or email", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn list_users(
    State(identity): State<Identity>,
    caller: AuthUser,
    Query(page): Query<PageParams>,
    Query(filter): Query<UserFilter>,
) -> Result<Json<UserPage>, ApiError> {
    require_admin(&identity, &caller).await?;
    let limit = page.limit()?;
    let after: Option<Uuid> = page.cursor()?;
    let email = filter.email.as_deref().map(Email::parse).transpose()?;
    let mut users: Vec<AdminUserRow> = sqlx::query_as(
        "SELECT id, email, display_name, role, disabled_at, created_at FROM users
         WHERE ($1::uuid IS NULL OR id > $1) AND ($2::text IS NULL OR email = $2)
         ORDER BY id LIMIT $3",
    )
    .bind(after)
    .bind(email.as_ref().map(Email::as_str))
    .bind(limit + 1)
    .fetch_all(&identity.db)
    .await?;
    let next_cursor = if users.len() as i64 > limit {
        users.truncate(limit as usize);
        users.last().map(|user| encode_cursor(&user.id))
    } else {
        None
    };
    Ok(Json(UserPage { users, next_cursor }))
}

async fn set_disabled(
    identity: &Identity,
    id: Uuid,
    disabled: bool,
) -> Result<AdminUserRow, ApiError> {
    let mut tx = identity.db.begin().await?;
    let current = store::user_by_id_for_update(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    let updated: store::UserRow = sqlx::query_as(
        "UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END,
                updated_at = now()
         WHERE id = $1
         RETURNING id, email, password_hash, display_name, avatar_id, units, time_zone,
                   birth_year, weight_kg, max_heart_rate, resting_heart_rate,
                   default_visibility, role, disabled_at, created_at, updated_at",
    )
    .bind(current.id)
    .bind(disabled)
    .fetch_one(&mut *tx)
    .await?;
    let revoked = if disabled {
        sessions::revoke_in(&mut tx, Which::AllOf(id), RevokeReason::AccountDisabled).await?
    } else {
        Vec::new()
    };
    if current.disabled_at.is_some() != disabled {
        let event = Envelope::new(NAME, id.to_string(), &updated.updated_event())
            .map_err(ApiError::internal)?;
        outbox::enqueue(&mut tx, &event).await?;
    }
    tx.commit().await?;
    identity.sessions.cache_revocations(&revoked).await;
    Ok(AdminUserRow {
        id: updated.id,
        email: updated.email,
        display_name: updated.display_name,
        role: updated.role,
        disabled_at: updated.disabled_at,
        created_at: updated.created_at,
    })
}

/// Disables an account: its sessions end at once, it cannot log in, its devices are refused.
#[utoipa::path(
    post,
    path = "/v1/admin/users/{id}/disable",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The account", body = AdminUserRow),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Administrators cannot disable themselves", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn disable_user(
    State(identity): State<Identity>,
    caller: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<AdminUserRow>, ApiError> {
    require_admin(&identity, &caller).await?;
    if id == caller.user_id {
        return Err(ApiError::conflict(
            "an administrator cannot disable their own account",
        ));
    }
    Ok(Json(set_disabled(&identity, id, true).await?))
}

/// Enables a disabled account again.
#[utoipa::path(
    post,
    path = "/v1/admin/users/{id}/enable",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The account", body = AdminUserRow),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn enable_user(
    State(identity): State<Identity>,
    caller: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<AdminUserRow>, ApiError> {
    require_admin(&identity, &caller).await?;
    Ok(Json(set_disabled(&identity, id, false).await?))
}

/// The unretired signing keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    /// Newest first; the first one signs.
    pub keys: Vec<KeyInfo>,
}

/// Lists the token signing keys.
#[utoipa::path(
    get,
    path = "/v1/admin/signing-keys",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The keys", body = KeyList),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn list_keys(
    State(identity): State<Identity>,
    caller: AuthUser,
) -> Result<Json<KeyList>, ApiError> {
    require_admin(&identity, &caller).await?;
    identity.keys.reload().await?;
    Ok(Json(KeyList {
        keys: identity.keys.info(),
    }))
}

/// Rotates: a new key signs from now on and is published at once; older keys stay published
/// until retired, so tokens they signed keep working.
#[utoipa::path(
    post,
    path = "/v1/admin/signing-keys",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new key", body = KeyInfo),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn rotate_key(
    State(identity): State<Identity>,
    caller: AuthUser,
) -> Result<(StatusCode, Json<KeyInfo>), ApiError> {
    require_admin(&identity, &caller).await?;
    Ok((StatusCode::CREATED, Json(identity.keys.rotate().await?)))
}

/// Retires a key: it leaves the JWKS, and tokens it signed are refused once verifiers'
/// caches expire (`STRIDE_JWKS_CACHE_SECONDS`).
#[utoipa::path(
    delete,
    path = "/v1/admin/signing-keys/{kid}",
    tag = "admin",
    security(("bearer" = [])),
    params(("kid" = String, Path, description = "Key id")),
    responses(
        (status = 204, description = "Retired"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It is the last key", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn retire_key(
    State(identity): State<Identity>,
    caller: AuthUser,
    Path(kid): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&identity, &caller).await?;
    match identity.keys.retire(&kid).await? {
        Retire::Retired => Ok(StatusCode::NO_CONTENT),
        Retire::NotFound => Err(ApiError::not_found("no such signing key")),
        Retire::LastKey => Err(ApiError::conflict(
            "this is the only signing key; rotate before retiring it",
        )),
    }
}
