//! The `stride` binary as an operator runs it: help, target errors, migrate, serve and
//! SIGTERM.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sqlx::Connection;

const STRIDE: &str = env!("CARGO_BIN_EXE_stride");

fn database_url() -> String {
    std::env::var("STRIDE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

/// A `stride` command isolated from other tests: own databases, keys and streams.
fn stride(prefix: &str) -> Command {
    let mut command = Command::new(STRIDE);
    command
        .env("STRIDE_DATABASE_URL", database_url())
        .env(
            "STRIDE_REDIS_URL",
            std::env::var("STRIDE_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        )
        .env(
            "STRIDE_NATS_URL",
            std::env::var("STRIDE_TEST_NATS_URL")
                .unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
        )
        .env(
            "STRIDE_INFLUX_URL",
            std::env::var("STRIDE_TEST_INFLUX_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:8086".into()),
        )
        .env("STRIDE_INFLUX_DATABASE", format!("t_{prefix}"))
        .env("STRIDE_DATABASE_PREFIX", format!("t_{prefix}_"))
        .env("STRIDE_REDIS_PREFIX", format!("t:{prefix}:"))
        .env("STRIDE_NATS_PREFIX", format!("t{prefix}."))
        .env("STRIDE_EVENTS_MAX_AGE_DAYS", "1");
    command
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

#[test]
fn help_explains_every_subcommand() {
    let output = Command::new(STRIDE).arg("--help").output().expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for word in ["serve", "migrate", "admin", "--config"] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
    let serve = Command::new(STRIDE)
        .args(["serve", "--help"])
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&serve.stdout).contains("--targets"));
}

#[test]
fn an_unknown_target_is_an_error_that_lists_the_valid_ones() {
    let output = Command::new(STRIDE)
        .args(["serve", "--targets", "identity,telemetree"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("telemetree"), "{message}");
    assert!(
        message.contains("valid targets are: all, identity"),
        "{message}"
    );
}

#[tokio::test]
async fn migrate_creates_the_service_database_and_its_tables() {
    let prefix = unique();
    let status = stride(&prefix)
        .arg("migrate")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("runs");
    assert!(status.success());
    let url = format!(
        "{}/t_{prefix}_identity",
        database_url()
            .rsplit_once('/')
            .expect("a database in the URL")
            .0
    );
    let mut connection = sqlx::PgConnection::connect(&url)
        .await
        .expect("the database exists");
    for table in [
        "users",
        "sessions",
        "devices",
        "signing_keys",
        "outbox",
        "processed_events",
    ] {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&mut connection)
            .await
            .expect("query");
        assert!(exists, "{table} was not created");
    }
    // Running it again is harmless.
    let again = stride(&prefix)
        .arg("migrate")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("runs");
    assert!(again.success());
}

#[tokio::test]
async fn serve_answers_and_stops_cleanly_on_sigterm() {
    let prefix = unique();
    let http_port = free_port();
    let child = stride(&prefix)
        .arg("serve")
        .env("STRIDE_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("STRIDE_GRPC_ADDR", format!("127.0.0.1:{}", free_port()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let ready = format!("http://127.0.0.1:{http_port}/readyz");
    let started = Instant::now();
    let mut answered = false;
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(response) = reqwest::get(&ready).await
            && response.status().is_success()
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "stride serve became ready");
    let id = i32::try_from(child.id()).expect("pid");
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(id, libc::SIGTERM);
    }
    let status = child.wait_with_output().expect("exits");
    assert!(status.status.success(), "exit status {:?}", status.status);
    let logs = String::from_utf8_lossy(&status.stdout);
    assert!(logs.contains("stride is serving"), "{logs}");
    assert!(
        logs.contains("\"level\":\"INFO\""),
        "logs are JSON lines: {logs}"
    );
    assert!(logs.contains("stopped"), "{logs}");
}

#[tokio::test]
async fn admin_grant_gives_a_role_and_refuses_unknown_ones() {
    let prefix = unique();
    let refused = stride(&prefix)
        .args(["admin", "grant", "--role", "emperor", "nobody@example.org"])
        .output()
        .expect("runs");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("valid roles are admin, partner, user")
    );
    let missing = stride(&prefix)
        .args(["admin", "grant", "--role", "partner", "nobody@example.org"])
        .output()
        .expect("runs");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no account has the email"));
}
