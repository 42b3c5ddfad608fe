//! `Idempotency-Key` for requests that create something: a retried request with the same key
//! and body gets the first answer (the resource it created), never a second resource.
//!
//! Each service keeps its keys in a table of its own database,
//! `(owner_id uuid, key text, request_hash bytea, <resource> uuid, created_at)` with the
//! primary key `(owner_id, key)`, described by a [`Requests`]. The key is recorded in the
//! transaction that creates the resource, so a request that fails records nothing and its key
//! stays usable.
//!
//! ```text
//! let key = idempotency_key(&headers)?;           // crate::http
//! let hash = Requests::hash(&body);
//! if let Some(key) = &key && let Some(id) = REQUESTS.created(&db, user, key, &hash).await? {
//!     return replay(id);                          // 201 + Idempotent-Replayed: true
//! }
//! ... create `id` in `tx` ...
//! if let Some(key) = &key && !REQUESTS.record(&mut tx, user, key, &hash, id).await? {
//!     tx.rollback().await.ok();                   // a concurrent retry won: answer as it did
//! }
//! ```

use axum::{http::HeaderValue, response::Response};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::{ApiError, ErrorCode, is_constraint_violation};

/// A service's table of idempotency keys.
#[derive(Debug, Clone, Copy)]
pub struct Requests {
    /// The table, e.g. `gear_requests`.
    pub table: &'static str,
    /// The column holding the created resource's id, e.g. `gear_id`.
    pub resource_column: &'static str,
}

impl Requests {
    /// The digest that tells a retry from another request with the same key. `serde_json`
    /// keeps object keys sorted, so equal bodies hash equally whatever their key order.
    pub fn hash(body: &serde_json::Value) -> Vec<u8> {
        Sha256::digest(body.to_string().as_bytes()).to_vec()
    }

    /// The resource that `owner`'s earlier request with `key` created, if there was one. The
    /// same key with another body is a 422.
    pub async fn created(
        &self,
        db: &PgPool,
        owner: Uuid,
        key: &str,
        request_hash: &[u8],
    ) -> Result<Option<Uuid>, ApiError> {
        let previous: Option<(Vec<u8>, Uuid)> = sqlx::query_as(&format!(
            "SELECT request_hash, {} FROM {} WHERE owner_id = $1 AND key = $2",
            self.resource_column, self.table
        ))
        .bind(owner)
        .bind(key)
        .fetch_optional(db)
        .await?;
        match previous {
            None => Ok(None),
            Some((hash, _)) if hash != request_hash => Err(ApiError::new(
                ErrorCode::UnprocessableContent,
                "this Idempotency-Key was used for a different request",
            )),
            Some((_, id)) => Ok(Some(id)),
        }
    }

    /// Records `key` for the resource `id` inside the creating transaction. `Ok(false)`: a
    /// concurrent request with the same key recorded it first; roll back and answer as it
    /// did ([`Requests::created`]).
    pub async fn record(
        &self,
        connection: &mut PgConnection,
        owner: Uuid,
        key: &str,
        request_hash: &[u8],
        id: Uuid,
    ) -> Result<bool, ApiError> {
        let recorded = sqlx::query(&format!(
            "INSERT INTO {} (owner_id, key, request_hash, {}) VALUES ($1, $2, $3, $4)",
            self.table, self.resource_column
        ))
        .bind(owner)
        .bind(key)
        .bind(request_hash)
        .bind(id)
        .execute(connection)
        .await;
        match recorded {
            Ok(_) => Ok(true),
            Err(error) if is_constraint_violation(&error, &format!("{}_pkey", self.table)) => {
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// The answer when a concurrent request with the same key is still creating its resource.
pub fn in_progress() -> ApiError {
    ApiError::conflict("a request with this Idempotency-Key is in progress")
}

/// Marks a replayed answer with `Idempotent-Replayed: true`.
pub fn mark_replayed(response: &mut Response) {
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
}
