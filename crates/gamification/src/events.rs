//! Points from training events, exactly once each (the platform's idempotent consumer), and
//! profile projections from identity events.
//!
//! A finished workout earns points under the daily cap of its local day; a change of sport or
//! totals corrects what it earned with a compensating ledger entry; a deleted workout's points
//! are taken back by another entry. History is never edited. Leaderboards are refreshed after
//! the commit, with absolute values.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use sqlx::{PgConnection, PgPool};
use stride_events::{
    Envelope, EventData,
    gamification::{AchievementUnlocked, PointsAwarded},
    identity::{UserDeleted, UserRegistered, UserUpdated},
    training::{ActivityDeleted, ActivityFinished, ActivitySnapshot, ActivityUpdated},
};
use stride_platform::{cache::Redis, consumer::EventHandler, outbox};
use uuid::Uuid;

use crate::{
    NAME, achievements,
    leaderboards::{self, Board, Figures, Totals},
    rules,
};

/// The end of a statement that adds a [`Totals`] (binds `$2` user, `$3`–`$9` the columns)
/// to `running_totals`. A (period, sport) left with no workout is zeroed, so no rounding
/// residue of added and removed distances keeps a user on a board.
macro_rules! add_totals {
    () => {
        "INSERT INTO running_totals (user_id, period, sport, workouts, distance_m,
             moving_time_s, elevation_gain_m, points)
         SELECT $2, * FROM unnest($3::text[], $4::text[], $5::bigint[],
             $6::double precision[], $7::double precision[], $8::double precision[],
             $9::bigint[])
         ON CONFLICT (user_id, period, sport) DO UPDATE SET
             workouts = running_totals.workouts + excluded.workouts,
             distance_m = CASE WHEN running_totals.workouts + excluded.workouts = 0 THEN 0
                 ELSE running_totals.distance_m + excluded.distance_m END,
             moving_time_s = CASE WHEN running_totals.workouts + excluded.workouts = 0 THEN 0
                 ELSE running_totals.moving_time_s + excluded.moving_time_s END,
             elevation_gain_m = CASE WHEN running_totals.workouts + excluded.workouts = 0
                 THEN 0 ELSE running_totals.elevation_gain_m + excluded.elevation_gain_m END,
             points = running_totals.points + excluded.points"
    };
}

/// Binds a [`Totals`] as `$3`–`$9` (after `$1` and `$2`).
fn bind_totals<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    totals: &'q Totals,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&totals.periods)
        .bind(&totals.sports)
        .bind(&totals.workouts)
        .bind(&totals.distance_m)
        .bind(&totals.moving_time_s)
        .bind(&totals.elevation_gain_m)
        .bind(&totals.points)
}

/// The gamification consumer.
#[derive(Debug, Clone)]
pub struct Points {
    /// For leaderboard refreshes after commit.
    pub db: PgPool,
    /// Leaderboards.
    pub redis: Redis,
}

/// The local day and hour of `at` in time zone `zone` (UTC when unknown).
fn local_time(zone: Option<&str>, at: DateTime<Utc>) -> (chrono::NaiveDate, u32) {
    let zone: chrono_tz::Tz = zone
        .and_then(|name| name.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    let local = at.with_timezone(&zone);
    (local.date_naive(), chrono::Timelike::hour(&local))
}

/// What is known of an activity before an event about it is applied, in one round trip.
struct Known {
    /// Deleted before (its later events change nothing).
    deleted: bool,
    /// What it counted for, if it was counted.
    before: Option<Figures>,
    /// Its owner's time zone, if known.
    zone: Option<String>,
    /// Whether its owner takes part in a challenge, not completed yet, whose window holds its
    /// start (only then are challenges checked).
    in_challenge: bool,
}

async fn known(
    connection: &mut PgConnection,
    activity: &ActivitySnapshot,
) -> anyhow::Result<Known> {
    #[derive(sqlx::FromRow)]
    struct Row {
        deleted: bool,
        zone: Option<String>,
        in_challenge: bool,
        sport: Option<String>,
        start_time: Option<DateTime<Utc>>,
        distance_m: Option<f64>,
        moving_time_s: Option<f64>,
        elevation_gain_m: Option<f64>,
        points: Option<i64>,
    }
    let row: Row = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM deleted_activities WHERE activity_id = $1) AS deleted,
                (SELECT time_zone FROM user_zones WHERE user_id = $2) AS zone,
                EXISTS (SELECT 1 FROM challenge_participants p
                        JOIN challenges c ON c.id = p.challenge_id
                        WHERE p.user_id = $2 AND p.completed_at IS NULL
                          AND c.starts_at <= $3 AND $3 < c.ends_at) AS in_challenge,
                a.sport, a.start_time, a.distance_m, a.moving_time_s, a.elevation_gain_m,
                a.points
         FROM (SELECT 1) AS one LEFT JOIN activity_points a ON a.activity_id = $1",
    )
    .bind(activity.activity_id)
    .bind(activity.owner_id)
    .bind(activity.start_time)
    .fetch_one(&mut *connection)
    .await?;
    let before = match row {
        Row {
            sport: Some(sport),
            start_time: Some(start_time),
            distance_m: Some(distance_m),
            moving_time_s: Some(moving_time_s),
            elevation_gain_m: Some(elevation_gain_m),
            points: Some(points),
            ..
        } => Some(Figures {
            sport,
            start_time,
            distance_m,
            moving_time_s,
            elevation_gain_m,
            points,
        }),
        _ => None,
    };
    Ok(Known {
        deleted: row.deleted,
        before,
        zone: row.zone,
        in_challenge: row.in_challenge,
    })
}

async fn entry(
    connection: &mut PgConnection,
    user: Uuid,
    amount: i64,
    reason: &str,
    activity_id: Option<Uuid>,
) -> anyhow::Result<()> {
    if amount == 0 {
        return Ok(());
    }
    let id = Uuid::now_v7();
    if amount < 0 {
        // The entry and the balance in one statement (one round trip).
        sqlx::query(
            "WITH entry AS (
                 INSERT INTO ledger (id, user_id, amount, reason, activity_id)
                 VALUES ($1, $2, $3, $4, $5)
             )
             INSERT INTO balances (user_id, balance) VALUES ($2, $3)
             ON CONFLICT (user_id) DO UPDATE SET balance = balances.balance + $3",
        )
        .bind(id)
        .bind(user)
        .bind(amount)
        .bind(reason)
        .bind(activity_id)
        .execute(&mut *connection)
        .await?;
        return Ok(());
    }
    let event = Envelope::new(
        NAME,
        user.to_string(),
        &PointsAwarded {
            user_id: user,
            amount,
            reason: reason.to_owned(),
            activity_id,
        },
    )?;
    // The entry, the balance and the `points_awarded` event in one statement: this runs for
    // every counted workout, and each round trip costs PostgreSQL more than the work. The
    // last part is what `outbox::enqueue` does (the platform's outbox table).
    sqlx::query(
        "WITH entry AS (
             INSERT INTO ledger (id, user_id, amount, reason, activity_id)
             VALUES ($1, $2, $3, $4, $5)
         ), balance AS (
             INSERT INTO balances (user_id, balance) VALUES ($2, $3)
             ON CONFLICT (user_id) DO UPDATE SET balance = balances.balance + $3
         )
         INSERT INTO outbox (id, event_type, envelope) VALUES ($6, $7, $8)",
    )
    .bind(id)
    .bind(user)
    .bind(amount)
    .bind(reason)
    .bind(activity_id)
    .bind(event.id)
    .bind(&event.event_type)
    .bind(sqlx::types::Json(&event))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Unlocks every achievement the user meets now that `workout` is counted and has not
/// unlocked; never takes one back.
async fn unlock_achievements(
    connection: &mut PgConnection,
    user: Uuid,
    activity: Uuid,
    workout: &achievements::Workout,
) -> anyhow::Result<()> {
    let (stats, unlocked) = achievements::stats_with(connection, user, workout).await?;
    for achievement in achievements::CATALOGUE {
        if achievements::met(achievement.rule, &stats)
            && !unlocked.iter().any(|id| id == achievement.id)
        {
            unlock(
                connection,
                user,
                achievement.id,
                achievement.name,
                Some(activity),
            )
            .await?;
        }
    }
    Ok(())
}

async fn unlock(
    connection: &mut PgConnection,
    user: Uuid,
    id: &str,
    name: &str,
    activity: Option<Uuid>,
) -> anyhow::Result<()> {
    let unlocked_at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "INSERT INTO achievements_unlocked (user_id, achievement_id, activity_id)
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING unlocked_at",
    )
    .bind(user)
    .bind(id)
    .bind(activity)
    .fetch_optional(&mut *connection)
    .await?;
    if let Some(unlocked_at) = unlocked_at {
        let event = Envelope::new(
            NAME,
            user.to_string(),
            &AchievementUnlocked {
                user_id: user,
                achievement_id: id.to_owned(),
                name: name.to_owned(),
                unlocked_at,
                activity_id: activity,
            },
        )?;
        outbox::enqueue(connection, &event).await?;
    }
    Ok(())
}

/// A joined challenge not completed yet.
#[derive(sqlx::FromRow)]
struct OpenChallenge {
    id: Uuid,
    name: String,
    metric: String,
    sport: Option<String>,
    target: f64,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    reward_points: i64,
}

/// Completes the user's joined challenges that this workout (inside their window) takes
/// over the target: reward points and an achievement, once.
async fn complete_challenges(
    connection: &mut PgConnection,
    activity: &ActivitySnapshot,
) -> anyhow::Result<()> {
    let Some(start) = activity.start_time else {
        return Ok(());
    };
    let open: Vec<OpenChallenge> = sqlx::query_as(
        "SELECT c.id, c.name, c.metric, c.sport, c.target, c.starts_at, c.ends_at,
                    c.reward_points
             FROM challenges c JOIN challenge_participants p ON p.challenge_id = c.id
             WHERE p.user_id = $1 AND p.completed_at IS NULL
               AND c.starts_at <= $2 AND $2 < c.ends_at",
    )
    .bind(activity.owner_id)
    .bind(start)
    .fetch_all(&mut *connection)
    .await?;
    for OpenChallenge {
        id,
        name,
        metric,
        sport,
        target,
        starts_at: from,
        ends_at: to,
        reward_points: reward,
    } in open
    {
        let progress = crate::challenges::progress(
            connection,
            activity.owner_id,
            &metric,
            sport.as_deref(),
            from,
            to,
        )
        .await?;
        if progress < target {
            continue;
        }
        sqlx::query(
            "UPDATE challenge_participants SET completed_at = now()
             WHERE challenge_id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(activity.owner_id)
        .execute(&mut *connection)
        .await?;
        entry(
            connection,
            activity.owner_id,
            reward,
            &format!("challenge completed: {name}"),
            Some(activity.activity_id),
        )
        .await?;
        unlock(
            connection,
            activity.owner_id,
            &format!("challenge-{id}"),
            &name,
            Some(activity.activity_id),
        )
        .await?;
    }
    Ok(())
}

struct Counted {
    points: i64,
    /// What the achievements look at.
    workout: achievements::Workout,
}

/// Records what `activity` counts for (replacing `before`, what it counted for until now) and
/// returns its points, under the cap of its day given the day's other workouts. The owner's
/// running totals move with it, in the same statement.
async fn count(
    connection: &mut PgConnection,
    activity: &ActivitySnapshot,
    zone: Option<&str>,
    before: Option<&Figures>,
) -> anyhow::Result<Option<Counted>> {
    let Some(start) = activity.start_time else {
        return Ok(None);
    };
    let summary = &activity.summary;
    let moving = summary
        .moving_time_s
        .or(summary.elapsed_time_s)
        .unwrap_or(0.0);
    let distance = summary.distance_m.unwrap_or(0.0);
    let (day, hour) = local_time(zone, start);
    let others: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(points), 0)::bigint FROM activity_points
         WHERE user_id = $1 AND local_day = $2 AND activity_id <> $3",
    )
    .bind(activity.owner_id)
    .bind(day)
    .bind(activity.activity_id)
    .fetch_one(&mut *connection)
    .await?;
    let points = rules::capped(rules::raw_points(&activity.sport, moving, distance), others);
    let after = Figures {
        sport: activity.sport.clone(),
        start_time: start,
        distance_m: distance,
        moving_time_s: moving,
        elevation_gain_m: summary.elevation_gain_m.unwrap_or(0.0),
        points,
    };
    let totals = Totals::change(before, Some(&after));
    let query = sqlx::query(concat!(
        "WITH counted AS (
             INSERT INTO activity_points (activity_id, user_id, sport, local_day, start_time,
                 distance_m, moving_time_s, elevation_gain_m, points, local_hour)
             VALUES ($1, $2, $10, $11, $12, $13, $14, $15, $16, $17)
             ON CONFLICT (activity_id) DO UPDATE SET sport = $10, local_day = $11,
                 start_time = $12, distance_m = $13, moving_time_s = $14,
                 elevation_gain_m = $15, points = $16, local_hour = $17
         ) ",
        add_totals!()
    ))
    .bind(activity.activity_id)
    .bind(activity.owner_id);
    let query = bind_totals(query, &totals)
        .bind(&after.sport)
        .bind(day)
        .bind(start)
        .bind(after.distance_m)
        .bind(after.moving_time_s)
        .bind(after.elevation_gain_m)
        .bind(points)
        .bind(i32::try_from(hour).unwrap_or(12));
    query.execute(&mut *connection).await?;
    Ok(Some(Counted {
        points,
        workout: achievements::Workout {
            local_day: day,
            local_hour: hour,
            moving_time_s: moving,
        },
    }))
}

/// What follows counting a workout: the ledger entry of `amount` (none when zero), the
/// achievements it unlocks and, when its owner takes part in an open challenge, the
/// challenges it completes.
async fn credit(
    connection: &mut PgConnection,
    activity: &ActivitySnapshot,
    known: &Known,
    counted: &Counted,
    amount: i64,
    reason: &str,
) -> anyhow::Result<()> {
    entry(
        connection,
        activity.owner_id,
        amount,
        reason,
        Some(activity.activity_id),
    )
    .await?;
    unlock_achievements(
        connection,
        activity.owner_id,
        activity.activity_id,
        &counted.workout,
    )
    .await?;
    if known.in_challenge {
        complete_challenges(connection, activity).await?;
    }
    Ok(())
}

impl Points {
    async fn apply(&self, connection: &mut PgConnection, event: &Envelope) -> anyhow::Result<()> {
        if event.is::<ActivityFinished>() {
            let finished: ActivityFinished = event.decode()?;
            let activity = finished.activity;
            let known = known(connection, &activity).await?;
            // Already counted (an update arrived first) or deleted: nothing to do.
            if known.deleted || known.before.is_some() {
                return Ok(());
            }
            if let Some(counted) = count(connection, &activity, known.zone.as_deref(), None).await?
            {
                let km = activity.summary.distance_m.unwrap_or(0.0) / 1000.0;
                let reason = format!("workout: {} {km:.1} km", activity.sport);
                credit(
                    connection,
                    &activity,
                    &known,
                    &counted,
                    counted.points,
                    &reason,
                )
                .await?;
            }
        } else if event.is::<ActivityUpdated>() {
            let updated: ActivityUpdated = event.decode()?;
            let activity = updated.activity;
            let known = known(connection, &activity).await?;
            if known.deleted {
                return Ok(());
            }
            // Updates are only published for finished workouts: one that arrives before the
            // finish counts the workout as it is now, and the late finish changes nothing.
            let before = known.before.as_ref();
            if let Some(counted) =
                count(connection, &activity, known.zone.as_deref(), before).await?
            {
                let (amount, reason) = match before {
                    Some(before) => (
                        counted.points - before.points,
                        "correction: the workout changed".to_owned(),
                    ),
                    None => (counted.points, format!("workout: {}", activity.sport)),
                };
                credit(connection, &activity, &known, &counted, amount, &reason).await?;
            }
        } else if event.is::<ActivityDeleted>() {
            let deleted: ActivityDeleted = event.decode()?;
            let activity = deleted.activity;
            let before: Option<Figures> = sqlx::query_as(
                "SELECT sport, start_time, distance_m, moving_time_s, elevation_gain_m, points
                 FROM activity_points WHERE activity_id = $1",
            )
            .bind(activity.activity_id)
            .fetch_optional(&mut *connection)
            .await?;
            if let Some(before) = before {
                entry(
                    connection,
                    activity.owner_id,
                    -before.points,
                    "correction: the workout was deleted",
                    Some(activity.activity_id),
                )
                .await?;
                let totals = Totals::change(Some(&before), None);
                let query = sqlx::query(concat!(
                    "WITH gone AS (DELETE FROM activity_points WHERE activity_id = $1) ",
                    add_totals!()
                ))
                .bind(activity.activity_id)
                .bind(activity.owner_id);
                bind_totals(query, &totals)
                    .execute(&mut *connection)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO deleted_activities (activity_id, user_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(activity.activity_id)
            .bind(activity.owner_id)
            .execute(&mut *connection)
            .await?;
        } else if event.is::<UserRegistered>() {
            let user: UserRegistered = event.decode()?;
            upsert_zone(
                connection,
                user.user_id,
                &user.time_zone,
                &user.display_name,
            )
            .await?;
        } else if event.is::<UserUpdated>() {
            let user: UserUpdated = event.decode()?;
            upsert_zone(
                connection,
                user.user_id,
                &user.time_zone,
                &user.display_name,
            )
            .await?;
        } else if event.is::<UserDeleted>() {
            let user: UserDeleted = event.decode()?;
            for table in [
                "ledger",
                "balances",
                "activity_points",
                "running_totals",
                "user_zones",
                "redemptions",
                "deleted_activities",
                "achievements_unlocked",
                "challenge_participants",
            ] {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                    .bind(user.user_id)
                    .execute(&mut *connection)
                    .await?;
            }
        }
        Ok(())
    }

    /// The boards a committed event changed, by user; deleted users are forgotten at once.
    async fn refresh_boards(&self, events: &[&Envelope]) -> anyhow::Result<()> {
        let mut updates: Vec<(Uuid, Vec<Board>)> = Vec::new();
        for event in events {
            let (user, activities) = if event.is::<ActivityFinished>() {
                let a = event.decode::<ActivityFinished>()?.activity;
                (a.owner_id, vec![a])
            } else if event.is::<ActivityUpdated>() {
                let e = event.decode::<ActivityUpdated>()?;
                (e.activity.owner_id, vec![e.previous, e.activity])
            } else if event.is::<ActivityDeleted>() {
                let a = event.decode::<ActivityDeleted>()?.activity;
                (a.owner_id, vec![a])
            } else if event.is::<UserDeleted>() {
                let user = event.decode::<UserDeleted>()?.user_id;
                updates.retain(|(known, _)| *known != user);
                leaderboards::forget(&self.redis, user).await?;
                continue;
            } else {
                continue;
            };
            let boards = activities.iter().flat_map(|a| {
                a.start_time
                    .map(|at| Board::affected(&a.sport, at))
                    .unwrap_or_default()
            });
            updates.push((user, boards.collect()));
        }
        leaderboards::refresh(&self.db, &self.redis, &updates).await
    }
}

/// The event types the consumer acts on; others (its own points and achievement events,
/// say) are acknowledged without a transaction.
const WANTED: [&str; 6] = [
    <ActivityFinished as EventData>::TYPE,
    <ActivityUpdated as EventData>::TYPE,
    <ActivityDeleted as EventData>::TYPE,
    <UserRegistered as EventData>::TYPE,
    <UserUpdated as EventData>::TYPE,
    <UserDeleted as EventData>::TYPE,
];

async fn upsert_zone(
    connection: &mut PgConnection,
    user: Uuid,
    zone: &str,
    name: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO user_zones (user_id, time_zone, display_name) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE SET time_zone = $2, display_name = $3",
    )
    .bind(user)
    .bind(zone)
    .bind(name)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

impl EventHandler for Points {
    fn handle<'a>(
        &'a self,
        connection: &'a mut PgConnection,
        event: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.apply(connection, event))
    }

    fn after_commit_batch<'a>(&'a self, events: &'a [&'a Envelope]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(error) = self.refresh_boards(events).await {
                // The boards are rebuilt from the ledger when Redis lost them.
                tracing::warn!(error = format!("{error:#}"), "leaderboard refresh failed");
            }
        })
    }

    fn after_commit<'a>(&'a self, event: &'a Envelope) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(error) = self.refresh_boards(&[event]).await {
                tracing::warn!(error = format!("{error:#}"), "leaderboard refresh failed");
            }
        })
    }

    fn wants(&self, event_type: &str) -> bool {
        WANTED.contains(&event_type)
    }

    /// Each user's events in order in one transaction: the daily cap, the balance and the
    /// achievements are per user, so different users' events can be applied concurrently.
    fn partition_key(&self, event: &Envelope) -> Option<String> {
        let user = if event.is::<ActivityFinished>() {
            event.decode::<ActivityFinished>().ok()?.activity.owner_id
        } else if event.is::<ActivityUpdated>() {
            event.decode::<ActivityUpdated>().ok()?.activity.owner_id
        } else if event.is::<ActivityDeleted>() {
            event.decode::<ActivityDeleted>().ok()?.activity.owner_id
        } else if event.is::<UserRegistered>() {
            event.decode::<UserRegistered>().ok()?.user_id
        } else if event.is::<UserUpdated>() {
            event.decode::<UserUpdated>().ok()?.user_id
        } else if event.is::<UserDeleted>() {
            event.decode::<UserDeleted>().ok()?.user_id
        } else {
            return None;
        };
        Some(user.to_string())
    }
}
