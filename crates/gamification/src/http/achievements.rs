//! `/v1/achievements` and `/v1/users/{id}/achievements`.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, Problem},
    http::{Json, Path},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    Gamification,
    achievements::{CATALOGUE, Progress, progress, stats},
};

pub fn router() -> OpenApiRouter<Gamification> {
    OpenApiRouter::new()
        .routes(routes!(catalogue))
        .routes(routes!(unlocked_by))
}

/// The catalogue with the caller's progress.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Catalogue {
    /// Every achievement.
    pub achievements: Vec<Progress>,
}

/// Every achievement, with the caller's progress and unlock times.
#[utoipa::path(
    get,
    path = "/v1/achievements",
    tag = "gamification",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The catalogue with progress", body = Catalogue),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn catalogue(
    State(gamification): State<Gamification>,
    user: AuthUser,
) -> Result<Json<Catalogue>, ApiError> {
    let mut connection = gamification.db.acquire().await?;
    let stats = stats(&mut connection, user.user_id).await?;
    let unlocked: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT achievement_id, unlocked_at FROM achievements_unlocked WHERE user_id = $1",
    )
    .bind(user.user_id)
    .fetch_all(&mut *connection)
    .await?;
    let achievements = CATALOGUE
        .iter()
        .map(|achievement| {
            let (current, target) = progress(achievement.rule, &stats);
            Progress {
                id: achievement.id.to_owned(),
                name: achievement.name.to_owned(),
                description: achievement.description.to_owned(),
                unlocked_at: unlocked
                    .iter()
                    .find(|(id, _)| id == achievement.id)
                    .map(|(_, at)| *at),
                current: current.min(target),
                target,
            }
        })
        .collect();
    Ok(Json(Catalogue { achievements }))
}

/// An unlocked achievement.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Unlocked {
    /// Stable id (`challenge-<id>` for completed challenges).
    pub achievement_id: String,
    /// When.
    pub unlocked_at: DateTime<Utc>,
}

/// A user's unlocked achievements.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnlockedList {
    /// Oldest first.
    pub achievements: Vec<Unlocked>,
}

/// The achievements a user has unlocked (public).
#[utoipa::path(
    get,
    path = "/v1/users/{id}/achievements",
    tag = "gamification",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "Unlocked achievements", body = UnlockedList),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn unlocked_by(
    State(gamification): State<Gamification>,
    _caller: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<UnlockedList>, ApiError> {
    let achievements = sqlx::query_as(
        "SELECT achievement_id, unlocked_at FROM achievements_unlocked
         WHERE user_id = $1 ORDER BY unlocked_at, achievement_id",
    )
    .bind(id)
    .fetch_all(&gamification.db)
    .await?;
    Ok(Json(UnlockedList { achievements }))
}
