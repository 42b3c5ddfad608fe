//! The wear model: service limits per kind, totals from wear entries, the percentage used, the
//! thresholds that raise alerts, and the forecast of the day the limit is reached. Pure.
//!
//! Default service limits (one place; every item may override its own with `limit_m`):
//!
//! | kind | component type | limit |
//! |---|---|---|
//! | shoes | | 700 km |
//! | bike | | 50,000 km |
//! | component | chain | 3,000 km |
//! | component | cassette | 10,000 km |
//! | component | tyre | 4,000 km |
//! | component | brake_pads | 2,000 km |
//! | component | chainring | 15,000 km |
//! | component | other | 5,000 km |
//! | wetsuit | | 1,000 km (swum) |
//! | skis | | 5,000 km |
//! | other | | none (no percentage, no forecast, no alerts) |

use chrono::{Days, NaiveDate};
use serde::Serialize;

use super::{ComponentType, Kind};

/// The days of recent use the forecast's pace is taken from.
pub const FORECAST_WINDOW_DAYS: u32 = 28;

/// Percentages of the limit whose crossing opens an alert and publishes an event, once each.
pub const THRESHOLDS: [i32; 2] = [80, 100];

/// Forecasts further away than this are not worth a date.
const MAX_FORECAST_DAYS: f64 = 36_500.0;

/// The default service limit of an item, in metres (see the table above).
pub fn default_limit_m(kind: Kind, component: Option<ComponentType>) -> Option<f64> {
    let km = match (kind, component) {
        (Kind::Shoes, _) => 700.0,
        (Kind::Bike, _) => 50_000.0,
        (Kind::Component, Some(ComponentType::Chain)) => 3_000.0,
        (Kind::Component, Some(ComponentType::Cassette)) => 10_000.0,
        (Kind::Component, Some(ComponentType::Tyre)) => 4_000.0,
        (Kind::Component, Some(ComponentType::BrakePads)) => 2_000.0,
        (Kind::Component, Some(ComponentType::Chainring)) => 15_000.0,
        (Kind::Component, Some(ComponentType::Other) | None) => 5_000.0,
        (Kind::Wetsuit, _) => 1_000.0,
        (Kind::Skis, _) => 5_000.0,
        (Kind::Other, _) => return None,
    };
    Some(km * 1000.0)
}

/// What one workout adds to an item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    /// Metres.
    pub distance_m: f64,
    /// Seconds.
    pub moving_time_s: f64,
}

/// The sum of an item's wear entries (without its initial values).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Metres.
    pub distance_m: f64,
    /// Seconds.
    pub moving_time_s: f64,
    /// Workouts.
    pub activities: i64,
}

impl Totals {
    /// The totals with `entry` added (the incremental path).
    #[must_use]
    pub fn with(self, entry: Entry) -> Self {
        Self {
            distance_m: self.distance_m + entry.distance_m,
            moving_time_s: self.moving_time_s + entry.moving_time_s,
            activities: self.activities + 1,
        }
    }

    /// The totals with `entry` taken away again.
    #[must_use]
    pub fn without(self, entry: Entry) -> Self {
        debug_assert!(self.activities > 0, "removing from empty totals");
        Self {
            distance_m: self.distance_m - entry.distance_m,
            moving_time_s: self.moving_time_s - entry.moving_time_s,
            activities: self.activities - 1,
        }
    }

    /// The totals recomputed from every entry.
    pub fn from_entries(entries: impl IntoIterator<Item = Entry>) -> Self {
        entries.into_iter().fold(Self::default(), Self::with)
    }
}

/// An item's wear, as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Wear {
    /// Initial distance plus every workout's, metres.
    pub distance_m: f64,
    /// Initial moving time plus every workout's, seconds.
    pub moving_time_s: f64,
    /// Workouts counted.
    pub activities: i64,
    /// The service limit in metres (the item's own or its kind's default); null for none.
    pub limit_m: Option<f64>,
    /// Share of the limit used, in percent (one decimal); null without a limit.
    pub percent: Option<f64>,
    /// The day the limit is reached at the owner's pace of the last 28 days with this item;
    /// today once reached; null without a limit, without recent use, or when retired.
    pub forecast_date: Option<NaiveDate>,
}

/// Share of `limit_m` used by `distance_m`, in percent.
pub fn percent(distance_m: f64, limit_m: Option<f64>) -> Option<f64> {
    let limit = limit_m.filter(|limit| *limit > 0.0)?;
    Some(distance_m / limit * 100.0)
}

/// The day `limit_m` is reached when `recent_distance_m` were covered in the last
/// [`FORECAST_WINDOW_DAYS`] days and that pace goes on.
pub fn forecast(
    distance_m: f64,
    limit_m: Option<f64>,
    recent_distance_m: f64,
    today: NaiveDate,
) -> Option<NaiveDate> {
    let limit = limit_m.filter(|limit| *limit > 0.0)?;
    if distance_m >= limit {
        return Some(today);
    }
    let metres_per_day = recent_distance_m / f64::from(FORECAST_WINDOW_DAYS);
    if !(metres_per_day.is_finite() && metres_per_day > 0.0) {
        return None;
    }
    let days = ((limit - distance_m) / metres_per_day).ceil();
    if !(days.is_finite() && days <= MAX_FORECAST_DAYS) {
        return None;
    }
    today.checked_add_days(Days::new(days as u64))
}

/// The thresholds (percent) that `distance_m` has reached.
pub fn reached_thresholds(distance_m: f64, limit_m: Option<f64>) -> Vec<i32> {
    let Some(used) = percent(distance_m, limit_m) else {
        return Vec::new();
    };
    THRESHOLDS
        .into_iter()
        .filter(|threshold| used >= f64::from(*threshold))
        .collect()
}

/// An item's wear from its initial values, totals, limit and recent use.
pub fn wear(
    initial: Entry,
    totals: Totals,
    limit_m: Option<f64>,
    recent_distance_m: f64,
    retired: bool,
    today: NaiveDate,
) -> Wear {
    let distance_m = initial.distance_m + totals.distance_m;
    Wear {
        distance_m,
        moving_time_s: initial.moving_time_s + totals.moving_time_s,
        activities: totals.activities,
        limit_m,
        percent: percent(distance_m, limit_m).map(|p| (p * 10.0).round() / 10.0),
        forecast_date: if retired {
            None
        } else {
            forecast(distance_m, limit_m, recent_distance_m, today)
        },
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().expect("date")
    }

    #[test]
    fn defaults_follow_the_documented_table() {
        assert_eq!(default_limit_m(Kind::Shoes, None), Some(700_000.0));
        assert_eq!(
            default_limit_m(Kind::Component, Some(ComponentType::Chain)),
            Some(3_000_000.0)
        );
        assert_eq!(
            default_limit_m(Kind::Component, Some(ComponentType::Tyre)),
            Some(4_000_000.0)
        );
        assert_eq!(
            default_limit_m(Kind::Component, Some(ComponentType::Cassette)),
            Some(10_000_000.0)
        );
        assert_eq!(
            default_limit_m(Kind::Component, Some(ComponentType::BrakePads)),
            Some(2_000_000.0)
        );
        assert_eq!(default_limit_m(Kind::Bike, None), Some(50_000_000.0));
        assert_eq!(default_limit_m(Kind::Other, None), None);
    }

    #[test]
    fn forecast_extrapolates_the_last_four_weeks() {
        // 280 km in 28 days is 10 km a day; 100 km left is 10 days.
        let today = day("2026-03-01");
        assert_eq!(
            forecast(600_000.0, Some(700_000.0), 280_000.0, today),
            Some(day("2026-03-11"))
        );
        // A partial day rounds up: the limit is not reached before that day.
        assert_eq!(
            forecast(600_001.0, Some(700_000.0), 280_000.0, today),
            Some(day("2026-03-11"))
        );
        assert_eq!(forecast(600_000.0, Some(700_000.0), 0.0, today), None);
        assert_eq!(forecast(600_000.0, None, 280_000.0, today), None);
        assert_eq!(
            forecast(700_000.0, Some(700_000.0), 0.0, today),
            Some(today)
        );
        // A pace of a metre a month is no forecast.
        assert_eq!(forecast(0.0, Some(700_000.0), 1.0, today), None);
    }

    #[test]
    fn thresholds_are_reached_at_80_and_100_percent() {
        let limit = Some(1000.0);
        assert!(reached_thresholds(799.9, limit).is_empty());
        assert_eq!(reached_thresholds(800.0, limit), vec![80]);
        assert_eq!(reached_thresholds(1000.0, limit), vec![80, 100]);
        assert!(reached_thresholds(5000.0, None).is_empty());
    }

    #[test]
    fn wear_adds_initial_values_and_rounds_the_percentage() {
        let worn = wear(
            Entry {
                distance_m: 100_000.0,
                moving_time_s: 3600.0,
            },
            Totals {
                distance_m: 250_000.0,
                moving_time_s: 7200.0,
                activities: 3,
            },
            Some(700_000.0),
            0.0,
            false,
            day("2026-01-01"),
        );
        assert_eq!(worn.distance_m, 350_000.0);
        assert_eq!(worn.moving_time_s, 10_800.0);
        assert_eq!(worn.activities, 3);
        assert_eq!(worn.percent, Some(50.0));
        assert_eq!(worn.forecast_date, None);
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (0.0..200_000.0f64, 0.0..40_000.0f64).prop_map(|(distance_m, moving_time_s)| Entry {
            distance_m,
            moving_time_s,
        })
    }

    proptest! {
        #[test]
        fn incremental_totals_equal_a_recomputation(
            entries in proptest::collection::vec(entry(), 0..40),
            removed in proptest::collection::vec(any::<bool>(), 40),
        ) {
            // Add everything, then take some back, as finishes and deletions do.
            let mut incremental = Totals::default();
            for entry in &entries {
                incremental = incremental.with(*entry);
            }
            let mut kept = Vec::new();
            for (entry, remove) in entries.iter().zip(&removed) {
                if *remove {
                    incremental = incremental.without(*entry);
                } else {
                    kept.push(*entry);
                }
            }
            let recomputed = Totals::from_entries(kept);
            prop_assert_eq!(incremental.activities, recomputed.activities);
            prop_assert!((incremental.distance_m - recomputed.distance_m).abs() < 1e-3);
            prop_assert!((incremental.moving_time_s - recomputed.moving_time_s).abs() < 1e-3);
        }

        #[test]
        fn the_forecast_is_never_before_today_and_comes_sooner_at_a_faster_pace(
            distance in 0.0..1_000_000.0f64,
            limit in 1.0..1_000_000.0f64,
            pace in 1.0..1_000_000.0f64,
            faster in 1.0..10.0f64,
        ) {
            let today = day("2026-06-01");
            let slow = forecast(distance, Some(limit), pace, today);
            let fast = forecast(distance, Some(limit), pace * faster, today);
            if let Some(slow) = slow {
                prop_assert!(slow >= today);
                let fast = fast.expect("a faster pace has a forecast too");
                prop_assert!(fast <= slow);
            }
            if distance >= limit {
                prop_assert_eq!(slow, Some(today));
            }
        }

        #[test]
        fn thresholds_only_grow_with_distance(
            a in 0.0..2_000_000.0f64,
            b in 0.0..2_000_000.0f64,
            limit in 1.0..2_000_000.0f64,
        ) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            let low = reached_thresholds(low, Some(limit));
            let high = reached_thresholds(high, Some(limit));
            prop_assert!(low.iter().all(|t| high.contains(t)));
        }
    }
}
