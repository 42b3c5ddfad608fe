//! Stride's benchmark tool: load scenarios run against a live `stride serve`, measured and
//! reported, never asserted on. Figures are written down in `docs/benchmarks.md`; `dev/bench`
//! starts a fresh server and runs everything.
//!
//! - [`identity`]: the identity issue's "Measure" scenario — login throughput under a storm of
//!   concurrent logins, and `GET /v1/me` latency before and during that storm;
//! - [`training`]: the training issue's — parse-and-summarise time per format, upload to
//!   ready, and `GET /v1/activities` under a fixed request rate with 10,000 activities;
//! - [`telemetry`]: the telemetry issue's — durable-accept rate, end to end into InfluxDB next
//!   to InfluxDB's own write rate, latency at half rate, live-view delay, memory, bytes on disk;
//! - [`gamification`]: the gamification issue's — delay from a finished workout to points and
//!   leaderboard, and how fast a backlog of workouts is worked off;
//! - [`codec`]: the ingest path's CPU on a batch's bytes (decode, validate, columns), with no
//!   server;
//! - [`api`]: what the scenarios share (accounts, report lines);
//! - [`hashing`]: the raw single-thread cost of one argon2id hash, the unit logins are made of;
//! - [`procfs`]: resident memory and CPU time of the server (and of this process) from `/proc`;
//! - [`stats`]: latency percentiles.

pub mod api;
pub mod codec;
pub mod gamification;
pub mod hashing;
pub mod identity;
pub mod procfs;
pub mod stats;
pub mod telemetry;
pub mod training;
