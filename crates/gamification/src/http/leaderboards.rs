//! `/v1/leaderboards/{metric}`.

use axum::extract::State;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, Problem},
    http::{Json, Path, Query},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Gamification,
    leaderboards::{Board, Entry, Metric, Period, read},
};

pub fn router() -> OpenApiRouter<Gamification> {
    OpenApiRouter::new().routes(routes!(leaderboard))
}

/// Which board and which part of it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct BoardQuery {
    /// One sport (`run`, `ride`, ...); all sports when absent.
    pub sport: Option<String>,
    /// `week` (ISO week), `month`, `year` or `all` (default), in UTC.
    pub period: Option<Period>,
    /// `top` (default) or `me` (the part around the caller).
    pub around: Option<String>,
    /// Entries, 1 to 100 (default 20).
    pub limit: Option<u32>,
}

/// A part of a leaderboard.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Leaderboard {
    /// Ranked users, best first.
    pub entries: Vec<Entry>,
}

/// A leaderboard of distance, moving time, elevation gain or points.
#[utoipa::path(
    get,
    path = "/v1/leaderboards/{metric}",
    tag = "gamification",
    security(("bearer" = [])),
    params(("metric" = Metric, Path, description = "distance, moving_time, elevation_gain or points"), BoardQuery),
    responses(
        (status = 200, description = "The entries", body = Leaderboard),
        (status = 400, description = "Unknown metric, period, sport or around", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn leaderboard(
    State(gamification): State<Gamification>,
    user: AuthUser,
    Path(metric): Path<Metric>,
    Query(query): Query<BoardQuery>,
) -> Result<Json<Leaderboard>, ApiError> {
    let size = match query.limit {
        None => 20,
        Some(limit @ 1..=100) => limit as isize,
        Some(_) => return Err(ApiError::validation("limit must be between 1 and 100")),
    };
    let around = match query.around.as_deref() {
        None | Some("top") => None,
        Some("me") => Some(user.user_id),
        Some(other) => {
            return Err(ApiError::validation(format!(
                "around must be top or me, not {other:?}"
            )));
        }
    };
    if let Some(sport) = &query.sport
        && (sport.is_empty()
            || sport.len() > 32
            || !sport.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    {
        return Err(ApiError::validation(
            "sport must be a sport name such as run or ride",
        ));
    }
    let board = Board::new(
        metric,
        query.sport,
        query.period.unwrap_or(Period::All),
        Utc::now(),
    );
    let entries = read(&gamification.db, &gamification.redis, &board, around, size)
        .await
        .map_err(|error| ApiError::unavailable(error, 2))?;
    Ok(Json(Leaderboard { entries }))
}
