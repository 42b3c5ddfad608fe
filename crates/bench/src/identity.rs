//! The identity issue's "Measure" scenario against a running server:
//!
//! 1. registers a few accounts, plus one for the reader;
//! 2. baseline: the reader alone calls `GET /v1/me` every few milliseconds, one call at a time;
//! 3. storm: N clients each loop `POST /v1/auth/login` with correct passwords, each from its
//!    own `X-Forwarded-For` address (the server trusts that header from loopback), while the
//!    reader keeps calling `GET /v1/me` exactly as in the baseline.
//!
//! It reports logins per second, `GET /v1/me` percentiles with and without the storm, the raw
//! argon2id hash time for comparison and, given the server's pid, its memory and who used the
//! CPU. Nothing is asserted: the figures are written down, not judged here.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use reqwest::{Client, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::MissedTickBehavior;

use crate::{
    hashing::{self, HashTiming},
    procfs::{self, CpuSnapshot, CpuUsage, Memory},
    stats::{self, LatencySummary},
};

/// Every account's password: long and uncommon enough for the registration policy.
const PASSWORD: &str = "violet quartz lantern 42";

/// `GET /v1/me` calls made and thrown away before the baseline, so connection set-up and the
/// server's first key-set fetch do not count.
const WARM_UP_READS: usize = 20;

/// Pause after a 429, 503 or transport error, so a refusing server is not hammered in a tight
/// loop (with correct passwords neither should happen).
const BACK_OFF: Duration = Duration::from_millis(100);

/// Options of `stride-bench identity`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Base URL of the server's HTTP port.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// Concurrent login clients during the storm.
    #[arg(long, default_value_t = 100)]
    pub storm: usize,
    /// Length of the storm, seconds.
    #[arg(long, default_value_t = 20)]
    pub duration_secs: u64,
    /// Length of the no-storm `GET /v1/me` baseline, seconds.
    #[arg(long, default_value_t = 5)]
    pub baseline_secs: u64,
    /// Accounts the storm clients log in to (client i uses account i mod this).
    #[arg(long, default_value_t = 10)]
    pub accounts: usize,
    /// Interval between the reader's `GET /v1/me` calls, milliseconds (a call that takes
    /// longer delays the next one; calls never overlap).
    #[arg(long, default_value_t = 10)]
    pub reader_interval_ms: u64,
    /// Single-thread argon2id hashes to time before the run (0 = skip).
    #[arg(long, default_value_t = 20)]
    pub hash_samples: usize,
    /// Pid of the `stride serve` process, to report its memory and CPU use (Linux).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Everything one run measured; printed as one JSON line.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Always `identity`.
    pub scenario: &'static str,
    /// Server under test.
    pub base_url: String,
    /// Concurrent login clients.
    pub storm_clients: usize,
    /// Storm length, seconds.
    pub storm_secs: u64,
    /// Accounts logged in to.
    pub accounts: usize,
    /// Cores of this machine.
    pub cores: usize,
    /// Single-thread argon2id hash time.
    pub hash: Option<HashTiming>,
    /// `cores ÷ median hash CPU time`: logins per second fully busy hashing threads could
    /// verify.
    pub login_ceiling_per_second: Option<f64>,
    /// Server CPU time per successful login during the storm, in its hashing threads and in
    /// the rest of the process (needs `--server-pid`).
    pub server_cpu_ms_per_login: Option<CpuPerLogin>,
    /// The storm's logins.
    pub logins: LoginFigures,
    /// `GET /v1/me` with no storm.
    pub me_baseline: ReadFigures,
    /// `GET /v1/me` during the storm.
    pub me_during_storm: ReadFigures,
    /// CPU use during the baseline.
    pub cpu_baseline: Option<CpuUsage>,
    /// CPU use during the storm.
    pub cpu_storm: Option<CpuUsage>,
    /// Server memory before any request of this run.
    pub server_memory_idle: Option<Memory>,
    /// Server memory once the storm's last request finished.
    pub server_memory_after_storm: Option<Memory>,
}

/// Server CPU time per successful login, milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuPerLogin {
    /// In the password-hashing threads.
    pub hashing: f64,
    /// In the rest of the server (HTTP, JSON, tokens, database and Redis clients).
    pub other: f64,
}

impl CpuPerLogin {
    fn of(cpu: &CpuUsage, logins: u64) -> Option<Self> {
        if logins == 0 {
            return None;
        }
        let per_login = |cores: f64| cores * cpu.wall_secs * 1000.0 / logins as f64;
        Some(Self {
            hashing: per_login(cpu.server_hashing_cores),
            other: per_login(cpu.server_other_cores),
        })
    }
}

/// Login outcomes of the storm, counting requests that finished within the storm window.
#[derive(Debug, Default, Serialize)]
pub struct LoginFigures {
    /// Successful logins per second of the window.
    pub per_second: f64,
    /// 200 answers.
    pub succeeded: u64,
    /// 429 answers (throttled).
    pub throttled_429: u64,
    /// 503 answers (hashing pool saturated or a backing server unavailable).
    pub busy_503: u64,
    /// Any other status.
    pub other_status: u64,
    /// Requests that failed without an answer (connection error, 60 s timeout).
    pub transport_errors: u64,
    /// Requests in flight at the end of the window, finished afterwards and not counted.
    pub finished_after_window: u64,
    /// Latency of the successful logins.
    pub latency: Option<LatencySummary>,
    /// The first unexpected answer, for diagnosis.
    pub first_unexpected: Option<String>,
}

/// The reader's `GET /v1/me` calls in one phase.
#[derive(Debug, Default, Serialize)]
pub struct ReadFigures {
    /// Latency of the successful calls.
    pub latency: Option<LatencySummary>,
    /// Calls that did not answer 200.
    pub failures: u64,
    /// The first failure, for diagnosis.
    pub first_failure: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Tokens {
    access_token: String,
}

fn email(run: &str, who: &str) -> String {
    format!("bench-{run}-{who}@example.com")
}

/// A documentation-range-like private address per storm client, so the throttle sees many
/// clients rather than one.
fn client_address(client: usize) -> String {
    let number = client + 1;
    format!(
        "10.{}.{}.{}",
        (number >> 16) & 0xff,
        (number >> 8) & 0xff,
        number & 0xff
    )
}

async fn describe(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    format!("{status}: {}", body.chars().take(300).collect::<String>())
}

async fn check_ready(client: &Client, base_url: &str) -> anyhow::Result<()> {
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

async fn register(client: &Client, base_url: &str, email: &str) -> anyhow::Result<()> {
    let response = client
        .post(format!("{base_url}/v1/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD, "display_name": "Bench Runner"}))
        .send()
        .await
        .context("POST /v1/auth/register")?;
    if response.status() != StatusCode::CREATED {
        bail!("registering {email}: {}", describe(response).await);
    }
    Ok(())
}

async fn login(
    client: &Client,
    base_url: &str,
    email: &str,
    address: &str,
) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base_url}/v1/auth/login"))
        .header("x-forwarded-for", address)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .context("POST /v1/auth/login")?;
    if response.status() != StatusCode::OK {
        bail!("logging in as {email}: {}", describe(response).await);
    }
    let tokens: Tokens = response.json().await.context("reading the login answer")?;
    Ok(tokens.access_token)
}

/// Latencies of sequential `GET /v1/me` calls, one per `interval`, until `until`.
#[derive(Debug, Default)]
struct ReadSamples {
    latencies: Vec<Duration>,
    failures: u64,
    first_failure: Option<String>,
}

impl ReadSamples {
    fn figures(&self) -> ReadFigures {
        ReadFigures {
            latency: stats::summarize(&self.latencies),
            failures: self.failures,
            first_failure: self.first_failure.clone(),
        }
    }
}

async fn read_me_once(client: &Client, url: &str, token: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let response = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|error| format!("GET /v1/me: {error}"))?;
    if response.status() != StatusCode::OK {
        return Err(describe(response).await);
    }
    // The body is part of the answer: time until its last byte.
    response
        .bytes()
        .await
        .map_err(|error| format!("GET /v1/me body: {error}"))?;
    Ok(started.elapsed())
}

async fn read_me_until(
    client: Client,
    url: String,
    token: String,
    interval: Duration,
    until: Instant,
) -> ReadSamples {
    let mut samples = ReadSamples::default();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if Instant::now() >= until {
            return samples;
        }
        match read_me_once(&client, &url, &token).await {
            Ok(latency) => samples.latencies.push(latency),
            Err(failure) => {
                samples.failures += 1;
                samples.first_failure.get_or_insert(failure);
            }
        }
    }
}

/// What one storm client saw.
#[derive(Debug, Default)]
struct ClientTally {
    succeeded: u64,
    throttled: u64,
    busy: u64,
    other_status: u64,
    transport_errors: u64,
    finished_after_window: u64,
    latencies: Vec<Duration>,
    first_unexpected: Option<String>,
}

enum Outcome {
    Success,
    Throttled,
    Busy,
    Other(String),
    Transport(String),
}

async fn login_once(
    client: &Client,
    url: &str,
    body: &serde_json::Value,
    address: &str,
) -> Outcome {
    let response = match client
        .post(url)
        .header("x-forwarded-for", address)
        .json(body)
        .send()
        .await
    {
        Ok(response) => response,
        Err(error) => return Outcome::Transport(error.to_string()),
    };
    match response.status() {
        StatusCode::OK => match response.bytes().await {
            Ok(_) => Outcome::Success,
            Err(error) => Outcome::Transport(error.to_string()),
        },
        StatusCode::TOO_MANY_REQUESTS => Outcome::Throttled,
        StatusCode::SERVICE_UNAVAILABLE => Outcome::Busy,
        _ => Outcome::Other(describe(response).await),
    }
}

async fn storm_client(
    client: Client,
    url: String,
    email: String,
    address: String,
    deadline: Instant,
) -> ClientTally {
    let body = json!({"email": email, "password": PASSWORD});
    let mut tally = ClientTally::default();
    while Instant::now() < deadline {
        let started = Instant::now();
        let outcome = login_once(&client, &url, &body, &address).await;
        let finished = Instant::now();
        if finished > deadline {
            tally.finished_after_window += 1;
            break;
        }
        match outcome {
            Outcome::Success => {
                tally.succeeded += 1;
                tally.latencies.push(finished - started);
                continue;
            }
            Outcome::Throttled => tally.throttled += 1,
            Outcome::Busy => tally.busy += 1,
            Outcome::Other(answer) => {
                tally.other_status += 1;
                tally.first_unexpected.get_or_insert(answer);
            }
            Outcome::Transport(error) => {
                tally.transport_errors += 1;
                tally.first_unexpected.get_or_insert(error);
            }
        }
        tokio::time::sleep(BACK_OFF).await;
    }
    tally
}

fn login_figures(tallies: Vec<ClientTally>, window: Duration) -> LoginFigures {
    let mut figures = LoginFigures::default();
    let mut latencies = Vec::new();
    for tally in tallies {
        figures.succeeded += tally.succeeded;
        figures.throttled_429 += tally.throttled;
        figures.busy_503 += tally.busy;
        figures.other_status += tally.other_status;
        figures.transport_errors += tally.transport_errors;
        figures.finished_after_window += tally.finished_after_window;
        latencies.extend(tally.latencies);
        if figures.first_unexpected.is_none() {
            figures.first_unexpected = tally.first_unexpected;
        }
    }
    figures.per_second = figures.succeeded as f64 / window.as_secs_f64();
    figures.latency = stats::summarize(&latencies);
    figures
}

fn http_client() -> anyhow::Result<Client> {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")
}

/// Runs the scenario and returns its figures. Progress goes to stderr.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    anyhow::ensure!(options.storm > 0, "--storm must be at least 1");
    anyhow::ensure!(options.accounts > 0, "--accounts must be at least 1");
    anyhow::ensure!(
        options.duration_secs > 0,
        "--duration-secs must be at least 1"
    );
    let base_url = options.base_url.trim_end_matches('/').to_owned();
    let server_memory_idle = options.server_pid.map(procfs::memory).transpose()?;

    let setup_client = http_client()?;
    check_ready(&setup_client, &base_url).await?;

    let hash = if options.hash_samples > 0 {
        eprintln!(
            "timing {} single-thread argon2id hashes",
            options.hash_samples
        );
        let samples = options.hash_samples;
        Some(
            tokio::task::spawn_blocking(move || hashing::measure(samples))
                .await
                .context("hash timing thread")??,
        )
    } else {
        None
    };

    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    eprintln!(
        "registering {} accounts and a reader (run {run})",
        options.accounts
    );
    let accounts: Vec<String> = (0..options.accounts)
        .map(|index| email(&run, &index.to_string()))
        .collect();
    let reader_email = email(&run, "reader");
    for account in accounts.iter().chain([&reader_email]) {
        register(&setup_client, &base_url, account).await?;
    }

    let reader_client = http_client()?;
    let token = login(&reader_client, &base_url, &reader_email, "192.0.2.10").await?;
    let me_url = format!("{base_url}/v1/me");
    for _ in 0..WARM_UP_READS {
        read_me_once(&reader_client, &me_url, &token)
            .await
            .map_err(anyhow::Error::msg)
            .context("warming up")?;
    }
    let interval = Duration::from_millis(options.reader_interval_ms.max(1));

    eprintln!("baseline: GET /v1/me alone for {} s", options.baseline_secs);
    let cpu_before_baseline = CpuSnapshot::take(options.server_pid).ok();
    let baseline = read_me_until(
        reader_client.clone(),
        me_url.clone(),
        token.clone(),
        interval,
        Instant::now() + Duration::from_secs(options.baseline_secs),
    )
    .await;
    let cpu_after_baseline = CpuSnapshot::take(options.server_pid).ok();

    eprintln!(
        "storm: {} clients logging in for {} s, GET /v1/me alongside",
        options.storm, options.duration_secs
    );
    let window = Duration::from_secs(options.duration_secs);
    let storm_client_pool = http_client()?;
    let login_url = format!("{base_url}/v1/auth/login");
    let cpu_before_storm = CpuSnapshot::take(options.server_pid).ok();
    let started = Instant::now();
    let deadline = started + window;
    let clients: Vec<_> = (0..options.storm)
        .map(|index| {
            tokio::spawn(storm_client(
                storm_client_pool.clone(),
                login_url.clone(),
                accounts[index % accounts.len()].clone(),
                client_address(index),
                deadline,
            ))
        })
        .collect();
    let reader = tokio::spawn(read_me_until(
        reader_client,
        me_url,
        token,
        interval,
        deadline,
    ));
    tokio::time::sleep_until(deadline.into()).await;
    let cpu_after_storm = CpuSnapshot::take(options.server_pid).ok();
    let during_storm = reader.await.context("reader task")?;
    eprintln!("storm over; waiting for logins still in flight");
    let mut tallies = Vec::with_capacity(clients.len());
    for client in clients {
        tallies.push(client.await.context("storm client task")?);
    }
    let server_memory_after_storm = options.server_pid.map(procfs::memory).transpose()?;

    let cores = hashing::cores();
    let cpu = |before: Option<CpuSnapshot>, after: Option<CpuSnapshot>| {
        Some(CpuUsage::between(&before?, &after?, options.server_pid))
    };
    let cpu_storm = cpu(cpu_before_storm, cpu_after_storm);
    let logins = login_figures(tallies, window);
    let server_cpu_ms_per_login = options
        .server_pid
        .and(cpu_storm.as_ref())
        .and_then(|usage| CpuPerLogin::of(usage, logins.succeeded));
    Ok(Report {
        scenario: "identity",
        base_url,
        storm_clients: options.storm,
        storm_secs: options.duration_secs,
        accounts: options.accounts,
        cores,
        login_ceiling_per_second: hash.map(|hash| hash.ceiling_per_second(cores)),
        hash,
        server_cpu_ms_per_login,
        logins,
        me_baseline: baseline.figures(),
        me_during_storm: during_storm.figures(),
        cpu_baseline: cpu(cpu_before_baseline, cpu_after_baseline),
        cpu_storm,
        server_memory_idle,
        server_memory_after_storm,
    })
}

fn latency_line(label: &str, latency: Option<&LatencySummary>) -> String {
    match latency {
        Some(l) => format!(
            "  {label:<26} p50 {:7.2} ms   p90 {:7.2} ms   p99 {:7.2} ms   max {:8.2} ms   (n = {})",
            l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.count
        ),
        None => format!("  {label:<26} no successful samples"),
    }
}

fn cpu_line(label: &str, cpu: Option<&CpuUsage>) -> String {
    match cpu {
        Some(c) => format!(
            "  {label:<10} machine {:.2}/{} cores busy: stride hashing {:.2}, stride other {:.2}, \
             stride-bench {:.2}, everything else {:.2}",
            c.machine_busy_cores,
            c.machine_cores,
            c.server_hashing_cores,
            c.server_other_cores,
            c.bench_cores,
            c.others_cores
        ),
        None => format!("  {label:<10} not measured"),
    }
}

fn busiest_line(cpu: Option<&CpuUsage>) -> Option<String> {
    let busiest = &cpu?.busiest_others;
    if busiest.is_empty() {
        return None;
    }
    let names: Vec<String> = busiest
        .iter()
        .map(|process| format!("{} {:.2}", process.name, process.cores))
        .collect();
    Some(format!(
        "             busiest other processes: {}",
        names.join(", ")
    ))
}

/// The report for people.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "identity benchmark against {} ({} cores)",
        report.base_url, report.cores
    );
    if let Some(hash) = &report.hash {
        let _ = writeln!(
            out,
            "  argon2id hash, one thread: median {:.1} ms (min {:.1}, max {:.1}, n = {}); \
             CPU time median {:.1} ms",
            hash.median_ms, hash.min_ms, hash.max_ms, hash.samples, hash.cpu_median_ms
        );
    }
    let logins = &report.logins;
    let _ = writeln!(
        out,
        "logins: {} clients for {} s",
        report.storm_clients, report.storm_secs
    );
    let ceiling = report
        .login_ceiling_per_second
        .map(|ceiling| format!(" (cores ÷ hash CPU time = {ceiling:.1}/s)"))
        .unwrap_or_default();
    let _ = writeln!(out, "  {:.1} logins/s{ceiling}", logins.per_second);
    let _ = writeln!(
        out,
        "  200: {}   429: {}   503: {}   other: {}   transport errors: {}   \
         finished after the window: {}",
        logins.succeeded,
        logins.throttled_429,
        logins.busy_503,
        logins.other_status,
        logins.transport_errors,
        logins.finished_after_window
    );
    let _ = writeln!(
        out,
        "{}",
        latency_line("login latency", logins.latency.as_ref())
    );
    if let Some(first) = &logins.first_unexpected {
        let _ = writeln!(out, "  first unexpected answer: {first}");
    }
    let _ = writeln!(out, "GET /v1/me, one call at a time:");
    for (label, figures) in [
        ("baseline (no storm)", &report.me_baseline),
        ("during the storm", &report.me_during_storm),
    ] {
        let _ = writeln!(out, "{}", latency_line(label, figures.latency.as_ref()));
        if figures.failures > 0 {
            let _ = writeln!(
                out,
                "    {} failed; first: {}",
                figures.failures,
                figures.first_failure.as_deref().unwrap_or("?")
            );
        }
    }
    let _ = writeln!(out, "CPU (average cores in use):");
    for (label, cpu) in [
        ("baseline", report.cpu_baseline.as_ref()),
        ("storm", report.cpu_storm.as_ref()),
    ] {
        let _ = writeln!(out, "{}", cpu_line(label, cpu));
        if let Some(line) = busiest_line(cpu) {
            let _ = writeln!(out, "{line}");
        }
    }
    if let (Some(idle), Some(after)) = (
        &report.server_memory_idle,
        &report.server_memory_after_storm,
    ) {
        let _ = writeln!(
            out,
            "server memory: idle RSS {:.1} MiB; after the storm RSS {:.1} MiB, peak {:.1} MiB",
            idle.rss_mib(),
            after.rss_mib(),
            after.peak_rss_mib()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_clients_get_distinct_addresses() {
        let addresses: std::collections::HashSet<String> = (0..1000).map(client_address).collect();
        assert_eq!(addresses.len(), 1000);
        for address in &addresses {
            address
                .parse::<std::net::IpAddr>()
                .expect("a valid address");
        }
    }

    #[test]
    fn throughput_counts_only_successes_within_the_window() {
        let tallies = vec![
            ClientTally {
                succeeded: 30,
                throttled: 2,
                finished_after_window: 1,
                latencies: vec![Duration::from_millis(100); 30],
                ..ClientTally::default()
            },
            ClientTally {
                succeeded: 10,
                busy: 1,
                latencies: vec![Duration::from_millis(300); 10],
                ..ClientTally::default()
            },
        ];
        let figures = login_figures(tallies, Duration::from_secs(20));
        assert_eq!(figures.succeeded, 40);
        assert_eq!(figures.per_second, 2.0);
        assert_eq!(figures.throttled_429, 2);
        assert_eq!(figures.busy_503, 1);
        assert_eq!(figures.finished_after_window, 1);
        assert_eq!(figures.latency.map(|l| l.count), Some(40));
    }
}
