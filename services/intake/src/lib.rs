//! Intake: every channel in. Accepts and acknowledges cases, and keeps each case's view and
//! timeline from the events of the other services.

pub mod consumer;
pub mod contact;
pub mod crisis;
pub mod dispatch;
pub mod error;
pub mod fanout;
pub mod group_commit;
pub mod grpc;
mod grpc_crisis;
pub mod keys;
pub mod model;
pub mod repo;

use std::sync::Arc;

use detour_domain::events::streams;
use detour_proto::intake::v1::intake_service_server::IntakeServiceServer;
use detour_server::module::{BuildContext, BuildError, ServiceModule, ServicePart, Wiring};
use detour_storage::MigrationStep;
use futures::future::BoxFuture;
use tokio::sync::Notify;

use crate::keys::PersonalDataKeys;

pub const NAME: &str = "intake";

pub const MIGRATIONS: &[MigrationStep] = &[
    MigrationStep {
        version: 100,
        description: "cases and timelines",
        postgres: include_str!("../migrations/postgres/0100_cases.sql"),
        sqlite: include_str!("../migrations/sqlite/0100_cases.sql"),
    },
    MigrationStep {
        version: 101,
        description: "sealed personal data and data keys",
        postgres: include_str!("../migrations/postgres/0101_personal_data.sql"),
        sqlite: include_str!("../migrations/sqlite/0101_personal_data.sql"),
    },
    MigrationStep {
        version: 102,
        description: "itinerary registry, incidents, notifications, merged contacts",
        postgres: include_str!("../migrations/postgres/0102_itineraries.sql"),
        sqlite: include_str!("../migrations/sqlite/0102_itineraries.sql"),
    },
    MigrationStep {
        version: 103,
        description: "traveler handles indexed with the traveler id",
        postgres: include_str!("../migrations/postgres/0103_traveler_handles.sql"),
        sqlite: include_str!("../migrations/sqlite/0103_traveler_handles.sql"),
    },
    MigrationStep {
        version: 104,
        description: "incident progress counted as it moves",
        postgres: include_str!("../migrations/postgres/0104_incident_counts.sql"),
        sqlite: include_str!("../migrations/sqlite/0104_incident_counts.sql"),
    },
    MigrationStep {
        version: 105,
        description: "incident targets and case links without a key to the incident",
        postgres: include_str!("../migrations/postgres/0105_incident_rows_unchecked.sql"),
        sqlite: include_str!("../migrations/sqlite/0105_incident_rows_unchecked.sql"),
    },
];

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
        let settings = ctx.settings;
        let ring = settings
            .personal_data_keys()
            .map_err(|e| BuildError::Other { service: NAME, message: e.to_string() })?;
        let notifiers = detour_notify::Notifiers::from_settings(&settings.notify)
            .map_err(|e| BuildError::Other { service: NAME, message: e.to_string() })?;
        let admission = detour_admission::Admission::new(
            detour_admission::AdmissionSettings::with_capacity(settings.intake_admission_capacity),
            Some(&mut *ctx.registry),
        );
        let limit = detour_admission::RateLimit {
            per_second: settings.intake_rate_limit_per_second,
            burst: settings.intake_rate_limit_burst,
        };
        // Replicas share one budget per caller through the event bus's Redis; one process keeps
        // its own.
        let limiter: Arc<dyn detour_admission::RateLimiter> = if settings.events_url.starts_with("redis://") {
            let redis =
                detour_admission::RedisRateLimiter::connect(&settings.events_url, "detour:intake", limit)
                    .await
                    .map_err(|e| BuildError::Other {
                        service: NAME,
                        message: format!("rate limiter: {e}"),
                    })?;
            Arc::new(redis.with_metrics(&mut *ctx.registry))
        } else {
            Arc::new(detour_admission::LocalRateLimiter::new(limit).with_metrics(&mut *ctx.registry))
        };
        let mut keys = None;
        let background = ctx.background.clone();
        let wake_fanout = Arc::new(Notify::new());
        let wake_dispatch = Arc::new(Notify::new());
        let mut workers = None;
        let group_settings = group_commit::GroupCommitSettings {
            max_batch: settings.intake_group_commit_max_batch,
            in_flight: settings.intake_group_commit_in_flight,
        };
        let group_metrics = group_commit::GroupCommitMetrics::new(Some(&mut *ctx.registry));
        let dispatch_metrics = dispatch::DispatchMetrics::new(Some(&mut *ctx.registry));
        let dispatch_settings = dispatch::DispatchSettings {
            concurrency: settings.intake_notify_concurrency,
            attempts_per_channel: i32::try_from(settings.intake_notify_attempts_per_channel)
                .unwrap_or(i32::MAX),
            first_retry: std::time::Duration::from_secs(settings.intake_notify_first_retry_secs),
            handoff: settings.intake_notify_handoff,
            ..Default::default()
        };
        let (handoff, handed) = dispatch::Handoff::new(&dispatch_settings, wake_dispatch.clone());
        let api_handoff = handoff.clone();
        let mut part = ctx
            .build_service(&MODULE, |db, relay, audit| {
                let repo = repo::for_db(db, Some(relay));
                let group =
                    group_commit::GroupCommit::spawn(repo.clone(), group_settings, group_metrics.clone());
                let personal = Arc::new(PersonalDataKeys::new(ring, settings.tenant.clone(), repo.clone()));
                keys = Some(personal.clone());
                workers = Some((repo.clone(), personal.clone()));
                let updater = Arc::new(consumer::CaseViewUpdater::new(repo.clone()));
                let api = grpc::IntakeApi::new(repo, personal, audit)
                    .with_workers(wake_fanout.clone(), api_handoff)
                    .with_admission(admission, limiter)
                    .with_group_commit(group);
                Wiring::grpc(IntakeServiceServer::new(api)).consume(consumer::GROUP, WATCHED, updater)
            })
            .await?;
        if let Some((repo, personal)) = workers {
            let dispatcher = dispatch::Dispatcher::new(
                repo.clone(),
                personal.clone(),
                notifiers,
                dispatch_settings,
                wake_dispatch.clone(),
                handed,
                dispatch_metrics,
            );
            part.tasks.push(dispatcher.spawn(background.clone()));
            let fanout = fanout::FanoutWorker::new(
                repo,
                personal,
                fanout::FanoutSettings::default(),
                wake_fanout,
                wake_dispatch.clone(),
                handoff,
            );
            part.tasks.push(fanout.spawn(background.clone()));
        }
        // Data keys still wrapped by a KEK being rotated out move to the primary before serving,
        // so the old KEK can leave the configuration once every replica has restarted.
        if let Some(keys) = keys {
            match keys.rewrap().await {
                Ok(report) if report.rewrapped > 0 => {
                    tracing::info!(rewrapped = report.rewrapped, keys = report.keys, "data keys rewrapped");
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(BuildError::Other {
                        service: NAME,
                        message: format!("rewrapping data keys: {e}"),
                    });
                }
            }
        }
        Ok(part)
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
