//! `/v1/catalog`: partners' products (admin import, search) and replacement suggestions for
//! an item of gear.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderName, HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use stride_platform::{
    auth::AuthUser,
    cache::hex,
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

/// Imports partners' products: a JSON array or NDJSON, each row validated and upserted by
/// (partner, sku); refused rows are reported. A feed of which no row is valid is a 400 and
/// stores nothing. Administrators import for any partner; an account with the partner role
/// imports only rows whose `partner` is its own user id, so no partner can overwrite
/// another's products.
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
        (status = 403, description = "Neither an administrator nor a partner", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Feed larger than 16 MiB", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn import(
    State(inventory): State<Inventory>,
    user: AuthUser,
    body: Bytes,
) -> Result<Json<ImportReport>, ApiError> {
    // Partners publish under their own id; administrators for anyone.
    let own_partner = match user.role.as_str() {
        "admin" => None,
        "partner" => Some(user.user_id.to_string()),
        _ => {
            return Err(ApiError::forbidden(
                "importing the catalog is for administrators and partners",
            ));
        }
    };
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
            Ok((partner, _, _, _)) if own_partner.as_ref().is_some_and(|own| *own != partner) => {
                rejected.push(Rejected {
                    row: index,
                    reason: "partner must be your own account id".into(),
                });
            }
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
    // Products and their words in one statement. A row that is already stored as it is
    // (partners send whole feeds again and again) writes nothing: no new row version, no
    // index entries, no words recomputed. A change that leaves the words as they were (a
    // price, the stock) leaves `catalog_search` alone, so it stays small for ranking.
    sqlx::query(
        "WITH feed AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
                 AS feed (partner, sku, category, document)
         ), written AS (
             INSERT INTO catalog_products (partner, sku, category, document)
             SELECT partner, sku, category, document FROM feed
             ON CONFLICT (partner, sku) DO UPDATE
                 SET category = excluded.category, document = excluded.document,
                     updated_at = now()
                 WHERE (catalog_products.category, catalog_products.document)
                       IS DISTINCT FROM (excluded.category, excluded.document)
             RETURNING partner, sku, category, document
         )
         INSERT INTO catalog_search (partner, sku, category, brand, attributes, words)
         SELECT partner, sku, category, lower(document->>'brand'),
                coalesce(document->'attributes', '{}'::jsonb),
                to_tsvector('simple', coalesce(document->>'brand', '') || ' ' ||
                    coalesce(document->>'model', '') || ' ' ||
                    coalesce(document->>'name', '') || ' ' || category)
         FROM written
         ON CONFLICT (partner, sku) DO UPDATE
             SET category = excluded.category, brand = excluded.brand,
                 attributes = excluded.attributes, words = excluded.words
             WHERE (catalog_search.category, catalog_search.brand, catalog_search.attributes,
                    catalog_search.words)
                   IS DISTINCT FROM (excluded.category, excluded.brand, excluded.attributes,
                                     excluded.words)",
    )
    .bind(&partners)
    .bind(&skus)
    .bind(&categories)
    .bind(&documents)
    .execute(&inventory.db)
    .await?;
    // After the commit: a search that reads the new generation reads the new rows.
    if let Err(error) = invalidate_searches(&inventory).await {
        tracing::warn!(
            %error,
            "cannot invalidate cached catalog searches; they expire on their own"
        );
    }
    tracing::info!(upserted, rejected = rejected.len(), "catalog imported");
    Ok(Json(ImportReport { upserted, rejected }))
}

/// Search terms. Besides these, any number (up to 10) of `attr.<name>=<value>` parameters
/// filter on the product's `attributes`: `attr.drop_mm=8&attr.waterproof=true`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SearchParams {
    /// Words to find in brand, model, name or category.
    pub q: Option<String>,
    /// Only this category.
    pub category: Option<String>,
    /// Only this brand (exact, ignoring case).
    pub brand: Option<String>,
    /// At most this many products, 1 to 100 (default 20).
    pub limit: Option<u32>,
}

/// Most `attr.<name>` filters in one search.
const MAX_ATTRIBUTE_FILTERS: usize = 10;
/// Longest attribute name, attribute value or brand in a search.
const MAX_FILTER_CHARS: usize = 100;
/// The prefix of an attribute filter's parameter name.
const ATTRIBUTE_PREFIX: &str = "attr.";

/// A checked search: only what was given becomes a condition.
#[derive(Debug, PartialEq)]
struct SearchFilters {
    q: Option<String>,
    category: Option<String>,
    brand: Option<String>,
    /// Matched by containment in the document's `attributes`, so the `jsonb_path_ops` GIN
    /// index serves them.
    attributes: serde_json::Map<String, Value>,
    limit: i64,
}

/// A filter's value as JSON: numbers and booleans when they read as such, so that `8`
/// matches the number 8 in a document; anything else is a string.
fn attribute_value(raw: &str) -> Value {
    match raw {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    // serde_json accepts surrounding whitespace; " 8" stays the string it was sent as.
    if raw.trim() == raw
        && let Ok(number) = serde_json::from_str::<serde_json::Number>(raw)
    {
        return Value::Number(number);
    }
    Value::String(raw.to_owned())
}

/// A trimmed text parameter, `None` when empty.
fn given(value: Option<String>) -> Option<String> {
    value
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

impl SearchFilters {
    /// Checks the named parameters and the query string's `attr.<name>` pairs (other pairs
    /// are ignored).
    fn parse(params: SearchParams, pairs: Vec<(String, String)>) -> Result<Self, String> {
        let limit = match params.limit {
            None => 20,
            Some(limit @ 1..=100) => i64::from(limit),
            Some(_) => return Err("limit must be between 1 and 100".into()),
        };
        let brand = given(params.brand);
        if brand
            .as_ref()
            .is_some_and(|brand| brand.chars().count() > MAX_FILTER_CHARS)
        {
            return Err(format!("brand is limited to {MAX_FILTER_CHARS} characters"));
        }
        let mut attributes = serde_json::Map::new();
        for (key, value) in &pairs {
            if let Some(name) = key.strip_prefix(ATTRIBUTE_PREFIX) {
                Self::add_attribute(&mut attributes, name, value)?;
            }
        }
        Ok(Self {
            q: given(params.q),
            category: given(params.category),
            brand,
            attributes,
            limit,
        })
    }

    fn add_attribute(
        attributes: &mut serde_json::Map<String, Value>,
        name: &str,
        value: &str,
    ) -> Result<(), String> {
        if name.is_empty() || name.chars().count() > MAX_FILTER_CHARS {
            return Err(format!(
                "an attribute filter is attr.<name>=<value> with a name of 1 to {MAX_FILTER_CHARS} characters"
            ));
        }
        if value.is_empty() || value.chars().count() > MAX_FILTER_CHARS {
            return Err(format!(
                "attr.{name} must have a value of 1 to {MAX_FILTER_CHARS} characters"
            ));
        }
        if attributes.contains_key(name) {
            return Err(format!("attr.{name} is given more than once"));
        }
        if attributes.len() == MAX_ATTRIBUTE_FILTERS {
            return Err(format!(
                "a search is limited to {MAX_ATTRIBUTE_FILTERS} attribute filters"
            ));
        }
        attributes.insert(name.to_owned(), attribute_value(value));
        Ok(())
    }

    /// The query. Every filter is answered in `catalog_search` (keys, category, brand,
    /// attributes and words: narrow rows, so ranking or sorting thousands of matches reads
    /// few pages), and the documents are read by key for the products returned. Text matches
    /// come best first (by `ts_rank`, ties by partner and SKU); without text, products come
    /// by partner and SKU.
    fn query(&self) -> sqlx::QueryBuilder<'_, sqlx::Postgres> {
        self.with_documents(None)
    }

    /// For a search without text but with brand or attribute filters: the filters applied to
    /// the first [`HEAD_ROWS`] products of the category (or of the catalog) in partner and SKU
    /// order, which an index returns in that order. When that finds `limit` products, they
    /// are the answer: every other match comes later in the same order. Filters that match
    /// many products (the searches that would otherwise sort thousands of matches) end here
    /// after reading a few hundred rows; rarer ones fall through to [`Self::query`], whose
    /// matches are few.
    fn head_query(&self) -> Option<sqlx::QueryBuilder<'_, sqlx::Postgres>> {
        if self.q.is_some() || (self.brand.is_none() && self.attributes.is_empty()) {
            return None;
        }
        Some(self.with_documents(Some(HEAD_ROWS)))
    }

    /// The best keys ([`Self::push_best_keys`]) joined to their documents, in the same order.
    fn with_documents(&self, head: Option<i64>) -> sqlx::QueryBuilder<'_, sqlx::Postgres> {
        let mut query =
            sqlx::QueryBuilder::new("SELECT p.partner, p.sku, p.category, p.document FROM (");
        self.push_best_keys(&mut query, head);
        query.push(") AS best JOIN catalog_products p USING (partner, sku) ORDER BY ");
        if self.q.is_some() {
            query.push("best.rank DESC, ");
        }
        query.push("p.partner, p.sku");
        query
    }

    /// `SELECT partner, sku, rank` of the best `limit` matches in `catalog_search`, among the
    /// first `head` rows of the category (or of the catalog) in partner and SKU order when
    /// given.
    fn push_best_keys<'a>(
        &'a self,
        query: &mut sqlx::QueryBuilder<'a, sqlx::Postgres>,
        head: Option<i64>,
    ) {
        query.push("SELECT s.partner, s.sku");
        if let Some(q) = &self.q {
            query
                .push(", ts_rank(s.words, plainto_tsquery('simple', ")
                .push_bind(q)
                .push(")) AS rank");
        }
        match head {
            Some(rows) => {
                query.push(" FROM (SELECT * FROM catalog_search WHERE true");
                self.push_category(query);
                query
                    .push(" ORDER BY partner, sku LIMIT ")
                    .push_bind(rows)
                    .push(") AS s WHERE true");
            }
            None => {
                query.push(" FROM catalog_search s WHERE true");
                self.push_category(query);
            }
        }
        if let Some(q) = &self.q {
            query
                .push(" AND s.words @@ plainto_tsquery('simple', ")
                .push_bind(q)
                .push(")");
        }
        if let Some(brand) = &self.brand {
            query
                .push(" AND s.brand = lower(")
                .push_bind(brand)
                .push(")");
        }
        if !self.attributes.is_empty() {
            query
                .push(" AND s.attributes @> ")
                .push_bind(Value::Object(self.attributes.clone()))
                .push("::jsonb");
        }
        query.push(" ORDER BY ");
        if self.q.is_some() {
            query.push("rank DESC, ");
        }
        query.push("s.partner, s.sku LIMIT ").push_bind(self.limit);
    }

    /// The category filter, if given, on an unqualified `catalog_search`.
    fn push_category<'a>(&'a self, query: &mut sqlx::QueryBuilder<'a, sqlx::Postgres>) {
        if let Some(category) = &self.category {
            query
                .push(" AND category = lower(")
                .push_bind(category)
                .push(")");
        }
    }
}

/// How many products in order a search without text tries before it asks the indexes for
/// every match ([`SearchFilters::head_query`]).
const HEAD_ROWS: i64 = 2_000;

/// The catalog's generation, bumped after every import: cached answers are filed under the
/// generation they were computed from, so an import makes every older answer unreachable at
/// once (they expire on their own), on every replica.
fn generation_key(inventory: &Inventory) -> String {
    inventory.redis.key("catalog:generation")
}

async fn invalidate_searches(inventory: &Inventory) -> redis::RedisResult<()> {
    let mut connection = inventory.redis.connection();
    redis::cmd("INCR")
        .arg(generation_key(inventory))
        .query_async::<i64>(&mut connection)
        .await?;
    Ok(())
}

/// The cache key of a search: the catalog's generation and a digest of the checked filters.
async fn cache_key(inventory: &Inventory, filters: &SearchFilters) -> redis::RedisResult<String> {
    let mut connection = inventory.redis.connection();
    let generation: Option<u64> = redis::cmd("GET")
        .arg(generation_key(inventory))
        .query_async(&mut connection)
        .await?;
    let canonical = serde_json::json!([
        filters.q,
        filters.category,
        filters.brand,
        filters.attributes,
        filters.limit
    ]);
    let digest = hex(&Sha256::digest(canonical.to_string().as_bytes()));
    Ok(inventory.redis.key(format!(
        "catalog:search:{}:{digest}",
        generation.unwrap_or(0)
    )))
}

/// A JSON answer from bytes, saying whether the cache had it.
fn json_answer(body: Vec<u8>, cache: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                HeaderName::from_static("x-cache"),
                HeaderValue::from_static(cache),
            ),
        ],
        body,
    )
        .into_response()
}

/// Products found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Products {
    /// Best matches first.
    pub products: Vec<Product>,
}

/// Full-text and attribute search of the catalog: `q`, `category`, `brand` and up to 10
/// `attr.<name>=<value>` filters (numbers and `true`/`false` match JSON numbers and booleans,
/// anything else a string), all of which must hold. With `q`, the best matches come first
/// (more occurrences of the words rank higher; equal ranks by partner and SKU); without it,
/// products come by partner and SKU.
///
/// Answers are cached in Redis for `STRIDE_CATALOG_SEARCH_CACHE_SECONDS` under the catalog's
/// generation, which every import bumps: a search after an import always sees it. `X-Cache`
/// says `hit`, `miss` or `off`.
#[utoipa::path(
    get,
    path = "/v1/catalog/search",
    tag = "inventory",
    security(("bearer" = [])),
    params(SearchParams),
    responses(
        (status = 200, description = "Products, best matches first", body = Products,
            headers(("X-Cache" = String, description = "`hit`: from the search cache; `miss`: computed and cached; `off`: no cache"))),
        (status = 400, description = "Bad limit, more than 10 attribute filters, a name or value over 100 characters", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn search(
    State(inventory): State<Inventory>,
    _user: AuthUser,
    Query(params): Query<SearchParams>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let filters = SearchFilters::parse(params, pairs).map_err(ApiError::validation)?;
    // Redis trouble only costs the cache: the search goes to PostgreSQL.
    let key = if inventory.search_cache.is_zero() {
        None
    } else {
        cache_key(&inventory, &filters).await.ok()
    };
    if let Some(key) = &key {
        let cached: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut inventory.redis.connection())
            .await;
        if let Ok(Some(body)) = cached {
            return Ok(json_answer(body, "hit"));
        }
    }
    let mut products = Vec::new();
    if let Some(mut head) = filters.head_query() {
        products = head.build_query_as().fetch_all(&inventory.db).await?;
    }
    if usize::try_from(filters.limit).is_ok_and(|limit| products.len() < limit) {
        products = filters
            .query()
            .build_query_as()
            .fetch_all(&inventory.db)
            .await?;
    }
    let body = serde_json::to_vec(&Products { products }).map_err(ApiError::internal)?;
    if let Some(key) = &key {
        let stored: redis::RedisResult<()> = redis::cmd("SET")
            .arg(key)
            .arg(&body)
            .arg("EX")
            .arg(inventory.search_cache.as_secs().max(1))
            .query_async(&mut inventory.redis.connection())
            .await;
        if let Err(error) = stored {
            tracing::debug!(%error, "cannot cache a catalog search");
        }
    }
    Ok(json_answer(
        body,
        if key.is_some() { "miss" } else { "off" },
    ))
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
        "SELECT p.partner, p.sku, p.category, p.document
         FROM ((SELECT partner, sku, 1 AS tier FROM catalog_search
                WHERE category = $1 AND brand = lower($2) ORDER BY partner, sku LIMIT 20)
               UNION ALL
               (SELECT partner, sku, 2 AS tier FROM catalog_search
                WHERE category = $1 AND brand IS DISTINCT FROM lower($2)
                ORDER BY partner, sku LIMIT 20)
               ORDER BY tier, partner, sku LIMIT 20) AS best
         JOIN catalog_products p USING (partner, sku)
         ORDER BY best.tier, p.partner, p.sku",
    )
    .bind(category)
    .bind(&gear.brand)
    .fetch_all(&mut *connection)
    .await?;
    Ok(Json(Products { products }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn no_params() -> SearchParams {
        SearchParams {
            q: None,
            category: None,
            brand: None,
            limit: None,
        }
    }

    fn attributes(pairs: &[(&str, &str)]) -> Result<SearchFilters, String> {
        let pairs = pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        SearchFilters::parse(no_params(), pairs)
    }

    #[test]
    fn attribute_values_are_numbers_and_booleans_when_they_read_as_such() {
        assert_eq!(attribute_value("8"), json!(8));
        assert_eq!(attribute_value("-2.5"), json!(-2.5));
        assert_eq!(attribute_value("true"), json!(true));
        assert_eq!(attribute_value("false"), json!(false));
        assert_eq!(attribute_value("True"), json!("True"));
        assert_eq!(attribute_value(" 8"), json!(" 8"));
        assert_eq!(attribute_value("08"), json!("08"));
        assert_eq!(attribute_value("11-speed"), json!("11-speed"));
        assert_eq!(attribute_value("NaN"), json!("NaN"));
    }

    #[test]
    fn only_given_filters_are_kept_and_other_parameters_ignored() {
        let params = SearchParams {
            q: Some(" ultegra ".into()),
            category: Some(" ".into()),
            brand: Some("Shimano".into()),
            limit: None,
        };
        let pairs = vec![
            ("q".into(), " ultegra ".into()),
            ("attr.speeds".into(), "11".into()),
            ("attr.colour".into(), "black".into()),
            ("page".into(), "2".into()),
        ];
        let filters = SearchFilters::parse(params, pairs).expect("valid");
        assert_eq!(filters.q.as_deref(), Some("ultegra"));
        assert_eq!(filters.category, None);
        assert_eq!(filters.brand.as_deref(), Some("Shimano"));
        assert_eq!(
            Value::Object(filters.attributes),
            json!({"speeds": 11, "colour": "black"})
        );
        assert_eq!(filters.limit, 20);
    }

    #[test]
    fn too_many_or_too_long_filters_are_refused() {
        let names: Vec<String> = (0..=MAX_ATTRIBUTE_FILTERS)
            .map(|i| format!("attr.a{i}"))
            .collect();
        let eleven: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "1")).collect();
        assert!(attributes(&eleven[..MAX_ATTRIBUTE_FILTERS]).is_ok());
        assert!(attributes(&eleven).is_err());
        let long = "x".repeat(MAX_FILTER_CHARS + 1);
        let long_name = format!("attr.{long}");
        for refused in [
            vec![(long_name.as_str(), "1")],
            vec![("attr.colour", long.as_str())],
            vec![("attr.", "1")],
            vec![("attr.colour", "")],
            vec![("attr.colour", "red"), ("attr.colour", "blue")],
        ] {
            assert!(attributes(&refused).is_err(), "{refused:?}");
        }
        let long_brand = SearchParams {
            brand: Some(long.clone()),
            ..no_params()
        };
        assert!(SearchFilters::parse(long_brand, Vec::new()).is_err());
        let zero = SearchParams {
            limit: Some(0),
            ..no_params()
        };
        assert!(SearchFilters::parse(zero, Vec::new()).is_err());
    }
}
