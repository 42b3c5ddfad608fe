//! `/v1/users/{id}`: another athlete's public profile.

use axum::extract::State;
use serde::Serialize;
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, Problem},
    http::{Json, Path},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::Identity;

pub fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new().routes(routes!(public_profile))
}

/// What anyone signed in may see of an athlete.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PublicProfile {
    /// User id.
    pub id: Uuid,
    /// Public name.
    pub display_name: String,
    /// Media id of the avatar.
    pub avatar_id: Option<Uuid>,
}

/// An athlete's public profile.
#[utoipa::path(
    get,
    path = "/v1/users/{id}",
    tag = "identity",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The public profile", body = PublicProfile),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such active user", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn public_profile(
    State(identity): State<Identity>,
    _caller: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<PublicProfile>, ApiError> {
    sqlx::query_as(
        "SELECT id, display_name, avatar_id FROM users WHERE id = $1 AND disabled_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&identity.db)
    .await?
    .map(Json)
    .ok_or_else(|| ApiError::not_found("no such user"))
}
