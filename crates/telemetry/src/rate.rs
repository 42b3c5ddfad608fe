//! The per-device rate limit (`STRIDE_DEVICE_BATCHES_PER_SECOND`), counted in the process
//! and shared with the other replicas through Redis in the background.
//!
//! Each batch is counted against its device's current second in memory, so ingest never
//! waits for Redis: a round trip per batch, at a batch a second from every device, was one
//! more process to wake on every request and made ingest answer `503` whenever Redis was
//! away. Every [`SYNC_INTERVAL`] the counts not yet shared are added to the device's key
//! for that second in Redis (`INCRBY`), whose answer, the count of every replica, becomes
//! the process's view of the device's second.
//!
//! One process counts exactly. Across replicas a device is refused once the replicas it
//! sends to have, between them, seen the limit, as far as each knows: at worst each
//! replica admits up to the limit in a second before it hears of the others' counts, so a
//! device that floods `R` replicas at once gets at most `R` times the limit through. A
//! gateway that sends each device to one replica (nginx: `hash $http_authorization
//! consistent;` in the telemetry upstream) makes the count exact again, and keeps each
//! replica's device and activity caches to its own devices.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use stride_platform::cache::Redis;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the counts are shared through Redis, and so how long a replica can go
/// without hearing of another's.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// One device's current second, as this process knows it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Window {
    /// The Unix second counted.
    second: i64,
    /// The device's batches in `second` on every replica, as Redis last answered.
    shared: u32,
    /// Batches counted here and on their way to Redis.
    sending: u32,
    /// Batches counted here that Redis has not been told of yet.
    unsent: u32,
}

impl Window {
    /// The device's batches in the second, as far as this process knows.
    fn count(&self) -> u32 {
        self.shared
            .saturating_add(self.sending)
            .saturating_add(self.unsent)
    }
}

/// Counts to add to Redis: a device's second and how many of its batches this process
/// counted in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsent {
    pub device: Uuid,
    pub second: i64,
    pub batches: u32,
}

/// The counts of the devices seen in the last two seconds.
#[derive(Debug)]
pub struct DeviceRates {
    limit: u32,
    windows: Mutex<HashMap<Uuid, Window>>,
}

impl DeviceRates {
    /// Counts for a limit of `limit` batches a second per device.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn windows(&self) -> MutexGuard<'_, HashMap<Uuid, Window>> {
        // Nothing below can panic half-way, so a poisoned map is still consistent.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a batch of `device` in Unix second `second`, and says whether the device is
    /// still within its limit. A refused batch counts too, as with a shared counter: a
    /// device that keeps sending while refused stays refused for the rest of the second.
    pub fn admit(&self, device: Uuid, second: i64) -> bool {
        let mut windows = self.windows();
        let window = windows.entry(device).or_default();
        if window.second != second {
            // What a past second had not yet shared no longer limits anyone.
            *window = Window {
                second,
                ..Window::default()
            };
        }
        window.unsent = window.unsent.saturating_add(1);
        window.count() <= self.limit
    }

    /// Forgets the seconds before `second - 1`, and takes the counts Redis has not been
    /// told of: they count as on their way until [`Self::shared`] or [`Self::not_shared`].
    pub fn take_unsent(&self, second: i64) -> Vec<Unsent> {
        let mut windows = self.windows();
        windows.retain(|_, window| window.second >= second - 1);
        windows
            .iter_mut()
            .filter(|(_, window)| window.unsent > 0)
            .map(|(device, window)| {
                let batches = std::mem::take(&mut window.unsent);
                window.sending = window.sending.saturating_add(batches);
                Unsent {
                    device: *device,
                    second: window.second,
                    batches,
                }
            })
            .collect()
    }

    /// Redis added `sent` and answered each device's count of every replica, `totals`.
    pub fn shared(&self, sent: &[Unsent], totals: &[u32]) {
        let mut windows = self.windows();
        for (sent, total) in sent.iter().zip(totals) {
            if let Some(window) = windows
                .get_mut(&sent.device)
                .filter(|window| window.second == sent.second)
            {
                window.sending = window.sending.saturating_sub(sent.batches);
                // A slower answer never lowers a count a later one raised.
                window.shared = window.shared.max(*total);
            }
        }
    }

    /// Redis could not be told of `sent`: they are sent again next time.
    pub fn not_shared(&self, sent: &[Unsent]) {
        let mut windows = self.windows();
        for sent in sent {
            if let Some(window) = windows
                .get_mut(&sent.device)
                .filter(|window| window.second == sent.second)
            {
                window.sending = window.sending.saturating_sub(sent.batches);
                window.unsent = window.unsent.saturating_add(sent.batches);
            }
        }
    }
}

/// The Redis key of `device`'s count in Unix second `second`.
fn key(redis: &Redis, device: Uuid, second: i64) -> String {
    redis.key(format!("rate:device:{device}:{second}"))
}

/// Shares the counts through Redis every [`SYNC_INTERVAL`] until `shutdown`. Redis being
/// away only leaves each replica to its own counts.
pub async fn share(
    rates: Arc<DeviceRates>,
    redis: Redis,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut ticks = tokio::time::interval(SYNC_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        let sent = rates.take_unsent(chrono::Utc::now().timestamp());
        if sent.is_empty() {
            continue;
        }
        let mut pipe = redis::pipe();
        for unsent in &sent {
            let key = key(&redis, unsent.device, unsent.second);
            pipe.incr(&key, unsent.batches).expire(&key, 2).ignore();
        }
        let mut connection = redis.connection();
        match pipe.query_async::<Vec<u32>>(&mut connection).await {
            Ok(totals) => {
                rates.shared(&sent, &totals);
                if std::mem::take(&mut failing) {
                    tracing::info!("device rate counts are shared through Redis again");
                }
            }
            Err(error) => {
                rates.not_shared(&sent);
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(
                        error = %error,
                        "cannot share device rate counts through Redis; each replica \
                         limits devices by its own counts until it can"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn device(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn one_process_admits_exactly_the_limit_each_second() {
        let rates = DeviceRates::new(3);
        let admitted = (0..5).filter(|_| rates.admit(device(1), 100)).count();
        assert_eq!(admitted, 3);
        assert!(
            rates.admit(device(2), 100),
            "another device has its own count"
        );
        assert!(rates.admit(device(1), 101), "a new second starts again");
    }

    #[test]
    fn counts_on_their_way_to_redis_still_count() {
        let rates = DeviceRates::new(2);
        assert!(rates.admit(device(1), 100));
        assert!(rates.admit(device(1), 100));
        let sent = rates.take_unsent(100);
        assert_eq!(
            sent,
            [Unsent {
                device: device(1),
                second: 100,
                batches: 2
            }]
        );
        assert!(!rates.admit(device(1), 100), "sending, not yet answered");
        rates.shared(&sent, &[2]);
        assert!(!rates.admit(device(1), 100), "answered");
    }

    #[test]
    fn other_replicas_counts_leave_less_room() {
        let rates = DeviceRates::new(5);
        assert!(rates.admit(device(1), 100));
        let sent = rates.take_unsent(100);
        // Three more arrived on other replicas.
        rates.shared(&sent, &[4]);
        assert!(rates.admit(device(1), 100), "5 of 5");
        assert!(!rates.admit(device(1), 100), "6 of 5");
    }

    #[test]
    fn counts_redis_did_not_take_are_sent_again_and_keep_counting() {
        let rates = DeviceRates::new(10);
        for _ in 0..3 {
            rates.admit(device(1), 100);
        }
        let sent = rates.take_unsent(100);
        rates.not_shared(&sent);
        rates.admit(device(1), 100);
        assert_eq!(
            rates.take_unsent(100),
            [Unsent {
                device: device(1),
                second: 100,
                batches: 4
            }]
        );
    }

    #[test]
    fn an_answer_for_a_past_second_changes_nothing() {
        let rates = DeviceRates::new(2);
        rates.admit(device(1), 100);
        let sent = rates.take_unsent(100);
        assert!(rates.admit(device(1), 101));
        rates.shared(&sent, &[50]);
        assert!(rates.admit(device(1), 101), "2 of 2 in second 101");
        assert!(!rates.admit(device(1), 101));
    }

    #[test]
    fn seconds_before_the_last_are_forgotten() {
        let rates = DeviceRates::new(2);
        rates.admit(device(1), 100);
        rates.admit(device(2), 102);
        let sent = rates.take_unsent(102);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].device, device(2));
        assert_eq!(rates.windows().len(), 1);
    }

    /// What happens in a run of [`replicas_share_their_counts`].
    #[derive(Debug, Clone)]
    enum Step {
        /// A batch of device `device` reaches replica `replica`.
        Batch { replica: usize, device: u128 },
        /// Replica `replica` shares its counts; Redis answers, or fails.
        Share { replica: usize, fails: bool },
        /// The clock moves to the next second.
        Tick,
    }

    fn step(replicas: usize) -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0..replicas, 0..3u128).prop_map(|(replica, device)| Step::Batch { replica, device }),
            2 => (0..replicas, any::<bool>()).prop_map(|(replica, fails)| Step::Share { replica, fails }),
            1 => Just(Step::Tick),
        ]
    }

    /// Replays `steps` on `replicas` processes and one shared counter that adds as `INCRBY`
    /// does; the admitted batches of each device and second.
    fn replay(limit: u32, replicas: usize, steps: &[Step]) -> HashMap<(u128, i64), (u32, u32)> {
        let processes: Vec<_> = (0..replicas).map(|_| DeviceRates::new(limit)).collect();
        let mut counter: HashMap<(Uuid, i64), u32> = HashMap::new();
        let mut second = 1_000;
        // (sent, admitted) by device and second.
        let mut outcome: HashMap<(u128, i64), (u32, u32)> = HashMap::new();
        for step in steps {
            match *step {
                Step::Batch {
                    replica,
                    device: id,
                } => {
                    let admitted = processes[replica].admit(device(id), second);
                    let entry = outcome.entry((id, second)).or_default();
                    entry.0 += 1;
                    entry.1 += u32::from(admitted);
                }
                Step::Share { replica, fails } => {
                    let sent = processes[replica].take_unsent(second);
                    if fails {
                        processes[replica].not_shared(&sent);
                    } else {
                        let totals: Vec<u32> = sent
                            .iter()
                            .map(|unsent| {
                                let total =
                                    counter.entry((unsent.device, unsent.second)).or_default();
                                *total += unsent.batches;
                                *total
                            })
                            .collect();
                        processes[replica].shared(&sent, &totals);
                    }
                }
                Step::Tick => second += 1,
            }
        }
        outcome
    }

    proptest! {
        #[test]
        fn one_replica_admits_exactly_up_to_the_limit(
            limit in 1..6u32,
            steps in proptest::collection::vec(step(1), 0..200),
        ) {
            for ((id, second), (sent, admitted)) in replay(limit, 1, &steps) {
                prop_assert_eq!(admitted, sent.min(limit), "device {} second {}", id, second);
            }
        }

        #[test]
        fn replicas_share_their_counts(
            limit in 1..6u32,
            replicas in 2..4usize,
            steps in proptest::collection::vec(step(3), 0..300),
        ) {
            let steps: Vec<Step> = steps
                .into_iter()
                .map(|step| match step {
                    Step::Batch { replica, device } => Step::Batch { replica: replica % replicas, device },
                    Step::Share { replica, fails } => Step::Share { replica: replica % replicas, fails },
                    Step::Tick => Step::Tick,
                })
                .collect();
            for ((id, second), (sent, admitted)) in replay(limit, replicas, &steps) {
                // Never fewer than one replica alone would take, never more than each
                // taking the limit.
                prop_assert!(admitted >= sent.min(limit), "device {} second {}", id, second);
                prop_assert!(admitted <= limit * replicas as u32, "device {} second {}", id, second);
            }
        }
    }
}
