//! Access-token verification every service uses.
//!
//! Access tokens are Ed25519-signed JWTs issued by identity. A service verifies them locally
//! with the keys of identity's JSON Web Key Set, fetched over HTTP and cached: a token signed
//! with a key the cache does not know triggers a refetch (rate-limited), so a newly published
//! key is accepted at once; the whole set is refetched after `STRIDE_JWKS_CACHE_SECONDS`, so a
//! removed key is refused at the latest then.
//!
//! A valid signature is not enough: the token's session (`sid`) must still be active. Session
//! state is cached in Redis (identity writes revocations there immediately); when Redis has no
//! entry or cannot be reached, identity's gRPC `CheckSession` answers from PostgreSQL, the
//! durable record. So a Redis flush or outage never lets a revoked session back in.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{extract::FromRequestParts, http::request::Parts};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use stride_proto::identity::v1::{CheckSessionRequest, user_directory_client::UserDirectoryClient};
use tokio::sync::{Mutex, RwLock};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{cache::Redis, error::ApiError};

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user id.
    pub sub: Uuid,
    /// The session the token was issued in.
    pub sid: Uuid,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Not before (Unix seconds).
    pub nbf: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Unique token id.
    pub jti: Uuid,
    /// `user` or `admin`.
    pub role: String,
    /// Always `access`: no other kind of token is accepted where this one is.
    pub typ: String,
}

/// The `typ` claim of access tokens.
pub const ACCESS_TOKEN_TYPE: &str = "access";

/// Redis key (under the installation prefix) holding a session's cached state:
/// `"1"` active, `"0"` revoked.
pub fn session_cache_key(session_id: Uuid) -> String {
    format!("session:{session_id}")
}

/// How long an "active" session state is cached.
pub const ACTIVE_SESSION_CACHE: Duration = Duration::from_secs(300);

struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// Verifies access-token signatures and claims with the cached JWKS.
pub struct TokenVerifier {
    http: reqwest::Client,
    jwks_url: String,
    issuer: String,
    audience: String,
    ttl: Duration,
    cache: RwLock<KeyCache>,
    refetch: Mutex<()>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("jwks_url", &self.jwks_url)
            .finish_non_exhaustive()
    }
}

/// The least time between two fetches of the key set, so forged `kid`s cannot make a service
/// hammer identity.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_millis(500);

impl TokenVerifier {
    /// A verifier for tokens of `issuer` for `audience`, with keys from `jwks_url`.
    pub fn new(jwks_url: String, issuer: String, audience: String, ttl: Duration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
            jwks_url,
            issuer,
            audience,
            ttl,
            cache: RwLock::new(KeyCache {
                keys: HashMap::new(),
                fetched_at: None,
            }),
            refetch: Mutex::new(()),
        }
    }

    async fn fetch(&self) -> Result<(), ApiError> {
        let set: JwkSet = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| ApiError::unavailable(error, 2))?
            .json()
            .await
            .map_err(|error| ApiError::unavailable(error, 2))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, key);
                }
                Err(error) => tracing::warn!(%kid, %error, "ignoring unusable key in JWKS"),
            }
        }
        let mut cache = self.cache.write().await;
        cache.keys = keys;
        cache.fetched_at = Some(Instant::now());
        Ok(())
    }

    async fn lookup(&self, kid: &str) -> (Option<DecodingKey>, Option<Instant>) {
        let cache = self.cache.read().await;
        (cache.keys.get(kid).cloned(), cache.fetched_at)
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, ApiError> {
        let (key, fetched_at) = self.lookup(kid).await;
        let fresh = fetched_at.is_some_and(|at| at.elapsed() < self.ttl);
        if let (Some(key), true) = (&key, fresh) {
            return Ok(key.clone());
        }
        // Only one task refetches; the others wait for its result.
        let _guard = self.refetch.lock().await;
        let (key, fetched_at) = self.lookup(kid).await;
        let fresh = fetched_at.is_some_and(|at| at.elapsed() < self.ttl);
        let recently = fetched_at.is_some_and(|at| at.elapsed() < MIN_REFETCH_INTERVAL);
        if let (Some(key), true) = (key, fresh) {
            return Ok(key);
        }
        if recently && let Some(at) = fetched_at {
            // A key published a moment ago must be accepted, yet forged key ids must not make
            // us fetch more than twice a second: wait for the interval, then fetch.
            tokio::time::sleep(MIN_REFETCH_INTERVAL.saturating_sub(at.elapsed())).await;
        }
        self.fetch().await?;
        self.lookup(kid)
            .await
            .0
            .ok_or_else(|| ApiError::unauthorized("the token's signing key is unknown"))
    }

    /// Checks signature, algorithm, issuer, audience, time window and token type.
    pub async fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::unauthorized("the access token is malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(ApiError::unauthorized(
                "the access token's algorithm is not accepted",
            ));
        }
        let kid = header
            .kid
            .ok_or_else(|| ApiError::unauthorized("the access token names no signing key"))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|error| {
            use jsonwebtoken::errors::ErrorKind;
            let reason = match error.kind() {
                ErrorKind::ExpiredSignature => "the access token has expired",
                ErrorKind::ImmatureSignature => "the access token is not valid yet",
                ErrorKind::InvalidIssuer => "the access token has the wrong issuer",
                ErrorKind::InvalidAudience => "the access token has the wrong audience",
                ErrorKind::InvalidSignature => "the access token's signature is invalid",
                _ => "the access token is invalid",
            };
            ApiError::unauthorized(reason)
        })?;
        if data.claims.typ != ACCESS_TOKEN_TYPE {
            return Err(ApiError::unauthorized("this is not an access token"));
        }
        Ok(data.claims)
    }
}

/// Answers "is this session still active?" from Redis, falling back to identity.
#[derive(Clone, Debug)]
pub struct SessionChecker {
    redis: Redis,
    identity: UserDirectoryClient<Channel>,
}

impl SessionChecker {
    /// A checker over the given cache and identity client.
    pub fn new(redis: Redis, identity: UserDirectoryClient<Channel>) -> Self {
        Self { redis, identity }
    }

    /// Whether `session_id` of `user_id` may be used.
    pub async fn is_active(&self, session_id: Uuid, user_id: Uuid) -> Result<bool, ApiError> {
        let key = self.redis.key(session_cache_key(session_id));
        let mut redis = self.redis.connection();
        match redis.get::<_, Option<String>>(&key).await {
            Ok(Some(state)) => return Ok(state == "1"),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "session cache unreachable; asking identity");
                return self.ask_identity(session_id, user_id).await;
            }
        }
        let active = self.ask_identity(session_id, user_id).await?;
        if active {
            // NX: a revocation written meanwhile ("0") must not be overwritten.
            let _: Result<Option<String>, _> = redis::cmd("SET")
                .arg(&key)
                .arg("1")
                .arg("NX")
                .arg("EX")
                .arg(ACTIVE_SESSION_CACHE.as_secs())
                .query_async(&mut redis)
                .await;
        }
        Ok(active)
    }

    async fn ask_identity(&self, session_id: Uuid, user_id: Uuid) -> Result<bool, ApiError> {
        let mut identity = self.identity.clone();
        let response = identity
            .check_session(CheckSessionRequest {
                session_id: session_id.to_string(),
            })
            .await
            .map_err(|status| ApiError::unavailable(anyhow::anyhow!("identity: {status}"), 2))?
            .into_inner();
        Ok(response.active && response.user_id == user_id.to_string())
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    /// The user.
    pub user_id: Uuid,
    /// The session of the token.
    pub session_id: Uuid,
    /// Whether the token carries the admin role.
    pub is_admin: bool,
    /// The role the token carries: `user`, `partner` or `admin`.
    pub role: String,
}

/// Verifies bearer tokens and session state; installed as a request extension by the server.
#[derive(Debug)]
pub struct Authenticator {
    verifier: TokenVerifier,
    sessions: SessionChecker,
}

impl Authenticator {
    /// Combines signature verification and session checking.
    pub fn new(verifier: TokenVerifier, sessions: SessionChecker) -> Self {
        Self { verifier, sessions }
    }

    /// Authenticates a bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<AuthUser, ApiError> {
        let claims = self.verifier.verify(token).await?;
        if !self.sessions.is_active(claims.sid, claims.sub).await? {
            return Err(ApiError::unauthorized(
                "the session has ended; log in again",
            ));
        }
        Ok(AuthUser {
            user_id: claims.sub,
            session_id: claims.sid,
            is_admin: claims.role == "admin",
            role: claims.role,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(user.clone());
        }
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
        let authenticator = parts
            .extensions
            .get::<Arc<Authenticator>>()
            .cloned()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no authenticator installed")))?;
        let user = authenticator.authenticate(token).await?;
        tracing::Span::current().record("user_id", tracing::field::display(user.user_id));
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}
