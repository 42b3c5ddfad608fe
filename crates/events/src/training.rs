//! Events of the training service (`training.*`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::EventData;

/// The totals of a workout. Absent values are `None` (JSON `null`), never zero.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivitySummary {
    /// Start to end, pauses included, seconds.
    pub elapsed_time_s: Option<f64>,
    /// Time in motion, seconds.
    pub moving_time_s: Option<f64>,
    /// Metres.
    pub distance_m: Option<f64>,
    /// Metres climbed.
    pub elevation_gain_m: Option<f64>,
    /// Metres descended.
    pub elevation_loss_m: Option<f64>,
    /// Metres per second, over moving time.
    pub avg_speed_mps: Option<f64>,
    /// Metres per second.
    pub max_speed_mps: Option<f64>,
    /// Beats per minute.
    pub avg_heart_rate: Option<f64>,
    /// Beats per minute.
    pub max_heart_rate: Option<f64>,
    /// Seconds in each of the five heart-rate zones.
    pub hr_zone_s: Option<[f64; 5]>,
    /// Revolutions or steps per minute.
    pub avg_cadence: Option<f64>,
    /// Revolutions or steps per minute.
    pub max_cadence: Option<f64>,
    /// Watts.
    pub avg_power_w: Option<f64>,
    /// Watts.
    pub max_power_w: Option<f64>,
    /// Watts (30-second rolling average, fourth-power mean).
    pub normalized_power_w: Option<f64>,
    /// Kilocalories.
    pub calories_kcal: Option<f64>,
}

/// What consumers need to know about a workout, in every training event that carries one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivitySnapshot {
    /// The activity.
    pub activity_id: Uuid,
    /// Its owner.
    pub owner_id: Uuid,
    /// `run`, `ride`, ...
    pub sport: String,
    /// `public`, `followers` or `private`.
    pub visibility: String,
    /// `live`, `upload` or `manual`.
    pub source: String,
    /// The gear used, if any.
    pub gear_id: Option<Uuid>,
    /// When it started.
    pub start_time: Option<DateTime<Utc>>,
    /// When it ended (finished activities).
    pub end_time: Option<DateTime<Utc>>,
    /// A commute.
    pub commute: bool,
    /// On a trainer or treadmill.
    pub trainer: bool,
    /// The totals (finished activities).
    pub summary: ActivitySummary,
}

/// A live workout started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityStarted {
    /// The activity as it is now.
    pub activity: ActivitySnapshot,
    /// The device recording it, if any.
    pub device_id: Option<Uuid>,
}

impl EventData for ActivityStarted {
    const TYPE: &'static str = "training.activity_started.v1";
}

/// The TrainingFinished event: a workout is finished (live, uploaded or entered by hand), with
/// everything gamification, inventory and social need to act without calling back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityFinished {
    /// The activity as it is now.
    pub activity: ActivitySnapshot,
}

impl EventData for ActivityFinished {
    const TYPE: &'static str = "training.activity_finished.v1";
}

/// A finished activity changed in a way consumers derive things from (sport, gear,
/// visibility, times): `previous` is what they saw before, `activity` what is true now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityUpdated {
    /// The state before the change.
    pub previous: ActivitySnapshot,
    /// The state after it.
    pub activity: ActivitySnapshot,
}

impl EventData for ActivityUpdated {
    const TYPE: &'static str = "training.activity_updated.v1";
}

/// An activity was deleted; consumers take back what they derived from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityDeleted {
    /// The activity as it was.
    pub activity: ActivitySnapshot,
    /// Whether it had been finished (only finished ones earned anything).
    pub was_finished: bool,
}

impl EventData for ActivityDeleted {
    const TYPE: &'static str = "training.activity_deleted.v1";
}
