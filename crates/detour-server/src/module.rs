//! How a service describes itself to the host.

use std::convert::Infallible;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;

use detour_audit::AuditLog;
use detour_events::bus::EventBus;
use detour_events::consumer::{ConsumerSettings, EventHandler, spawn_consumer};
use detour_events::metrics::EventMetrics;
use detour_events::outbox::{Relay, RelayHandle, RelaySettings};
use detour_storage::{Db, DbSettings, MigrationStep, StorageError};

use crate::Settings;

/// Something a service cannot serve without. Health stays `NOT_SERVING` until every
/// dependency of every hosted service answers.
#[async_trait]
pub trait Dependency: Send + Sync {
    fn name(&self) -> String;
    async fn check(&self) -> Result<(), String>;
}

/// A service's database as a health dependency.
pub struct DatabaseDependency {
    pub service: &'static str,
    pub db: Db,
}

#[async_trait]
impl Dependency for DatabaseDependency {
    fn name(&self) -> String {
        format!("{} database", self.service)
    }

    async fn check(&self) -> Result<(), String> {
        self.db.ping().await.map_err(|e| e.to_string())
    }
}

/// The event transport as a health dependency.
pub struct BusDependency(pub Arc<dyn EventBus>);

#[async_trait]
impl Dependency for BusDependency {
    fn name(&self) -> String {
        "event bus".to_owned()
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

/// Adds a service's gRPC servers to the host's routes. A function rather than a `Routes` value
/// because routes of several services cannot be merged once built (each carries a fallback).
pub type AddRoutes = Box<dyn FnOnce(tonic::service::Routes) -> tonic::service::Routes + Send>;

/// What a built service hands to the host (its names are its [`ServiceModule`]'s).
pub struct ServicePart {
    pub routes: AddRoutes,
    pub dependencies: Vec<Arc<dyn Dependency>>,
    /// Relays and consumers; they stop when the context's `background` token is cancelled.
    pub tasks: Vec<JoinHandle<()>>,
    /// Closed last, after the tasks that use it have stopped.
    pub databases: Vec<Db>,
    /// The service's audit trail, which the host's `AuditService` reads.
    pub audit: Vec<AuditLog>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{service}: database: {source}")]
    Database {
        service: &'static str,
        #[source]
        source: StorageError,
    },
    #[error("{service}: {message}")]
    Other { service: &'static str, message: String },
}

/// Everything a service needs from its host to build itself.
pub struct BuildContext<'a> {
    pub settings: &'a Settings,
    pub bus: Arc<dyn EventBus>,
    pub event_metrics: EventMetrics,
    /// For the service's own metrics; names are prefixed with the service's name.
    pub registry: &'a mut Registry,
    /// Cancelled by the host once gRPC has drained; background tasks stop on it.
    pub background: CancellationToken,
    /// Names this process among a consumer group's replicas.
    pub instance: String,
}

impl BuildContext<'_> {
    /// Opens the service's database and, when configured, brings its schema up to date.
    pub async fn open_database(
        &self,
        service: &'static str,
        steps: &[MigrationStep],
    ) -> Result<Db, BuildError> {
        open_database(self.settings, service, steps, self.settings.migrate_on_start).await
    }
}

impl<'a> BuildContext<'a> {
    /// The wiring every service shares, as a service's `build`: opens `module`'s database
    /// (migrating it when configured) and starts its outbox relay; `wire` builds the repository,
    /// the gRPC server and the event handlers on them (with the service's audit trail, where
    /// handlers record refusals); then each consumer is started. The
    /// database is the part's health dependency and is closed once the relay and the consumers
    /// have stopped.
    pub fn build_service(
        self,
        module: &'a ServiceModule,
        wire: impl FnOnce(&Db, RelayHandle, AuditLog) -> Wiring + Send + 'a,
    ) -> BoxFuture<'a, Result<ServicePart, BuildError>> {
        Box::pin(async move {
            let db = self.open_database(module.name, module.migrations).await?;
            let (relay, relay_task) = Relay::spawn(
                db.clone(),
                self.bus.clone(),
                self.event_metrics.clone(),
                RelaySettings::default(),
                self.background.clone(),
            );
            let audit = AuditLog::new(module.name, db.clone());
            let Wiring { routes, consumers } = wire(&db, relay, audit.clone());
            let mut tasks = vec![relay_task];
            tasks.extend(consumers.into_iter().map(|c| {
                spawn_consumer(
                    self.bus.clone(),
                    ConsumerSettings::new(c.stream, c.group, &self.instance),
                    c.handler,
                    self.event_metrics.clone(),
                    self.background.clone(),
                )
            }));
            Ok(ServicePart {
                routes,
                dependencies: vec![Arc::new(DatabaseDependency { service: module.name, db: db.clone() })],
                tasks,
                audit: vec![audit],
                databases: vec![db],
            })
        })
    }
}

/// One stream a service consumes, as its consumer group, with the handler that applies its events.
pub struct Consumer {
    pub stream: &'static str,
    pub group: &'static str,
    pub handler: Arc<dyn EventHandler>,
}

/// What a service builds on its database and relay for [`BuildContext::build_service`].
pub struct Wiring {
    pub routes: AddRoutes,
    pub consumers: Vec<Consumer>,
}

impl Wiring {
    /// Serves `server` (a generated `…ServiceServer`), consuming nothing yet.
    pub fn grpc<S>(server: S) -> Self
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Self { routes: Box::new(move |routes| routes.add_service(server)), consumers: Vec::new() }
    }

    /// Consumes each of `streams` as `group`, all applied by `handler`.
    pub fn consume(
        mut self,
        group: &'static str,
        streams: &[&'static str],
        handler: Arc<dyn EventHandler>,
    ) -> Self {
        self.consumers.extend(streams.iter().map(|&stream| Consumer {
            stream,
            group,
            handler: handler.clone(),
        }));
        self
    }
}

/// Opens a service's database, migrating it when `migrate` is set. `detour migrate` calls this
/// with `migrate = true`.
pub async fn open_database(
    settings: &Settings,
    service: &'static str,
    steps: &[MigrationStep],
    migrate: bool,
) -> Result<Db, BuildError> {
    let url = settings.database_url_for(service);
    if let Some(parent) =
        url.strip_prefix("sqlite://").and_then(|path| path.rsplit_once('/')).map(|(dir, _)| dir)
        && !parent.is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| BuildError::Other {
            service,
            message: format!("cannot create data directory {parent}: {e}"),
        })?;
    }
    let mut db_settings = DbSettings::new(url, service);
    db_settings.max_connections = settings.db_max_connections;
    let db = detour_storage::connect(&db_settings)
        .await
        .map_err(|source| BuildError::Database { service, source })?;
    if migrate {
        detour_storage::migrate(&db, service, steps)
            .await
            .map_err(|source| BuildError::Database { service, source })?;
    }
    Ok(db)
}

/// A service as the host and the `detour` command know it.
#[derive(Clone, Copy)]
pub struct ServiceModule {
    pub name: &'static str,
    pub grpc_service: &'static str,
    pub migrations: &'static [MigrationStep],
    pub build: for<'a> fn(BuildContext<'a>) -> BoxFuture<'a, Result<ServicePart, BuildError>>,
}

impl std::fmt::Debug for ServiceModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceModule").field("name", &self.name).finish()
    }
}
