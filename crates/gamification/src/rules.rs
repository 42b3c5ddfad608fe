//! The points rules, in one readable place: points per moving minute and per kilometre by
//! sport, at most six hours of a workout counted, and a daily cap so nobody farms points with
//! fake workouts.

/// Most points a person can earn per local day.
pub const DAILY_CAP: i64 = 500;

/// Longest stretch of one workout that earns points.
pub const MAX_COUNTED_SECONDS: f64 = 6.0 * 3600.0;

/// Points per moving minute and per kilometre.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Per moving minute.
    pub per_minute: f64,
    /// Per kilometre.
    pub per_km: f64,
}

/// The rate of a sport (by its stored name; unknown sports earn by time only).
pub fn rate(sport: &str) -> Rate {
    let (per_minute, per_km) = match sport {
        "run" | "trail_run" => (1.0, 10.0),
        "walk" | "hike" => (0.5, 4.0),
        "ride" | "mountain_bike" | "indoor_ride" => (0.5, 2.0),
        "swim" => (1.5, 40.0),
        "row" | "ski" => (1.0, 5.0),
        _ => (0.8, 0.0),
    };
    Rate { per_minute, per_km }
}

/// Points a workout earns before the daily cap.
pub fn raw_points(sport: &str, moving_time_s: f64, distance_m: f64) -> i64 {
    let rate = rate(sport);
    let seconds = moving_time_s.clamp(0.0, MAX_COUNTED_SECONDS);
    // Distance is counted only for the counted time, at a plausible share of the whole.
    let share = if moving_time_s > MAX_COUNTED_SECONDS {
        MAX_COUNTED_SECONDS / moving_time_s
    } else {
        1.0
    };
    let km = (distance_m.max(0.0) / 1000.0) * share;
    let points = seconds / 60.0 * rate.per_minute + km * rate.per_km;
    if points.is_finite() {
        points.round() as i64
    } else {
        0
    }
}

/// What a workout earns given what the same day earned already.
pub fn capped(raw: i64, already_today: i64) -> i64 {
    raw.clamp(0, (DAILY_CAP - already_today).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_ten_km_run_in_fifty_minutes_earns_150_points() {
        assert_eq!(raw_points("run", 3000.0, 10_000.0), 150);
        assert_eq!(raw_points("yoga", 3600.0, 0.0), 48);
    }

    #[test]
    fn the_daily_cap_limits_what_a_day_earns() {
        assert_eq!(capped(150, 0), 150);
        assert_eq!(capped(150, 400), 100);
        assert_eq!(capped(150, 500), 0);
        assert_eq!(capped(150, 700), 0);
    }

    proptest! {
        #[test]
        fn points_are_never_negative_and_a_day_never_exceeds_the_cap(
            workouts in proptest::collection::vec((0.0f64..1e6, 0.0f64..1e7), 0..30),
            sport in prop_oneof![Just("run"), Just("ride"), Just("swim"), Just("yoga"), Just("unknown")],
        ) {
            let mut today = 0;
            for (moving, distance) in workouts {
                let earned = capped(raw_points(sport, moving, distance), today);
                prop_assert!(earned >= 0);
                today += earned;
                prop_assert!(today <= DAILY_CAP);
            }
        }

        #[test]
        fn more_time_or_distance_never_earns_less(moving in 0.0f64..20_000.0, distance in 0.0f64..100_000.0) {
            prop_assert!(raw_points("run", moving + 60.0, distance) >= raw_points("run", moving, distance));
            prop_assert!(raw_points("run", moving, distance + 1000.0) >= raw_points("run", moving, distance));
        }
    }
}
