//! The platform's eventing guarantees, end to end against real PostgreSQL and NATS JetStream:
//! an event exists exactly when the producing transaction commits, reaches consumers even when
//! the relay crashes between publishing and marking sent, and its effect is applied exactly
//! once however often the broker delivers it.

mod support;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::{StreamExt, future::BoxFuture};
use rand::{Rng, SeedableRng, rngs::StdRng};
use sqlx::PgConnection;
use stride_events::Envelope;
use stride_platform::{
    consumer::{Consumer, ConsumerFaults, EventHandler, Outcome},
    outbox::{Pass, Relay, RelayFaults},
};
use support::{RecordEffect, TestEnv, ThingHappened, record_effect, wait_until};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const CONSUMER: &str = "eventing-test";

/// A consumer task and the token that stops it.
struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn spawn(consumer: Consumer) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(consumer.run(shutdown.clone()));
        Self { shutdown, task }
    }

    fn spawn_relay(relay: Relay) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(relay.run(shutdown.clone()));
        Self { shutdown, task }
    }

    /// Cancels the task and checks it stopped cleanly.
    async fn stop(self, what: &str) {
        self.shutdown.cancel();
        let joined = tokio::time::timeout(support::PATIENCE, self.task)
            .await
            .unwrap_or_else(|_| panic!("{what} did not stop after shutdown"));
        joined
            .unwrap_or_else(|error| panic!("{what} panicked: {error}"))
            .unwrap_or_else(|error| panic!("{what} failed: {error:#}"));
    }
}

/// Every event id gets exactly one effect row, and nothing else does.
fn assert_each_applied_once(effects: &HashMap<Uuid, i64>, produced: &[Uuid]) {
    let not_once: Vec<_> = effects.iter().filter(|(_, count)| **count != 1).collect();
    assert!(
        not_once.is_empty(),
        "{} events applied more than once, e.g. {:?}",
        not_once.len(),
        &not_once[..not_once.len().min(5)]
    );
    let produced: HashSet<Uuid> = produced.iter().copied().collect();
    let applied: HashSet<Uuid> = effects.keys().copied().collect();
    let missing: Vec<_> = produced.difference(&applied).collect();
    assert!(
        missing.is_empty(),
        "{} events never applied, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let unknown: Vec<_> = applied.difference(&produced).collect();
    assert!(
        unknown.is_empty(),
        "{} effects of events nobody produced, e.g. {:?}",
        unknown.len(),
        &unknown[..unknown.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_crashing_between_publish_and_mark_sent_still_delivers_each_event_once() {
    const EVENTS: usize = 300;
    const EVENTS_PER_TRANSACTION: usize = 5;
    let env = TestEnv::start().await;

    // The seed is printed so that a failing sequence of crashes can be replayed.
    let seed = std::env::var("STRIDE_TEST_FAULT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("relay fault seed: {seed} (set STRIDE_TEST_FAULT_SEED to replay)");
    let rng = Mutex::new(StdRng::seed_from_u64(seed));
    let injected_faults = Arc::new(AtomicUsize::new(0));
    let faults = RelayFaults::new({
        let injected_faults = Arc::clone(&injected_faults);
        move || {
            let crash = rng.lock().expect("fault rng lock").gen_bool(0.4);
            if crash {
                injected_faults.fetch_add(1, Ordering::Relaxed);
            }
            crash
        }
    });
    let relay = Relay::new(env.pool.clone(), env.broker.clone()).with_faults(faults);

    // Every publish is a plain NATS message too: a core subscription sees all of them, including
    // the ones JetStream drops as duplicates. The relay publishes on the same connection, so
    // the subscription is in place before the first publish.
    let mut published = env
        .broker
        .client
        .subscribe(format!("{}>", env.config.nats_prefix))
        .await
        .expect("subscribing to the test's subjects");
    let end_marker = format!("{}end-of-test", env.config.nats_prefix);
    let publish_counter = tokio::spawn({
        let end_marker = end_marker.clone();
        async move {
            let mut publishes_per_id: HashMap<String, usize> = HashMap::new();
            while let Some(message) = published.next().await {
                if message.subject.as_str() == end_marker {
                    break;
                }
                let id = message
                    .headers
                    .as_ref()
                    .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
                    .map(|id| id.as_str().to_owned())
                    .unwrap_or_default();
                *publishes_per_id.entry(id).or_default() += 1;
            }
            publishes_per_id
        }
    });

    let consumer = Running::spawn(
        Consumer::new(CONSUMER, env.pool.clone(), env.broker.clone(), RecordEffect)
            .with_ack_wait(Duration::from_secs(2))
            .with_faults(ConsumerFaults {
                nak_first_delivery_after_commit: true,
            }),
    );

    // Produce in many small transactions with a relay pass after each, so the relay crashes
    // many times on batches of different sizes while the consumer is already at work.
    let mut produced = Vec::with_capacity(EVENTS);
    let mut pass_failures = 0usize;
    let mut relay_pass = async || match relay.pass().await {
        Ok(Pass::Sent(_)) => false,
        Ok(Pass::Idle) => true,
        Err(error) => {
            let error = format!("{error:#}");
            assert!(
                error.contains("injected relay fault"),
                "the relay failed for a reason the test did not inject: {error}"
            );
            pass_failures += 1;
            false
        }
    };
    for transaction in 0..EVENTS / EVENTS_PER_TRANSACTION {
        let labels: Vec<String> = (0..EVENTS_PER_TRANSACTION)
            .map(|index| format!("thing {transaction}/{index}"))
            .collect();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        produced.extend(env.produce_things(&labels).await);
        relay_pass().await;
    }
    let relayed = tokio::time::timeout(support::PATIENCE, async {
        while env.unsent_outbox_rows().await > 0 {
            if relay_pass().await {
                // Rows of a crashed pass stay locked until its rollback reaches the database.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await;
    assert!(relayed.is_ok(), "the relay never emptied the outbox");
    assert_eq!(produced.len(), EVENTS);

    // Published on the relay's connection after its last publish, so it arrives after them all.
    env.broker
        .client
        .publish(end_marker, "".into())
        .await
        .expect("publishing the end marker");
    let publishes_per_id = tokio::time::timeout(support::PATIENCE, publish_counter)
        .await
        .expect("the end marker arrives")
        .expect("the publish counter did not panic");

    wait_until("every event is applied", || async {
        env.effects_per_event().await.len() >= EVENTS
    })
    .await;
    wait_until("the broker has no delivery outstanding", || async {
        env.consumer_is_drained(CONSUMER).await
    })
    .await;
    let deliveries = env
        .consumer_info(CONSUMER)
        .await
        .delivered
        .consumer_sequence;
    consumer.stop("the consumer").await;

    let injected_faults = injected_faults.load(Ordering::Relaxed);
    let publishes: usize = publishes_per_id.values().sum();
    let stored = env.stream_messages().await;
    println!(
        "{EVENTS} events: {injected_faults} relay crashes after publishing, {publishes} publishes \
         ({} beyond one per event), {stored} messages stored by JetStream, {deliveries} \
         deliveries to the consumer",
        publishes.saturating_sub(EVENTS)
    );

    // The crashes really happened and really published events again.
    assert_eq!(pass_failures, injected_faults);
    assert!(injected_faults > 0, "no relay crash was injected");
    assert!(
        publishes > EVENTS,
        "crashed passes must have published events again"
    );
    let published_ids: HashSet<String> = publishes_per_id.keys().cloned().collect();
    let produced_ids: HashSet<String> = produced.iter().map(Uuid::to_string).collect();
    let stray: Vec<_> = published_ids
        .symmetric_difference(&produced_ids)
        .take(5)
        .collect();
    assert!(
        stray.is_empty(),
        "every publish carries its event id as Nats-Msg-Id, e.g. not {stray:?}"
    );
    assert!(stored >= EVENTS as u64, "the stream lost events");
    // Every event was delivered at least twice: once refused after commit, once more.
    assert!(
        deliveries >= 2 * EVENTS as u64,
        "only {deliveries} deliveries for {EVENTS} events"
    );

    // What a user of the platform notices: each effect exactly once, nothing lost.
    let effects = env.effects_per_event().await;
    assert_each_applied_once(&effects, &produced);
    assert_eq!(env.effect_rows().await, EVENTS as i64);
    let processed = env.processed_events(CONSUMER).await;
    assert_eq!(processed.len(), EVENTS);
    assert!(
        processed.into_iter().collect::<HashSet<_>>() == produced.iter().copied().collect(),
        "every produced event is marked processed"
    );
    assert_eq!(env.dead_letters(CONSUMER).await, 0);

    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_applies_an_event_once_even_when_the_broker_delivers_it_twice() {
    let env = TestEnv::start().await;
    let events: Vec<Envelope> = (0..5)
        .map(|index| {
            let thing_id = Uuid::now_v7();
            Envelope::new(
                support::SERVICE,
                thing_id.to_string(),
                &ThingHappened {
                    thing_id,
                    label: format!("thing {index}"),
                },
            )
            .expect("the payload serialises")
        })
        .collect();

    // The first two events are published twice under different message ids, as happens when
    // a relay republishes after the broker's deduplication window: the stream stores both.
    let mut publishes = 0u64;
    for (index, event) in events.iter().enumerate() {
        let copies = if index < 2 { 2 } else { 1 };
        for copy in 0..copies {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("{}-{copy}", event.id).as_str());
            let ack = env
                .broker
                .jetstream
                .publish_with_headers(
                    event.nats_subject(&env.broker.subject_prefix),
                    headers,
                    serde_json::to_vec(event)
                        .expect("the envelope serialises")
                        .into(),
                )
                .await
                .expect("publishing to JetStream")
                .await
                .expect("JetStream stores the event");
            assert!(!ack.duplicate, "a distinct message id is not a duplicate");
            publishes += 1;
        }
    }
    assert_eq!(env.stream_messages().await, publishes);

    let consumer = Running::spawn(Consumer::new(
        CONSUMER,
        env.pool.clone(),
        env.broker.clone(),
        RecordEffect,
    ));
    wait_until("every message is delivered and acknowledged", || async {
        env.consumer_is_drained(CONSUMER).await
    })
    .await;
    let deliveries = env
        .consumer_info(CONSUMER)
        .await
        .delivered
        .consumer_sequence;
    consumer.stop("the consumer").await;

    assert!(deliveries >= publishes, "every stored copy was delivered");
    let produced: Vec<Uuid> = events.iter().map(|event| event.id).collect();
    assert_each_applied_once(&env.effects_per_event().await, &produced);
    assert_eq!(env.effect_rows().await, events.len() as i64);
    assert_eq!(env.processed_events(CONSUMER).await.len(), events.len());

    env.cleanup().await;
}

/// Writes the effect, then fails the first `failures` attempts at each event.
struct FailsAtFirst {
    failures: usize,
    attempts: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl EventHandler for FailsAtFirst {
    fn handle<'a>(
        &'a self,
        connection: &'a mut PgConnection,
        event: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            record_effect(connection, event.id).await?;
            let attempt = {
                let mut attempts = self.attempts.lock().expect("attempts lock");
                let attempt = attempts.entry(event.id).or_default();
                *attempt += 1;
                *attempt
            };
            if attempt <= self.failures {
                anyhow::bail!("simulated handler failure, attempt {attempt}");
            }
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_rolls_back_and_the_event_is_retried_until_it_succeeds() {
    const FAILURES: usize = 2;
    let env = TestEnv::start().await;
    let produced = env.produce_things(&["first", "second", "third"]).await;
    let relay = Relay::new(env.pool.clone(), env.broker.clone());
    assert_eq!(
        relay.pass().await.expect("relaying the outbox"),
        Pass::Sent(produced.len())
    );

    let attempts = Arc::new(Mutex::new(HashMap::new()));
    let consumer = Running::spawn(
        Consumer::new(
            CONSUMER,
            env.pool.clone(),
            env.broker.clone(),
            FailsAtFirst {
                failures: FAILURES,
                attempts: Arc::clone(&attempts),
            },
        )
        .with_ack_wait(Duration::from_secs(2)),
    );
    wait_until("every event is processed", || async {
        env.processed_events(CONSUMER).await.len() >= produced.len()
    })
    .await;
    wait_until("the broker has no delivery outstanding", || async {
        env.consumer_is_drained(CONSUMER).await
    })
    .await;
    consumer.stop("the consumer").await;

    let attempts = attempts.lock().expect("attempts lock").clone();
    for event_id in &produced {
        assert_eq!(
            attempts.get(event_id),
            Some(&(FAILURES + 1)),
            "event {event_id} was retried until it succeeded, and not after"
        );
    }
    // The failed attempts wrote effects too, but their transactions were rolled back.
    assert_each_applied_once(&env.effects_per_event().await, &produced);
    assert_eq!(env.effect_rows().await, produced.len() as i64);
    assert_eq!(
        env.processed_events(CONSUMER)
            .await
            .into_iter()
            .collect::<HashSet<_>>(),
        produced.iter().copied().collect::<HashSet<_>>()
    );
    assert_eq!(env.dead_letters(CONSUMER).await, 0);

    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_enqueued_in_a_rolled_back_transaction_is_never_published() {
    let env = TestEnv::start().await;

    let mut tx = env.pool.begin().await.expect("a producing transaction");
    let abandoned = support::insert_thing_with_event(&mut tx, "abandoned").await;
    tx.rollback().await.expect("the transaction rolls back");
    // A committed event afterwards shows the pipeline works, so the absence of the other one
    // means something.
    let committed = env.produce_thing("committed").await;

    let relay = Relay::new(env.pool.clone(), env.broker.clone());
    assert_eq!(relay.pass().await.expect("relaying"), Pass::Sent(1));
    assert_eq!(relay.pass().await.expect("relaying"), Pass::Idle);
    assert_eq!(env.stream_messages().await, 1, "only the committed event");

    let consumer = Running::spawn(Consumer::new(
        CONSUMER,
        env.pool.clone(),
        env.broker.clone(),
        RecordEffect,
    ));
    wait_until("the committed event is applied", || async {
        env.effects_per_event().await.contains_key(&committed)
    })
    .await;
    wait_until("the broker has no delivery outstanding", || async {
        env.consumer_is_drained(CONSUMER).await
    })
    .await;
    consumer.stop("the consumer").await;

    let effects = env.effects_per_event().await;
    assert!(!effects.contains_key(&abandoned.id));
    assert_each_applied_once(&effects, &[committed]);
    let things: i64 = sqlx::query_scalar("SELECT count(*) FROM things")
        .fetch_one(&env.pool)
        .await
        .expect("things can be counted");
    assert_eq!(things, 1, "the abandoned domain row was rolled back too");
    let abandoned_in_outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE id = $1")
        .bind(abandoned.id)
        .fetch_one(&env.pool)
        .await
        .expect("the outbox can be read");
    assert_eq!(abandoned_in_outbox, 0);

    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_relay_publishes_events_committed_while_it_runs() {
    let env = TestEnv::start().await;
    // The relay's first passes crash after publishing, to exercise its back-off and retry.
    let passes = Arc::new(AtomicUsize::new(0));
    let faults = RelayFaults::new({
        let passes = Arc::clone(&passes);
        move || passes.fetch_add(1, Ordering::Relaxed) < 2
    });
    let relay =
        Running::spawn_relay(Relay::new(env.pool.clone(), env.broker.clone()).with_faults(faults));
    let consumer = Running::spawn(Consumer::new(
        CONSUMER,
        env.pool.clone(),
        env.broker.clone(),
        RecordEffect,
    ));
    let mut listener = env.outbox_listener().await;

    let produced = env.produce_thing("while running").await;
    // The insert trigger notifies the relay's channel when the transaction commits.
    let notified = tokio::time::timeout(support::PATIENCE, listener.recv())
        .await
        .expect("the outbox trigger notifies stride_outbox")
        .expect("the notification is readable");
    assert_eq!(notified.channel(), "stride_outbox");

    wait_until("the event is applied", || async {
        env.effects_per_event().await.contains_key(&produced)
    })
    .await;
    wait_until("the outbox is empty", || async {
        env.unsent_outbox_rows().await == 0
    })
    .await;
    wait_until("the broker has no delivery outstanding", || async {
        env.consumer_is_drained(CONSUMER).await
    })
    .await;
    relay.stop("the relay").await;
    consumer.stop("the consumer").await;

    assert!(
        passes.load(Ordering::Relaxed) >= 3,
        "the relay retried after its crashes"
    );
    assert_each_applied_once(&env.effects_per_event().await, &[produced]);
    assert_eq!(
        env.stream_messages().await,
        1,
        "republishes were deduplicated"
    );

    env.cleanup().await;
}

/// Records the effect of every event, and fails on the events labelled `poison`; partitions
/// by label.
struct PoisonedLabel;

impl EventHandler for PoisonedLabel {
    fn handle<'a>(
        &'a self,
        connection: &'a mut PgConnection,
        event: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            record_effect(connection, event.id).await?;
            let thing: ThingHappened = event.decode()?;
            if thing.label == "poison" {
                anyhow::bail!("a poisoned event");
            }
            Ok(())
        })
    }

    fn partition_key(&self, event: &Envelope) -> Option<String> {
        event
            .decode::<ThingHappened>()
            .ok()
            .map(|thing| thing.label)
    }
}

fn thing(label: &str) -> Envelope {
    Envelope::new(
        "tests",
        Uuid::now_v7().to_string(),
        &ThingHappened {
            thing_id: Uuid::now_v7(),
            label: label.to_owned(),
        },
    )
    .expect("the payload serialises")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_applies_each_event_once_and_a_failure_spoils_only_its_own_event() {
    let env = TestEnv::start().await;
    let consumer = Consumer::new(
        CONSUMER,
        env.pool.clone(),
        env.broker.clone(),
        PoisonedLabel,
    );
    let (a, b, poison, d) = (thing("a"), thing("b"), thing("poison"), thing("d"));
    // `a` twice in one batch, as a redelivery that arrives next to the first delivery.
    let batch = [a.clone(), b.clone(), a.clone(), poison.clone(), d.clone()];
    let outcomes = consumer
        .process_batch(&batch)
        .await
        .expect("the database answers");
    assert_eq!(
        outcomes,
        [
            Outcome::Applied,
            Outcome::Applied,
            Outcome::Duplicate,
            Outcome::Failed,
            Outcome::Applied
        ]
    );
    let effects = env.effects_per_event().await;
    assert_eq!(effects.len(), 3, "{effects:?}");
    for applied in [&a, &b, &d] {
        assert_eq!(effects.get(&applied.id), Some(&1));
    }
    assert!(
        !effects.contains_key(&poison.id),
        "the failed event left nothing"
    );
    let mut processed = env.processed_events(CONSUMER).await;
    processed.sort();
    let mut expected = vec![a.id, b.id, d.id];
    expected.sort();
    assert_eq!(processed, expected);

    // The same batch again: nothing is applied twice; the poisoned event fails again.
    let again = consumer
        .process_batch(&batch)
        .await
        .expect("the database answers");
    assert_eq!(
        again,
        [
            Outcome::Duplicate,
            Outcome::Duplicate,
            Outcome::Duplicate,
            Outcome::Failed,
            Outcome::Duplicate
        ]
    );
    assert_eq!(env.effect_rows().await, 3);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_partitions_apply_every_event_exactly_once() {
    let env = TestEnv::start().await;
    let consumer = Consumer::new(
        CONSUMER,
        env.pool.clone(),
        env.broker.clone(),
        PoisonedLabel,
    )
    .with_concurrency(3);
    let labels = ["u1", "u2", "u3", "u4", "u5", "poison"];
    let batch: Vec<Envelope> = (0..60).map(|i| thing(labels[i % labels.len()])).collect();
    let outcomes = consumer.process_partitioned(&batch).await;
    for (event, outcome) in batch.iter().zip(&outcomes) {
        let expected = if event.decode::<ThingHappened>().expect("thing").label == "poison" {
            Outcome::Failed
        } else {
            Outcome::Applied
        };
        assert_eq!(*outcome, expected);
    }
    let effects = env.effects_per_event().await;
    assert_eq!(effects.len(), 50);
    assert!(effects.values().all(|count| *count == 1));
    // Delivered again, all together: nothing more happens.
    let again = consumer.process_partitioned(&batch).await;
    assert_eq!(
        again.iter().filter(|o| **o == Outcome::Duplicate).count(),
        50
    );
    assert_eq!(env.effect_rows().await, 50);
    env.cleanup().await;
}
