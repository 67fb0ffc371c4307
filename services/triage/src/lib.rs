//! Triage: classifies each case intake opens, sets its severity and SLA deadlines, puts it in
//! a desk's queue, and tells the other services (`CaseTriaged`).

pub mod classify;
pub mod consumer;
pub mod error;
pub mod grpc;
pub mod model;
pub mod repo;

use std::sync::Arc;

use detour_domain::events::streams;
use detour_proto::triage::v1::triage_service_server::TriageServiceServer;
use detour_server::module::{BuildContext, BuildError, ServiceModule, ServicePart, Wiring};
use detour_storage::MigrationStep;
use futures::future::BoxFuture;

pub const NAME: &str = "triage";

pub const MIGRATIONS: &[MigrationStep] = &[MigrationStep {
    version: 100,
    description: "triages",
    postgres: include_str!("../migrations/postgres/0100_triages.sql"),
    sqlite: include_str!("../migrations/sqlite/0100_triages.sql"),
}];

pub const MODULE: ServiceModule = ServiceModule {
    name: NAME,
    grpc_service: detour_proto::service_names::TRIAGE,
    migrations: MIGRATIONS,
    build,
};

fn build(ctx: BuildContext<'_>) -> BoxFuture<'_, Result<ServicePart, BuildError>> {
    // Triage has no RPC that changes state, so nothing to refuse; its consumer audits in the repository.
    ctx.build_service(&MODULE, |db, relay, _audit| {
        let repo = repo::for_db(db, Some(relay));
        let triager = Arc::new(consumer::Triager::new(repo.clone()));
        let server = TriageServiceServer::new(grpc::TriageApi::new(repo));
        Wiring::grpc(server).consume(consumer::GROUP, &[streams::INTAKE], triager)
    })
}

/// Runs triage alone on `listener` until `shutdown` (the library entry tests and the thin
/// binary use).
pub async fn run(
    settings: &detour_server::Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), detour_server::HostError> {
    detour_server::process::run(settings, &[MODULE], listener, None, shutdown).await
}
