//! Personal data end to end: a whole lifecycle runs with logs at TRACE and every span recorded,
//! and neither the logs, the traces, the metrics nor any byte the suite wrote to disk holds the
//! traveler's name, e-mail, phone or passport number. Export gives them back; erasure destroys
//! them and leaves the anonymised case.
//!
//! A binary of its own: it installs the process's tracing subscriber to capture what is written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use detour_proto::common::v1 as common;
use detour_proto::intake::v1 as intake;
use detour_server::Settings;
use detour_testkit::{Server, test_settings};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use support::lifecycle::{self, Clients};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

mod support;

/// What `lifecycle::cancelled_flight(_, "Li Wei")` seeds, in every form it could be written.
const SEEDED: &[&str] =
    &["Li Wei", "li.wei@example.com", "Li.Wei@example.com", "+8613800138000", "13800138000", "E73912458"];

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Logs as JSON with every span's fields, at TRACE for Detour's crates, into `logs`; every span
/// into `spans`, as the OTLP exporter would see them.
fn capture(logs: &Captured) -> (SdkTracerProvider, InMemorySpanExporter) {
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(spans.clone()).build();
    let writer = logs.clone();
    let filter =
        tracing_subscriber::EnvFilter::new("trace,h2=debug,hyper=debug,hyper_util=debug,tower=debug");
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("privacy-test")))
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(move || writer.clone()),
        )
        .init();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    (provider, spans)
}

fn leaks(what: &str, text: &str) -> Vec<String> {
    SEEDED.iter().filter(|s| text.contains(*s)).map(|s| format!("{what} holds {s:?}")).collect()
}

/// Every byte under `dir` (SQLite files, their WAL and journal), read raw, as a disk thief would.
fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            out.push((path.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}

/// Every text and blob value in every table of every service's database, read through SQL.
async fn table_contents(settings: &Settings) -> Vec<(String, String)> {
    use sqlx::{Column, Row};
    let mut out = Vec::new();
    for module in detour_cli::MODULES {
        let url = settings.database_url_for(module.name);
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let tables: Vec<String> = sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("name"))
            .collect();
        for table in tables {
            let sql = format!("SELECT * FROM \"{table}\"");
            for row in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await.unwrap() {
                for (i, column) in row.columns().iter().enumerate() {
                    let value = row.try_get::<Option<String>, _>(i).ok().flatten().or_else(|| {
                        row.try_get::<Option<Vec<u8>>, _>(i)
                            .ok()
                            .flatten()
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                    });
                    if let Some(value) = value {
                        out.push((format!("{}.{table}.{}", module.name, column.name()), value));
                    }
                }
            }
        }
        pool.close().await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_stays_out_of_logs_traces_metrics_and_disk_and_is_erased_on_request() {
    let logs = Captured::default();
    let (provider, spans) = capture(&logs);

    let dir = tempfile::tempdir().unwrap();
    let settings = Settings { data_dir: dir.path().to_owned(), log: "trace".into(), ..test_settings() };
    let bus = detour_events::connect_bus("inproc://").unwrap();
    let (server, metrics_addr) = Server::start_with_metrics(&settings, detour_cli::MODULES, bus).await;
    let mut clients = Clients::single(server.channel().await);
    let case_id = lifecycle::run(&mut clients, "privacy-1").await;

    // The desk sees the traveler: the data is there, only sealed.
    let case = lifecycle::get_case(&mut clients, &case_id).await;
    let traveler = case.traveler.clone().unwrap();
    assert_eq!(traveler.email, "li.wei@example.com");
    assert_eq!(traveler.document_number, "E73912458");
    let traveler_id = traveler.id.clone().unwrap();

    let mut found = Vec::new();
    provider.force_flush().unwrap();
    let finished = spans.get_finished_spans().unwrap();
    assert!(finished.len() > 20, "the run was traced: {} spans", finished.len());
    found.extend(leaks("traces", &format!("{finished:?}")));
    let log_text = logs.text();
    assert!(log_text.contains("case accepted"), "the run was logged");
    found.extend(leaks("logs", &log_text));
    found.extend(leaks("metrics", &detour_testkit::scrape_metrics(metrics_addr).await));
    for (file, bytes) in files_under(dir.path()) {
        found.extend(leaks(&file, &bytes));
    }
    for (column, value) in table_contents(&settings).await {
        found.extend(leaks(&column, &value));
    }
    assert!(found.is_empty(), "personal data leaked:\n{}", found.join("\n"));

    // Export: everything intake holds about the traveler, as JSON, to a supervisor only.
    let mut agent = detour_proto::intake::v1::intake_service_client::IntakeServiceClient::new(
        server.channel_as("agent-7", &[detour_auth::Role::Agent]).await,
    );
    let refused = agent
        .export_traveler(intake::ExportTravelerRequest { traveler_id: Some(traveler_id.clone()) })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let export = clients
        .intake
        .export_traveler(intake::ExportTravelerRequest { traveler_id: Some(traveler_id.clone()) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(export.case_count, 1);
    let json: serde_json::Value = serde_json::from_str(&export.json).unwrap();
    assert_eq!(json["traveler"]["phone"], "+8613800138000");
    assert_eq!(json["traveler"]["full_name"], "Li Wei");
    assert_eq!(json["cases"][0]["case_id"], case_id.as_str());
    assert!(json["cases"][0]["timeline"].as_array().unwrap().len() >= 9);

    // Erasure: refused without a reason, then done, then a no-op.
    let no_reason = clients
        .intake
        .erase_traveler(intake::EraseTravelerRequest {
            traveler_id: Some(traveler_id.clone()),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_reason.code(), tonic::Code::InvalidArgument);
    let erase = intake::EraseTravelerRequest {
        traveler_id: Some(traveler_id.clone()),
        reason: "GDPR art. 17 request 2026-118".into(),
    };
    assert_eq!(clients.intake.erase_traveler(erase.clone()).await.unwrap().into_inner().cases_erased, 1);
    assert_eq!(clients.intake.erase_traveler(erase).await.unwrap().into_inner().cases_erased, 0);

    // The case stays, anonymised: status, category, timeline and money kept; the person gone.
    let case = lifecycle::get_case(&mut clients, &case_id).await;
    assert_eq!(case.status, common::CaseStatus::Resolved as i32);
    assert_eq!(case.category, common::CaseCategory::FlightCancellation as i32);
    assert!(case.personal_data_erased_at.is_some());
    let anonymous = case.traveler.unwrap();
    assert_eq!((anonymous.full_name.as_str(), anonymous.email.as_str()), ("", ""));
    assert_eq!((anonymous.phone.as_str(), anonymous.document_number.as_str()), ("", ""));
    assert_eq!(anonymous.id, Some(traveler_id.clone()));
    assert!(case.description.is_empty());
    assert!(case.timeline.iter().any(|t| t.kind == "personal_data.erased"));
    let export: serde_json::Value = serde_json::from_str(
        &clients
            .intake
            .export_traveler(intake::ExportTravelerRequest { traveler_id: Some(traveler_id) })
            .await
            .unwrap()
            .into_inner()
            .json,
    )
    .unwrap();
    assert!(
        export["traveler"]["email"].is_null() && export["traveler"]["personal_data_erased_at"].is_string()
    );
    assert_eq!(export["cases"][0]["description"], "");

    // No sealed copy is left for a leaked key to open, nor the traveler's own words: not in the
    // case, not in the published copies of its events.
    let contents = table_contents(&settings).await;
    let sealed: Vec<_> =
        contents.iter().filter(|(column, _)| column == "intake.cases.personal_data").collect();
    assert!(sealed.is_empty(), "{sealed:?}");
    let words: Vec<_> =
        contents.iter().filter(|(_, value)| value.contains("cancelled at the gate")).collect();
    assert!(words.is_empty(), "{words:?}");

    // Every step of it is in the audit trail, under the supervisor's name.
    let trail = clients.audit_trail(&case_id).await;
    let erased: Vec<_> =
        trail.iter().filter(|r| r.action == "detour.intake.v1.IntakeService/EraseTraveler").collect();
    assert_eq!(erased.len(), 1, "one erasure changed the case: {erased:?}");
    assert_eq!(erased[0].actor.as_ref().unwrap().id, "admin-1");
    server.stop().await;
}
