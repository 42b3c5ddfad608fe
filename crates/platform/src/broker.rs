//! NATS JetStream: the connection, and the `EVENTS` stream every service publishes to.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};

use crate::config::Config;

/// A connection to the broker and the names of this installation's streams and subjects.
#[derive(Clone, Debug)]
pub struct Broker {
    /// The plain NATS client (live fan-out, request/reply).
    pub client: async_nats::Client,
    /// The JetStream context (durable streams).
    pub jetstream: jetstream::Context,
    /// Subject prefix (empty in production).
    pub subject_prefix: String,
    /// Name of the events stream.
    pub events_stream: String,
}

impl Broker {
    /// Connects, and creates or updates the `EVENTS` stream.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name("stride")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(&config.nats_url)
            .await
            .with_context(|| format!("connecting to NATS at {}", config.nats_url))?;
        let jetstream = jetstream::new(client.clone());
        let broker = Self {
            client,
            jetstream,
            subject_prefix: config.nats_prefix.clone(),
            events_stream: config.stream_name("EVENTS"),
        };
        broker
            .ensure_events_stream(Duration::from_secs(config.events_max_age_days * 86_400))
            .await?;
        Ok(broker)
    }

    async fn ensure_events_stream(&self, max_age: Duration) -> anyhow::Result<()> {
        let config = stream::Config {
            name: self.events_stream.clone(),
            subjects: vec![format!(
                "{}{}.>",
                self.subject_prefix,
                stride_events::SUBJECT_PREFIX
            )],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age,
            // Producers retry unacknowledged publishes for longer than the 2-minute default.
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        };
        self.jetstream
            .get_or_create_stream(config)
            .await
            .context("creating the EVENTS stream (is JetStream enabled on the NATS server?)")?;
        Ok(())
    }

    /// Whether the broker answers, for readiness.
    pub async fn ping(&self) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(2), self.client.flush())
            .await
            .context("NATS did not answer in time")?
            .context("NATS flush failed")?;
        if self.client.connection_state() != async_nats::connection::State::Connected {
            anyhow::bail!("not connected to NATS");
        }
        Ok(())
    }
}
