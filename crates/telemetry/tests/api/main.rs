//! API tests of the telemetry service (with identity and training, which it needs for device
//! credentials and activities), against real PostgreSQL, Redis, NATS and InfluxDB.

mod helpers;
mod ingest;
mod live;
mod streams;
