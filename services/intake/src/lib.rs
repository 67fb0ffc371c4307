//! Intake: every channel in. Accepts and acknowledges cases, and keeps each case's view and
//! timeline from the events of the other services.

pub mod consumer;
pub mod error;
pub mod grpc;
pub mod model;
pub mod repo;

use std::sync::Arc;

use detour_domain::events::streams;
use detour_proto::intake::v1::intake_service_server::IntakeServiceServer;
use detour_server::module::{BuildContext, BuildError, ServiceModule, ServicePart, Wiring};
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
    ctx.build_service(&MODULE, |db, relay| {
        let repo = repo::for_db(db, Some(relay));
        let updater = Arc::new(consumer::CaseViewUpdater::new(repo.clone()));
        let server = IntakeServiceServer::new(grpc::IntakeApi::new(repo));
        Wiring::grpc(server).consume(consumer::GROUP, WATCHED, updater)
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
