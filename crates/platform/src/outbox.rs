//! The transactional outbox and its relay.
//!
//! A producer calls [`enqueue`] inside the transaction that changes its state, so the event
//! exists exactly when the change does. The [`Relay`] publishes unsent rows in id order to
//! JetStream with `Nats-Msg-Id` set to the event id (the broker drops a duplicate inside its
//! deduplication window) and marks them sent. If the relay dies between publishing and marking,
//! the event is published again later; consumers deduplicate by event id, so the effect still
//! happens once.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use futures_util::future::try_join_all;
use sqlx::{PgConnection, PgPool, postgres::PgListener};
use stride_events::Envelope;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::broker::Broker;

/// Adds `envelope` to the outbox within the caller's transaction.
pub async fn enqueue(connection: &mut PgConnection, envelope: &Envelope) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO outbox (id, event_type, envelope) VALUES ($1, $2, $3)")
        .bind(envelope.id)
        .bind(&envelope.event_type)
        .bind(sqlx::types::Json(envelope))
        .execute(connection)
        .await?;
    Ok(())
}

/// Decides, in tests, whether the relay "crashes" after publishing a batch and before marking
/// it sent. Production relays use [`RelayFaults::none`].
#[derive(Clone)]
pub struct RelayFaults(Arc<dyn Fn() -> bool + Send + Sync>);

impl RelayFaults {
    /// Never fails.
    pub fn none() -> Self {
        Self(Arc::new(|| false))
    }

    /// Fails whenever `decide` says so.
    pub fn new(decide: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(decide))
    }
}

impl std::fmt::Debug for RelayFaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayFaults")
    }
}

/// Publishes a service's outbox to the broker.
#[derive(Debug, Clone)]
pub struct Relay {
    pool: PgPool,
    broker: Broker,
    batch_size: i64,
    poll_interval: Duration,
    faults: RelayFaults,
}

/// What one relay pass did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pass {
    /// This many events were published and marked sent.
    Sent(usize),
    /// Nothing was waiting.
    Idle,
}

impl Relay {
    /// A relay for the outbox in `pool`.
    pub fn new(pool: PgPool, broker: Broker) -> Self {
        Self {
            pool,
            broker,
            batch_size: 256,
            poll_interval: Duration::from_secs(1),
            faults: RelayFaults::none(),
        }
    }

    /// Injects faults (tests only).
    pub fn with_faults(mut self, faults: RelayFaults) -> Self {
        self.faults = faults;
        self
    }

    /// Publishes one batch of unsent events and marks them sent.
    ///
    /// Rows are locked with `SKIP LOCKED`, so several replicas of a service can relay at once
    /// without publishing the same row concurrently.
    pub async fn pass(&self) -> anyhow::Result<Pass> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(Uuid, sqlx::types::Json<Envelope>)> = sqlx::query_as(
            "SELECT id, envelope FROM outbox WHERE sent_at IS NULL
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(Pass::Idle);
        }
        // Publish in order, then wait for all the broker's acknowledgements together.
        let mut acks = Vec::with_capacity(rows.len());
        for (id, envelope) in &rows {
            let payload = serde_json::to_vec(&envelope.0)?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.to_string().as_str());
            let ack = self
                .broker
                .jetstream
                .publish_with_headers(
                    envelope.0.nats_subject(&self.broker.subject_prefix),
                    headers,
                    payload.into(),
                )
                .await
                .context("publishing an event")?;
            acks.push(ack.into_future());
        }
        try_join_all(acks)
            .await
            .context("waiting for the broker to store events")?;
        if (self.faults.0)() {
            // Simulated crash: the transaction is dropped, nothing is marked sent.
            anyhow::bail!("injected relay fault after publish");
        }
        let ids: Vec<Uuid> = rows.iter().map(|(id, _)| *id).collect();
        sqlx::query("UPDATE outbox SET sent_at = now() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Pass::Sent(ids.len()))
    }

    /// Deletes events sent more than `age` ago.
    pub async fn purge_sent(&self, age: Duration) -> sqlx::Result<u64> {
        let seconds = age.as_secs_f64();
        let result = sqlx::query(
            "DELETE FROM outbox WHERE sent_at IS NOT NULL
             AND sent_at < now() - make_interval(secs => $1)",
        )
        .bind(seconds)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    /// Relays until `shutdown`: woken by the insert trigger's notification, and by a timer in
    /// case a notification is missed. Failures back off and retry; unsent rows stay in the
    /// outbox meanwhile.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(mut listener) => match listener.listen("stride_outbox").await {
                Ok(()) => Some(listener),
                Err(error) => {
                    tracing::warn!(%error, "outbox relay falls back to polling");
                    None
                }
            },
            Err(error) => {
                tracing::warn!(%error, "outbox relay falls back to polling");
                None
            }
        };
        let mut backoff = Duration::from_millis(100);
        let mut last_purge = tokio::time::Instant::now();
        loop {
            match self.pass().await {
                Ok(Pass::Sent(count)) => {
                    tracing::debug!(count, "relayed events");
                    backoff = Duration::from_millis(100);
                    // Under steady load every pass sends something; stop between passes.
                    if shutdown.is_cancelled() {
                        return Ok(());
                    }
                    continue;
                }
                Ok(Pass::Idle) => backoff = Duration::from_millis(100),
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "outbox relay pass failed");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            if last_purge.elapsed() > Duration::from_secs(3600) {
                last_purge = tokio::time::Instant::now();
                if let Err(error) = self.purge_sent(Duration::from_secs(7 * 86_400)).await {
                    tracing::warn!(%error, "purging the outbox failed");
                }
            }
            let wake = async {
                match listener.as_mut() {
                    Some(listener) => {
                        if listener.try_recv().await.is_err() {
                            tokio::time::sleep(self.poll_interval).await;
                        }
                    }
                    None => tokio::time::sleep(self.poll_interval).await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = wake => {}
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }
}
