//! `/v1/uploads`: FIT, GPX and TCX files (each also gzipped) that become activities.

use axum::{
    extract::{DefaultBodyLimit, Multipart, State},
    http::StatusCode,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, ErrorCode, Problem},
    http::{Json, Path},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{Training, domain::Sport, uploads::MAX_UPLOAD_BYTES};

pub fn router() -> OpenApiRouter<Training> {
    OpenApiRouter::new()
        .routes(routes!(upload))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES + 64 * 1024))
        .routes(routes!(upload_status))
}

/// Where an upload is.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct UploadStatus {
    /// Upload id.
    pub id: Uuid,
    /// `processing`, `ready` (see `activity_id`) or `error` (see `error`).
    pub status: String,
    /// The activity it became — or, for a duplicate, the activity it duplicates.
    pub activity_id: Option<Uuid>,
    /// Why it failed, for a person.
    pub error: Option<String>,
}

/// The multipart form of an upload (for the OpenAPI document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The FIT, GPX or TCX file, optionally gzipped; at most 50 MB.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// The activity's name (default: the file name).
    name: Option<String>,
    /// The sport (default: what the file says).
    sport: Option<String>,
    /// The uploader's own id for the file.
    external_id: Option<String>,
}

fn text(value: String, field: &str, max: usize) -> Result<Option<String>, ApiError> {
    let value = value.trim().to_owned();
    if value.chars().count() > max {
        return Err(ApiError::validation(format!(
            "{field} is limited to {max} characters"
        )));
    }
    Ok((!value.is_empty()).then_some(value))
}

/// Uploads a workout file. The answer comes at once (`202`, `processing`); poll
/// `GET /v1/uploads/{id}` until it is `ready` (with the new activity) or `error` (with a
/// reason). The same file, or another file of a workout already there, ends as an error
/// naming the existing activity.
#[utoipa::path(
    post,
    path = "/v1/uploads",
    tag = "training",
    security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "Accepted for processing", body = UploadStatus),
        (status = 400, description = "No file, an unknown sport, or a malformed form", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than 50 MB", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn upload(
    State(training): State<Training>,
    user: AuthUser,
    mut form: Multipart,
) -> Result<(StatusCode, Json<UploadStatus>), ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "an upload is limited to {} MB",
                MAX_UPLOAD_BYTES / (1024 * 1024)
            ),
        )
    };
    let malformed = |error: axum::extract::multipart::MultipartError| {
        if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::validation(format!("malformed multipart form: {}", error.body_text()))
        }
    };
    let (mut file, mut file_name) = (None, String::from("upload"));
    let (mut name, mut sport, mut external_id) = (None, None, None);
    while let Some(field) = form.next_field().await.map_err(malformed)? {
        match field.name().unwrap_or_default() {
            "file" => {
                if let Some(given) = field.file_name() {
                    file_name = given.chars().take(255).collect();
                }
                let bytes = field.bytes().await.map_err(malformed)?;
                if bytes.len() > MAX_UPLOAD_BYTES {
                    return Err(too_large());
                }
                file = Some(bytes);
            }
            "name" => name = text(field.text().await.map_err(malformed)?, "name", 255)?,
            "sport" => {
                let value = field.text().await.map_err(malformed)?;
                let known = Sport::from_stored(value.trim()).ok_or_else(|| {
                    ApiError::validation(format!("sport {:?} is not a known sport", value.trim()))
                })?;
                sport = Some(known.as_str().to_owned());
            }
            "external_id" => {
                external_id = text(field.text().await.map_err(malformed)?, "external_id", 255)?;
            }
            // Strava clients send data_type; the content tells the format anyway.
            "data_type" | "description" | "trainer" | "commute" => {}
            other => {
                return Err(ApiError::validation(format!(
                    "unknown form field {other:?}"
                )));
            }
        }
    }
    let file = file.ok_or_else(|| ApiError::validation("the form has no file field"))?;
    if file.is_empty() {
        return Err(ApiError::validation("the file is empty"));
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO uploads (id, owner_id, status, file_name, file_sha256, file, name, sport,
            external_id)
         VALUES ($1, $2, 'processing', $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(user.user_id)
    .bind(&file_name)
    .bind(Sha256::digest(&file).to_vec())
    .bind(file.as_ref())
    .bind(&name)
    .bind(&sport)
    .bind(&external_id)
    .execute(&training.db)
    .await?;
    training.uploads.wake();
    Ok((
        StatusCode::ACCEPTED,
        Json(UploadStatus {
            id,
            status: "processing".into(),
            activity_id: None,
            error: None,
        }),
    ))
}

/// Where an upload of the caller is.
#[utoipa::path(
    get,
    path = "/v1/uploads/{id}",
    tag = "training",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Upload id")),
    responses(
        (status = 200, description = "The upload's status", body = UploadStatus),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such upload of the caller", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn upload_status(
    State(training): State<Training>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<UploadStatus>, ApiError> {
    sqlx::query_as(
        "SELECT id, status, activity_id, error FROM uploads WHERE id = $1 AND owner_id = $2",
    )
    .bind(id)
    .bind(user.user_id)
    .fetch_optional(&training.db)
    .await?
    .map(Json)
    .ok_or_else(|| ApiError::not_found("no such upload"))
}
