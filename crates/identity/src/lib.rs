//! The identity service: accounts, credentials, sessions, roles and device credentials.
//!
//! - [`domain`]: validated values (email, password policy, profile fields, device kinds);
//! - [`hashing`]: argon2id password hashing on a bounded, low-priority thread pool;
//! - [`keys`]: the Ed25519 keys that sign access tokens, published as a JWKS;
//! - [`sessions`]: sessions and rotating refresh tokens (PostgreSQL record, Redis cache);
//! - [`throttle`]: login throttling in Redis;
//! - [`store`]: SQL for accounts and devices;
//! - [`http`]: the REST API (`/v1/auth/*`, `/v1/me`, `/v1/devices`, `/v1/users/{id}`,
//!   `/v1/admin/*`, `/.well-known/jwks.json`);
//! - [`grpc`]: `UserDirectory` for the other services (profiles, session checks, devices).
//!
//! The service publishes `identity.user_registered.v1`, `identity.user_updated.v1` and
//! `identity.user_deleted.v1` through the platform's outbox.

pub mod domain;
pub mod grpc;
pub mod hashing;
pub mod http;
pub mod keys;
pub mod sessions;
pub mod store;
pub mod throttle;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use chrono::Utc;
use sqlx::PgPool;
use stride_platform::{
    auth::{ACCESS_TOKEN_TYPE, Claims},
    config::Config,
    outbox::Relay,
    service::{Context, Service, ServiceSpec, Worker},
};
use uuid::Uuid;

use crate::{hashing::HashPool, keys::KeyRing, sessions::Sessions, throttle::Throttle};

/// The service's name: its target and database suffix.
pub const NAME: &str = "identity";

/// The identity service's migrations.
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How the binary finds this service.
pub static SERVICE: ServiceSpec = ServiceSpec {
    name: NAME,
    migrations: &MIGRATIONS,
    build: |context| Box::pin(build(context)),
};

/// Shared state of the identity handlers.
#[derive(Clone, Debug)]
pub struct Identity {
    pub(crate) db: PgPool,
    pub(crate) keys: KeyRing,
    pub(crate) hashes: HashPool,
    pub(crate) sessions: Sessions,
    pub(crate) throttle: Throttle,
    pub(crate) config: Arc<Config>,
}

/// An access token and its lifetime.
pub(crate) struct AccessToken {
    pub token: String,
    pub expires_in: u64,
}

impl Identity {
    /// Signs an access token for a session.
    pub(crate) fn access_token(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        role: &str,
    ) -> anyhow::Result<AccessToken> {
        let now = Utc::now().timestamp();
        let lifetime = self.config.access_token_seconds;
        let claims = Claims {
            iss: self.config.jwt_issuer.clone(),
            aud: self.config.jwt_audience.clone(),
            sub: user_id,
            sid: session_id,
            iat: now,
            nbf: now,
            exp: now + lifetime as i64,
            jti: Uuid::now_v7(),
            role: role.to_owned(),
            typ: ACCESS_TOKEN_TYPE.to_owned(),
        };
        Ok(AccessToken {
            token: self.keys.sign(&claims)?,
            expires_in: lifetime,
        })
    }
}

async fn build(context: Context) -> anyhow::Result<Service> {
    let keys = KeyRing::load(context.db.clone()).await?;
    let state = Identity {
        db: context.db.clone(),
        keys: keys.clone(),
        hashes: HashPool::start(context.config.password_hash_threads),
        sessions: Sessions::new(
            context.db.clone(),
            context.redis.clone(),
            context.config.session_ttl(),
            context.config.access_token_ttl(),
        ),
        throttle: Throttle::new(context.redis.clone()),
        config: context.config.clone(),
    };
    let relay = Relay::new(context.db.clone(), context.broker.clone());
    let sessions = state.sessions.clone();
    let workers = vec![
        Worker::new("identity-outbox-relay", move |token| relay.run(token)),
        Worker::new("identity-session-cache", move |token| {
            sessions.maintain(token)
        }),
        Worker::new("identity-key-reload", move |token| reload_keys(keys, token)),
    ];
    Ok(Service {
        name: NAME,
        router: http::router(state.clone()),
        grpc: Some(grpc::routes(state)),
        workers,
        db: context.db,
    })
}

/// Other identity replicas may rotate keys; pick their changes up.
async fn reload_keys(
    keys: KeyRing,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        if let Err(error) = keys.reload().await {
            tracing::warn!(
                error = format!("{error:#}"),
                "reloading signing keys failed"
            );
        }
    }
}

/// Gives the account with `email` a role (the `stride admin grant` command). Takes effect
/// with the account's next access token.
pub async fn grant_role(config: &Config, email: &str, role: domain::Role) -> anyhow::Result<()> {
    let pool = stride_platform::db::connect(config, NAME).await?;
    stride_platform::db::migrate(&pool, &MIGRATIONS).await?;
    let email = domain::Email::parse(email).map_err(|invalid| anyhow::anyhow!(invalid.0))?;
    let updated = sqlx::query("UPDATE users SET role = $2, updated_at = now() WHERE email = $1")
        .bind(email.as_str())
        .bind(role.as_str())
        .execute(&pool)
        .await
        .context("granting the role")?
        .rows_affected();
    pool.close().await;
    if updated == 0 {
        anyhow::bail!("no account has the email {}", email.as_str());
    }
    Ok(())
}

/// Gives the account with `email` the admin role.
pub async fn grant_admin(config: &Config, email: &str) -> anyhow::Result<()> {
    grant_role(config, email, domain::Role::Admin).await
}
