//! The idempotent event consumer every service uses.
//!
//! Each service has one durable pull consumer on `EVENTS`. For every message the helper opens a
//! transaction, records `(consumer, event id)` in `processed_events` — if that row already
//! exists the event was handled before and is only acknowledged — runs the handler in the same
//! transaction, commits, and only then acknowledges. A crash before the commit leaves nothing
//! behind and the broker redelivers; a crash after the commit but before the ack makes the
//! broker redeliver an event whose mark is already there. Either way the effect happens once.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use async_nats::jetstream::{
    AckKind,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use futures_util::{StreamExt, future::BoxFuture};
use sqlx::{PgConnection, PgPool};
use stride_events::Envelope;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// Deliveries after which a failing event is parked in `dead_letter_events`.
const MAX_DELIVERIES: i64 = 20;

/// What a consumer does with one event, inside the transaction that also records it as
/// processed. Return an error to roll back and have the event redelivered.
pub trait EventHandler: Send + Sync + 'static {
    /// Applies `event`. Events the handler does not care about return `Ok(())`.
    fn handle<'a>(
        &'a self,
        connection: &'a mut PgConnection,
        event: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Runs after the effect of `event` committed (never for a duplicate): updates of caches
    /// derived from the database, which must not be written before the commit. Failures are
    /// the handler's to log; the event stays processed.
    fn after_commit<'a>(&'a self, _event: &'a Envelope) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Test-only behaviour that forces redeliveries.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsumerFaults {
    /// After committing, refuse (nak) the first delivery of every event instead of acking it,
    /// as if the process died between commit and ack: every event is delivered again.
    pub nak_first_delivery_after_commit: bool,
}

/// A durable, idempotent consumer of the `EVENTS` stream.
#[derive(Clone)]
pub struct Consumer {
    name: String,
    pool: PgPool,
    broker: Broker,
    handler: Arc<dyn EventHandler>,
    ack_wait: Duration,
    faults: ConsumerFaults,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What happened to one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The handler ran and its effect is committed.
    Applied,
    /// The event had been processed before; nothing was done.
    Duplicate,
    /// The handler failed; the transaction was rolled back. After `MAX_DELIVERIES` failures
    /// the event is parked in `dead_letter_events` and no longer redelivered.
    Failed,
}

impl Consumer {
    /// A consumer named `name` (the durable name, usually the service's name).
    pub fn new(
        name: impl Into<String>,
        pool: PgPool,
        broker: Broker,
        handler: impl EventHandler,
    ) -> Self {
        Self {
            name: name.into(),
            pool,
            broker,
            handler: Arc::new(handler),
            ack_wait: Duration::from_secs(30),
            faults: ConsumerFaults::default(),
        }
    }

    /// Sets how long the broker waits for an ack before redelivering.
    pub fn with_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// Injects faults (tests only).
    pub fn with_faults(mut self, faults: ConsumerFaults) -> Self {
        self.faults = faults;
        self
    }

    /// Processes one envelope exactly once with respect to `processed_events`.
    pub async fn process(&self, envelope: &Envelope) -> anyhow::Result<Outcome> {
        let mut tx = self.pool.begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(&self.name)
        .bind(envelope.id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            return Ok(Outcome::Duplicate);
        }
        match self.handler.handle(&mut tx, envelope).await {
            Ok(()) => {
                tx.commit().await?;
                self.handler.after_commit(envelope).await;
                Ok(Outcome::Applied)
            }
            Err(error) => {
                tx.rollback().await.ok();
                tracing::warn!(
                    consumer = %self.name,
                    event_id = %envelope.id,
                    event_type = %envelope.event_type,
                    error = format!("{error:#}"),
                    "event handler failed"
                );
                Ok(Outcome::Failed)
            }
        }
    }

    async fn park(
        &self,
        envelope: &serde_json::Value,
        event_id: uuid::Uuid,
        error: &str,
        deliveries: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO dead_letter_events (consumer, event_id, envelope, error, deliveries)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&self.name)
        .bind(event_id)
        .bind(envelope)
        .bind(error)
        .bind(deliveries)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Consumes until `shutdown`. The message in hand is finished before returning.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stream = self
            .broker
            .jetstream
            .get_stream(&self.broker.events_stream)
            .await
            .context("opening the EVENTS stream")?;
        let consumer = stream
            .get_or_create_consumer(
                &self.name,
                pull::Config {
                    durable_name: Some(self.name.clone()),
                    ack_policy: AckPolicy::Explicit,
                    deliver_policy: DeliverPolicy::All,
                    ack_wait: self.ack_wait,
                    max_ack_pending: 1_000,
                    ..Default::default()
                },
            )
            .await
            .context("creating the durable consumer")?;
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            let mut messages = match consumer.messages().await {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(consumer = %self.name, %error, "cannot pull events; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    next = messages.next() => next,
                };
                let Some(message) = next else { break };
                let message = match message {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(consumer = %self.name, %error, "event stream error");
                        break;
                    }
                };
                backoff = Duration::from_millis(200);
                self.handle_message(message).await;
            }
        }
        Ok(())
    }

    async fn handle_message(&self, message: async_nats::jetstream::Message) {
        let deliveries = message.info().map(|info| info.delivered).unwrap_or(1);
        let envelope: Envelope = match serde_json::from_slice(&message.payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                // Not an envelope at all (no id to park it under): it can never be applied.
                tracing::error!(consumer = %self.name, %error, "unreadable event; dropping it");
                message.ack_with(AckKind::Term).await.ok();
                return;
            }
        };
        let outcome = match self.process(&envelope).await {
            Ok(outcome) => outcome,
            Err(error) => {
                // The database is unreachable: let the broker redeliver later.
                tracing::warn!(consumer = %self.name, error = format!("{error:#}"), "cannot process event now");
                Outcome::Failed
            }
        };
        let ack = match outcome {
            Outcome::Failed if deliveries >= MAX_DELIVERIES => {
                let raw = serde_json::to_value(&envelope).unwrap_or_default();
                match self
                    .park(&raw, envelope.id, "handler kept failing", deliveries)
                    .await
                {
                    Ok(()) => AckKind::Term,
                    Err(_) => AckKind::Nak(Some(Duration::from_secs(5))),
                }
            }
            Outcome::Failed => {
                let delay =
                    Duration::from_millis(200 * 2u64.pow(deliveries.clamp(1, 10) as u32 - 1));
                AckKind::Nak(Some(delay.min(Duration::from_secs(60))))
            }
            Outcome::Applied if self.faults.nak_first_delivery_after_commit && deliveries == 1 => {
                AckKind::Nak(None)
            }
            Outcome::Applied | Outcome::Duplicate => AckKind::Ack,
        };
        if let Err(error) = message.ack_with(ack).await {
            // Not fatal: the broker redelivers and the processed mark makes it a no-op.
            tracing::warn!(consumer = %self.name, %error, "ack failed");
        }
    }
}
