//! Stride's benchmark tool: load scenarios run against a live `stride serve`, measured and
//! reported, never asserted on. Figures are written down in `docs/benchmarks.md`; `dev/bench`
//! starts a fresh server and runs everything.
//!
//! - [`identity`]: the identity issue's "Measure" scenario — login throughput under a storm of
//!   concurrent logins, and `GET /v1/me` latency before and during that storm;
//! - [`hashing`]: the raw single-thread cost of one argon2id hash, the unit logins are made of;
//! - [`procfs`]: resident memory and CPU time of the server (and of this process) from `/proc`;
//! - [`stats`]: latency percentiles.

pub mod hashing;
pub mod identity;
pub mod procfs;
pub mod stats;
