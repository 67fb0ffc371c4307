//! Compensation: works out what a traveler is offered under company policy once triage (and,
//! where needed, the supplier) has spoken, proposes it, and records the traveler's acceptance.

pub mod consumer;
pub mod error;
pub mod grpc;
pub mod model;
pub mod policy;
pub mod repo;

use std::sync::Arc;

use detour_domain::events::streams;
use detour_proto::compensation::v1::compensation_service_server::CompensationServiceServer;
use detour_server::module::{BuildContext, BuildError, ServiceModule, ServicePart, Wiring};
use detour_storage::MigrationStep;
use futures::future::BoxFuture;

pub const NAME: &str = "compensation";

pub const MIGRATIONS: &[MigrationStep] = &[MigrationStep {
    version: 100,
    description: "case contexts and offers",
    postgres: include_str!("../migrations/postgres/0100_offers.sql"),
    sqlite: include_str!("../migrations/sqlite/0100_offers.sql"),
}];

/// Triage says whether and what to offer; the supplier's answer releases the offers that wait
/// for it.
const WATCHED: &[&str] = &[streams::TRIAGE, streams::SUPPLIER];

pub const MODULE: ServiceModule = ServiceModule {
    name: NAME,
    grpc_service: detour_proto::service_names::COMPENSATION,
    migrations: MIGRATIONS,
    build,
};

fn build(ctx: BuildContext<'_>) -> BoxFuture<'_, Result<ServicePart, BuildError>> {
    Box::pin(async move {
        let policy = policy::Policy::company()
            .map_err(|e| BuildError::Other { service: NAME, message: format!("compensation policy: {e}") })?;
        ctx.build_service(&MODULE, move |db, relay, audit| {
            let repo = repo::for_db(db, Some(relay));
            let proposer = Arc::new(consumer::OfferProposer::new(repo.clone(), policy));
            let audit = audit;
            let server = CompensationServiceServer::new(grpc::CompensationApi::new(repo, audit));
            Wiring::grpc(server).consume(consumer::GROUP, WATCHED, proposer)
        })
        .await
    })
}

/// Runs compensation alone on `listener` until `shutdown` (the library entry tests and the thin
/// binary use).
pub async fn run(
    settings: &detour_server::Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), detour_server::HostError> {
    detour_server::process::run(settings, &[MODULE], listener, None, shutdown).await
}
