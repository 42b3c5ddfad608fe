//! `GET /.well-known/jwks.json`: the public keys that verify access tokens.

use axum::{extract::State, http::header, response::IntoResponse};
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{Identity, keys::PublicJwk};

pub fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new().routes(routes!(jwks))
}

/// A JSON Web Key Set.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JwkSet {
    /// The keys that currently verify access tokens.
    pub keys: Vec<PublicJwk>,
}

/// The JSON Web Key Set of access-token signing keys.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "identity",
    responses((status = 200, description = "The published keys", body = JwkSet))
)]
async fn jwks(State(identity): State<Identity>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        axum::Json(JwkSet {
            keys: identity.keys.published(),
        }),
    )
}
