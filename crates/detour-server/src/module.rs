//! How a service describes itself to the host.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use detour_events::bus::EventBus;
use detour_events::metrics::EventMetrics;
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

/// What a built service hands to the host.
pub struct ServicePart {
    pub name: &'static str,
    /// Fully qualified gRPC service name, as health checking reports it.
    pub grpc_service: &'static str,
    pub routes: AddRoutes,
    pub dependencies: Vec<Arc<dyn Dependency>>,
    /// Relays and consumers; they stop when the context's `background` token is cancelled.
    pub tasks: Vec<JoinHandle<()>>,
    /// Closed last, after the tasks that use it have stopped.
    pub databases: Vec<Db>,
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
