//! Leaderboards: Redis sorted sets per metric, sport and period, holding absolute scores
//! derived from PostgreSQL. Redis is only a cache: a board whose "built" mark is missing (a new
//! board, or a flushed or restarted Redis) is rebuilt from `activity_points` before it is
//! read, and updates write absolute values, so replays are harmless.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use stride_platform::cache::Redis;
use uuid::Uuid;

/// The start (inclusive) and end (exclusive) of a period.
pub type Bounds = (DateTime<Utc>, DateTime<Utc>);

/// What is ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Metres.
    Distance,
    /// Seconds in motion.
    MovingTime,
    /// Metres climbed.
    ElevationGain,
    /// Points earned by workouts.
    Points,
}

impl Metric {
    fn as_str(self) -> &'static str {
        match self {
            Metric::Distance => "distance",
            Metric::MovingTime => "moving_time",
            Metric::ElevationGain => "elevation_gain",
            Metric::Points => "points",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Metric::Distance => "distance_m",
            Metric::MovingTime => "moving_time_s",
            Metric::ElevationGain => "elevation_gain_m",
            Metric::Points => "points",
        }
    }

    /// Every metric.
    pub const ALL: [Metric; 4] = [
        Metric::Distance,
        Metric::MovingTime,
        Metric::ElevationGain,
        Metric::Points,
    ];
}

/// Over which time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// The ISO week.
    Week,
    /// The calendar month.
    Month,
    /// The calendar year.
    Year,
    /// Ever.
    All,
}

impl Period {
    /// Every period.
    pub const ALL: [Period; 4] = [Period::Week, Period::Month, Period::Year, Period::All];

    /// The period's name for `at` (UTC) and its bounds.
    pub fn window(self, at: DateTime<Utc>) -> (String, Option<Bounds>) {
        use chrono::{Duration, NaiveDate, TimeZone};
        let day = at.date_naive();
        let midnight =
            |date: NaiveDate| Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default());
        match self {
            Period::All => ("all".into(), None),
            Period::Year => {
                let start = NaiveDate::from_ymd_opt(day.year(), 1, 1).unwrap_or(day);
                let end = NaiveDate::from_ymd_opt(day.year() + 1, 1, 1).unwrap_or(day);
                (
                    format!("y{}", day.year()),
                    Some((midnight(start), midnight(end))),
                )
            }
            Period::Month => {
                let start = NaiveDate::from_ymd_opt(day.year(), day.month(), 1).unwrap_or(day);
                let end = if day.month() == 12 {
                    NaiveDate::from_ymd_opt(day.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(day.year(), day.month() + 1, 1)
                }
                .unwrap_or(day);
                (
                    format!("m{}-{:02}", day.year(), day.month()),
                    Some((midnight(start), midnight(end))),
                )
            }
            Period::Week => {
                let week = day.iso_week();
                let start = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
                (
                    format!("w{}-{:02}", week.year(), week.week()),
                    Some((midnight(start), midnight(start + Duration::days(7)))),
                )
            }
        }
    }
}

/// A board: metric, sport (or every sport) and period containing a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    /// What is ranked.
    pub metric: Metric,
    /// One sport, or all when `None`.
    pub sport: Option<String>,
    /// The period's name (`w2026-48`, `m2026-11`, `y2026`, `all`).
    pub period: String,
    bounds: Option<Bounds>,
}

impl Board {
    /// The board of `metric`, `sport` and the `period` containing `at`.
    pub fn new(metric: Metric, sport: Option<String>, period: Period, at: DateTime<Utc>) -> Self {
        let (name, bounds) = period.window(at);
        Self {
            metric,
            sport,
            period: name,
            bounds,
        }
    }

    fn key(&self, redis: &Redis) -> String {
        redis.key(format!(
            "lb:{}:{}:{}",
            self.metric.as_str(),
            self.sport.as_deref().unwrap_or("all"),
            self.period
        ))
    }

    fn built_key(&self, redis: &Redis) -> String {
        built_key(&self.key(redis))
    }

    /// Every board a workout of `sport` starting at `at` counts on.
    pub fn affected(sport: &str, at: DateTime<Utc>) -> Vec<Board> {
        let mut boards = Vec::new();
        for metric in Metric::ALL {
            for period in Period::ALL {
                boards.push(Board::new(metric, None, period, at));
                boards.push(Board::new(metric, Some(sport.to_owned()), period, at));
            }
        }
        boards
    }

    /// Every user's score on this board, from PostgreSQL.
    async fn scores(&self, db: &PgPool) -> sqlx::Result<Vec<(Uuid, f64)>> {
        let (from, to) = self.bounds.unzip();
        sqlx::query_as(&format!(
            "SELECT user_id, sum({})::double precision FROM activity_points
             WHERE ($1::text IS NULL OR sport = $1)
               AND ($2::timestamptz IS NULL OR start_time >= $2)
               AND ($3::timestamptz IS NULL OR start_time < $3)
             GROUP BY user_id HAVING sum({}) > 0",
            self.metric.column(),
            self.metric.column()
        ))
        .bind(&self.sport)
        .bind(from)
        .bind(to)
        .fetch_all(db)
        .await
    }
}

/// The mark that the board at `key` was built from PostgreSQL.
fn built_key(key: &str) -> String {
    format!("{key}:built")
}

/// A user's totals of one sport on one UTC day: distance, moving time, elevation gain and
/// points, in [`Metric::ALL`]'s order.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct DayTotals {
    user_id: Uuid,
    sport: String,
    day: NaiveDate,
    distance: f64,
    moving_time: f64,
    elevation_gain: f64,
    points: f64,
}

impl DayTotals {
    fn value(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Distance => self.distance,
            Metric::MovingTime => self.moving_time,
            Metric::ElevationGain => self.elevation_gain,
            Metric::Points => self.points,
        }
    }
}

impl Board {
    /// Whether a workout of `sport` on the UTC `day` counts on this board (periods begin and
    /// end at UTC midnights, so a day is wholly inside or outside).
    fn counts(&self, sport: &str, day: NaiveDate) -> bool {
        self.sport.as_deref().is_none_or(|own| own == sport)
            && self
                .bounds
                .is_none_or(|(from, to)| from.date_naive() <= day && day < to.date_naive())
    }

    /// A user's score on this board from their day totals.
    fn score_of(&self, days: &[DayTotals]) -> f64 {
        days.iter()
            .filter(|day| self.counts(&day.sport, day.day))
            .map(|day| day.value(self.metric))
            .sum()
    }
}

/// Writes users' absolute scores on their `boards` (only boards already built; the others
/// are rebuilt whole when first read). However many users and boards, this is one Redis round
/// trip to learn which boards are built, one PostgreSQL query for the users' totals and one
/// Redis round trip for the scores.
pub async fn refresh(
    db: &PgPool,
    redis: &Redis,
    updates: &[(Uuid, Vec<Board>)],
) -> anyhow::Result<()> {
    let mut keys: Vec<String> = updates
        .iter()
        .flat_map(|(_, boards)| boards.iter().map(|board| board.key(redis)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Ok(());
    }
    let mut connection = redis.connection();
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.exists(built_key(key));
    }
    let built: Vec<bool> = pipe.query_async(&mut connection).await?;
    let built: HashSet<&str> = keys
        .iter()
        .zip(built)
        .filter(|(_, built)| *built)
        .map(|(key, _)| key.as_str())
        .collect();
    let mut seen = HashSet::new();
    let mut work: Vec<(Uuid, &Board, String)> = Vec::new();
    for (user, boards) in updates {
        for board in boards {
            let key = board.key(redis);
            if built.contains(key.as_str()) && seen.insert((*user, key.clone())) {
                work.push((*user, board, key));
            }
        }
    }
    if work.is_empty() {
        return Ok(());
    }
    let mut users: Vec<Uuid> = work.iter().map(|(user, _, _)| *user).collect();
    users.sort_unstable();
    users.dedup();
    let totals: Vec<DayTotals> = sqlx::query_as(
        "SELECT user_id, sport, (start_time AT TIME ZONE 'UTC')::date AS day,
                sum(distance_m)::double precision AS distance,
                sum(moving_time_s)::double precision AS moving_time,
                sum(elevation_gain_m)::double precision AS elevation_gain,
                sum(points)::double precision AS points
         FROM activity_points WHERE user_id = ANY($1)
         GROUP BY 1, 2, 3 ORDER BY 1, 3, 2",
    )
    .bind(&users)
    .fetch_all(db)
    .await?;
    let mut by_user: HashMap<Uuid, Vec<DayTotals>> = HashMap::new();
    for day in totals {
        by_user.entry(day.user_id).or_default().push(day);
    }
    let mut pipe = redis::pipe();
    for (user, board, key) in &work {
        let score = by_user.get(user).map_or(0.0, |days| board.score_of(days));
        if score > 0.0 {
            pipe.zadd(key, user.to_string(), score).ignore();
        } else {
            pipe.zrem(key, user.to_string()).ignore();
        }
    }
    pipe.query_async::<()>(&mut connection).await?;
    Ok(())
}

/// Removes a user from every board.
pub async fn forget(redis: &Redis, user: Uuid) -> anyhow::Result<()> {
    let mut connection = redis.connection();
    let pattern = redis.key("lb:*");
    let keys: Vec<String> = connection.keys(pattern).await?;
    for key in keys.into_iter().filter(|key| !key.ends_with(":built")) {
        let _: () = connection.zrem(key, user.to_string()).await?;
    }
    Ok(())
}

/// Rebuilds `board` from PostgreSQL unless it is built.
async fn ensure_built(db: &PgPool, redis: &Redis, board: &Board) -> anyhow::Result<()> {
    let mut connection = redis.connection();
    let built: bool = connection.exists(board.built_key(redis)).await?;
    if built {
        return Ok(());
    }
    let scores = board.scores(db).await?;
    let key = board.key(redis);
    let mut pipe = redis::pipe();
    pipe.atomic().del(&key).ignore();
    for (user, score) in &scores {
        pipe.zadd(&key, user.to_string(), *score).ignore();
    }
    pipe.set(board.built_key(redis), 1).ignore();
    pipe.query_async::<()>(&mut connection).await?;
    tracing::info!(board = %key, users = scores.len(), "leaderboard rebuilt from the ledger");
    Ok(())
}

/// One ranked user.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Entry {
    /// 1 for the best.
    pub rank: u64,
    /// The user.
    pub user_id: Uuid,
    /// Their public name.
    pub display_name: String,
    /// Their score, in the metric's unit.
    pub score: f64,
}

/// The top of a board, or the part around `me`.
pub async fn read(
    db: &PgPool,
    redis: &Redis,
    board: &Board,
    around: Option<Uuid>,
    size: isize,
) -> anyhow::Result<Vec<Entry>> {
    ensure_built(db, redis, board).await?;
    let mut connection = redis.connection();
    let key = board.key(redis);
    let start = match around {
        Some(me) => {
            let rank: Option<isize> = connection.zrevrank(&key, me.to_string()).await?;
            rank.map_or(0, |rank| (rank - size / 2).max(0))
        }
        None => 0,
    };
    let rows: Vec<(String, f64)> = connection
        .zrevrange_withscores(&key, start, start + size - 1)
        .await?;
    let ids: Vec<Uuid> = rows.iter().filter_map(|(id, _)| id.parse().ok()).collect();
    let names: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT user_id, display_name FROM user_zones WHERE user_id = ANY($1)")
            .bind(&ids)
            .fetch_all(db)
            .await?;
    Ok(rows
        .into_iter()
        .enumerate()
        .filter_map(|(index, (id, score))| {
            let user_id: Uuid = id.parse().ok()?;
            let display_name = names
                .iter()
                .find(|(known, _)| *known == user_id)
                .map(|(_, name)| name.clone())
                .unwrap_or_default();
            Some(Entry {
                rank: start as u64 + index as u64 + 1,
                user_id,
                display_name,
                score,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_named_and_bounded_in_utc() {
        let at = DateTime::parse_from_rfc3339("2026-11-25T18:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let (week, bounds) = Period::Week.window(at);
        assert_eq!(week, "w2026-48");
        let (from, to) = bounds.expect("bounds");
        assert_eq!(from.to_rfc3339(), "2026-11-23T00:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2026-11-30T00:00:00+00:00");
        assert_eq!(Period::Month.window(at).0, "m2026-11");
        let december = DateTime::parse_from_rfc3339("2026-12-31T23:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let (_, bounds) = Period::Month.window(december);
        assert_eq!(
            bounds.expect("bounds").1.to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(Period::All.window(at), ("all".to_owned(), None));
    }
}
