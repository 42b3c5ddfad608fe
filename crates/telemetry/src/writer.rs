//! Drains the `TELEMETRY` buffer into InfluxDB.
//!
//! Messages are fetched in groups and written in one line-protocol request; they are acked
//! only after InfluxDB accepted the write. While InfluxDB is down the writer retries with
//! backoff and the backlog stays in the broker. A redelivered batch rewrites the same points
//! (same measurement, tags and time), so nothing is ever stored twice.
//!
//! Batches stored in InfluxDB are then trimmed from the buffer ([`trim`]), so it holds only
//! the backlog.
//!
//! A process runs `STRIDE_TELEMETRY_WRITERS` of them (default 2: while InfluxDB takes one
//! write in, the next is on its way) on a thread of their own, below the request path's
//! priority (see `run_writers` in the crate root).
//!
//! While every replica together accepts more than `STRIDE_TELEMETRY_DRAIN_YIELD_ABOVE`
//! samples per second, the writers stop and leave the backlog in the buffer, for at most
//! `STRIDE_TELEMETRY_DRAIN_MAX_YIELD_SECONDS` at a stretch ([`crate::load`]). A stopped
//! writer keeps its pull open, so the few batches it had fetched are written first when it
//! drains again; after a stop longer than the consumer's ack wait, which the broker has
//! handed them on after, it pulls anew.

use std::{collections::VecDeque, time::Duration};

use anyhow::Context as _;
use async_nats::jetstream::{
    AckKind,
    consumer::{AckPolicy, pull},
    context::ConsumerInfoErrorKind,
};
use futures_util::StreamExt;
use stride_platform::broker::Broker;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    buffer,
    influx::{Influx, write_lines},
    load::{ClusterLoad, Pacing},
    metrics::TelemetryMetrics,
};

/// Messages (batches) per InfluxDB write: 20,000 lines for devices that send 1,000 samples
/// a batch.
///
/// InfluxDB copies each write into its write-ahead log with one system call, which a kernel
/// without full preemption does not cut short, even for a process in an idle CPU group. At
/// 100 batches a write those copies held a core for up to 10 ms while ingest on the same
/// machine waited; at 5 the drain lost throughput. At 20 it drained as fast as at 100
/// (docs/benchmarks.md).
const MESSAGES_PER_WRITE: usize = 20;

/// The durable consumer shared by every telemetry replica.
pub const DURABLE: &str = "telemetry-writer";

/// How long the broker waits for a writer's ack before it hands a batch to another.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// How often a stopped writer looks at the load again.
const PAUSE_CHECK: Duration = Duration::from_millis(100);

/// How long a pull may find nothing before the writer counts itself caught up.
const CAUGHT_UP_AFTER: Duration = Duration::from_millis(200);

/// When the writers stop for ingest.
#[derive(Debug, Clone)]
pub struct Yielding {
    /// The replicas' ingest load.
    pub load: ClusterLoad,
    /// Samples per second above which they stop (0: never).
    pub above: u64,
    /// The longest stop at a stretch.
    pub at_most: Duration,
}

/// The buffer-to-InfluxDB writer.
#[derive(Debug, Clone)]
pub struct Writer {
    broker: Broker,
    stream: String,
    influx: Influx,
    metrics: TelemetryMetrics,
    yielding: Yielding,
}

impl Writer {
    /// A writer from `stream` into `influx`, counting what it stores in `metrics`, stopping
    /// for ingest as `yielding` says.
    pub fn new(
        broker: Broker,
        stream: String,
        influx: Influx,
        metrics: TelemetryMetrics,
        yielding: Yielding,
    ) -> Self {
        Self {
            broker,
            stream,
            influx,
            metrics,
            yielding,
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
                    ack_wait: ACK_WAIT,
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
        let mut pacing = Pacing::new(self.yielding.above, self.yielding.at_most);
        let mut backoff = Duration::from_millis(200);
        let mut pulling: Option<pull::Stream> = None;
        while !shutdown.is_cancelled() {
            let now = Instant::now();
            let load = self.yielding.load.samples_per_second(now);
            let stopped_since = pacing.yielding_since();
            let pause = pacing.should_pause(now, load);
            match stopped_since {
                None if pause => {
                    self.metrics.writers_yielding.inc();
                    tracing::debug!(load, "telemetry writer stops for ingest");
                }
                Some(since) if !pause => {
                    self.metrics.writers_yielding.dec();
                    tracing::debug!(load, "telemetry writer drains again");
                    if now.duration_since(since) >= ACK_WAIT {
                        // What it had fetched has gone to another writer, or will.
                        pulling = None;
                    }
                }
                _ => {}
            }
            if pause {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(PAUSE_CHECK) => {}
                }
                continue;
            }
            let messages = match pulling.as_mut() {
                Some(messages) => messages,
                None => match self.consumer().await {
                    Ok(messages) => {
                        backoff = Duration::from_millis(200);
                        pulling.insert(messages)
                    }
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
                },
            };
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                next = tokio::time::timeout(CAUGHT_UP_AFTER, messages.next()) => next,
            };
            let first = match first {
                Ok(Some(Ok(message))) => message,
                Err(_) => {
                    // Nothing waiting: caught up. Look at the load again.
                    pacing.caught_up();
                    continue;
                }
                Ok(Some(Err(error))) => {
                    tracing::warn!(%error, "telemetry writer's pull failed; pulling anew");
                    pulling = None;
                    continue;
                }
                Ok(None) => {
                    pulling = None;
                    continue;
                }
            };
            let mut group = vec![first];
            // Take what is already waiting, without waiting for more.
            while group.len() < MESSAGES_PER_WRITE {
                match tokio::time::timeout(Duration::from_millis(5), messages.next()).await {
                    Ok(Some(Ok(message))) => group.push(message),
                    _ => break,
                }
            }
            // Less than another write's worth behind this group: the writer has caught up.
            let caught_up = group
                .last()
                .and_then(|message| message.info().ok())
                .is_some_and(|info| info.pending < MESSAGES_PER_WRITE as u64);
            if !self.write_group(group, &shutdown).await {
                break;
            }
            if caught_up {
                pacing.caught_up();
            }
        }
        if pacing.is_yielding() {
            self.metrics.writers_yielding.dec();
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
        let mut samples = 0;
        for message in group {
            match buffer::decode(message.headers.as_ref(), message.payload.as_ref()) {
                Ok(batch) => {
                    write_lines(&batch, &mut lines);
                    samples += batch.samples.len() as u64;
                    writable.push(message);
                }
                Err(error @ buffer::Unreadable::Layout(_)) => {
                    // Stored by a newer version during an upgrade: its writers read it.
                    tracing::warn!(%error, "telemetry batch in a newer layout; leaving it");
                    message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(30))))
                        .await
                        .ok();
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
                    self.metrics.influx_write_failures.inc();
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
        self.metrics.samples_written.inc_by(samples);
        for message in writable {
            if let Err(error) = message.ack().await {
                // Redelivery rewrites the same points: harmless.
                tracing::warn!(%error, "ack of a written telemetry batch failed");
            }
        }
        true
    }
}

/// How often batches the writers have stored are removed from the buffer.
pub const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Removes from the buffer, every [`TRIM_EVERY`], the batches that the writers have stored
/// and that are older than the stream's dedup window, so `TELEMETRY` holds the backlog and
/// the last window instead of a second copy of every sample for a week.
///
/// The stream keeps messages by limits (its `max_age` is a backstop for a backlog InfluxDB
/// never takes). Every message at or below the writer consumer's ack floor has been written
/// and acked, so a purge up to there removes nothing still to be written. The last window
/// is kept because the broker rebuilds its record of recent batch ids from the messages it
/// holds when it restarts: a device that sends a batch again after a broker restart is
/// still answered `duplicate` within the window.
///
/// A work-queue stream would delete each message at its ack, but it would forget ids at
/// once across a restart, and NATS cannot change a stream's retention to or from work
/// queue once it exists, so streams made by earlier versions could not follow.
///
/// Every replica that runs writers trims; a purge that finds nothing new to remove is
/// harmless.
pub async fn trim(broker: Broker, stream: String, shutdown: CancellationToken) {
    let mut trimmer = Trimmer::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(TRIM_EVERY) => {}
        }
        if let Err(error) = trimmer.round(&broker, &stream).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "cannot trim stored batches from the telemetry buffer; trying again later"
            );
        }
    }
}

/// What the trimming rounds remember.
#[derive(Debug, Default)]
struct Trimmer {
    /// The stream's last sequence at each round, oldest first: what had arrived by when.
    marks: VecDeque<(Instant, u64)>,
    /// The first sequence not trimmed yet.
    kept_from: u64,
}

impl Trimmer {
    async fn round(&mut self, broker: &Broker, stream: &str) -> anyhow::Result<()> {
        let stream = broker
            .jetstream
            .get_stream(stream)
            .await
            .context("opening the TELEMETRY stream")?;
        let info = stream.cached_info();
        let window = info.config.duplicate_window;
        let now = Instant::now();
        self.marks.push_back((now, info.state.last_sequence));
        let Some(aged) = older_than(&mut self.marks, now, window) else {
            return Ok(());
        };
        let stored = match stream.consumer_info(DURABLE).await {
            Ok(consumer) => consumer.ack_floor.stream_sequence,
            // No writer has started yet: nothing was stored.
            Err(error) if error.kind() == ConsumerInfoErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error).context("reading the writers' progress"),
        };
        let Some(below) = purge_below(aged, stored, self.kept_from) else {
            return Ok(());
        };
        let purged = stream
            .purge()
            .sequence(below)
            .await
            .context("purging stored batches")?;
        tracing::debug!(
            purged = purged.purged,
            below,
            "trimmed the telemetry buffer"
        );
        self.kept_from = below;
        Ok(())
    }
}

/// The sequence to purge below, when there is something to purge: everything up to the
/// last batch both stored (`stored`, the writers' ack floor) and older than the dedup window
/// (`aged`), unless it was purged already (below `kept_from`).
///
/// `None` rather than a purge below sequence 1: nats-server 2.9 takes a purge request with
/// `seq: 1` as one without a sequence and empties the whole stream, batches not yet written
/// included. Nothing stored, or nothing aged, is exactly when that request would be made:
/// for a window after a start with an empty buffer, and while InfluxDB has been away since
/// the writers started.
fn purge_below(aged: u64, stored: u64, kept_from: u64) -> Option<u64> {
    let up_to = aged.min(stored);
    (up_to >= 1 && up_to >= kept_from).then_some(up_to + 1)
}

/// The last sequence that had arrived `window` or longer before `now`, dropping the marks
/// older than the newest such one; `None` while no mark is that old.
fn older_than(marks: &mut VecDeque<(Instant, u64)>, now: Instant, window: Duration) -> Option<u64> {
    let is_old = |mark: &(Instant, u64)| now.saturating_duration_since(mark.0) >= window;
    while marks.len() > 1 && marks.get(1).is_some_and(is_old) {
        marks.pop_front();
    }
    marks.front().filter(|mark| is_old(mark)).map(|mark| mark.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_had_arrived_a_window_ago_may_go() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let window = Duration::from_secs(10);
        let mut marks = VecDeque::new();
        marks.push_back((at(0), 100));
        assert_eq!(older_than(&mut marks, at(0), window), None);
        marks.push_back((at(5), 250));
        assert_eq!(older_than(&mut marks, at(5), window), None);
        marks.push_back((at(10), 400));
        assert_eq!(older_than(&mut marks, at(10), window), Some(100));
        marks.push_back((at(16), 420));
        // At 16 s the mark of 5 s is a window old: 250 had arrived by then.
        assert_eq!(older_than(&mut marks, at(16), window), Some(250));
        assert_eq!(marks.len(), 3, "the marks before it are dropped");
        // Nothing new arrives for a long time: everything may go, one mark stays.
        assert_eq!(older_than(&mut marks, at(100), window), Some(420));
        assert_eq!(marks.len(), 1);
    }

    #[test]
    fn a_purge_never_reaches_what_is_not_stored_or_younger_than_the_window() {
        // Nothing stored yet (InfluxDB away since the start), or nothing aged (the buffer
        // was empty a window ago): no purge, above all not one below sequence 1.
        assert_eq!(purge_below(500, 0, 0), None);
        assert_eq!(purge_below(0, 500, 0), None);
        assert_eq!(purge_below(0, 0, 0), None);
        // Up to the older of the two.
        assert_eq!(purge_below(500, 300, 0), Some(301));
        assert_eq!(purge_below(300, 500, 0), Some(301));
        // Not again what an earlier round purged.
        assert_eq!(purge_below(300, 500, 301), None);
        assert_eq!(purge_below(301, 500, 301), Some(302));
    }

    proptest::proptest! {
        /// Whatever the rounds' timing, the sequence allowed to go had arrived at least a
        /// window before, and it is the newest such.
        #[test]
        fn nothing_younger_than_the_window_is_released(
            gaps in proptest::collection::vec(0u64..20, 1..60),
        ) {
            let start = Instant::now();
            let window = Duration::from_secs(10);
            let mut marks = VecDeque::new();
            let mut all = Vec::new();
            let mut now = start;
            for (round, gap) in gaps.into_iter().enumerate() {
                now += Duration::from_secs(gap);
                let sequence = round as u64 * 7;
                marks.push_back((now, sequence));
                all.push((now, sequence));
                let newest_old = all
                    .iter()
                    .filter(|(at, _)| now.duration_since(*at) >= window)
                    .map(|(_, sequence)| *sequence)
                    .max();
                proptest::prop_assert_eq!(older_than(&mut marks, now, window), newest_old);
            }
        }
    }
}
