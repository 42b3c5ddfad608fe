//! SQL for gear, attachments and wear entries, and the one place wear changes: entries are
//! added and removed together with the totals they change, and thresholds are checked after.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use stride_events::{Envelope, training::ActivitySnapshot};
use stride_platform::outbox;
use uuid::Uuid;

use crate::{
    NAME,
    domain::{
        ComponentType, Kind,
        wear::{self, Entry, Totals, Wear},
    },
    events::GearWearThresholdReached,
};

/// The columns of [`GearRow`], with the distance of the last four weeks for the forecast.
pub const COLUMNS: &str = "id, owner_id, kind, component_type, name, brand, model, sports,
    purchase_date, initial_distance_m, initial_moving_time_s, notes, limit_m, bike_id,
    retired_at, wear_distance_m, wear_moving_time_s, wear_activities, created_at, updated_at,
    coalesce((SELECT sum(w.distance_m) FROM wear_entries w
              WHERE w.gear_id = gear.id AND w.start_time >= now() - interval '28 days'
                AND w.start_time <= now()), 0)::double precision AS recent_distance_m";

/// An item of gear as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GearRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub kind: String,
    pub component_type: Option<String>,
    pub name: String,
    pub brand: String,
    pub model: String,
    pub sports: Vec<String>,
    pub purchase_date: Option<NaiveDate>,
    pub initial_distance_m: f64,
    pub initial_moving_time_s: f64,
    pub notes: String,
    pub limit_m: Option<f64>,
    pub bike_id: Option<Uuid>,
    pub retired_at: Option<DateTime<Utc>>,
    pub wear_distance_m: f64,
    pub wear_moving_time_s: f64,
    pub wear_activities: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub recent_distance_m: f64,
}

impl GearRow {
    /// The kind (rows are only written with valid kinds).
    pub fn kind(&self) -> Kind {
        Kind::from_stored(&self.kind).unwrap_or(Kind::Other)
    }

    /// The component type, for components.
    pub fn component_type(&self) -> Option<ComponentType> {
        self.component_type
            .as_deref()
            .and_then(ComponentType::from_stored)
    }

    /// The limit in force: the item's own or its kind's default.
    pub fn effective_limit_m(&self) -> Option<f64> {
        self.limit_m
            .or_else(|| wear::default_limit_m(self.kind(), self.component_type()))
    }

    /// The totals of its wear entries, as kept incrementally.
    pub fn totals(&self) -> Totals {
        Totals {
            distance_m: self.wear_distance_m,
            moving_time_s: self.wear_moving_time_s,
            activities: self.wear_activities,
        }
    }

    /// Its wear today.
    pub fn wear(&self, today: NaiveDate) -> Wear {
        wear::wear(
            Entry {
                distance_m: self.initial_distance_m,
                moving_time_s: self.initial_moving_time_s,
            },
            self.totals(),
            self.effective_limit_m(),
            self.recent_distance_m,
            self.retired_at.is_some(),
            today,
        )
    }
}

/// One item of gear, whoever owns it.
pub async fn gear(connection: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<GearRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM gear WHERE id = $1"))
        .bind(id)
        .fetch_optional(connection)
        .await
}

/// One item of `owner`'s gear.
pub async fn owned_gear(
    connection: &mut PgConnection,
    owner: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<GearRow>> {
    Ok(gear(connection, id)
        .await?
        .filter(|row| row.owner_id == owner))
}

async fn add_entry(
    connection: &mut PgConnection,
    gear_id: Uuid,
    activity: &ActivityRow,
    start_time: DateTime<Utc>,
) -> sqlx::Result<()> {
    let inserted = sqlx::query(
        "INSERT INTO wear_entries (gear_id, activity_id, owner_id, distance_m, moving_time_s,
            start_time)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(gear_id)
    .bind(activity.activity_id)
    .bind(activity.owner_id)
    .bind(activity.distance_m)
    .bind(activity.moving_time_s)
    .bind(start_time)
    .execute(&mut *connection)
    .await?
    .rows_affected();
    if inserted == 1 {
        sqlx::query(
            "UPDATE gear SET wear_distance_m = wear_distance_m + $2,
                wear_moving_time_s = wear_moving_time_s + $3,
                wear_activities = wear_activities + 1
             WHERE id = $1",
        )
        .bind(gear_id)
        .bind(activity.distance_m)
        .bind(activity.moving_time_s)
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

/// Takes removed entries off their items' totals; returns the items.
async fn subtract(
    connection: &mut PgConnection,
    removed: Vec<(Uuid, f64, f64)>,
) -> sqlx::Result<Vec<Uuid>> {
    let mut gear_ids = Vec::with_capacity(removed.len());
    for (gear_id, distance_m, moving_time_s) in removed {
        sqlx::query(
            "UPDATE gear SET wear_distance_m = wear_distance_m - $2,
                wear_moving_time_s = wear_moving_time_s - $3,
                wear_activities = wear_activities - 1
             WHERE id = $1",
        )
        .bind(gear_id)
        .bind(distance_m)
        .bind(moving_time_s)
        .execute(&mut *connection)
        .await?;
        gear_ids.push(gear_id);
    }
    Ok(gear_ids)
}

async fn remove_entries_of_activity(
    connection: &mut PgConnection,
    activity: Uuid,
) -> sqlx::Result<Vec<Uuid>> {
    let removed: Vec<(Uuid, f64, f64)> = sqlx::query_as(
        "DELETE FROM wear_entries WHERE activity_id = $1
         RETURNING gear_id, distance_m, moving_time_s",
    )
    .bind(activity)
    .fetch_all(&mut *connection)
    .await?;
    subtract(connection, removed).await
}

async fn remove_entries_of_gear(connection: &mut PgConnection, gear_id: Uuid) -> sqlx::Result<()> {
    let removed: Vec<(Uuid, f64, f64)> = sqlx::query_as(
        "DELETE FROM wear_entries WHERE gear_id = $1
         RETURNING gear_id, distance_m, moving_time_s",
    )
    .bind(gear_id)
    .fetch_all(&mut *connection)
    .await?;
    subtract(connection, removed).await?;
    Ok(())
}

/// A finished workout as inventory keeps it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActivityRow {
    pub activity_id: Uuid,
    pub owner_id: Uuid,
    pub resolved_gear_id: Option<Uuid>,
    pub start_time: Option<DateTime<Utc>>,
    pub distance_m: f64,
    pub moving_time_s: f64,
}

/// The gear a workout wears directly: the one it names if the owner has it, else the sport's
/// default gear.
async fn resolve_gear(
    connection: &mut PgConnection,
    activity: &ActivitySnapshot,
) -> sqlx::Result<Option<Uuid>> {
    match activity.gear_id {
        Some(named) => {
            sqlx::query_scalar("SELECT id FROM gear WHERE id = $1 AND owner_id = $2")
                .bind(named)
                .bind(activity.owner_id)
                .fetch_optional(connection)
                .await
        }
        None => {
            sqlx::query_scalar(
                "SELECT d.gear_id FROM default_gear d JOIN gear g ON g.id = d.gear_id
                 WHERE d.owner_id = $1 AND d.sport = $2 AND g.retired_at IS NULL",
            )
            .bind(activity.owner_id)
            .bind(&activity.sport)
            .fetch_optional(connection)
            .await
        }
    }
}

/// Whether inventory has seen this workout (finished, updated or deleted).
pub async fn known_activity(connection: &mut PgConnection, activity: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM activities WHERE activity_id = $1)")
        .bind(activity)
        .fetch_one(connection)
        .await
}

/// Whether this workout is known to be deleted.
pub async fn deleted_activity(connection: &mut PgConnection, activity: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM activities WHERE activity_id = $1 AND deleted)",
    )
    .bind(activity)
    .fetch_one(connection)
    .await
}

/// Makes the wear of a finished workout what `activity` says now: its previous entries are
/// taken back and new ones added to its gear and, for a bike, every component on it then.
pub async fn apply_activity(
    connection: &mut PgConnection,
    activity: &ActivitySnapshot,
) -> anyhow::Result<()> {
    let mut affected: BTreeSet<Uuid> = remove_entries_of_activity(connection, activity.activity_id)
        .await?
        .into_iter()
        .collect();
    let resolved = resolve_gear(connection, activity).await?;
    let summary = &activity.summary;
    let row: ActivityRow = sqlx::query_as(
        "INSERT INTO activities (activity_id, owner_id, sport, named_gear_id, resolved_gear_id,
            start_time, distance_m, moving_time_s)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (activity_id) DO UPDATE SET sport = $3, named_gear_id = $4,
            resolved_gear_id = $5, start_time = $6, distance_m = $7, moving_time_s = $8
         RETURNING activity_id, owner_id, resolved_gear_id, start_time, distance_m, moving_time_s",
    )
    .bind(activity.activity_id)
    .bind(activity.owner_id)
    .bind(&activity.sport)
    .bind(activity.gear_id)
    .bind(resolved)
    .bind(activity.start_time)
    .bind(summary.distance_m.unwrap_or(0.0).max(0.0))
    .bind(
        summary
            .moving_time_s
            .or(summary.elapsed_time_s)
            .unwrap_or(0.0)
            .max(0.0),
    )
    .fetch_one(&mut *connection)
    .await?;
    if let (Some(gear_id), Some(start)) = (row.resolved_gear_id, row.start_time) {
        add_entry(connection, gear_id, &row, start).await?;
        affected.insert(gear_id);
        let components: Vec<Uuid> = sqlx::query_scalar(
            "SELECT a.component_id FROM attachments a JOIN gear c ON c.id = a.component_id
             WHERE a.bike_id = $1 AND c.owner_id = $2 AND a.attached_at <= $3
               AND (a.detached_at IS NULL OR a.detached_at > $3)",
        )
        .bind(gear_id)
        .bind(row.owner_id)
        .bind(start)
        .fetch_all(&mut *connection)
        .await?;
        for component in components {
            add_entry(connection, component, &row, start).await?;
            affected.insert(component);
        }
    }
    check_thresholds(connection, affected).await
}

/// Takes back a deleted workout's wear and remembers it is deleted.
pub async fn delete_activity(
    connection: &mut PgConnection,
    activity: &ActivitySnapshot,
) -> anyhow::Result<()> {
    remove_entries_of_activity(connection, activity.activity_id).await?;
    sqlx::query(
        "INSERT INTO activities (activity_id, owner_id, sport, start_time, distance_m,
            moving_time_s, deleted)
         VALUES ($1, $2, $3, $4, 0, 0, true)
         ON CONFLICT (activity_id) DO UPDATE SET deleted = true",
    )
    .bind(activity.activity_id)
    .bind(activity.owner_id)
    .bind(&activity.sport)
    .bind(activity.start_time)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Rebuilds a component's wear entries from the workouts it was on: those that wore it
/// directly and the rides of the bikes it was attached to at the time.
pub async fn rederive_component(
    connection: &mut PgConnection,
    component: Uuid,
    owner: Uuid,
) -> anyhow::Result<()> {
    remove_entries_of_gear(connection, component).await?;
    let activities: Vec<ActivityRow> = sqlx::query_as(
        "SELECT act.activity_id, act.owner_id, act.resolved_gear_id, act.start_time,
            act.distance_m, act.moving_time_s
         FROM activities act
         WHERE act.owner_id = $2 AND NOT act.deleted AND act.start_time IS NOT NULL
           AND (act.resolved_gear_id = $1 OR EXISTS (
                SELECT 1 FROM attachments a
                WHERE a.component_id = $1 AND a.bike_id = act.resolved_gear_id
                  AND a.attached_at <= act.start_time
                  AND (a.detached_at IS NULL OR a.detached_at > act.start_time)))",
    )
    .bind(component)
    .bind(owner)
    .fetch_all(&mut *connection)
    .await?;
    for activity in &activities {
        if let Some(start) = activity.start_time {
            add_entry(connection, component, activity, start).await?;
        }
    }
    check_thresholds(connection, [component]).await
}

/// Recomputes an item's totals from its wear entries (what the incremental path must equal).
pub async fn recomputed_totals(
    connection: &mut PgConnection,
    gear_id: Uuid,
) -> sqlx::Result<Totals> {
    let entries: Vec<(f64, f64)> =
        sqlx::query_as("SELECT distance_m, moving_time_s FROM wear_entries WHERE gear_id = $1")
            .bind(gear_id)
            .fetch_all(connection)
            .await?;
    Ok(Totals::from_entries(entries.into_iter().map(
        |(distance_m, moving_time_s)| Entry {
            distance_m,
            moving_time_s,
        },
    )))
}

/// Opens an alert, and publishes `inventory.gear_wear_threshold_reached.v1`, for every
/// threshold an item in use has reached for the first time.
pub async fn check_thresholds(
    connection: &mut PgConnection,
    gear_ids: impl IntoIterator<Item = Uuid>,
) -> anyhow::Result<()> {
    for gear_id in gear_ids {
        let Some(row) = gear(connection, gear_id).await? else {
            continue;
        };
        if row.retired_at.is_some() {
            continue;
        }
        let limit_m = row.effective_limit_m();
        let distance_m = row.initial_distance_m + row.wear_distance_m;
        for threshold in wear::reached_thresholds(distance_m, limit_m) {
            let Some(limit_m) = limit_m else { continue };
            let alert_id = Uuid::now_v7();
            let opened = sqlx::query(
                "INSERT INTO wear_alerts (id, gear_id, owner_id, threshold_percent, distance_m,
                    limit_m)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (gear_id, threshold_percent) DO NOTHING",
            )
            .bind(alert_id)
            .bind(row.id)
            .bind(row.owner_id)
            .bind(threshold)
            .bind(distance_m)
            .bind(limit_m)
            .execute(&mut *connection)
            .await?
            .rows_affected()
                == 1;
            if !opened {
                continue;
            }
            let event = Envelope::new(
                NAME,
                row.id.to_string(),
                &GearWearThresholdReached {
                    alert_id,
                    gear_id: row.id,
                    owner_id: row.owner_id,
                    gear_name: row.name.clone(),
                    kind: row.kind.clone(),
                    component_type: row.component_type.clone(),
                    threshold_percent: threshold,
                    distance_m,
                    limit_m,
                },
            )?;
            outbox::enqueue(connection, &event).await?;
            tracing::info!(gear_id = %row.id, threshold, "wear threshold reached");
        }
    }
    Ok(())
}

/// Erases everything of a deleted user.
pub async fn erase_user(connection: &mut PgConnection, user: Uuid) -> sqlx::Result<()> {
    for table in [
        "wear_entries",
        "wear_alerts",
        "default_gear",
        "activities",
        "gear",
    ] {
        sqlx::query(&format!("DELETE FROM {table} WHERE owner_id = $1"))
            .bind(user)
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}
