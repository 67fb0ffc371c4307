//! Server-side tower layer: continues the caller's trace and records RED metrics.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::trace::TraceContextExt as _;
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::metrics::GrpcMetrics;
use crate::propagation::extract_headers;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Future returned by [`GrpcTraceService`].
pub type GrpcTraceFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// Method label for requests the server has no handler for, and for any path outside the
/// known methods when the layer was given them: paths come from the client, and a caller
/// refused before routing (no token, say) would otherwise mint new time series.
const UNKNOWN_METHOD: &str = "other";

/// Tower layer for a tonic server: `Server::builder().layer(GrpcTraceLayer::new(grpc_metrics))`.
///
/// Each request runs inside a `grpc.request` span whose OpenTelemetry parent is the
/// W3C trace context from the request headers, and is counted and timed in
/// [`GrpcMetrics`].
#[derive(Clone, Debug)]
pub struct GrpcTraceLayer {
    metrics: GrpcMetrics,
    known: Option<Arc<HashSet<String>>>,
}

impl GrpcTraceLayer {
    pub fn new(metrics: GrpcMetrics) -> Self {
        Self { metrics, known: None }
    }

    /// Labels metrics only with these paths (`/package.Service/Method`); every other path is
    /// counted as `other`, whatever its status.
    pub fn with_known_methods(mut self, paths: impl IntoIterator<Item = String>) -> Self {
        self.known = Some(Arc::new(paths.into_iter().collect()));
        self
    }
}

impl<S> Layer<S> for GrpcTraceLayer {
    type Service = GrpcTraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTraceService { inner, metrics: self.metrics.clone(), known: self.known.clone() }
    }
}

/// The service produced by [`GrpcTraceLayer`].
#[derive(Clone, Debug)]
pub struct GrpcTraceService<S> {
    inner: S,
    metrics: GrpcMetrics,
    known: Option<Arc<HashSet<String>>>,
}

impl<S, B, ResBody> Service<http::Request<B>> for GrpcTraceService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ResBody: 'static,
{
    type Response = http::Response<ResBody>;
    type Error = BoxError;
    type Future = GrpcTraceFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let span = tracing::info_span!(
            "grpc.request",
            rpc.system = "grpc",
            rpc.method = %method,
            otel.kind = "server",
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let parent = extract_headers(request.headers());
        if parent.span().span_context().is_valid() {
            // Fails only without the OpenTelemetry layer or for a filtered-out span,
            // where there is no OpenTelemetry span to parent anyway.
            let _ = span.set_parent(parent);
        }

        let known = self.known.as_ref().is_none_or(|k| k.contains(&method));
        let outcome = Outcome {
            metrics: self.metrics.clone(),
            method,
            known,
            span: span.clone(),
            start: Instant::now(),
            done: false,
        };

        // The instance that was polled ready must serve this call; leave a fresh clone behind.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let response = span.in_scope(|| inner.call(request));

        Box::pin(
            async move {
                let mut outcome = outcome;
                let result = response.await.map_err(Into::into);
                let code = match &result {
                    Ok(response) => response_code(response),
                    Err(error) => error_code(error),
                };
                outcome.finish(code);
                result
            }
            .instrument(span),
        )
    }
}

/// Records the result of one request exactly once, including when the request future
/// is dropped early (client cancelled, deadline hit outside this layer).
struct Outcome {
    metrics: GrpcMetrics,
    method: String,
    /// Whether `method` may be a label (see [`GrpcTraceLayer::with_known_methods`]).
    known: bool,
    span: tracing::Span,
    start: Instant,
    done: bool,
}

impl Outcome {
    fn finish(&mut self, code: Code) {
        self.done = true;
        self.span.record("rpc.grpc.status_code", code as i64);
        if is_server_error(code) {
            self.span.record("otel.status_code", "ERROR");
        }
        let method =
            if code == Code::Unimplemented || !self.known { UNKNOWN_METHOD } else { self.method.as_str() };
        self.metrics.record(method, code, self.start.elapsed());
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Code::Cancelled);
        }
    }
}

/// The gRPC status of a response whose headers are ready. A failed call answered
/// "trailers-only" carries `grpc-status` in the headers; a 200 without it is treated as
/// OK since the real status only arrives in the trailers, after the body (streams).
fn response_code<B>(response: &http::Response<B>) -> Code {
    if let Some(status) = response.headers().get("grpc-status") {
        return Code::from_bytes(status.as_bytes());
    }
    http_status_to_code(response.status())
}

/// The gRPC spec's mapping for responses that carry no `grpc-status` at all.
fn http_status_to_code(status: http::StatusCode) -> Code {
    match status.as_u16() {
        200 => Code::Ok,
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

fn error_code(error: &BoxError) -> Code {
    error.downcast_ref::<tonic::Status>().map_or(Code::Unknown, tonic::Status::code)
}

/// Server span status per the OpenTelemetry gRPC conventions: client mistakes such as
/// NOT_FOUND are not errors of this server.
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, grpc_status: Option<&str>) -> http::Response<()> {
        let mut builder = http::Response::builder().status(status);
        if let Some(code) = grpc_status {
            builder = builder.header("grpc-status", code);
        }
        builder.body(()).expect("valid response")
    }

    #[test]
    fn status_code_from_response() {
        assert_eq!(response_code(&response(200, None)), Code::Ok);
        assert_eq!(response_code(&response(200, Some("5"))), Code::NotFound);
        assert_eq!(response_code(&response(200, Some("garbage"))), Code::Unknown);
        assert_eq!(response_code(&response(503, None)), Code::Unavailable);
        assert_eq!(response_code(&response(404, None)), Code::Unimplemented);
        assert_eq!(response_code(&response(500, None)), Code::Unknown);
    }

    #[test]
    fn status_code_from_error() {
        let status: BoxError = Box::new(tonic::Status::deadline_exceeded("slow"));
        assert_eq!(error_code(&status), Code::DeadlineExceeded);
        let other: BoxError = "boom".into();
        assert_eq!(error_code(&other), Code::Unknown);
    }
}
