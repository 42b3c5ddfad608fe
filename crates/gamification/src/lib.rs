//! The gamification service: points for workouts, a ledger and balances, redemptions, and
//! leaderboards, all computed from events so that saving a workout never waits for it.
//!
//! - [`rules`]: the points rules and the daily cap (pure);
//! - [`events`]: the consumer of `training.*` and `identity.*` events (exactly once each);
//! - [`leaderboards`]: Redis sorted sets rebuilt from PostgreSQL whenever Redis lost them;
//! - [`achievements`]: the declarative catalogue and its evaluation;
//! - [`challenges`]: time-boxed goals and their progress;
//! - [`http`]: `/v1/me/points`, `/v1/me/points/redemptions`, `/v1/leaderboards/{metric}`,
//!   `/v1/achievements`, `/v1/users/{id}/achievements`, `/v1/challenges`.
//!
//! Publishes `gamification.points_awarded.v1` and `gamification.achievement_unlocked.v1`.
//!
//! The append-only `ledger` in PostgreSQL is the source of truth; `balances` is kept with it
//! in the same transaction.

pub mod achievements;
pub mod challenges;
pub mod events;
pub mod http;
pub mod leaderboards;
pub mod rules;

use sqlx::PgPool;
use stride_platform::{
    cache::Redis,
    consumer::Consumer,
    outbox::Relay,
    service::{Context, Service, ServiceSpec, Worker},
};

/// The service's name: its target and database suffix.
pub const NAME: &str = "gamification";

/// Transactions the consumer applies at once, each holding other users' events (see
/// [`events::Points`]'s partition key). Leaves most of the connection pool to the API.
const CONSUMER_CONCURRENCY: usize = 4;

/// The gamification service's migrations.
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How the binary finds this service.
pub static SERVICE: ServiceSpec = ServiceSpec {
    name: NAME,
    migrations: &MIGRATIONS,
    build: |context| Box::pin(build(context)),
};

/// Shared state of the gamification handlers.
#[derive(Clone, Debug)]
pub struct Gamification {
    pub(crate) db: PgPool,
    pub(crate) redis: Redis,
}

async fn build(context: Context) -> anyhow::Result<Service> {
    let state = Gamification {
        db: context.db.clone(),
        redis: context.redis.clone(),
    };
    let relay = Relay::new(context.db.clone(), context.broker.clone());
    let consumer = Consumer::new(
        NAME,
        context.db.clone(),
        context.broker.clone(),
        events::Points {
            db: context.db.clone(),
            redis: context.redis.clone(),
        },
    )
    .with_concurrency(CONSUMER_CONCURRENCY);
    Ok(Service {
        name: NAME,
        router: http::router(state),
        grpc: None,
        workers: vec![
            Worker::new("gamification-outbox-relay", move |token| relay.run(token)),
            Worker::new("gamification-consumer", move |token| consumer.run(token)),
        ],
        db: context.db,
    })
}
