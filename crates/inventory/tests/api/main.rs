//! API tests of the inventory service with identity and training, against real PostgreSQL,
//! Redis and NATS.

mod catalog;
mod gear;
mod helpers;
mod wear;
mod workout_gear;
