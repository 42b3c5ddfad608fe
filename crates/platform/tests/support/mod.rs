//! What the platform's integration tests share: a private database and a private JetStream
//! namespace per test, a test event type, and bounded waits.
//!
//! Every test gets `t_<hex>_eventing` in PostgreSQL (`STRIDE_TEST_DATABASE_URL`) and the NATS
//! prefix `t<hex>.` (`STRIDE_TEST_NATS_URL`), so tests run in parallel on shared servers without
//! seeing each other. [`TestEnv::cleanup`] removes both, and so does dropping a `TestEnv` when a
//! test fails halfway (best effort; the test script also drops databases named `t_*`).

use std::{collections::HashMap, future::Future, str::FromStr, time::Duration};

use async_nats::jetstream::consumer::Info as ConsumerInfo;
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::{
    Connection, PgConnection, PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgListener},
};
use stride_events::{Envelope, EventData};
use stride_platform::{
    broker::Broker,
    config::Config,
    consumer::EventHandler,
    db::{connect, migrate},
    outbox::enqueue,
};
use uuid::Uuid;

/// The tests' own tables: `things` (domain state) and `effects` (an append-only log with no
/// unique key, so a double application shows up as two rows).
pub static TEST_MIGRATIONS: Migrator = sqlx::migrate!("./tests/migrations");

/// The service name of the tests' database and the producer name of their events.
pub const SERVICE: &str = "eventing";

/// How long any single wait in a test may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The payload of every test event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThingHappened {
    /// The domain row written in the same transaction.
    pub thing_id: Uuid,
    /// Free text, to give the payload some body.
    pub label: String,
}

impl EventData for ThingHappened {
    const TYPE: &'static str = "test.thing_happened.v1";
}

/// One test's database, broker namespace and configuration.
pub struct TestEnv {
    pub config: Config,
    pub pool: PgPool,
    pub broker: Broker,
    cleaned_up: bool,
}

impl TestEnv {
    /// A fresh, migrated database and a fresh `EVENTS` stream under a unique prefix.
    pub async fn start() -> Self {
        init_logs();
        let unique = Uuid::new_v4().simple().to_string()[..12].to_owned();
        let config = Config {
            database_url: SecretString::from(
                std::env::var("STRIDE_TEST_DATABASE_URL").unwrap_or_else(|_| {
                    "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned()
                }),
            ),
            database_prefix: format!("t_{unique}_"),
            database_max_connections: 10,
            nats_url: std::env::var("STRIDE_TEST_NATS_URL")
                .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned()),
            nats_prefix: format!("t{unique}."),
            ..Config::default()
        };
        let pool = connect(&config, SERVICE)
            .await
            .expect("the test database can be created and reached");
        migrate(&pool, &TEST_MIGRATIONS)
            .await
            .expect("the platform and test migrations apply");
        let broker = Broker::connect(&config)
            .await
            .expect("NATS with JetStream is reachable and the EVENTS stream can be created");
        Self {
            config,
            pool,
            broker,
            cleaned_up: false,
        }
    }

    /// Removes the stream and the database (best effort: leftovers are dropped by the test
    /// script).
    pub async fn cleanup(mut self) {
        self.cleaned_up = true;
        self.pool.close().await;
        remove_leftovers(&self.config).await;
    }

    /// Writes a `things` row and its event in one transaction, as a producing service does.
    pub async fn produce_thing(&self, label: &str) -> Uuid {
        let mut produced = self.produce_things(&[label]).await;
        produced.pop().expect("one event was produced")
    }

    /// Writes one `things` row and one event per label, all in one transaction; returns the
    /// event ids.
    pub async fn produce_things(&self, labels: &[&str]) -> Vec<Uuid> {
        let mut tx = self.pool.begin().await.expect("a producing transaction");
        let mut event_ids = Vec::with_capacity(labels.len());
        for label in labels {
            let envelope = insert_thing_with_event(&mut tx, label).await;
            event_ids.push(envelope.id);
        }
        tx.commit()
            .await
            .expect("the producing transaction commits");
        event_ids
    }

    /// Rows of `effects` per event id.
    pub async fn effects_per_event(&self) -> HashMap<Uuid, i64> {
        let rows: Vec<(Uuid, i64)> =
            sqlx::query_as("SELECT event_id, count(*) FROM effects GROUP BY event_id")
                .fetch_all(&self.pool)
                .await
                .expect("effects can be read");
        rows.into_iter().collect()
    }

    /// Rows of `effects` in all.
    pub async fn effect_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM effects")
            .fetch_one(&self.pool)
            .await
            .expect("effects can be counted")
    }

    /// Events `consumer` has recorded as processed.
    pub async fn processed_events(&self, consumer: &str) -> Vec<Uuid> {
        sqlx::query_scalar("SELECT event_id FROM processed_events WHERE consumer = $1")
            .bind(consumer)
            .fetch_all(&self.pool)
            .await
            .expect("processed events can be read")
    }

    /// Events `consumer` gave up on.
    pub async fn dead_letters(&self, consumer: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM dead_letter_events WHERE consumer = $1")
            .bind(consumer)
            .fetch_one(&self.pool)
            .await
            .expect("dead letters can be counted")
    }

    /// Outbox rows not yet marked sent.
    pub async fn unsent_outbox_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .expect("the outbox can be read")
    }

    /// Messages stored in this test's `EVENTS` stream.
    pub async fn stream_messages(&self) -> u64 {
        let mut stream = self
            .broker
            .jetstream
            .get_stream(&self.broker.events_stream)
            .await
            .expect("the test's EVENTS stream exists");
        stream
            .info()
            .await
            .expect("the stream's state can be read")
            .state
            .messages
    }

    /// The broker's view of the durable consumer `name`.
    pub async fn consumer_info(&self, name: &str) -> ConsumerInfo {
        let stream = self
            .broker
            .jetstream
            .get_stream(&self.broker.events_stream)
            .await
            .expect("the test's EVENTS stream exists");
        stream
            .consumer_info(name)
            .await
            .expect("the durable consumer exists")
    }

    /// Whether the broker has delivered every stored message to `name` and holds no
    /// unacknowledged ones (so no redelivery is still to come).
    pub async fn consumer_is_drained(&self, name: &str) -> bool {
        let stream = self
            .broker
            .jetstream
            .get_stream(&self.broker.events_stream)
            .await
            .expect("the test's EVENTS stream exists");
        let Ok(info) = stream.consumer_info(name).await else {
            // Not created yet by the consumer task.
            return false;
        };
        info.num_pending == 0 && info.num_ack_pending == 0
    }

    /// A listener on the channel the outbox trigger notifies.
    pub async fn outbox_listener(&self) -> PgListener {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .expect("a listening connection");
        listener
            .listen("stride_outbox")
            .await
            .expect("LISTEN stride_outbox");
        listener
    }
}

impl Drop for TestEnv {
    /// A test that failed before [`TestEnv::cleanup`] still removes its stream, which would
    /// otherwise stay on the shared broker. This runs inside the test's runtime, so the async
    /// work gets a thread and a runtime of its own.
    fn drop(&mut self) {
        if self.cleaned_up {
            return;
        }
        let config = self.config.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), remove_leftovers(&config)).await;
            });
        });
        let _ = cleanup.join();
    }
}

/// Deletes the test's stream and drops its database, ignoring failures.
async fn remove_leftovers(config: &Config) {
    if let Ok(client) = async_nats::connect(&config.nats_url).await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(config.stream_name("EVENTS"))
            .await;
    }
    let Ok(options) = PgConnectOptions::from_str(config.database_url.expose_secret()) else {
        return;
    };
    if let Ok(mut admin) = PgConnection::connect_with(&options).await {
        let name = config.database_name(SERVICE);
        // FORCE also ends the connections a failed test left open.
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut admin)
            .await;
        let _ = admin.close().await;
    }
}

/// Inserts a `things` row and enqueues its event on `connection` (inside the caller's
/// transaction).
pub async fn insert_thing_with_event(connection: &mut PgConnection, label: &str) -> Envelope {
    let thing_id = Uuid::now_v7();
    sqlx::query("INSERT INTO things (id, label) VALUES ($1, $2)")
        .bind(thing_id)
        .bind(label)
        .execute(&mut *connection)
        .await
        .expect("the domain row is written");
    let envelope = Envelope::new(
        SERVICE,
        thing_id.to_string(),
        &ThingHappened {
            thing_id,
            label: label.to_owned(),
        },
    )
    .expect("the payload serialises");
    enqueue(connection, &envelope)
        .await
        .expect("the event is enqueued");
    envelope
}

/// Appends one `effects` row per `ThingHappened` event: the effect whose count the tests check.
pub struct RecordEffect;

impl EventHandler for RecordEffect {
    fn handle<'a>(
        &'a self,
        connection: &'a mut PgConnection,
        event: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if !event.is::<ThingHappened>() {
                return Ok(());
            }
            record_effect(connection, event.id).await
        })
    }
}

/// The effect itself, shared by the tests' handlers.
pub async fn record_effect(connection: &mut PgConnection, event_id: Uuid) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
        .bind(event_id)
        .execute(connection)
        .await?;
    Ok(())
}

/// Polls `check` until it holds, failing the test after [`PATIENCE`].
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(PATIENCE, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "gave up after {PATIENCE:?} waiting until {what}"
    );
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
