//! The event bus from a test's side: publishing as another service would, watching what a
//! service publishes, and a Redis of one's own.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use detour_events::{BusError, EventBus};
use detour_proto::events::v1::Envelope;
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::eventually;

/// The envelope's event id.
pub fn event_id(env: &Envelope) -> String {
    env.event_id.as_ref().map(|e| e.value.clone()).unwrap()
}

/// Publishes `env` on `stream` as another service's relay would. The in-process bus refuses a
/// stream nobody reads yet (the consumer subscribes in the background, and health can say
/// SERVING first), so this retries that for a while; it returns once every group has handled
/// the event.
pub async fn publish(bus: &Arc<dyn EventBus>, stream: &str, env: &Envelope) {
    let id = event_id(env);
    let payload = Bytes::from(env.encode_to_vec());
    let what = format!("a consumer of {stream} to take event {id}");
    eventually(&what, Duration::from_secs(10), || {
        let payload = payload.clone();
        let id = id.clone();
        async move {
            match bus.publish(stream, &id, payload).await {
                Ok(()) => Some(()),
                Err(BusError::NoSubscribers) => None,
                Err(e) => panic!("publishing to {stream} failed: {e}"),
            }
        }
    })
    .await;
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

/// The next envelope [`observe`] saw, within 10 s.
pub async fn next_event(rx: &mut mpsc::UnboundedReceiver<Envelope>) -> Envelope {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("no event within 10 s").unwrap()
}

/// A Redis logical database to itself, emptied, so parallel test binaries never share streams.
pub async fn fresh_redis(db: u8) -> String {
    let base = detour_storage::testing::redis_url();
    let url = format!("{}/{db}", base.trim_end_matches('/'));
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
    url
}
