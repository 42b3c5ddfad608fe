//! Logs, request ids and metrics.
//!
//! Every request gets an id (the client's `X-Request-Id` when it is sane, a fresh UUIDv7
//! otherwise) that is returned in the response and attached to every log line of the request.
//! Each request is logged once when it finishes, at `info`; successes of routes that mark
//! themselves [`RoutineRequest`] (device traffic) at `debug`.
//! Request counts and latency histograms are kept per method, matched route and status, and
//! served in Prometheus text format at `/metrics`.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use tracing::Instrument;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::Config;

/// The request id header.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global log subscriber: JSON lines (or human-readable with
/// `STRIDE_LOG_FORMAT=pretty`), filtered by `STRIDE_LOG`.
pub fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // A second initialisation (tests start several apps in one process) is harmless.
    let _ = if config.log_format == "pretty" {
        registry.with(fmt::layer().with_target(false)).try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()
    };
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// The process's metrics registry and the HTTP metrics.
pub struct Metrics {
    registry: std::sync::Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("stride");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            latency.clone(),
        );
        Self {
            registry: std::sync::Mutex::new(registry),
            requests,
            latency,
        }
    }
}

impl Metrics {
    /// Registers a service's own metric.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.register(name, help, metric);
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = encode(&mut text, &registry);
        }
        text
    }
}

/// A response extension that marks a request as routine device traffic: when it succeeds
/// (status below 400), its `request finished` line is logged at `debug` instead of `info`.
///
/// For routes that every device calls every few seconds, such as telemetry ingest, where a
/// line per request would be nearly all of the log (a thousand devices sending a batch a
/// second write 86 million lines a day). Failures are still logged at `info`, and `/metrics`
/// counts and times every request either way.
#[derive(Debug, Clone, Copy)]
pub struct RoutineRequest;

/// Marks a response [`RoutineRequest`]; for a route layer:
/// `.route_layer(axum::middleware::map_response(observability::routine))`.
pub async fn routine(mut response: Response) -> Response {
    response.extensions_mut().insert(RoutineRequest);
    response
}

/// The request id of the current request, as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let sane = !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    sane.then(|| text.to_owned())
}

/// Middleware: request id, one log line per request, request metrics.
pub async fn observe(metrics: Arc<Metrics>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = request.method().as_str().to_owned();
    // Labels use the route template, never the raw path, so ids do not explode cardinality.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    metrics
        .latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    let routine = status < 400 && response.extensions().get::<RoutineRequest>().is_some();
    span.in_scope(|| {
        if routine {
            tracing::debug!(status, latency_ms, "request finished");
        } else {
            tracing::info!(status, latency_ms, "request finished");
        }
    });
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::{Router, body::Body, http::StatusCode, routing::post};
    use tower::ServiceExt as _;

    use super::*;

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The `request finished` lines, with their level, that the log filter `filter` lets
    /// through while `requests` (path, status the route answers) are served by a router
    /// whose `/routine` route marks its responses as routine.
    fn finished_lines(filter: &str, requests: &[(&str, StatusCode)]) -> Vec<String> {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new(filter))
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(move || writer.clone()),
            );
        let answer = |request: Request| async move {
            request
                .headers()
                .get("x-answer")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u16>().ok())
                .and_then(|code| StatusCode::from_u16(code).ok())
                .unwrap_or(StatusCode::OK)
        };
        let metrics = Arc::new(Metrics::default());
        let app = Router::new()
            .route("/routine", post(answer))
            .route_layer(axum::middleware::map_response(routine))
            .route("/other", post(answer))
            .layer(axum::middleware::from_fn(move |request, next| {
                observe(metrics.clone(), request, next)
            }));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(async {
                for (path, status) in requests {
                    let request = axum::http::Request::post(*path)
                        .header("x-answer", status.as_u16().to_string())
                        .body(Body::empty())
                        .expect("request");
                    let response = app.clone().oneshot(request).await.expect("response");
                    assert_eq!(response.status(), *status);
                }
            });
        });
        let text =
            String::from_utf8(captured.0.lock().expect("log buffer").clone()).expect("utf-8 log");
        text.lines()
            .filter(|line| line.contains("request finished"))
            .map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
                format!("{} {}", entry["level"], entry["status"])
            })
            .collect()
    }

    #[test]
    fn routine_successes_are_left_out_of_the_info_log_and_their_failures_kept() {
        let requests = [
            ("/routine", StatusCode::ACCEPTED),
            ("/routine", StatusCode::BAD_REQUEST),
            ("/routine", StatusCode::SERVICE_UNAVAILABLE),
            ("/other", StatusCode::OK),
        ];
        assert_eq!(
            finished_lines("info", &requests),
            [r#""INFO" 400"#, r#""INFO" 503"#, r#""INFO" 200"#],
            "the routine 202 is left out at info, everything else logged"
        );
        assert_eq!(
            finished_lines("info,stride_platform::observability=debug", &requests),
            [
                r#""DEBUG" 202"#,
                r#""INFO" 400"#,
                r#""INFO" 503"#,
                r#""INFO" 200"#
            ],
            "the filter the README gives shows the routine 202 at debug"
        );
    }

    #[test]
    fn request_ids_with_odd_characters_or_length_are_replaced() {
        assert_eq!(
            sane_request_id(&HeaderValue::from_static("abc-123_x.y:z")),
            Some("abc-123_x.y:z".into())
        );
        assert_eq!(sane_request_id(&HeaderValue::from_static("a b")), None);
        assert_eq!(sane_request_id(&HeaderValue::from_static("")), None);
        let long = "a".repeat(129);
        assert_eq!(
            sane_request_id(&HeaderValue::from_str(&long).expect("ascii")),
            None
        );
    }

    #[test]
    fn rendered_metrics_hold_request_counts_per_route() {
        let metrics = Metrics::default();
        metrics
            .requests
            .get_or_create(&RequestLabels {
                method: "GET".into(),
                route: "/v1/me".into(),
                status: 200,
            })
            .inc();
        let text = metrics.render();
        assert!(
            text.contains(
                r#"stride_http_requests_total{method="GET",route="/v1/me",status="200"} 1"#
            ),
            "{text}"
        );
    }
}
