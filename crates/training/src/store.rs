//! SQL for activities and training settings.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, types::Json};
use stride_events::training::{ActivitySnapshot, ActivitySummary};
use uuid::Uuid;

/// An activity as stored.
#[derive(Debug, Clone, FromRow)]
pub struct ActivityRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub sport: String,
    pub name: String,
    pub description: String,
    pub status: String,
    pub visibility: String,
    pub source: String,
    pub gear_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub commute: bool,
    pub trainer: bool,
    pub plan: Option<serde_json::Value>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub paused_at: Option<DateTime<Utc>>,
    pub paused_s: f64,
    pub summary: Json<ActivitySummary>,
    pub laps: serde_json::Value,
    pub best_efforts: serde_json::Value,
    pub splits: serde_json::Value,
    pub legs: serde_json::Value,
    pub external_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Every column, in [`ActivityRow`] order.
pub const COLUMNS: &str = "id, owner_id, sport, name, description, status, visibility, source, \
    gear_id, device_id, commute, trainer, plan, start_time, end_time, paused_at, paused_s, \
    summary, laps, best_efforts, splits, legs, external_id, created_at, updated_at";

impl ActivityRow {
    /// What events carry about this activity.
    pub fn snapshot(&self) -> ActivitySnapshot {
        ActivitySnapshot {
            activity_id: self.id,
            owner_id: self.owner_id,
            sport: self.sport.clone(),
            visibility: self.visibility.clone(),
            source: self.source.clone(),
            gear_id: self.gear_id,
            start_time: self.start_time,
            end_time: self.end_time,
            commute: self.commute,
            trainer: self.trainer,
            summary: self.summary.0.clone(),
        }
    }
}

/// An activity as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Activity {
    /// Activity id (UUIDv7).
    pub id: Uuid,
    /// Its owner.
    pub owner_id: Uuid,
    /// `run`, `ride`, ...
    pub sport: String,
    /// Its name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// `planned`, `active`, `paused`, `finished` or `discarded`.
    pub status: String,
    /// `public`, `followers` or `private`.
    pub visibility: String,
    /// `live`, `upload` or `manual`.
    pub source: String,
    /// The gear used.
    pub gear_id: Option<Uuid>,
    /// The recording device.
    pub device_id: Option<Uuid>,
    /// A commute.
    pub commute: bool,
    /// On a trainer or treadmill.
    pub trainer: bool,
    /// The free-form plan given at creation (intervals, targets, ...).
    #[schema(value_type = Option<Object>)]
    pub plan: Option<serde_json::Value>,
    /// When it started.
    pub start_time: Option<DateTime<Utc>>,
    /// When it ended.
    pub end_time: Option<DateTime<Utc>>,
    /// Totals; absent values are null.
    pub summary: ActivitySummary,
    /// Laps from the device or file.
    #[schema(value_type = Vec<Object>)]
    pub laps: serde_json::Value,
    /// Best efforts (fastest distances, best powers).
    #[schema(value_type = Vec<Object>)]
    pub best_efforts: serde_json::Value,
    /// Automatic splits per kilometre.
    #[schema(value_type = Vec<Object>)]
    pub splits: serde_json::Value,
    /// Multisport legs, each with its sport and totals.
    #[schema(value_type = Vec<Object>)]
    pub legs: serde_json::Value,
    /// The uploader's own id for the file, if given.
    pub external_id: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<ActivityRow> for Activity {
    fn from(row: ActivityRow) -> Self {
        Self {
            id: row.id,
            owner_id: row.owner_id,
            sport: row.sport,
            name: row.name,
            description: row.description,
            status: row.status,
            visibility: row.visibility,
            source: row.source,
            gear_id: row.gear_id,
            device_id: row.device_id,
            commute: row.commute,
            trainer: row.trainer,
            plan: row.plan,
            start_time: row.start_time,
            end_time: row.end_time,
            summary: row.summary.0,
            laps: row.laps,
            best_efforts: row.best_efforts,
            splits: row.splits,
            legs: row.legs,
            external_id: row.external_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The activity with this id.
pub async fn activity(
    connection: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<ActivityRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM activities WHERE id = $1"))
        .bind(id)
        .fetch_optional(connection)
        .await
}

/// The activity with this id, locked for a change.
pub async fn activity_for_update(
    connection: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<ActivityRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM activities WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(connection)
    .await
}
