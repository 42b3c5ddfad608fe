//! The `stride` binary's library: which services exist, how a target list is parsed, and
//! which [`ServiceSpec`]s a target list enables. `main.rs` only parses the command line.
//!
//! Every service is a target; `all` (the default) enables every one of them in one process.
//! Behaviour is the same whatever the split: services talk through the same gRPC clients and
//! the same broker whether they share a process or not.

pub mod sim;

use std::{fmt, str::FromStr};

use stride_platform::service::ServiceSpec;

/// A service the binary can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// Accounts, sessions, devices.
    Identity,
    /// Workouts and their lifecycle, training settings.
    Training,
    /// Device samples: ingest, durable buffer, InfluxDB, streams.
    Telemetry,
    /// Points, redemptions, leaderboards.
    Gamification,
    /// Gear, wear, the partner catalog.
    Inventory,
}

impl Target {
    /// Every target, in start order.
    pub const ALL: [Target; 5] = [
        Target::Identity,
        Target::Training,
        Target::Telemetry,
        Target::Gamification,
        Target::Inventory,
    ];

    /// The target's name on the command line.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The service behind the target.
    pub fn spec(self) -> &'static ServiceSpec {
        match self {
            Target::Identity => &stride_identity::SERVICE,
            Target::Training => &stride_training::SERVICE,
            Target::Telemetry => &stride_telemetry::SERVICE,
            Target::Gamification => &stride_gamification::SERVICE,
            Target::Inventory => &stride_inventory::SERVICE,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A target name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown target {unknown:?}; valid targets are: all, {}",
    valid_names()
)]
pub struct UnknownTarget {
    /// What was given.
    pub unknown: String,
}

fn valid_names() -> String {
    Target::ALL
        .iter()
        .map(|target| target.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Target {
    type Err = UnknownTarget;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Target::ALL
            .into_iter()
            .find(|target| target.name() == name.trim())
            .ok_or_else(|| UnknownTarget {
                unknown: name.to_owned(),
            })
    }
}

/// A set of targets: `all`, or a comma-separated list of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets(Vec<Target>);

impl Targets {
    /// The enabled targets, in start order, without repetition.
    pub fn enabled(&self) -> &[Target] {
        &self.0
    }

    /// Whether `target` runs in this process (the one place that decides).
    pub fn is_enabled(&self, target: Target) -> bool {
        self.0.contains(&target)
    }

    /// The services to mount.
    pub fn specs(&self) -> Vec<&'static ServiceSpec> {
        self.0.iter().map(|target| target.spec()).collect()
    }
}

impl Default for Targets {
    fn default() -> Self {
        Self(Target::ALL.to_vec())
    }
}

impl FromStr for Targets {
    type Err = UnknownTarget;

    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let mut targets = Vec::new();
        for name in list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            if name == "all" {
                return Ok(Self::default());
            }
            targets.push(name.parse::<Target>()?);
        }
        if targets.is_empty() {
            return Err(UnknownTarget {
                unknown: list.to_owned(),
            });
        }
        targets.sort();
        targets.dedup();
        Ok(Self(targets))
    }
}

impl fmt::Display for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|target| target.name()).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_the_default_and_enables_every_target() {
        let all: Targets = "all".parse().expect("valid");
        assert_eq!(all, Targets::default());
        assert!(Target::ALL.iter().all(|target| all.is_enabled(*target)));
    }

    #[test]
    fn lists_are_parsed_deduplicated_and_printed_back() {
        let targets: Targets = " identity , identity".parse().expect("valid");
        assert_eq!(targets.enabled(), &[Target::Identity]);
        assert_eq!(targets.to_string(), "identity");
    }

    #[test]
    fn an_unknown_target_lists_the_valid_ones() {
        let error = "identity,telemetrie"
            .parse::<Targets>()
            .expect_err("unknown");
        let message = error.to_string();
        assert!(message.contains("telemetrie"), "{message}");
        assert!(
            message.contains("all, identity, training, telemetry, gamification, inventory"),
            "{message}"
        );
        assert!("".parse::<Targets>().is_err());
    }
}
