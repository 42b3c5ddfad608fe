//! `/v1/catalog`: partners' products (admin import, search) and replacement suggestions for
//! an item of gear.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, State},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, Problem},
    http::{Json, Path, Query},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{Inventory, store};

pub fn router() -> OpenApiRouter<Inventory> {
    OpenApiRouter::new()
        .routes(routes!(import))
        .layer(DefaultBodyLimit::max(MAX_FEED_BYTES))
        .routes(routes!(search))
        .routes(routes!(replacements))
}

/// Largest feed accepted in one request.
const MAX_FEED_BYTES: usize = 16 * 1024 * 1024;
/// Largest product document.
const MAX_ROW_BYTES: usize = 64 * 1024;
/// Most rows in one feed.
const MAX_ROWS: usize = 100_000;

/// A product of a partner, as stored.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Product {
    /// The partner.
    pub partner: String,
    /// The partner's SKU.
    pub sku: String,
    /// `shoes`, `bike`, `chain`, `tyre`, ...
    pub category: String,
    /// The whole document (brand, model, attributes, price, link).
    #[schema(value_type = Object)]
    pub document: Value,
}

/// A row that was not imported.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rejected {
    /// Its position in the feed, from 0.
    pub row: usize,
    /// Why.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Rows inserted or updated.
    pub upserted: usize,
    /// Rows refused, with reasons.
    pub rejected: Vec<Rejected>,
}

fn text<'a>(row: &'a Value, field: &str, max: usize) -> Result<&'a str, String> {
    match row.get(field).and_then(Value::as_str).map(str::trim) {
        Some(value) if !value.is_empty() && value.chars().count() <= max => Ok(value),
        Some(_) => Err(format!("{field} must have 1 to {max} characters")),
        None => Err(format!("{field} is required and must be a string")),
    }
}

/// Checks one row; returns (partner, sku, category).
fn validate_row(raw: &str) -> Result<(String, String, String, Value), String> {
    if raw.len() > MAX_ROW_BYTES {
        return Err(format!("a product is limited to {MAX_ROW_BYTES} bytes"));
    }
    let row: Value = serde_json::from_str(raw).map_err(|error| format!("invalid JSON: {error}"))?;
    if !row.is_object() {
        return Err("a product must be a JSON object".into());
    }
    let partner = text(&row, "partner", 100)?.to_owned();
    let sku = text(&row, "sku", 100)?.to_owned();
    let category = text(&row, "category", 50)?.to_lowercase();
    text(&row, "brand", 100)?;
    text(&row, "model", 200)?;
    if let Some(price) = row.get("price") {
        let amount = price.get("amount").and_then(Value::as_f64);
        let currency = price.get("currency").and_then(Value::as_str);
        if !amount.is_some_and(|a| a.is_finite() && a >= 0.0)
            || !currency.is_some_and(|c| c.len() == 3 && c.chars().all(|c| c.is_ascii_uppercase()))
        {
            return Err("price must be {amount ≥ 0, currency: ISO 4217 code}".into());
        }
    }
    if let Some(link) = row.get("link")
        && !link
            .as_str()
            .is_some_and(|l| l.starts_with("https://") || l.starts_with("http://"))
    {
        return Err("link must be an http(s) URL".into());
    }
    Ok((partner, sku, category, row))
}

/// The rows of a feed: a JSON array or NDJSON (one object per line).
fn split_rows(body: &str) -> Result<Vec<String>, ApiError> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('[') {
        let rows: Vec<&serde_json::value::RawValue> = serde_json::from_str(trimmed)
            .map_err(|error| ApiError::validation(format!("invalid JSON array: {error}")))?;
        return Ok(rows.into_iter().map(|row| row.get().to_owned()).collect());
    }
    Ok(body
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect())
}

/// Imports partners' products (administrators only): a JSON array or NDJSON, each row
/// validated and upserted by (partner, sku); refused rows are reported. A feed of which no
/// row is valid is a 400 and stores nothing.
#[utoipa::path(
    post,
    path = "/v1/catalog/import",
    tag = "inventory",
    security(("bearer" = [])),
    request_body(content = String, description = "JSON array or NDJSON of products", content_type = "application/x-ndjson"),
    responses(
        (status = 200, description = "What was imported and what was refused", body = ImportReport),
        (status = 400, description = "No valid row, or a malformed feed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Feed larger than 16 MiB", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn import(
    State(inventory): State<Inventory>,
    user: AuthUser,
    body: Bytes,
) -> Result<Json<ImportReport>, ApiError> {
    if !user.is_admin {
        return Err(ApiError::forbidden(
            "importing the catalog is for administrators",
        ));
    }
    let body =
        std::str::from_utf8(&body).map_err(|_| ApiError::validation("the feed must be UTF-8"))?;
    let rows = split_rows(body)?;
    if rows.len() > MAX_ROWS {
        return Err(ApiError::validation(format!(
            "a feed is limited to {MAX_ROWS} rows"
        )));
    }
    let mut rejected = Vec::new();
    // The last row of a (partner, sku) wins, as if the rows were applied in order.
    let mut accepted: HashMap<(String, String), (usize, String, Value)> = HashMap::new();
    for (index, raw) in rows.iter().enumerate() {
        match validate_row(raw) {
            Ok((partner, sku, category, document)) => {
                accepted.insert((partner, sku), (index, category, document));
            }
            Err(reason) => rejected.push(Rejected { row: index, reason }),
        }
    }
    if accepted.is_empty() {
        let first = rejected.first().map_or_else(
            || "the feed is empty".to_owned(),
            |r| format!("row {}: {}", r.row, r.reason),
        );
        return Err(ApiError::validation(format!(
            "no product in the feed is valid; {first}"
        )));
    }
    let mut partners = Vec::with_capacity(accepted.len());
    let mut skus = Vec::with_capacity(accepted.len());
    let mut categories = Vec::with_capacity(accepted.len());
    let mut documents = Vec::with_capacity(accepted.len());
    for ((partner, sku), (_, category, document)) in accepted {
        partners.push(partner);
        skus.push(sku);
        categories.push(category);
        documents.push(document);
    }
    let upserted = partners.len();
    sqlx::query(
        "INSERT INTO catalog_products (partner, sku, category, document)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
         ON CONFLICT (partner, sku) DO UPDATE
            SET category = excluded.category, document = excluded.document, updated_at = now()",
    )
    .bind(&partners)
    .bind(&skus)
    .bind(&categories)
    .bind(&documents)
    .execute(&inventory.db)
    .await?;
    tracing::info!(upserted, rejected = rejected.len(), "catalog imported");
    Ok(Json(ImportReport { upserted, rejected }))
}

/// Search terms.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SearchParams {
    /// Words to find in brand, model, name or category.
    pub q: Option<String>,
    /// Only this category.
    pub category: Option<String>,
    /// At most this many products, 1 to 100 (default 20).
    pub limit: Option<u32>,
}

/// Products found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Products {
    /// Best matches first.
    pub products: Vec<Product>,
}

/// Full-text search of the catalog.
#[utoipa::path(
    get,
    path = "/v1/catalog/search",
    tag = "inventory",
    security(("bearer" = [])),
    params(SearchParams),
    responses(
        (status = 200, description = "Products", body = Products),
        (status = 400, description = "Bad limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn search(
    State(inventory): State<Inventory>,
    _user: AuthUser,
    Query(params): Query<SearchParams>,
) -> Result<Json<Products>, ApiError> {
    let limit = match params.limit {
        None => 20,
        Some(limit @ 1..=100) => i64::from(limit),
        Some(_) => return Err(ApiError::validation("limit must be between 1 and 100")),
    };
    let q = params
        .q
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty());
    // Only the given filters become conditions, so the planner can use the full-text (GIN)
    // and category indexes instead of scanning every product.
    let mut query = sqlx::QueryBuilder::new(
        "SELECT partner, sku, category, document FROM catalog_products WHERE true",
    );
    if let Some(q) = &q {
        query
            .push(" AND search @@ plainto_tsquery('simple', ")
            .push_bind(q.clone())
            .push(")");
    }
    if let Some(category) = &params.category {
        query
            .push(" AND category = lower(")
            .push_bind(category.clone())
            .push(")");
    }
    query.push(" ORDER BY ");
    if let Some(q) = &q {
        query
            .push("ts_rank(search, plainto_tsquery('simple', ")
            .push_bind(q.clone())
            .push(")) DESC, ");
    }
    query.push("partner, sku LIMIT ").push_bind(limit);
    let products: Vec<Product> = query.build_query_as().fetch_all(&inventory.db).await?;
    Ok(Json(Products { products }))
}

/// Products of the same category as an item of the caller's (its component type for
/// components, its kind otherwise).
#[utoipa::path(
    get,
    path = "/v1/gear/{id}/replacements",
    tag = "inventory",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Gear id")),
    responses(
        (status = 200, description = "Products", body = Products),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such gear of the caller", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn replacements(
    State(inventory): State<Inventory>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Products>, ApiError> {
    let mut connection = inventory.db.acquire().await?;
    let gear = store::owned_gear(&mut connection, user.user_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such gear"))?;
    let category = gear.component_type.clone().unwrap_or(gear.kind.clone());
    let products: Vec<Product> = sqlx::query_as(
        "SELECT partner, sku, category, document FROM catalog_products WHERE category = $1
         ORDER BY (document->>'brand' = $2) DESC, partner, sku LIMIT 20",
    )
    .bind(category)
    .bind(&gear.brand)
    .fetch_all(&mut *connection)
    .await?;
    Ok(Json(Products { products }))
}
