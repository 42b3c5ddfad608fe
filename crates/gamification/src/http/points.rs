//! `/v1/me/points`: the balance, the history, and spending.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, ErrorCode, Problem, is_constraint_violation},
    http::{Json, PageParams, Query, encode_cursor, idempotency_key},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::Gamification;

pub fn router() -> OpenApiRouter<Gamification> {
    OpenApiRouter::new()
        .routes(routes!(points))
        .routes(routes!(redeem))
}

/// One ledger entry.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct LedgerEntry {
    /// Entry id.
    pub id: Uuid,
    /// Points added (positive) or taken (negative).
    pub amount: i64,
    /// Why, for a person.
    pub reason: String,
    /// The workout it is about, if any.
    pub activity_id: Option<Uuid>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// The caller's points.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PointsPage {
    /// Points available.
    pub balance: i64,
    /// Ledger entries, newest first.
    pub history: Vec<LedgerEntry>,
    /// Cursor of the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The caller's balance and history.
#[utoipa::path(
    get,
    path = "/v1/me/points",
    tag = "gamification",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "Balance and history", body = PointsPage),
        (status = 400, description = "Bad cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn points(
    State(gamification): State<Gamification>,
    user: AuthUser,
    Query(page): Query<PageParams>,
) -> Result<Json<PointsPage>, ApiError> {
    let limit = page.limit()?;
    let before: Option<Uuid> = page.cursor()?;
    // One snapshot for both reads. Under READ COMMITTED an award committed between them
    // showed in the history but not yet in the balance.
    let mut tx = gamification
        .db
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let balance: Option<i64> =
        sqlx::query_scalar("SELECT balance FROM balances WHERE user_id = $1")
            .bind(user.user_id)
            .fetch_optional(&mut *tx)
            .await?;
    let mut history: Vec<LedgerEntry> = sqlx::query_as(
        "SELECT id, amount, reason, activity_id, created_at FROM ledger
         WHERE user_id = $1 AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
    )
    .bind(user.user_id)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let next_cursor = if history.len() as i64 > limit {
        history.truncate(limit as usize);
        history.last().map(|entry| encode_cursor(&entry.id))
    } else {
        None
    };
    Ok(Json(PointsPage {
        balance: balance.unwrap_or(0),
        history,
        next_cursor,
    }))
}

/// Points to spend.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Redemption {
    /// Points, at least 1.
    pub amount: i64,
    /// What for, 1 to 200 characters.
    pub reason: String,
}

/// A spending that went through.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Redeemed {
    /// The ledger entry.
    pub id: Uuid,
    /// Points spent.
    pub amount: i64,
    /// Points left.
    pub balance: i64,
}

/// Spends points if the balance covers them; never drives a balance negative, however many
/// requests run at once. A retried request with the same `Idempotency-Key` is charged once.
#[utoipa::path(
    post,
    path = "/v1/me/points/redemptions",
    tag = "gamification",
    security(("bearer" = [])),
    request_body = Redemption,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 201, description = "Spent", body = Redeemed),
        (status = 400, description = "Invalid amount or reason", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The balance does not cover it", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn redeem(
    State(gamification): State<Gamification>,
    user: AuthUser,
    headers: HeaderMap,
    Json(request): Json<Redemption>,
) -> Result<Response, ApiError> {
    if !(1..=1_000_000_000).contains(&request.amount) {
        return Err(ApiError::validation(
            "amount must be between 1 and 1,000,000,000",
        ));
    }
    let reason = request.reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(ApiError::validation("reason must have 1 to 200 characters"));
    }
    let key = idempotency_key(&headers)?;
    let request_hash = Sha256::digest(format!("{}\n{reason}", request.amount)).to_vec();
    if let Some(key) = &key
        && let Some(replay) = replay(&gamification, user.user_id, key, &request_hash).await?
    {
        return Ok(replay);
    }
    let mut tx = gamification.db.begin().await?;
    // The conditional update is the check: concurrent redemptions serialise on the row and
    // only those the balance covers succeed.
    let balance: Option<i64> = sqlx::query_scalar(
        "UPDATE balances SET balance = balance - $2 WHERE user_id = $1 AND balance >= $2
         RETURNING balance",
    )
    .bind(user.user_id)
    .bind(request.amount)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(balance) = balance else {
        return Err(ApiError::conflict("the balance does not cover this amount"));
    };
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO ledger (id, user_id, amount, reason) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(user.user_id)
        .bind(-request.amount)
        .bind(format!("redeemed: {reason}"))
        .execute(&mut *tx)
        .await?;
    if let Some(key) = &key {
        let recorded = sqlx::query(
            "INSERT INTO redemptions (user_id, key, request_hash, ledger_id, amount)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user.user_id)
        .bind(key)
        .bind(&request_hash)
        .bind(id)
        .bind(request.amount)
        .execute(&mut *tx)
        .await;
        if let Err(error) = recorded {
            if is_constraint_violation(&error, "redemptions_pkey") {
                tx.rollback().await.ok();
                return replay(&gamification, user.user_id, key, &request_hash)
                    .await?
                    .ok_or_else(|| {
                        ApiError::conflict("a request with this Idempotency-Key is in progress")
                    });
            }
            return Err(error.into());
        }
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Redeemed {
            id,
            amount: request.amount,
            balance,
        }),
    )
        .into_response())
}

async fn replay(
    gamification: &Gamification,
    user: Uuid,
    key: &str,
    request_hash: &[u8],
) -> Result<Option<Response>, ApiError> {
    let previous: Option<(Vec<u8>, Uuid, i64)> = sqlx::query_as(
        "SELECT request_hash, ledger_id, amount FROM redemptions WHERE user_id = $1 AND key = $2",
    )
    .bind(user)
    .bind(key)
    .fetch_optional(&gamification.db)
    .await?;
    let Some((hash, id, amount)) = previous else {
        return Ok(None);
    };
    if hash != request_hash {
        return Err(ApiError::new(
            ErrorCode::UnprocessableContent,
            "this Idempotency-Key was used for a different request",
        ));
    }
    let balance: i64 =
        sqlx::query_scalar("SELECT coalesce((SELECT balance FROM balances WHERE user_id = $1), 0)")
            .bind(user)
            .fetch_one(&gamification.db)
            .await?;
    let mut response = (
        StatusCode::CREATED,
        Json(Redeemed {
            id,
            amount,
            balance,
        }),
    )
        .into_response();
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(Some(response))
}
