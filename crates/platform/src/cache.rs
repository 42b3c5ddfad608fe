//! Redis: a reconnecting connection and the installation's key prefix.

use std::time::Duration;

use anyhow::Context as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;

use crate::config::Config;

/// A Redis connection that reconnects by itself, and the key prefix of this installation.
#[derive(Clone)]
pub struct Redis {
    connection: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Connects to `STRIDE_REDIS_URL`.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let client = redis::Client::open(config.redis_url.expose_secret())
            .context("STRIDE_REDIS_URL is not a Redis URL")?;
        // Short timeouts: a hung Redis must turn into a fallback or a 503 quickly, never a
        // hung request.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(Duration::from_secs(1))
            .set_number_of_retries(2)
            .set_max_delay(500);
        let connection = ConnectionManager::new_with_config(client, manager_config)
            .await
            .context("connecting to Redis (STRIDE_REDIS_URL)")?;
        Ok(Self {
            connection,
            prefix: config.redis_prefix.clone(),
        })
    }

    /// A handle for commands (cheap to clone).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// The full key for `name` under this installation's prefix.
    pub fn key(&self, name: impl std::fmt::Display) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Whether Redis answers, for readiness.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let mut connection = self.connection();
        let _: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .context("Redis did not answer PING")?;
        Ok(())
    }
}

/// `bytes` as lowercase hex, for digests that become part of a key.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
