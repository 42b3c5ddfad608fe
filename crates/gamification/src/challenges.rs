//! Challenges: time-boxed goals that administrators set and athletes join.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// A participant's progress: the metric summed over their counted workouts of the sport
/// (or all sports) that started inside the window.
pub async fn progress(
    connection: &mut PgConnection,
    user: Uuid,
    metric: &str,
    sport: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<f64> {
    let column = column(metric);
    sqlx::query_scalar(&format!(
        "SELECT coalesce(sum({column})::double precision, 0) FROM activity_points
         WHERE user_id = $1 AND ($2::text IS NULL OR sport = $2)
           AND start_time >= $3 AND start_time < $4"
    ))
    .bind(user)
    .bind(sport)
    .bind(from)
    .bind(to)
    .fetch_one(connection)
    .await
}

/// The `activity_points` column of a challenge metric.
pub fn column(metric: &str) -> &'static str {
    match metric {
        "moving_time" => "moving_time_s",
        "elevation_gain" => "elevation_gain_m",
        _ => "distance_m",
    }
}
