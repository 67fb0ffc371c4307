//! Intake: every channel in. Accepts and acknowledges cases, and keeps each case's view and
//! timeline from the events of the other services.

pub mod consumer;
pub mod error;
pub mod grpc;
pub mod model;
pub mod repo;

use std::sync::Arc;

use detour_domain::events::streams;
use detour_events::consumer::{ConsumerSettings, spawn_consumer};
use detour_events::outbox::{Relay, RelaySettings};
use detour_proto::intake::v1::intake_service_server::IntakeServiceServer;
use detour_server::module::{
    AddRoutes, BuildContext, BuildError, DatabaseDependency, ServiceModule, ServicePart,
};
use detour_storage::MigrationStep;
use futures::future::BoxFuture;

pub const NAME: &str = "intake";

pub const MIGRATIONS: &[MigrationStep] = &[MigrationStep {
    version: 100,
    description: "cases and timelines",
    postgres: include_str!("../migrations/postgres/0100_cases.sql"),
    sqlite: include_str!("../migrations/sqlite/0100_cases.sql"),
}];

/// The streams whose events change a case's view.
const WATCHED: &[&str] = &[streams::TRIAGE, streams::SUPPLIER, streams::COMPENSATION, streams::FEEDBACK];

pub const MODULE: ServiceModule = ServiceModule {
    name: NAME,
    grpc_service: detour_proto::service_names::INTAKE,
    migrations: MIGRATIONS,
    build,
};

fn build(ctx: BuildContext<'_>) -> BoxFuture<'_, Result<ServicePart, BuildError>> {
    Box::pin(async move {
        let db = ctx.open_database(NAME, MIGRATIONS).await?;
        let (relay, relay_task) = Relay::spawn(
            db.clone(),
            ctx.bus.clone(),
            ctx.event_metrics.clone(),
            RelaySettings::default(),
            ctx.background.clone(),
        );
        let repo = repo::for_db(&db, Some(relay));
        let mut tasks = vec![relay_task];
        let updater = Arc::new(consumer::CaseViewUpdater::new(repo.clone()));
        for stream in WATCHED {
            tasks.push(spawn_consumer(
                ctx.bus.clone(),
                ConsumerSettings::new(*stream, consumer::GROUP, &ctx.instance),
                updater.clone(),
                ctx.event_metrics.clone(),
                ctx.background.clone(),
            ));
        }
        let server = IntakeServiceServer::new(grpc::IntakeApi::new(repo));
        let routes: AddRoutes = Box::new(move |routes| routes.add_service(server));
        Ok(ServicePart {
            name: NAME,
            grpc_service: detour_proto::service_names::INTAKE,
            routes,
            dependencies: vec![Arc::new(DatabaseDependency { service: NAME, db: db.clone() })],
            tasks,
            databases: vec![db],
        })
    })
}

/// Runs intake alone on `listener` until `shutdown` (the library entry tests and the thin
/// binary use).
pub async fn run(
    settings: &detour_server::Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), detour_server::HostError> {
    detour_server::process::run(settings, &[MODULE], listener, None, shutdown).await
}
