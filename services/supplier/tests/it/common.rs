//! Helpers shared by the tests: databases, segments, triage events, the outbox, a running
//! server and the bus around it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use detour_domain::{CaseCategory, CaseId, Instant, Severity, events, time};
use detour_events::bus::{BusError, EventBus};
use detour_proto::common::v1 as common;
use detour_proto::events::v1::{CaseTriaged, Envelope, envelope::Event};
use detour_proto::supplier::v1::supplier_service_client::SupplierServiceClient;
use detour_storage::{Db, DbSettings};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A migrated, empty database of the service; the temp dir (SQLite) must outlive the pool.
pub async fn fresh_db(backend: Backend) -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Sqlite => detour_storage::testing::fresh_sqlite_url(dir.path()),
        Backend::Postgres => detour_storage::testing::fresh_postgres_url().await.unwrap(),
    };
    let db = detour_storage::connect(&DbSettings::new(url, detour_supplier::NAME)).await.unwrap();
    detour_storage::migrate(&db, detour_supplier::NAME, detour_supplier::MIGRATIONS).await.unwrap();
    (db, dir)
}

/// Every outbox row, oldest first: its stream and its decoded envelope.
pub async fn outbox(db: &Db) -> Vec<(String, Envelope)> {
    const SQL: &str = "SELECT stream, payload FROM outbox ORDER BY seq";
    let rows: Vec<(String, Vec<u8>)> = match db {
        Db::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
        Db::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
    };
    rows.into_iter()
        .map(|(stream, payload)| (stream, Envelope::decode(payload.as_slice()).unwrap()))
        .collect()
}

pub async fn count(db: &Db, table: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
    match db {
        Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

pub fn at(seconds: i64) -> Instant {
    time::from_micros(seconds * 1_000_000).unwrap()
}

pub fn flight(supplier_code: &str) -> common::Segment {
    common::Segment {
        kind: common::SegmentKind::Flight as i32,
        supplier_code: supplier_code.into(),
        service_reference: "CA981".into(),
        origin: "PEK".into(),
        destination: "JFK".into(),
        starts_at: Some(prost_types::Timestamp { seconds: 1_796_000_000, nanos: 0 }),
        ends_at: None,
        booking_reference: "PNR123".into(),
        price: Some(common::Money { amount_minor: 520_000, currency: "CNY".into() }),
    }
}

pub fn triaged(case_id: CaseId, occurred_at: Instant, severity: Severity, needs_supplier: bool) -> Envelope {
    events::envelope(
        "triage",
        case_id,
        occurred_at,
        Event::CaseTriaged(CaseTriaged {
            category: CaseCategory::FlightCancellation.to_proto(),
            severity: severity.to_proto(),
            queue: "disruption".into(),
            first_response_due: None,
            resolution_due: None,
            needs_supplier,
            segment: Some(flight("ca")),
            rationale: "flight cancelled on the day".into(),
        }),
    )
}

pub fn event_id(env: &Envelope) -> String {
    env.event_id.as_ref().map(|e| e.value.clone()).unwrap()
}

/// Publishes as another service's relay would: the in-process bus refuses a stream nobody reads
/// yet, and returns once every group has handled the event.
pub async fn publish(bus: &Arc<dyn EventBus>, stream: &str, env: &Envelope) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match bus.publish(stream, &event_id(env), Bytes::from(env.encode_to_vec())).await {
            Ok(()) => return,
            Err(BusError::NoSubscribers) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("publishing to {stream} failed: {e}"),
        }
    }
}

/// Reads `stream` as a consumer group of its own, acking everything, so the service's relay
/// can publish and the test can see what it published.
pub async fn observe(
    bus: &Arc<dyn EventBus>,
    stream: &str,
) -> (mpsc::UnboundedReceiver<Envelope>, JoinHandle<()>) {
    let mut sub = bus.subscribe(stream, "test-observer", "test").await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok(batch) = sub.next_batch(16, Duration::from_millis(200)).await else { return };
            for delivery in batch {
                let _ = sub.ack(&delivery).await;
                if tx.send(Envelope::decode(delivery.payload).unwrap()).is_err() {
                    return;
                }
            }
        }
    });
    (rx, task)
}

pub async fn next_event(rx: &mut mpsc::UnboundedReceiver<Envelope>) -> Envelope {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("no event within 10 s").unwrap()
}

pub struct Server {
    pub bus: Arc<dyn EventBus>,
    pub client: SupplierServiceClient<Channel>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), detour_server::HostError>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// The service on a loopback port with a SQLite file and an in-process bus, once it serves.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let settings = detour_server::Settings {
            database_url: Some(detour_storage::testing::fresh_sqlite_url(dir.path())),
            events_url: "inproc://".into(),
            ..Default::default()
        };
        let bus = detour_events::bus::connect_bus("inproc://").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let bus = bus.clone();
            async move {
                let shutdown = async {
                    let _ = stopped.await;
                };
                detour_server::host::serve(
                    &settings,
                    &[detour_supplier::MODULE],
                    bus,
                    listener,
                    None,
                    shutdown,
                )
                .await
            }
        });
        let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
        wait_serving(channel.clone()).await;
        Self { bus, client: SupplierServiceClient::new(channel), stop, task, _dir: dir }
    }

    pub async fn stop(self) {
        drop(self.client);
        let _ = self.stop.send(());
        let result =
            tokio::time::timeout(Duration::from_secs(15), self.task).await.expect("server did not stop");
        result.unwrap().unwrap();
    }
}

async fn wait_serving(channel: Channel) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut health = HealthClient::new(channel);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let request = HealthCheckRequest { service: detour_proto::service_names::SUPPLIER.into() };
        if let Ok(answer) = health.check(request).await
            && answer.into_inner().status == ServingStatus::Serving as i32
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "service never became SERVING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
