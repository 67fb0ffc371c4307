//! Feedback: surveys each traveler once their case is resolved, records the one answer the
//! survey takes, and tells the other services (`SurveySent`, `SurveyAnswered`).

pub mod consumer;
pub mod error;
pub mod grpc;
pub mod model;
pub mod repo;

use std::sync::Arc;

use detour_domain::events::streams;
use detour_proto::feedback::v1::feedback_service_server::FeedbackServiceServer;
use detour_server::module::{BuildContext, BuildError, ServiceModule, ServicePart, Wiring};
use detour_storage::MigrationStep;
use futures::future::BoxFuture;

pub const NAME: &str = "feedback";

pub const MIGRATIONS: &[MigrationStep] = &[MigrationStep {
    version: 100,
    description: "surveys",
    postgres: include_str!("../migrations/postgres/0100_surveys.sql"),
    sqlite: include_str!("../migrations/sqlite/0100_surveys.sql"),
}];

pub const MODULE: ServiceModule = ServiceModule {
    name: NAME,
    grpc_service: detour_proto::service_names::FEEDBACK,
    migrations: MIGRATIONS,
    build,
};

fn build(ctx: BuildContext<'_>) -> BoxFuture<'_, Result<ServicePart, BuildError>> {
    ctx.build_service(&MODULE, |db, relay, audit| {
        let repo = repo::for_db(db, Some(relay));
        let sender = Arc::new(consumer::SurveySender::new(repo.clone()));
        let server = FeedbackServiceServer::new(grpc::FeedbackApi::new(repo, audit));
        Wiring::grpc(server).consume(consumer::GROUP, &[streams::INTAKE], sender)
    })
}

/// Runs feedback alone on `listener` until `shutdown` (the library entry tests and the thin
/// binary use).
pub async fn run(
    settings: &detour_server::Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), detour_server::HostError> {
    detour_server::process::run(settings, &[MODULE], listener, None, shutdown).await
}
