use opentelemetry_sdk::error::OTelSdkError;

/// What went wrong while setting telemetry up, shutting it down or rendering metrics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    #[error("invalid log filter directive {filter:?}: {source}")]
    InvalidLogFilter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },

    #[error("failed to build the OTLP span exporter for {endpoint:?}: {source}")]
    ExporterBuild {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },

    #[error("the OTLP/gRPC exporter needs a Tokio runtime: call init from inside one")]
    NoTokioRuntime,

    #[error("failed to flush and shut down the tracer provider: {0}")]
    TracerShutdown(#[source] OTelSdkError),

    #[error("failed to encode metrics: {0}")]
    EncodeMetrics(#[from] std::fmt::Error),
}
