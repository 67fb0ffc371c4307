//! W3C trace context carried in [`Envelope::trace_context`], so a consumer's span continues the
//! trace of the request that produced the event.
//!
//! The W3C propagator is used directly rather than the process-wide one, because the envelope
//! field is defined as W3C `traceparent`/`tracestate` whatever the telemetry set-up is.
//!
//! [`Envelope::trace_context`]: detour_proto::events::v1::Envelope::trace_context

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Writes the current tracing span's context into `carrier`. Leaves `carrier` alone when there
/// is no valid OpenTelemetry span (no telemetry layer installed, or outside any span), so a
/// context the caller put there is kept.
pub(crate) fn inject_current(carrier: &mut HashMap<String, String>) {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, carrier);
    }
}

/// The remote parent context stored in `carrier` (empty when there is none).
pub(crate) fn extract(carrier: &HashMap<String, String>) -> Context {
    TraceContextPropagator::new().extract(carrier)
}
