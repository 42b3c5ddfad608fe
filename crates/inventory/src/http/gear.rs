//! `/v1/gear`: gear, components on bikes, default gear per sport, retirement and wear alerts.
//! Only the owner sees or changes an item; to anyone else it does not exist (404).

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, Problem},
    http::{Json, PageParams, Path, Query, double_option, encode_cursor, idempotency_key},
    idempotency::{self, Requests},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    Inventory,
    domain::{ComponentType, Kind, Sport, wear::Wear},
    store::{self, COLUMNS, GearRow},
};

pub fn router() -> OpenApiRouter<Inventory> {
    OpenApiRouter::new()
        .routes(routes!(create_gear, list_gear))
        .routes(routes!(list_alerts))
        .routes(routes!(list_defaults))
        .routes(routes!(set_default))
        .routes(routes!(get_gear, patch_gear, delete_gear))
        .routes(routes!(retire_gear))
}

/// Largest distance or limit accepted, metres (a million kilometres).
const MAX_DISTANCE_M: f64 = 1e9;
/// Largest moving time accepted, seconds (about 31 years).
const MAX_MOVING_TIME_S: f64 = 1e9;

/// An item of gear.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Gear {
    /// Gear id (UUIDv7).
    pub id: Uuid,
    /// What it is.
    pub kind: Kind,
    /// For components: what part of a bike.
    pub component_type: Option<ComponentType>,
    /// Its name.
    pub name: String,
    /// Brand.
    pub brand: String,
    /// Model.
    pub model: String,
    /// Sports it is used for.
    pub sports: Vec<String>,
    /// When it was bought.
    pub purchase_date: Option<NaiveDate>,
    /// Distance before Stride tracked it, metres.
    pub initial_distance_m: f64,
    /// Moving time before Stride tracked it, seconds.
    pub initial_moving_time_s: f64,
    /// Free text.
    pub notes: String,
    /// The item's own service limit, metres; null for its kind's default.
    pub limit_m: Option<f64>,
    /// For components: the bike it is on now.
    pub bike_id: Option<Uuid>,
    /// When it was retired.
    pub retired_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Its wear.
    pub wear: Wear,
}

impl From<GearRow> for Gear {
    fn from(row: GearRow) -> Self {
        let wear = row.wear(Utc::now().date_naive());
        Self {
            id: row.id,
            kind: row.kind(),
            component_type: row.component_type(),
            name: row.name,
            brand: row.brand,
            model: row.model,
            sports: row.sports,
            purchase_date: row.purchase_date,
            initial_distance_m: row.initial_distance_m,
            initial_moving_time_s: row.initial_moving_time_s,
            notes: row.notes,
            limit_m: row.limit_m,
            bike_id: row.bike_id,
            retired_at: row.retired_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            wear,
        }
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("no such gear")
}

fn check_text(value: Option<String>, field: &str, max: usize) -> Result<Option<String>, ApiError> {
    match value.map(|text| text.trim().to_owned()) {
        Some(text) if text.chars().count() > max => Err(ApiError::validation(format!(
            "{field} is limited to {max} characters"
        ))),
        Some(text) if field == "name" && text.is_empty() => {
            Err(ApiError::validation("name cannot be empty"))
        }
        other => Ok(other),
    }
}

fn check_amount(value: Option<f64>, field: &str, max: f64) -> Result<Option<f64>, ApiError> {
    match value {
        Some(amount) if !(amount.is_finite() && (0.0..=max).contains(&amount)) => Err(
            ApiError::validation(format!("{field} must be between 0 and {max}")),
        ),
        other => Ok(other),
    }
}

fn check_limit(value: Option<f64>) -> Result<Option<f64>, ApiError> {
    match value {
        Some(limit) if !(limit.is_finite() && limit > 0.0 && limit <= MAX_DISTANCE_M) => {
            Err(ApiError::validation(format!(
                "limit_m must be more than 0 and at most {MAX_DISTANCE_M}"
            )))
        }
        other => Ok(other),
    }
}

fn sport_names(sports: Vec<Sport>) -> Vec<String> {
    let mut names: Vec<String> = sports.into_iter().map(|s| s.as_str().to_owned()).collect();
    names.sort();
    names.dedup();
    names
}

fn check_purchase_date(date: Option<NaiveDate>) -> Result<(), ApiError> {
    if date.is_some_and(|date| date > Utc::now().date_naive() + Duration::days(1)) {
        return Err(ApiError::validation(
            "purchase_date cannot be in the future",
        ));
    }
    Ok(())
}

fn check_attached_at(at: Option<DateTime<Utc>>) -> Result<DateTime<Utc>, ApiError> {
    let now = Utc::now();
    match at {
        Some(at) if at > now + Duration::minutes(5) => {
            Err(ApiError::validation("attached_at cannot be in the future"))
        }
        Some(at) => Ok(at),
        None => Ok(now),
    }
}

/// The caller's bike `bike_id`: 404 when the caller has no such item, 400 when it is no bike.
async fn owned_bike(
    connection: &mut PgConnection,
    owner: Uuid,
    bike_id: Uuid,
) -> Result<GearRow, ApiError> {
    let bike = store::owned_gear(connection, owner, bike_id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such bike"))?;
    if bike.kind() != Kind::Bike {
        return Err(ApiError::validation(
            "bike_id must name a bike; components attach to bikes only",
        ));
    }
    Ok(bike)
}

/// Moves `component` onto `bike` (or off any bike) from `at` and rebuilds its wear.
async fn attach(
    connection: &mut PgConnection,
    component: &GearRow,
    bike: Option<Uuid>,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let open: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT attached_at FROM attachments WHERE component_id = $1 AND detached_at IS NULL",
    )
    .bind(component.id)
    .fetch_optional(&mut *connection)
    .await?;
    if open.is_some_and(|since| since >= at) {
        return Err(ApiError::validation(
            "attached_at must be after the date the component went on its current bike",
        ));
    }
    sqlx::query(
        "UPDATE attachments SET detached_at = $2 WHERE component_id = $1 AND detached_at IS NULL",
    )
    .bind(component.id)
    .bind(at)
    .execute(&mut *connection)
    .await?;
    if let Some(bike) = bike {
        sqlx::query(
            "INSERT INTO attachments (component_id, bike_id, attached_at) VALUES ($1, $2, $3)",
        )
        .bind(component.id)
        .bind(bike)
        .bind(at)
        .execute(&mut *connection)
        .await?;
    }
    sqlx::query("UPDATE gear SET bike_id = $2, updated_at = now() WHERE id = $1")
        .bind(component.id)
        .bind(bike)
        .execute(&mut *connection)
        .await?;
    store::rederive_component(connection, component.id, component.owner_id).await?;
    Ok(())
}

/// An item to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGear {
    /// What it is.
    pub kind: Kind,
    /// Required for components, refused for anything else.
    pub component_type: Option<ComponentType>,
    /// 1 to 100 characters.
    pub name: String,
    /// At most 100 characters.
    pub brand: Option<String>,
    /// At most 100 characters.
    pub model: Option<String>,
    /// Sports it is used for.
    pub sports: Option<Vec<Sport>>,
    /// When it was bought.
    pub purchase_date: Option<NaiveDate>,
    /// Distance before Stride tracked it, metres (≥ 0).
    pub initial_distance_m: Option<f64>,
    /// Moving time before Stride tracked it, seconds (≥ 0).
    pub initial_moving_time_s: Option<f64>,
    /// At most 10,000 characters.
    pub notes: Option<String>,
    /// Its own service limit, metres; default: its kind's.
    pub limit_m: Option<f64>,
    /// Components: the caller's bike it is on.
    pub bike_id: Option<Uuid>,
    /// Components: since when it is on that bike (default now); rides since then wear it.
    pub attached_at: Option<DateTime<Utc>>,
}

/// Adds an item of gear. A component may be put on one of the caller's bikes at once.
#[utoipa::path(
    post,
    path = "/v1/gear",
    tag = "inventory",
    security(("bearer" = [])),
    request_body = CreateGear,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: a retry with the same key and body returns the first answer")),
    responses(
        (status = 201, description = "The item (also a replayed answer, marked `Idempotent-Replayed: true`)", body = Gear),
        (status = 400, description = "Unknown kind, negative distance, a bike_id that is no bike, ...", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bike of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn create_gear(
    State(inventory): State<Inventory>,
    user: AuthUser,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let request_hash = Requests::hash(&body);
    let request: CreateGear = serde_path_to_error::deserialize(body).map_err(|error| {
        ApiError::validation(format!("invalid gear: {}: {}", error.path(), error.inner()))
    })?;
    if let Some(key) = &key
        && let Some(replay) = replay_creation(&inventory, user.user_id, key, &request_hash).await?
    {
        return Ok(replay);
    }
    let name = check_text(Some(request.name), "name", 100)?.unwrap_or_default();
    let brand = check_text(request.brand, "brand", 100)?.unwrap_or_default();
    let model = check_text(request.model, "model", 100)?.unwrap_or_default();
    let notes = check_text(request.notes, "notes", 10_000)?.unwrap_or_default();
    let initial_distance_m = check_amount(
        request.initial_distance_m,
        "initial_distance_m",
        MAX_DISTANCE_M,
    )?;
    let initial_moving_time_s = check_amount(
        request.initial_moving_time_s,
        "initial_moving_time_s",
        MAX_MOVING_TIME_S,
    )?;
    let limit_m = check_limit(request.limit_m)?;
    check_purchase_date(request.purchase_date)?;
    match (request.kind, request.component_type) {
        (Kind::Component, None) => {
            return Err(ApiError::validation("a component needs its component_type"));
        }
        (kind, Some(_)) if kind != Kind::Component => {
            return Err(ApiError::validation(
                "component_type is only for kind component",
            ));
        }
        _ => {}
    }
    if request.bike_id.is_some() && request.kind != Kind::Component {
        return Err(ApiError::validation(
            "only components are attached to a bike",
        ));
    }
    if request.attached_at.is_some() && request.bike_id.is_none() {
        return Err(ApiError::validation("attached_at needs a bike_id"));
    }
    let attached_at = check_attached_at(request.attached_at)?;
    let mut tx = inventory.db.begin().await?;
    if let Some(bike_id) = request.bike_id {
        owned_bike(&mut tx, user.user_id, bike_id).await?;
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO gear (id, owner_id, kind, component_type, name, brand, model, sports,
            purchase_date, initial_distance_m, initial_moving_time_s, notes, limit_m)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(id)
    .bind(user.user_id)
    .bind(request.kind.as_str())
    .bind(request.component_type.map(ComponentType::as_str))
    .bind(&name)
    .bind(&brand)
    .bind(&model)
    .bind(sport_names(request.sports.unwrap_or_default()))
    .bind(request.purchase_date)
    .bind(initial_distance_m.unwrap_or(0.0))
    .bind(initial_moving_time_s.unwrap_or(0.0))
    .bind(&notes)
    .bind(limit_m)
    .execute(&mut *tx)
    .await?;
    let row = store::gear(&mut tx, id).await?.ok_or_else(not_found)?;
    if let Some(bike_id) = request.bike_id {
        attach(&mut tx, &row, Some(bike_id), attached_at).await?;
    }
    store::check_thresholds(&mut tx, [id]).await?;
    let row = store::gear(&mut tx, id).await?.ok_or_else(not_found)?;
    if let Some(key) = &key
        && !REQUESTS
            .record(&mut tx, user.user_id, key, &request_hash, id)
            .await?
    {
        // A concurrent request with the same key won: answer as it did.
        tx.rollback().await.ok();
        return replay_creation(&inventory, user.user_id, key, &request_hash)
            .await?
            .ok_or_else(idempotency::in_progress);
    }
    tx.commit().await?;
    tracing::info!(gear_id = %id, kind = request.kind.as_str(), "gear created");
    Ok(created(row, false))
}

/// `POST /v1/gear` requests by `Idempotency-Key`.
const REQUESTS: Requests = Requests {
    table: "gear_requests",
    resource_column: "gear_id",
};

/// `201` with the item; a replayed answer says so in `Idempotent-Replayed`.
fn created(row: GearRow, replayed: bool) -> Response {
    let mut response = (StatusCode::CREATED, Json(Gear::from(row))).into_response();
    if replayed {
        idempotency::mark_replayed(&mut response);
    }
    response
}

/// The first answer to a request with this `Idempotency-Key`, if there was one: the item as
/// it is now. The key with another body is a 422.
async fn replay_creation(
    inventory: &Inventory,
    owner: Uuid,
    key: &str,
    request_hash: &[u8],
) -> Result<Option<Response>, ApiError> {
    let Some(gear_id) = REQUESTS
        .created(&inventory.db, owner, key, request_hash)
        .await?
    else {
        return Ok(None);
    };
    let mut connection = inventory.db.acquire().await?;
    let row = store::gear(&mut connection, gear_id)
        .await?
        .ok_or_else(|| ApiError::not_found("the gear created with this key was deleted"))?;
    Ok(Some(created(row, true)))
}

/// Filters of the gear list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct GearFilter {
    /// Only this kind.
    pub kind: Option<Kind>,
    /// `true`: only retired items; `false`: only items in use; absent: both.
    pub retired: Option<bool>,
}

/// A page of gear.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GearPage {
    /// Newest first.
    pub gear: Vec<Gear>,
    /// Cursor of the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The caller's gear, newest first.
#[utoipa::path(
    get,
    path = "/v1/gear",
    tag = "inventory",
    security(("bearer" = [])),
    params(PageParams, GearFilter),
    responses(
        (status = 200, description = "A page of gear", body = GearPage),
        (status = 400, description = "Bad filter, cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn list_gear(
    State(inventory): State<Inventory>,
    user: AuthUser,
    Query(page): Query<PageParams>,
    Query(filter): Query<GearFilter>,
) -> Result<Json<GearPage>, ApiError> {
    let limit = page.limit()?;
    let before: Option<Uuid> = page.cursor()?;
    let mut rows: Vec<GearRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM gear
         WHERE owner_id = $1
           AND ($2::text IS NULL OR kind = $2)
           AND ($3::boolean IS NULL OR (retired_at IS NOT NULL) = $3)
           AND ($4::uuid IS NULL OR id < $4)
         ORDER BY id DESC LIMIT $5"
    ))
    .bind(user.user_id)
    .bind(filter.kind.map(Kind::as_str))
    .bind(filter.retired)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(&inventory.db)
    .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|row| encode_cursor(&row.id))
    } else {
        None
    };
    Ok(Json(GearPage {
        gear: rows.into_iter().map(Gear::from).collect(),
        next_cursor,
    }))
}

/// One item of the caller's gear, with its wear.
#[utoipa::path(
    get,
    path = "/v1/gear/{id}",
    tag = "inventory",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Gear id")),
    responses(
        (status = 200, description = "The item", body = Gear),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such gear of the caller", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn get_gear(
    State(inventory): State<Inventory>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Gear>, ApiError> {
    let mut connection = inventory.db.acquire().await?;
    let row = store::owned_gear(&mut connection, user.user_id, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(row.into()))
}

/// Fields to change; absent fields stay. The kind cannot change.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchGear {
    /// New name.
    pub name: Option<String>,
    /// New brand.
    pub brand: Option<String>,
    /// New model.
    pub model: Option<String>,
    /// New list of sports.
    pub sports: Option<Vec<Sport>>,
    /// New purchase date, or null for none.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<NaiveDate>)]
    pub purchase_date: Option<Option<NaiveDate>>,
    /// New initial distance, metres.
    pub initial_distance_m: Option<f64>,
    /// New initial moving time, seconds.
    pub initial_moving_time_s: Option<f64>,
    /// New notes.
    pub notes: Option<String>,
    /// The item's own limit, metres, or null for its kind's default.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>)]
    pub limit_m: Option<Option<f64>>,
    /// Components: another component type.
    pub component_type: Option<ComponentType>,
    /// Components: the bike it moves to, or null to take it off its bike.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Uuid>)]
    pub bike_id: Option<Option<Uuid>>,
    /// Components: when it moved (default now); rides of the new bike from then on wear it.
    pub attached_at: Option<DateTime<Utc>>,
}

/// Changes an item of the caller's. Moving a component to another bike records the date;
/// its wear follows it from then on.
#[utoipa::path(
    patch,
    path = "/v1/gear/{id}",
    tag = "inventory",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Gear id")),
    request_body = PatchGear,
    responses(
        (status = 200, description = "The changed item", body = Gear),
        (status = 400, description = "Invalid values, a bike_id that is no bike", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such gear or bike of the caller", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn patch_gear(
    State(inventory): State<Inventory>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(patch): Json<PatchGear>,
) -> Result<Json<Gear>, ApiError> {
    let name = check_text(patch.name, "name", 100)?;
    let brand = check_text(patch.brand, "brand", 100)?;
    let model = check_text(patch.model, "model", 100)?;
    let notes = check_text(patch.notes, "notes", 10_000)?;
    let initial_distance_m = check_amount(
        patch.initial_distance_m,
        "initial_distance_m",
        MAX_DISTANCE_M,
    )?;
    let initial_moving_time_s = check_amount(
        patch.initial_moving_time_s,
        "initial_moving_time_s",
        MAX_MOVING_TIME_S,
    )?;
    let limit_m = match patch.limit_m {
        Some(limit) => Some(check_limit(limit)?),
        None => None,
    };
    check_purchase_date(patch.purchase_date.flatten())?;
    if patch.attached_at.is_some() && patch.bike_id.is_none() {
        return Err(ApiError::validation("attached_at needs a bike_id"));
    }
    let attached_at = check_attached_at(patch.attached_at)?;
    let mut tx = inventory.db.begin().await?;
    let current: GearRow = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM gear WHERE id = $1 AND owner_id = $2 FOR UPDATE"
    ))
    .bind(id)
    .bind(user.user_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(not_found)?;
    let is_component = current.kind() == Kind::Component;
    if !is_component && (patch.component_type.is_some() || patch.bike_id.is_some()) {
        return Err(ApiError::validation(
            "component_type and bike_id are only for components",
        ));
    }
    sqlx::query(
        "UPDATE gear SET name = $2, brand = $3, model = $4, sports = $5, purchase_date = $6,
            initial_distance_m = $7, initial_moving_time_s = $8, notes = $9, limit_m = $10,
            component_type = $11, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(name.unwrap_or_else(|| current.name.clone()))
    .bind(brand.unwrap_or_else(|| current.brand.clone()))
    .bind(model.unwrap_or_else(|| current.model.clone()))
    .bind(
        patch
            .sports
            .map_or_else(|| current.sports.clone(), sport_names),
    )
    .bind(patch.purchase_date.unwrap_or(current.purchase_date))
    .bind(initial_distance_m.unwrap_or(current.initial_distance_m))
    .bind(initial_moving_time_s.unwrap_or(current.initial_moving_time_s))
    .bind(notes.unwrap_or_else(|| current.notes.clone()))
    .bind(limit_m.unwrap_or(current.limit_m))
    .bind(
        patch
            .component_type
            .map(|c| c.as_str().to_owned())
            .or_else(|| current.component_type.clone()),
    )
    .execute(&mut *tx)
    .await?;
    if let Some(bike) = patch.bike_id
        && bike != current.bike_id
    {
        if let Some(bike_id) = bike {
            owned_bike(&mut tx, user.user_id, bike_id).await?;
        }
        attach(&mut tx, &current, bike, attached_at).await?;
    }
    store::check_thresholds(&mut tx, [id]).await?;
    let row = store::gear(&mut tx, id).await?.ok_or_else(not_found)?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Deletes an item of the caller's with its wear history (retire it to keep the history).
/// Components on a deleted bike stay, off any bike.
#[utoipa::path(
    delete,
    path = "/v1/gear/{id}",
    tag = "inventory",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Gear id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such gear of the caller", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn delete_gear(
    State(inventory): State<Inventory>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let mut tx = inventory.db.begin().await?;
    let deleted: Option<Uuid> =
        sqlx::query_scalar("DELETE FROM gear WHERE id = $1 AND owner_id = $2 RETURNING id")
            .bind(id)
            .bind(user.user_id)
            .fetch_optional(&mut *tx)
            .await?;
    if deleted.is_none() {
        return Err(not_found());
    }
    sqlx::query(
        "UPDATE attachments SET detached_at = now() WHERE bike_id = $1 AND detached_at IS NULL",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(gear_id = %id, "gear deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Retires an item of the caller's: it keeps its history, stops being a default, its alerts
/// close, and a retired component comes off its bike. Retiring twice changes nothing.
#[utoipa::path(
    post,
    path = "/v1/gear/{id}/retire",
    tag = "inventory",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Gear id")),
    responses(
        (status = 200, description = "The retired item", body = Gear),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such gear of the caller", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn retire_gear(
    State(inventory): State<Inventory>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Gear>, ApiError> {
    let mut tx = inventory.db.begin().await?;
    let retired: Option<Uuid> = sqlx::query_scalar(
        "UPDATE gear SET retired_at = coalesce(retired_at, now()), bike_id = NULL,
            updated_at = now()
         WHERE id = $1 AND owner_id = $2 RETURNING id",
    )
    .bind(id)
    .bind(user.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    if retired.is_none() {
        return Err(not_found());
    }
    sqlx::query(
        "UPDATE attachments SET detached_at = now()
         WHERE component_id = $1 AND detached_at IS NULL",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE wear_alerts SET closed_at = now() WHERE gear_id = $1 AND closed_at IS NULL",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM default_gear WHERE gear_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let row = store::gear(&mut tx, id).await?.ok_or_else(not_found)?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// The default gear of a sport.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DefaultGear {
    /// The sport.
    pub sport: Sport,
    /// The gear its workouts wear when they name none.
    pub gear_id: Uuid,
}

/// The caller's default gear per sport.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DefaultGearList {
    /// One entry per sport that has a default.
    pub defaults: Vec<DefaultGear>,
}

/// The caller's default gear per sport.
#[utoipa::path(
    get,
    path = "/v1/gear/defaults",
    tag = "inventory",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Defaults", body = DefaultGearList),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn list_defaults(
    State(inventory): State<Inventory>,
    user: AuthUser,
) -> Result<Json<DefaultGearList>, ApiError> {
    let rows: Vec<(String, Uuid)> = sqlx::query_as(
        "SELECT sport, gear_id FROM default_gear WHERE owner_id = $1 ORDER BY sport",
    )
    .bind(user.user_id)
    .fetch_all(&inventory.db)
    .await?;
    Ok(Json(DefaultGearList {
        defaults: rows
            .into_iter()
            .filter_map(|(sport, gear_id)| {
                Sport::from_stored(&sport).map(|sport| DefaultGear { sport, gear_id })
            })
            .collect(),
    }))
}

/// The default gear to set.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDefault {
    /// An item of the caller's in use (not a component), or null to have no default.
    pub gear_id: Option<Uuid>,
}

/// The sport's default after the change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DefaultSet {
    /// The sport.
    pub sport: Sport,
    /// Its default gear, or null for none.
    pub gear_id: Option<Uuid>,
}

/// Sets the gear that finished workouts of `sport` wear when they name none.
#[utoipa::path(
    put,
    path = "/v1/gear/defaults/{sport}",
    tag = "inventory",
    security(("bearer" = [])),
    params(("sport" = Sport, Path, description = "A training sport")),
    request_body = SetDefault,
    responses(
        (status = 200, description = "The default", body = DefaultSet),
        (status = 400, description = "Unknown sport, a component, or retired gear", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such gear of the caller", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn set_default(
    State(inventory): State<Inventory>,
    user: AuthUser,
    Path(sport): Path<Sport>,
    Json(request): Json<SetDefault>,
) -> Result<Json<DefaultSet>, ApiError> {
    let mut tx = inventory.db.begin().await?;
    match request.gear_id {
        Some(gear_id) => {
            let row = store::owned_gear(&mut tx, user.user_id, gear_id)
                .await?
                .ok_or_else(not_found)?;
            if row.kind() == Kind::Component {
                return Err(ApiError::validation(
                    "a component cannot be a default; make its bike the default",
                ));
            }
            if row.retired_at.is_some() {
                return Err(ApiError::validation("retired gear cannot be a default"));
            }
            sqlx::query(
                "INSERT INTO default_gear (owner_id, sport, gear_id) VALUES ($1, $2, $3)
                 ON CONFLICT (owner_id, sport) DO UPDATE SET gear_id = $3",
            )
            .bind(user.user_id)
            .bind(sport.as_str())
            .bind(gear_id)
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM default_gear WHERE owner_id = $1 AND sport = $2")
                .bind(user.user_id)
                .bind(sport.as_str())
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(Json(DefaultSet {
        sport,
        gear_id: request.gear_id,
    }))
}

/// An open wear alert.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WearAlert {
    /// Alert id.
    pub id: Uuid,
    /// The item.
    pub gear_id: Uuid,
    /// Its name.
    pub gear_name: String,
    /// Its kind.
    pub kind: String,
    /// For components: the component type.
    pub component_type: Option<String>,
    /// 80 or 100.
    pub threshold_percent: i32,
    /// Its distance when the alert opened, metres.
    pub distance_m: f64,
    /// Its limit then, metres.
    pub limit_m: f64,
    /// When it opened.
    pub opened_at: DateTime<Utc>,
}

/// The caller's open wear alerts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WearAlerts {
    /// Newest first.
    pub alerts: Vec<WearAlert>,
}

/// The caller's open wear alerts (an alert closes when its item is retired).
#[utoipa::path(
    get,
    path = "/v1/gear/alerts",
    tag = "inventory",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Open alerts", body = WearAlerts),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn list_alerts(
    State(inventory): State<Inventory>,
    user: AuthUser,
) -> Result<Json<WearAlerts>, ApiError> {
    let alerts: Vec<WearAlert> = sqlx::query_as(
        "SELECT a.id, a.gear_id, g.name AS gear_name, g.kind, g.component_type,
            a.threshold_percent, a.distance_m, a.limit_m, a.opened_at
         FROM wear_alerts a JOIN gear g ON g.id = a.gear_id
         WHERE a.owner_id = $1 AND a.closed_at IS NULL
         ORDER BY a.opened_at DESC, a.id DESC",
    )
    .bind(user.user_id)
    .fetch_all(&inventory.db)
    .await?;
    Ok(Json(WearAlerts { alerts }))
}
