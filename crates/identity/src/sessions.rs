//! Sessions: PostgreSQL is the durable record, Redis the cache every service reads.
//!
//! A login opens a session and issues its first refresh token; each refresh spends the token
//! and issues the next one in the same family. Presenting a spent token again means it was
//! stolen or replayed, so the whole session is revoked.
//!
//! Revocation is written to PostgreSQL first (committed, so it is never lost), then to Redis as
//! `"0"`. If Redis cannot be written the row stays marked `revocation_cached = false` and a
//! worker retries until Redis has it; meanwhile services whose Redis is down ask identity,
//! which answers from PostgreSQL.

use std::time::Duration;

use anyhow::Context as _;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use stride_platform::{
    auth::{ACTIVE_SESSION_CACHE, session_cache_key},
    cache::Redis,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Prefix of refresh tokens, so a leaked one is recognisable.
const REFRESH_PREFIX: &str = "srt_";

/// A new opaque secret with `prefix`, and the SHA-256 of the whole string (what is stored).
pub fn new_secret(prefix: &str) -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = digest(&secret);
    (secret, hash)
}

/// SHA-256 of a secret. Secrets are 256 random bits, so a fast hash is enough.
pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Why a session ended; stored for the record.
#[derive(Debug, Clone, Copy)]
pub enum RevokeReason {
    /// The user logged out.
    Logout,
    /// The user logged out everywhere.
    LogoutAll,
    /// A spent refresh token was presented again.
    RefreshTokenReuse,
    /// The password changed.
    PasswordChanged,
    /// An administrator disabled the account.
    AccountDisabled,
    /// The account was deleted.
    AccountDeleted,
}

impl RevokeReason {
    fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::LogoutAll => "logout_all",
            RevokeReason::RefreshTokenReuse => "refresh_token_reuse",
            RevokeReason::PasswordChanged => "password_changed",
            RevokeReason::AccountDisabled => "account_disabled",
            RevokeReason::AccountDeleted => "account_deleted",
        }
    }
}

/// Which sessions to revoke.
#[derive(Debug, Clone, Copy)]
pub enum Which {
    /// One session.
    Session(Uuid),
    /// Every session of a user.
    AllOf(Uuid),
    /// Every session of a user except one.
    AllOfExcept(Uuid, Uuid),
}

/// The outcome of presenting a refresh token.
#[derive(Debug)]
pub enum Refresh {
    /// A new refresh token for the same session.
    Rotated {
        /// The session.
        session_id: Uuid,
        /// Its user.
        user_id: Uuid,
        /// The user's role.
        role: String,
        /// The new refresh token.
        refresh_token: String,
    },
    /// The token had been spent already: the session is now revoked.
    Reused,
    /// Unknown token, or its session has ended.
    Invalid,
}

/// A refresh token with its session and user, as read when it is spent.
#[derive(sqlx::FromRow)]
struct RefreshRow {
    session_id: Uuid,
    used_at: Option<DateTime<Utc>>,
    user_id: Uuid,
    revoked_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
    /// `None` with `role` when the user no longer exists.
    disabled_at: Option<DateTime<Utc>>,
    role: Option<String>,
}

/// Session operations.
#[derive(Clone, Debug)]
pub struct Sessions {
    pool: PgPool,
    redis: Redis,
    session_ttl: Duration,
    revoked_cache_ttl: Duration,
}

impl Sessions {
    /// Sessions in `pool`, cached in `redis`.
    pub fn new(pool: PgPool, redis: Redis, session_ttl: Duration, access_ttl: Duration) -> Self {
        Self {
            pool,
            redis,
            session_ttl,
            // A revoked mark must outlive every access token of the session.
            revoked_cache_ttl: access_ttl + Duration::from_secs(60),
        }
    }

    /// Opens a session and returns its id and first refresh token.
    pub async fn open(
        &self,
        user_id: Uuid,
        user_agent: Option<&str>,
        client_ip: &str,
    ) -> anyhow::Result<(Uuid, String)> {
        let session_id = Uuid::now_v7();
        let (refresh_token, hash) = new_secret(REFRESH_PREFIX);
        let expires_at = Utc::now() + self.session_ttl;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, expires_at, user_agent, client_ip)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(session_id)
        .bind(user_id)
        .bind(expires_at)
        .bind(user_agent.map(|agent| agent.chars().take(256).collect::<String>()))
        .bind(client_ip)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)")
            .bind(&hash)
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // Best effort: saves services a call to identity on the first request.
        let mut redis = self.redis.connection();
        let _: Result<Option<String>, _> = redis::cmd("SET")
            .arg(self.redis.key(session_cache_key(session_id)))
            .arg("1")
            .arg("NX")
            .arg("EX")
            .arg(ACTIVE_SESSION_CACHE.as_secs())
            .query_async(&mut redis)
            .await;
        Ok((session_id, refresh_token))
    }

    /// Spends a refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> anyhow::Result<Refresh> {
        let hash = digest(refresh_token);
        let mut tx = self.pool.begin().await?;
        let row: Option<RefreshRow> = sqlx::query_as(
            "SELECT rt.session_id, rt.used_at, s.user_id, s.revoked_at, s.expires_at,
                    u.disabled_at, u.role
             FROM refresh_tokens rt
             JOIN sessions s ON s.id = rt.session_id
             LEFT JOIN users u ON u.id = s.user_id
             WHERE rt.token_hash = $1
             FOR UPDATE OF rt, s",
        )
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(RefreshRow {
            session_id,
            used_at,
            user_id,
            revoked_at,
            expires_at,
            disabled_at,
            role,
        }) = row
        else {
            return Ok(Refresh::Invalid);
        };
        if revoked_at.is_some() || expires_at <= Utc::now() {
            return Ok(Refresh::Invalid);
        }
        let Some(role) = role.filter(|_| disabled_at.is_none()) else {
            return Ok(Refresh::Invalid);
        };
        if used_at.is_some() {
            let revoked = revoke_in(
                &mut tx,
                Which::Session(session_id),
                RevokeReason::RefreshTokenReuse,
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(%session_id, %user_id, "spent refresh token presented again; session revoked");
            self.cache_revocations(&revoked).await;
            return Ok(Refresh::Reused);
        }
        let (refresh_token, new_hash) = new_secret(REFRESH_PREFIX);
        sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1")
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)")
            .bind(&new_hash)
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE sessions SET last_used_at = now(), expires_at = $2 WHERE id = $1")
            .bind(session_id)
            .bind(Utc::now() + self.session_ttl)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Refresh::Rotated {
            session_id,
            user_id,
            role,
            refresh_token,
        })
    }

    /// Revokes sessions and writes the revocations to the cache.
    pub async fn revoke(&self, which: Which, reason: RevokeReason) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let revoked = revoke_in(&mut tx, which, reason).await?;
        tx.commit().await?;
        self.cache_revocations(&revoked).await;
        Ok(revoked.len())
    }

    /// Writes revocations to Redis and records that they are there. Failures are left for
    /// [`Sessions::repair_cache`].
    pub async fn cache_revocations(&self, sessions: &[Uuid]) {
        if sessions.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for session in sessions {
            pipe.cmd("SET")
                .arg(self.redis.key(session_cache_key(*session)))
                .arg("0")
                .arg("EX")
                .arg(self.revoked_cache_ttl.as_secs())
                .ignore();
        }
        let mut redis = self.redis.connection();
        match pipe.query_async::<()>(&mut redis).await {
            Ok(()) => {
                let marked =
                    sqlx::query("UPDATE sessions SET revocation_cached = true WHERE id = ANY($1)")
                        .bind(sessions)
                        .execute(&self.pool)
                        .await;
                if let Err(error) = marked {
                    tracing::warn!(%error, "cannot mark revocations as cached; will retry");
                }
            }
            Err(error) => {
                tracing::warn!(%error, count = sessions.len(), "cannot write revocations to Redis; will retry");
            }
        }
    }

    /// Writes revocations that are not in Redis yet. Revocations older than the cache
    /// lifetime need no entry: every access token of those sessions has expired.
    pub async fn repair_cache(&self) -> anyhow::Result<usize> {
        let pending: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, revoked_at FROM sessions
             WHERE NOT revocation_cached AND revoked_at IS NOT NULL
             ORDER BY revoked_at LIMIT 1000",
        )
        .fetch_all(&self.pool)
        .await?;
        let horizon = Utc::now() - self.revoked_cache_ttl;
        let (stale, fresh): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|(_, at)| *at < horizon);
        let stale: Vec<Uuid> = stale.into_iter().map(|(id, _)| id).collect();
        if !stale.is_empty() {
            sqlx::query("UPDATE sessions SET revocation_cached = true WHERE id = ANY($1)")
                .bind(&stale)
                .execute(&self.pool)
                .await?;
        }
        let fresh: Vec<Uuid> = fresh.into_iter().map(|(id, _)| id).collect();
        self.cache_revocations(&fresh).await;
        Ok(fresh.len())
    }

    /// Removes sessions that ended more than a day ago.
    pub async fn purge(&self) -> sqlx::Result<u64> {
        let result = sqlx::query(
            "DELETE FROM sessions WHERE revocation_cached
             AND (revoked_at < now() - interval '1 day' OR expires_at < now() - interval '1 day')",
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    /// Whether a session may be used, from the durable record; with its user.
    pub async fn is_active(&self, session_id: Uuid) -> sqlx::Result<Option<Uuid>> {
        sqlx::query_scalar(
            "SELECT s.user_id FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
               AND u.disabled_at IS NULL",
        )
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Keeps the cache consistent and the table small until `shutdown`.
    pub async fn maintain(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            if let Err(error) = self.repair_cache().await {
                tracing::warn!(error = format!("{error:#}"), "session cache repair failed");
            }
            ticks += 1;
            if ticks.is_multiple_of(1800) {
                self.purge()
                    .await
                    .context("purging ended sessions")
                    .map(|_| ())
                    .unwrap_or_else(|error| {
                        tracing::warn!(error = format!("{error:#}"), "session purge failed")
                    });
            }
        }
    }
}

/// Marks sessions revoked inside a transaction; returns the ids that were active.
pub async fn revoke_in(
    connection: &mut PgConnection,
    which: Which,
    reason: RevokeReason,
) -> sqlx::Result<Vec<Uuid>> {
    let query = match which {
        Which::Session(id) => sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = now(), revoke_reason = $1, revocation_cached = false
             WHERE revoked_at IS NULL AND id = $2 RETURNING id",
        )
        .bind(reason.as_str())
        .bind(id),
        Which::AllOf(user) => sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = now(), revoke_reason = $1, revocation_cached = false
             WHERE revoked_at IS NULL AND user_id = $2 RETURNING id",
        )
        .bind(reason.as_str())
        .bind(user),
        Which::AllOfExcept(user, keep) => sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = now(), revoke_reason = $1, revocation_cached = false
             WHERE revoked_at IS NULL AND user_id = $2 AND id <> $3 RETURNING id",
        )
        .bind(reason.as_str())
        .bind(user)
        .bind(keep),
    };
    query.fetch_all(connection).await
}
