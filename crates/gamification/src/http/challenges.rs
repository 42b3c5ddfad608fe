//! `/v1/challenges`: time-boxed goals set by administrators.

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

use crate::{Gamification, challenges::column};

pub fn router() -> OpenApiRouter<Gamification> {
    OpenApiRouter::new()
        .routes(routes!(create_challenge, list_challenges))
        .routes(routes!(get_challenge))
        .routes(routes!(join))
        .routes(routes!(leave))
}

/// A new challenge.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChallenge {
    /// Its name, 1 to 100 characters.
    pub name: String,
    /// `distance` (m), `moving_time` (s) or `elevation_gain` (m).
    pub metric: String,
    /// One sport, or every sport when absent.
    pub sport: Option<String>,
    /// The goal, in the metric's unit.
    pub target: f64,
    /// When workouts start counting.
    pub starts_at: DateTime<Utc>,
    /// When they stop counting.
    pub ends_at: DateTime<Utc>,
    /// Points for completing it.
    #[serde(default)]
    pub reward_points: i64,
}

/// A challenge.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Challenge {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Metric.
    pub metric: String,
    /// Sport, if one.
    pub sport: Option<String>,
    /// Goal.
    pub target: f64,
    /// Window start.
    pub starts_at: DateTime<Utc>,
    /// Window end.
    pub ends_at: DateTime<Utc>,
    /// Points for completing it.
    pub reward_points: i64,
}

/// Creates a challenge (administrators only).
#[utoipa::path(
    post,
    path = "/v1/challenges",
    tag = "gamification",
    security(("bearer" = [])),
    request_body = NewChallenge,
    responses(
        (status = 201, description = "The challenge", body = Challenge),
        (status = 400, description = "Invalid metric, target or window", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn create_challenge(
    State(gamification): State<Gamification>,
    user: AuthUser,
    Json(request): Json<NewChallenge>,
) -> Result<(StatusCode, Json<Challenge>), ApiError> {
    if !user.is_admin {
        return Err(ApiError::forbidden("only administrators create challenges"));
    }
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::validation("name must have 1 to 100 characters"));
    }
    if !matches!(
        request.metric.as_str(),
        "distance" | "moving_time" | "elevation_gain"
    ) {
        return Err(ApiError::validation(
            "metric must be distance, moving_time or elevation_gain",
        ));
    }
    if !(request.target.is_finite() && request.target > 0.0) {
        return Err(ApiError::validation("target must be a positive number"));
    }
    if request.ends_at <= request.starts_at {
        return Err(ApiError::validation("ends_at must be after starts_at"));
    }
    if !(0..=100_000).contains(&request.reward_points) {
        return Err(ApiError::validation(
            "reward_points must be between 0 and 100,000",
        ));
    }
    let challenge = sqlx::query_as(
        "INSERT INTO challenges (id, name, metric, sport, target, starts_at, ends_at, reward_points)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id, name, metric, sport, target, starts_at, ends_at, reward_points",
    )
    .bind(Uuid::now_v7())
    .bind(name)
    .bind(&request.metric)
    .bind(&request.sport)
    .bind(request.target)
    .bind(request.starts_at)
    .bind(request.ends_at)
    .bind(request.reward_points)
    .fetch_one(&gamification.db)
    .await?;
    Ok((StatusCode::CREATED, Json(challenge)))
}

/// Challenges.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChallengeList {
    /// Those not ended yet, soonest ending first.
    pub challenges: Vec<Challenge>,
}

/// Challenges that have not ended.
#[utoipa::path(
    get,
    path = "/v1/challenges",
    tag = "gamification",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Open challenges", body = ChallengeList),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn list_challenges(
    State(gamification): State<Gamification>,
    _user: AuthUser,
) -> Result<Json<ChallengeList>, ApiError> {
    let challenges = sqlx::query_as(
        "SELECT id, name, metric, sport, target, starts_at, ends_at, reward_points
         FROM challenges WHERE ends_at > now() ORDER BY ends_at, id LIMIT 200",
    )
    .fetch_all(&gamification.db)
    .await?;
    Ok(Json(ChallengeList { challenges }))
}

/// A participant's standing.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Standing {
    /// The participant.
    pub user_id: Uuid,
    /// Progress in the metric's unit.
    pub progress: f64,
    /// When they completed it, if they did.
    pub completed_at: Option<DateTime<Utc>>,
}

/// A challenge with the caller's progress and the participants' leaderboard.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChallengeDetail {
    /// The challenge.
    pub challenge: Challenge,
    /// Whether the caller joined.
    pub joined: bool,
    /// The caller's progress.
    pub progress: f64,
    /// Participants, best first (at most 100).
    pub leaderboard: Vec<Standing>,
}

async fn find(gamification: &Gamification, id: Uuid) -> Result<Challenge, ApiError> {
    sqlx::query_as(
        "SELECT id, name, metric, sport, target, starts_at, ends_at, reward_points
         FROM challenges WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&gamification.db)
    .await?
    .ok_or_else(|| ApiError::not_found("no such challenge"))
}

/// A challenge with progress and the participants' leaderboard.
#[utoipa::path(
    get,
    path = "/v1/challenges/{id}",
    tag = "gamification",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Challenge id")),
    responses(
        (status = 200, description = "The challenge", body = ChallengeDetail),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such challenge", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn get_challenge(
    State(gamification): State<Gamification>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<ChallengeDetail>, ApiError> {
    let challenge = find(&gamification, id).await?;
    let column = column(&challenge.metric);
    let leaderboard: Vec<Standing> = sqlx::query_as(&format!(
        "SELECT p.user_id, coalesce(sum(a.{column}), 0)::double precision AS progress,
                p.completed_at
         FROM challenge_participants p
         LEFT JOIN activity_points a ON a.user_id = p.user_id
              AND ($2::text IS NULL OR a.sport = $2)
              AND a.start_time >= $3 AND a.start_time < $4
         WHERE p.challenge_id = $1
         GROUP BY p.user_id, p.completed_at
         ORDER BY progress DESC, p.user_id LIMIT 100"
    ))
    .bind(id)
    .bind(&challenge.sport)
    .bind(challenge.starts_at)
    .bind(challenge.ends_at)
    .fetch_all(&gamification.db)
    .await?;
    let mine = leaderboard
        .iter()
        .find(|standing| standing.user_id == user.user_id);
    let joined: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM challenge_participants WHERE challenge_id = $1 AND user_id = $2)",
    )
    .bind(id)
    .bind(user.user_id)
    .fetch_one(&gamification.db)
    .await?;
    let progress = mine.map_or(0.0, |standing| standing.progress);
    Ok(Json(ChallengeDetail {
        challenge,
        joined,
        progress,
        leaderboard,
    }))
}

/// Joins a challenge that has not ended.
#[utoipa::path(
    post,
    path = "/v1/challenges/{id}/join",
    tag = "gamification",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Challenge id")),
    responses(
        (status = 204, description = "Joined (or already in)"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such challenge", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It has ended", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn join(
    State(gamification): State<Gamification>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let challenge = find(&gamification, id).await?;
    if challenge.ends_at <= Utc::now() {
        return Err(ApiError::conflict("this challenge has ended"));
    }
    sqlx::query(
        "INSERT INTO challenge_participants (challenge_id, user_id) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(user.user_id)
    .execute(&gamification.db)
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Leaves a challenge.
#[utoipa::path(
    post,
    path = "/v1/challenges/{id}/leave",
    tag = "gamification",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Challenge id")),
    responses(
        (status = 204, description = "Left"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such challenge, or not joined", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn leave(
    State(gamification): State<Gamification>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let left =
        sqlx::query("DELETE FROM challenge_participants WHERE challenge_id = $1 AND user_id = $2")
            .bind(id)
            .bind(user.user_id)
            .execute(&gamification.db)
            .await?
            .rows_affected();
    if left == 0 {
        return Err(ApiError::not_found("not a participant of such a challenge"));
    }
    Ok(StatusCode::NO_CONTENT)
}
