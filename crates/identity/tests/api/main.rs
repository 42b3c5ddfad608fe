//! API tests of the identity service, through HTTP and gRPC against real PostgreSQL, Redis
//! and NATS. Each test starts its own app on port 0 with its own databases and namespaces.

mod admin;
mod auth;
mod devices;
mod events;
mod helpers;
mod jwks;
mod me;
mod platform;
mod security;
mod sessions;
mod throttling;
