//! `init` with an OTLP endpoint against an in-process fake collector: spans reach it
//! over gRPC with the service's `service.name`, and `TelemetryGuard::shutdown` flushes.
//!
//! Its own test binary because `init` installs the process-wide subscriber.

use std::time::Duration;

use detour_telemetry::{LogFormat, TelemetrySettings, current_trace_id, init};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use tokio::sync::mpsc;

struct FakeCollector {
    received: mpsc::UnboundedSender<ExportTraceServiceRequest>,
}

#[tonic::async_trait]
impl TraceService for FakeCollector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.received.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn service_name(request: &ExportTraceServiceRequest) -> Option<String> {
    request.resource_spans.iter().filter_map(|rs| rs.resource.as_ref()).flat_map(|r| &r.attributes).find_map(
        |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(name)) if kv.key == "service.name" => Some(name.clone()),
            _ => None,
        },
    )
}

fn span_trace_ids(request: &ExportTraceServiceRequest, name: &str) -> Vec<String> {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .filter(|span| span.name == name)
        .map(|span| span.trace_id.iter().map(|byte| format!("{byte:02x}")).collect())
        .collect()
}

// Multi-thread: the batch exporter's own thread needs runtime workers free to drive
// the tonic channel while the test thread blocks in shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_and_shutdown_flushes_them() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let collector = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(FakeCollector { received: tx }))
            .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), async {
                let _ = stop_rx.await;
            }),
    );

    let guard = init(&TelemetrySettings {
        service_name: "otlp-test".to_owned(),
        log_format: LogFormat::Json,
        // Quiet: the fmt layer writes to the real stdout, past the test harness capture.
        log_filter: "warn,otlp_export=info".to_owned(),
        otlp_endpoint: Some(format!("http://{addr}")),
    })
    .expect("init");
    assert!(guard.is_active());

    let trace_id = {
        let span = tracing::info_span!("otlp.test.unit_of_work");
        span.in_scope(current_trace_id).expect("trace id while the span is current")
    };

    // The batch processor would hold the span for seconds; shutdown must flush it now.
    guard.shutdown().expect("shutdown flushes");

    let request = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("collector received an export before the timeout")
        .expect("collector channel open");
    assert_eq!(service_name(&request).as_deref(), Some("otlp-test"));
    assert_eq!(span_trace_ids(&request, "otlp.test.unit_of_work"), vec![trace_id]);

    stop_tx.send(()).expect("collector running");
    let _ = tokio::time::timeout(Duration::from_secs(5), collector).await;
}
