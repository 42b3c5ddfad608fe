//! The training issue's "Measure" scenario:
//!
//! 1. parse and summarise: the longest FIT, GPX and TCX fixture, `read` + `analyze` many
//!    times each in this process (no server involved), median per format and normalised to one
//!    hour of samples;
//! 2. upload to ready: every fixture that imports, uploaded by several accounts (a person may
//!    upload a workout only once), one upload at a time; each `POST /v1/uploads` is followed by
//!    `GET /v1/uploads/{id}` every few milliseconds until `ready`;
//! 3. `GET /v1/activities?limit=20` with many activities in the database: one account gets
//!    10,000 finished manual workouts through the API, then pages (the first page and random
//!    cursors) are read open-loop at a fixed rate, latency counted from the moment each request
//!    was due (so a slow server cannot hide queueing), and closed-loop with many clients for
//!    the most it can serve.
//!
//! Nothing is asserted: the figures are written down, not judged here.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chrono::Utc;
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use reqwest::{Client, StatusCode, multipart};
use serde::{Deserialize, Serialize};
use serde_json::json;
use stride_formats::{Athlete, Format, analyze, read};
use tokio::time::MissedTickBehavior;

use crate::{
    api::{self, Account},
    procfs::{self, CpuSnapshot, CpuUsage, Memory},
    stats::{self, LatencySummary},
};

/// Options of `stride-bench training`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Base URL of the server's HTTP port.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// The workout fixtures (with `fit/`, `gpx/`, `tcx/`); by default `shared/fixtures/workouts`
    /// next to the repository.
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
    /// Parse-and-summarise runs per format.
    #[arg(long, default_value_t = 200)]
    pub parse_runs: usize,
    /// Accounts that upload every importable fixture once each (0 = skip uploads).
    #[arg(long, default_value_t = 4)]
    pub upload_accounts: usize,
    /// Manual activities created for the list benchmark (0 = skip it).
    #[arg(long, default_value_t = 10_000)]
    pub activities: usize,
    /// Open-loop request rate of `GET /v1/activities`, per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Length of the open-loop phase, seconds.
    #[arg(long, default_value_t = 20)]
    pub duration_secs: u64,
    /// Clients of the closed-loop phase.
    #[arg(long, default_value_t = 32)]
    pub closed_loop_clients: usize,
    /// Length of the closed-loop phase, seconds.
    #[arg(long, default_value_t = 10)]
    pub closed_loop_secs: u64,
    /// Pid of the `stride serve` process, for its memory and CPU use (Linux).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Parse-and-summarise timing of one fixture.
#[derive(Debug, Clone, Serialize)]
pub struct ParseFigures {
    /// `fit`, `gpx` or `tcx`.
    pub format: String,
    /// The file.
    pub file: String,
    /// Its size.
    pub bytes: usize,
    /// Samples (records or track points) in it.
    pub samples: usize,
    /// Elapsed time of the workout, seconds.
    pub duration_s: f64,
    /// Runs timed.
    pub runs: usize,
    /// Median of `read` + `analyze`, milliseconds.
    pub median_ms: f64,
    /// Fastest run.
    pub min_ms: f64,
    /// Slowest run.
    pub max_ms: f64,
    /// Median scaled to one hour of samples at this file's sampling rate:
    /// `median × 3600 / duration`.
    pub per_hour_ms: f64,
    /// Median per sample, microseconds.
    pub per_sample_us: f64,
}

/// Upload-to-ready figures.
#[derive(Debug, Default, Serialize)]
pub struct UploadFigures {
    /// Files uploaded per account.
    pub files: Vec<String>,
    /// Uploads that became ready.
    pub ready: usize,
    /// Uploads that ended in `error` (with the first reason).
    pub errors: usize,
    /// The first error.
    pub first_error: Option<String>,
    /// From sending the POST to the first GET that said `ready`.
    pub latency: Option<LatencySummary>,
    /// The POST alone (until its 202).
    pub accept_latency: Option<LatencySummary>,
}

/// One load phase of `GET /v1/activities`.
#[derive(Debug, Default, Serialize)]
pub struct ListFigures {
    /// Requests per second asked for (open loop) or clients (closed loop).
    pub offered: String,
    /// Requests answered 200 per second of the phase.
    pub achieved_per_second: f64,
    /// 200 answers.
    pub ok: u64,
    /// Other answers and transport errors.
    pub failed: u64,
    /// The first failure.
    pub first_failure: Option<String>,
    /// Latency of the 200 answers (open loop: from when the request was due).
    pub latency: Option<LatencySummary>,
    /// Who used the CPU.
    pub cpu: Option<CpuUsage>,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Always `training`.
    pub scenario: &'static str,
    /// Server under test.
    pub base_url: String,
    /// Parse-and-summarise per format.
    pub parse: Vec<ParseFigures>,
    /// Upload to ready.
    pub uploads: Option<UploadFigures>,
    /// Activities in the listed account.
    pub activities: usize,
    /// Creating them: per second.
    pub create_per_second: Option<f64>,
    /// Open-loop reads.
    pub list_open_loop: Option<ListFigures>,
    /// Closed-loop reads.
    pub list_closed_loop: Option<ListFigures>,
    /// Server memory at the end.
    pub server_memory: Option<Memory>,
}

/// `shared/fixtures/workouts` beside the repository (the crate lives in `crates/bench`).
fn default_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/workouts")
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Times `read` + `analyze` of the longest fixture of each format.
pub fn parse_figures(root: &Path, runs: usize) -> anyhow::Result<Vec<ParseFigures>> {
    let athlete = Athlete {
        max_heart_rate: Some(190.0),
        resting_heart_rate: Some(50.0),
        weight_kg: Some(70.0),
        age_years: Some(40.0),
        sex: None,
    };
    let mut figures = Vec::new();
    for (dir, format) in [
        ("fit", Format::Fit),
        ("gpx", Format::Gpx),
        ("tcx", Format::Tcx),
    ] {
        let mut longest: Option<(f64, String, Vec<u8>, usize)> = None;
        let folder = root.join(dir);
        for entry in
            std::fs::read_dir(&folder).with_context(|| format!("listing {}", folder.display()))?
        {
            let path = entry?.path();
            let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
            let Ok(activity) = read(&bytes, Some(format)) else {
                continue;
            };
            let seconds =
                (activity.end_time() - activity.start_time).num_milliseconds() as f64 / 1000.0;
            if longest.as_ref().is_none_or(|(s, ..)| seconds > *s) {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                longest = Some((seconds, name, bytes, activity.samples.len()));
            }
        }
        let Some((seconds, file, bytes, samples)) = longest else {
            continue;
        };
        // Two untimed runs warm caches and the allocator.
        for _ in 0..2 {
            std::hint::black_box(read(&bytes, Some(format)).map(|a| analyze(&a, &athlete)))
                .context("fixture imports")?;
        }
        let mut times: Vec<Duration> = (0..runs.max(1))
            .map(|_| {
                let started = Instant::now();
                let analysis = read(&bytes, Some(format)).map(|a| analyze(&a, &athlete));
                std::hint::black_box(analysis).ok();
                started.elapsed()
            })
            .collect();
        times.sort_unstable();
        let median_ms = millis(stats::median(&times).unwrap_or_default());
        figures.push(ParseFigures {
            format: dir.to_owned(),
            file,
            bytes: bytes.len(),
            samples,
            duration_s: seconds,
            runs: times.len(),
            median_ms,
            min_ms: millis(times[0]),
            max_ms: millis(times[times.len() - 1]),
            per_hour_ms: if seconds > 0.0 {
                median_ms * 3600.0 / seconds
            } else {
                f64::NAN
            },
            per_sample_us: median_ms * 1000.0 / samples.max(1) as f64,
        });
    }
    Ok(figures)
}

/// The fixtures that import, with their names.
fn importable_files(root: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for dir in ["fit", "gpx", "tcx"] {
        let folder = root.join(dir);
        let mut names: Vec<PathBuf> = std::fs::read_dir(&folder)
            .with_context(|| format!("listing {}", folder.display()))?
            .filter_map(|entry| Some(entry.ok()?.path()))
            .collect();
        names.sort();
        for path in names {
            let bytes = std::fs::read(&path)?;
            if read(&bytes, None).is_ok() {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                files.push((name, bytes));
            }
        }
    }
    Ok(files)
}

#[derive(Deserialize)]
struct UploadStatus {
    id: uuid::Uuid,
    status: String,
    error: Option<String>,
}

/// One upload: (POST latency, latency to ready) or the reason it failed.
async fn upload_once(
    client: &Client,
    base_url: &str,
    account: &Account,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<Result<(Duration, Duration), String>> {
    let form = multipart::Form::new().part(
        "file",
        multipart::Part::bytes(bytes.to_vec()).file_name(name.to_owned()),
    );
    let started = Instant::now();
    let response = client
        .post(format!("{base_url}/v1/uploads"))
        .bearer_auth(&account.access_token)
        .multipart(form)
        .send()
        .await
        .context("POST /v1/uploads")?;
    if response.status() != StatusCode::ACCEPTED {
        return Ok(Err(format!("{name}: {}", api::describe(response).await)));
    }
    let accepted = started.elapsed();
    let upload: UploadStatus = response.json().await.context("reading the 202")?;
    let url = format!("{base_url}/v1/uploads/{}", upload.id);
    let mut status = upload;
    let mut ticks = tokio::time::interval(Duration::from_millis(5));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        match status.status.as_str() {
            "ready" => return Ok(Ok((accepted, started.elapsed()))),
            "error" => return Ok(Err(format!("{name}: {}", status.error.unwrap_or_default()))),
            _ if started.elapsed() > Duration::from_secs(60) => {
                return Ok(Err(format!("{name}: not ready after 60 s")));
            }
            _ => {}
        }
        ticks.tick().await;
        let response = client
            .get(&url)
            .bearer_auth(&account.access_token)
            .send()
            .await
            .context("GET /v1/uploads/{id}")?;
        if response.status() != StatusCode::OK {
            return Ok(Err(format!("{name}: {}", api::describe(response).await)));
        }
        status = response.json().await.context("reading the upload status")?;
    }
}

async fn uploads(
    client: &Client,
    base_url: &str,
    accounts: &[Account],
    files: &[(String, Vec<u8>)],
) -> anyhow::Result<UploadFigures> {
    let mut figures = UploadFigures {
        files: files.iter().map(|(name, _)| name.clone()).collect(),
        ..UploadFigures::default()
    };
    let (mut ready, mut accepted) = (Vec::new(), Vec::new());
    for account in accounts {
        for (name, bytes) in files {
            match upload_once(client, base_url, account, name, bytes).await? {
                Ok((accept, to_ready)) => {
                    figures.ready += 1;
                    accepted.push(accept);
                    ready.push(to_ready);
                }
                Err(reason) => {
                    figures.errors += 1;
                    figures.first_error.get_or_insert(reason);
                }
            }
        }
    }
    figures.latency = stats::summarize(&ready);
    figures.accept_latency = stats::summarize(&accepted);
    Ok(figures)
}

/// Creates `count` finished manual runs for `account`, one every two hours back from now,
/// `concurrency` at a time; returns the rate.
async fn create_activities(
    client: &Client,
    base_url: &str,
    account: &Account,
    count: usize,
) -> anyhow::Result<f64> {
    const CONCURRENCY: usize = 16;
    let now = Utc::now();
    let started = Instant::now();
    let url = format!("{base_url}/v1/activities");
    let mut workers = Vec::new();
    for worker in 0..CONCURRENCY {
        let (client, url, token) = (client.clone(), url.clone(), account.access_token.clone());
        workers.push(tokio::spawn(async move {
            for index in (worker..count).step_by(CONCURRENCY) {
                let start = now - chrono::Duration::hours(2 * index as i64 + 1);
                let body = json!({
                    "sport": "run",
                    "status": "finished",
                    "start_time": start,
                    "name": format!("Bench run {index}"),
                    "summary": {"elapsed_time_s": 1800 + index % 900, "distance_m": 5000 + index % 3000},
                });
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .context("POST /v1/activities")?;
                if response.status() != StatusCode::CREATED {
                    bail!("creating activity {index}: {}", api::describe(response).await);
                }
            }
            anyhow::Ok(())
        }));
    }
    for worker in workers {
        worker.await.context("creating task")??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

#[derive(Deserialize)]
struct Page {
    activities: Vec<serde_json::Value>,
    next_cursor: Option<String>,
}

/// Every page's cursor, walking the whole list at 20 a page (the first page has none).
async fn all_cursors(
    client: &Client,
    base_url: &str,
    account: &Account,
) -> anyhow::Result<(Vec<String>, usize)> {
    let mut cursors = Vec::new();
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut request = client
            .get(format!("{base_url}/v1/activities"))
            .bearer_auth(&account.access_token)
            .query(&[("limit", "20")]);
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let response = request.send().await.context("GET /v1/activities")?;
        if response.status() != StatusCode::OK {
            bail!("listing: {}", api::describe(response).await);
        }
        let page: Page = response.json().await.context("reading a page")?;
        seen += page.activities.len();
        match page.next_cursor {
            Some(next) => {
                cursors.push(next.clone());
                cursor = Some(next);
            }
            None => return Ok((cursors, seen)),
        }
    }
}

/// The URL of request `index`: every other request reads the first page, the rest a random
/// cursor.
fn list_url(base: &str, cursors: &[String], rng: &mut StdRng) -> String {
    if cursors.is_empty() || rng.gen_bool(0.5) {
        return format!("{base}?limit=20");
    }
    let cursor = &cursors[rng.gen_range(0..cursors.len())];
    format!("{base}?limit=20&cursor={cursor}")
}

async fn list_once(client: &Client, url: &str, token: &str) -> Result<(), String> {
    let response = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|error| error.to_string())?;
    if response.status() != StatusCode::OK {
        return Err(api::describe(response).await);
    }
    response
        .bytes()
        .await
        .map(|_| ())
        .map_err(|error| error.to_string())
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    first_failure: Option<String>,
    latencies: Vec<Duration>,
}

impl Tally {
    fn add(&mut self, outcome: Result<(), String>, latency: Duration) {
        match outcome {
            Ok(()) => {
                self.ok += 1;
                self.latencies.push(latency);
            }
            Err(failure) => {
                self.failed += 1;
                self.first_failure.get_or_insert(failure);
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.failed += other.failed;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.latencies.extend(other.latencies);
    }

    fn figures(self, offered: String, window: Duration, cpu: Option<CpuUsage>) -> ListFigures {
        ListFigures {
            offered,
            achieved_per_second: self.ok as f64 / window.as_secs_f64(),
            ok: self.ok,
            failed: self.failed,
            first_failure: self.first_failure,
            latency: stats::summarize(&self.latencies),
            cpu,
        }
    }
}

/// Open loop: one request every `1/rate` s, each on its own task, latency from when it was due.
async fn open_loop(
    base_url: &str,
    token: &str,
    cursors: Arc<Vec<String>>,
    rate: u64,
    window: Duration,
    server_pid: Option<u32>,
) -> anyhow::Result<ListFigures> {
    let client = api::http_client()?;
    let base = format!("{base_url}/v1/activities");
    let token: Arc<str> = token.into();
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let total = (window.as_secs_f64() * rate as f64).round() as u64;
    let mut rng = StdRng::seed_from_u64(7);
    let cpu_before = CpuSnapshot::take(server_pid).ok();
    let began = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for index in 0..total {
        let due = began + interval.mul_f64(index as f64);
        tokio::time::sleep_until(due).await;
        let url = list_url(&base, &cursors, &mut rng);
        let (client, token) = (client.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let outcome = list_once(&client, &url, &token).await;
            (outcome, due.elapsed())
        }));
    }
    let cpu_after = CpuSnapshot::take(server_pid).ok();
    let mut tally = Tally::default();
    for task in tasks {
        let (outcome, latency) = task.await.context("request task")?;
        tally.add(outcome, latency);
    }
    let cpu = cpu_before
        .zip(cpu_after)
        .map(|(before, after)| CpuUsage::between(&before, &after, server_pid));
    Ok(tally.figures(format!("{rate} requests/s"), window, cpu))
}

/// Closed loop: `clients` tasks each send the next request as soon as the last one answered.
async fn closed_loop(
    base_url: &str,
    token: &str,
    cursors: Arc<Vec<String>>,
    clients: usize,
    window: Duration,
    server_pid: Option<u32>,
) -> anyhow::Result<ListFigures> {
    let client = api::http_client()?;
    let base = format!("{base_url}/v1/activities");
    let deadline = Instant::now() + window;
    let cpu_before = CpuSnapshot::take(server_pid).ok();
    let mut tasks = Vec::new();
    for worker in 0..clients.max(1) {
        let (client, base, token, cursors) = (
            client.clone(),
            base.clone(),
            token.to_owned(),
            cursors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(worker as u64);
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                let url = list_url(&base, &cursors, &mut rng);
                let started = Instant::now();
                let outcome = list_once(&client, &url, &token).await;
                if Instant::now() <= deadline {
                    tally.add(outcome, started.elapsed());
                }
            }
            tally
        }));
    }
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.context("client task")?);
    }
    let cpu_after = CpuSnapshot::take(server_pid).ok();
    let cpu = cpu_before
        .zip(cpu_after)
        .map(|(before, after)| CpuUsage::between(&before, &after, server_pid));
    Ok(tally.figures(format!("{clients} clients"), window, cpu))
}

/// Runs the scenario. Progress goes to stderr.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    let base_url = options.base_url.trim_end_matches('/').to_owned();
    let fixtures = options.fixtures.clone().unwrap_or_else(default_fixtures);
    eprintln!(
        "parse and summarise: {} runs per format from {}",
        options.parse_runs,
        fixtures.display()
    );
    let parse = {
        let (fixtures, runs) = (fixtures.clone(), options.parse_runs);
        tokio::task::spawn_blocking(move || parse_figures(&fixtures, runs))
            .await
            .context("parse timing thread")??
    };

    let client = api::http_client()?;
    api::check_ready(&client, &base_url).await?;
    let run = api::run_id();

    let uploads = if options.upload_accounts > 0 {
        let files = importable_files(&fixtures)?;
        eprintln!(
            "uploads: {} accounts × {} files, one at a time",
            options.upload_accounts,
            files.len()
        );
        let accounts = api::accounts(&client, &base_url, &run, options.upload_accounts).await?;
        Some(uploads(&client, &base_url, &accounts, &files).await?)
    } else {
        None
    };

    let (mut create_per_second, mut list_open_loop, mut list_closed_loop) = (None, None, None);
    let mut activities = 0;
    if options.activities > 0 {
        let lister = api::account(&client, &base_url, &run, "lister", 999).await?;
        eprintln!("creating {} manual activities", options.activities);
        create_per_second =
            Some(create_activities(&client, &base_url, &lister, options.activities).await?);
        let (cursors, seen) = all_cursors(&client, &base_url, &lister).await?;
        activities = seen;
        eprintln!(
            "{seen} activities in {} pages; settling 5 s",
            cursors.len() + 1
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        let cursors = Arc::new(cursors);
        eprintln!(
            "open loop: {} GET /v1/activities?limit=20 per second for {} s",
            options.rate, options.duration_secs
        );
        list_open_loop = Some(
            open_loop(
                &base_url,
                &lister.access_token,
                cursors.clone(),
                options.rate,
                Duration::from_secs(options.duration_secs),
                options.server_pid,
            )
            .await?,
        );
        eprintln!(
            "closed loop: {} clients for {} s",
            options.closed_loop_clients, options.closed_loop_secs
        );
        list_closed_loop = Some(
            closed_loop(
                &base_url,
                &lister.access_token,
                cursors,
                options.closed_loop_clients,
                Duration::from_secs(options.closed_loop_secs),
                options.server_pid,
            )
            .await?,
        );
    }
    Ok(Report {
        scenario: "training",
        base_url,
        parse,
        uploads,
        activities,
        create_per_second,
        list_open_loop,
        list_closed_loop,
        server_memory: options.server_pid.map(procfs::memory).transpose()?,
    })
}

/// The report for people.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "training benchmark against {}", report.base_url);
    let _ = writeln!(
        out,
        "parse + analyze (read, summary, splits, best efforts):"
    );
    for p in &report.parse {
        let _ = writeln!(
            out,
            "  {}: {} ({:.2} h, {} samples, {} KiB): median {:.3} ms (min {:.3}, max {:.3}, \
             n = {}); per hour of samples {:.3} ms; {:.2} µs per sample",
            p.format,
            p.file,
            p.duration_s / 3600.0,
            p.samples,
            p.bytes / 1024,
            p.median_ms,
            p.min_ms,
            p.max_ms,
            p.runs,
            p.per_hour_ms,
            p.per_sample_us
        );
    }
    if let Some(u) = &report.uploads {
        let _ = writeln!(
            out,
            "uploads ({} files per account): {} ready, {} errors",
            u.files.len(),
            u.ready,
            u.errors
        );
        let _ = writeln!(
            out,
            "{}",
            api::latency_line("POST to 202", u.accept_latency.as_ref())
        );
        let _ = writeln!(
            out,
            "{}",
            api::latency_line("POST to ready", u.latency.as_ref())
        );
        if let Some(error) = &u.first_error {
            let _ = writeln!(out, "  first error: {error}");
        }
    }
    if let Some(rate) = report.create_per_second {
        let _ = writeln!(
            out,
            "GET /v1/activities?limit=20 with {} activities (created at {rate:.0}/s):",
            report.activities
        );
    }
    for (label, figures) in [
        ("open loop", report.list_open_loop.as_ref()),
        ("closed loop", report.list_closed_loop.as_ref()),
    ] {
        let Some(f) = figures else { continue };
        let _ = writeln!(
            out,
            "  {label} ({}): {:.0} ok/s, {} ok, {} failed",
            f.offered, f.achieved_per_second, f.ok, f.failed
        );
        let _ = writeln!(out, "{}", api::latency_line(label, f.latency.as_ref()));
        let _ = writeln!(out, "{}", api::cpu_line(label, f.cpu.as_ref()));
        if let Some(failure) = &f.first_failure {
            let _ = writeln!(out, "  first failure: {failure}");
        }
    }
    if let Some(memory) = &report.server_memory {
        let _ = writeln!(
            out,
            "server memory at the end: RSS {:.1} MiB, peak {:.1} MiB",
            memory.rss_mib(),
            memory.peak_rss_mib()
        );
    }
    out
}
