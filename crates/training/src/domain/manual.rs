use stride_events::training::ActivitySummary;

use super::Invalid;

fn non_negative(name: &str, value: Option<f64>) -> Result<(), Invalid> {
    match value {
        Some(value) if !value.is_finite() || value < 0.0 => Err(Invalid(format!(
            "summary.{name} must be a number of at least 0"
        ))),
        _ => Ok(()),
    }
}

fn within(name: &str, value: Option<f64>, low: f64, high: f64) -> Result<(), Invalid> {
    match value {
        Some(value) if !(value.is_finite() && (low..=high).contains(&value)) => Err(Invalid(
            format!("summary.{name} must be between {low} and {high}"),
        )),
        _ => Ok(()),
    }
}

/// Checks totals a person entered: physical ranges, and parts never larger than the whole.
pub fn check_summary(summary: &ActivitySummary) -> Result<(), Invalid> {
    let Some(elapsed) = summary.elapsed_time_s else {
        return Err(Invalid("summary.elapsed_time_s is required".into()));
    };
    if !(elapsed.is_finite() && elapsed > 0.0 && elapsed <= 30.0 * 86_400.0) {
        return Err(Invalid(
            "summary.elapsed_time_s must be more than 0 and at most 30 days".into(),
        ));
    }
    for (name, value) in [
        ("moving_time_s", summary.moving_time_s),
        ("distance_m", summary.distance_m),
        ("elevation_gain_m", summary.elevation_gain_m),
        ("elevation_loss_m", summary.elevation_loss_m),
        ("avg_speed_mps", summary.avg_speed_mps),
        ("max_speed_mps", summary.max_speed_mps),
        ("avg_cadence", summary.avg_cadence),
        ("max_cadence", summary.max_cadence),
        ("avg_power_w", summary.avg_power_w),
        ("max_power_w", summary.max_power_w),
        ("normalized_power_w", summary.normalized_power_w),
        ("calories_kcal", summary.calories_kcal),
    ] {
        non_negative(name, value)?;
    }
    within("avg_heart_rate", summary.avg_heart_rate, 20.0, 250.0)?;
    within("max_heart_rate", summary.max_heart_rate, 20.0, 250.0)?;
    within("avg_speed_mps", summary.avg_speed_mps, 0.0, 100.0)?;
    within("max_speed_mps", summary.max_speed_mps, 0.0, 100.0)?;
    within("distance_m", summary.distance_m, 0.0, 10_000_000.0)?;
    if summary.moving_time_s.is_some_and(|moving| moving > elapsed) {
        return Err(Invalid(
            "summary.moving_time_s cannot exceed elapsed_time_s".into(),
        ));
    }
    if let (Some(avg), Some(max)) = (summary.avg_heart_rate, summary.max_heart_rate)
        && avg > max
    {
        return Err(Invalid(
            "summary.avg_heart_rate cannot exceed max_heart_rate".into(),
        ));
    }
    if let Some(zones) = summary.hr_zone_s {
        if zones.iter().any(|s| !s.is_finite() || *s < 0.0) {
            return Err(Invalid(
                "summary.hr_zone_s holds five numbers of at least 0".into(),
            ));
        }
        if zones.iter().sum::<f64>() > elapsed + 1.0 {
            return Err(Invalid(
                "summary.hr_zone_s cannot add up to more than elapsed_time_s".into(),
            ));
        }
    }
    Ok(())
}

/// Moving time of a live workout recorded without samples: elapsed time minus pauses.
pub fn moving_time_s(elapsed_s: f64, paused_s: f64) -> f64 {
    (elapsed_s - paused_s.max(0.0)).clamp(0.0, elapsed_s.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn summary(elapsed: f64) -> ActivitySummary {
        ActivitySummary {
            elapsed_time_s: Some(elapsed),
            ..ActivitySummary::default()
        }
    }

    #[test]
    fn a_manual_summary_needs_a_positive_elapsed_time() {
        assert!(check_summary(&ActivitySummary::default()).is_err());
        assert!(check_summary(&summary(-5.0)).is_err());
        assert!(check_summary(&summary(3600.0)).is_ok());
    }

    #[test]
    fn impossible_totals_are_refused_with_the_field_name() {
        let mut bad = summary(600.0);
        bad.moving_time_s = Some(601.0);
        assert!(
            check_summary(&bad)
                .expect_err("refused")
                .0
                .contains("moving_time_s")
        );
        let mut bad = summary(600.0);
        bad.distance_m = Some(-1.0);
        assert!(
            check_summary(&bad)
                .expect_err("refused")
                .0
                .contains("distance_m")
        );
        let mut bad = summary(600.0);
        bad.avg_heart_rate = Some(300.0);
        assert!(
            check_summary(&bad)
                .expect_err("refused")
                .0
                .contains("avg_heart_rate")
        );
    }

    proptest! {
        #[test]
        fn moving_time_is_never_negative_nor_above_elapsed(elapsed in 0.0f64..1e6, paused in -10.0f64..2e6) {
            let moving = moving_time_s(elapsed, paused);
            prop_assert!(moving >= 0.0 && moving <= elapsed);
        }
    }
}
