//! Telemetry shared by every Detour service: structured logs, OpenTelemetry traces
//! propagated with W3C trace context across gRPC calls and event envelopes, and
//! Prometheus RED metrics for the gRPC servers.
//!
//! Start-up order in a service: [`init`] first (keep the guard), build a [`Metrics`]
//! and register [`GrpcMetrics`] plus any service metrics, wrap it in an `Arc`, serve
//! it with [`serve_metrics`], and put [`GrpcTraceLayer`] on the tonic server. Call
//! [`TelemetryGuard::shutdown`] last, so spans produced while draining still leave.

mod error;
mod layer;
mod metrics;
mod propagation;

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use error::TelemetryError;
pub use layer::{GrpcTraceFuture, GrpcTraceLayer, GrpcTraceService};
pub use metrics::{GrpcMetrics, Metrics, OPENMETRICS_CONTENT_TYPE, serve_metrics};
pub use propagation::{
    TraceContextInterceptor, current_trace_id, extract_map, inject_grpc, inject_map, set_parent,
};

/// Bounds how long the last flush may hold up process exit when the collector is slow or gone.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How log lines are rendered (`text` or `json` in configuration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, for local runs.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// What [`init`] needs to know; services fill it from their configuration.
#[derive(Clone, Debug)]
pub struct TelemetrySettings {
    /// Reported as the OpenTelemetry resource attribute `service.name`.
    pub service_name: String,
    pub log_format: LogFormat,
    /// An `EnvFilter` directive such as `info,sqlx=warn`.
    pub log_filter: String,
    /// OTLP/gRPC collector endpoint, e.g. `http://otel-collector:4317`; `None` exports no spans.
    pub otlp_endpoint: Option<String>,
}

/// Keeps the tracer provider that [`init`] installed.
///
/// Call [`TelemetryGuard::shutdown`] as the last step of the shutdown sequence. Dropping
/// the guard without it makes a best-effort shutdown that never panics.
#[derive(Debug)]
#[must_use = "dropping the guard shuts the tracer provider down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// A guard that owns nothing, as returned when telemetry was already installed.
    fn inert() -> Self {
        Self { provider: None }
    }

    /// Whether this guard owns the process's tracer provider (false for a repeated `init`).
    pub fn is_active(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes buffered spans to the collector and shuts the tracer provider down.
    ///
    /// Spans recorded after this are dropped, so call it once everything else has stopped.
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        match self.provider.take() {
            Some(provider) => shutdown_provider(&provider).map_err(TelemetryError::TracerShutdown),
            None => Ok(()),
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Nowhere to report to at this point: the subscriber that would log it is
            // the one being torn down.
            let _ = shutdown_provider(&provider);
        }
    }
}

fn shutdown_provider(provider: &SdkTracerProvider) -> opentelemetry_sdk::error::OTelSdkResult {
    let shutdown = || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
    // The batch processor's thread exports through a tonic channel whose I/O runs on
    // the Tokio runtime; blocking a worker in place lets the other workers drive it.
    // On a current-thread runtime the export can at worst run into the timeout.
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            // `block_in_place` still panics in contexts the handle cannot reveal (a
            // multi-thread handle entered from inside a current-thread runtime); the
            // guard's Drop must not panic, so fall back to blocking plainly.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tokio::task::block_in_place(shutdown)))
                .unwrap_or_else(|_| shutdown())
        }
        _ => shutdown(),
    }
}

/// Installs the process-wide tracing subscriber and the W3C trace-context propagator.
///
/// The subscriber always carries an OpenTelemetry layer, so trace ids exist and are
/// propagated (logs, audit records, downstream calls) even when nothing is exported;
/// spans leave the process, through a batch OTLP/gRPC exporter, only when
/// `otlp_endpoint` is set. With an endpoint this must be called inside a Tokio runtime.
///
/// A second call in the same process (tests, several services in one `detour dev`
/// process) keeps the first subscriber and returns an inert guard.
pub fn init(settings: &TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    let filter = EnvFilter::try_new(&settings.log_filter)
        .map_err(|source| TelemetryError::InvalidLogFilter { filter: settings.log_filter.clone(), source })?;

    let provider = build_tracer_provider(settings)?;
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("detour-telemetry"))
        .with_filter(transport_internals_off());

    // The log filter decides what is printed, not what is traced: a quiet log level must not
    // take trace ids away from audit records and event envelopes.
    let ansi = std::io::stdout().is_terminal();
    let log_layer = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_ansi(ansi).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_current_span(true).boxed(),
    }
    .with_filter(filter);

    // Unconditional and idempotent: a repeated init must still leave W3C propagation in place.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let installed = tracing_subscriber::registry().with(otel_layer).with(log_layer).try_init();

    match installed {
        Ok(()) => Ok(TelemetryGuard { provider: Some(provider) }),
        Err(error) => {
            // The provider built for this call has no subscriber feeding it; release
            // its exporter now rather than leaving a batch thread behind.
            let _ = shutdown_provider(&provider);
            tracing::debug!(%error, "telemetry already initialised; keeping the existing subscriber");
            Ok(TelemetryGuard::inert())
        }
    }
}

/// The exporter talks to the collector through these crates: turning their spans into
/// OpenTelemetry spans at a debug filter would export the export itself, forever.
/// They still reach the logs.
fn transport_internals_off() -> Targets {
    [
        "h2",
        "hyper",
        "hyper_util",
        "tonic",
        "tower",
        "opentelemetry",
        "opentelemetry_sdk",
        "opentelemetry_otlp",
    ]
    .into_iter()
    // Spans below INFO (per-query, per-frame) would multiply the trace volume for little insight.
    .fold(Targets::new().with_default(LevelFilter::INFO), |targets, target| {
        targets.with_target(target, LevelFilter::OFF)
    })
}

fn build_tracer_provider(settings: &TelemetrySettings) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = Resource::builder().with_service_name(settings.service_name.clone()).build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = &settings.otlp_endpoint else {
        return Ok(builder.build());
    };
    // The tonic channel spawns its worker on the current runtime when built; without
    // one it would panic instead of failing.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(TelemetryError::NoTokioRuntime);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
        .map_err(|source| TelemetryError::ExporterBuild { endpoint: endpoint.clone(), source })?;
    Ok(builder.with_batch_exporter(exporter).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(filter: &str) -> TelemetrySettings {
        TelemetrySettings {
            service_name: "telemetry-test".to_owned(),
            log_format: LogFormat::Json,
            log_filter: filter.to_owned(),
            otlp_endpoint: None,
        }
    }

    #[test]
    fn invalid_log_filter_is_reported_with_the_directive() {
        let err = init(&settings("info,sqlx=notalevel")).expect_err("filter must be rejected");
        match &err {
            TelemetryError::InvalidLogFilter { filter, .. } => assert_eq!(filter, "info,sqlx=notalevel"),
            other => panic!("unexpected error: {other:?}"),
        }
        assert!(err.to_string().contains("info,sqlx=notalevel"), "message names the filter: {err}");
    }

    #[test]
    fn otlp_endpoint_outside_a_runtime_is_an_error_not_a_panic() {
        let mut s = settings("info");
        s.otlp_endpoint = Some("http://127.0.0.1:4317".to_owned());
        let err = build_tracer_provider(&s).expect_err("needs a runtime");
        assert!(matches!(err, TelemetryError::NoTokioRuntime), "{err:?}");
    }

    // The only test in this binary that touches the global subscriber.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn second_init_is_harmless() {
        let first = init(&settings("info,sqlx=warn")).expect("first init");
        let mut again = settings("debug");
        again.log_format = LogFormat::Text;
        again.otlp_endpoint = Some("http://127.0.0.1:4317".to_owned());
        let second = init(&again).expect("second init must not fail");
        assert!(first.is_active());
        assert!(!second.is_active());
        second.shutdown().expect("inert shutdown");
        first.shutdown().expect("shutdown");
    }
}
