//! The case lifecycle end to end, twice: all services in one process on the embedded default,
//! and each service as its own server on PostgreSQL + Redis Streams.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use detour_proto::common::v1 as common;
use detour_proto::intake::v1 as intake;
use detour_proto::triage::v1 as tri;
use detour_server::Settings;
use detour_storage::DbSettings;
use detour_testkit::{Server, eventually, fresh_redis, outbox_count, outbox_rows, test_settings};
use support::lifecycle::{self, Clients};

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_embedded_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings { data_dir: dir.path().to_owned(), ..test_settings() };
    let bus = detour_events::connect_bus("inproc://").unwrap();
    let server = Server::start(&settings, detour_cli::MODULES, bus).await;
    let mut clients = Clients::single(server.channel().await);
    let id = lifecycle::run(&mut clients, "embedded-1").await;
    server.stop().await;

    // The embedded default survives a restart with its data.
    let bus = detour_events::connect_bus("inproc://").unwrap();
    let server = Server::start(&settings, detour_cli::MODULES, bus).await;
    let mut clients = Clients::single(server.channel().await);
    let case = lifecycle::get_case(&mut clients, &id).await;
    assert_eq!(case.status, common::CaseStatus::Resolved as i32);
    server.stop().await;
}

/// Five servers, one per service, sharing a PostgreSQL database (a schema each) and Redis.
struct Distributed {
    settings: Settings,
    redis_url: String,
    servers: Vec<(&'static str, Server)>,
}

impl Distributed {
    async fn start(redis_db: u8) -> Self {
        let pg = detour_storage::testing::fresh_postgres_url().await.unwrap();
        let redis_url = fresh_redis(redis_db).await;
        // A PostgreSQL host refuses the development issuer: trust an issuer over HTTP, as in
        // production.
        let settings = Settings {
            database_url: Some(pg),
            events_url: redis_url.clone(),
            auth_dev_issuer: false,
            auth_issuers: vec![detour_testkit::jwks_issuer().await],
            // Nor does it fall back to a development key-encryption key.
            vault_keks: vec![detour_vault::KekSettings::new(
                "e2e-kek-1",
                detour_vault::generate_kek_base64().unwrap(),
            )],
            ..test_settings()
        };
        let mut servers = Vec::new();
        for module in detour_cli::MODULES {
            servers.push((module.name, Self::start_one(&settings, &redis_url, module.name).await));
        }
        Self { settings, redis_url, servers }
    }

    async fn start_one(settings: &Settings, redis_url: &str, name: &str) -> Server {
        let module = detour_cli::module(name).unwrap();
        let bus = detour_events::connect_bus(redis_url).unwrap();
        Server::start(settings, &[module], bus).await
    }

    /// The service's channel; a stopped service's calls go to intake, which answers
    /// UNIMPLEMENTED, as a load balancer with no endpoint would fail them.
    async fn channel(&self, name: &str) -> detour_testkit::Channel {
        let server = self
            .servers
            .iter()
            .find(|(n, _)| *n == name)
            .or_else(|| self.servers.iter().find(|(n, _)| *n == "intake"));
        server.unwrap().1.channel().await
    }

    async fn clients(&self) -> Clients {
        Clients::new(
            self.channel("intake").await,
            self.channel("triage").await,
            self.channel("supplier").await,
            self.channel("compensation").await,
            self.channel("feedback").await,
        )
    }

    async fn stop_service(&mut self, name: &str) {
        let i = self.servers.iter().position(|(n, _)| *n == name).unwrap();
        let (_, server) = self.servers.remove(i);
        server.stop().await;
    }

    async fn restart_service(&mut self, name: &'static str) {
        let server = Self::start_one(&self.settings, &self.redis_url, name).await;
        self.servers.push((name, server));
    }

    async fn stop(self) {
        for (_, s) in self.servers {
            s.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_distributed_postgres_and_redis() {
    let suite = Distributed::start(11).await;
    let mut clients = suite.clients().await;
    let id = lifecycle::run(&mut clients, "distributed-1").await;

    // On PostgreSQL too, no column of any service's schema holds the traveler readably, before
    // erasure (sealed) or after it (gone, the sealed blob included).
    let pg = suite.settings.database_url.clone().unwrap();
    assert_eq!(readable_personal_data(&pg).await, Vec::<String>::new());
    let traveler_id = lifecycle::get_case(&mut clients, &id).await.traveler.unwrap().id;
    let erase = intake::EraseTravelerRequest { traveler_id, reason: "request 7".into() };
    assert_eq!(clients.intake.erase_traveler(erase).await.unwrap().into_inner().cases_erased, 1);
    assert_eq!(readable_personal_data(&pg).await, Vec::<String>::new());
    // The traveler's own words went too: from the case and from the published event copies.
    let words = "cancelled at the gate";
    assert_eq!(readable(&pg, &[words]).await, Vec::<String>::new());
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let sealed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM intake.cases WHERE personal_data IS NOT NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sealed, 0);
    pool.close().await;
    suite.stop().await;
}

/// Columns of the suite's schemas (text or bytes) holding any seeded value of `Li Wei`.
async fn readable_personal_data(url: &str) -> Vec<String> {
    readable(url, &["Li Wei", "li.wei@example.com", "8613800138000", "E73912458"]).await
}

/// Columns of the suite's schemas (text or bytes) holding any of `needles`.
async fn readable(url: &str, needles: &[&str]) -> Vec<String> {
    use sqlx::Row;
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let columns = sqlx::query(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
           AND data_type IN ('text', 'character varying', 'bytea')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(columns.len() > 30, "the scan sees the schemas: {} columns", columns.len());
    let mut found = Vec::new();
    for c in columns {
        let (schema, table, column, kind): (String, String, String, String) =
            (c.get(0), c.get(1), c.get(2), c.get(3));
        let sql = format!("SELECT \"{column}\" FROM \"{schema}\".\"{table}\" WHERE \"{column}\" IS NOT NULL");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await.unwrap();
        for row in rows {
            let value = if kind == "bytea" {
                String::from_utf8_lossy(&row.get::<Vec<u8>, _>(0)).into_owned()
            } else {
                row.get::<String, _>(0)
            };
            for seeded in needles.iter().filter(|s| value.contains(*s)) {
                found.push(format!("{schema}.{table}.{column} holds {seeded}"));
            }
        }
    }
    pool.close().await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_a_stopped_consumer_and_apply_once() {
    let mut suite = Distributed::start(12).await;
    suite.stop_service("triage").await;

    let mut clients = suite.clients().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let ack = clients
            .intake
            .open_case(lifecycle::cancelled_flight(&format!("wait-{i}"), &format!("Traveler {i}")))
            .await
            .unwrap()
            .into_inner();
        ids.push(ack.case_id.unwrap().value);
    }

    // With triage down nothing is triaged, however long we wait.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in &ids {
        let case = lifecycle::get_case(&mut clients, id).await;
        assert_eq!(case.status, common::CaseStatus::Open as i32);
    }

    suite.restart_service("triage").await;
    let mut clients = suite.clients().await;
    for id in &ids {
        eventually("triage after restart", Duration::from_secs(20), || {
            let mut c = clients.clone();
            let id = id.clone();
            async move {
                let case = lifecycle::get_case(&mut c, &id).await;
                (case.status != common::CaseStatus::Open as i32).then_some(())
            }
        })
        .await;
    }

    // Deliver every CaseOpened again, as a crashed relay or consumer would: nothing changes.
    let pg = suite.settings.database_url.as_deref().unwrap();
    let intake_db = detour_storage::connect(&DbSettings::new(pg, "intake")).await.unwrap();
    let rows = outbox_rows(&intake_db).await;
    assert!(rows.len() >= 3);
    let bus = detour_events::connect_bus(&suite.redis_url).unwrap();
    for row in &rows {
        let payload = row.payload.clone().into();
        bus.publish(detour_domain::events::streams::INTAKE, &row.event_id, payload).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    for id in &ids {
        let case = lifecycle::get_case(&mut clients, id).await;
        let triaged = case.timeline.iter().filter(|t| t.kind == "case.triaged").count();
        assert_eq!(triaged, 1, "case {id} triaged {triaged} times");
        clients.triage.get_triage(tri::GetTriageRequest { case_id: lifecycle::case_ref(id) }).await.unwrap();
    }
    let triage_db = detour_storage::connect(&DbSettings::new(pg, "triage")).await.unwrap();
    let triaged_events = outbox_count(&triage_db).await;
    assert_eq!(triaged_events, 3, "one CaseTriaged per case");
    let listed = clients
        .intake
        .list_cases(intake::ListCasesRequest { page_size: 2, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.cases.len(), 2);
    assert!(!listed.next_page_token.is_empty());
    intake_db.close().await;
    triage_db.close().await;
    suite.stop().await;
}
