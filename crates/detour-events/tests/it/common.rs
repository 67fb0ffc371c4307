//! Helpers shared by every test: transports, databases, envelopes, metrics, waiting.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use detour_events::bus::{BusError, DeadLetter, EventBus, Subscription};
use detour_events::{InProcBus, InProcSettings, RedisBus, RedisSettings};
use detour_proto::common::v1::{CaseId, EventId};
use detour_proto::events::v1::{CaseResolved, Envelope, envelope};
use detour_storage::{Db, DbSettings};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

/// A name no other test (or earlier run against the same Redis) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// The transports the bus contract runs against.
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    InProc,
    Redis,
}

/// Short delays keep the suite fast; behaviour is the same as with the defaults.
pub const RETRY_DELAY: Duration = Duration::from_millis(300);

impl Transport {
    pub fn bus(self) -> Arc<dyn EventBus> {
        match self {
            Transport::InProc => Arc::new(InProcBus::new(InProcSettings {
                publish_timeout: Duration::from_secs(10),
                retry_delay: Duration::from_millis(50),
                ..Default::default()
            })),
            Transport::Redis => Arc::new(
                RedisBus::new(
                    &detour_storage::testing::redis_url(),
                    RedisSettings { retry_delay: RETRY_DELAY, ..Default::default() },
                )
                .expect("redis url"),
            ),
        }
    }
}

pub fn envelope(event_id: &str) -> Envelope {
    Envelope {
        event_id: Some(EventId { value: event_id.to_owned() }),
        producer: "test".to_owned(),
        case_id: Some(CaseId { value: "case-1".to_owned() }),
        occurred_at: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
        trace_context: Default::default(),
        actor: None,
        event: Some(envelope::Event::CaseResolved(CaseResolved::default())),
    }
}

pub fn payload(event_id: &str) -> Bytes {
    use prost::Message;
    Bytes::from(envelope(event_id).encode_to_vec())
}

/// Publishes in the background: the in-process bus only returns once the event is consumed.
pub fn publish_bg(bus: &Arc<dyn EventBus>, stream: &str, ids: &[&str]) -> JoinHandle<Result<(), BusError>> {
    let bus = bus.clone();
    let stream = stream.to_owned();
    let ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    tokio::spawn(async move {
        for id in ids {
            bus.publish(&stream, &id, payload(&id)).await?;
        }
        Ok(())
    })
}

/// Reads until `want` deliveries arrived (or 5 s passed), without settling them.
pub async fn read_n(sub: &mut Box<dyn Subscription>, want: usize) -> Vec<detour_events::Delivery> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while got.len() < want && tokio::time::Instant::now() < deadline {
        got.extend(sub.next_batch(want - got.len(), Duration::from_millis(200)).await.unwrap());
    }
    got
}

/// Polls `check` until it returns Some, failing the test after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of one series in the registry's text exposition, e.g.
/// `events_dead_lettered_total{stream="s",group="g"}`.
pub fn metric(registry: &Registry, series: &str) -> Option<f64> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// The database backends the outbox tests run against.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const SCHEMA: &str = "svc";

/// A migrated, empty database; the temp dir (SQLite) must outlive the pool.
pub async fn fresh_db(backend: Backend) -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Sqlite => detour_storage::testing::fresh_sqlite_url(dir.path()),
        Backend::Postgres => detour_storage::testing::fresh_postgres_url().await.unwrap(),
    };
    let db = detour_storage::connect(&DbSettings::new(url, SCHEMA)).await.unwrap();
    detour_storage::migrate(&db, SCHEMA, &[]).await.unwrap();
    (db, dir)
}

/// A bus that records what the relay publishes and fails on demand.
#[derive(Debug, Default)]
pub struct RecordingBus {
    pub published: Mutex<Vec<(String, String)>>,
    pub failing: AtomicBool,
}

impl RecordingBus {
    pub fn published(&self) -> Vec<(String, String)> {
        self.published.lock().unwrap().clone()
    }

    pub fn event_ids(&self) -> Vec<String> {
        self.published().into_iter().map(|(_, id)| id).collect()
    }
}

#[async_trait]
impl EventBus for RecordingBus {
    async fn publish(&self, stream: &str, event_id: &str, _payload: Bytes) -> Result<(), BusError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(BusError::Malformed("transport down (test)".to_owned()));
        }
        self.published.lock().unwrap().push((stream.to_owned(), event_id.to_owned()));
        Ok(())
    }

    async fn subscribe(&self, _: &str, _: &str, _: &str) -> Result<Box<dyn Subscription>, BusError> {
        Err(BusError::NoSubscribers)
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }

    async fn dead_letters(&self, _: &str) -> Result<Vec<DeadLetter>, BusError> {
        Ok(Vec::new())
    }
}
