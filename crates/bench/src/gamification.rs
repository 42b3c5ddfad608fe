//! The gamification issue's "Measure" scenario, in two modes:
//!
//! - `latency` (a server running gamification with the rest): accounts create finished manual
//!   runs at a fixed rate, one a day back in time each (under the daily points cap). For a
//!   sample of them, a poller asks `GET /v1/me/points` every few milliseconds from the `201` of
//!   `POST /v1/activities` until the history shows the workout, then
//!   `GET /v1/leaderboards/points?around=me` until the caller's score includes it. The delay
//!   counts from the `201`, so it includes the outbox relay's publish as well as the consumer.
//! - `backlog` (a server without gamification): the accounts create their workouts while no
//!   gamification runs; then this tool starts `stride serve --targets gamification` itself,
//!   against the first server's identity (gRPC and JWKS) and the same databases, Redis and NATS
//!   prefixes, and counts `activity_points` rows (one `psql` session, every 50 ms) until every
//!   workout is there.
//!   Events per second = workouts ÷ the time from the first to the last one accounted for.
//!
//! Nothing is asserted: the figures are written down, not judged here.

use std::{
    fmt::Write as _,
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chrono::{Duration as Days, Utc};
use reqwest::{Client, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::MissedTickBehavior;

use crate::{
    api::{self, Account},
    procfs::{self, CpuSnapshot, CpuUsage},
    stats::{self, LatencySummary},
};

/// Which measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Delay from a workout's 201 to points and leaderboard, with gamification running.
    Latency,
    /// Workouts first, gamification started afterwards: how fast it works off the backlog.
    Backlog,
}

/// Options of `stride-bench gamification`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// `latency` or `backlog`.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Base URL of the server's HTTP port.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// Accounts creating workouts.
    #[arg(long, default_value_t = 20)]
    pub accounts: usize,
    /// Workouts per account (one a day back in time).
    #[arg(long, default_value_t = 100)]
    pub workouts_per_account: usize,
    /// Latency mode: workouts created per second, all accounts together.
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// Latency mode: one workout in this many is followed until its points show.
    #[arg(long, default_value_t = 5)]
    pub sample_every: usize,
    /// Latency mode: poll interval, milliseconds.
    #[arg(long, default_value_t = 5)]
    pub poll_ms: u64,
    /// Backlog mode: the `stride` binary to start with `--targets gamification`.
    #[arg(long)]
    pub stride_binary: Option<PathBuf>,
    /// Backlog mode: its HTTP address.
    #[arg(long, default_value = "127.0.0.1:18094")]
    pub gamification_http_addr: String,
    /// Backlog mode: its gRPC address.
    #[arg(long, default_value = "127.0.0.1:18095")]
    pub gamification_grpc_addr: String,
    /// Backlog mode: the first server's identity gRPC URL (`STRIDE_IDENTITY_GRPC_URL`).
    #[arg(long)]
    pub identity_grpc_url: Option<String>,
    /// Backlog mode: the first server's JWKS URL (`STRIDE_JWKS_URL`).
    #[arg(long)]
    pub jwks_url: Option<String>,
    /// Backlog mode: where the started process logs.
    #[arg(long, default_value = "gamification.log")]
    pub gamification_log: PathBuf,
    /// Backlog mode: the gamification database, for `psql` to count `activity_points`.
    #[arg(long)]
    pub count_database_url: Option<String>,
    /// Pid of the `stride serve` process (latency mode), for its CPU use (Linux).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// What a run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Always `gamification`.
    pub scenario: &'static str,
    /// The mode.
    pub mode: Mode,
    /// Server under test.
    pub base_url: String,
    /// Workouts created.
    pub workouts: usize,
    /// Their creation rate, per second.
    pub created_per_second: f64,
    /// Latency mode: 201 to the points history showing the workout.
    pub to_points: Option<LatencySummary>,
    /// Latency mode: 201 to the points leaderboard including it.
    pub to_leaderboard: Option<LatencySummary>,
    /// Latency mode: followed workouts that did not show within 30 s.
    pub not_seen: usize,
    /// Latency mode: who used the CPU while creating.
    pub cpu: Option<CpuUsage>,
    /// Backlog mode: seconds from starting gamification to its first accounted workout.
    pub first_accounted_after_secs: Option<f64>,
    /// Backlog mode: seconds from starting gamification to every workout accounted for.
    pub all_accounted_after_secs: Option<f64>,
    /// Backlog mode: workouts ÷ (all − first).
    pub events_per_second: Option<f64>,
    /// Backlog mode: who used the CPU while it worked (its process counted as "stride").
    pub backlog_cpu: Option<CpuUsage>,
}

#[derive(Deserialize)]
struct Created {
    id: uuid::Uuid,
}

#[derive(Deserialize)]
struct Me {
    id: uuid::Uuid,
}

/// A workout of account `account`, `day` days back, 30 minutes and 5 km: 80 points.
fn workout(day: usize) -> serde_json::Value {
    let start = Utc::now() - Days::days(day as i64 + 1);
    json!({
        "sport": "run",
        "status": "finished",
        "start_time": start,
        "summary": {"elapsed_time_s": 1800, "moving_time_s": 1800, "distance_m": 5000},
    })
}

async fn create(
    client: &Client,
    base_url: &str,
    token: &str,
    day: usize,
) -> anyhow::Result<uuid::Uuid> {
    let response = client
        .post(format!("{base_url}/v1/activities"))
        .bearer_auth(token)
        .json(&workout(day))
        .send()
        .await
        .context("POST /v1/activities")?;
    if response.status() != StatusCode::CREATED {
        bail!("creating a workout: {}", api::describe(response).await);
    }
    Ok(response.json::<Created>().await.context("reading 201")?.id)
}

/// Polls until the points history shows `activity`; returns the balance then.
async fn poll_points(
    client: &Client,
    base_url: &str,
    token: &str,
    activity: uuid::Uuid,
    interval: Duration,
    give_up: Instant,
) -> anyhow::Result<Option<i64>> {
    #[derive(Deserialize)]
    struct Entry {
        activity_id: Option<uuid::Uuid>,
    }
    #[derive(Deserialize)]
    struct Points {
        balance: i64,
        history: Vec<Entry>,
    }
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while Instant::now() < give_up {
        ticks.tick().await;
        let response = client
            .get(format!("{base_url}/v1/me/points?limit=50"))
            .bearer_auth(token)
            .send()
            .await
            .context("GET /v1/me/points")?;
        if response.status() != StatusCode::OK {
            bail!("points: {}", api::describe(response).await);
        }
        let points: Points = response.json().await.context("reading points")?;
        if points
            .history
            .iter()
            .any(|entry| entry.activity_id == Some(activity))
        {
            return Ok(Some(points.balance));
        }
    }
    Ok(None)
}

/// Polls until the caller's all-time points score is at least `balance`.
async fn poll_leaderboard(
    client: &Client,
    base_url: &str,
    account: &(Account, uuid::Uuid),
    balance: i64,
    interval: Duration,
    give_up: Instant,
) -> anyhow::Result<bool> {
    #[derive(Deserialize)]
    struct Entry {
        user_id: uuid::Uuid,
        score: f64,
    }
    #[derive(Deserialize)]
    struct Board {
        entries: Vec<Entry>,
    }
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while Instant::now() < give_up {
        ticks.tick().await;
        let response = client
            .get(format!(
                "{base_url}/v1/leaderboards/points?period=all&around=me"
            ))
            .bearer_auth(&account.0.access_token)
            .send()
            .await
            .context("GET /v1/leaderboards/points")?;
        if response.status() != StatusCode::OK {
            bail!("leaderboard: {}", api::describe(response).await);
        }
        let board: Board = response.json().await.context("reading the leaderboard")?;
        if board
            .entries
            .iter()
            .any(|entry| entry.user_id == account.1 && entry.score >= balance as f64)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn user_id(client: &Client, base_url: &str, account: &Account) -> anyhow::Result<uuid::Uuid> {
    let response = client
        .get(format!("{base_url}/v1/me"))
        .bearer_auth(&account.access_token)
        .send()
        .await
        .context("GET /v1/me")?;
    if response.status() != StatusCode::OK {
        bail!("me: {}", api::describe(response).await);
    }
    Ok(response.json::<Me>().await.context("reading me")?.id)
}

/// What one followed workout showed: delays to points and to the leaderboard.
type Followed = (Option<Duration>, Option<Duration>);

async fn follow(
    client: Client,
    base_url: String,
    account: Arc<(Account, uuid::Uuid)>,
    activity: uuid::Uuid,
    created: Instant,
    interval: Duration,
) -> anyhow::Result<Followed> {
    let give_up = created + Duration::from_secs(30);
    let Some(balance) = poll_points(
        &client,
        &base_url,
        &account.0.access_token,
        activity,
        interval,
        give_up,
    )
    .await?
    else {
        return Ok((None, None));
    };
    let to_points = created.elapsed();
    let on_board =
        poll_leaderboard(&client, &base_url, &account, balance, interval, give_up).await?;
    Ok((Some(to_points), on_board.then(|| created.elapsed())))
}

async fn latency(
    options: &Options,
    client: &Client,
    base_url: &str,
    accounts: Vec<Arc<(Account, uuid::Uuid)>>,
) -> anyhow::Result<Report> {
    let total = accounts.len() * options.workouts_per_account;
    let interval = Duration::from_secs_f64(1.0 / options.rate.max(1) as f64);
    let poll = Duration::from_millis(options.poll_ms.max(1));
    let cpu_before = CpuSnapshot::take(options.server_pid).ok();
    let began = tokio::time::Instant::now();
    let mut creators = Vec::with_capacity(total);
    for index in 0..total {
        let due = began + interval.mul_f64(index as f64);
        tokio::time::sleep_until(due).await;
        let account = accounts[index % accounts.len()].clone();
        let day = index / accounts.len();
        let followed = options.sample_every > 0 && index % options.sample_every.max(1) == 0;
        let (client, base_url) = (client.clone(), base_url.to_owned());
        creators.push(tokio::spawn(async move {
            let activity = create(&client, &base_url, &account.0.access_token, day).await?;
            let created = Instant::now();
            if !followed {
                return anyhow::Ok(None);
            }
            Ok(Some(
                follow(client, base_url, account, activity, created, poll).await?,
            ))
        }));
    }
    let sent_in = began.elapsed();
    let cpu_after = CpuSnapshot::take(options.server_pid).ok();
    let (mut to_points, mut to_board, mut not_seen) = (Vec::new(), Vec::new(), 0);
    for creator in creators {
        match creator.await.context("creator task")?? {
            Some((Some(points), board)) => {
                to_points.push(points);
                to_board.extend(board);
            }
            Some((None, _)) => not_seen += 1,
            None => {}
        }
    }
    Ok(Report {
        scenario: "gamification",
        mode: Mode::Latency,
        base_url: base_url.to_owned(),
        workouts: total,
        created_per_second: total as f64 / sent_in.as_secs_f64(),
        to_points: stats::summarize(&to_points),
        to_leaderboard: stats::summarize(&to_board),
        not_seen,
        cpu: cpu_before
            .zip(cpu_after)
            .map(|(before, after)| CpuUsage::between(&before, &after, options.server_pid)),
        first_accounted_after_secs: None,
        all_accounted_after_secs: None,
        events_per_second: None,
        backlog_cpu: None,
    })
}

/// `SELECT count(*) FROM activity_points` (0 while the table does not exist yet).
fn count_accounted(database_url: &str) -> u64 {
    Command::new("psql")
        .args([
            database_url,
            "-XAtq",
            "-c",
            "SELECT count(*) FROM activity_points",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// One `psql` session that counts `activity_points` on request. Starting a `psql` (and a
/// PostgreSQL backend) for every poll costs far more CPU than the count, and that CPU is
/// taken from the process being measured.
struct Counter {
    database_url: String,
    session: Option<(Child, std::io::BufReader<std::process::ChildStdout>)>,
}

impl Counter {
    fn new(database_url: &str) -> Self {
        Self {
            database_url: database_url.to_owned(),
            session: None,
        }
    }

    /// The count; 0 while the database or the table does not exist yet.
    fn count(&mut self) -> u64 {
        use std::io::{BufRead as _, Write as _};
        if self.session.is_none() {
            let Ok(mut child) = Command::new("psql")
                .args([self.database_url.as_str(), "-XAtq"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
            else {
                return 0;
            };
            let Some(stdout) = child.stdout.take() else {
                return 0;
            };
            self.session = Some((child, std::io::BufReader::new(stdout)));
        }
        let Some((child, stdout)) = self.session.as_mut() else {
            return 0;
        };
        // The marker ends every answer, so an error (no count line) cannot block the read.
        let asked = child.stdin.as_mut().is_some_and(|stdin| {
            stdin
                .write_all(b"SELECT count(*) FROM activity_points;\n\\echo END\n")
                .and_then(|()| stdin.flush())
                .is_ok()
        });
        let mut count = None;
        let mut ended = false;
        if asked {
            loop {
                let mut line = String::new();
                match stdout.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line.trim() == "END" => {
                        ended = true;
                        break;
                    }
                    Ok(_) => count = line.trim().parse().ok().or(count),
                }
            }
        }
        if !ended {
            // psql exited (say, the database did not exist yet): start another next time.
            if let Some((mut child, _)) = self.session.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        count.unwrap_or(0)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        if let Some((mut child, _)) = self.session.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// Stops the started gamification process (SIGTERM, then waits).
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        // SAFETY: kill only sends a signal to the child this tool started.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

async fn backlog(
    options: &Options,
    client: &Client,
    base_url: &str,
    accounts: Vec<Arc<(Account, uuid::Uuid)>>,
) -> anyhow::Result<Report> {
    let (Some(binary), Some(identity), Some(jwks), Some(database)) = (
        &options.stride_binary,
        &options.identity_grpc_url,
        &options.jwks_url,
        &options.count_database_url,
    ) else {
        bail!(
            "backlog mode needs --stride-binary, --identity-grpc-url, --jwks-url and \
             --count-database-url"
        );
    };
    let total = accounts.len() * options.workouts_per_account;
    eprintln!("creating {total} workouts with no gamification running");
    let began = Instant::now();
    let mut creators = Vec::new();
    for account in &accounts {
        let (client, base_url, account) = (client.clone(), base_url.to_owned(), account.clone());
        let per_account = options.workouts_per_account;
        creators.push(tokio::spawn(async move {
            for day in 0..per_account {
                create(&client, &base_url, &account.0.access_token, day).await?;
            }
            anyhow::Ok(())
        }));
    }
    for creator in creators {
        creator.await.context("creator task")??;
    }
    let created_per_second = total as f64 / began.elapsed().as_secs_f64();
    anyhow::ensure!(
        count_accounted(database) == 0,
        "activity_points is not empty before gamification started: is gamification running?"
    );
    eprintln!("letting the outbox relay publish (5 s), then starting gamification");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = std::fs::File::create(&options.gamification_log)
        .with_context(|| format!("creating {}", options.gamification_log.display()))?;
    let mut command = Command::new(binary);
    // SAFETY: prctl only asks the kernel to signal the child when this process dies, so a
    // killed benchmark never leaves the gamification server behind; it allocates nothing.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let child = command
        .arg("serve")
        .env("STRIDE_TARGETS", "gamification")
        .env("STRIDE_HTTP_ADDR", &options.gamification_http_addr)
        .env("STRIDE_GRPC_ADDR", &options.gamification_grpc_addr)
        .env("STRIDE_IDENTITY_GRPC_URL", identity)
        .env("STRIDE_JWKS_URL", jwks)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id();
    let started_process = Started(child);
    let started = Instant::now();
    let cpu_before = CpuSnapshot::take(Some(pid)).ok();
    let database = database.clone();
    let (first, all) = tokio::task::spawn_blocking(move || {
        let mut counter = Counter::new(&database);
        let (mut first, mut all) = (None, None);
        while started.elapsed() < Duration::from_secs(600) {
            let count = counter.count();
            if count > 0 && first.is_none() {
                first = Some(started.elapsed());
            }
            if count >= total as u64 {
                all = Some(started.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (first, all)
    })
    .await?;
    let cpu_after = CpuSnapshot::take(Some(pid)).ok();
    let rss = procfs::memory(pid).ok();
    drop(started_process);
    if let Some(memory) = rss {
        eprintln!(
            "gamification process: RSS {:.1} MiB, peak {:.1} MiB",
            memory.rss_mib(),
            memory.peak_rss_mib()
        );
    }
    let events_per_second = match (first, all) {
        (Some(first), Some(all)) if all > first => Some(total as f64 / (all - first).as_secs_f64()),
        _ => None,
    };
    Ok(Report {
        scenario: "gamification",
        mode: Mode::Backlog,
        base_url: base_url.to_owned(),
        workouts: total,
        created_per_second,
        to_points: None,
        to_leaderboard: None,
        not_seen: 0,
        cpu: None,
        first_accounted_after_secs: first.map(|d| d.as_secs_f64()),
        all_accounted_after_secs: all.map(|d| d.as_secs_f64()),
        events_per_second,
        backlog_cpu: cpu_before
            .zip(cpu_after)
            .map(|(before, after)| CpuUsage::between(&before, &after, Some(pid))),
    })
}

/// Runs the scenario. Progress goes to stderr.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    anyhow::ensure!(options.accounts > 0, "--accounts must be at least 1");
    let base_url = options.base_url.trim_end_matches('/').to_owned();
    let client = api::http_client()?;
    api::check_ready(&client, &base_url).await?;
    let run = api::run_id();
    eprintln!("registering {} accounts (run {run})", options.accounts);
    let mut accounts = Vec::new();
    for account in api::accounts(&client, &base_url, &run, options.accounts).await? {
        let id = user_id(&client, &base_url, &account).await?;
        accounts.push(Arc::new((account, id)));
    }
    match options.mode {
        Mode::Latency => latency(&options, &client, &base_url, accounts).await,
        Mode::Backlog => backlog(&options, &client, &base_url, accounts).await,
    }
}

/// The report for people.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gamification benchmark ({:?}) against {}: {} workouts created at {:.0}/s",
        report.mode, report.base_url, report.workouts, report.created_per_second
    );
    if report.mode == Mode::Latency {
        let _ = writeln!(
            out,
            "{}",
            api::latency_line("201 to GET /v1/me/points", report.to_points.as_ref())
        );
        let _ = writeln!(
            out,
            "{}",
            api::latency_line("201 to leaderboard", report.to_leaderboard.as_ref())
        );
        let _ = writeln!(out, "  not seen within 30 s: {}", report.not_seen);
        let _ = writeln!(out, "{}", api::cpu_line("creating", report.cpu.as_ref()));
    } else {
        let _ = writeln!(
            out,
            "  gamification started: first workout accounted after {:.2} s, all after {:.2} s: \
             {:.0} events/s",
            report.first_accounted_after_secs.unwrap_or(f64::NAN),
            report.all_accounted_after_secs.unwrap_or(f64::NAN),
            report.events_per_second.unwrap_or(f64::NAN)
        );
        let _ = writeln!(
            out,
            "{}",
            api::cpu_line("catching up", report.backlog_cpu.as_ref())
        );
    }
    out
}
