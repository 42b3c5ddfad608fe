//! `/v1/activities`: creating, recording, listing, changing and deleting workouts.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Duration, Timelike, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use stride_events::{
    Envelope, EventData,
    training::{
        ActivityDeleted, ActivityFinished, ActivityStarted, ActivitySummary, ActivityUpdated,
    },
};
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, Problem},
    http::{Json, PageParams, Path, Query, double_option, encode_cursor, idempotency_key},
    idempotency::{self, Requests},
    outbox,
};
use stride_proto::{identity::v1::GetProfilesRequest, inventory::v1::GetGearRequest};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    NAME, Training,
    domain::{
        Action, Invalid, Source, Sport, Status, Visibility, check_summary, moving_time_s,
        transition,
    },
    store::{self, Activity, ActivityRow, COLUMNS},
};

pub fn router() -> OpenApiRouter<Training> {
    OpenApiRouter::new()
        .routes(routes!(create_activity, list_activities))
        .routes(routes!(get_activity, patch_activity, delete_activity))
        .routes(routes!(start))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(finish))
        .routes(routes!(discard))
}

/// Largest free-form plan document.
const MAX_PLAN_BYTES: usize = 32 * 1024;

async fn emit<T: EventData>(
    connection: &mut PgConnection,
    activity_id: Uuid,
    data: &T,
) -> Result<(), ApiError> {
    let event = Envelope::new(NAME, activity_id.to_string(), data).map_err(ApiError::internal)?;
    outbox::enqueue(connection, &event).await?;
    Ok(())
}

/// A workout to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateActivity {
    /// The sport.
    pub sport: Sport,
    /// `planned` (default), `active` (recording starts now) or `finished` (a manual workout:
    /// `start_time` and `summary.elapsed_time_s` are required).
    #[serde(default)]
    pub status: Option<Status>,
    /// A name; by default "Morning Run" and the like, in the owner's time zone.
    pub name: Option<String>,
    /// Free text, at most 10,000 characters.
    pub description: Option<String>,
    /// Default: the owner's default visibility.
    pub visibility: Option<Visibility>,
    /// The gear used.
    pub gear_id: Option<Uuid>,
    /// The recording device.
    pub device_id: Option<Uuid>,
    /// When it started (required for manual workouts; default now for active ones).
    pub start_time: Option<DateTime<Utc>>,
    /// When it ended (manual workouts; default start + elapsed time).
    pub end_time: Option<DateTime<Utc>>,
    /// Totals a person knows (manual workouts).
    pub summary: Option<ActivitySummary>,
    /// Free-form plan, e.g. intervals (planned or active workouts).
    #[schema(value_type = Option<Object>)]
    pub plan: Option<serde_json::Value>,
    /// A commute.
    #[serde(default)]
    pub commute: bool,
    /// On a trainer or treadmill.
    #[serde(default)]
    pub trainer: bool,
}

fn check_text(name: Option<String>, field: &str, max: usize) -> Result<Option<String>, Invalid> {
    match name.map(|text| text.trim().to_owned()) {
        Some(text) if text.chars().count() > max => {
            Err(Invalid(format!("{field} is limited to {max} characters")))
        }
        Some(text) if field == "name" && text.is_empty() => {
            Err(Invalid("name cannot be empty".into()))
        }
        other => Ok(other),
    }
}

fn default_name(sport: Sport, start: DateTime<Utc>, time_zone: Option<&str>) -> String {
    let hour = time_zone
        .and_then(|zone| zone.parse::<chrono_tz::Tz>().ok())
        .map_or(start.hour(), |zone| start.with_timezone(&zone).hour());
    let part = match hour {
        5..=10 => "Morning",
        11..=13 => "Lunch",
        14..=17 => "Afternoon",
        18..=21 => "Evening",
        _ => "Night",
    };
    format!("{part} {}", sport.title())
}

struct Owner {
    visibility: Visibility,
    time_zone: Option<String>,
}

async fn owner_profile(training: &Training, owner: Uuid) -> Owner {
    let mut identity = training.identity.clone();
    match identity
        .get_profiles(GetProfilesRequest {
            user_ids: vec![owner.to_string()],
        })
        .await
    {
        Ok(response) => match response.into_inner().profiles.into_iter().next() {
            Some(profile) => Owner {
                visibility: Visibility::from_stored(&profile.default_visibility),
                time_zone: Some(profile.time_zone),
            },
            None => Owner {
                visibility: Visibility::Private,
                time_zone: None,
            },
        },
        Err(status) => {
            // Fail safe: without the owner's preference, the workout is private.
            tracing::warn!(%status, "cannot read the owner's profile; defaulting to private");
            Owner {
                visibility: Visibility::Private,
                time_zone: None,
            }
        }
    }
}

/// Checks that `gear_id` is a gear item of `owner`. Installations without the inventory
/// service cannot check and accept it.
async fn check_gear(
    training: &Training,
    owner: Uuid,
    gear_id: Option<Uuid>,
) -> Result<(), ApiError> {
    let Some(gear_id) = gear_id else {
        return Ok(());
    };
    let mut gear = training.gear.clone();
    match gear
        .get_gear(GetGearRequest {
            gear_id: gear_id.to_string(),
        })
        .await
    {
        Ok(info) if info.get_ref().owner_id == owner.to_string() => Ok(()),
        Ok(_) => Err(ApiError::validation("gear_id is not a gear of yours")),
        Err(status) if status.code() == tonic::Code::NotFound => {
            Err(ApiError::validation("gear_id is not a gear of yours"))
        }
        Err(status) if status.code() == tonic::Code::Unimplemented => Ok(()),
        Err(status) => Err(ApiError::unavailable(
            anyhow::anyhow!("inventory: {status}"),
            2,
        )),
    }
}

/// The visibility the owner gives new activities (private when unknown).
pub(crate) async fn owner_visibility(training: &Training, owner: Uuid) -> Visibility {
    owner_profile(training, owner).await.visibility
}

/// A validated creation.
struct NewActivity {
    sport: Sport,
    status: Status,
    source: Source,
    name: Option<String>,
    description: String,
    visibility: Option<Visibility>,
    gear_id: Option<Uuid>,
    device_id: Option<Uuid>,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
    summary: ActivitySummary,
    plan: Option<serde_json::Value>,
    commute: bool,
    trainer: bool,
}

fn validate(request: CreateActivity, now: DateTime<Utc>) -> Result<NewActivity, ApiError> {
    let status = request.status.unwrap_or(Status::Planned);
    let name = check_text(request.name, "name", 255)?;
    let description = check_text(request.description, "description", 10_000)?.unwrap_or_default();
    if let Some(plan) = &request.plan
        && plan.to_string().len() > MAX_PLAN_BYTES
    {
        return Err(ApiError::validation(format!(
            "plan is limited to {MAX_PLAN_BYTES} bytes of JSON"
        )));
    }
    let future_limit = now + Duration::minutes(5);
    match status {
        Status::Planned | Status::Active => {
            if request.summary.is_some() || request.end_time.is_some() {
                return Err(ApiError::validation(
                    "summary and end_time are only given for finished (manual) workouts",
                ));
            }
            let start_time = match status {
                Status::Active => Some(request.start_time.unwrap_or(now)),
                _ => None,
            };
            if status == Status::Planned && request.start_time.is_some() {
                return Err(ApiError::validation(
                    "a planned workout has no start_time; it is set when it starts",
                ));
            }
            if start_time.is_some_and(|start| start > future_limit) {
                return Err(ApiError::validation("start_time cannot be in the future"));
            }
            Ok(NewActivity {
                sport: request.sport,
                status,
                source: Source::Live,
                name,
                description,
                visibility: request.visibility,
                gear_id: request.gear_id,
                device_id: request.device_id,
                start_time,
                end_time: None,
                summary: ActivitySummary::default(),
                plan: request.plan,
                commute: request.commute,
                trainer: request.trainer,
            })
        }
        Status::Finished => {
            let start = request
                .start_time
                .ok_or_else(|| ApiError::validation("a manual workout needs its start_time"))?;
            let summary = request.summary.ok_or_else(|| {
                ApiError::validation("a manual workout needs a summary with elapsed_time_s")
            })?;
            check_summary(&summary)?;
            let elapsed = summary.elapsed_time_s.unwrap_or_default();
            let end = match request.end_time {
                Some(end) if end < start => {
                    return Err(ApiError::validation("end_time is before start_time"));
                }
                Some(end) if (end - start).num_milliseconds() as f64 / 1000.0 + 1.0 < elapsed => {
                    return Err(ApiError::validation(
                        "summary.elapsed_time_s is longer than end_time - start_time",
                    ));
                }
                Some(end) => end,
                None => start + Duration::milliseconds((elapsed * 1000.0) as i64),
            };
            if end > future_limit {
                return Err(ApiError::validation(
                    "a finished workout cannot end in the future",
                ));
            }
            Ok(NewActivity {
                sport: request.sport,
                status,
                source: Source::Manual,
                name,
                description,
                visibility: request.visibility,
                gear_id: request.gear_id,
                device_id: request.device_id,
                start_time: Some(start),
                end_time: Some(end),
                summary,
                plan: request.plan,
                commute: request.commute,
                trainer: request.trainer,
            })
        }
        Status::Paused | Status::Discarded => Err(ApiError::validation(
            "status must be planned, active or finished when creating a workout",
        )),
    }
}

fn created(row: ActivityRow, replayed: bool) -> Response {
    let mut response = (StatusCode::CREATED, Json(Activity::from(row))).into_response();
    if replayed {
        idempotency::mark_replayed(&mut response);
    }
    response
}

/// Creates a planned, active or finished (manual) workout. Honours `Idempotency-Key`: a
/// retried request with the same key and body returns the first answer instead of creating
/// a second workout.
#[utoipa::path(
    post,
    path = "/v1/activities",
    tag = "training",
    security(("bearer" = [])),
    request_body = CreateActivity,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 201, description = "The workout", body = Activity),
        (status = 400, description = "Invalid sport, times or totals", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn create_activity(
    State(training): State<Training>,
    user: AuthUser,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let request_hash = Requests::hash(&body);
    let request: CreateActivity = serde_path_to_error::deserialize(body).map_err(|error| {
        ApiError::validation(format!(
            "invalid activity: {}: {}",
            error.path(),
            error.inner()
        ))
    })?;
    if let Some(key) = &key
        && let Some(replay) = replay(&training, user.user_id, key, &request_hash).await?
    {
        return Ok(replay);
    }
    let now = Utc::now();
    let new = validate(request, now)?;
    check_gear(&training, user.user_id, new.gear_id).await?;
    let owner = owner_profile(&training, user.user_id).await;
    let visibility = new.visibility.unwrap_or(owner.visibility);
    let name = new.name.clone().unwrap_or_else(|| {
        default_name(
            new.sport,
            new.start_time.unwrap_or(now),
            owner.time_zone.as_deref(),
        )
    });
    let id = Uuid::now_v7();
    let mut tx = training.db.begin().await?;
    let row: ActivityRow = sqlx::query_as(&format!(
        "INSERT INTO activities (id, owner_id, sport, name, description, status, visibility,
            source, gear_id, device_id, commute, trainer, plan, start_time, end_time, summary)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(user.user_id)
    .bind(new.sport.as_str())
    .bind(&name)
    .bind(&new.description)
    .bind(new.status.as_str())
    .bind(visibility.as_str())
    .bind(new.source.as_str())
    .bind(new.gear_id)
    .bind(new.device_id)
    .bind(new.commute)
    .bind(new.trainer)
    .bind(&new.plan)
    .bind(new.start_time)
    .bind(new.end_time)
    .bind(sqlx::types::Json(&new.summary))
    .fetch_one(&mut *tx)
    .await?;
    if let Some(key) = &key
        && !REQUESTS
            .record(&mut tx, user.user_id, key, &request_hash, id)
            .await?
    {
        // A concurrent request with the same key won; answer as it did.
        tx.rollback().await.ok();
        return replay(&training, user.user_id, key, &request_hash)
            .await?
            .ok_or_else(idempotency::in_progress);
    }
    match new.status {
        Status::Active => {
            emit(
                &mut tx,
                id,
                &ActivityStarted {
                    activity: row.snapshot(),
                    device_id: row.device_id,
                },
            )
            .await?;
        }
        Status::Finished => {
            emit(
                &mut tx,
                id,
                &ActivityFinished {
                    activity: row.snapshot(),
                },
            )
            .await?;
        }
        _ => {}
    }
    tx.commit().await?;
    tracing::info!(activity_id = %id, status = new.status.as_str(), "activity created");
    Ok(created(row, false))
}

/// `POST /v1/activities` requests by `Idempotency-Key`.
const REQUESTS: Requests = Requests {
    table: "activity_requests",
    resource_column: "activity_id",
};

async fn replay(
    training: &Training,
    owner: Uuid,
    key: &str,
    request_hash: &[u8],
) -> Result<Option<Response>, ApiError> {
    let Some(activity_id) = REQUESTS
        .created(&training.db, owner, key, request_hash)
        .await?
    else {
        return Ok(None);
    };
    let mut connection = training.db.acquire().await?;
    let row = store::activity(&mut connection, activity_id)
        .await?
        .ok_or_else(|| ApiError::not_found("the activity created with this key was deleted"))?;
    Ok(Some(created(row, true)))
}

/// Filters of the activity list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ActivityFilter {
    /// Only this sport.
    pub sport: Option<Sport>,
    /// Only this status.
    pub status: Option<Status>,
    /// Only activities that started at or after this time.
    pub after: Option<DateTime<Utc>>,
    /// Only activities that started before this time.
    pub before: Option<DateTime<Utc>>,
}

/// A page of activities.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActivityPage {
    /// Newest first.
    pub activities: Vec<Activity>,
    /// Cursor of the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The caller's activities, newest first.
#[utoipa::path(
    get,
    path = "/v1/activities",
    tag = "training",
    security(("bearer" = [])),
    params(PageParams, ActivityFilter),
    responses(
        (status = 200, description = "A page of activities", body = ActivityPage),
        (status = 400, description = "Bad filter, cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn list_activities(
    State(training): State<Training>,
    user: AuthUser,
    Query(page): Query<PageParams>,
    Query(filter): Query<ActivityFilter>,
) -> Result<Json<ActivityPage>, ApiError> {
    let limit = page.limit()?;
    let cursor: Option<(DateTime<Utc>, Uuid)> = page.cursor()?;
    if let (Some(after), Some(before)) = (filter.after, filter.before)
        && after >= before
    {
        return Err(ApiError::validation("after must be before before"));
    }
    // Only the filters given become conditions: a query of "x IS NULL OR ..." clauses would
    // keep the planner from walking the (owner, time) index and make it sort every activity
    // of the owner for each page.
    let mut query = sqlx::QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM activities WHERE owner_id = "
    ));
    query.push_bind(user.user_id);
    if let Some(sport) = filter.sport {
        query.push(" AND sport = ").push_bind(sport.as_str());
    }
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(after) = filter.after {
        query.push(" AND start_time >= ").push_bind(after);
    }
    if let Some(before) = filter.before {
        query.push(" AND start_time < ").push_bind(before);
    }
    if let Some((at, id)) = cursor {
        query
            .push(" AND (coalesce(start_time, created_at), id) < (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    query
        .push(" ORDER BY coalesce(start_time, created_at) DESC, id DESC LIMIT ")
        .push_bind(limit + 1);
    let rows: Vec<ActivityRow> = query.build_query_as().fetch_all(&training.db).await?;
    let mut rows = rows;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|row| encode_cursor(&(row.start_time.unwrap_or(row.created_at), row.id)))
    } else {
        None
    };
    Ok(Json(ActivityPage {
        activities: rows.into_iter().map(Activity::from).collect(),
        next_cursor,
    }))
}

fn not_found() -> ApiError {
    ApiError::not_found("no such activity")
}

/// Whether `user` may read `row`: its owner always; others only public ones (followers-only
/// counts as private until the social service can tell who follows whom).
fn readable(row: &ActivityRow, user: &AuthUser) -> bool {
    row.owner_id == user.user_id || Visibility::from_stored(&row.visibility) == Visibility::Public
}

/// One activity, if the caller may see it.
#[utoipa::path(
    get,
    path = "/v1/activities/{id}",
    tag = "training",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Activity id")),
    responses(
        (status = 200, description = "The activity", body = Activity),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such activity the caller may see", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn get_activity(
    State(training): State<Training>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Activity>, ApiError> {
    let mut connection = training.db.acquire().await?;
    let row = store::activity(&mut connection, id)
        .await?
        .filter(|row| readable(row, &user))
        .ok_or_else(not_found)?;
    Ok(Json(row.into()))
}

/// Fields to change; absent fields stay.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchActivity {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New sport.
    pub sport: Option<Sport>,
    /// New visibility.
    pub visibility: Option<Visibility>,
    /// New gear, or null for none.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Uuid>)]
    pub gear_id: Option<Option<Uuid>>,
    /// A commute.
    pub commute: Option<bool>,
    /// On a trainer or treadmill.
    pub trainer: Option<bool>,
}

/// Changes an activity of the caller. Changing the sport, gear or visibility of a finished
/// one publishes `training.activity_updated.v1` so consumers can correct what they derived.
#[utoipa::path(
    patch,
    path = "/v1/activities/{id}",
    tag = "training",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Activity id")),
    request_body = PatchActivity,
    responses(
        (status = 200, description = "The changed activity", body = Activity),
        (status = 400, description = "Invalid values", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such activity of the caller", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn patch_activity(
    State(training): State<Training>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(patch): Json<PatchActivity>,
) -> Result<Json<Activity>, ApiError> {
    let name = check_text(patch.name, "name", 255)?;
    let description = check_text(patch.description, "description", 10_000)?;
    if let Some(gear_id) = patch.gear_id {
        check_gear(&training, user.user_id, gear_id).await?;
    }
    let mut tx = training.db.begin().await?;
    let current = store::activity_for_update(&mut tx, id)
        .await?
        .filter(|row| row.owner_id == user.user_id)
        .ok_or_else(not_found)?;
    let name = name.unwrap_or_else(|| current.name.clone());
    let description = description.unwrap_or_else(|| current.description.clone());
    let sport = patch
        .sport
        .map_or_else(|| current.sport.clone(), |sport| sport.as_str().to_owned());
    let visibility = patch
        .visibility
        .map_or_else(|| current.visibility.clone(), |v| v.as_str().to_owned());
    let updated: ActivityRow = sqlx::query_as(&format!(
        "UPDATE activities SET name = $2, description = $3, sport = $4, visibility = $5,
            gear_id = $6, commute = $7, trainer = $8, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(&name)
    .bind(&description)
    .bind(&sport)
    .bind(&visibility)
    .bind(patch.gear_id.unwrap_or(current.gear_id))
    .bind(patch.commute.unwrap_or(current.commute))
    .bind(patch.trainer.unwrap_or(current.trainer))
    .fetch_one(&mut *tx)
    .await?;
    let previous = current.snapshot();
    let now = updated.snapshot();
    if current.status == Status::Finished.as_str() && previous != now {
        emit(
            &mut tx,
            id,
            &ActivityUpdated {
                previous,
                activity: now,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Json(updated.into()))
}

/// Deletes an activity of the caller; consumers take back what it earned.
#[utoipa::path(
    delete,
    path = "/v1/activities/{id}",
    tag = "training",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Activity id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such activity of the caller", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn delete_activity(
    State(training): State<Training>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let mut tx = training.db.begin().await?;
    let row: ActivityRow = sqlx::query_as(&format!(
        "DELETE FROM activities WHERE id = $1 AND owner_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(user.user_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(not_found)?;
    emit(
        &mut tx,
        id,
        &ActivityDeleted {
            was_finished: row.status == Status::Finished.as_str(),
            activity: row.snapshot(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn step(
    training: &Training,
    user: &AuthUser,
    id: Uuid,
    action: Action,
) -> Result<Json<Activity>, ApiError> {
    let now = Utc::now();
    // The samples are summarised before the transaction: it must not wait on another service.
    let computed = if action == Action::Finish {
        let mut connection = training.db.acquire().await?;
        match store::activity(&mut connection, id)
            .await?
            .filter(|row| row.owner_id == user.user_id)
        {
            Some(row) if matches!(row.status.as_str(), "active" | "paused") => {
                crate::samples::summarize(training, &row, now).await?
            }
            _ => None,
        }
    } else {
        None
    };
    let mut tx = training.db.begin().await?;
    let current = store::activity_for_update(&mut tx, id)
        .await?
        .filter(|row| row.owner_id == user.user_id)
        .ok_or_else(not_found)?;
    let from = Status::from_stored(&current.status)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("unknown stored status")))?;
    let next = transition(from, action).map_err(|error| ApiError::conflict(error.to_string()))?;
    let start_time = current.start_time.or(Some(now));
    // A pause in progress ends with the step that leaves the paused state.
    let ongoing_pause = current.paused_at.map_or(0.0, |at| {
        (now - at).num_milliseconds().max(0) as f64 / 1000.0
    });
    let (paused_at, paused_s) = match action {
        Action::Pause => (Some(now), current.paused_s),
        Action::Resume | Action::Finish => (None, current.paused_s + ongoing_pause),
        Action::Start | Action::Discard => (current.paused_at, current.paused_s),
    };
    let (end_time, summary, splits, best_efforts) = if action == Action::Finish {
        let elapsed = start_time.map_or(0.0, |start| {
            (now - start).num_milliseconds().max(0) as f64 / 1000.0
        });
        let paused_moving = moving_time_s(elapsed, paused_s);
        let computed = computed.unwrap_or_default();
        let mut summary = computed.summary;
        // Elapsed time is the wall clock from start to finish, pauses included; moving time
        // is what the samples say, never more than the time not paused.
        summary.elapsed_time_s = Some(elapsed);
        summary.moving_time_s = Some(
            summary
                .moving_time_s
                .map_or(paused_moving, |moving| moving.min(paused_moving)),
        );
        (Some(now), summary, computed.splits, computed.best_efforts)
    } else {
        (
            current.end_time,
            current.summary.0.clone(),
            current.splits.clone(),
            current.best_efforts.clone(),
        )
    };
    let splits = if splits.is_null() {
        serde_json::json!([])
    } else {
        splits
    };
    let best_efforts = if best_efforts.is_null() {
        serde_json::json!([])
    } else {
        best_efforts
    };
    let updated: ActivityRow = sqlx::query_as(&format!(
        "UPDATE activities SET status = $2, start_time = $3, end_time = $4, paused_at = $5,
            paused_s = $6, summary = $7, splits = $8, best_efforts = $9, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(next.as_str())
    .bind(start_time)
    .bind(end_time)
    .bind(paused_at)
    .bind(paused_s)
    .bind(sqlx::types::Json(&summary))
    .bind(&splits)
    .bind(&best_efforts)
    .fetch_one(&mut *tx)
    .await?;
    match action {
        Action::Start => {
            emit(
                &mut tx,
                id,
                &ActivityStarted {
                    activity: updated.snapshot(),
                    device_id: updated.device_id,
                },
            )
            .await?;
        }
        Action::Finish => {
            emit(
                &mut tx,
                id,
                &ActivityFinished {
                    activity: updated.snapshot(),
                },
            )
            .await?;
        }
        _ => {}
    }
    tx.commit().await?;
    tracing::info!(activity_id = %id, status = next.as_str(), "activity {}", action.as_str());
    Ok(Json(updated.into()))
}

macro_rules! lifecycle_endpoint {
    ($name:ident, $action:expr, $path:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(
            post,
            path = $path,
            tag = "training",
            security(("bearer" = [])),
            params(("id" = Uuid, Path, description = "Activity id")),
            responses(
                (status = 200, description = "The activity in its new state", body = Activity),
                (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
                (status = 404, description = "No such activity of the caller", body = Problem, content_type = "application/problem+json"),
                (status = 409, description = "Not allowed from the current state; the detail says why", body = Problem, content_type = "application/problem+json"),
            )
        )]
        #[tracing::instrument(skip_all)]
        async fn $name(
            State(training): State<Training>,
            user: AuthUser,
            Path(id): Path<Uuid>,
        ) -> Result<Json<Activity>, ApiError> {
            step(&training, &user, id, $action).await
        }
    };
}

lifecycle_endpoint!(
    start,
    Action::Start,
    "/v1/activities/{id}/start",
    "Starts a planned workout."
);
lifecycle_endpoint!(
    pause,
    Action::Pause,
    "/v1/activities/{id}/pause",
    "Pauses an active workout."
);
lifecycle_endpoint!(
    resume,
    Action::Resume,
    "/v1/activities/{id}/resume",
    "Resumes a paused workout."
);
lifecycle_endpoint!(
    finish,
    Action::Finish,
    "/v1/activities/{id}/finish",
    "Finishes an active or paused workout, computes its summary and publishes \
     `training.activity_finished.v1`."
);
lifecycle_endpoint!(
    discard,
    Action::Discard,
    "/v1/activities/{id}/discard",
    "Discards a workout that is not finished."
);
