//! Supplier coordination: asks the airline, hotel or ground operator about a triaged case that
//! needs it, under a response deadline, and records the supplier's answer for compensation.

pub mod consumer;
pub mod error;
pub mod grpc;
pub mod model;
pub mod repo;

use std::sync::Arc;

use detour_domain::events::streams;
use detour_proto::supplier::v1::supplier_service_server::SupplierServiceServer;
use detour_server::module::{BuildContext, BuildError, ServiceModule, ServicePart, Wiring};
use detour_storage::MigrationStep;
use futures::future::BoxFuture;

pub const NAME: &str = "supplier";

pub const MIGRATIONS: &[MigrationStep] = &[MigrationStep {
    version: 100,
    description: "supplier requests",
    postgres: include_str!("../migrations/postgres/0100_supplier_requests.sql"),
    sqlite: include_str!("../migrations/sqlite/0100_supplier_requests.sql"),
}];

pub const MODULE: ServiceModule = ServiceModule {
    name: NAME,
    grpc_service: detour_proto::service_names::SUPPLIER,
    migrations: MIGRATIONS,
    build,
};

fn build(ctx: BuildContext<'_>) -> BoxFuture<'_, Result<ServicePart, BuildError>> {
    ctx.build_service(&MODULE, |db, relay, audit| {
        let repo = repo::for_db(db, Some(relay));
        let opener = Arc::new(consumer::RequestOpener::new(repo.clone()));
        let server = SupplierServiceServer::new(grpc::SupplierApi::new(repo, audit));
        Wiring::grpc(server).consume(consumer::GROUP, &[streams::TRIAGE], opener)
    })
}

/// Runs supplier coordination alone on `listener` until `shutdown` (the library entry tests and
/// the thin binary use).
pub async fn run(
    settings: &detour_server::Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), detour_server::HostError> {
    detour_server::process::run(settings, &[MODULE], listener, None, shutdown).await
}
