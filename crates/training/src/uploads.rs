//! Turning uploaded files into activities.
//!
//! `POST /v1/uploads` stores the file with the upload (`processing`) and wakes the worker;
//! the worker, on any replica, takes waiting uploads with `SKIP LOCKED`, reads the file with
//! the `formats` crate, refuses duplicates (the same file, or another file of a workout that
//! is already there), stores the samples in telemetry, then in one transaction creates the
//! finished activity, marks the upload `ready` and publishes `training.activity_finished.v1`.
//! A file that cannot be read ends as `error` with the reader's reason.

use std::{sync::Arc, time::Duration};

use chrono::Duration as Span;
use sqlx::PgConnection;
use stride_events::{
    Envelope,
    training::{ActivityFinished, ActivitySummary},
};
use stride_formats::{Athlete, FormatError, Limits, analyze};
use stride_platform::outbox;
use stride_proto::telemetry::v1::{ImportRequest, Sample};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    NAME, Training,
    domain::Sport,
    samples::physiology,
    store::{ActivityRow, COLUMNS},
};

/// Largest file accepted.
pub const MAX_UPLOAD_BYTES: usize = 50 * 1024 * 1024;

/// Attempts at storing samples before an upload is given up.
const MAX_ATTEMPTS: i32 = 10;

/// Two activities of one owner starting this close together are the same workout.
const SAME_WORKOUT_SECONDS: i64 = 60;

/// Wakes the upload worker.
#[derive(Debug, Default)]
pub struct UploadQueue {
    notify: Notify,
}

impl UploadQueue {
    /// A new upload is waiting.
    pub fn wake(&self) {
        self.notify.notify_one();
    }
}

#[derive(sqlx::FromRow)]
struct Waiting {
    id: Uuid,
    owner_id: Uuid,
    file_name: String,
    file_sha256: Vec<u8>,
    file: Option<Vec<u8>>,
    name: Option<String>,
    sport: Option<String>,
    external_id: Option<String>,
    attempts: i32,
}

enum Outcome {
    Ready(Uuid),
    Duplicate(Uuid),
    Refused(String),
    Retry(String),
}

fn to_proto(sample: &stride_formats::Sample) -> Sample {
    Sample {
        time_ms: sample.time.timestamp_millis(),
        lat: sample.lat,
        lon: sample.lon,
        altitude_m: sample.altitude_m,
        heart_rate: sample.heart_rate,
        cadence: sample.cadence,
        power_w: sample.power_w,
        speed_mps: sample.speed_mps,
        distance_m: sample.distance_m,
        temperature_c: sample.temperature_c,
    }
}

fn sport_of(activity: &stride_formats::Activity) -> Sport {
    if activity.is_multisport() {
        return Sport::Multisport;
    }
    Sport::from_stored(activity.sport.as_str()).unwrap_or(Sport::Other)
}

fn describe(error: &FormatError) -> String {
    format!("the file could not be read: {error}")
}

/// Processes one waiting upload, if any; false when none was waiting.
pub async fn process_next(training: &Training) -> anyhow::Result<bool> {
    let mut claim = training.db.begin().await?;
    let waiting: Option<Waiting> = sqlx::query_as(
        "SELECT id, owner_id, file_name, file_sha256, file, name, sport, external_id, attempts
         FROM uploads WHERE status = 'processing'
         ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut *claim)
    .await?;
    let Some(upload) = waiting else {
        return Ok(false);
    };
    let outcome = process(training, &upload, &mut claim).await;
    let (status, activity_id, error) = match &outcome {
        Outcome::Ready(id) => ("ready", Some(*id), None),
        Outcome::Duplicate(id) => (
            "error",
            Some(*id),
            Some(format!("duplicate of activity {id}")),
        ),
        Outcome::Refused(reason) => ("error", None, Some(reason.clone())),
        Outcome::Retry(reason) if upload.attempts + 1 >= MAX_ATTEMPTS => (
            "error",
            None,
            Some(format!(
                "the workout could not be stored ({reason}); upload it again later"
            )),
        ),
        Outcome::Retry(_) => ("processing", None, None),
    };
    if let Outcome::Retry(reason) = &outcome {
        tracing::warn!(upload_id = %upload.id, %reason, "upload will be retried");
    }
    // Ready uploads were marked by `create_activity`, in this same transaction.
    if !matches!(outcome, Outcome::Ready(_)) {
        sqlx::query(
            "UPDATE uploads SET status = $2, activity_id = $3, error = $4,
                attempts = attempts + 1, updated_at = now(),
                file = CASE WHEN $2 = 'processing' THEN file END
             WHERE id = $1",
        )
        .bind(upload.id)
        .bind(status)
        .bind(activity_id)
        .bind(error)
        .execute(&mut *claim)
        .await?;
    }
    claim.commit().await?;
    if matches!(outcome, Outcome::Retry(_)) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(true)
}

async fn process(training: &Training, upload: &Waiting, claim: &mut PgConnection) -> Outcome {
    let Some(bytes) = upload.file.clone() else {
        return Outcome::Refused("the file is gone; upload it again".into());
    };
    // An identical file of this owner that became an activity is the same workout.
    let same_file: Option<Uuid> = sqlx::query_scalar(
        "SELECT activity_id FROM uploads
         WHERE owner_id = $1 AND file_sha256 = $2 AND status = 'ready' AND id <> $3
           AND activity_id IS NOT NULL
         LIMIT 1",
    )
    .bind(upload.owner_id)
    .bind(&upload.file_sha256)
    .bind(upload.id)
    .fetch_optional(&training.db)
    .await
    .ok()
    .flatten();
    if let Some(existing) = same_file {
        return Outcome::Duplicate(existing);
    }
    let parsed = tokio::task::spawn_blocking(move || {
        stride_formats::read_with_limits(&bytes, None, &Limits::default())
    })
    .await;
    let activity = match parsed {
        Ok(Ok(activity)) => activity,
        Ok(Err(error)) => return Outcome::Refused(describe(&error)),
        Err(_) => return Outcome::Refused("the file could not be read".into()),
    };
    if activity.samples.is_empty() {
        return Outcome::Refused("the file holds no timed samples".into());
    }
    let start = activity.start_time;
    let same_workout: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM activities
         WHERE owner_id = $1 AND status = 'finished'
           AND start_time BETWEEN $2 AND $3
         LIMIT 1",
    )
    .bind(upload.owner_id)
    .bind(start - Span::seconds(SAME_WORKOUT_SECONDS))
    .bind(start + Span::seconds(SAME_WORKOUT_SECONDS))
    .fetch_optional(&training.db)
    .await
    .ok()
    .flatten();
    if let Some(existing) = same_workout {
        return Outcome::Duplicate(existing);
    }
    let physiology = physiology(training, upload.owner_id).await;
    let athlete = Athlete {
        max_heart_rate: physiology.max_heart_rate,
        resting_heart_rate: physiology.resting_heart_rate,
        weight_kg: physiology.weight_kg,
        ..Athlete::default()
    };
    let analysed = Arc::new(activity);
    let for_analysis = analysed.clone();
    let Ok(analysis) = tokio::task::spawn_blocking(move || analyze(&for_analysis, &athlete)).await
    else {
        return Outcome::Refused("the workout could not be summarised".into());
    };
    let activity_id = Uuid::now_v7();
    let mut streams = training.streams.clone();
    let imported = streams
        .import(ImportRequest {
            activity_id: activity_id.to_string(),
            owner_id: upload.owner_id.to_string(),
            samples: analysed.samples.iter().map(to_proto).collect(),
        })
        .await;
    match imported {
        Ok(_) => {}
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            tracing::warn!("no telemetry service: the upload's samples are not stored");
        }
        Err(status) => return Outcome::Retry(format!("telemetry: {status}")),
    }
    match create_activity(training, claim, upload, &analysed, &analysis, activity_id).await {
        Ok(()) => Outcome::Ready(activity_id),
        Err(error) => Outcome::Retry(format!("{error:#}")),
    }
}

/// Creates the activity, marks the upload ready and publishes the event, all inside the
/// transaction that claimed the upload: either all of it happens or none.
async fn create_activity(
    training: &Training,
    tx: &mut PgConnection,
    upload: &Waiting,
    activity: &stride_formats::Activity,
    analysis: &stride_formats::Analysis,
    activity_id: Uuid,
) -> anyhow::Result<()> {
    let sport = upload
        .sport
        .as_deref()
        .and_then(Sport::from_stored)
        .unwrap_or_else(|| sport_of(activity));
    let summary: ActivitySummary =
        serde_json::from_value(serde_json::to_value(&analysis.summary)?)?;
    let elapsed = summary.elapsed_time_s.unwrap_or_default();
    let end = activity.start_time + Span::milliseconds((elapsed * 1000.0) as i64);
    let end = end.max(activity.end_time());
    let name = upload.name.clone().unwrap_or_else(|| {
        let stem = upload
            .file_name
            .rsplit('/')
            .next()
            .unwrap_or(&upload.file_name);
        let stem = stem.split('.').next().unwrap_or(stem).trim();
        if stem.is_empty() {
            sport.title().to_owned()
        } else {
            stem.chars().take(255).collect()
        }
    });
    let visibility = crate::http::owner_visibility(training, upload.owner_id).await;
    // A savepoint: if anything below fails, none of it stays in the claiming transaction.
    let mut tx = sqlx::Connection::begin(&mut *tx).await?;
    let row: ActivityRow = sqlx::query_as(&format!(
        "INSERT INTO activities (id, owner_id, sport, name, status, visibility, source,
            start_time, end_time, summary, laps, best_efforts, splits, legs, external_id)
         VALUES ($1, $2, $3, $4, 'finished', $5, 'upload', $6, $7, $8, $9, $10, $11, $12, $13)
         RETURNING {COLUMNS}"
    ))
    .bind(activity_id)
    .bind(upload.owner_id)
    .bind(sport.as_str())
    .bind(&name)
    .bind(visibility.as_str())
    .bind(activity.start_time)
    .bind(end)
    .bind(sqlx::types::Json(&summary))
    .bind(serde_json::to_value(&analysis.laps)?)
    .bind(serde_json::to_value(&analysis.best_efforts)?)
    .bind(serde_json::to_value(&analysis.splits)?)
    .bind(serde_json::to_value(&analysis.legs)?)
    .bind(&upload.external_id)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE uploads SET status = 'ready', activity_id = $2, file = NULL,
            attempts = attempts + 1, updated_at = now()
         WHERE id = $1",
    )
    .bind(upload.id)
    .bind(activity_id)
    .execute(&mut *tx)
    .await?;
    let event = Envelope::new(
        NAME,
        activity_id.to_string(),
        &ActivityFinished {
            activity: row.snapshot(),
        },
    )?;
    outbox::enqueue(&mut tx, &event).await?;
    tx.commit().await?;
    tracing::info!(%activity_id, upload_id = %upload.id, "upload imported");
    Ok(())
}

/// Processes uploads until `shutdown`, woken by new uploads and by a timer (for uploads
/// that arrived at another replica or are retried).
pub async fn run(
    training: Training,
    queue: Arc<UploadQueue>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            match process_next(&training).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "upload worker failed; retrying"
                    );
                    break;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = queue.notify.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
