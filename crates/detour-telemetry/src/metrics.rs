//! Prometheus metrics: a per-process registry, the gRPC server RED metrics and the
//! HTTP endpoint that exposes them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::TelemetryError;

/// Content type of the OpenMetrics text exposition served on `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The process's metric registry.
///
/// Register everything while building, then wrap it in an `Arc` for [`serve_metrics`]:
/// registration needs `&mut`, recording does not (metric handles are shared atomics).
#[derive(Debug, Default)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Renders all registered metrics in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, TelemetryError> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

type DurationFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 1 ms to ~16 s: covers a cache hit up to a call stuck behind a slow dependency.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// gRPC server RED metrics, labelled only by method path and status code.
///
/// Cheap to clone; all clones record into the same series.
#[derive(Clone, Debug)]
pub struct GrpcMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: DurationFamily,
}

impl GrpcMetrics {
    /// Creates the metrics and registers them as `grpc_server_requests_total{method, code}`
    /// and `grpc_server_request_duration_seconds{method}`.
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = DurationFamily::new_with_constructor(duration_histogram);
        registry.register(
            "grpc_server_requests",
            "gRPC requests handled, by method and gRPC status code",
            requests.clone(),
        );
        registry.register_with_unit(
            "grpc_server_request_duration",
            "Time until the response headers of a gRPC request were ready",
            Unit::Seconds,
            duration.clone(),
        );
        Self { requests, duration }
    }

    /// Records one finished request. `method` is the request path (`/pkg.Service/Method`).
    pub fn record(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        let method = method.to_owned();
        self.requests.get_or_create(&RequestLabels { method: method.clone(), code: code_label(code) }).inc();
        self.duration.get_or_create(&MethodLabels { method }).observe(elapsed.as_secs_f64());
    }
}

fn code_label(code: tonic::Code) -> String {
    (code as i32).to_string()
}

/// Serves `GET /metrics` (OpenMetrics text) and `GET /healthz` on `listener` until
/// `shutdown` resolves.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(metrics);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "failed to encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// Minimal HTTP/1.0 GET so the test needs no HTTP client dependency.
    async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
    }

    #[tokio::test]
    async fn serves_metrics_and_health_until_shutdown() {
        let mut metrics = Metrics::new();
        let grpc = GrpcMetrics::register(metrics.registry_mut());
        let orders = Counter::<u64>::default();
        metrics.registry_mut().register("detour_orders", "Orders seen", orders.clone());
        let metrics = Arc::new(metrics);

        // Recording after the registry is shared must show up: handles are shared.
        orders.inc_by(3);
        grpc.record("/detour.Test/Call", tonic::Code::NotFound, Duration::from_millis(3));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_metrics(listener, metrics, async {
            let _ = stop_rx.await;
        }));

        let response = http_get(addr, "/metrics").await;
        assert!(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.to_ascii_lowercase().contains(&format!("content-type: {OPENMETRICS_CONTENT_TYPE}")));
        assert!(response.contains("detour_orders_total 3"), "{response}");
        assert!(
            response.contains(r#"grpc_server_requests_total{method="/detour.Test/Call",code="5"} 1"#),
            "{response}"
        );
        assert!(
            response.contains(r#"grpc_server_request_duration_seconds_count{method="/detour.Test/Call"} 1"#),
            "{response}"
        );
        assert!(response.trim_end().ends_with("# EOF"), "{response}");

        let health = http_get(addr, "/healthz").await;
        assert!(health.contains(" 200 "), "{health}");
        assert!(health.ends_with("\r\n\r\nok"), "{health}");

        stop_tx.send(()).expect("server still running");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops after shutdown resolves")
            .expect("task")
            .expect("serve result");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed");
    }
}
