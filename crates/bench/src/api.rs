//! What the scenarios share: an HTTP client, accounts, answers described for diagnosis, a
//! CPU line for reports, and rates in reports.

use std::{fmt::Write as _, time::Duration};

use anyhow::{Context as _, bail};
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::{procfs::CpuUsage, stats::LatencySummary};

/// Every account's password: long and uncommon enough for the registration policy.
pub const PASSWORD: &str = "violet quartz lantern 42";

/// A client with a generous timeout and a large idle pool, so load phases reuse connections.
pub fn http_client() -> anyhow::Result<Client> {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .build()
        .context("building the HTTP client")
}

/// `status: body` of an unexpected answer, shortened.
pub async fn describe(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    format!("{status}: {}", body.chars().take(300).collect::<String>())
}

/// Fails unless `GET /readyz` answers 200.
pub async fn check_ready(client: &Client, base_url: &str) -> anyhow::Result<()> {
    let url = format!("{base_url}/readyz");
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("is the server running? GET {url}"))?;
    if response.status() != StatusCode::OK {
        bail!("server not ready: {}", describe(response).await);
    }
    Ok(())
}

/// A registered, logged-in account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Its address.
    pub email: String,
    /// A bearer access token.
    pub access_token: String,
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
}

/// A private address per account, sent as `X-Forwarded-For`, so the login throttle sees many
/// clients rather than one.
fn client_address(number: usize) -> String {
    let number = number + 1;
    format!(
        "10.{}.{}.{}",
        (number >> 16) & 0xff,
        (number >> 8) & 0xff,
        number & 0xff
    )
}

/// Registers `bench-{run}-{who}@example.com` and logs in (`number` picks its client address).
pub async fn account(
    client: &Client,
    base_url: &str,
    run: &str,
    who: &str,
    number: usize,
) -> anyhow::Result<Account> {
    let email = format!("bench-{run}-{who}@example.com");
    let response = client
        .post(format!("{base_url}/v1/auth/register"))
        .json(
            &json!({"email": email, "password": PASSWORD, "display_name": format!("Bench {who}")}),
        )
        .send()
        .await
        .context("POST /v1/auth/register")?;
    if response.status() != StatusCode::CREATED {
        bail!("registering {email}: {}", describe(response).await);
    }
    log_in(client, base_url, &email, number).await
}

/// Logs in as `email` again (`number` picks its client address): a fresh access token, for a
/// phase that starts after the first one has expired.
pub async fn log_in(
    client: &Client,
    base_url: &str,
    email: &str,
    number: usize,
) -> anyhow::Result<Account> {
    let response = client
        .post(format!("{base_url}/v1/auth/login"))
        .header("x-forwarded-for", client_address(number))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .context("POST /v1/auth/login")?;
    if response.status() != StatusCode::OK {
        bail!("logging in as {email}: {}", describe(response).await);
    }
    let tokens: Tokens = response.json().await.context("reading the login answer")?;
    Ok(Account {
        email: email.to_owned(),
        access_token: tokens.access_token,
    })
}

/// `count` accounts, registered `concurrency` at a time (each costs two password hashes).
pub async fn accounts(
    client: &Client,
    base_url: &str,
    run: &str,
    count: usize,
) -> anyhow::Result<Vec<Account>> {
    let mut accounts = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(4) {
        let mut tasks = Vec::new();
        for &number in chunk {
            let (client, base_url, run) = (client.clone(), base_url.to_owned(), run.to_owned());
            tasks.push(tokio::spawn(async move {
                account(&client, &base_url, &run, &number.to_string(), number).await
            }));
        }
        for task in tasks {
            accounts.push(task.await.context("account task")??);
        }
    }
    Ok(accounts)
}

/// A short random id for this run's names.
pub fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// One line of who used the CPU.
pub fn cpu_line(label: &str, cpu: Option<&CpuUsage>) -> String {
    let Some(c) = cpu else {
        return format!("  {label:<14} CPU not measured");
    };
    let mut line = format!(
        "  {label:<14} CPU: machine {:.2}/{} cores busy: stride {:.2}, stride-bench {:.2}, \
         everything else {:.2}",
        c.machine_busy_cores,
        c.machine_cores,
        c.server_hashing_cores + c.server_other_cores,
        c.bench_cores,
        c.others_cores
    );
    if !c.busiest_others.is_empty() {
        let names: Vec<String> = c
            .busiest_others
            .iter()
            .map(|process| format!("{} {:.2}", process.name, process.cores))
            .collect();
        let _ = write!(line, " ({})", names.join(", "));
    }
    line
}

/// One line of latency percentiles.
pub fn latency_line(label: &str, latency: Option<&LatencySummary>) -> String {
    match latency {
        Some(l) => format!(
            "  {label:<30} p50 {:8.2} ms  p90 {:8.2} ms  p99 {:8.2} ms  max {:8.2} ms  (n = {})",
            l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.count
        ),
        None => format!("  {label:<30} no samples"),
    }
}

/// Latencies of many concurrent tasks, pushed without a lock per sample being a bottleneck:
/// tasks return their own and they are merged at the end.
pub fn merge<T>(parts: Vec<Vec<T>>) -> Vec<T> {
    parts.into_iter().flatten().collect()
}
