//! SQL for accounts and devices. Sessions and keys have their own modules.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection};
use stride_events::identity::UserUpdated;
use uuid::Uuid;

use crate::domain::{ProfilePatch, Role};

/// An account as stored.
#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub display_name: String,
    pub avatar_id: Option<Uuid>,
    pub units: String,
    pub time_zone: String,
    pub birth_year: Option<i32>,
    pub weight_kg: Option<f64>,
    pub max_heart_rate: Option<i32>,
    pub resting_heart_rate: Option<i32>,
    pub default_visibility: String,
    pub role: String,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl UserRow {
    /// The role.
    pub fn role(&self) -> Role {
        Role::from_stored(&self.role)
    }

    /// The `identity.user_updated.v1` payload for this state.
    pub fn updated_event(&self) -> UserUpdated {
        UserUpdated {
            user_id: self.id,
            display_name: self.display_name.clone(),
            avatar_id: self.avatar_id,
            time_zone: self.time_zone.clone(),
            default_visibility: self.default_visibility.clone(),
            weight_kg: self.weight_kg,
            max_heart_rate: self.max_heart_rate,
            resting_heart_rate: self.resting_heart_rate,
            disabled: self.disabled_at.is_some(),
        }
    }
}

const USER_COLUMNS: &str = "id, email, password_hash, display_name, avatar_id, units, time_zone, \
    birth_year, weight_kg, max_heart_rate, resting_heart_rate, default_visibility, role, \
    disabled_at, created_at, updated_at";

/// The user with this id.
pub async fn user_by_id(connection: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(connection)
        .await
}

/// The user with this id, locked for update.
pub async fn user_by_id_for_update(
    connection: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(connection)
    .await
}

/// The user with this normalised email.
pub async fn user_by_email(
    connection: &mut PgConnection,
    email: &str,
) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
    ))
    .bind(email)
    .fetch_optional(connection)
    .await
}

/// Inserts a new account; fails with `users_email_key` when the email is taken.
pub async fn insert_user(
    connection: &mut PgConnection,
    id: Uuid,
    email: &str,
    password_hash: &str,
    display_name: &str,
) -> sqlx::Result<UserRow> {
    sqlx::query_as(&format!(
        "INSERT INTO users (id, email, password_hash, display_name) VALUES ($1, $2, $3, $4)
         RETURNING {USER_COLUMNS}"
    ))
    .bind(id)
    .bind(email)
    .bind(password_hash)
    .bind(display_name)
    .fetch_one(connection)
    .await
}

/// Applies a checked patch to a locked row and returns the new state.
pub async fn apply_patch(
    connection: &mut PgConnection,
    current: &UserRow,
    patch: &ProfilePatch,
) -> sqlx::Result<UserRow> {
    let pick = |patched: Option<Option<i32>>, current: Option<i32>| patched.unwrap_or(current);
    sqlx::query_as(&format!(
        "UPDATE users SET display_name = $2, avatar_id = $3, units = $4, time_zone = $5,
            birth_year = $6, weight_kg = $7, max_heart_rate = $8, resting_heart_rate = $9,
            default_visibility = $10, updated_at = now()
         WHERE id = $1 RETURNING {USER_COLUMNS}"
    ))
    .bind(current.id)
    .bind(
        patch
            .display_name
            .as_ref()
            .map_or(current.display_name.as_str(), |name| name.as_str()),
    )
    .bind(patch.avatar_id.unwrap_or(current.avatar_id))
    .bind(
        patch
            .units
            .map_or(current.units.as_str(), |units| units.as_str()),
    )
    .bind(
        patch
            .time_zone
            .as_ref()
            .map_or(current.time_zone.as_str(), |zone| zone.as_str()),
    )
    .bind(pick(patch.birth_year, current.birth_year))
    .bind(patch.weight_kg.unwrap_or(current.weight_kg))
    .bind(pick(patch.max_heart_rate, current.max_heart_rate))
    .bind(pick(patch.resting_heart_rate, current.resting_heart_rate))
    .bind(
        patch
            .default_visibility
            .map_or(current.default_visibility.as_str(), |v| v.as_str()),
    )
    .fetch_one(connection)
    .await
}

/// A device as listed to its owner (never with its credential).
#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct DeviceRow {
    /// Device id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// An administrator's view of an account.
#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct AdminUserRow {
    /// User id.
    pub id: Uuid,
    /// Email address.
    pub email: String,
    /// Public name.
    pub display_name: String,
    /// `user` or `admin`.
    pub role: String,
    /// When it was disabled, if it is.
    pub disabled_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}
