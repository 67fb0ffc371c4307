//! Hosts started in-process, the way the binaries start them, and stopped the way SIGTERM stops
//! them.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use detour_auth::{DevIssuer, Role};
use detour_events::EventBus;
use detour_proto::audit::v1::audit_service_client::AuditServiceClient;
use detour_proto::audit::v1::{AuditRecord, ListAuditRecordsRequest};
use detour_proto::events::v1::Envelope;
use detour_server::{HostError, ServiceModule, Settings};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel as RawChannel;

use crate::{Bearer, Channel};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::eventually;

/// How long a host may take to report every module SERVING.
const SERVING_WITHIN: Duration = Duration::from_secs(30);

/// How long stopping may take beyond the drain timeout: cancelling relays and consumers, closing
/// databases.
const STOP_SLACK: Duration = Duration::from_secs(10);

/// Installs the process's tracing subscriber as the binaries do, once per test binary, so that
/// trace ids exist (audit records, event envelopes). A binary that installed its own subscriber
/// first (to capture output) keeps it.
fn telemetry(settings: &Settings) {
    static GUARD: std::sync::OnceLock<Option<detour_telemetry::TelemetryGuard>> = std::sync::OnceLock::new();
    GUARD.get_or_init(|| {
        detour_telemetry::init(&detour_server::process::telemetry_settings(settings, "detour-test")).ok()
    });
}

/// Settings for tests: quiet, quick to drain.
/// Tokens come from the development issuer, whose key lives in `data_dir` (a directory of the
/// test's own where it sets one).
pub fn test_settings() -> Settings {
    Settings {
        drain_timeout_secs: 5,
        log: "warn".into(),
        auth_dev_issuer: true,
        data_dir: crate::test_issuer().key_path().parent().unwrap().to_owned(),
        ..Settings::default()
    }
}

/// [`test_settings`] on a new SQLite file in `dir` (which must outlive the host) and an
/// in-process bus.
pub fn sqlite_settings(dir: &Path) -> Settings {
    Settings {
        database_url: Some(detour_storage::testing::fresh_sqlite_url(dir)),
        events_url: "inproc://".into(),
        ..test_settings()
    }
}

/// A running host (one or several services) on a loopback port, until [`Server::stop`].
pub struct Server {
    pub url: String,
    /// Mints the tokens this host accepts.
    pub issuer: DevIssuer,
    stop: CancellationToken,
    stop_within: Duration,
    task: JoinHandle<Result<(), HostError>>,
}

impl Server {
    /// Serves `modules` with `bus` and returns once every module is SERVING.
    pub async fn start(settings: &Settings, modules: &[ServiceModule], bus: Arc<dyn EventBus>) -> Server {
        let server = Self::spawn(settings, modules, bus, None).await;
        for module in modules {
            server.wait_serving(module.grpc_service).await;
        }
        server
    }

    /// [`Server::start`] with `/metrics` served too, on a loopback port of its own: the server
    /// and that port's address, for [`scrape_metrics`].
    pub async fn start_with_metrics(
        settings: &Settings,
        modules: &[ServiceModule],
        bus: Arc<dyn EventBus>,
    ) -> (Server, std::net::SocketAddr) {
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = metrics.local_addr().unwrap();
        let server = Self::spawn(settings, modules, bus, Some(metrics)).await;
        for module in modules {
            server.wait_serving(module.grpc_service).await;
        }
        (server, addr)
    }

    /// Serves `modules` with `bus` (and metrics on `metrics`, if given) without waiting for
    /// health, for tests of what the host says before it serves.
    pub async fn spawn(
        settings: &Settings,
        modules: &[ServiceModule],
        bus: Arc<dyn EventBus>,
        metrics: Option<TcpListener>,
    ) -> Server {
        let modules = modules.to_vec();
        telemetry(settings);
        Self::run_with(settings.clone(), move |settings, listener, shutdown| async move {
            detour_server::host::serve(&settings, &modules, bus, listener, metrics, shutdown).await
        })
        .await
    }

    /// Runs an entry point of one's own (a service's `run`) on a loopback listener until
    /// [`Server::stop`]; like [`Server::spawn`], it does not wait for health.
    pub async fn run_with<F, Fut>(settings: Settings, entry: F) -> Server
    where
        F: FnOnce(Settings, TcpListener, WaitForCancellationFutureOwned) -> Fut,
        Fut: Future<Output = Result<(), HostError>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let stop_within = settings.drain_timeout() + STOP_SLACK;
        let issuer = if settings.auth_dev_issuer {
            DevIssuer::load_or_create(&settings.data_dir).unwrap()
        } else {
            crate::test_issuer()
        };
        let task = tokio::spawn(entry(settings, listener, stop.clone().cancelled_owned()));
        Server { url, issuer, stop, stop_within, task }
    }

    /// Waits until grpc.health.v1 says `service` is SERVING.
    pub async fn wait_serving(&self, service: &str) {
        let what = format!("{service} at {} to become SERVING", self.url);
        eventually(&what, SERVING_WITHIN, || async {
            let channel = RawChannel::from_shared(self.url.clone()).unwrap().connect().await.ok()?;
            let request = HealthCheckRequest { service: service.to_owned() };
            let status = HealthClient::new(channel).check(request).await.ok()?.into_inner().status;
            (status == ServingStatus::Serving as i32).then_some(())
        })
        .await;
    }

    /// A new connection calling as an admin (every RPC allows admin).
    pub async fn channel(&self) -> Channel {
        self.channel_as("admin-1", &[Role::Admin]).await
    }

    /// A new connection calling as `subject` with `roles`.
    pub async fn channel_as(&self, subject: &str, roles: &[Role]) -> Channel {
        let token = crate::token(&self.issuer, subject, roles);
        InterceptedService::new(self.raw_channel().await, Bearer::new(&token).unwrap())
    }

    /// A new connection that sends no token.
    pub async fn raw_channel(&self) -> tonic::transport::Channel {
        let what = format!("a connection to {}", self.url);
        eventually(&what, Duration::from_secs(10), || async {
            RawChannel::from_shared(self.url.clone()).unwrap().connect().await.ok()
        })
        .await
    }

    /// SIGTERM-equivalent: the host's full shutdown sequence, which must end cleanly and in
    /// time.
    pub async fn stop(self) {
        self.stop.cancel();
        let ended = tokio::time::timeout(self.stop_within, self.task).await;
        let served =
            ended.unwrap_or_else(|_| panic!("{} did not stop within {:?}", self.url, self.stop_within));
        served.unwrap().unwrap();
    }
}

/// One service alone, as its own tests run it: a fresh SQLite file, an in-process bus shared
/// with the test, and a client of the service's API.
pub struct Service<C> {
    pub client: C,
    pub bus: Arc<dyn EventBus>,
    /// For calls as other users (`channel_as`).
    pub server: Server,
    _dir: tempfile::TempDir,
}

impl<C> Service<C> {
    /// Starts `module` and returns once it is SERVING; `client` makes its API client (e.g.
    /// `TriageServiceClient::new`).
    pub async fn start(module: ServiceModule, client: impl FnOnce(Channel) -> C) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bus = detour_events::connect_bus("inproc://").unwrap();
        let server = Server::start(&sqlite_settings(dir.path()), &[module], bus.clone()).await;
        let client = client(server.channel().await);
        Self { client, bus, server, _dir: dir }
    }

    /// Publishes `env` on `stream` as another service's relay would (see [`crate::publish`]).
    pub async fn publish(&self, stream: &str, env: &Envelope) {
        crate::publish(&self.bus, stream, env).await;
    }

    /// The audit records `filter` selects, newest first, as an admin reads them.
    pub async fn audit(&self, filter: ListAuditRecordsRequest) -> Vec<AuditRecord> {
        let mut client = AuditServiceClient::new(self.server.channel().await);
        client.list_audit_records(filter).await.unwrap().into_inner().records
    }

    /// The records of what `actor_id` did, or what was done on their behalf.
    pub async fn audit_of(&self, actor_id: &str) -> Vec<AuditRecord> {
        self.audit(ListAuditRecordsRequest { actor_id: actor_id.into(), ..Default::default() }).await
    }

    /// Drops the client and stops the host (see [`Server::stop`]).
    pub async fn stop(self) {
        drop(self.client);
        self.server.stop().await;
    }
}

/// Each record's actor id and outcome, for comparing a trail at a glance.
pub fn audit_summary(records: &[AuditRecord]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| (r.actor.as_ref().map(|a| a.id.clone()).unwrap_or_default(), r.outcome.clone()))
        .collect()
}

/// The host's `/metrics` page as served on `addr` (the listener given to [`Server::spawn`]),
/// response head included.
pub async fn scrape_metrics(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
