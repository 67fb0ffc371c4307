//! GrpcTraceLayer on a real tonic server over loopback: the server span must continue
//! the caller's W3C trace, and every call must land in the RED metrics.

use std::time::Duration;

use detour_telemetry::{GrpcMetrics, GrpcTraceLayer, Metrics, TraceContextInterceptor, current_trace_id};
use opentelemetry::Value;
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tonic::transport::{Channel, Endpoint, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;

const CHECK: &str = "/grpc.health.v1.Health/Check";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| &kv.value)
}

/// Server spans are exported when the server drops the request future, which may be
/// just after the client has its response; waits up to 2 s for `count` of them.
async fn server_spans(exporter: &InMemorySpanExporter, count: usize) -> Vec<SpanData> {
    let mut spans = Vec::new();
    for _ in 0..200 {
        spans = exporter
            .get_finished_spans()
            .unwrap_or_default()
            .into_iter()
            .filter(|span| span.name == "grpc.request")
            .collect();
        if spans.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    spans
}

fn find_span<'a>(spans: &'a [SpanData], trace_id: &str) -> Option<&'a SpanData> {
    spans.iter().find(|span| span.span_context.trace_id().to_string() == trace_id)
}

// Current-thread runtime: the server tasks run on this thread, so the thread-local
// subscriber set below sees their spans.
#[tokio::test]
async fn server_span_continues_the_callers_trace_and_is_counted() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("grpc-layer-test")));
    let _subscriber = tracing::subscriber::set_default(subscriber);

    let mut metrics = Metrics::new();
    let grpc_metrics = GrpcMetrics::register(metrics.registry_mut());
    let (_reporter, health) = tonic_health::server::health_reporter();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::builder()
            .layer(GrpcTraceLayer::new(grpc_metrics))
            .add_service(health)
            .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), async {
                let _ = stop_rx.await;
            }),
    );

    let channel: Channel =
        Endpoint::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
    let mut client = HealthClient::new(channel.clone());

    // 1. A caller this process knows nothing about: only the header can carry its trace id.
    let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01");
    request.metadata_mut().insert("traceparent", traceparent.parse().expect("ascii"));
    client.check(request).await.expect("health check");

    // 2. An error answered trailers-only, so its status is in the response headers.
    let status = client
        .check(HealthCheckRequest { service: "not.Registered".to_owned() })
        .await
        .expect_err("unknown service is NOT_FOUND");
    assert_eq!(status.code(), tonic::Code::NotFound);

    // 3. A caller inside this process, propagating through the interceptor.
    let caller = tracing::info_span!("caller");
    let caller_trace_id = caller.in_scope(current_trace_id).expect("caller span has a trace id");
    let mut traced_client = HealthClient::with_interceptor(channel.clone(), TraceContextInterceptor);
    traced_client
        .check(HealthCheckRequest { service: String::new() })
        .instrument(caller.clone())
        .await
        .expect("traced health check");
    drop(caller);

    // 4. A method no service implements: its client-chosen path must not become a label.
    let mut raw = tonic::client::Grpc::new(channel.clone());
    raw.ready().await.expect("ready");
    let unknown = raw
        .unary::<_, tonic_health::pb::HealthCheckResponse, _>(
            tonic::Request::new(HealthCheckRequest::default()),
            http::uri::PathAndQuery::from_static("/attacker.Chosen/Path123"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect_err("no such method");
    assert_eq!(unknown.code(), tonic::Code::Unimplemented);

    let spans = server_spans(&exporter, 4).await;
    assert_eq!(spans.len(), 4, "one server span per call: {spans:#?}");

    let server_span = find_span(&spans, TRACE_ID).expect("server span continues the header's trace");
    assert_eq!(server_span.parent_span_id.to_string(), CALLER_SPAN_ID);
    assert!(server_span.parent_span_is_remote);
    assert_eq!(server_span.span_kind, SpanKind::Server);
    assert_eq!(attribute(server_span, "rpc.method"), Some(&Value::from(CHECK)));
    assert_eq!(attribute(server_span, "rpc.grpc.status_code"), Some(&Value::I64(0)));

    let not_found: Vec<_> =
        spans.iter().filter(|span| attribute(span, "rpc.grpc.status_code") == Some(&Value::I64(5))).collect();
    assert_eq!(not_found.len(), 1, "{spans:#?}");
    assert_ne!(not_found[0].span_context.trace_id().to_string(), TRACE_ID, "no header, fresh trace");

    let propagated =
        find_span(&spans, &caller_trace_id).expect("server span continues the caller span's trace");
    assert_eq!(attribute(propagated, "rpc.grpc.status_code"), Some(&Value::I64(0)));

    let encoded = metrics.encode().expect("encode");
    for line in [
        format!(r#"grpc_server_requests_total{{method="{CHECK}",code="0"}} 2"#),
        format!(r#"grpc_server_requests_total{{method="{CHECK}",code="5"}} 1"#),
        r#"grpc_server_requests_total{method="other",code="12"} 1"#.to_owned(),
        format!(r#"grpc_server_request_duration_seconds_count{{method="{CHECK}"}} 3"#),
    ] {
        assert!(encoded.lines().any(|l| l == line), "missing {line:?} in\n{encoded}");
    }
    assert!(!encoded.contains("Path123"), "client-chosen path leaked into labels:\n{encoded}");

    drop((client, traced_client, raw, channel));
    stop_tx.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .expect("server task")
        .expect("server result");
}
