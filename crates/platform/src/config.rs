//! Layered configuration: defaults in code, then an optional TOML file, then `STRIDE_*`
//! environment variables (the last one wins). Every field is listed in the README.

use std::{net::SocketAddr, path::Path, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The whole configuration of one `stride` process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// HTTP listen address (`STRIDE_HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// gRPC listen address (`STRIDE_GRPC_ADDR`).
    pub grpc_addr: SocketAddr,
    /// Administrative PostgreSQL connection; each service's database is created next to it
    /// (`STRIDE_DATABASE_URL`).
    #[serde(serialize_with = "serialize_secret")]
    pub database_url: SecretString,
    /// Prefix of the per-service database names: `<prefix><service>` (`STRIDE_DATABASE_PREFIX`).
    pub database_prefix: String,
    /// Maximum connections per service pool (`STRIDE_DATABASE_MAX_CONNECTIONS`).
    pub database_max_connections: u32,
    /// Redis URL (`STRIDE_REDIS_URL`).
    #[serde(serialize_with = "serialize_secret")]
    pub redis_url: SecretString,
    /// Prefix of every Redis key this installation writes (`STRIDE_REDIS_PREFIX`).
    pub redis_prefix: String,
    /// NATS URL (`STRIDE_NATS_URL`).
    pub nats_url: String,
    /// Namespace for JetStream streams and subjects; empty in production, used by tests to
    /// share one broker (`STRIDE_NATS_PREFIX`).
    pub nats_prefix: String,
    /// How long the `EVENTS` stream keeps events, so new consumers can replay history
    /// (`STRIDE_EVENTS_MAX_AGE_DAYS`).
    pub events_max_age_days: u64,
    /// gRPC address of the identity service; unset means this process's own gRPC port, which
    /// is right when identity runs in the same process (`STRIDE_IDENTITY_GRPC_URL`).
    pub identity_grpc_url: Option<String>,
    /// Where the JSON Web Key Set is fetched; unset means this process's own
    /// `/.well-known/jwks.json` (`STRIDE_JWKS_URL`).
    pub jwks_url: Option<String>,
    /// How long fetched signing keys are trusted before the set is fetched again; a removed
    /// key is refused at the latest after this time (`STRIDE_JWKS_CACHE_SECONDS`).
    pub jwks_cache_seconds: u64,
    /// `iss` of access tokens (`STRIDE_JWT_ISSUER`).
    pub jwt_issuer: String,
    /// `aud` of access tokens (`STRIDE_JWT_AUDIENCE`).
    pub jwt_audience: String,
    /// Lifetime of access tokens (`STRIDE_ACCESS_TOKEN_SECONDS`).
    pub access_token_seconds: u64,
    /// Lifetime of a session without use; each refresh extends it (`STRIDE_SESSION_DAYS`).
    pub session_days: u64,
    /// How long a device credential check is cached by the services that accept device
    /// traffic: a revoked device is refused at the latest after this time
    /// (`STRIDE_DEVICE_AUTH_CACHE_SECONDS`).
    pub device_auth_cache_seconds: u64,
    /// Threads that hash passwords, at low CPU priority (`STRIDE_PASSWORD_HASH_THREADS`,
    /// 0 = one per core).
    pub password_hash_threads: usize,
    /// Peers whose `X-Forwarded-For` is believed, e.g. the gateway
    /// (`STRIDE_TRUSTED_PROXIES`, comma-separated CIDRs).
    pub trusted_proxies: String,
    /// InfluxDB's HTTP address (v1 API) for telemetry (`STRIDE_INFLUX_URL`).
    pub influx_url: String,
    /// InfluxDB database of the samples; created at start (`STRIDE_INFLUX_DATABASE`).
    pub influx_database: String,
    /// How long InfluxDB keeps samples, as an InfluxQL duration (`52w`; `INF` keeps them
    /// forever) (`STRIDE_INFLUX_RETENTION`).
    pub influx_retention: String,
    /// gRPC address of the training service; unset means this process
    /// (`STRIDE_TRAINING_GRPC_URL`).
    pub training_grpc_url: Option<String>,
    /// gRPC address of the telemetry service; unset means this process
    /// (`STRIDE_TELEMETRY_GRPC_URL`).
    pub telemetry_grpc_url: Option<String>,
    /// gRPC address of the inventory service; unset means this process
    /// (`STRIDE_INVENTORY_GRPC_URL`).
    pub inventory_grpc_url: Option<String>,
    /// Telemetry batches a device may send per second (`STRIDE_DEVICE_BATCHES_PER_SECOND`).
    pub device_batches_per_second: u32,
    /// Telemetry batches one process works on at once; more are answered `503` with
    /// `Retry-After` at once, before their bodies are read, so an overload costs the device
    /// a retry instead of growing the server's memory and every request's wait
    /// (`STRIDE_INGEST_MAX_IN_FLIGHT`, at least 1).
    pub ingest_max_in_flight: u32,
    /// Bytes of telemetry batch bodies one process works on at once, counted from each
    /// request's `Content-Length` (1 MiB, the largest batch, when it has none); a batch that
    /// would go past it is answered like one past `ingest_max_in_flight`. Memory and work
    /// grow with bytes, not with requests: this bounds both whatever size devices' batches
    /// are (`STRIDE_INGEST_MAX_IN_FLIGHT_BYTES`, 1 MiB to 1 GiB).
    pub ingest_max_in_flight_bytes: u64,
    /// Concurrent InfluxDB writes of one telemetry process's writer
    /// (`STRIDE_TELEMETRY_WRITERS`, 0 to 16; 0 makes an ingest-only replica that leaves
    /// the buffer to other processes' writers).
    pub telemetry_writers: u32,
    /// Samples per second accepted across all telemetry replicas above which the writers
    /// stop draining into InfluxDB and leave the backlog in the buffer, so that the drain
    /// does not take the CPU and disk that ingest's latency needs on a machine shared with
    /// InfluxDB and the broker (`STRIDE_TELEMETRY_DRAIN_YIELD_ABOVE`; 0: never stop, for
    /// InfluxDB on hosts of its own). They drain at full speed after a quiet second.
    pub telemetry_drain_yield_above: u64,
    /// The longest the writers stop for ingest at a stretch, seconds; after it they drain
    /// until they have caught up, however heavy ingest is, so samples are queryable within
    /// about this long of being accepted whenever InfluxDB keeps up
    /// (`STRIDE_TELEMETRY_DRAIN_MAX_YIELD_SECONDS`, 1 s to a day).
    pub telemetry_drain_max_yield_seconds: u64,
    /// How long the telemetry buffer recognises a batch sent again (same device and `seq`)
    /// and answers `duplicate: true` without storing it twice
    /// (`STRIDE_TELEMETRY_DEDUP_WINDOW_SECONDS`, 1 s to a day). The buffer keeps stored
    /// batches this long, so that the broker still knows them after a restart; the broker
    /// holds an entry per batch for this long.
    pub telemetry_dedup_window_seconds: u64,
    /// Bytes the telemetry buffer may hold: the backlog InfluxDB has not taken yet plus the
    /// last dedup window (`STRIDE_TELEMETRY_BUFFER_MAX_BYTES`, at least 1 MiB; 1 GiB by
    /// default, about 15 hours of a thousand devices at one sample a second). A full buffer
    /// refuses new batches with `503` (devices keep them and retry) rather than fill the
    /// broker's disk, which the `EVENTS` stream needs too. The broker reserves this much of
    /// its JetStream storage for the stream.
    pub telemetry_buffer_max_bytes: u64,
    /// A cgroup v1 `cpu` folder (one with `cpu.idle = 1`) that background threads — the
    /// telemetry writer — move into, so that they run only on CPU time no request-serving
    /// process wants (`STRIDE_BACKGROUND_CGROUP`; unset: they stay in the process's group at
    /// `SCHED_IDLE`). The project's scripts create and set it where the kernel allows.
    pub background_cgroup: Option<String>,
    /// How long a catalog search answer is cached in Redis, seconds; 0 turns the cache off
    /// (`STRIDE_CATALOG_SEARCH_CACHE_SECONDS`). Every import invalidates it at once.
    pub catalog_search_cache_seconds: u64,
    /// `json` (default) or `pretty` (`STRIDE_LOG_FORMAT`).
    pub log_format: String,
    /// Log filter in `tracing` syntax (`STRIDE_LOG`).
    pub log: String,
    /// How long shutdown waits for in-flight requests and workers
    /// (`STRIDE_SHUTDOWN_GRACE_SECONDS`).
    pub shutdown_grace_seconds: u64,
}

fn serialize_secret<S: serde::Serializer>(
    secret: &SecretString,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
            database_url: SecretString::from(
                "postgres://postgres:postgres@127.0.0.1:5432/postgres",
            ),
            database_prefix: "stride_".into(),
            database_max_connections: 10,
            redis_url: SecretString::from("redis://127.0.0.1:6379"),
            redis_prefix: "stride:".into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_prefix: String::new(),
            events_max_age_days: 90,
            identity_grpc_url: None,
            jwks_url: None,
            jwks_cache_seconds: 300,
            jwt_issuer: "stride".into(),
            jwt_audience: "stride".into(),
            access_token_seconds: 900,
            session_days: 30,
            device_auth_cache_seconds: 5,
            password_hash_threads: 0,
            trusted_proxies: "127.0.0.1/32,::1/128".into(),
            influx_url: "http://127.0.0.1:8086".into(),
            influx_database: "stride".into(),
            influx_retention: "INF".into(),
            training_grpc_url: None,
            telemetry_grpc_url: None,
            inventory_grpc_url: None,
            device_batches_per_second: 20,
            ingest_max_in_flight: 512,
            ingest_max_in_flight_bytes: 8 * 1024 * 1024,
            telemetry_writers: 2,
            telemetry_drain_yield_above: 1_000_000,
            telemetry_drain_max_yield_seconds: 120,
            telemetry_dedup_window_seconds: 600,
            telemetry_buffer_max_bytes: 1024 * 1024 * 1024,
            background_cgroup: None,
            catalog_search_cache_seconds: 300,
            log_format: "json".into(),
            log: "info,sqlx=warn".into(),
            shutdown_grace_seconds: 30,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value could not be read or has the wrong type.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    /// A value has the right type but is not usable.
    #[error("invalid configuration: {0}")]
    Value(String),
}

impl Config {
    /// Defaults, then `file` (TOML) if given, then `STRIDE_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Value(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        let config: Config = figment
            .merge(Env::prefixed("STRIDE_").ignore(&["CONFIG_FILE"]))
            .extract()
            .map_err(Box::new)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.trusted_proxy_networks()?;
        if !self
            .database_prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(ConfigError::Value(
                "STRIDE_DATABASE_PREFIX may only hold lowercase letters, digits and _".into(),
            ));
        }
        if self.access_token_seconds == 0 || self.session_days == 0 {
            return Err(ConfigError::Value(
                "token and session lifetimes must be positive".into(),
            ));
        }
        let retention_ok = self.influx_retention == "INF"
            || (self.influx_retention.len() > 1
                && self
                    .influx_retention
                    .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                    .chars()
                    .all(|c| c.is_ascii_digit()));
        if !retention_ok {
            return Err(ConfigError::Value(
                "STRIDE_INFLUX_RETENTION must be INF or a duration such as 52w or 90d".into(),
            ));
        }
        if self.ingest_max_in_flight == 0 {
            return Err(ConfigError::Value(
                "STRIDE_INGEST_MAX_IN_FLIGHT must be at least 1".into(),
            ));
        }
        if !(1024 * 1024..=1024 * 1024 * 1024).contains(&self.ingest_max_in_flight_bytes) {
            return Err(ConfigError::Value(
                "STRIDE_INGEST_MAX_IN_FLIGHT_BYTES must be between 1048576 (one batch of the \
                 largest size) and 1073741824"
                    .into(),
            ));
        }
        if self.telemetry_writers > 16 {
            return Err(ConfigError::Value(
                "STRIDE_TELEMETRY_WRITERS must be between 0 and 16".into(),
            ));
        }
        if !(1..=86_400).contains(&self.telemetry_drain_max_yield_seconds) {
            return Err(ConfigError::Value(
                "STRIDE_TELEMETRY_DRAIN_MAX_YIELD_SECONDS must be between 1 and 86400".into(),
            ));
        }
        if !(1..=86_400).contains(&self.telemetry_dedup_window_seconds) {
            return Err(ConfigError::Value(
                "STRIDE_TELEMETRY_DEDUP_WINDOW_SECONDS must be between 1 and 86400".into(),
            ));
        }
        if !(1024 * 1024..=i64::MAX as u64).contains(&self.telemetry_buffer_max_bytes) {
            return Err(ConfigError::Value(
                "STRIDE_TELEMETRY_BUFFER_MAX_BYTES must be at least 1048576 (1 MiB)".into(),
            ));
        }
        if self
            .background_cgroup
            .as_deref()
            .is_some_and(|folder| !Path::new(folder).is_absolute())
        {
            return Err(ConfigError::Value(
                "STRIDE_BACKGROUND_CGROUP must be an absolute path to a cgroup folder".into(),
            ));
        }
        if !matches!(self.log_format.as_str(), "json" | "pretty") {
            return Err(ConfigError::Value(
                "STRIDE_LOG_FORMAT must be json or pretty".into(),
            ));
        }
        Ok(())
    }

    /// The parsed `trusted_proxies` list.
    pub fn trusted_proxy_networks(&self) -> Result<Vec<IpNet>, ConfigError> {
        self.trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>().map_err(|_| {
                    ConfigError::Value(format!("STRIDE_TRUSTED_PROXIES: {s} is not a CIDR"))
                })
            })
            .collect()
    }

    /// The name of a service's own database.
    pub fn database_name(&self, service: &str) -> String {
        format!("{}{}", self.database_prefix, service)
    }

    /// The JetStream name of a stream (`EVENTS`, `TELEMETRY`, ...) in this installation.
    pub fn stream_name(&self, stream: &str) -> String {
        let prefix: String = self
            .nats_prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("{prefix}{stream}")
    }

    /// Lifetime of access tokens.
    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_seconds)
    }

    /// Lifetime of sessions.
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_days * 86_400)
    }

    /// Shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_are_namespaced_with_a_safe_prefix() {
        let config = Config {
            nats_prefix: "t1a2.".into(),
            ..Config::default()
        };
        assert_eq!(config.stream_name("EVENTS"), "T1A2_EVENTS");
        assert_eq!(Config::default().stream_name("EVENTS"), "EVENTS");
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_name() {
        let config = Config {
            trusted_proxies: "10.0.0.0/8,nonsense".into(),
            ..Config::default()
        };
        let message = config.check().expect_err("invalid").to_string();
        assert!(message.contains("STRIDE_TRUSTED_PROXIES"), "{message}");
    }

    #[test]
    fn telemetry_writers_may_be_zero_for_an_ingest_only_replica_but_not_above_16() {
        let writers = |telemetry_writers| Config {
            telemetry_writers,
            ..Config::default()
        };
        assert!(writers(0).check().is_ok());
        assert!(writers(16).check().is_ok());
        let message = writers(17).check().expect_err("too many").to_string();
        assert!(message.contains("STRIDE_TELEMETRY_WRITERS"), "{message}");
    }

    /// `set` makes a configuration that passes its check for each of `good`, and one that
    /// fails it, naming `variable`, for each of `bad`.
    fn accepts_only(set: impl Fn(u64) -> Config, good: &[u64], bad: &[u64], variable: &str) {
        for &value in good {
            assert!(set(value).check().is_ok(), "{variable} = {value}");
        }
        for &value in bad {
            let message = set(value).check().expect_err("out of range").to_string();
            assert!(message.contains(variable), "{message}");
        }
    }

    #[test]
    fn the_dedup_window_is_between_a_second_and_a_day() {
        accepts_only(
            |telemetry_dedup_window_seconds| Config {
                telemetry_dedup_window_seconds,
                ..Config::default()
            },
            &[1, 86_400],
            &[0, 86_401],
            "STRIDE_TELEMETRY_DEDUP_WINDOW_SECONDS",
        );
    }

    #[test]
    fn the_longest_drain_yield_is_between_a_second_and_a_day() {
        accepts_only(
            |telemetry_drain_max_yield_seconds| Config {
                telemetry_drain_max_yield_seconds,
                ..Config::default()
            },
            &[1, 86_400],
            &[0, 86_401],
            "STRIDE_TELEMETRY_DRAIN_MAX_YIELD_SECONDS",
        );
    }

    #[test]
    fn the_telemetry_buffer_holds_at_least_a_mebibyte() {
        accepts_only(
            |telemetry_buffer_max_bytes| Config {
                telemetry_buffer_max_bytes,
                ..Config::default()
            },
            &[1024 * 1024],
            &[0, 1024 * 1024 - 1, u64::MAX],
            "STRIDE_TELEMETRY_BUFFER_MAX_BYTES",
        );
    }

    #[test]
    fn ingest_needs_room_for_at_least_one_batch() {
        let limit = |ingest_max_in_flight| Config {
            ingest_max_in_flight,
            ..Config::default()
        };
        assert!(limit(1).check().is_ok());
        let message = limit(0).check().expect_err("zero").to_string();
        assert!(message.contains("STRIDE_INGEST_MAX_IN_FLIGHT"), "{message}");
        accepts_only(
            |ingest_max_in_flight_bytes| Config {
                ingest_max_in_flight_bytes,
                ..Config::default()
            },
            &[1024 * 1024, 1024 * 1024 * 1024],
            &[0, 1024 * 1024 - 1, 1024 * 1024 * 1024 + 1, u64::MAX],
            "STRIDE_INGEST_MAX_IN_FLIGHT_BYTES",
        );
    }

    #[test]
    fn the_background_cgroup_must_be_an_absolute_folder() {
        let cgroup = |folder: Option<&str>| Config {
            background_cgroup: folder.map(str::to_owned),
            ..Config::default()
        };
        assert!(cgroup(None).check().is_ok());
        assert!(
            cgroup(Some("/sys/fs/cgroup/cpu/stride-background"))
                .check()
                .is_ok()
        );
        let message = cgroup(Some("stride-background"))
            .check()
            .expect_err("relative")
            .to_string();
        assert!(message.contains("STRIDE_BACKGROUND_CGROUP"), "{message}");
    }
}
