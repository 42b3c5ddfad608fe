//! The identity REST API. Each module exposes `router()`; they are merged here with one state.

mod admin;
mod auth;
mod devices;
mod jwks;
mod me;
mod users;

use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;

use crate::{Identity, store::UserRow};

/// Every identity route, with its OpenAPI description.
pub fn router(state: Identity) -> OpenApiRouter {
    OpenApiRouter::new()
        .merge(auth::router())
        .merge(me::router())
        .merge(devices::router())
        .merge(users::router())
        .merge(admin::router())
        .merge(jwks::router())
        .with_state(state)
}

/// An account as its owner sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserResponse {
    /// User id (UUIDv7).
    pub id: uuid::Uuid,
    /// Normalised email address.
    pub email: String,
    /// Public name.
    pub display_name: String,
    /// Media id of the avatar.
    pub avatar_id: Option<uuid::Uuid>,
    /// `metric` or `imperial`.
    pub units: String,
    /// IANA time zone.
    pub time_zone: String,
    /// Year of birth.
    pub birth_year: Option<i32>,
    /// Body weight, kg.
    pub weight_kg: Option<f64>,
    /// Maximum heart rate, bpm.
    pub max_heart_rate: Option<i32>,
    /// Resting heart rate, bpm.
    pub resting_heart_rate: Option<i32>,
    /// Visibility given to new activities: `public`, `followers` or `private`.
    pub default_visibility: String,
    /// `user` or `admin`.
    pub role: String,
    /// When the account was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When the profile last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<UserRow> for UserResponse {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email,
            display_name: row.display_name,
            avatar_id: row.avatar_id,
            units: row.units,
            time_zone: row.time_zone,
            birth_year: row.birth_year,
            weight_kg: row.weight_kg,
            max_heart_rate: row.max_heart_rate,
            resting_heart_rate: row.resting_heart_rate,
            default_visibility: row.default_visibility,
            role: row.role,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}
