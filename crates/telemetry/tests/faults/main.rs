//! Fault tests of the telemetry service: servers are SIGKILLed and restarted under ingest and
//! no accepted sample may be lost or doubled.
//!
//! Each test starts its own nats-server and influxd (testkit's [`PrivateNats`] and
//! [`PrivateInflux`], on spare loopback ports with temporary data folders) and runs the app
//! in-process against them; PostgreSQL and Redis are the machine's shared servers with the
//! test's own databases and keys. They take a minute or more each.
//!
//! [`PrivateNats`]: stride_testkit::PrivateNats
//! [`PrivateInflux`]: stride_testkit::PrivateInflux

mod helpers;
mod influx_outage;
mod kills;
mod replicas;
mod yielding;
