//! Runs service parts on one gRPC listener, and stops them in a fixed order.
//!
//! Shutdown order: health turns `NOT_SERVING` (load balancers stop sending) → the server stops
//! accepting and in-flight calls drain, up to the drain timeout → background tasks (outbox
//! relays, consumers) are cancelled and awaited → databases are closed → the metrics endpoint
//! stops. The caller flushes telemetry last.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use detour_auth::{AuthLayer, AuthSettings, DevIssuer, Policy, Verifier};
use detour_events::bus::EventBus;
use detour_events::metrics::EventMetrics;
use detour_telemetry::{GrpcMetrics, GrpcTraceLayer, Metrics};

use crate::Settings;
use crate::limits::{AdmissionLayer, RequestSizeLimitLayer};
use crate::module::{BuildContext, BuildError, BusDependency, Dependency, ServiceModule, ServicePart};
use crate::undecodable::UndecodableLayer;

/// How often dependencies are re-checked once serving.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// How long background tasks get to finish the message in hand.
const TASK_STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("authentication: {0}")]
    Auth(String),
    #[error("event bus: {0}")]
    Bus(String),
    #[error("{0}")]
    Task(String),
}

/// Serves `modules` on `grpc_listener` until `shutdown` resolves, then stops in order.
pub async fn serve(
    settings: &Settings,
    modules: &[ServiceModule],
    bus: Arc<dyn EventBus>,
    grpc_listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), HostError> {
    let mut metrics = Metrics::new();
    let grpc_metrics = GrpcMetrics::register(metrics.registry_mut());
    let event_metrics = EventMetrics::register(metrics.registry_mut());
    // A misconfigured issuer stops start-up before anything is built.
    let auth = auth_layer(settings)?;
    let background = CancellationToken::new();
    let instance = instance_name();

    let mut parts: Vec<ServicePart> = Vec::with_capacity(modules.len());
    for module in modules {
        let ctx = BuildContext {
            settings,
            bus: bus.clone(),
            event_metrics: event_metrics.clone(),
            registry: metrics.registry_mut().sub_registry_with_prefix(module.name),
            background: background.clone(),
            instance: instance.clone(),
        };
        match (module.build)(ctx).await {
            Ok(part) => parts.push(part),
            Err(e) => {
                // Stop what the modules built so far before reporting.
                background.cancel();
                stop_parts(parts).await;
                return Err(e.into());
            }
        }
    }

    let (reporter, health_service) = tonic_health::server::health_reporter();
    let mut grpc_names: Vec<&'static str> = modules.iter().map(|m| m.grpc_service).collect();
    grpc_names.push(detour_proto::service_names::AUDIT);
    set_all(&reporter, &grpc_names, ServingStatus::NotServing).await;

    let mut routes = tonic::service::Routes::new(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);
    for part in &mut parts {
        let add: crate::module::AddRoutes = std::mem::replace(&mut part.routes, Box::new(|r| r));
        routes = add(routes);
    }
    let trails = parts.iter().flat_map(|p| p.audit.iter().cloned()).collect();
    routes = routes.add_service(detour_audit::AuditApi::new(trails).into_server());

    let mut dependencies: Vec<Arc<dyn Dependency>> = vec![Arc::new(BusDependency(bus.clone()))];
    for part in &parts {
        dependencies.extend(part.dependencies.iter().cloned());
    }

    let metrics = Arc::new(metrics);
    let metrics_stop = CancellationToken::new();
    let metrics_task = metrics_listener.map(|listener| {
        let stop = metrics_stop.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) =
                detour_telemetry::serve_metrics(listener, metrics, async move { stop.cancelled().await })
                    .await
            {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        })
    });

    let health_stop = CancellationToken::new();
    let health_task =
        tokio::spawn(health_loop(reporter.clone(), grpc_names.clone(), dependencies, health_stop.clone()));

    let drain = CancellationToken::new();
    let mut server = tokio::spawn(serve_grpc(
        settings,
        routes,
        grpc_metrics,
        Some(auth),
        grpc_listener,
        drain.clone().cancelled_owned(),
    ));

    let early_exit = tokio::select! {
        () = shutdown => None,
        result = &mut server => Some(result),
    };
    tracing::info!("shutting down");

    health_stop.cancel();
    let _ = health_task.await;
    set_all(&reporter, &grpc_names, ServingStatus::NotServing).await;

    drain.cancel();
    let served = match early_exit {
        Some(result) => result,
        None => match tokio::time::timeout(settings.drain_timeout(), &mut server).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(timeout = ?settings.drain_timeout(), "in-flight calls did not drain in time; cutting them");
                server.abort();
                Ok(Ok(()))
            }
        },
    };

    background.cancel();
    stop_parts(parts).await;

    metrics_stop.cancel();
    if let Some(task) = metrics_task {
        let _ = task.await;
    }

    match served {
        Ok(result) => result.map_err(HostError::from),
        Err(join) => Err(HostError::Task(format!("server task failed: {join}"))),
    }
}

/// Paths never held back by the concurrency limit: readiness must follow the dependencies, not
/// a momentary spike, or a busy replica is taken out of rotation and its load moves onto
/// replicas that are just as busy.
const UNLIMITED_PATHS: &[&str] = &["/grpc.health.v1.Health/"];

/// Serves `routes` on `listener` with every protection the host gives each service, until
/// `shutdown` resolves and in-flight calls have finished.
///
/// Outermost first: tonic's per-call timeout (the shorter of `request_timeout_secs` and the
/// caller's `grpc-timeout`), the span and RED metrics of each call, gRPC-Web translation, the
/// request message size limit, then the concurrency limit with load shedding, and innermost the
/// mapping of undecodable requests to `INVALID_ARGUMENT`. The limits sit
/// inside the timeout, so waiting for a slot counts against the call's deadline; inside the
/// metrics, so refused calls are counted with their codes (`RESOURCE_EXHAUSTED`,
/// `UNAVAILABLE`); and inside gRPC-Web, so gRPC-Web callers get their refusals in gRPC-Web
/// framing. On the connection: at most `max_concurrent_streams` calls per HTTP/2 connection,
/// HTTP/2 keepalive pings, TCP keepalive (HTTP/1.1 gRPC-Web connections have no pings) and
/// `TCP_NODELAY`.
pub fn serve_grpc(
    settings: &Settings,
    routes: tonic::service::Routes,
    grpc_metrics: GrpcMetrics,
    auth: Option<AuthLayer>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(settings.http2_keepalive_interval()));
    let router = tonic::transport::Server::builder()
        .accept_http1(true)
        .timeout(settings.request_timeout())
        .max_concurrent_streams(settings.max_concurrent_streams)
        .http2_keepalive_interval(Some(settings.http2_keepalive_interval()))
        .http2_keepalive_timeout(Some(settings.http2_keepalive_timeout()))
        .layer(GrpcTraceLayer::new(grpc_metrics).with_known_methods(served_methods()))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(RequestSizeLimitLayer::new(settings.max_request_bytes))
        // Before admission, so calls without a valid token never take a slot.
        .layer(tower::util::option_layer(auth))
        .layer(AdmissionLayer::new(settings.concurrency_limit, settings.queue_wait(), UNLIMITED_PATHS))
        .layer(UndecodableLayer)
        .add_routes(routes);
    router.serve_with_incoming_shutdown(incoming, shutdown)
}

/// Who may call: the configured issuers (and the development issuer when enabled, whose key
/// lives in the data directory) checked against the policy table next to the contracts.
pub fn auth_layer(settings: &Settings) -> Result<AuthLayer, HostError> {
    settings.validate_auth().map_err(|e| HostError::Auth(e.to_string()))?;
    let dev_issuer = if settings.auth_dev_issuer {
        Some(DevIssuer::load_or_create(&settings.data_dir).map_err(|e| HostError::Auth(e.to_string()))?)
    } else {
        None
    };
    let verifier = Verifier::new(AuthSettings {
        issuers: settings.auth_issuers.clone(),
        dev_issuer,
        ..Default::default()
    })
    .map_err(|e| HostError::Auth(format!("DETOUR_AUTH_ISSUERS: {}: {}", e.setting, e.problem)))?;
    let policy = Policy::embedded().map_err(|e| HostError::Auth(e.to_string()))?;
    Ok(AuthLayer::new(Arc::new(verifier), Arc::new(policy)))
}

async fn stop_parts(parts: Vec<ServicePart>) {
    let mut databases = Vec::new();
    for part in parts {
        for task in part.tasks {
            await_task(task).await;
        }
        databases.extend(part.databases);
    }
    for db in databases {
        db.close().await;
    }
}

async fn await_task(task: JoinHandle<()>) {
    let abort = task.abort_handle();
    if tokio::time::timeout(TASK_STOP_TIMEOUT, task).await.is_err() {
        tracing::warn!("a background task did not stop in time; aborting it");
        abort.abort();
    }
}

/// The paths the host serves, so metrics never take a label from a made-up path.
fn served_methods() -> Vec<String> {
    [
        detour_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]
    .into_iter()
    .flat_map(detour_proto::rpc_names)
    .map(|name| format!("/{name}"))
    .collect()
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(detour_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

async fn set_all(reporter: &HealthReporter, names: &[&'static str], status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in names {
        reporter.set_service_status(*name, status).await;
    }
}

/// Serving only while every dependency answers; re-checked so a lost database or Redis takes
/// the instance out of rotation until it is back.
async fn health_loop(
    reporter: HealthReporter,
    names: Vec<&'static str>,
    dependencies: Vec<Arc<dyn Dependency>>,
    stop: CancellationToken,
) {
    let mut serving = false;
    loop {
        let mut failures = Vec::new();
        for dep in &dependencies {
            let check = tokio::time::timeout(Duration::from_secs(3), dep.check()).await;
            match check {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("{}: {e}", dep.name())),
                Err(_) => failures.push(format!("{}: no answer within 3 s", dep.name())),
            }
        }
        let now_serving = failures.is_empty();
        if now_serving != serving {
            if now_serving {
                tracing::info!("all dependencies answer; serving");
                set_all(&reporter, &names, ServingStatus::Serving).await;
            } else {
                tracing::warn!(failures = ?failures, "a dependency does not answer; not serving");
                set_all(&reporter, &names, ServingStatus::NotServing).await;
            }
            serving = now_serving;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(HEALTH_INTERVAL) => {}
        }
    }
}

/// Distinguishes this process among the replicas of a consumer group.
fn instance_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
