//! Drains the `TELEMETRY` buffer into InfluxDB.
//!
//! Messages are fetched in groups and written in one line-protocol request; they are acked
//! only after InfluxDB accepted the write. While InfluxDB is down the writer retries with
//! backoff and the backlog stays in the broker. A redelivered batch rewrites the same points
//! (same measurement, tags and time), so nothing is ever stored twice.
//!
//! A process runs `STRIDE_TELEMETRY_WRITERS` of them (default 2: while InfluxDB takes one
//! write in, the next is on its way) on a thread of their own, below the request path's
//! priority (see `run_writers` in the crate root).

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{
    AckKind,
    consumer::{AckPolicy, pull},
};
use futures_util::StreamExt;
use prost::Message as _;
use stride_platform::broker::Broker;
use stride_proto::telemetry::v1::StoredBatch;
use tokio_util::sync::CancellationToken;

use crate::influx::{Influx, write_lines};

/// Messages (batches) per InfluxDB write.
const MESSAGES_PER_WRITE: usize = 100;

/// The durable consumer shared by every telemetry replica.
pub const DURABLE: &str = "telemetry-writer";

/// The buffer-to-InfluxDB writer.
#[derive(Debug, Clone)]
pub struct Writer {
    broker: Broker,
    stream: String,
    influx: Influx,
}

impl Writer {
    /// A writer from `stream` into `influx`.
    pub fn new(broker: Broker, stream: String, influx: Influx) -> Self {
        Self {
            broker,
            stream,
            influx,
        }
    }

    async fn consumer(&self) -> anyhow::Result<pull::Stream> {
        let stream = self
            .broker
            .jetstream
            .get_stream(&self.stream)
            .await
            .context("opening the TELEMETRY stream")?;
        let consumer = stream
            .get_or_create_consumer(
                DURABLE,
                pull::Config {
                    durable_name: Some(DURABLE.to_owned()),
                    ack_policy: AckPolicy::Explicit,
                    // Progress acks keep a long retry alive; a writer that died without a
                    // word hands its group on after this long.
                    ack_wait: Duration::from_secs(30),
                    max_ack_pending: 50_000,
                    ..Default::default()
                },
            )
            .await
            .context("creating the writer's consumer")?;
        consumer
            .stream()
            .max_messages_per_batch(MESSAGES_PER_WRITE)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .context("pulling from the TELEMETRY stream")
    }

    /// Writes until `shutdown`; the group in hand is finished (or left unacked) first.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            let mut messages = match self.consumer().await {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "telemetry writer cannot pull; retrying"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            loop {
                let first = tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    next = messages.next() => next,
                };
                let Some(Ok(first)) = first else { break };
                let mut group = vec![first];
                // Take what is already waiting, without waiting for more.
                while group.len() < MESSAGES_PER_WRITE {
                    match tokio::time::timeout(Duration::from_millis(5), messages.next()).await {
                        Ok(Some(Ok(message))) => group.push(message),
                        _ => break,
                    }
                }
                if !self.write_group(group, &shutdown).await {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Writes and acks a group; false when shutdown came first (the group stays unacked and
    /// is redelivered to another writer).
    async fn write_group(
        &self,
        group: Vec<async_nats::jetstream::Message>,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut lines = String::new();
        let mut writable = Vec::with_capacity(group.len());
        for message in group {
            match StoredBatch::decode(message.payload.as_ref()) {
                Ok(batch) => {
                    write_lines(&batch, &mut lines);
                    writable.push(message);
                }
                Err(error) => {
                    tracing::error!(%error, "unreadable telemetry batch; dropping it");
                    message.ack_with(AckKind::Term).await.ok();
                }
            }
        }
        // A retry sends the same bytes again without copying them.
        let lines = bytes::Bytes::from(lines);
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.influx.write(lines.clone()).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "InfluxDB write failed; the batches stay in the buffer"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => {
                            // Hand the group back at once rather than after ack_wait, so
                            // another writer stores it without waiting.
                            for message in &writable {
                                message.ack_with(AckKind::Nak(None)).await.ok();
                            }
                            return false;
                        }
                        () = tokio::time::sleep(backoff) => {}
                    }
                    // Capped low: InfluxDB coming back should be noticed within a second.
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    // Keep the broker from redelivering what is being retried.
                    for message in &writable {
                        message.ack_with(AckKind::Progress).await.ok();
                    }
                }
            }
        }
        for message in writable {
            if let Err(error) = message.ack().await {
                // Redelivery rewrites the same points: harmless.
                tracing::warn!(%error, "ack of a written telemetry batch failed");
            }
        }
        true
    }
}
