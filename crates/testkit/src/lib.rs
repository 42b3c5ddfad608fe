//! Test support for Stride's API tests.
//!
//! [`spawn`] starts the given services in-process on port 0 with their own databases
//! (`t_<id>_<service>`), Redis key prefix and JetStream namespace, against the real servers
//! named by `STRIDE_TEST_DATABASE_URL`, `STRIDE_TEST_REDIS_URL` and `STRIDE_TEST_NATS_URL`.
//! [`TestApp`] sends requests and makes accounts; [`assert_problem`] checks problem+json
//! answers; [`PrivateRedis`], [`PrivateNats`] and [`PrivateInflux`] are servers of the test's
//! own that it may kill (SIGKILL) and restart on the same port and data folder.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use stride_platform::{config::Config, server::RunningApp, service::ServiceSpec};
use uuid::Uuid;

/// A password the strength check accepts.
pub const PASSWORD: &str = "violet quartz lantern 42";

/// A running app and what tests need to talk to it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// `http://127.0.0.1:PORT` of gRPC.
    pub grpc_address: String,
    /// A client without cookies or redirects.
    pub client: reqwest::Client,
    /// The config the app runs with.
    pub config: Config,
    /// The identity database, for checks a client cannot make (stored hashes).
    pub db: PgPool,
    app: Option<RunningApp>,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A configuration isolated from every other test: own databases, Redis keys and streams.
pub fn test_config() -> Config {
    let unique = Uuid::new_v4().simple().to_string();
    let short = &unique[..12];
    Config {
        http_addr: "127.0.0.1:0".parse().expect("address"),
        grpc_addr: "127.0.0.1:0".parse().expect("address"),
        database_url: env_or(
            "STRIDE_TEST_DATABASE_URL",
            "postgres://postgres:postgres@127.0.0.1:5432/postgres",
        )
        .into(),
        database_prefix: format!("t_{short}_"),
        database_max_connections: 5,
        redis_url: env_or("STRIDE_TEST_REDIS_URL", "redis://127.0.0.1:6379").into(),
        redis_prefix: format!("t:{short}:"),
        nats_url: env_or("STRIDE_TEST_NATS_URL", "nats://127.0.0.1:4222"),
        nats_prefix: format!("t{short}."),
        influx_url: env_or("STRIDE_TEST_INFLUX_URL", "http://127.0.0.1:8086"),
        influx_database: format!("t_{short}"),
        events_max_age_days: 1,
        // The broker reserves a stream's byte limit; many tests' streams share it.
        telemetry_buffer_max_bytes: 64 * 1024 * 1024,
        password_hash_threads: 2,
        log_format: "pretty".into(),
        log: std::env::var("STRIDE_TEST_LOG").unwrap_or_else(|_| "error".into()),
        shutdown_grace_seconds: 10,
        ..Config::default()
    }
}

/// Starts `services` in one process with `config`.
pub async fn spawn(services: &[&ServiceSpec], config: Config) -> TestApp {
    stride_platform::observability::init_logging(&config);
    let app = stride_platform::server::start(config.clone(), services)
        .await
        .expect("the app starts");
    let db = stride_platform::db::connect(&config, stride_identity::NAME)
        .await
        .expect("the identity database exists");
    TestApp {
        address: format!("http://{}", app.http_addr),
        grpc_address: format!("http://{}", app.grpc_addr),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        config,
        db,
        app: Some(app),
    }
}

impl Drop for TestApp {
    /// Removes the test's streams from the shared broker (databases are dropped by the next
    /// `dev/test` run). The runtime of the test is shutting down, so this gets its own.
    fn drop(&mut self) {
        let config = self.config.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let remove = async {
                    if let Ok(client) = async_nats::connect(&config.nats_url).await {
                        let jetstream = async_nats::jetstream::new(client);
                        for stream in ["EVENTS", "TELEMETRY"] {
                            let _ = jetstream.delete_stream(config.stream_name(stream)).await;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), remove).await;
            });
        });
        let _ = cleanup.join();
    }
}

/// A registered, logged-in account.
#[derive(Debug, Clone)]
pub struct Account {
    pub email: String,
    pub password: String,
    pub user_id: Uuid,
    pub access_token: String,
    pub refresh_token: String,
}

impl TestApp {
    /// Every event of `event_type` in the EVENTS stream once there are at least `count`
    /// (waits up to 10 s for the relays).
    pub async fn events(&self, event_type: &str, count: usize) -> Vec<stride_events::Envelope> {
        let client = async_nats::connect(&self.config.nats_url)
            .await
            .expect("nats");
        let jetstream = async_nats::jetstream::new(client);
        let subject = stride_events::subject_for(&self.config.nats_prefix, event_type);
        let mut stream = jetstream
            .get_stream(self.config.stream_name("EVENTS"))
            .await
            .expect("the EVENTS stream");
        for _ in 0..100 {
            let info = stream.info().await.expect("stream info");
            let mut found = Vec::new();
            for sequence in info.state.first_sequence..=info.state.last_sequence {
                if let Ok(message) = stream.get_raw_message(sequence).await
                    && message.subject.as_str() == subject
                {
                    found.push(serde_json::from_slice(&message.payload).expect("an envelope"));
                }
            }
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("fewer than {count} {event_type} events reached the broker");
    }

    /// Publishes `envelope` again under a new message id, as the broker would redeliver it
    /// after its deduplication window.
    pub async fn republish(&self, envelope: &stride_events::Envelope) {
        let client = async_nats::connect(&self.config.nats_url)
            .await
            .expect("nats");
        let jetstream = async_nats::jetstream::new(client);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", Uuid::new_v4().to_string().as_str());
        jetstream
            .publish_with_headers(
                envelope.nats_subject(&self.config.nats_prefix),
                headers,
                serde_json::to_vec(envelope).expect("json").into(),
            )
            .await
            .expect("published")
            .await
            .expect("stored");
    }

    /// A pool on `service`'s database, for checks a client cannot make.
    pub async fn database(&self, service: &str) -> PgPool {
        stride_platform::db::connect(&self.config, service)
            .await
            .expect("the service database exists")
    }

    /// Stops the app gracefully.
    pub async fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await.expect("stops");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// The process's `/metrics`, in Prometheus text format.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request sent")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of the process's unlabelled metric `name` (say
    /// `stride_telemetry_samples_accepted_total`), 0 when it is not there yet.
    pub async fn metric(&self, name: &str) -> f64 {
        metric_in(&self.metrics().await, name)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json_from(&self, path: &str, body: &Value, client_address: &str) -> Response {
        self.client
            .post(self.url(path))
            .header("x-forwarded-for", client_address)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_authed(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_authed(&self, path: &str, token: &str, body: Option<&Value>) -> Response {
        let request = self.client.post(self.url(path)).bearer_auth(token);
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        request.send().await.expect("request sent")
    }

    pub async fn patch_authed(&self, path: &str, token: &str, body: &Value) -> Response {
        self.client
            .patch(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn delete_authed(&self, path: &str, token: &str) -> Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn register(&self, email: &str, password: &str, display_name: &str) -> Response {
        self.post_json(
            "/v1/auth/register",
            &json!({"email": email, "password": password, "display_name": display_name}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/v1/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Registers a fresh account and logs it in.
    pub async fn new_account(&self) -> Account {
        let email = format!("athlete-{}@example.org", Uuid::new_v4().simple());
        let registered = self.register(&email, PASSWORD, "Test Athlete").await;
        assert_eq!(
            registered.status(),
            StatusCode::CREATED,
            "registration works"
        );
        let user: Value = registered.json().await.expect("json");
        let user_id = user["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("user id");
        let tokens = self.login_ok(&email, PASSWORD).await;
        Account {
            email,
            password: PASSWORD.to_owned(),
            user_id,
            access_token: tokens.0,
            refresh_token: tokens.1,
        }
    }

    /// Logs in and returns (access, refresh).
    pub async fn login_ok(&self, email: &str, password: &str) -> (String, String) {
        let response = self.login(email, password).await;
        assert_eq!(response.status(), StatusCode::OK, "login works");
        let tokens: Value = response.json().await.expect("json");
        (
            tokens["access_token"].as_str().expect("access").to_owned(),
            tokens["refresh_token"]
                .as_str()
                .expect("refresh")
                .to_owned(),
        )
    }

    /// Makes `account` an administrator.
    pub async fn make_admin(&self, account: &Account) {
        stride_identity::grant_admin(&self.config, &account.email)
            .await
            .expect("granted");
    }
}

/// Asserts that a problem's `detail` says `text`.
pub fn assert_detail_says(problem: &Value, text: &str) {
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains(text)),
        "the detail should say {text:?}: {problem}"
    );
}

/// Asserts a problem+json response with `status` and returns its body.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem json");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:stride:problem:")),
        "{body}"
    );
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A private redis-server that a test may kill and restart.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("private redis-server did not start");
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A folder of its own under the system's temporary folder, for a private server's data.
fn private_folder(kind: &str) -> std::path::PathBuf {
    let folder = std::env::temp_dir().join(format!("stride-{kind}-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&folder).expect("a temporary folder");
    folder
}

/// Where a private server's output goes: a log file in its folder, appended across restarts.
fn log_file(path: &std::path::Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// SIGKILLs a server a test started and reaps it.
fn kill_child(child: &mut Option<Child>) {
    if let Some(mut running) = child.take() {
        // `Child::kill` is SIGKILL on Unix: no shutdown, no final flush.
        running.kill().ok();
        running.wait().ok();
    }
}

/// Removes a private server's folder, or keeps it (and says where) when the test failed.
fn remove_folder(folder: &std::path::Path) {
    if std::thread::panicking() {
        eprintln!(
            "the test failed: the private server's data and log stay in {}",
            folder.display()
        );
    } else {
        std::fs::remove_dir_all(folder).ok();
    }
}

/// Panics with the end of the server's log when it exited on its own.
fn exited_early(child: &mut Option<Child>, name: &str, log: &std::path::Path) {
    let exited = child
        .as_mut()
        .and_then(|running| running.try_wait().ok().flatten());
    if let Some(status) = exited {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: String = text
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        panic!("private {name} exited ({status}):\n{tail}");
    }
}

/// A private nats-server with JetStream on file storage in a folder of its own, which a test
/// may SIGKILL and restart on the same port with the same store.
pub struct PrivateNats {
    pub port: u16,
    /// The server's folder: `nats.conf`, `nats.log` and the JetStream store `jetstream/`.
    pub folder: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateNats {
    pub async fn start() -> Self {
        let folder = private_folder("nats");
        let port = free_port();
        let store = folder.join("jetstream");
        // nats-server 2.9 has no `sync_interval` (2.10+), so JetStream fsyncs on its own
        // schedule. Tests SIGKILL the process but never cut power, so they cannot show
        // writes lost from the page cache.
        let config =
            format!("listen: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: {store:?}\n}}\n");
        std::fs::write(folder.join("nats.conf"), config).expect("nats.conf written");
        let mut nats = Self {
            port,
            folder,
            child: None,
        };
        nats.restart().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and store (after [`PrivateNats::kill`]) and
    /// waits until JetStream answers.
    pub async fn restart(&mut self) {
        kill_child(&mut self.child);
        let log = self.folder.join("nats.log");
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(self.folder.join("nats.conf"))
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .spawn()
            .expect("nats-server runs");
        self.child = Some(child);
        let url = self.url();
        for _ in 0..200 {
            exited_early(&mut self.child, "nats-server", &log);
            // JetStream answers its account-info request once it has recovered its store.
            let ready = async {
                let client = async_nats::connect(&url).await.ok()?;
                let reply = client.request("$JS.API.INFO", "".into()).await.ok()?;
                let info: Value = serde_json::from_slice(&reply.payload).ok()?;
                info.get("error").is_none().then_some(())
            };
            if let Ok(Some(())) = tokio::time::timeout(Duration::from_secs(2), ready).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("private nats-server did not start; see {}", log.display());
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
        remove_folder(&self.folder);
    }
}

/// A private influxd (InfluxDB 1.x) with its data in a folder of its own, which a test may
/// SIGKILL and restart on the same ports with the same data.
pub struct PrivateInflux {
    pub port: u16,
    /// The server's folder: `influxdb.conf`, `influxd.log` and the data.
    pub folder: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateInflux {
    pub async fn start() -> Self {
        let folder = private_folder("influxdb");
        let port = free_port();
        let rpc_port = free_port();
        let path = |name: &str| folder.join(name).display().to_string();
        // The keys of dev/lib.sh's stride_ensure_influxdb, on this server's own ports.
        let config = format!(
            "reporting-enabled = false\n\
             bind-address = \"127.0.0.1:{rpc_port}\"\n\
             [meta]\n  dir = {meta:?}\n\
             [data]\n  dir = {data:?}\n  wal-dir = {wal:?}\n  index-version = \"tsi1\"\n  \
             query-log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
             [continuous_queries]\n  enabled = false\n\
             [logging]\n  level = \"warn\"\n",
            meta = path("meta"),
            data = path("data"),
            wal = path("wal"),
        );
        std::fs::write(folder.join("influxdb.conf"), config).expect("influxdb.conf written");
        let mut influx = Self {
            port,
            folder,
            child: None,
        };
        influx.restart().await;
        influx
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same ports and data (after [`PrivateInflux::kill`])
    /// and waits until `GET /ping` answers 204.
    pub async fn restart(&mut self) {
        kill_child(&mut self.child);
        let log = self.folder.join("influxd.log");
        let child = Command::new("influxd")
            .arg("-config")
            .arg(self.folder.join("influxdb.conf"))
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .spawn()
            .expect("influxd runs");
        self.child = Some(child);
        let client = reqwest::Client::new();
        let ping = format!("{}/ping", self.url());
        for _ in 0..300 {
            exited_early(&mut self.child, "influxd", &log);
            let answer = client
                .get(&ping)
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if answer.is_ok_and(|response| response.status() == StatusCode::NO_CONTENT) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("private influxd did not start; see {}", log.display());
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }
}

impl Drop for PrivateInflux {
    fn drop(&mut self) {
        self.kill();
        remove_folder(&self.folder);
    }
}

/// The value of the unlabelled metric `name` in Prometheus `text`, 0 when it is not there yet.
pub fn metric_in(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}
