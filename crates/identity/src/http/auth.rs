//! `/v1/auth/*`: registration, login, refresh, logout.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
};
use serde::{Deserialize, Serialize};
use stride_events::{Envelope, identity::UserRegistered};
use stride_platform::{
    auth::AuthUser,
    error::{ApiError, ErrorCode, Problem, is_constraint_violation},
    http::{ClientIp, Json},
    outbox,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::UserResponse;
use crate::{
    Identity, NAME,
    domain::{DisplayName, Email, NewPassword},
    hashing::Busy,
    sessions::{Refresh, RevokeReason, Which},
    store,
};

pub fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
}

impl From<Busy> for ApiError {
    fn from(busy: Busy) -> Self {
        ApiError::unavailable(busy, 1)
    }
}

/// A new account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Email address; compared case-insensitively.
    pub email: String,
    /// 8 to 256 characters; very common or easily guessed passwords are refused.
    pub password: String,
    /// Public name, 1 to 64 characters.
    pub display_name: String,
}

/// Creates an account.
#[utoipa::path(
    post,
    path = "/v1/auth/register",
    tag = "identity",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The account", body = UserResponse),
        (status = 400, description = "Invalid email, name or password", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The email is taken", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn register(
    State(identity): State<Identity>,
    Json(request): Json<RegisterRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let email = Email::parse(&request.email)?;
    let display_name = DisplayName::parse(&request.display_name)?;
    let password = NewPassword::parse(&request.password, &[email.as_str(), display_name.as_str()])?;
    let hash = identity.hashes.hash(password.expose().to_owned()).await?;
    let user_id = Uuid::now_v7();
    let mut tx = identity.db.begin().await?;
    let user = store::insert_user(
        &mut tx,
        user_id,
        email.as_str(),
        &hash,
        display_name.as_str(),
    )
    .await
    .map_err(|error| {
        if is_constraint_violation(&error, "users_email_key") {
            ApiError::conflict("an account with this email already exists")
        } else {
            error.into()
        }
    })?;
    let event = Envelope::new(
        NAME,
        user.id.to_string(),
        &UserRegistered {
            user_id: user.id,
            display_name: user.display_name.clone(),
            time_zone: user.time_zone.clone(),
            registered_at: user.created_at,
        },
    )
    .map_err(ApiError::internal)?;
    outbox::enqueue(&mut tx, &event).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "account registered");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, "/v1/me")],
        Json(UserResponse::from(user)),
    ))
}

/// Credentials.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// Tokens of a session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// Ed25519-signed JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque token for `POST /v1/auth/refresh`; single use.
    pub refresh_token: String,
}

fn too_many(delay: std::time::Duration) -> ApiError {
    ApiError::too_many_requests(
        "too many failed logins; wait before trying again",
        delay.as_secs_f64().ceil() as u64,
    )
}

/// Logs in and opens a session.
#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "identity",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "A new session", body = TokenResponse),
        (status = 401, description = "Wrong email or password", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Throttled; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn login(
    State(identity): State<Identity>,
    ClientIp(address): ClientIp,
    headers: HeaderMap,
    Json(request): Json<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    if request.password.chars().count() > crate::domain::PASSWORD_MAX_CHARS {
        return Err(ApiError::unauthorized("wrong email or password"));
    }
    // Throttled by what was typed, so unknown emails are throttled like known ones.
    let account = request.email.trim().to_lowercase();
    if let Some(delay) = identity
        .throttle
        .check(&account, address)
        .await
        .map_err(|error| ApiError::unavailable(error, 2))?
    {
        return Err(too_many(delay));
    }
    let user = match Email::parse(&request.email) {
        Ok(email) => {
            let mut connection = identity.db.acquire().await?;
            store::user_by_email(&mut connection, email.as_str()).await?
        }
        Err(_) => None,
    };
    let matches = identity
        .hashes
        .verify(
            user.as_ref().map(|u| u.password_hash.clone()),
            request.password,
        )
        .await?;
    let user = match (matches, user) {
        (true, Some(user)) => user,
        _ => {
            let imposed = identity
                .throttle
                .failure(&account, address)
                .await
                .map_err(|error| ApiError::unavailable(error, 2))?;
            tracing::info!(client = %address, throttled = imposed.is_some(), "failed login");
            return Err(ApiError::unauthorized("wrong email or password"));
        }
    };
    if user.disabled_at.is_some() {
        return Err(ApiError::forbidden(
            "this account has been disabled by an administrator",
        ));
    }
    identity
        .throttle
        .success(&account, address)
        .await
        .map_err(|error| ApiError::unavailable(error, 2))?;
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok());
    let (session_id, refresh_token) = identity
        .sessions
        .open(user.id, user_agent, &address.to_string())
        .await?;
    let access = identity.access_token(user.id, session_id, &user.role)?;
    tracing::info!(user_id = %user.id, %session_id, "logged in");
    Ok(Json(TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        refresh_token,
    }))
}

/// A refresh token to spend.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The latest refresh token of the session.
    pub refresh_token: String,
}

/// Spends a refresh token for a new access token and the next refresh token. Presenting a
/// spent refresh token again revokes the whole session.
#[utoipa::path(
    post,
    path = "/v1/auth/refresh",
    tag = "identity",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "Unknown, spent or revoked refresh token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn refresh(
    State(identity): State<Identity>,
    Json(request): Json<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    match identity
        .sessions
        .refresh(request.refresh_token.trim())
        .await?
    {
        Refresh::Rotated {
            session_id,
            user_id,
            role,
            refresh_token,
        } => {
            let access = identity.access_token(user_id, session_id, &role)?;
            Ok(Json(TokenResponse {
                access_token: access.token,
                token_type: "Bearer",
                expires_in: access.expires_in,
                refresh_token,
            }))
        }
        Refresh::Reused => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "this refresh token was already used; the session has been revoked, log in again",
        )),
        Refresh::Invalid => Err(ApiError::unauthorized(
            "the refresh token is unknown or its session has ended",
        )),
    }
}

/// Ends the caller's session: its access and refresh tokens stop working everywhere.
#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "identity",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The session has ended"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn logout(State(identity): State<Identity>, user: AuthUser) -> Result<StatusCode, ApiError> {
    identity
        .sessions
        .revoke(Which::Session(user.session_id), RevokeReason::Logout)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of the caller.
#[utoipa::path(
    post,
    path = "/v1/auth/logout-all",
    tag = "identity",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session has ended"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn logout_all(
    State(identity): State<Identity>,
    user: AuthUser,
) -> Result<StatusCode, ApiError> {
    identity
        .sessions
        .revoke(Which::AllOf(user.user_id), RevokeReason::LogoutAll)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
