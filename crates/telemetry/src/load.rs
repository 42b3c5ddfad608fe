//! How hard devices are sending, across every replica, so that the writers can yield to
//! ingest.
//!
//! On a machine that runs ingest, the broker and InfluxDB side by side, a drain into
//! InfluxDB next to heavy ingest is what makes ingest's tail: over two minutes at 2.45 M
//! samples/s on two cores, p99 went from 17.7 ms with no writer to 56 ms with two, and a
//! slower, steady drain made the stalls fewer but not shorter (docs/benchmarks.md). So while
//! ingest is heavy the writers stop, and the durable buffer holds the backlog, which is what
//! it is for; they drain at full speed once ingest is quiet. They stop for at most
//! `STRIDE_TELEMETRY_DRAIN_MAX_YIELD_SECONDS` at a stretch: after that they drain until they
//! have caught up, busy or not, so samples reach InfluxDB within a bounded time whatever the
//! load.
//!
//! The signal is the samples accepted per second by every replica, not only this process's:
//! a writer in one process must yield to ingest in another, and a writer-only process sees
//! no ingest of its own. Each replica that accepts samples publishes its own rate every
//! [`REPORT_EVERY`] on the plain NATS subject `telemetry.load.v1` ([`report`]); each process
//! with writers follows the subject and adds up the replicas' latest reports
//! ([`ClusterLoad`]). A replica that stops reporting is forgotten after [`FORGET_AFTER`], and
//! a process that cannot hear the reports sees no load and drains: losing the signal costs
//! ingest latency, never data or freshness.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::StreamExt as _;
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use stride_platform::broker::Broker;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a replica that accepts samples says how many.
pub const REPORT_EVERY: Duration = Duration::from_millis(250);

/// How long a replica's report counts: a few reports, so one lost or late report does not
/// read as quiet.
pub const FORGET_AFTER: Duration = Duration::from_secs(1);

/// How long the load must stay at or below the threshold before yielding writers drain
/// again, so that a short lull in heavy ingest does not start a drain that the next second
/// stops.
pub const QUIET_FOR: Duration = Duration::from_secs(1);

/// The subject the replicas' reports travel on.
pub fn subject(prefix: &str) -> String {
    format!("{prefix}telemetry.load.v1")
}

/// One replica's report.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    /// Which process (a random id per start).
    replica: String,
    /// Samples it accepted per second over the last [`REPORT_EVERY`].
    samples_per_second: u64,
}

/// Publishes this process's accepted samples per second (from its `accepted` counter) every
/// [`REPORT_EVERY`] while it accepts any, and one report of zero when it stops, until
/// `shutdown`. An idle replica publishes nothing.
pub async fn report(broker: Broker, accepted: Counter, shutdown: CancellationToken) {
    let replica = uuid::Uuid::new_v4().to_string();
    let subject = subject(&broker.subject_prefix);
    let mut ticks = tokio::time::interval(REPORT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_count, mut last_at) = (accepted.get(), Instant::now());
    let mut was_busy = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let (count, now) = (accepted.get(), Instant::now());
        let seconds = now.duration_since(last_at).as_secs_f64();
        let samples_per_second = if seconds > 0.0 {
            (count.saturating_sub(last_count) as f64 / seconds).round() as u64
        } else {
            0
        };
        (last_count, last_at) = (count, now);
        let busy = samples_per_second > 0;
        if !busy && !was_busy {
            continue;
        }
        was_busy = busy;
        let payload = serde_json::to_vec(&Report {
            replica: replica.clone(),
            samples_per_second,
        })
        .expect("a report serialises");
        if let Err(error) = broker.client.publish(subject.clone(), payload.into()).await {
            tracing::debug!(%error, "cannot publish the ingest load");
        }
    }
}

/// The replicas' latest reports: the load the writers yield to. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct ClusterLoad {
    replicas: Arc<Mutex<HashMap<String, (Instant, u64)>>>,
}

impl ClusterLoad {
    /// Takes a replica's report, heard at `now`.
    fn record(&self, replica: String, samples_per_second: u64, now: Instant) {
        self.replicas
            .lock()
            .expect("the load's lock is never poisoned")
            .insert(replica, (now, samples_per_second));
    }

    /// Samples per second accepted by all replicas, as of their reports at most
    /// [`FORGET_AFTER`] before `now`.
    pub fn samples_per_second(&self, now: Instant) -> u64 {
        let mut replicas = self
            .replicas
            .lock()
            .expect("the load's lock is never poisoned");
        replicas.retain(|_, (at, _)| now.saturating_duration_since(*at) < FORGET_AFTER);
        replicas.values().map(|(_, rate)| rate).sum()
    }

    /// Follows the replicas' reports on `broker` until `shutdown`, subscribing again after a
    /// second when the subscription ends.
    pub async fn follow(self, broker: Broker, shutdown: CancellationToken) {
        let subject = subject(&broker.subject_prefix);
        while !shutdown.is_cancelled() {
            match broker.client.subscribe(subject.clone()).await {
                Ok(mut reports) => loop {
                    let message = tokio::select! {
                        () = shutdown.cancelled() => return,
                        message = reports.next() => message,
                    };
                    let Some(message) = message else { break };
                    match serde_json::from_slice::<Report>(&message.payload) {
                        Ok(report) => {
                            self.record(report.replica, report.samples_per_second, Instant::now());
                        }
                        Err(error) => tracing::debug!(%error, "unreadable ingest load report"),
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "cannot follow the ingest load; writers drain regardless");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// When a writer stops for ingest and when it drains: pure, one per writer.
///
/// - Draining, it stops as soon as the load is above `yield_above` samples/s.
/// - Stopped, it drains again once the load has stayed at or below it for [`QUIET_FOR`], or
///   once it has been stopped for `max_yield`; in that case it drains until it has caught up
///   (less than one write's worth is waiting behind what it took), whatever the load, before
///   it may stop again.
/// - `yield_above` 0 never stops.
#[derive(Debug, Clone)]
pub struct Pacing {
    yield_above: u64,
    max_yield: Duration,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Draining,
    Yielding {
        since: Instant,
        quiet_since: Option<Instant>,
    },
    CatchingUp,
}

impl Pacing {
    /// Pacing that yields above `yield_above` samples/s (0: never), for at most `max_yield`
    /// at a stretch.
    pub fn new(yield_above: u64, max_yield: Duration) -> Self {
        Self {
            yield_above,
            max_yield,
            state: State::Draining,
        }
    }

    /// Whether the writer should stop at `now`, with the replicas accepting `load`
    /// samples/s.
    pub fn should_pause(&mut self, now: Instant, load: u64) -> bool {
        if self.yield_above == 0 {
            return false;
        }
        let busy = load > self.yield_above;
        match self.state {
            State::Draining if busy => {
                self.state = State::Yielding {
                    since: now,
                    quiet_since: None,
                };
                true
            }
            State::Draining | State::CatchingUp => false,
            State::Yielding { since, quiet_since } => {
                if now.saturating_duration_since(since) >= self.max_yield {
                    self.state = State::CatchingUp;
                    return false;
                }
                if busy {
                    self.state = State::Yielding {
                        since,
                        quiet_since: None,
                    };
                    return true;
                }
                let quiet_since = quiet_since.unwrap_or(now);
                if now.saturating_duration_since(quiet_since) >= QUIET_FOR {
                    self.state = State::Draining;
                    false
                } else {
                    self.state = State::Yielding {
                        since,
                        quiet_since: Some(quiet_since),
                    };
                    true
                }
            }
        }
    }

    /// The writer found little or nothing waiting: a drain forced by `max_yield` is over.
    pub fn caught_up(&mut self) {
        if self.state == State::CatchingUp {
            self.state = State::Draining;
        }
    }

    /// Whether the writer is stopped for ingest.
    pub fn is_yielding(&self) -> bool {
        self.yielding_since().is_some()
    }

    /// Since when the writer is stopped for ingest, if it is.
    pub fn yielding_since(&self) -> Option<Instant> {
        match self.state {
            State::Yielding { since, .. } => Some(since),
            State::Draining | State::CatchingUp => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(10);

    #[test]
    fn a_replica_is_forgotten_a_second_after_its_last_report() {
        let load = ClusterLoad::default();
        let start = Instant::now();
        load.record("a".into(), 600_000, start);
        load.record("b".into(), 500_000, start + Duration::from_millis(500));
        assert_eq!(
            load.samples_per_second(start + Duration::from_millis(900)),
            1_100_000
        );
        // a's report is a second old; b's is not.
        assert_eq!(
            load.samples_per_second(start + Duration::from_millis(1_000)),
            500_000
        );
        // A newer report of a replica replaces its older one.
        load.record("b".into(), 0, start + Duration::from_millis(1_200));
        assert_eq!(
            load.samples_per_second(start + Duration::from_millis(1_300)),
            0
        );
        assert_eq!(load.samples_per_second(start + Duration::from_secs(5)), 0);
    }

    #[test]
    fn a_writer_stops_while_ingest_is_heavy_and_drains_after_a_quiet_second() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut pacing = Pacing::new(1_000, MAX);
        assert!(
            !pacing.should_pause(at(0), 1_000),
            "at the threshold it drains"
        );
        assert!(pacing.should_pause(at(100), 1_001));
        assert_eq!(pacing.yielding_since(), Some(at(100)));
        // Quiet, but not for a second yet; a busy moment starts the quiet anew.
        assert!(pacing.should_pause(at(200), 0));
        assert!(pacing.should_pause(at(1_100), 0));
        assert!(pacing.should_pause(at(1_150), 5_000));
        assert!(pacing.should_pause(at(1_200), 0));
        assert!(pacing.should_pause(at(2_100), 0));
        assert!(!pacing.should_pause(at(2_200), 0), "quiet for a second");
        assert!(!pacing.is_yielding());
    }

    #[test]
    fn after_the_longest_yield_a_writer_drains_until_it_has_caught_up() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut pacing = Pacing::new(1_000, MAX);
        assert!(pacing.should_pause(at(0), 5_000));
        assert!(pacing.should_pause(at(9), 5_000));
        assert!(
            !pacing.should_pause(at(10), 5_000),
            "ten seconds is the most"
        );
        assert!(
            !pacing.should_pause(at(30), 5_000),
            "busy, but not caught up"
        );
        pacing.caught_up();
        assert!(
            pacing.should_pause(at(31), 5_000),
            "caught up, it yields again"
        );
        // Caught up while draining anyway changes nothing.
        let mut draining = Pacing::new(1_000, MAX);
        draining.caught_up();
        assert!(!draining.should_pause(at(0), 10));
    }

    #[test]
    fn a_threshold_of_zero_never_yields() {
        let mut pacing = Pacing::new(0, MAX);
        assert!(!pacing.should_pause(Instant::now(), u64::MAX));
    }

    proptest::proptest! {
        /// Whatever the load and the checks' timing, a writer never stays stopped for the
        /// longest yield, never stays stopped once its checks have found the load quiet for
        /// `QUIET_FOR`, and never stops before the load has been above the threshold.
        #[test]
        fn a_writer_is_never_held_back_beyond_its_bounds(
            steps in proptest::collection::vec((1u64..3_000, 0u64..3_000, proptest::bool::ANY), 1..200),
        ) {
            let threshold = 1_000;
            let start = Instant::now();
            let mut now = start;
            let mut pacing = Pacing::new(threshold, MAX);
            let mut stopped_since: Option<Instant> = None;
            let mut ever_busy = false;
            // The first check that found the load quiet since it was last busy.
            let mut quiet_from: Option<Instant> = None;
            for (gap_ms, load, empty_pull) in steps {
                now += Duration::from_millis(gap_ms);
                let pause = pacing.should_pause(now, load);
                if load > threshold {
                    ever_busy = true;
                    quiet_from = None;
                } else {
                    quiet_from.get_or_insert(now);
                }
                if pause {
                    proptest::prop_assert!(ever_busy, "stopped only after a busy moment");
                    let since = *stopped_since.get_or_insert(now);
                    proptest::prop_assert!(now.duration_since(since) < MAX);
                    if let Some(quiet) = quiet_from {
                        proptest::prop_assert!(now.duration_since(quiet) < QUIET_FOR);
                    }
                } else {
                    stopped_since = None;
                    if empty_pull {
                        pacing.caught_up();
                    }
                }
            }
        }
    }
}
