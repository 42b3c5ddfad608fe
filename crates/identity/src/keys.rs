//! The keys that sign access tokens, kept in PostgreSQL so every identity replica signs with
//! the same key and publishes the same set.
//!
//! The newest unretired key signs. Rotation adds a key (it signs from then on and is
//! published at once); retiring a key removes it from the JWKS, after which verifiers refuse
//! tokens signed with it once their cache expires.

use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ed25519_dalek::{SigningKey, pkcs8::EncodePrivateKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sqlx::PgPool;
use stride_platform::auth::Claims;

/// A published public key, in JWK form.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PublicJwk {
    /// Key type: `OKP`.
    pub kty: &'static str,
    /// Curve: `Ed25519`.
    pub crv: &'static str,
    /// The public key, base64url.
    pub x: String,
    /// Key id.
    pub kid: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub key_use: &'static str,
    /// `EdDSA`.
    pub alg: &'static str,
}

/// A key's metadata, for administrators.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    /// Key id.
    pub kid: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Whether it signs new tokens.
    pub signing: bool,
}

struct Loaded {
    signer: Option<(String, EncodingKey)>,
    published: Vec<PublicJwk>,
    info: Vec<KeyInfo>,
}

/// The current signing key and the published set, reloaded from the database.
#[derive(Clone)]
pub struct KeyRing {
    pool: PgPool,
    loaded: Arc<RwLock<Loaded>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

type KeyRow = (String, Vec<u8>, Vec<u8>, DateTime<Utc>);

impl KeyRing {
    /// Loads the keys, creating the first one if there is none.
    pub async fn load(pool: PgPool) -> anyhow::Result<Self> {
        let ring = Self {
            pool,
            loaded: Arc::new(RwLock::new(Loaded {
                signer: None,
                published: Vec::new(),
                info: Vec::new(),
            })),
        };
        ring.reload().await?;
        let has_signer = ring
            .loaded
            .read()
            .map(|l| l.signer.is_some())
            .unwrap_or(false);
        if !has_signer {
            ring.rotate().await?;
        }
        Ok(ring)
    }

    /// Re-reads the keys (other replicas may have rotated).
    pub async fn reload(&self) -> anyhow::Result<()> {
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT kid, private_key, public_key, created_at FROM signing_keys
             WHERE retired_at IS NULL ORDER BY created_at DESC, kid DESC",
        )
        .fetch_all(&self.pool)
        .await
        .context("loading signing keys")?;
        let signer = rows
            .first()
            .map(|(kid, private, _, _)| (kid.clone(), EncodingKey::from_ed_der(private)));
        let published = rows
            .iter()
            .map(|(kid, _, public, _)| PublicJwk {
                kty: "OKP",
                crv: "Ed25519",
                x: URL_SAFE_NO_PAD.encode(public),
                kid: kid.clone(),
                key_use: "sig",
                alg: "EdDSA",
            })
            .collect();
        let info = rows
            .iter()
            .enumerate()
            .map(|(index, (kid, _, _, created_at))| KeyInfo {
                kid: kid.clone(),
                created_at: *created_at,
                signing: index == 0,
            })
            .collect();
        if let Ok(mut loaded) = self.loaded.write() {
            *loaded = Loaded {
                signer,
                published,
                info,
            };
        }
        Ok(())
    }

    /// Makes a new key that signs from now on.
    pub async fn rotate(&self) -> anyhow::Result<KeyInfo> {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let private = key
            .to_pkcs8_der()
            .context("encoding a signing key")?
            .as_bytes()
            .to_vec();
        let public = key.verifying_key().to_bytes().to_vec();
        let kid = uuid::Uuid::now_v7().simple().to_string();
        let created_at: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO signing_keys (kid, private_key, public_key) VALUES ($1, $2, $3)
             RETURNING created_at",
        )
        .bind(&kid)
        .bind(&private)
        .bind(&public)
        .fetch_one(&self.pool)
        .await?;
        self.reload().await?;
        tracing::info!(%kid, "new token signing key");
        Ok(KeyInfo {
            kid,
            created_at,
            signing: true,
        })
    }

    /// Retires a key: it no longer signs and is no longer published. The last key cannot be
    /// retired (rotate first). Returns false when no such unretired key exists.
    pub async fn retire(&self, kid: &str) -> anyhow::Result<Retire> {
        let mut tx = self.pool.begin().await?;
        // Serialise retirements so two concurrent ones cannot remove the last two keys.
        sqlx::query("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let remaining: i64 =
            sqlx::query_scalar("SELECT count(*) FROM signing_keys WHERE retired_at IS NULL")
                .fetch_one(&mut *tx)
                .await?;
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM signing_keys WHERE kid = $1 AND retired_at IS NULL)",
        )
        .bind(kid)
        .fetch_one(&mut *tx)
        .await?;
        if !exists {
            return Ok(Retire::NotFound);
        }
        if remaining <= 1 {
            return Ok(Retire::LastKey);
        }
        sqlx::query("UPDATE signing_keys SET retired_at = now() WHERE kid = $1")
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.reload().await?;
        tracing::info!(%kid, "token signing key retired");
        Ok(Retire::Retired)
    }

    /// The published set.
    pub fn published(&self) -> Vec<PublicJwk> {
        self.loaded
            .read()
            .map(|l| l.published.clone())
            .unwrap_or_default()
    }

    /// Metadata of the unretired keys.
    pub fn info(&self) -> Vec<KeyInfo> {
        self.loaded
            .read()
            .map(|l| l.info.clone())
            .unwrap_or_default()
    }

    /// Signs access-token claims with the current key.
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let loaded = self
            .loaded
            .read()
            .map_err(|_| anyhow::anyhow!("key ring lock poisoned"))?;
        let (kid, key) = loaded.signer.as_ref().context("no signing key is loaded")?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, key).context("signing an access token")
    }
}

/// The result of [`KeyRing::retire`].
#[derive(Debug, PartialEq, Eq)]
pub enum Retire {
    /// Done.
    Retired,
    /// No such unretired key.
    NotFound,
    /// It is the only key left.
    LastKey,
}
