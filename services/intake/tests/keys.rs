//! Key-encryption keys rotate without re-encrypting anything and without a moment when a
//! replica cannot read: intake restarted with a new primary KEK rewraps the stored data keys,
//! and once every replica runs the new ring the old KEK can go.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use detour_proto::common::v1 as common;
use detour_proto::intake::v1 as pb;
use detour_proto::intake::v1::intake_service_client::IntakeServiceClient;
use detour_server::Settings;
use detour_testkit::{Server, sqlite_settings};
use detour_vault::{KekSettings, generate_kek_base64};
use sqlx::Row;

fn open_request(name: &str) -> pb::OpenCaseRequest {
    pb::OpenCaseRequest {
        traveler: Some(common::Traveler {
            full_name: name.into(),
            email: "rotation@example.com".into(),
            document_number: "P1234567".into(),
            ..Default::default()
        }),
        segment: Some(detour_testkit::flight_segment()),
        channel: common::Channel::Email as i32,
        description: "Flight cancelled".into(),
        ..Default::default()
    }
}

async fn start(settings: &Settings) -> (Server, IntakeServiceClient<detour_testkit::Channel>) {
    let bus = detour_events::connect_bus("inproc://").unwrap();
    let server = Server::start(settings, &[detour_intake::MODULE], bus).await;
    let client = IntakeServiceClient::new(server.channel().await);
    (server, client)
}

async fn get(
    client: &mut IntakeServiceClient<detour_testkit::Channel>,
    id: &common::CaseId,
) -> Result<pb::Case, tonic::Status> {
    client
        .get_case(pb::GetCaseRequest { case_id: Some(id.clone()) })
        .await
        .map(|r| r.into_inner().case.unwrap())
}

async fn wrapping_keks(settings: &Settings) -> Vec<String> {
    let pool = sqlx::SqlitePool::connect(&settings.database_url_for("intake")).await.unwrap();
    let rows = sqlx::query("SELECT kek_id FROM data_keys ORDER BY version").fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows.iter().map(|r| r.get("kek_id")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kek_rotates_in_three_rollouts_and_the_data_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let k1 = KekSettings::new("kek-1", generate_kek_base64().unwrap());
    let k2 = KekSettings::new("kek-2", generate_kek_base64().unwrap());
    let base = sqlite_settings(dir.path());
    let ring = |keks: Vec<KekSettings>, primary: &str| Settings {
        vault_keks: keks,
        vault_primary_kek: primary.into(),
        ..base.clone()
    };
    let only_k1 = ring(vec![k1.clone()], "");
    let k1_primary = ring(vec![k1.clone(), k2.clone()], "kek-1");
    let k2_primary = ring(vec![k1.clone(), k2.clone()], "kek-2");
    let only_k2 = ring(vec![k2.clone()], "");

    let (server, mut client) = start(&only_k1).await;
    let ack = client.open_case(open_request("Rota Tion")).await.unwrap().into_inner();
    let id = ack.case_id.unwrap();
    server.stop().await;
    assert_eq!(wrapping_keks(&only_k1).await, ["kek-1"]);

    // Rollout 1: the new KEK is known but not used yet.
    let (server, mut client) = start(&k1_primary).await;
    assert_eq!(get(&mut client, &id).await.unwrap().traveler.unwrap().full_name, "Rota Tion");
    server.stop().await;
    assert_eq!(wrapping_keks(&k1_primary).await, ["kek-1"]);

    // Rollout 2: the new KEK is primary; the data key is rewrapped at start-up.
    let (server, mut client) = start(&k2_primary).await;
    assert_eq!(get(&mut client, &id).await.unwrap().traveler.unwrap().document_number, "P1234567");
    server.stop().await;
    assert_eq!(wrapping_keks(&k2_primary).await, ["kek-2"]);

    // Rollout 3: the old KEK is gone; old and new cases read and write as before.
    let (server, mut client) = start(&only_k2).await;
    assert_eq!(get(&mut client, &id).await.unwrap().traveler.unwrap().email, "rotation@example.com");
    let second = client.open_case(open_request("Second Case")).await.unwrap().into_inner();
    assert_eq!(
        get(&mut client, &second.case_id.unwrap()).await.unwrap().traveler.unwrap().full_name,
        "Second Case"
    );
    server.stop().await;

    // A replica that never learnt the new KEK refuses to start rather than fail every read.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stale = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        detour_intake::run(&only_k1, listener, std::future::pending()),
    )
    .await
    .expect("start-up ends")
    .unwrap_err()
    .to_string();
    assert!(stale.contains("rewrapping data keys") && stale.contains("kek-2"), "{stale}");
}

#[tokio::test]
async fn without_a_kek_a_postgres_deployment_refuses_to_start() {
    let settings = Settings {
        database_url: Some("postgres://127.0.0.1:5432/none".into()),
        ..detour_testkit::test_settings()
    };
    let err = settings.personal_data_keys().unwrap_err().to_string();
    assert!(err.contains("DETOUR_VAULT_KEKS"), "{err}");
    let bad = Settings { vault_keks: vec![KekSettings::new("k", "short")], ..settings };
    let err = bad.personal_data_keys().unwrap_err().to_string();
    assert!(err.contains("DETOUR_VAULT_KEKS") && err.contains("keks[0].key"), "{err}");
    assert!(!err.contains("short"), "a key is never quoted: {err}");
}
