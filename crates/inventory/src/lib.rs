//! The inventory service: people's gear (shoes, bikes and their components, wetsuits, skis,
//! ...), its wear from finished workouts, wear alerts and retirement.
//!
//! - [`domain`]: kinds, component types and sports; [`domain::wear`] is the pure wear model
//!   (default service limits per kind, percentages, thresholds, the forecast of the day a
//!   limit is reached);
//! - [`store`]: SQL for gear, attachments of components to bikes, and wear entries — the one
//!   place wear changes, always together with the totals and the threshold check;
//! - [`events`]: the consumer of `training.activity_{finished,updated,deleted}.v1` and
//!   `identity.user_deleted.v1` (exactly once each), and the payload of
//!   `inventory.gear_wear_threshold_reached.v1`;
//! - [`http`]: `/v1/gear`, `/v1/gear/{id}`, `/v1/gear/{id}/retire`,
//!   `/v1/gear/defaults/{sport}`, `/v1/gear/alerts`, and the partner catalog:
//!   `/v1/catalog/import` (administrators), `/v1/catalog/search`, `/v1/gear/{id}/replacements`.
//!
//! An item's wear is its initial distance and time plus the sum of its `wear_entries` (one per
//! workout that wore it). A workout wears the gear it names, or the sport's default gear, and
//! a ride also wears every component attached to the bike when it started. Crossing 80% and
//! 100% of an item's limit opens an alert and publishes an event through the outbox, once per
//! threshold.
//!
//! The partner catalog keeps each product's document in `catalog_products` and what searches
//! look at (category, brand, attributes, words) in the narrow `catalog_search`, written by the
//! same statement. Searches rank and filter there and read documents only for the products
//! they return; see `http::catalog`.

pub mod domain;
pub mod events;
pub mod grpc;
pub mod http;
pub mod store;

use sqlx::PgPool;
use stride_platform::{
    cache::Redis,
    consumer::Consumer,
    outbox::Relay,
    service::{Context, Service, ServiceSpec, Worker},
};

/// The service's name: its target and database suffix.
pub const NAME: &str = "inventory";

/// The inventory service's migrations.
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How the binary finds this service.
pub static SERVICE: ServiceSpec = ServiceSpec {
    name: NAME,
    migrations: &MIGRATIONS,
    build: |context| Box::pin(build(context)),
};

/// Shared state of the inventory handlers.
#[derive(Clone, Debug)]
pub struct Inventory {
    pub(crate) db: PgPool,
    /// The catalog search cache.
    pub(crate) redis: Redis,
    /// How long a cached search answer lives; zero: no cache.
    pub(crate) search_cache: std::time::Duration,
}

async fn build(context: Context) -> anyhow::Result<Service> {
    let state = Inventory {
        db: context.db.clone(),
        redis: context.redis.clone(),
        search_cache: std::time::Duration::from_secs(context.config.catalog_search_cache_seconds),
    };
    let relay = Relay::new(context.db.clone(), context.broker.clone());
    let consumer = Consumer::new(
        NAME,
        context.db.clone(),
        context.broker.clone(),
        events::WearEvents,
    );
    Ok(Service {
        name: NAME,
        router: http::router(state.clone()),
        grpc: Some(grpc::routes(state)),
        workers: vec![
            Worker::new("inventory-outbox-relay", move |token| relay.run(token)),
            Worker::new("inventory-consumer", move |token| consumer.run(token)),
        ],
        db: context.db,
    })
}
