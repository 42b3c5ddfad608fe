//! Workout metrics: pure functions from samples (and the device's totals) to the numbers
//! Stride shows. Absent inputs give `None`, never a made-up zero.
//!
//! Conventions:
//! - Device totals win when the file carries them (distance, elapsed time, elevation, calories):
//!   the device had better sensors (wheel sensor, barometer) and the athlete's profile.
//! - Gaps between samples longer than [`PAUSE_GAP_S`] are pauses: they count toward elapsed
//!   time, but not toward heart-rate zones, power averages or normalized power.
//! - Averages of heart rate and cadence are over the samples that carry the value (cadence
//!   ignores zeros, i.e. coasting); power is time-weighted on a 1 Hz grid, zeros included.

use serde::Serialize;

use crate::model::{Activity, Lap, Sample, Sport, Totals};

/// A gap between two samples longer than this is treated as a pause.
pub const PAUSE_GAP_S: f64 = 30.0;
/// Mean Earth radius (IUGG), metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;
/// Splits are per kilometre.
const SPLIT_M: f64 = 1000.0;
/// No more splits than this, whatever a hostile distance says.
const MAX_SPLITS: usize = 10_000;
/// Resampling to 1 Hz never fills more than this per interval.
const MAX_FILL_S: f64 = 10.0;

/// What Stride knows about the person, for zones and calories.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Athlete {
    pub max_heart_rate: Option<f64>,
    pub resting_heart_rate: Option<f64>,
    pub weight_kg: Option<f64>,
    pub age_years: Option<f64>,
    pub sex: Option<Sex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Female,
    Male,
}

/// The summary of a workout, with exactly the field names of the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub elapsed_time_s: f64,
    pub moving_time_s: Option<f64>,
    pub distance_m: Option<f64>,
    pub elevation_gain_m: Option<f64>,
    pub elevation_loss_m: Option<f64>,
    pub avg_speed_mps: Option<f64>,
    pub max_speed_mps: Option<f64>,
    pub avg_heart_rate: Option<f64>,
    pub max_heart_rate: Option<f64>,
    /// Seconds in each of the five heart-rate zones (Karvonen, % of heart-rate reserve:
    /// <60, 60-70, 70-80, 80-90, ≥90); `None` without heart rate or a known max heart rate.
    pub hr_zone_s: Option<[f64; 5]>,
    pub avg_cadence: Option<f64>,
    pub max_cadence: Option<f64>,
    pub avg_power_w: Option<f64>,
    pub max_power_w: Option<f64>,
    pub normalized_power_w: Option<f64>,
    pub calories_kcal: Option<f64>,
}

/// One automatic split (per kilometre; the last one may be shorter).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Split {
    /// 1-based.
    pub index: usize,
    pub distance_m: f64,
    pub elapsed_time_s: f64,
    pub avg_speed_mps: Option<f64>,
    pub avg_heart_rate: Option<f64>,
    pub elevation_change_m: Option<f64>,
}

/// The best effort over a distance (runs) or a duration (rides with power).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BestEffort {
    /// "1k", "5k", "10k", "half_marathon", "5s", "1min", "5min", "20min".
    pub name: &'static str,
    pub distance_m: Option<f64>,
    pub duration_s: f64,
    pub avg_power_w: Option<f64>,
    /// Seconds from the first sample to the start of the effort.
    pub start_offset_s: f64,
}

/// A multisport leg's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LegSummary {
    pub sport: Sport,
    pub sport_name: Option<String>,
    pub summary: Summary,
}

/// Everything computed for an activity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub summary: Summary,
    pub legs: Vec<LegSummary>,
    pub laps: Vec<Lap>,
    pub splits: Vec<Split>,
    pub best_efforts: Vec<BestEffort>,
}

/// The activity's summary (for multisport: over all legs, with the legs' totals summed).
pub fn summarize(activity: &Activity, athlete: &Athlete) -> Summary {
    summarize_samples(
        &activity.samples,
        &activity.segment_starts,
        activity.sport,
        &activity.totals,
        athlete,
        elevation_smoothing(activity.format),
    )
}

fn elevation_smoothing(format: crate::Format) -> f64 {
    match format {
        crate::Format::Gpx => GPS_ELEVATION_SMOOTHING,
        crate::Format::Fit | crate::Format::Tcx => DEVICE_ELEVATION_SMOOTHING,
    }
}

/// Summary, legs, laps, splits and best efforts.
pub fn analyze(activity: &Activity, athlete: &Athlete) -> Analysis {
    let summary = summarize(activity, athlete);
    let legs = activity
        .legs
        .iter()
        .map(|leg| {
            let samples = activity.samples.get(leg.samples.clone()).unwrap_or(&[]);
            LegSummary {
                sport: leg.sport,
                sport_name: leg.sport_name.clone(),
                summary: summarize_samples(
                    samples,
                    &[],
                    leg.sport,
                    &leg.totals,
                    athlete,
                    elevation_smoothing(activity.format),
                ),
            }
        })
        .collect();
    let cum = cumulative_distance_m(&activity.samples, &activity.segment_starts);
    let splits = cum
        .as_deref()
        .map(|cum| splits(&activity.samples, cum, SPLIT_M))
        .unwrap_or_default();
    let mut best_efforts = Vec::new();
    if activity.sport.has_running_efforts()
        && let Some(cum) = cum.as_deref()
    {
        best_efforts.extend(running_best_efforts(&activity.samples, cum));
    }
    if activity.sport.has_power_efforts()
        && let Some(series) = power_series_1hz(&activity.samples)
    {
        best_efforts.extend(power_best_efforts(&series));
    }
    Analysis {
        summary,
        legs,
        laps: activity.laps.clone(),
        splits,
        best_efforts,
    }
}

/// The summary of a run of samples with the device's totals for it.
pub fn summarize_samples(
    samples: &[Sample],
    segment_starts: &[usize],
    sport: Sport,
    totals: &Totals,
    athlete: &Athlete,
    elevation_smoothing: f64,
) -> Summary {
    let positive = |v: Option<f64>| v.filter(|v| v.is_finite() && *v > 0.0);
    let non_negative = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0);

    let elapsed = non_negative(totals.elapsed_time_s).unwrap_or_else(|| elapsed_time_s(samples));
    let cum = cumulative_distance_m(samples, segment_starts);
    let distance =
        positive(totals.distance_m).or_else(|| cum.as_deref().and_then(|c| c.last().copied()));
    let moving = moving_time_s(samples, segment_starts, sport).map(|m| m.min(elapsed));
    let avg_speed = match (distance, moving) {
        (Some(d), Some(m)) if m > 0.0 => Some(d / m),
        _ => None,
    };
    let max_speed = max_of(samples.iter().map(|s| s.speed_mps)).or_else(|| {
        cum.as_deref()
            .and_then(|c| max_windowed_speed(samples, c, 5.0))
    });

    let (gain, loss) = match (
        non_negative(totals.elevation_gain_m),
        non_negative(totals.elevation_loss_m),
    ) {
        (Some(g), Some(l)) => (Some(g), Some(l)),
        _ => match elevation_gain_loss_m(samples, segment_starts, elevation_smoothing) {
            Some((g, l)) => (Some(g), Some(l)),
            None => (None, None),
        },
    };

    let heart = samples.iter().map(|s| s.heart_rate.filter(|v| *v > 0.0));
    let avg_hr = positive(totals.avg_heart_rate).or_else(|| mean_of(heart.clone()));
    let max_hr = positive(totals.max_heart_rate).or_else(|| max_of(heart));
    let zones = athlete
        .max_heart_rate
        .and_then(|max| heart_rate_zone_s(samples, max, athlete.resting_heart_rate.unwrap_or(0.0)));

    let cadence = samples.iter().map(|s| s.cadence.filter(|v| *v > 0.0));
    let avg_cadence = mean_of(cadence.clone());
    let max_cadence = max_of(cadence);

    let series = power_series_1hz(samples);
    let avg_power = series.as_deref().and_then(mean);
    let max_power = max_of(samples.iter().map(|s| s.power_w));
    let np = series.as_deref().and_then(normalized_power_w);

    let calories = positive(totals.calories_kcal)
        .or_else(|| series.as_deref().and_then(calories_from_power))
        .or_else(|| calories_from_heart_rate(samples, athlete));

    Summary {
        elapsed_time_s: elapsed,
        moving_time_s: moving,
        distance_m: distance,
        elevation_gain_m: gain,
        elevation_loss_m: loss,
        avg_speed_mps: avg_speed,
        max_speed_mps: max_speed,
        avg_heart_rate: avg_hr,
        max_heart_rate: max_hr,
        hr_zone_s: zones,
        avg_cadence,
        max_cadence,
        avg_power_w: avg_power,
        max_power_w: max_power,
        normalized_power_w: np,
        calories_kcal: calories,
    }
}

fn secs_between(a: &Sample, b: &Sample) -> f64 {
    (b.time - a.time).num_milliseconds() as f64 / 1000.0
}

fn mean_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let (sum, n) = values
        .flatten()
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

fn max_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values
        .flatten()
        .filter(|v| v.is_finite())
        .fold(None, |acc: Option<f64>, v| {
            Some(acc.map_or(v, |a| a.max(v)))
        })
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Seconds from the first to the last sample (0 for fewer than two).
pub fn elapsed_time_s(samples: &[Sample]) -> f64 {
    match (samples.first(), samples.last()) {
        (Some(a), Some(b)) => secs_between(a, b).max(0.0),
        _ => 0.0,
    }
}

/// Great-circle distance between two positions (haversine), metres.
pub fn haversine_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Sum of the great-circle distances between consecutive positioned samples.
pub fn geodesic_distance_m(samples: &[Sample]) -> f64 {
    let mut last = None;
    let mut total = 0.0;
    for p in samples.iter().filter_map(Sample::position) {
        if let Some(prev) = last {
            total += haversine_m(prev, p);
        }
        last = Some(p);
    }
    total
}

/// Cumulative distance at every sample: the device's distance when the samples carry it,
/// else geodesic from positions (no distance across a segment start). Non-decreasing.
pub fn cumulative_distance_m(samples: &[Sample], segment_starts: &[usize]) -> Option<Vec<f64>> {
    let with_distance = samples
        .iter()
        .filter(|s| s.distance_m.is_some_and(f64::is_finite))
        .count();
    if with_distance >= 2 {
        let base = samples
            .iter()
            .find_map(|s| s.distance_m.filter(|d| d.is_finite()))?;
        let mut out = Vec::with_capacity(samples.len());
        let mut current: f64 = 0.0;
        for s in samples {
            if let Some(d) = s.distance_m.filter(|d| d.is_finite()) {
                current = current.max(d - base);
            }
            out.push(current);
        }
        return Some(out);
    }
    let with_position = samples.iter().filter(|s| s.position().is_some()).count();
    if with_position < 2 {
        return None;
    }
    let mut out = Vec::with_capacity(samples.len());
    let mut total = 0.0;
    let mut last = None;
    let mut breaks = segment_starts.iter().peekable();
    for (i, s) in samples.iter().enumerate() {
        let mut new_segment = false;
        while breaks.peek().is_some_and(|&&b| b <= i) {
            if breaks.next() == Some(&i) {
                new_segment = true;
            }
        }
        if let Some(p) = s.position() {
            if let (Some(prev), false) = (last, new_segment) {
                total += haversine_m(prev, p);
            }
            last = Some(p);
        } else if new_segment {
            last = None;
        }
        out.push(total);
    }
    Some(out)
}

/// Time spent moving: intervals whose speed reaches the sport's stopped-speed threshold.
/// Without any speed or distance, intervals with power or cadence above zero count; with no
/// such data at all, every interval up to [`PAUSE_GAP_S`] counts.
pub fn moving_time_s(samples: &[Sample], segment_starts: &[usize], sport: Sport) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let cum = cumulative_distance_m(samples, segment_starts);
    let has_speed = samples.iter().any(|s| s.speed_mps.is_some());
    let threshold = sport.stopped_speed_mps();
    let mut total = 0.0;
    for i in 0..samples.len() - 1 {
        let (a, b) = (&samples[i], &samples[i + 1]);
        let dt = secs_between(a, b);
        if dt <= 0.0 || segment_starts.contains(&(i + 1)) {
            continue;
        }
        let speed = if has_speed {
            b.speed_mps.or(a.speed_mps)
        } else {
            None
        }
        .or_else(|| cum.as_ref().map(|c| (c[i + 1] - c[i]) / dt));
        let moving = match speed {
            Some(v) => v >= threshold,
            None if cum.is_none() && !has_speed => {
                let effort = a.power_w.or(a.cadence);
                match effort {
                    Some(e) => e > 0.0,
                    None => dt <= PAUSE_GAP_S,
                }
            }
            None => false,
        };
        if moving {
            total += dt;
        }
    }
    Some(total)
}

/// Highest speed sustained over at least `window_s` seconds, from cumulative distance.
fn max_windowed_speed(samples: &[Sample], cum: &[f64], window_s: f64) -> Option<f64> {
    let mut best: Option<f64> = None;
    let mut j = 0;
    for i in 0..samples.len() {
        j = j.max(i);
        while j < samples.len() && secs_between(&samples[i], &samples[j]) < window_s {
            j += 1;
        }
        let Some(end) = samples.get(j) else { break };
        let dt = secs_between(&samples[i], end);
        if dt > 0.0 && dt <= window_s * 3.0 {
            let v = (cum[j] - cum[i]) / dt;
            best = Some(best.map_or(v, |b: f64| b.max(v)));
        }
    }
    best
}

/// Neighbour weight of the 3-point elevation filter for GPS altitude (GPX): 0.3/0.4/0.3.
pub const GPS_ELEVATION_SMOOTHING: f64 = 0.3;
/// Neighbour weight for device altitude (FIT, TCX: usually barometric and already filtered
/// by the device): a light 0.15/0.7/0.15 that only takes out sample-to-sample jitter.
pub const DEVICE_ELEVATION_SMOOTHING: f64 = 0.15;

/// Elevation gain and loss: altitudes are smoothed per segment with a 3-point weighted mean
/// (`neighbour_weight`, `1 - 2 * neighbour_weight`, `neighbour_weight`), then rises and falls
/// are summed.
pub fn elevation_gain_loss_m(
    samples: &[Sample],
    segment_starts: &[usize],
    neighbour_weight: f64,
) -> Option<(f64, f64)> {
    let w = neighbour_weight.clamp(0.0, 0.5);
    let mut gain = 0.0;
    let mut loss = 0.0;
    let mut points = 0usize;
    let mut bounds = vec![0];
    bounds.extend(
        segment_starts
            .iter()
            .copied()
            .filter(|&b| b > 0 && b < samples.len()),
    );
    bounds.push(samples.len());
    bounds.sort_unstable();
    bounds.dedup();
    for bound in bounds.windows(2) {
        let alts: Vec<f64> = samples[bound[0]..bound[1]]
            .iter()
            .filter_map(|s| s.altitude_m.filter(|a| a.is_finite()))
            .collect();
        points += alts.len();
        let n = alts.len();
        let smooth = |i: usize| {
            if i > 0 && i + 1 < n {
                w * alts[i - 1] + (1.0 - 2.0 * w) * alts[i] + w * alts[i + 1]
            } else {
                alts[i]
            }
        };
        for i in 1..n {
            let d = smooth(i) - smooth(i - 1);
            if d > 0.0 {
                gain += d;
            } else {
                loss -= d;
            }
        }
    }
    (points >= 2).then_some((gain, loss))
}

/// Seconds in each of five heart-rate zones (Karvonen: fraction of heart-rate reserve).
/// Each sample holds until the next one; pauses longer than [`PAUSE_GAP_S`] are not counted.
pub fn heart_rate_zone_s(samples: &[Sample], max_hr: f64, resting_hr: f64) -> Option<[f64; 5]> {
    if !(max_hr.is_finite() && resting_hr.is_finite()) || max_hr <= resting_hr {
        return None;
    }
    let reserve = max_hr - resting_hr;
    let mut zones = [0.0; 5];
    let mut any = false;
    for w in samples.windows(2) {
        let Some(hr) = w[0].heart_rate.filter(|v| v.is_finite() && *v > 0.0) else {
            continue;
        };
        any = true;
        let dt = secs_between(&w[0], &w[1]);
        if dt <= 0.0 || dt > PAUSE_GAP_S {
            continue;
        }
        let fraction = (hr - resting_hr) / reserve;
        let zone = match fraction {
            f if f < 0.6 => 0,
            f if f < 0.7 => 1,
            f if f < 0.8 => 2,
            f if f < 0.9 => 3,
            _ => 4,
        };
        zones[zone] += dt;
    }
    any |= samples
        .last()
        .is_some_and(|s| s.heart_rate.is_some_and(|v| v > 0.0));
    any.then_some(zones)
}

/// Power on a 1 Hz grid: each sample's power holds until the next sample (missing power is 0);
/// pauses longer than 10 s are cut to one second. `None` when no sample has power.
pub fn power_series_1hz(samples: &[Sample]) -> Option<Vec<f64>> {
    if !samples.iter().any(|s| s.power_w.is_some()) {
        return None;
    }
    let mut out = Vec::with_capacity(samples.len());
    let mut carry = 0.0;
    for (i, s) in samples.iter().enumerate() {
        let p = s
            .power_w
            .filter(|p| p.is_finite() && *p > 0.0)
            .unwrap_or(0.0);
        let dt = samples.get(i + 1).map_or(1.0, |n| secs_between(s, n));
        let dt = if dt > MAX_FILL_S { 1.0 } else { dt.max(0.0) };
        carry += dt;
        let whole = carry.floor();
        carry -= whole;
        for _ in 0..whole as usize {
            out.push(p);
        }
    }
    Some(out)
}

/// Normalized power: the fourth-power mean of the 30 s rolling average of a 1 Hz series.
/// It is by definition at least the average power; on short or edge-heavy series the
/// windowed estimate can dip below it, and then the average is reported.
pub fn normalized_power_w(series: &[f64]) -> Option<f64> {
    const WINDOW: usize = 30;
    if series.len() < WINDOW {
        return None;
    }
    let mut sum: f64 = series[..WINDOW].iter().sum();
    let mut fourth = 0.0;
    let mut count = 0usize;
    for i in WINDOW..=series.len() {
        if i > WINDOW {
            sum += series[i - 1] - series[i - 1 - WINDOW];
        }
        let rolling = (sum / WINDOW as f64).max(0.0);
        fourth += rolling.powi(4);
        count += 1;
    }
    let np = (fourth / count as f64).powf(0.25);
    let avg = mean(series)?;
    Some(np.max(avg))
}

/// Highest average power over `window_s` consecutive seconds of a 1 Hz series.
pub fn best_power_w(series: &[f64], window_s: usize) -> Option<f64> {
    if window_s == 0 || series.len() < window_s {
        return None;
    }
    let mut sum: f64 = series[..window_s].iter().sum();
    let mut best = sum;
    for i in window_s..series.len() {
        sum += series[i] - series[i - window_s];
        best = best.max(sum);
    }
    Some(best / window_s as f64)
}

/// Fastest time to cover `target_m` on a non-decreasing distance/time curve, interpolating
/// linearly between samples. Returns (start time, duration).
pub fn fastest_distance_s(times: &[f64], distances: &[f64], target_m: f64) -> Option<(f64, f64)> {
    let n = times.len().min(distances.len());
    if n < 2 || target_m <= 0.0 || distances[n - 1] - distances[0] < target_m {
        return None;
    }
    let mut best: Option<(f64, f64)> = None;
    let mut consider = |start: f64, end: f64| {
        let d = end - start;
        if d >= 0.0 && best.is_none_or(|(_, b)| d < b) {
            best = Some((start, d));
        }
    };
    // Effort ending at sample j; start at the latest moment the distance was d[j] - target.
    let mut i = 0;
    for j in 0..n {
        let want = distances[j] - target_m;
        if want < distances[0] {
            continue;
        }
        while i + 1 < j && distances[i + 1] <= want {
            i += 1;
        }
        let start = if i < j && distances[i + 1] > distances[i] {
            let f = ((want - distances[i]) / (distances[i + 1] - distances[i])).clamp(0.0, 1.0);
            times[i] + f * (times[i + 1] - times[i])
        } else {
            times[i]
        };
        consider(start, times[j]);
    }
    // Effort starting at sample i; end at the first moment the distance reaches d[i] + target.
    let mut k = 0;
    for i in 0..n {
        let want = distances[i] + target_m;
        if want > distances[n - 1] {
            break;
        }
        k = k.max(i);
        while k < n && distances[k] < want {
            k += 1;
        }
        let Some(&dk) = distances.get(k) else { break };
        let end = if k > i && dk > distances[k - 1] {
            let f = ((want - distances[k - 1]) / (dk - distances[k - 1])).clamp(0.0, 1.0);
            times[k - 1] + f * (times[k] - times[k - 1])
        } else {
            times[k]
        };
        consider(times[i], end);
    }
    best
}

fn seconds_from_start(samples: &[Sample]) -> Vec<f64> {
    let Some(first) = samples.first() else {
        return Vec::new();
    };
    let mut last: f64 = 0.0;
    samples
        .iter()
        .map(|s| {
            last = last.max(secs_between(first, s));
            last
        })
        .collect()
}

/// Fastest 1 km, 5 km, 10 km and half marathon.
pub fn running_best_efforts(samples: &[Sample], cum: &[f64]) -> Vec<BestEffort> {
    let times = seconds_from_start(samples);
    [
        ("1k", 1000.0),
        ("5k", 5000.0),
        ("10k", 10_000.0),
        ("half_marathon", 21_097.5),
    ]
    .into_iter()
    .filter_map(|(name, distance)| {
        let (start, duration) = fastest_distance_s(&times, cum, distance)?;
        Some(BestEffort {
            name,
            distance_m: Some(distance),
            duration_s: duration,
            avg_power_w: None,
            start_offset_s: start,
        })
    })
    .collect()
}

/// Best 5 s, 1 min, 5 min and 20 min power.
pub fn power_best_efforts(series: &[f64]) -> Vec<BestEffort> {
    [("5s", 5usize), ("1min", 60), ("5min", 300), ("20min", 1200)]
        .into_iter()
        .filter_map(|(name, window)| {
            let power = best_power_w(series, window)?;
            Some(BestEffort {
                name,
                distance_m: None,
                duration_s: window as f64,
                avg_power_w: Some(power),
                start_offset_s: 0.0,
            })
        })
        .collect()
}

/// Automatic splits every `split_m` metres along the cumulative distance.
pub fn splits(samples: &[Sample], cum: &[f64], split_m: f64) -> Vec<Split> {
    let times = seconds_from_start(samples);
    let n = times.len().min(cum.len());
    if n < 2 || split_m <= 0.0 {
        return Vec::new();
    }
    let total = cum[n - 1];
    let mut out = Vec::new();
    let mut start_t = 0.0;
    let mut start_idx = 0usize;
    let mut start_d = 0.0;
    let mut idx = 0usize;
    while out.len() < MAX_SPLITS && start_d < total {
        let target = (start_d + split_m).min(total);
        while idx + 1 < n && cum[idx + 1] < target {
            idx += 1;
        }
        let (end_t, end_idx) = if idx + 1 < n {
            let (d0, d1) = (cum[idx], cum[idx + 1]);
            let f = if d1 > d0 {
                ((target - d0) / (d1 - d0)).clamp(0.0, 1.0)
            } else {
                1.0
            };
            (times[idx] + f * (times[idx + 1] - times[idx]), idx + 1)
        } else {
            (times[n - 1], n - 1)
        };
        let distance = target - start_d;
        let elapsed = (end_t - start_t).max(0.0);
        let part = &samples[start_idx.min(end_idx)..=end_idx];
        let alt = |s: Option<&Sample>| s.and_then(|s| s.altitude_m);
        out.push(Split {
            index: out.len() + 1,
            distance_m: distance,
            elapsed_time_s: elapsed,
            avg_speed_mps: (elapsed > 0.0).then(|| distance / elapsed),
            avg_heart_rate: mean_of(part.iter().map(|s| s.heart_rate)),
            elevation_change_m: match (alt(part.first()), alt(part.last())) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            },
        });
        start_t = end_t;
        start_idx = end_idx;
        start_d = target;
    }
    out
}

/// kJ of work ≈ kcal burnt (human efficiency ~24 % cancels the 4.184 kJ/kcal).
fn calories_from_power(series: &[f64]) -> Option<f64> {
    let kj = series.iter().sum::<f64>() / 1000.0;
    (kj > 0.0).then_some(kj)
}

/// Keytel et al. (2005) from average heart rate, weight and age; without a known sex the mean
/// of the two equations.
fn calories_from_heart_rate(samples: &[Sample], athlete: &Athlete) -> Option<f64> {
    let weight = athlete.weight_kg.filter(|w| w.is_finite() && *w > 0.0)?;
    let age = athlete.age_years.filter(|a| a.is_finite() && *a > 0.0)?;
    let mut minutes = 0.0;
    let mut weighted = 0.0;
    for w in samples.windows(2) {
        let Some(hr) = w[0].heart_rate.filter(|v| v.is_finite() && *v > 0.0) else {
            continue;
        };
        let dt = secs_between(&w[0], &w[1]);
        if dt > 0.0 && dt <= PAUSE_GAP_S {
            minutes += dt / 60.0;
            weighted += hr * dt / 60.0;
        }
    }
    if minutes <= 0.0 {
        return None;
    }
    let hr = weighted / minutes;
    let male = (-55.0969 + 0.6309 * hr + 0.1988 * weight + 0.2017 * age) / 4.184;
    let female = (-20.4022 + 0.4472 * hr - 0.1263 * weight + 0.074 * age) / 4.184;
    let per_minute = match athlete.sex {
        Some(Sex::Male) => male,
        Some(Sex::Female) => female,
        None => (male + female) / 2.0,
    };
    Some((per_minute * minutes).max(0.0))
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use proptest::prelude::*;

    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_600_000_000, 0).unwrap()
    }

    fn steady_run(seconds: i64, speed: f64) -> Vec<Sample> {
        (0..=seconds)
            .map(|i| {
                let mut s = Sample::at(t0() + Duration::seconds(i));
                s.distance_m = Some(i as f64 * speed);
                s.heart_rate = Some(150.0);
                s
            })
            .collect()
    }

    #[test]
    fn steady_run_summary() {
        let samples = steady_run(600, 3.0);
        let s = summarize_samples(
            &samples,
            &[],
            Sport::Run,
            &Totals::default(),
            &Athlete::default(),
            0.3,
        );
        assert_eq!(s.elapsed_time_s, 600.0);
        assert_eq!(s.moving_time_s, Some(600.0));
        assert_eq!(s.distance_m, Some(1800.0));
        assert_eq!(s.avg_speed_mps, Some(3.0));
        assert_eq!(s.avg_heart_rate, Some(150.0));
        assert_eq!(s.hr_zone_s, None, "no max heart rate known");
        assert_eq!(s.avg_power_w, None);
        assert_eq!(s.calories_kcal, None);
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["avg_power_w"].is_null());
    }

    #[test]
    fn zones_and_calories_with_an_athlete() {
        let samples = steady_run(600, 3.0);
        let athlete = Athlete {
            max_heart_rate: Some(190.0),
            resting_heart_rate: Some(50.0),
            weight_kg: Some(70.0),
            age_years: Some(35.0),
            sex: None,
        };
        let s = summarize_samples(&samples, &[], Sport::Run, &Totals::default(), &athlete, 0.3);
        // (150 - 50) / 140 = 0.71 → zone 3
        assert_eq!(s.hr_zone_s, Some([0.0, 0.0, 600.0, 0.0, 0.0]));
        let kcal = s.calories_kcal.unwrap();
        assert!((50.0..200.0).contains(&kcal), "{kcal}");
    }

    #[test]
    fn splits_and_best_efforts() {
        let samples = steady_run(2000, 3.0);
        let cum = cumulative_distance_m(&samples, &[]).unwrap();
        let sp = splits(&samples, &cum, 1000.0);
        assert_eq!(sp.len(), 6);
        assert!((sp[0].elapsed_time_s - 333.333).abs() < 0.01);
        assert!((sp[5].distance_m - 1000.0).abs() < 1e-9);
        let efforts = running_best_efforts(&samples, &cum);
        assert_eq!(efforts.len(), 2);
        assert!((efforts[1].duration_s - 5000.0 / 3.0).abs() < 0.01);
    }

    #[test]
    fn power_metrics() {
        let samples: Vec<Sample> = (0..120)
            .map(|i| {
                let mut s = Sample::at(t0() + Duration::seconds(i));
                s.power_w = Some(if i < 60 { 100.0 } else { 300.0 });
                s
            })
            .collect();
        let series = power_series_1hz(&samples).unwrap();
        assert_eq!(series.len(), 120);
        let np = normalized_power_w(&series).unwrap();
        assert!(np > 200.0, "{np}");
        assert_eq!(best_power_w(&series, 5), Some(300.0));
        assert_eq!(best_power_w(&series, 60), Some(300.0));
        assert_eq!(calories_from_power(&series), Some(24.0));
    }

    fn arb_samples() -> impl Strategy<Value = Vec<Sample>> {
        prop::collection::vec(
            (
                0u32..40,
                prop::option::of(-0.001f64..0.001),
                prop::option::of(0.0f64..400.0),
                prop::option::of(40.0f64..210.0),
                prop::option::of(0.0f64..1200.0),
                prop::option::of(0.0f64..15.0),
                prop::option::of(0.0f64..50.0),
            ),
            0..300,
        )
        .prop_map(|rows| {
            let mut t = t0();
            let mut lat = 46.0;
            let mut dist = 0.0;
            rows.into_iter()
                .map(|(dt, dlat, alt, hr, power, speed, ddist)| {
                    t += Duration::seconds(i64::from(dt));
                    let mut s = Sample::at(t);
                    if let Some(d) = dlat {
                        lat += d;
                        s.lat = Some(lat);
                        s.lon = Some(14.0 + d);
                    }
                    s.altitude_m = alt;
                    s.heart_rate = hr;
                    s.power_w = power;
                    s.speed_mps = speed;
                    if let Some(d) = ddist {
                        dist += d;
                        s.distance_m = Some(dist);
                    }
                    s
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn summary_never_panics_and_moving_le_elapsed(samples in arb_samples(), sport_i in 0usize..13) {
            let sports = [Sport::Run, Sport::TrailRun, Sport::Ride, Sport::MountainBike, Sport::IndoorRide,
                Sport::Swim, Sport::Walk, Sport::Hike, Sport::Row, Sport::Ski, Sport::Strength, Sport::Yoga, Sport::Other];
            let athlete = Athlete { max_heart_rate: Some(190.0), resting_heart_rate: Some(55.0), weight_kg: Some(70.0), age_years: Some(40.0), sex: Some(Sex::Female) };
            let s = summarize_samples(&samples, &[], sports[sport_i], &Totals::default(), &athlete, 0.3);
            if let Some(m) = s.moving_time_s {
                prop_assert!(m <= s.elapsed_time_s + 1e-9);
                prop_assert!(m >= 0.0);
            }
            if let Some(z) = s.hr_zone_s {
                prop_assert!(z.iter().sum::<f64>() <= s.elapsed_time_s + 1e-6);
                prop_assert!(z.iter().all(|v| *v >= 0.0));
            }
            for v in [s.distance_m, s.avg_speed_mps, s.elevation_gain_m, s.elevation_loss_m, s.calories_kcal] {
                prop_assert!(v.is_none_or(|v| v.is_finite() && v >= 0.0));
            }
            // analysis of an arbitrary activity never panics either
            if let Some(first) = samples.first() {
                let activity = Activity {
                    format: crate::Format::Gpx, sport: sports[sport_i], sport_name: None,
                    start_time: first.time, samples: samples.clone(), segment_starts: vec![samples.len() / 2],
                    laps: vec![], legs: vec![], totals: Totals::default(), source: Default::default(),
                };
                let _ = analyze(&activity, &athlete);
            }
        }

        #[test]
        fn normalized_power_is_at_least_average(power in prop::collection::vec(0.0f64..2000.0, 0..400)) {
            if let (Some(np), Some(avg)) = (normalized_power_w(&power), mean(&power)) {
                prop_assert!(np >= avg - 1e-9);
            }
        }

        #[test]
        fn best_power_is_monotone(power in prop::collection::vec(0.0f64..2000.0, 0..1500)) {
            let windows = [5usize, 60, 300, 1200];
            for w in windows.windows(2) {
                if let (Some(short), Some(long)) = (best_power_w(&power, w[0]), best_power_w(&power, w[1])) {
                    prop_assert!(short >= long - 1e-6);
                }
            }
        }

        #[test]
        fn best_pace_is_monotone(steps in prop::collection::vec((1u32..20, 0.0f64..60.0), 2..800)) {
            let mut t = 0.0;
            let mut d = 0.0;
            let mut times = vec![0.0];
            let mut dists = vec![0.0];
            for (dt, dd) in steps {
                t += f64::from(dt);
                d += dd;
                times.push(t);
                dists.push(d);
            }
            let best = |x: f64| fastest_distance_s(&times, &dists, x);
            if let (Some((_, one)), Some((_, five))) = (best(1000.0), best(5000.0)) {
                // speed over the best 1 km ≥ speed over the best 5 km
                prop_assert!(1000.0 / one.max(1e-12) >= 5000.0 / five.max(1e-12) * (1.0 - 1e-9));
            }
        }

        #[test]
        fn distance_is_invariant_under_splitting(samples in arb_samples(), cut in 0usize..300) {
            let positioned: Vec<Sample> = samples.into_iter().filter(|s| s.position().is_some()).collect();
            prop_assume!(!positioned.is_empty());
            let cut = cut.min(positioned.len() - 1);
            let whole = geodesic_distance_m(&positioned);
            // both halves share the sample at the cut
            let parts = geodesic_distance_m(&positioned[..=cut]) + geodesic_distance_m(&positioned[cut..]);
            prop_assert!((whole - parts).abs() <= 1e-6 * whole.max(1.0));
        }

        #[test]
        fn elevation_gain_and_loss_balance(samples in arb_samples()) {
            if let Some((gain, loss)) = elevation_gain_loss_m(&samples, &[], 0.3) {
                prop_assert!(gain >= 0.0 && loss >= 0.0);
            }
        }
    }
}
