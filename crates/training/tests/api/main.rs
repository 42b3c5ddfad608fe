//! API tests of the training service (with identity, which it needs for tokens and profiles),
//! through HTTP and gRPC against real PostgreSQL, Redis and NATS.

mod activities;
mod events;
mod helpers;
mod lifecycle;
mod settings;
mod uploads;
