//! API tests of the gamification service with identity and training, against real
//! PostgreSQL, Redis and NATS.

mod achievements;
mod helpers;
mod leaderboards;
mod points;
mod resilience;
