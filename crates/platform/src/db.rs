//! PostgreSQL: one database per service, created when missing, with the platform's tables and
//! the service's own migrations applied.

use std::{str::FromStr, time::Duration};

use anyhow::Context as _;
use secrecy::ExposeSecret;
use sqlx::{
    Connection, PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgConnection, PgPoolOptions},
};

use crate::config::Config;

/// The platform's own tables (outbox, processed events), present in every service database.
pub static PLATFORM_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

fn admin_options(config: &Config) -> anyhow::Result<PgConnectOptions> {
    PgConnectOptions::from_str(config.database_url.expose_secret())
        .context("STRIDE_DATABASE_URL is not a PostgreSQL URL")
}

/// Creates the database `name` unless it exists.
pub async fn ensure_database(config: &Config, name: &str) -> anyhow::Result<()> {
    debug_assert!(
        name.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    );
    let mut admin = PgConnection::connect_with(&admin_options(config)?)
        .await
        .context("connecting to PostgreSQL (STRIDE_DATABASE_URL)")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        // The name is checked above; identifiers cannot be bound as parameters.
        let created = sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await;
        match created {
            Ok(_) => tracing::info!(database = name, "created database"),
            // Another process created it between our check and our create.
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P04") => {}
            Err(error) => return Err(error).context("creating the service database"),
        }
    }
    admin.close().await.ok();
    Ok(())
}

/// A pool on a service's database.
pub async fn connect(config: &Config, service: &str) -> anyhow::Result<PgPool> {
    let name = config.database_name(service);
    ensure_database(config, &name).await?;
    let options = admin_options(config)?.database(&name);
    PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .connect_with(options)
        .await
        .with_context(|| format!("connecting to database {name}"))
}

/// Applies the platform's tables and then the service's own migrations.
pub async fn migrate(pool: &PgPool, service_migrations: &Migrator) -> anyhow::Result<()> {
    run_ignoring_others(pool, &PLATFORM_MIGRATIONS).await?;
    run_ignoring_others(pool, service_migrations).await
}

/// Both migrators record into the same table, so each must ignore the other's versions.
async fn run_ignoring_others(pool: &PgPool, migrator: &Migrator) -> anyhow::Result<()> {
    let migrator = Migrator {
        migrations: migrator.migrations.clone(),
        ignore_missing: true,
        locking: migrator.locking,
        no_tx: migrator.no_tx,
    };
    migrator.run(pool).await.context("applying migrations")
}
