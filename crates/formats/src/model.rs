//! The format-independent workout model every reader produces.

use std::fmt;
use std::ops::Range;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Which file format a workout came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Fit,
    Gpx,
    Tcx,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Fit => "FIT",
            Format::Gpx => "GPX",
            Format::Tcx => "TCX",
        })
    }
}

/// The sports Stride knows (issue 3). Anything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sport {
    Run,
    TrailRun,
    Ride,
    MountainBike,
    IndoorRide,
    Swim,
    Walk,
    Hike,
    Row,
    Ski,
    Strength,
    Yoga,
    Other,
}

impl Sport {
    /// The snake_case name used by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Sport::Run => "run",
            Sport::TrailRun => "trail_run",
            Sport::Ride => "ride",
            Sport::MountainBike => "mountain_bike",
            Sport::IndoorRide => "indoor_ride",
            Sport::Swim => "swim",
            Sport::Walk => "walk",
            Sport::Hike => "hike",
            Sport::Row => "row",
            Sport::Ski => "ski",
            Sport::Strength => "strength",
            Sport::Yoga => "yoga",
            Sport::Other => "other",
        }
    }

    /// Maps a FIT `sport` / `sub_sport` pair (profile enum values) to a Stride sport.
    pub fn from_fit(sport: Option<u8>, sub_sport: Option<u8>) -> Sport {
        match (sport, sub_sport) {
            // running: 3 = trail
            (Some(1), Some(3)) => Sport::TrailRun,
            (Some(1), _) => Sport::Run,
            // cycling: 6 = indoor_cycling, 58 = virtual_activity, 8 = mountain, 9 = downhill
            (Some(2), Some(6 | 58)) => Sport::IndoorRide,
            (Some(2), Some(8 | 9)) => Sport::MountainBike,
            (Some(2), _) => Sport::Ride,
            // fitness_equipment: 1 treadmill, 6 indoor_cycling, 14 indoor_rowing
            (Some(4), Some(1)) => Sport::Run,
            (Some(4), Some(6)) => Sport::IndoorRide,
            (Some(4), Some(14)) => Sport::Row,
            (Some(5), _) => Sport::Swim,
            // training: 20 strength_training, 43 yoga
            (Some(10), Some(20)) => Sport::Strength,
            (Some(10), Some(43)) => Sport::Yoga,
            (Some(11), _) => Sport::Walk,
            (Some(12 | 13), _) => Sport::Ski,
            (Some(15), _) => Sport::Row,
            (Some(16 | 17), _) => Sport::Hike,
            _ => Sport::Other,
        }
    }

    /// Maps a free-text sport name (GPX `<type>`, TCX `Sport="..."`) to a Stride sport.
    pub fn from_name(name: &str) -> Sport {
        let n = name.trim().to_ascii_lowercase();
        let has = |s: &str| n.contains(s);
        match n.as_str() {
            // Strava's numeric GPX activity types
            "1" => return Sport::Ride,
            "9" => return Sport::Run,
            "10" => return Sport::Walk,
            "4" => return Sport::Hike,
            _ => {}
        }
        if has("trail") && has("run") {
            Sport::TrailRun
        } else if has("run") || has("jog") || has("treadmill") {
            Sport::Run
        } else if has("mountain") || has("mtb") {
            Sport::MountainBike
        } else if (has("virtual") || has("indoor") || has("trainer") || has("spin"))
            && (has("ride") || has("bik") || has("cycl") || has("spin"))
        {
            Sport::IndoorRide
        } else if has("bik") || has("cycl") || has("ride") {
            Sport::Ride
        } else if has("swim") {
            Sport::Swim
        } else if has("walk") {
            Sport::Walk
        } else if has("hik") || has("mountaineering") {
            Sport::Hike
        } else if has("row") {
            Sport::Row
        } else if has("ski") {
            Sport::Ski
        } else if has("strength") || has("weight") {
            Sport::Strength
        } else if has("yoga") {
            Sport::Yoga
        } else {
            Sport::Other
        }
    }

    /// Below this speed (m/s) a moment counts as stopped for moving time.
    pub fn stopped_speed_mps(self) -> f64 {
        match self {
            Sport::Run | Sport::TrailRun | Sport::Ski => 0.5,
            Sport::Walk | Sport::Hike => 0.3,
            Sport::Ride | Sport::MountainBike => 1.0,
            Sport::IndoorRide => 0.5,
            Sport::Swim => 0.1,
            Sport::Row => 0.3,
            Sport::Strength | Sport::Yoga | Sport::Other => 0.3,
        }
    }

    /// Whether distance-based best efforts (1 km, 5 km, ...) make sense.
    pub fn has_running_efforts(self) -> bool {
        matches!(self, Sport::Run | Sport::TrailRun)
    }

    /// Whether power best efforts (5 s, 1 min, ...) make sense.
    pub fn has_power_efforts(self) -> bool {
        matches!(self, Sport::Ride | Sport::MountainBike | Sport::IndoorRide)
    }
}

impl fmt::Display for Sport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One moment of telemetry. Everything but the time is optional: files carry what the
/// device measured and nothing is invented.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub time: DateTime<Utc>,
    /// Degrees, WGS84.
    pub lat: Option<f64>,
    /// Degrees, WGS84.
    pub lon: Option<f64>,
    pub altitude_m: Option<f64>,
    /// Beats per minute.
    pub heart_rate: Option<f64>,
    /// Revolutions (cycling) or strides/strokes per minute, as the device writes it.
    pub cadence: Option<f64>,
    pub power_w: Option<f64>,
    pub speed_mps: Option<f64>,
    /// Cumulative distance from the start, as the device measured it.
    pub distance_m: Option<f64>,
    pub temperature_c: Option<f64>,
}

impl Sample {
    /// A sample with a time and nothing else.
    pub fn at(time: DateTime<Utc>) -> Sample {
        Sample {
            time,
            lat: None,
            lon: None,
            altitude_m: None,
            heart_rate: None,
            cadence: None,
            power_w: None,
            speed_mps: None,
            distance_m: None,
            temperature_c: None,
        }
    }

    /// The position when both coordinates are present and plausible.
    pub fn position(&self) -> Option<(f64, f64)> {
        match (self.lat, self.lon) {
            (Some(lat), Some(lon))
                if lat.is_finite()
                    && lon.is_finite()
                    && (-90.0..=90.0).contains(&lat)
                    && (-180.0..=180.0).contains(&lon) =>
            {
                Some((lat, lon))
            }
            _ => None,
        }
    }
}

/// Totals written by the device (FIT session/lap, TCX lap sums). `None` when absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub elapsed_time_s: Option<f64>,
    pub timer_time_s: Option<f64>,
    pub distance_m: Option<f64>,
    pub calories_kcal: Option<f64>,
    pub elevation_gain_m: Option<f64>,
    pub elevation_loss_m: Option<f64>,
    pub avg_speed_mps: Option<f64>,
    pub max_speed_mps: Option<f64>,
    pub avg_heart_rate: Option<f64>,
    pub max_heart_rate: Option<f64>,
    pub avg_cadence: Option<f64>,
    pub max_cadence: Option<f64>,
    pub avg_power_w: Option<f64>,
    pub max_power_w: Option<f64>,
}

impl Totals {
    /// Sums the additive totals of several parts (legs, laps); maxima take the max, averages
    /// are weighted by timer (or elapsed) time.
    pub fn combine<'a>(parts: impl IntoIterator<Item = &'a Totals>) -> Totals {
        let parts: Vec<&Totals> = parts.into_iter().collect();
        let sum = |f: fn(&Totals) -> Option<f64>| -> Option<f64> {
            parts
                .iter()
                .filter_map(|t| f(t))
                .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
        };
        let max = |f: fn(&Totals) -> Option<f64>| -> Option<f64> {
            parts
                .iter()
                .filter_map(|t| f(t))
                .fold(None, |acc: Option<f64>, v| {
                    Some(acc.map_or(v, |a| a.max(v)))
                })
        };
        let weighted = |f: fn(&Totals) -> Option<f64>| -> Option<f64> {
            let mut num = 0.0;
            let mut den = 0.0;
            for t in &parts {
                if let (Some(v), Some(w)) = (f(t), t.timer_time_s.or(t.elapsed_time_s)) {
                    num += v * w;
                    den += w;
                }
            }
            (den > 0.0).then(|| num / den)
        };
        let elapsed = sum(|t| t.elapsed_time_s);
        let timer = sum(|t| t.timer_time_s);
        let distance = sum(|t| t.distance_m);
        let avg_speed = match (distance, timer.or(elapsed)) {
            (Some(d), Some(t)) if t > 0.0 => Some(d / t),
            _ => weighted(|t| t.avg_speed_mps),
        };
        Totals {
            elapsed_time_s: elapsed,
            timer_time_s: timer,
            distance_m: distance,
            calories_kcal: sum(|t| t.calories_kcal),
            elevation_gain_m: sum(|t| t.elevation_gain_m),
            elevation_loss_m: sum(|t| t.elevation_loss_m),
            avg_speed_mps: avg_speed,
            max_speed_mps: max(|t| t.max_speed_mps),
            avg_heart_rate: weighted(|t| t.avg_heart_rate),
            max_heart_rate: max(|t| t.max_heart_rate),
            avg_cadence: weighted(|t| t.avg_cadence),
            max_cadence: max(|t| t.max_cadence),
            avg_power_w: weighted(|t| t.avg_power_w),
            max_power_w: max(|t| t.max_power_w),
        }
    }
}

/// A lap as the file recorded it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lap {
    pub start_time: DateTime<Utc>,
    pub elapsed_time_s: Option<f64>,
    pub timer_time_s: Option<f64>,
    pub distance_m: Option<f64>,
    pub totals: Totals,
}

/// One leg of a multisport activity (one FIT session, one TCX activity).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leg {
    pub sport: Sport,
    /// The sport as the file names it (e.g. FIT "cycling", TCX "Biking").
    pub sport_name: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    /// The leg's samples: `activity.samples[samples.clone()]`.
    pub samples: Range<usize>,
    pub laps: Vec<Lap>,
    pub totals: Totals,
}

/// Facts about the file itself, useful to explain what was read.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceInfo {
    /// FIT: how many FIT files were chained in the file.
    pub fit_files: usize,
    /// FIT: record messages (before dropping those without a timestamp).
    pub fit_records: usize,
    /// FIT: session messages.
    pub fit_sessions: usize,
    /// FIT: heart-rate messages merged into the records.
    pub fit_hr_messages: usize,
    /// GPX: `<trk>` count; TCX: `<Activity>` count.
    pub tracks: usize,
    /// GPX: `<trkseg>` count; TCX: `<Track>` count.
    pub segments: usize,
    /// GPX `<trkpt>` / TCX `<Trackpoint>` elements in the document.
    pub points_in_document: usize,
    /// Points dropped because they had no usable timestamp.
    pub points_without_time: usize,
    pub creator: Option<String>,
}

/// A workout read from a file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activity {
    pub format: Format,
    pub sport: Sport,
    /// The sport as the file names it; `"multisport"` when the file has several legs.
    pub sport_name: Option<String>,
    pub start_time: DateTime<Utc>,
    /// All samples, sorted by time.
    pub samples: Vec<Sample>,
    /// Indices of samples that start a new track segment after a gap (GPX `<trkseg>`/`<trk>`,
    /// TCX `<Track>`): no distance is counted across such a boundary.
    pub segment_starts: Vec<usize>,
    pub laps: Vec<Lap>,
    /// Multisport legs; empty for a single-sport activity.
    pub legs: Vec<Leg>,
    /// Totals the device wrote (for multisport: the sum of the legs).
    pub totals: Totals,
    pub source: SourceInfo,
}

impl Activity {
    pub fn is_multisport(&self) -> bool {
        self.legs.len() > 1
    }

    /// Time of the last sample (or start time when there are none).
    pub fn end_time(&self) -> DateTime<Utc> {
        self.samples.last().map_or(self.start_time, |s| s.time)
    }
}
