//! What every Stride service shares.
//!
//! A service crate describes itself with a [`service::ServiceSpec`]; the [`server`] mounts the
//! enabled services on one HTTP and one gRPC port and runs their workers. Around that:
//!
//! - [`config`]: layered configuration (defaults, optional TOML file, `STRIDE_*` variables);
//! - [`observability`]: JSON logs, request ids, Prometheus metrics;
//! - [`error`]: problem+json errors with stable types, mapped to gRPC codes too;
//! - [`http`]: extractors with problem+json rejections, client addresses, cursors;
//! - [`db`]: one database per service, created when missing, migrated at start;
//! - [`cache`]: Redis with reconnects and a key prefix;
//! - [`broker`]: NATS JetStream and the `EVENTS` stream;
//! - [`outbox`] and [`consumer`]: events published exactly when state changes, and applied
//!   exactly once by consumers;
//! - [`auth`] and [`device_auth`]: access-token and device-credential verification;
//! - [`short_cache`]: other services' answers cached for seconds and renewed ahead of expiry.

pub mod auth;
pub mod broker;
pub mod cache;
pub mod config;
pub mod consumer;
pub mod db;
pub mod device_auth;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod observability;
pub mod outbox;
pub mod server;
pub mod service;
pub mod short_cache;
pub mod thread;
