//! The idempotent event consumer every service uses.
//!
//! Each service has one durable pull consumer on `EVENTS`. For every message the helper opens a
//! transaction, records `(consumer, event id)` in `processed_events` — if that row already
//! exists the event was handled before and is only acknowledged — runs the handler in the same
//! transaction, commits, and only then acknowledges. A crash before the commit leaves nothing
//! behind and the broker redelivers; a crash after the commit but before the ack makes the
//! broker redeliver an event whose mark is already there. Either way the effect happens once.
//!
//! Messages that are already waiting are taken together, up to [`MAX_BATCH`]: their marks and
//! effects go into one transaction (one commit instead of one per event), in stream order, and
//! [`EventHandler::after_commit_batch`] sees them together, so cache updates can be pipelined.
//! If a handler fails inside a batch, the whole transaction is rolled back, the failing event
//! is retried later like any failed event, and the others are applied one transaction each.
//! Events a handler does not want ([`EventHandler::wants`]) are acknowledged without touching
//! the database. A consumer made [`Consumer::with_concurrency`] splits each batch by
//! [`EventHandler::partition_key`] (say, the user) and applies the parts in concurrent
//! transactions: events of one key stay in order in one transaction, so the round trips of
//! different users' events overlap instead of adding up.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use async_nats::jetstream::{
    AckKind,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use futures_util::{FutureExt as _, StreamExt, future::BoxFuture};
use sqlx::{PgConnection, PgPool};
use stride_events::Envelope;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// Deliveries after which a failing event is parked in `dead_letter_events`.
const MAX_DELIVERIES: i64 = 20;

/// Most events taken from the broker at once (split over at most `concurrency` transactions).
/// Large enough to turn a backlog's commits into a few per second, small enough that a
/// transaction holds its row locks for a short time only.
pub const MAX_BATCH: usize = 256;

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

    /// Runs after the effects of `events` (in stream order) committed together. The default
    /// runs [`EventHandler::after_commit`] for each; handlers whose cache updates can be
    /// merged or pipelined override it.
    fn after_commit_batch<'a>(&'a self, events: &'a [&'a Envelope]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for event in events {
                self.after_commit(event).await;
            }
        })
    }

    /// Whether the handler has anything to do with events of `event_type`. Events it does not
    /// want are acknowledged without a transaction or a processed mark: they have no effect to
    /// make exactly once. The default wants everything.
    fn wants(&self, _event_type: &str) -> bool {
        true
    }

    /// The key that orders `event` against others when the consumer applies a batch in
    /// concurrent transactions ([`Consumer::with_concurrency`]): events with equal keys are
    /// applied in stream order in one transaction, events with different keys may be applied
    /// at the same time. `None` puts the event with every other `None`. A handler whose
    /// effects on different keys share rows must not be run concurrently.
    fn partition_key(&self, _event: &Envelope) -> Option<String> {
        None
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
    concurrency: usize,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            concurrency: 1,
        }
    }

    /// Applies each batch in up to `concurrency` transactions at once, split by
    /// [`EventHandler::partition_key`] (1, the default, applies a batch in one).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
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

    /// Records `envelope` as processed and runs the handler inside `connection`'s transaction.
    /// `Ok(false)`: it was processed before and nothing was done.
    async fn apply_in(
        &self,
        connection: &mut PgConnection,
        envelope: &Envelope,
    ) -> anyhow::Result<bool> {
        let fresh = sqlx::query(
            "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(&self.name)
        .bind(envelope.id)
        .execute(&mut *connection)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            return Ok(false);
        }
        self.handler.handle(connection, envelope).await?;
        Ok(true)
    }

    fn log_failure(&self, envelope: &Envelope, error: &anyhow::Error) {
        tracing::warn!(
            consumer = %self.name,
            event_id = %envelope.id,
            event_type = %envelope.event_type,
            error = format!("{error:#}"),
            "event handler failed"
        );
    }

    /// Processes one envelope exactly once with respect to `processed_events`.
    pub async fn process(&self, envelope: &Envelope) -> anyhow::Result<Outcome> {
        let mut tx = self.pool.begin().await?;
        match self.apply_in(&mut tx, envelope).await {
            Ok(false) => Ok(Outcome::Duplicate),
            Ok(true) => {
                tx.commit().await?;
                self.handler.after_commit(envelope).await;
                Ok(Outcome::Applied)
            }
            Err(error) => {
                tx.rollback().await.ok();
                self.log_failure(envelope, &error);
                Ok(Outcome::Failed)
            }
        }
    }

    /// Processes `envelopes` in order, each exactly once, in one transaction when every
    /// handler succeeds. When one fails, that one is [`Outcome::Failed`] and the others are
    /// processed one by one. An error means the database could not be used: nothing of the
    /// batch was applied.
    pub async fn process_batch(&self, envelopes: &[Envelope]) -> anyhow::Result<Vec<Outcome>> {
        if let [envelope] = envelopes {
            return Ok(vec![self.process(envelope).await?]);
        }
        let mut tx = self.pool.begin().await?;
        // Every mark in one statement; the events it returns are the ones not seen before.
        let ids: Vec<uuid::Uuid> = envelopes.iter().map(|envelope| envelope.id).collect();
        let mut fresh: std::collections::HashSet<uuid::Uuid> = sqlx::query_scalar(
            "INSERT INTO processed_events (consumer, event_id)
             SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING RETURNING event_id",
        )
        .bind(&self.name)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let mut outcomes = Vec::with_capacity(envelopes.len());
        let mut failed = None;
        for (index, envelope) in envelopes.iter().enumerate() {
            // `remove`: an event delivered twice within the batch is applied once.
            if !fresh.remove(&envelope.id) {
                outcomes.push(Outcome::Duplicate);
                continue;
            }
            match self.handler.handle(&mut tx, envelope).await {
                Ok(()) => outcomes.push(Outcome::Applied),
                Err(error) => {
                    self.log_failure(envelope, &error);
                    failed = Some(index);
                    break;
                }
            }
        }
        let Some(failed) = failed else {
            tx.commit().await?;
            let applied: Vec<&Envelope> = envelopes
                .iter()
                .zip(&outcomes)
                .filter(|(_, outcome)| **outcome == Outcome::Applied)
                .map(|(envelope, _)| envelope)
                .collect();
            if !applied.is_empty() {
                self.handler.after_commit_batch(&applied).await;
            }
            return Ok(outcomes);
        };
        tx.rollback().await.ok();
        let mut outcomes = Vec::with_capacity(envelopes.len());
        for (index, envelope) in envelopes.iter().enumerate() {
            outcomes.push(if index == failed {
                Outcome::Failed
            } else {
                self.process(envelope).await.unwrap_or(Outcome::Failed)
            });
        }
        Ok(outcomes)
    }

    /// Splits `envelopes` by partition key over up to `concurrency` transactions, applied at
    /// the same time; each part is [`Consumer::process_batch`]ed. Events whose part could not
    /// reach the database are [`Outcome::Failed`].
    pub async fn process_partitioned(&self, envelopes: &[Envelope]) -> Vec<Outcome> {
        let parts = self.concurrency.min(envelopes.len()).max(1);
        let mut indices: Vec<Vec<usize>> = vec![Vec::new(); parts];
        for (index, envelope) in envelopes.iter().enumerate() {
            let part = self.handler.partition_key(envelope).map_or(0, |key| {
                let mut hasher = std::hash::DefaultHasher::new();
                std::hash::Hash::hash(&key, &mut hasher);
                (std::hash::Hasher::finish(&hasher) % parts as u64) as usize
            });
            indices[part].push(index);
        }
        let results = futures_util::future::join_all(
            indices
                .into_iter()
                .filter(|part| !part.is_empty())
                .map(|part| async move {
                    let batch: Vec<Envelope> =
                        part.iter().map(|&index| envelopes[index].clone()).collect();
                    let outcomes = self.process_batch(&batch).await;
                    (part, outcomes)
                }),
        )
        .await;
        let mut outcomes = vec![Outcome::Failed; envelopes.len()];
        for (part, result) in results {
            match result {
                Ok(applied) => {
                    for (index, outcome) in part.into_iter().zip(applied) {
                        outcomes[index] = outcome;
                    }
                }
                Err(error) => {
                    // The database is unreachable: let the broker redeliver later.
                    tracing::warn!(consumer = %self.name, error = format!("{error:#}"), "cannot process events now");
                }
            }
        }
        outcomes
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
                // Whatever else has already arrived joins this message's batch.
                let mut batch = vec![message];
                let mut stream_ended = false;
                while batch.len() < MAX_BATCH {
                    match messages.next().now_or_never() {
                        Some(Some(Ok(message))) => batch.push(message),
                        Some(Some(Err(error))) => {
                            tracing::warn!(consumer = %self.name, %error, "event stream error");
                            stream_ended = true;
                            break;
                        }
                        Some(None) => {
                            stream_ended = true;
                            break;
                        }
                        None => break,
                    }
                }
                self.handle_messages(batch).await;
                if stream_ended {
                    break;
                }
            }
        }
        Ok(())
    }

    async fn handle_messages(&self, messages: Vec<async_nats::jetstream::Message>) {
        let mut wanted = Vec::with_capacity(messages.len());
        let mut envelopes = Vec::with_capacity(messages.len());
        for message in messages {
            let envelope: Envelope = match serde_json::from_slice(&message.payload) {
                Ok(envelope) => envelope,
                Err(error) => {
                    // Not an envelope at all (no id to park it under): it can never be applied.
                    tracing::error!(consumer = %self.name, %error, "unreadable event; dropping it");
                    message.ack_with(AckKind::Term).await.ok();
                    continue;
                }
            };
            if !self.handler.wants(&envelope.event_type) {
                if let Err(error) = message.ack().await {
                    tracing::warn!(consumer = %self.name, %error, "ack failed");
                }
                continue;
            }
            wanted.push(message);
            envelopes.push(envelope);
        }
        if envelopes.is_empty() {
            return;
        }
        let outcomes = self.process_partitioned(&envelopes).await;
        for ((message, envelope), outcome) in wanted.into_iter().zip(&envelopes).zip(outcomes) {
            self.settle(message, envelope, outcome).await;
        }
    }

    /// Acknowledges, retries later or parks one message after its outcome.
    async fn settle(
        &self,
        message: async_nats::jetstream::Message,
        envelope: &Envelope,
        outcome: Outcome,
    ) {
        let deliveries = message.info().map(|info| info.delivered).unwrap_or(1);
        let ack = match outcome {
            Outcome::Failed if deliveries >= MAX_DELIVERIES => {
                let raw = serde_json::to_value(envelope).unwrap_or_default();
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
