//! The achievement catalogue, declared in one place, and its evaluation.
//!
//! Each achievement is a rule over a user's counted workouts ([`Stats`]); it is evaluated
//! whenever a workout is counted, unlocked once (`achievements_unlocked` has one row per
//! user and achievement) and never taken back, even if the workout is later deleted.
//!
//! Because nothing is taken back, counting a workout only needs what that workout can change
//! ([`stats_with`]): the user's running totals (a few rows), the run of consecutive days
//! through its day, and its own start hour and moving time. A rule that some earlier workout
//! met was unlocked when that workout was counted. The cost of a workout therefore does not
//! grow with the user's history; the catalogue's progress ([`stats`]) still reads it whole.

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// What an achievement asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// At least this many workouts.
    Workouts(u32),
    /// This many metres in total, of one sport family or of all sports.
    Distance {
        /// `None` for every sport; otherwise the sports that count.
        sports: Option<&'static [&'static str]>,
        /// Metres.
        metres: f64,
    },
    /// This many metres climbed in total.
    Elevation(f64),
    /// Workouts on this many consecutive days (in the user's time zone).
    Streak(u32),
    /// A workout that starts before this local hour.
    EarlyStart(u32),
    /// One workout with at least this many moving seconds.
    LongWorkout(f64),
}

/// One achievement of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Achievement {
    /// Stable id.
    pub id: &'static str,
    /// Name.
    pub name: &'static str,
    /// What it takes, for a person.
    pub description: &'static str,
    /// The rule.
    pub rule: Rule,
}

const RUNS: &[&str] = &["run", "trail_run"];
const RIDES: &[&str] = &["ride", "mountain_bike", "indoor_ride"];

/// The catalogue.
pub const CATALOGUE: &[Achievement] = &[
    Achievement {
        id: "first-workout",
        name: "First Steps",
        description: "Finish your first workout",
        rule: Rule::Workouts(1),
    },
    Achievement {
        id: "ten-workouts",
        name: "Habit Forming",
        description: "Finish ten workouts",
        rule: Rule::Workouts(10),
    },
    Achievement {
        id: "run-100k",
        name: "Hundred on Foot",
        description: "Run 100 km in total",
        rule: Rule::Distance {
            sports: Some(RUNS),
            metres: 100_000.0,
        },
    },
    Achievement {
        id: "run-marathon-distance",
        name: "Marathon in Pieces",
        description: "Run 42.195 km in total",
        rule: Rule::Distance {
            sports: Some(RUNS),
            metres: 42_195.0,
        },
    },
    Achievement {
        id: "ride-1000k",
        name: "Thousand on Wheels",
        description: "Ride 1,000 km in total",
        rule: Rule::Distance {
            sports: Some(RIDES),
            metres: 1_000_000.0,
        },
    },
    Achievement {
        id: "everest",
        name: "Everest",
        description: "Climb 8,848 m in total",
        rule: Rule::Elevation(8_848.0),
    },
    Achievement {
        id: "streak-7",
        name: "Week Streak",
        description: "Work out seven days in a row",
        rule: Rule::Streak(7),
    },
    Achievement {
        id: "streak-30",
        name: "Month Streak",
        description: "Work out thirty days in a row",
        rule: Rule::Streak(30),
    },
    Achievement {
        id: "early-bird",
        name: "Early Bird",
        description: "Start a workout before 7 in the morning",
        rule: Rule::EarlyStart(7),
    },
    Achievement {
        id: "long-haul",
        name: "Long Haul",
        description: "One workout of three hours in motion",
        rule: Rule::LongWorkout(3.0 * 3600.0),
    },
];

/// What the rules look at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Counted workouts.
    pub workouts: u32,
    /// Metres by sport.
    pub distance_by_sport: HashMap<String, f64>,
    /// Metres climbed.
    pub elevation_m: f64,
    /// Consecutive days with a workout: ending on the latest such day for the catalogue's
    /// progress ([`stats`]), through the counted workout's day when it is counted
    /// ([`stats_with`]).
    pub current_streak: u32,
    /// The earliest local start hour of any workout (of the counted one, when counting).
    pub earliest_hour: Option<u32>,
    /// The longest moving time of one workout (of the counted one, when counting).
    pub longest_moving_s: f64,
}

/// Progress towards a rule: (current, target).
pub fn progress(rule: Rule, stats: &Stats) -> (f64, f64) {
    match rule {
        Rule::Workouts(target) => (f64::from(stats.workouts), f64::from(target)),
        Rule::Distance { sports, metres } => {
            let current = stats
                .distance_by_sport
                .iter()
                .filter(|(sport, _)| sports.is_none_or(|list| list.contains(&sport.as_str())))
                .map(|(_, metres)| metres)
                .sum();
            (current, metres)
        }
        Rule::Elevation(metres) => (stats.elevation_m, metres),
        Rule::Streak(days) => (f64::from(stats.current_streak), f64::from(days)),
        Rule::EarlyStart(hour) => (
            if stats.earliest_hour.is_some_and(|earliest| earliest < hour) {
                1.0
            } else {
                0.0
            },
            1.0,
        ),
        Rule::LongWorkout(seconds) => (stats.longest_moving_s.min(seconds), seconds),
    }
}

/// Whether a rule is met.
pub fn met(rule: Rule, stats: &Stats) -> bool {
    let (current, target) = progress(rule, stats);
    current >= target
}

/// Consecutive days ending at the latest of `days` (any order, repeats allowed).
pub fn streak(days: &[NaiveDate]) -> u32 {
    let mut sorted: Vec<NaiveDate> = days.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let Some(mut expected) = sorted.last().copied() else {
        return 0;
    };
    let mut count = 0;
    for day in sorted.iter().rev() {
        if *day != expected {
            break;
        }
        count += 1;
        expected -= Duration::days(1);
    }
    count
}

/// Consecutive days through `day` (counted whether or not `days` holds it) among `days` (any
/// order, repeats allowed).
pub fn run_through(days: &[NaiveDate], day: NaiveDate) -> u32 {
    let held: std::collections::HashSet<NaiveDate> = days.iter().copied().collect();
    let mut count = 1;
    let mut earlier = day - Duration::days(1);
    while held.contains(&earlier) {
        count += 1;
        earlier -= Duration::days(1);
    }
    let mut later = day + Duration::days(1);
    while held.contains(&later) {
        count += 1;
        later += Duration::days(1);
    }
    count
}

/// The longest streak any achievement asks for.
pub fn longest_streak_asked() -> u32 {
    CATALOGUE
        .iter()
        .filter_map(|achievement| match achievement.rule {
            Rule::Streak(days) => Some(days),
            _ => None,
        })
        .max()
        .unwrap_or(1)
}

/// A workout being counted, as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workout {
    /// Its day in the owner's time zone.
    pub local_day: NaiveDate,
    /// Its start hour in the owner's time zone.
    pub local_hour: u32,
    /// Seconds in motion.
    pub moving_time_s: f64,
}

/// What the rules look at when `workout` is counted, and the achievements already unlocked,
/// in one round trip whose cost does not grow with the user's history: totals from
/// `running_totals`, the days within the longest asked streak on either side of the workout's
/// day (the streak is the run through that day), and the workout's own hour and moving time
/// for the single-workout rules.
pub async fn stats_with(
    connection: &mut PgConnection,
    user: Uuid,
    workout: &Workout,
) -> sqlx::Result<(Stats, Vec<String>)> {
    let reach = i32::try_from(longest_streak_asked()).unwrap_or(i32::MAX) - 1;
    #[allow(clippy::type_complexity)]
    let (workouts, elevation, sports, distances, days, unlocked): (
        i64,
        f64,
        Vec<String>,
        Vec<f64>,
        Vec<NaiveDate>,
        Vec<String>,
    ) = sqlx::query_as(
        "SELECT coalesce(sum(workouts), 0)::bigint,
                coalesce(sum(elevation_gain_m), 0)::double precision,
                coalesce(array_agg(sport ORDER BY sport), '{}'::text[]),
                coalesce(array_agg(distance_m ORDER BY sport), '{}'::double precision[]),
                ARRAY(SELECT DISTINCT local_day FROM activity_points
                      WHERE user_id = $1 AND local_day BETWEEN $2 - $3 AND $2 + $3),
                ARRAY(SELECT achievement_id FROM achievements_unlocked WHERE user_id = $1)
         FROM running_totals WHERE user_id = $1 AND period = 'all'",
    )
    .bind(user)
    .bind(workout.local_day)
    .bind(reach)
    .fetch_one(&mut *connection)
    .await?;
    let stats = Stats {
        workouts: u32::try_from(workouts).unwrap_or(u32::MAX),
        distance_by_sport: sports.into_iter().zip(distances).collect(),
        elevation_m: elevation,
        current_streak: run_through(&days, workout.local_day),
        earliest_hour: Some(workout.local_hour),
        longest_moving_s: workout.moving_time_s,
    };
    Ok((stats, unlocked))
}

/// A user's stats from all their counted workouts (the catalogue's progress). The aggregates
/// are computed by PostgreSQL, so the cost does not grow with what is sent back.
pub async fn stats(connection: &mut PgConnection, user: Uuid) -> sqlx::Result<Stats> {
    #[allow(clippy::type_complexity)]
    let (workouts, elevation, longest, earliest, days, sports, distances): (
        i64,
        f64,
        f64,
        Option<i32>,
        Vec<NaiveDate>,
        Vec<String>,
        Vec<f64>,
    ) = sqlx::query_as(
        "WITH by_sport AS (
             SELECT sport, count(*) AS workouts, sum(distance_m) AS distance,
                    sum(elevation_gain_m) AS elevation, max(moving_time_s) AS longest,
                    min(local_hour) AS earliest
             FROM activity_points WHERE user_id = $1 GROUP BY sport
         )
         SELECT coalesce(sum(workouts), 0)::bigint,
                coalesce(sum(elevation), 0)::double precision,
                coalesce(max(longest), 0)::double precision,
                min(earliest),
                ARRAY(SELECT DISTINCT local_day FROM activity_points WHERE user_id = $1),
                coalesce(array_agg(sport ORDER BY sport), '{}'::text[]),
                coalesce(array_agg(distance::double precision ORDER BY sport),
                         '{}'::double precision[])
         FROM by_sport",
    )
    .bind(user)
    .fetch_one(&mut *connection)
    .await?;
    let stats = Stats {
        workouts: u32::try_from(workouts).unwrap_or(u32::MAX),
        distance_by_sport: sports.into_iter().zip(distances).collect(),
        elevation_m: elevation,
        current_streak: streak(&days),
        earliest_hour: earliest.map(|hour| u32::try_from(hour).unwrap_or(12)),
        longest_moving_s: longest.max(0.0),
    };
    Ok(stats)
}

/// A catalogue entry with the caller's progress.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Progress {
    /// Stable id.
    pub id: String,
    /// Name.
    pub name: String,
    /// What it takes.
    pub description: String,
    /// When it was unlocked, if it was.
    pub unlocked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// How far along (in the rule's unit: workouts, metres, days, seconds).
    pub current: f64,
    /// What it takes, in the same unit.
    pub target: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().expect("date")
    }

    #[test]
    fn a_streak_counts_back_from_the_latest_day_and_stops_at_a_gap() {
        let days = [
            day("2026-11-20"),
            day("2026-11-22"),
            day("2026-11-23"),
            day("2026-11-24"),
            day("2026-11-24"),
        ];
        assert_eq!(streak(&days), 3);
        assert_eq!(streak(&[]), 0);
    }

    #[test]
    fn everest_needs_8848_metres_climbed() {
        let mut stats = Stats {
            elevation_m: 8_847.0,
            ..Stats::default()
        };
        assert!(!met(Rule::Elevation(8_848.0), &stats));
        stats.elevation_m = 8_848.0;
        assert!(met(Rule::Elevation(8_848.0), &stats));
    }

    #[test]
    fn distance_rules_count_only_their_sports() {
        let mut stats = Stats::default();
        stats.distance_by_sport.insert("ride".into(), 120_000.0);
        stats.distance_by_sport.insert("trail_run".into(), 30_000.0);
        let (runs, _) = progress(
            Rule::Distance {
                sports: Some(RUNS),
                metres: 100_000.0,
            },
            &stats,
        );
        assert_eq!(runs, 30_000.0);
        let (all, _) = progress(
            Rule::Distance {
                sports: None,
                metres: 1.0,
            },
            &stats,
        );
        assert_eq!(all, 150_000.0);
    }

    #[test]
    fn catalogue_ids_are_unique() {
        let mut ids: Vec<&str> = CATALOGUE.iter().map(|a| a.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), CATALOGUE.len());
    }

    #[test]
    fn a_run_goes_both_ways_from_its_day_and_counts_the_day_itself() {
        let days = [
            day("2026-11-20"),
            day("2026-11-22"),
            day("2026-11-24"),
            day("2026-11-25"),
        ];
        // 2026-11-23 fills the gap: 22, 23, 24, 25.
        assert_eq!(run_through(&days, day("2026-11-23")), 4);
        assert_eq!(run_through(&days, day("2026-11-20")), 1);
        assert_eq!(run_through(&[], day("2026-11-20")), 1);
    }

    #[test]
    fn the_longest_streak_asked_is_the_month() {
        assert_eq!(longest_streak_asked(), 30);
    }

    proptest! {
        #[test]
        fn a_run_through_the_latest_day_is_the_current_streak(offsets in proptest::collection::vec(0i64..60, 1..40)) {
            let base = day("2026-01-01");
            let days: Vec<NaiveDate> = offsets.iter().map(|o| base + Duration::days(*o)).collect();
            let latest = *days.iter().max().expect("a day");
            prop_assert_eq!(run_through(&days, latest), streak(&days));
        }

        #[test]
        fn a_run_seen_through_a_window_of_the_longest_asked_streak_decides_as_the_whole_history(
            offsets in proptest::collection::vec(0i64..120, 0..80),
            at in 0i64..120,
        ) {
            let base = day("2026-01-01");
            let days: Vec<NaiveDate> = offsets.iter().map(|o| base + Duration::days(*o)).collect();
            let workout = base + Duration::days(at);
            let reach = i64::from(longest_streak_asked()) - 1;
            let window: Vec<NaiveDate> = days
                .iter()
                .copied()
                .filter(|d| (*d - workout).num_days().abs() <= reach)
                .collect();
            for asked in [7, longest_streak_asked()] {
                prop_assert_eq!(
                    run_through(&window, workout) >= asked,
                    run_through(&days, workout) >= asked
                );
            }
        }

        #[test]
        fn a_streak_is_at_most_the_number_of_distinct_days(offsets in proptest::collection::vec(0i64..60, 0..40)) {
            let base = day("2026-01-01");
            let days: Vec<NaiveDate> = offsets.iter().map(|o| base + Duration::days(*o)).collect();
            let mut distinct = days.clone();
            distinct.sort_unstable();
            distinct.dedup();
            let length = streak(&days);
            prop_assert!(length as usize <= distinct.len());
            prop_assert_eq!(length == 0, days.is_empty());
        }
    }
}
