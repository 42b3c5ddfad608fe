//! Leaderboards: Redis sorted sets per metric, sport and period, holding absolute scores
//! derived from PostgreSQL. Redis is only a cache: a board whose "built" mark is missing (a new
//! board, or a flushed or restarted Redis) is rebuilt from PostgreSQL before it is read, and
//! updates write absolute values, so replays are harmless.
//!
//! Scores come from `running_totals`: each user's totals per sport and period, kept with
//! `activity_points` in the consumer's transaction (see [`Totals`]), so neither a refresh nor a
//! rebuild sums a user's whole history.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Datelike, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use stride_platform::cache::Redis;
use uuid::Uuid;

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

    /// The names of the periods containing `at`, in [`Period::ALL`]'s order.
    pub fn names(at: DateTime<Utc>) -> [String; 4] {
        Period::ALL.map(|period| period.name(at))
    }

    /// The name of the period containing `at` (UTC): `all`, `y2026`, `m2026-11`, `w2026-48`
    /// (ISO week and its year). The same names key `running_totals`.
    pub fn name(self, at: DateTime<Utc>) -> String {
        let day = at.date_naive();
        match self {
            Period::All => "all".into(),
            Period::Year => format!("y{}", day.year()),
            Period::Month => format!("m{}-{:02}", day.year(), day.month()),
            Period::Week => {
                let week = day.iso_week();
                format!("w{}-{:02}", week.year(), week.week())
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
}

impl Board {
    /// The board of `metric`, `sport` and the `period` containing `at`.
    pub fn new(metric: Metric, sport: Option<String>, period: Period, at: DateTime<Utc>) -> Self {
        Self {
            metric,
            sport,
            period: period.name(at),
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

    /// Every user's score on this board, from their running totals.
    async fn scores(&self, db: &PgPool) -> sqlx::Result<Vec<(Uuid, f64)>> {
        let column = self.metric.column();
        sqlx::query_as(&format!(
            "SELECT user_id, sum({column})::double precision FROM running_totals
             WHERE period = $1 AND ($2::text IS NULL OR sport = $2)
             GROUP BY user_id HAVING sum({column}) > 0"
        ))
        .bind(&self.period)
        .bind(&self.sport)
        .fetch_all(db)
        .await
    }

    /// Whether a user's totals of `sport` over `period` count on this board.
    fn counts(&self, period: &str, sport: &str) -> bool {
        self.period == period && self.sport.as_deref().is_none_or(|own| own == sport)
    }

    /// A user's score on this board from their running totals.
    fn score_of(&self, totals: &[TotalsRow]) -> f64 {
        totals
            .iter()
            .filter(|row| self.counts(&row.period, &row.sport))
            .map(|row| row.value(self.metric))
            .sum()
    }
}

/// The mark that the board at `key` was built from PostgreSQL.
fn built_key(key: &str) -> String {
    format!("{key}:built")
}

/// One row of `running_totals`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct TotalsRow {
    user_id: Uuid,
    period: String,
    sport: String,
    distance_m: f64,
    moving_time_s: f64,
    elevation_gain_m: f64,
    points: f64,
}

impl TotalsRow {
    fn value(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Distance => self.distance_m,
            Metric::MovingTime => self.moving_time_s,
            Metric::ElevationGain => self.elevation_gain_m,
            Metric::Points => self.points,
        }
    }
}

/// What a counted workout contributes to its owner's running totals.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Figures {
    /// Its sport.
    pub sport: String,
    /// Its start, which decides its periods.
    pub start_time: DateTime<Utc>,
    /// Metres.
    pub distance_m: f64,
    /// Seconds in motion.
    pub moving_time_s: f64,
    /// Metres climbed.
    pub elevation_gain_m: f64,
    /// Points earned.
    pub points: i64,
}

/// Changes to a user's `running_totals`, by (period, sport), as columns for `unnest`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    /// Period names.
    pub periods: Vec<String>,
    /// Sports.
    pub sports: Vec<String>,
    /// Workouts added (negative: taken away).
    pub workouts: Vec<i64>,
    /// Metres.
    pub distance_m: Vec<f64>,
    /// Seconds in motion.
    pub moving_time_s: Vec<f64>,
    /// Metres climbed.
    pub elevation_gain_m: Vec<f64>,
    /// Points.
    pub points: Vec<i64>,
}

impl Totals {
    /// What replacing `before` by `after` (either absent: a workout counted for the first
    /// time, or deleted) changes, one entry per (period, sport) that changes.
    pub fn change(before: Option<&Figures>, after: Option<&Figures>) -> Self {
        type Sums = (i64, f64, f64, f64, i64);
        let mut by_key: BTreeMap<(String, String), Sums> = BTreeMap::new();
        for (figures, sign) in [(before, -1), (after, 1)] {
            let Some(figures) = figures else { continue };
            let factor = sign as f64;
            for period in Period::names(figures.start_time) {
                let sums = by_key.entry((period, figures.sport.clone())).or_default();
                sums.0 += sign;
                sums.1 += factor * figures.distance_m;
                sums.2 += factor * figures.moving_time_s;
                sums.3 += factor * figures.elevation_gain_m;
                sums.4 += sign * figures.points;
            }
        }
        let mut totals = Totals::default();
        for ((period, sport), (workouts, distance, moving, elevation, points)) in by_key {
            if workouts == 0 && distance == 0.0 && moving == 0.0 && elevation == 0.0 && points == 0
            {
                continue;
            }
            totals.periods.push(period);
            totals.sports.push(sport);
            totals.workouts.push(workouts);
            totals.distance_m.push(distance);
            totals.moving_time_s.push(moving);
            totals.elevation_gain_m.push(elevation);
            totals.points.push(points);
        }
        totals
    }
}

/// Writes users' absolute scores on their `boards` (only boards already built; the others
/// are rebuilt whole when first read). However many users and boards, this is one Redis round
/// trip to learn which boards are built, one PostgreSQL query for the users' running totals of
/// those periods and one Redis round trip for the scores.
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
    let mut periods: Vec<&str> = work
        .iter()
        .map(|(_, board, _)| board.period.as_str())
        .collect();
    periods.sort_unstable();
    periods.dedup();
    let totals: Vec<TotalsRow> = sqlx::query_as(
        "SELECT user_id, period, sport, distance_m, moving_time_s, elevation_gain_m,
                points::double precision AS points
         FROM running_totals WHERE user_id = ANY($1) AND period = ANY($2)",
    )
    .bind(&users)
    .bind(&periods)
    .fetch_all(db)
    .await?;
    let mut by_user: HashMap<Uuid, Vec<TotalsRow>> = HashMap::new();
    for row in totals {
        by_user.entry(row.user_id).or_default().push(row);
    }
    let mut pipe = redis::pipe();
    for (user, board, key) in &work {
        let score = by_user.get(user).map_or(0.0, |rows| board.score_of(rows));
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
    use proptest::prelude::*;

    type Sums = (i64, f64, f64, f64, i64);

    fn figures(sport: &str, day: i64, metres: f64, points: i64) -> Figures {
        let start = DateTime::parse_from_rfc3339("2026-01-01T07:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
            + chrono::Duration::days(day);
        Figures {
            sport: sport.into(),
            start_time: start,
            distance_m: metres,
            // Binary fractions, so sums in any order are exact.
            moving_time_s: metres / 2.0,
            elevation_gain_m: metres / 4.0,
            points,
        }
    }

    fn apply(table: &mut BTreeMap<(String, String), Sums>, totals: &Totals) {
        for i in 0..totals.periods.len() {
            let row = table
                .entry((totals.periods[i].clone(), totals.sports[i].clone()))
                .or_default();
            row.0 += totals.workouts[i];
            row.1 += totals.distance_m[i];
            row.2 += totals.moving_time_s[i];
            row.3 += totals.elevation_gain_m[i];
            row.4 += totals.points[i];
        }
        table.retain(|_, row| row.0 != 0);
    }

    #[test]
    fn a_change_of_sport_moves_the_figures_between_sports_in_every_period() {
        let before = figures("run", 0, 10_000.0, 100);
        let after = figures("walk", 0, 10_000.0, 50);
        let totals = Totals::change(Some(&before), Some(&after));
        assert_eq!(totals.periods.len(), 8, "{totals:?}");
        for i in 0..8 {
            let sign: i32 = if totals.sports[i] == "run" { -1 } else { 1 };
            assert_eq!(totals.workouts[i], i64::from(sign));
            assert_eq!(totals.distance_m[i], f64::from(sign) * 10_000.0);
        }
        let same = Totals::change(Some(&before), Some(&before));
        assert_eq!(
            same,
            Totals::default(),
            "nothing changes, nothing is written"
        );
    }

    proptest! {
        /// Counting, correcting and deleting workouts in any order through `Totals::change`
        /// leaves the totals a recount of the remaining workouts gives.
        #[test]
        fn changes_add_up_to_a_recount(
            steps in proptest::collection::vec(
                (0usize..6, proptest::option::of((0usize..3, 0i64..400, 0u32..50_000, 0i64..200))),
                1..60,
            )
        ) {
            let sports = ["run", "ride", "walk"];
            let mut workouts: Vec<Option<Figures>> = vec![None; 6];
            let mut table = BTreeMap::new();
            for (slot, next) in steps {
                let after = next.map(|(sport, day, metres, points)| {
                    figures(sports[sport], day, f64::from(metres), points)
                });
                apply(&mut table, &Totals::change(workouts[slot].as_ref(), after.as_ref()));
                workouts[slot] = after;
            }
            let mut recount = BTreeMap::new();
            for workout in workouts.iter().flatten() {
                apply(&mut recount, &Totals::change(None, Some(workout)));
            }
            prop_assert_eq!(table, recount);
        }
    }

    #[test]
    fn periods_are_named_in_utc_with_iso_weeks() {
        let at = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .expect("time")
                .with_timezone(&Utc)
        };
        let november = at("2026-11-25T18:00:00Z");
        assert_eq!(
            Period::names(november),
            ["w2026-48", "m2026-11", "y2026", "all"]
        );
        // 1 January 2027 is a Friday: still ISO week 53 of 2026.
        assert_eq!(Period::Week.name(at("2027-01-01T10:00:00Z")), "w2026-53");
        assert_eq!(Period::Month.name(at("2026-12-31T23:00:00Z")), "m2026-12");
        // A day is UTC's, whatever the offset the time was written with.
        assert_eq!(Period::Year.name(at("2027-01-01T00:30:00+01:00")), "y2026");
    }
}
