//! The protections every hosted service gets, through the host's real tonic server on a loopback
//! port: the request message size limit (gRPC and gRPC-Web), the concurrency limit with load
//! shedding, and the HTTP/2 stream limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use detour_server::Settings;
use detour_server::host::serve_grpc;
use detour_telemetry::GrpcMetrics;
use prometheus_client::registry::Registry;
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_prost::ProstCodec;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// The host's gRPC server around `routes`, until dropped.
struct Host {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Host {
    async fn start(settings: Settings, routes: tonic::service::Routes) -> Host {
        Settings { auth_dev_issuer: true, ..settings.clone() }.validate().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = GrpcMetrics::register(&mut Registry::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve_grpc(
            &settings,
            routes,
            metrics,
            None,
            listener,
            stop.clone().cancelled_owned(),
        ));
        Host { addr, stop, task }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.unwrap()
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.unwrap().unwrap().unwrap();
    }
}

/// A health service that counts the checks that reach it.
#[derive(Clone, Default)]
struct CountingHealth {
    checks: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Health for CountingHealth {
    async fn check(&self, _: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(HealthCheckResponse { status: ServingStatus::Serving as i32 }))
    }

    type WatchStream = futures::stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

fn health_routes(health: &CountingHealth) -> tonic::service::Routes {
    tonic::service::Routes::new(HealthServer::new(health.clone()))
}

/// A health check whose encoded request message is exactly `len` bytes.
fn check_of_len(len: usize) -> HealthCheckRequest {
    let mut request = HealthCheckRequest { service: String::new() };
    // One byte of tag, then the length as a varint, then the name.
    let mut name_len = len - 2;
    while 1 + prost::encoding::encoded_len_varint(name_len as u64) + name_len > len {
        name_len -= 1;
    }
    request.service = "x".repeat(name_len);
    assert_eq!(request.encoded_len(), len);
    request
}

fn settings() -> Settings {
    Settings { log: "warn".into(), ..Settings::default() }
}

#[tokio::test]
async fn an_oversized_request_is_refused_with_resource_exhausted_and_never_reaches_the_service() {
    let health = CountingHealth::default();
    let host =
        Host::start(Settings { max_request_bytes: 64 * KIB, ..settings() }, health_routes(&health)).await;
    let mut client = HealthClient::new(host.channel().await);

    let status = client.check(check_of_len(64 * KIB + 1)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("65536"), "{status:?}");
    // Far beyond the limit, too: refused on its length prefix, whatever follows.
    let status = client.check(check_of_len(3 * MIB)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(health.checks.load(Ordering::SeqCst), 0, "an oversized request reached the service");

    // The connection is still good for the next call.
    client.check(check_of_len(100)).await.unwrap();
    assert_eq!(health.checks.load(Ordering::SeqCst), 1);
    host.stop().await;
}

#[tokio::test]
async fn a_request_under_the_limit_passes() {
    let health = CountingHealth::default();
    let host =
        Host::start(Settings { max_request_bytes: 64 * KIB, ..settings() }, health_routes(&health)).await;
    let mut client = HealthClient::new(host.channel().await);

    let response = client.check(check_of_len(64 * KIB - 1)).await.unwrap().into_inner();
    assert_eq!(response.status, ServingStatus::Serving as i32);
    client.check(check_of_len(64 * KIB)).await.unwrap();
    assert_eq!(health.checks.load(Ordering::SeqCst), 2);
    host.stop().await;
}

/// With the defaults the host's limit (4 MiB) is the one a caller meets, with its code, and not
/// the generated server's own decoding limit (also 4 MiB, answered `OUT_OF_RANGE`).
#[tokio::test]
async fn by_default_4_mib_passes_and_one_byte_more_is_resource_exhausted() {
    let health = CountingHealth::default();
    let host = Host::start(settings(), health_routes(&health)).await;
    let mut client = HealthClient::new(host.channel().await);

    client.check(check_of_len(4 * MIB)).await.unwrap();
    let status = client.check(check_of_len(4 * MIB + 1)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(health.checks.load(Ordering::SeqCst), 1);
    host.stop().await;
}

/// A browser's gRPC-Web call (HTTP/1.1) gets the refusal as a gRPC-Web response, not an HTTP
/// error, as soon as the message's length prefix arrives.
#[tokio::test]
async fn grpc_web_callers_get_the_refusal_in_grpc_web_framing() {
    let health = CountingHealth::default();
    let host =
        Host::start(Settings { max_request_bytes: 64 * KIB, ..settings() }, health_routes(&health)).await;

    // The prefix announces 5 MiB; only a few bytes of it are sent.
    let mut body = vec![0u8];
    body.extend_from_slice(&(5 * MIB as u32).to_be_bytes());
    body.extend_from_slice(b"\x0a\x05hello");
    let head = format!(
        "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: {}\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        host.addr,
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&response).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("content-type: application/grpc-web+proto"), "{text}");
    assert!(text.contains("grpc-status: 8") || text.contains("grpc-status:8"), "{text}");
    assert_eq!(health.checks.load(Ordering::SeqCst), 0);
    host.stop().await;
}

/// A unary service whose calls wait until the test lets them through, served at
/// `/detour.test.Gate/Call` with the health messages.
#[derive(Clone)]
struct Gate {
    open: Arc<Semaphore>,
    entered: Arc<AtomicUsize>,
}

impl Gate {
    const PATH: &'static str = "/detour.test.Gate/Call";

    fn new() -> Self {
        Self { open: Arc::new(Semaphore::new(0)), entered: Arc::new(AtomicUsize::new(0)) }
    }

    async fn wait_entered(&self, n: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.entered.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
    }

    async fn call(channel: Channel) -> Result<HealthCheckResponse, Status> {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let codec = ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        let path = http::uri::PathAndQuery::from_static(Self::PATH);
        grpc.unary(Request::new(HealthCheckRequest::default()), path, codec).await.map(Response::into_inner)
    }
}

impl NamedService for Gate {
    const NAME: &'static str = "detour.test.Gate";
}

struct GateCall(Gate);

impl tonic::server::UnaryService<HealthCheckRequest> for GateCall {
    type Response = HealthCheckResponse;
    type Future = Pin<Box<dyn Future<Output = Result<Response<HealthCheckResponse>, Status>> + Send>>;

    fn call(&mut self, _: Request<HealthCheckRequest>) -> Self::Future {
        let gate = self.0.clone();
        Box::pin(async move {
            gate.entered.fetch_add(1, Ordering::SeqCst);
            gate.open.acquire().await.unwrap().forget();
            Ok(Response::new(HealthCheckResponse { status: ServingStatus::Serving as i32 }))
        })
    }
}

impl tower::Service<http::Request<Body>> for Gate {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let gate = self.clone();
        Box::pin(async move {
            let codec = ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(GateCall(gate), request).await)
        })
    }
}

fn gate_routes(gate: &Gate, health: &CountingHealth) -> tonic::service::Routes {
    health_routes(health).add_service(gate.clone())
}

#[tokio::test]
async fn at_the_concurrency_limit_a_new_call_is_shed_quickly_with_unavailable() {
    let (gate, health) = (Gate::new(), CountingHealth::default());
    let settings = Settings { concurrency_limit: 1, queue_wait_ms: 50, ..settings() };
    let host = Host::start(settings, gate_routes(&gate, &health)).await;
    let channel = host.channel().await;

    let slow = tokio::spawn(Gate::call(channel.clone()));
    gate.wait_entered(1).await;

    let started = Instant::now();
    let status = Gate::call(channel.clone()).await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(waited >= Duration::from_millis(50), "shed before the queue wait: {waited:?}");
    assert!(waited < Duration::from_secs(2), "not shed quickly: {waited:?}");
    assert_eq!(gate.entered.load(Ordering::SeqCst), 1, "a shed call reached the service");

    // Health is never held back: a saturated replica stays in rotation.
    let response = HealthClient::new(channel.clone()).check(HealthCheckRequest::default()).await.unwrap();
    assert_eq!(response.into_inner().status, ServingStatus::Serving as i32);

    // Once the slow call is done its slot is free again.
    gate.open.add_permits(2);
    slow.await.unwrap().unwrap();
    Gate::call(channel).await.unwrap();
    host.stop().await;
}

#[tokio::test]
async fn a_call_over_the_limit_is_served_if_a_slot_frees_within_the_queue_wait() {
    let (gate, health) = (Gate::new(), CountingHealth::default());
    let settings = Settings { concurrency_limit: 1, queue_wait_ms: 5_000, ..settings() };
    let host = Host::start(settings, gate_routes(&gate, &health)).await;
    let channel = host.channel().await;

    let first = tokio::spawn(Gate::call(channel.clone()));
    gate.wait_entered(1).await;
    let second = tokio::spawn(Gate::call(channel.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Queued, not yet in the service.
    assert_eq!(gate.entered.load(Ordering::SeqCst), 1);

    gate.open.add_permits(2);
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(gate.entered.load(Ordering::SeqCst), 2);
    host.stop().await;
}

#[tokio::test]
async fn each_connection_is_told_the_stream_limit() {
    let health = CountingHealth::default();
    let host =
        Host::start(Settings { max_concurrent_streams: 7, ..settings() }, health_routes(&health)).await;

    let tcp = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    let (_client, mut connection) = h2::client::handshake(tcp).await.unwrap();
    // The server's SETTINGS precede its answer to a PING.
    let mut ping_pong = connection.ping_pong().unwrap();
    tokio::select! {
        result = &mut connection => panic!("connection ended: {result:?}"),
        pong = ping_pong.ping(h2::Ping::opaque()) => {
            pong.unwrap();
        }
    }
    assert_eq!(connection.max_concurrent_send_streams(), 7);
    drop(connection);
    host.stop().await;
}
