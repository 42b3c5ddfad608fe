//! `stride sim`: simulated devices that record workouts through the public HTTP API only.
//!
//! Each device is a person with a watch or a bike computer: it registers an account, logs in,
//! registers the device, starts a public workout, streams one-second samples in batches to
//! `POST /v1/telemetry/batches` with the device credential, and finishes the workout. It
//! answers the server as a real device must: a `429` or `503` keeps the batch and sends it
//! again with the same `seq` after `Retry-After`, network errors are retried with backoff, any
//! other refusal stops that device. [`model`] makes the samples (pure and seeded); this module
//! does the talking, the clock and the [`Report`].
//!
//! With a speedup `X`, a batch of `S` samples leaves every `S / X` seconds of wall time. So
//! that no sample is ever from the future, a sped-up workout starts `D · (1 − 1/X)` in the
//! past (`D` its duration): its last sample is taken just as the last batch leaves.

pub mod model;

use std::{
    fmt,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use prost::Message as _;
use rand::{Rng, rngs::OsRng, seq::SliceRandom};
use reqwest::{Client, RequestBuilder, Response, StatusCode, header};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::json;
use stride_proto::telemetry::v1 as proto;
use tokio::sync::{Semaphore, watch};
use uuid::Uuid;

use self::model::{Reading, Sport, Workout};

/// Where the API answers unless told otherwise.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8080";
/// Longest simulated workout: a day.
const MAX_DURATION_MINS: f64 = 24.0 * 60.0;
/// Devices setting up at once: registering and logging in hash passwords, which is slow on
/// purpose; hundreds at once would only queue on the server and time out.
const CONCURRENT_SETUPS: usize = 8;
/// Unanswered attempts (network errors, 5xx other than 503) before a device gives up a batch.
const MAX_FAILED_ATTEMPTS: u32 = 20;
/// Attempts refused with 429 or 503 in a row before a device gives up (each waits at least
/// a second, so this is minutes of an overloaded or broken server).
const MAX_DEFERRED_ATTEMPTS: u32 = 300;
/// How often progress is printed while streaming.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Which sports the devices record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SportChoice {
    /// Every device runs (a watch).
    Run,
    /// Every device rides (a bike computer with a power meter).
    Ride,
    /// Devices alternate: run, ride, run, ...
    Mixed,
}

impl SportChoice {
    fn for_device(self, index: u32) -> Sport {
        match self {
            SportChoice::Run => Sport::Run,
            SportChoice::Ride => Sport::Ride,
            SportChoice::Mixed if index % 2 == 1 => Sport::Run,
            SportChoice::Mixed => Sport::Ride,
        }
    }
}

fn positive_number(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct Options {
    /// Base URL of the Stride HTTP API (any process serving identity, training and telemetry).
    #[arg(
        long,
        env = "STRIDE_SIM_BASE_URL",
        default_value = DEFAULT_BASE_URL,
        value_name = "URL"
    )]
    pub base_url: String,

    /// Simulated devices, each with its own account, device credential and workout.
    #[arg(
        long,
        default_value_t = 3,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub devices: u32,

    /// How much faster than real time to record: 1 is real time, 60 sends one minute of
    /// workout per second. Above 1, workouts start in the past so that no sample is from the
    /// future.
    #[arg(long, default_value_t = 1.0, value_name = "X", value_parser = positive_number)]
    pub speedup: f64,

    /// Workout minutes per device (one sample per second; at most a day).
    #[arg(long, default_value_t = 30.0, value_name = "M", value_parser = positive_number)]
    pub duration_mins: f64,

    /// Seconds of samples per batch: a device sends a batch of this many samples each time
    /// that much workout time has passed.
    #[arg(
        long,
        default_value_t = 10,
        value_name = "S",
        value_parser = clap::value_parser!(u32).range(1..=3600)
    )]
    pub batch_secs: u32,

    /// Sport of the workouts: run (watch: GPS, heart rate, step cadence), ride (bike computer:
    /// also power) or mixed (alternating).
    #[arg(long, value_enum, default_value_t = SportChoice::Mixed)]
    pub sport: SportChoice,

    /// Send batches as application/x-protobuf (stride.telemetry.v1.SampleBatch) instead of
    /// JSON.
    #[arg(long)]
    pub protobuf: bool,

    /// Leave the workouts active at the end instead of finishing them.
    #[arg(long)]
    pub keep_active: bool,

    /// Seed of the athletes, courses and noise; the same seed gives the same workouts. Random
    /// when not given (the report prints it).
    #[arg(long, value_name = "SEED")]
    pub seed: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            devices: 3,
            speedup: 1.0,
            duration_mins: 30.0,
            batch_secs: 10,
            sport: SportChoice::Mixed,
            protobuf: false,
            keep_active: false,
            seed: None,
        }
    }
}

impl Options {
    /// Checks what the command line checks, for callers that build options in code.
    fn validate(&self) -> anyhow::Result<()> {
        if self.devices == 0 {
            bail!("--devices must be at least 1");
        }
        if !(self.speedup.is_finite() && self.speedup > 0.0) {
            bail!("--speedup must be a positive number");
        }
        if !(self.duration_mins.is_finite()
            && self.duration_mins > 0.0
            && self.duration_mins <= MAX_DURATION_MINS)
        {
            bail!("--duration-mins must be more than 0 and at most {MAX_DURATION_MINS}");
        }
        if !(1..=3600).contains(&self.batch_secs) {
            bail!("--batch-secs must be 1 to 3600");
        }
        Ok(())
    }

    /// One-second samples per workout.
    pub fn samples_per_device(&self) -> u64 {
        ((self.duration_mins * 60.0).round() as u64).max(1)
    }

    fn workout_duration(&self) -> Duration {
        Duration::from_secs(self.samples_per_device())
    }
}

/// What one device did.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceReport {
    /// 1-based number of the device.
    pub index: u32,
    /// What it recorded.
    pub sport: Sport,
    /// Where its course is.
    pub place: &'static str,
    /// The workout, once created.
    pub activity_id: Option<Uuid>,
    /// Batches answered `202`.
    pub batches: u64,
    /// Batch requests sent, retries included.
    pub requests: u64,
    /// Samples in the batches answered or refused (each counted once, however often sent).
    pub samples_sent: u64,
    /// Samples the server stored for the first time.
    pub samples_accepted: u64,
    /// Batches the server already had (a retry after a lost answer): stored once.
    pub duplicates: u64,
    /// Batches sent again after `429 Too Many Requests`.
    pub retries_throttled: u64,
    /// Batches sent again after `503 Service Unavailable`.
    pub retries_unavailable: u64,
    /// Batches sent again after a network error or another server error.
    pub retries_failed: u64,
    /// Metres covered by the samples sent.
    pub distance_m: f64,
    /// The workout was finished.
    pub finished: bool,
    /// Why the device stopped early, if it did.
    pub error: Option<String>,
}

impl DeviceReport {
    fn new(index: u32, sport: Sport, place: &'static str) -> Self {
        Self {
            index,
            sport,
            place,
            activity_id: None,
            batches: 0,
            requests: 0,
            samples_sent: 0,
            samples_accepted: 0,
            duplicates: 0,
            retries_throttled: 0,
            retries_unavailable: 0,
            retries_failed: 0,
            distance_m: 0.0,
            finished: false,
            error: None,
        }
    }
}

/// What a run did, for people and for tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The API talked to.
    pub base_url: String,
    /// The seed used (given or drawn).
    pub seed: u64,
    /// Batches were protobuf.
    pub protobuf: bool,
    /// The speedup.
    pub speedup: f64,
    /// Each device, in order.
    pub devices: Vec<DeviceReport>,
    /// Wall time of the whole run, set-up and finishing included.
    pub elapsed: Duration,
    /// Wall time from the first batch sent to the last one answered.
    pub streaming: Duration,
}

impl Report {
    /// Batches answered `202`.
    pub fn batches(&self) -> u64 {
        self.devices.iter().map(|device| device.batches).sum()
    }

    /// Samples sent (each once).
    pub fn samples_sent(&self) -> u64 {
        self.devices.iter().map(|device| device.samples_sent).sum()
    }

    /// Samples stored.
    pub fn samples_accepted(&self) -> u64 {
        self.devices
            .iter()
            .map(|device| device.samples_accepted)
            .sum()
    }

    /// Devices that stopped early.
    pub fn failed_devices(&self) -> usize {
        self.devices
            .iter()
            .filter(|device| device.error.is_some())
            .count()
    }

    /// Samples stored per second of streaming.
    pub fn samples_per_second(&self) -> f64 {
        let seconds = self.streaming.as_secs_f64();
        if seconds > 0.0 {
            self.samples_accepted() as f64 / seconds
        } else {
            0.0
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sum = |field: fn(&DeviceReport) -> u64| self.devices.iter().map(field).sum::<u64>();
        writeln!(
            f,
            "stride sim: {} devices against {}, {} batches, speedup {}x, seed {}",
            self.devices.len(),
            self.base_url,
            if self.protobuf { "protobuf" } else { "JSON" },
            self.speedup,
            self.seed
        )?;
        writeln!(f, "  batches accepted   {}", self.batches())?;
        writeln!(f, "  batch requests     {}", sum(|d| d.requests))?;
        writeln!(f, "  samples sent       {}", self.samples_sent())?;
        writeln!(f, "  samples accepted   {}", self.samples_accepted())?;
        writeln!(f, "  duplicates         {}", sum(|d| d.duplicates))?;
        writeln!(
            f,
            "  retries            {} after 429, {} after 503, {} after network or server errors",
            sum(|d| d.retries_throttled),
            sum(|d| d.retries_unavailable),
            sum(|d| d.retries_failed)
        )?;
        writeln!(
            f,
            "  elapsed            {:.1} s (streaming {:.1} s)",
            self.elapsed.as_secs_f64(),
            self.streaming.as_secs_f64()
        )?;
        writeln!(
            f,
            "  rate               {:.0} samples/s while streaming",
            self.samples_per_second()
        )?;
        writeln!(
            f,
            "activities (open GET /v1/activities/{{id}}/streams with any account's access token; they are public):"
        )?;
        for device in &self.devices {
            let activity = device
                .activity_id
                .map_or_else(|| "(none)".to_owned(), |id| id.to_string());
            let state = match (&device.error, device.finished) {
                (Some(error), _) => format!("stopped: {error}"),
                (None, true) => "finished".to_owned(),
                (None, false) => "active".to_owned(),
            };
            writeln!(
                f,
                "  device {:>3}  {:<4}  {}  {:>6} samples  {:>7.2} km  around {:<12}  {}",
                device.index,
                device.sport.as_str(),
                activity,
                device.samples_accepted,
                device.distance_m / 1000.0,
                device.place,
                state
            )?;
        }
        Ok(())
    }
}

/// Runs the simulation to its end.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    run_until(options, std::future::pending()).await
}

/// Runs the simulation until its end or until `stop` completes: then devices stop sending,
/// finish their workouts (unless `keep_active`) and the report covers what was done.
pub async fn run_until(
    options: Options,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Report> {
    options.validate()?;
    let seed = options
        .seed
        .unwrap_or_else(|| OsRng.gen_range(0..=u64::MAX));
    let base_url = options.base_url.trim_end_matches('/').to_owned();
    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    let (stop_sender, stopped) = watch::channel(false);
    let stop_watch = tokio::spawn(async move {
        stop.await;
        let _ = stop_sender.send(true);
    });
    let context = Arc::new(Context {
        client,
        base_url: base_url.clone(),
        options: options.clone(),
        seed,
        setups: Semaphore::new(CONCURRENT_SETUPS),
        progress: Progress::default(),
        began: Instant::now(),
    });
    eprintln!(
        "stride sim: {} devices, {} workout minutes each at {}x, against {base_url} (seed {seed})",
        options.devices, options.duration_mins, options.speedup
    );
    let progress = tokio::spawn(print_progress(context.clone()));
    let mut devices = tokio::task::JoinSet::new();
    for index in 1..=options.devices {
        devices.spawn(simulate_device(context.clone(), index, stopped.clone()));
    }
    let mut reports = Vec::with_capacity(options.devices as usize);
    while let Some(finished) = devices.join_next().await {
        reports.push(finished.context("a simulated device crashed")?);
    }
    progress.abort();
    stop_watch.abort();
    reports.sort_by_key(|report| report.index);
    let streaming = match (
        context.progress.first_sent_ms.load(Ordering::Relaxed),
        context.progress.last_answer_ms.load(Ordering::Relaxed),
    ) {
        (u64::MAX, _) | (_, 0) => Duration::ZERO,
        (first, last) => Duration::from_millis(last.saturating_sub(first)),
    };
    Ok(Report {
        base_url,
        seed,
        protobuf: options.protobuf,
        speedup: options.speedup,
        devices: reports,
        elapsed: context.began.elapsed(),
        streaming,
    })
}

/// What every device shares.
struct Context {
    client: Client,
    base_url: String,
    options: Options,
    seed: u64,
    setups: Semaphore,
    progress: Progress,
    began: Instant,
}

impl Context {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn since_start_ms(&self) -> u64 {
        self.began.elapsed().as_millis() as u64
    }
}

/// Running totals for the progress line.
struct Progress {
    streaming: AtomicU64,
    samples_accepted: AtomicU64,
    retries: AtomicU64,
    first_sent_ms: AtomicU64,
    last_answer_ms: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            streaming: AtomicU64::new(0),
            samples_accepted: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            first_sent_ms: AtomicU64::new(u64::MAX),
            last_answer_ms: AtomicU64::new(0),
        }
    }
}

async fn print_progress(context: Arc<Context>) {
    let mut ticks = tokio::time::interval(PROGRESS_EVERY);
    ticks.tick().await;
    let mut previous = 0;
    loop {
        ticks.tick().await;
        let accepted = context.progress.samples_accepted.load(Ordering::Relaxed);
        eprintln!(
            "[{:>5.0} s] {} devices streaming, {} samples accepted ({:.0}/s), {} retries",
            context.began.elapsed().as_secs_f64(),
            context.progress.streaming.load(Ordering::Relaxed),
            accepted,
            (accepted - previous) as f64 / PROGRESS_EVERY.as_secs_f64(),
            context.progress.retries.load(Ordering::Relaxed),
        );
        previous = accepted;
    }
}

/// A device's seed: distinct for every device of a run, the same for the same run seed.
fn device_seed(seed: u64, index: u32) -> u64 {
    seed ^ u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// An unguessable passphrase: four random words and a random hex chunk.
fn random_password() -> String {
    const WORDS: [&str; 32] = [
        "amber", "basalt", "cobalt", "dune", "ember", "fjord", "glacier", "harbor", "indigo",
        "juniper", "kestrel", "lagoon", "meadow", "nebula", "orchid", "prairie", "quarry", "raven",
        "saffron", "tundra", "umber", "velvet", "willow", "xenon", "yarrow", "zephyr", "cedar",
        "falcon", "granite", "lantern", "mosaic", "pebble",
    ];
    let mut rng = OsRng;
    let words: Vec<&str> = (0..4)
        .filter_map(|_| WORDS.choose(&mut rng).copied())
        .collect();
    let chunk = Uuid::new_v4().simple().to_string();
    format!("sim {} {}", words.join(" "), &chunk[..8])
}

/// An account's session.
struct Session {
    access_token: String,
    refresh_token: String,
    /// When to refresh the access token (a little before it expires).
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    refresh_token: String,
    expires_in: u64,
}

impl From<Tokens> for Session {
    fn from(tokens: Tokens) -> Self {
        Self {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            refresh_at: Instant::now() + Duration::from_secs(tokens.expires_in.saturating_sub(60)),
        }
    }
}

#[derive(Deserialize)]
struct CreatedDevice {
    id: Uuid,
    token: String,
}

#[derive(Deserialize)]
struct CreatedActivity {
    id: Uuid,
    start_time: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Accepted {
    accepted: u64,
    duplicate: bool,
}

/// A device set up and recording.
struct Recording {
    session: Session,
    device_token: String,
    activity_id: Uuid,
    start: DateTime<Utc>,
}

async fn simulate_device(
    context: Arc<Context>,
    index: u32,
    mut stopped: watch::Receiver<bool>,
) -> DeviceReport {
    let sport = context.options.sport.for_device(index);
    let workout = Workout::new(sport, device_seed(context.seed, index));
    let mut report = DeviceReport::new(index, sport, workout.course().place);
    let recording = {
        let Ok(_slot) = context.setups.acquire().await else {
            report.error = Some("set-up was cancelled".into());
            return report;
        };
        if *stopped.borrow() {
            report.error = Some("stopped before starting".into());
            return report;
        }
        set_up(&context, index, sport).await
    };
    let mut recording = match recording {
        Ok(recording) => recording,
        Err(error) => {
            eprintln!("device {index}: cannot set up: {error:#}");
            report.error = Some(format!("set-up failed: {error:#}"));
            return report;
        }
    };
    report.activity_id = Some(recording.activity_id);
    eprintln!(
        "device {index}: {} around {}, activity {}",
        sport.as_str(),
        report.place,
        recording.activity_id
    );
    context.progress.streaming.fetch_add(1, Ordering::Relaxed);
    stream(&context, &recording, workout, &mut report, &mut stopped).await;
    context.progress.streaming.fetch_sub(1, Ordering::Relaxed);
    if let Some(error) = &report.error {
        eprintln!("device {index}: stopped: {error}");
    }
    if !context.options.keep_active {
        match finish(&context, &mut recording).await {
            Ok(()) => report.finished = true,
            Err(error) => {
                eprintln!("device {index}: cannot finish its workout: {error:#}");
                report
                    .error
                    .get_or_insert_with(|| format!("finishing failed: {error:#}"));
            }
        }
    }
    report
}

/// Registers an account and a device, logs in and starts a public workout.
async fn set_up(context: &Context, index: u32, sport: Sport) -> anyhow::Result<Recording> {
    let client = &context.client;
    let email = format!("sim.{}@example.org", Uuid::new_v4().simple());
    let password = random_password();
    let display_name = match sport {
        Sport::Run => format!("Simulated Runner {index}"),
        Sport::Ride => format!("Simulated Rider {index}"),
    };
    let body = json!({"email": email, "password": password, "display_name": display_name});
    let registered = send(|| client.post(context.url("/v1/auth/register")).json(&body)).await?;
    expect::<serde_json::Value>(registered, StatusCode::CREATED, "registering").await?;
    let body = json!({"email": email, "password": password});
    let login = send(|| client.post(context.url("/v1/auth/login")).json(&body)).await?;
    let session: Session = expect::<Tokens>(login, StatusCode::OK, "logging in")
        .await?
        .into();
    let body = json!({"name": format!("Sim {} {index}", sport.device_kind()), "kind": sport.device_kind()});
    let device = send(|| {
        client
            .post(context.url("/v1/devices"))
            .bearer_auth(&session.access_token)
            .json(&body)
    })
    .await?;
    let device: CreatedDevice =
        expect(device, StatusCode::CREATED, "registering the device").await?;
    // Sped up, the workout started in the past: its last sample is due as the last batch
    // leaves, and never later than now.
    let duration = context.options.workout_duration().as_secs_f64();
    let head_start = (duration * (1.0 - 1.0 / context.options.speedup)).max(0.0);
    let start = Utc::now() - chrono::Duration::milliseconds((head_start * 1000.0).ceil() as i64);
    let start = DateTime::from_timestamp_millis(start.timestamp_millis()).unwrap_or(start);
    let body = json!({
        "sport": sport.as_str(),
        "status": "active",
        "device_id": device.id,
        "visibility": "public",
        "start_time": start,
        "description": format!("Simulated by stride sim (seed {}, device {index})", context.seed),
    });
    let idempotency_key = Uuid::new_v4().to_string();
    let activity = send(|| {
        client
            .post(context.url("/v1/activities"))
            .bearer_auth(&session.access_token)
            .header("idempotency-key", &idempotency_key)
            .json(&body)
    })
    .await?;
    let activity: CreatedActivity =
        expect(activity, StatusCode::CREATED, "starting the workout").await?;
    Ok(Recording {
        session,
        device_token: device.token,
        activity_id: activity.id,
        start: activity.start_time,
    })
}

/// Sends a set-up request, again after `429` or `503` as told by `Retry-After`.
async fn send(request: impl Fn() -> RequestBuilder) -> anyhow::Result<Response> {
    for _ in 0..10 {
        let response = request().send().await.context("sending a request")?;
        match response.status() {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                tokio::time::sleep(retry_after(&response)).await;
            }
            _ => return Ok(response),
        }
    }
    bail!("the server kept answering 429 or 503")
}

/// The body of an answer with `status`, or an error that says what the server said.
async fn expect<T: DeserializeOwned>(
    response: Response,
    status: StatusCode,
    what: &str,
) -> anyhow::Result<T> {
    if response.status() != status {
        bail!("{what}: {}", refusal(response).await);
    }
    response
        .json()
        .await
        .with_context(|| format!("{what}: unreadable answer"))
}

/// "409 Conflict: the detail of the problem".
async fn refusal(response: Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|problem| problem["detail"].as_str().map(str::to_owned))
        .unwrap_or(body);
    format!("{status}: {detail}")
}

fn retry_after(response: &Response) -> Duration {
    let seconds = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or(1);
    Duration::from_secs(seconds.clamp(1, 60))
}

/// Sleeps until `deadline`; false when told to stop first.
async fn wait_until(deadline: tokio::time::Instant, stopped: &mut watch::Receiver<bool>) -> bool {
    if *stopped.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep_until(deadline) => true,
        _ = stopped.wait_for(|stop| *stop) => false,
    }
}

/// Streams the workout's samples batch by batch on the speedup's clock.
async fn stream(
    context: &Context,
    recording: &Recording,
    mut workout: Workout,
    report: &mut DeviceReport,
    stopped: &mut watch::Receiver<bool>,
) {
    let options = &context.options;
    let total = options.samples_per_device();
    let start_ms = recording.start.timestamp_millis();
    let began = tokio::time::Instant::now();
    let mut sent: u64 = 0;
    let mut seq: u64 = 0;
    while sent < total {
        let count = (total - sent).min(u64::from(options.batch_secs));
        let readings: Vec<Reading> = workout.by_ref().take(count as usize).collect();
        let Some(last) = readings.last().copied() else {
            return;
        };
        let due = began + Duration::from_secs_f64((sent + count) as f64 / options.speedup);
        if !wait_until(due, stopped).await {
            return;
        }
        // Never from the future, even if the server's clock and ours disagree.
        let last_ms = start_ms + 1000 * i64::from(last.offset_s);
        let ahead_ms = last_ms - Utc::now().timestamp_millis();
        if ahead_ms > 0 {
            let later = tokio::time::Instant::now() + Duration::from_millis(ahead_ms as u64);
            if !wait_until(later, stopped).await {
                return;
            }
        }
        seq += 1;
        let (content_type, body) = encode_batch(
            recording.activity_id,
            seq,
            start_ms,
            &readings,
            options.protobuf,
        );
        context
            .progress
            .first_sent_ms
            .fetch_min(context.since_start_ms(), Ordering::Relaxed);
        let delivery = deliver(
            context,
            &recording.device_token,
            content_type,
            body,
            report,
            stopped,
        )
        .await;
        context
            .progress
            .last_answer_ms
            .fetch_max(context.since_start_ms(), Ordering::Relaxed);
        match delivery {
            Delivery::Accepted(accepted) => {
                report.batches += 1;
                report.samples_sent += count;
                report.distance_m = last.distance_m;
                if accepted.duplicate {
                    report.duplicates += 1;
                } else {
                    report.samples_accepted += accepted.accepted;
                    context
                        .progress
                        .samples_accepted
                        .fetch_add(accepted.accepted, Ordering::Relaxed);
                }
            }
            Delivery::Refused(reason) => {
                report.samples_sent += count;
                report.error = Some(format!("batch {seq} refused: {reason}"));
                return;
            }
            Delivery::Stopped => return,
        }
        sent += count;
    }
}

/// The wire form of a batch: its content type and body.
pub fn encode_batch(
    activity_id: Uuid,
    seq: u64,
    start_ms: i64,
    readings: &[Reading],
    protobuf: bool,
) -> (&'static str, Vec<u8>) {
    let time_ms = |reading: &Reading| start_ms + 1000 * i64::from(reading.offset_s);
    if protobuf {
        let batch = proto::SampleBatch {
            activity_id: activity_id.to_string(),
            seq,
            samples: readings
                .iter()
                .map(|reading| proto::Sample {
                    time_ms: time_ms(reading),
                    lat: Some(reading.lat),
                    lon: Some(reading.lon),
                    altitude_m: Some(reading.altitude_m),
                    heart_rate: Some(reading.heart_rate),
                    cadence: Some(reading.cadence),
                    power_w: reading.power_w,
                    speed_mps: Some(reading.speed_mps),
                    distance_m: Some(reading.distance_m),
                    temperature_c: None,
                })
                .collect(),
        };
        return ("application/x-protobuf", batch.encode_to_vec());
    }
    #[derive(Serialize)]
    struct JsonSample {
        time: i64,
        lat: f64,
        lon: f64,
        altitude_m: f64,
        heart_rate: f64,
        cadence: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        power_w: Option<f64>,
        speed_mps: f64,
        distance_m: f64,
    }
    #[derive(Serialize)]
    struct JsonBatch {
        activity_id: Uuid,
        seq: u64,
        samples: Vec<JsonSample>,
    }
    let batch = JsonBatch {
        activity_id,
        seq,
        samples: readings
            .iter()
            .map(|reading| JsonSample {
                time: time_ms(reading),
                lat: reading.lat,
                lon: reading.lon,
                altitude_m: reading.altitude_m,
                heart_rate: reading.heart_rate,
                cadence: reading.cadence,
                power_w: reading.power_w,
                speed_mps: reading.speed_mps,
                distance_m: reading.distance_m,
            })
            .collect(),
    };
    // Plain numbers, strings and a UUID always serialise.
    let body = serde_json::to_vec(&batch).unwrap_or_default();
    ("application/json", body)
}

enum Delivery {
    Accepted(Accepted),
    Refused(String),
    Stopped,
}

/// Sends one batch until the server has it: `429` and `503` wait `Retry-After`, network and
/// other server errors back off; the batch keeps its `seq`, so a retry is stored once.
async fn deliver(
    context: &Context,
    device_token: &str,
    content_type: &'static str,
    body: Vec<u8>,
    report: &mut DeviceReport,
    stopped: &mut watch::Receiver<bool>,
) -> Delivery {
    let url = context.url("/v1/telemetry/batches");
    let mut failed: u32 = 0;
    let mut deferred: u32 = 0;
    let mut backoff = Duration::from_millis(250);
    loop {
        report.requests += 1;
        let answer = context
            .client
            .post(&url)
            .bearer_auth(device_token)
            .header(header::CONTENT_TYPE, content_type)
            .body(body.clone())
            .send()
            .await;
        let (wait, backing_off) = match answer {
            Ok(response) if response.status() == StatusCode::ACCEPTED => {
                return match response.json::<Accepted>().await {
                    Ok(accepted) => Delivery::Accepted(accepted),
                    Err(error) => Delivery::Refused(format!("unreadable 202 answer: {error}")),
                };
            }
            Ok(response)
                if matches!(
                    response.status(),
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                ) =>
            {
                if response.status() == StatusCode::TOO_MANY_REQUESTS {
                    report.retries_throttled += 1;
                } else {
                    report.retries_unavailable += 1;
                }
                deferred += 1;
                if deferred > MAX_DEFERRED_ATTEMPTS {
                    return Delivery::Refused(format!(
                        "still {} after {MAX_DEFERRED_ATTEMPTS} attempts",
                        response.status()
                    ));
                }
                (retry_after(&response), false)
            }
            Ok(response) if response.status().is_server_error() => {
                report.retries_failed += 1;
                failed += 1;
                if failed > MAX_FAILED_ATTEMPTS {
                    return Delivery::Refused(refusal(response).await);
                }
                (backoff, true)
            }
            Ok(response) => return Delivery::Refused(refusal(response).await),
            Err(error) => {
                report.retries_failed += 1;
                failed += 1;
                if failed > MAX_FAILED_ATTEMPTS {
                    return Delivery::Refused(format!(
                        "no answer after {MAX_FAILED_ATTEMPTS} attempts: {error}"
                    ));
                }
                (backoff, true)
            }
        };
        context.progress.retries.fetch_add(1, Ordering::Relaxed);
        if backing_off {
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        if !wait_until(tokio::time::Instant::now() + wait, stopped).await {
            return Delivery::Stopped;
        }
    }
}

/// Finishes the workout, refreshing the access token first if it is about to expire.
async fn finish(context: &Context, recording: &mut Recording) -> anyhow::Result<()> {
    let client = &context.client;
    let session = &mut recording.session;
    if Instant::now() >= session.refresh_at {
        let body = json!({"refresh_token": session.refresh_token});
        let refreshed = send(|| client.post(context.url("/v1/auth/refresh")).json(&body)).await?;
        *session = expect::<Tokens>(refreshed, StatusCode::OK, "refreshing the session")
            .await?
            .into();
    }
    let path = format!("/v1/activities/{}/finish", recording.activity_id);
    let finished = send(|| {
        client
            .post(context.url(&path))
            .bearer_auth(&session.access_token)
    })
    .await?;
    expect::<serde_json::Value>(finished, StatusCode::OK, "finishing the workout").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readings(sport: Sport, count: usize) -> Vec<Reading> {
        Workout::new(sport, 11).take(count).collect()
    }

    #[test]
    fn json_batches_carry_epoch_milliseconds_and_power_only_for_rides() {
        let activity = Uuid::new_v4();
        let start_ms = 1_795_000_000_000;
        let (content_type, body) =
            encode_batch(activity, 4, start_ms, &readings(Sport::Run, 10)[5..], false);
        assert_eq!(content_type, "application/json");
        let batch: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(batch["activity_id"], activity.to_string());
        assert_eq!(batch["seq"], 4);
        let samples = batch["samples"].as_array().expect("samples");
        assert_eq!(samples.len(), 5);
        assert_eq!(samples[0]["time"], start_ms + 5_000);
        assert_eq!(samples[4]["time"], start_ms + 9_000);
        assert!(samples.iter().all(|s| s.get("power_w").is_none()));
        assert!(samples.iter().all(|s| s["heart_rate"].is_number()));

        let (_, body) = encode_batch(activity, 1, start_ms, &readings(Sport::Ride, 3), false);
        let batch: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert!(batch["samples"][2]["power_w"].is_number());
    }

    #[test]
    fn protobuf_batches_decode_to_the_same_samples() {
        let activity = Uuid::new_v4();
        let ride = readings(Sport::Ride, 20);
        let (content_type, body) = encode_batch(activity, 9, 1_000_000, &ride, true);
        assert_eq!(content_type, "application/x-protobuf");
        let batch = proto::SampleBatch::decode(body.as_slice()).expect("protobuf");
        assert_eq!(batch.activity_id, activity.to_string());
        assert_eq!(batch.seq, 9);
        assert_eq!(batch.samples.len(), 20);
        assert_eq!(batch.samples[19].time_ms, 1_000_000 + 19_000);
        assert_eq!(batch.samples[7].heart_rate, Some(ride[7].heart_rate));
        assert_eq!(batch.samples[7].power_w, ride[7].power_w);
        assert_eq!(batch.samples[7].lat, Some(ride[7].lat));
    }

    #[test]
    fn mixed_alternates_sports_and_devices_get_distinct_seeds() {
        let sports: Vec<Sport> = (1..=4).map(|i| SportChoice::Mixed.for_device(i)).collect();
        assert_eq!(sports, [Sport::Run, Sport::Ride, Sport::Run, Sport::Ride]);
        assert_eq!(SportChoice::Run.for_device(1), Sport::Run);
        let seeds: std::collections::HashSet<u64> = (1..=1000).map(|i| device_seed(5, i)).collect();
        assert_eq!(seeds.len(), 1000);
    }

    #[test]
    fn passwords_are_four_words_and_a_random_chunk() {
        let password = random_password();
        assert!(password.starts_with("sim "));
        assert_eq!(password.split(' ').count(), 6);
        assert_ne!(password, random_password());
    }

    #[test]
    fn options_are_checked_for_callers_in_code() {
        assert!(Options::default().validate().is_ok());
        let zero_speed = Options {
            speedup: 0.0,
            ..Options::default()
        };
        assert!(zero_speed.validate().is_err());
        let too_long = Options {
            duration_mins: 2.0 * MAX_DURATION_MINS,
            ..Options::default()
        };
        assert!(too_long.validate().is_err());
        let three_minutes = Options {
            duration_mins: 3.0,
            ..Options::default()
        };
        assert_eq!(three_minutes.samples_per_device(), 180);
    }
}
