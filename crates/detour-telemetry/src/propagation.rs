//! W3C trace-context propagation through gRPC metadata, HTTP headers and the string
//! maps that event envelopes carry.
//!
//! Everything goes through the global propagator that [`crate::init`] installs, so a
//! process that never called `init` propagates nothing rather than something inconsistent.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Writes the current span's trace context into outgoing gRPC metadata.
pub fn inject_grpc<T>(request: &mut tonic::Request<T>) {
    inject_metadata(request.metadata_mut());
}

fn inject_metadata(metadata: &mut MetadataMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut MetadataInjector(metadata));
    });
}

/// A tonic client interceptor that adds `traceparent`/`tracestate` to every call:
/// `Client::with_interceptor(channel, TraceContextInterceptor)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        inject_grpc(&mut request);
        Ok(request)
    }
}

/// Writes the current span's trace context into `map` (e.g. an event envelope's headers).
pub fn inject_map(map: &mut HashMap<String, String>) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.inject_context(&cx, map));
}

/// Reads a trace context written by [`inject_map`]; empty when `map` carries none.
pub fn extract_map(map: &HashMap<String, String>) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(map))
}

/// Makes the trace context carried in `map` the OpenTelemetry parent of `span`.
///
/// Call it before the span is first entered. Without the OpenTelemetry layer, or for
/// a disabled span, this does nothing: the consumer simply starts a new trace.
pub fn set_parent(span: &tracing::Span, map: &HashMap<String, String>) {
    let cx = extract_map(map);
    if cx.span().span_context().is_valid() {
        // The error cases are exactly the "does nothing" ones documented above.
        let _ = span.set_parent(cx);
    }
}

/// The current span's trace id as 32 lowercase hex digits, if it belongs to a trace.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span_ref = cx.span();
    let span_context = span_ref.span_context();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

/// Reads the trace context from an incoming request's HTTP headers.
pub(crate) fn extract_headers(headers: &http::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)))
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // Propagator keys and values are ASCII by the W3C spec; anything else is a
        // malformed context that is better dropped than sent.
        if let (Ok(key), Ok(value)) =
            (MetadataKey::from_bytes(key.as_bytes()), MetadataValue::try_from(value.as_str()))
        {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use opentelemetry::trace::TracerProvider as _;

    fn with_otel_subscriber<R>(f: impl FnOnce() -> R) -> R {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn map_round_trip_preserves_the_trace_id() {
        with_otel_subscriber(|| {
            let producer = tracing::info_span!("produce");
            let (sent_trace_id, map) = producer.in_scope(|| {
                let mut map = HashMap::new();
                inject_map(&mut map);
                (current_trace_id(), map)
            });
            let sent_trace_id = sent_trace_id.expect("producer span has a trace id");
            let traceparent = map.get("traceparent").expect("traceparent injected");
            assert!(traceparent.contains(&sent_trace_id), "{traceparent} carries {sent_trace_id}");

            let extracted = extract_map(&map);
            assert_eq!(extracted.span().span_context().trace_id().to_string(), sent_trace_id);
            assert!(extracted.span().span_context().is_remote());

            // A consumer span in a fresh root continues the producer's trace.
            let consumer = tracing::info_span!(parent: None, "consume");
            set_parent(&consumer, &map);
            let received = consumer.in_scope(current_trace_id);
            assert_eq!(received.as_deref(), Some(sent_trace_id.as_str()));
        });
    }

    #[test]
    fn empty_map_leaves_the_span_in_its_own_trace() {
        with_otel_subscriber(|| {
            let span = tracing::info_span!("consume");
            set_parent(&span, &HashMap::new());
            let id = span.in_scope(current_trace_id).expect("span has its own trace");
            assert_eq!(id.len(), 32);
            assert!(!extract_map(&HashMap::new()).span().span_context().is_valid());
        });
    }

    #[test]
    fn no_trace_id_outside_a_span() {
        with_otel_subscriber(|| assert_eq!(current_trace_id(), None));
    }

    #[test]
    fn inject_grpc_writes_traceparent_metadata() {
        with_otel_subscriber(|| {
            let span = tracing::info_span!("call");
            let _entered = span.enter();
            let mut request = tonic::Request::new(());
            inject_grpc(&mut request);
            let traceparent = request.metadata().get("traceparent").expect("traceparent set");
            let trace_id = current_trace_id().expect("trace id");
            assert!(traceparent.to_str().expect("ascii").contains(&trace_id));

            let mut intercepted = tonic::Request::new(());
            intercepted = tonic::service::Interceptor::call(&mut TraceContextInterceptor, intercepted)
                .expect("interceptor never rejects");
            assert_eq!(intercepted.metadata().get("traceparent"), Some(traceparent));
        });
    }
}
