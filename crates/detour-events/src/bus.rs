//! The transport contract every event bus implements, and the URL that picks one.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::inproc::{InProcBus, InProcSettings};
use crate::redis_streams::{RedisBus, RedisSettings};

/// A transport for domain events: named streams, each read by any number of consumer groups.
///
/// Every group gets every event published to a stream; within a group, each event goes to one
/// of the group's consumers (replicas share the work). Delivery is at least once, so consumers
/// must be idempotent (see [`crate::outbox::mark_processed_pg`]).
#[async_trait]
pub trait EventBus: Send + Sync + fmt::Debug + 'static {
    /// Durably hands one event to the transport. Ok means every consumer group will get it.
    async fn publish(&self, stream: &str, event_id: &str, payload: Bytes) -> Result<(), BusError>;

    /// Joins `consumer` to `group` on `stream`, creating the group if needed. A new group starts
    /// with whatever the transport still holds for the stream, so a consumer that starts after
    /// events were published still sees them.
    async fn subscribe(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
    ) -> Result<Box<dyn Subscription>, BusError>;

    /// A round trip to the transport, for readiness checks.
    async fn ping(&self) -> Result<(), BusError>;

    /// Messages moved to the dead-letter stream of `stream` (for operators and tests).
    async fn dead_letters(&self, stream: &str) -> Result<Vec<DeadLetter>, BusError>;
}

/// One consumer's membership in a consumer group.
///
/// Every delivery must end in exactly one of [`ack`](Self::ack),
/// [`retry_later`](Self::retry_later) or [`dead_letter`](Self::dead_letter); one that ends in none
/// (the consumer crashed or dropped the subscription) is delivered again, possibly to another
/// consumer of the group.
#[async_trait]
pub trait Subscription: Send {
    /// Up to `max` deliveries, waiting at most `block` when none is ready (returns empty then).
    async fn next_batch(&mut self, max: usize, block: Duration) -> Result<Vec<Delivery>, BusError>;

    /// The group is done with this delivery.
    async fn ack(&mut self, delivery: &Delivery) -> Result<(), BusError>;

    /// Leaves the delivery un-acked so it is delivered again later (attempt + 1).
    async fn retry_later(&mut self, delivery: &Delivery) -> Result<(), BusError>;

    /// Moves the delivery to the stream's dead-letter store with `reason`, and acks it.
    async fn dead_letter(&mut self, delivery: &Delivery, reason: &str) -> Result<(), BusError>;
}

/// One event handed to one consumer.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The transport's own id for this message (a Redis stream entry id, a counter in process).
    pub transport_id: String,
    /// The producer's event id, the key consumers deduplicate on.
    pub event_id: String,
    /// The encoded [`detour_proto::events::v1::Envelope`].
    pub payload: Bytes,
    /// 1 on first delivery, incremented each time the event is delivered again to this group.
    pub attempt: u32,
}

/// An event a consumer group gave up on, kept for operators.
#[derive(Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub event_id: String,
    pub group: String,
    pub reason: String,
    pub payload: Bytes,
}

// Payloads carry travellers' personal data: Debug output (which ends up in logs) shows only
// their size.
impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("transport_id", &self.transport_id)
            .field("event_id", &self.event_id)
            .field("payload_len", &self.payload.len())
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("event_id", &self.event_id)
            .field("group", &self.group)
            .field("reason", &self.reason)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("unsupported event bus URL scheme `{0}`: use inproc:// or redis://…")]
    UnsupportedUrl(String),
    #[error("invalid event bus URL: {0}")]
    InvalidUrl(String),
    /// No consumer group reads the stream yet (in-process bus only): the event stays in the
    /// outbox until one subscribes.
    #[error("no consumer group subscribes to this stream yet")]
    NoSubscribers,
    /// Not every consumer group took the event in time (in-process bus only). The publish may be
    /// repeated safely: groups that already have the event do not get it twice.
    #[error("timed out waiting for every consumer group to take the event")]
    Timeout,
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("malformed message from the transport: {0}")]
    Malformed(String),
}

/// Settings for whichever transport a URL picks.
#[derive(Debug, Clone, Default)]
pub struct BusSettings {
    pub inproc: InProcSettings,
    pub redis: RedisSettings,
}

/// Opens the bus a URL names, with default settings: `inproc://` for a new [`InProcBus`],
/// `redis://…` (or `rediss://…`) for a [`RedisBus`]. Connecting to Redis is lazy, so an
/// unreachable server shows up in [`EventBus::ping`] and in publish errors, not here.
pub fn connect_bus(url: &str) -> Result<Arc<dyn EventBus>, BusError> {
    connect_bus_with(url, BusSettings::default())
}

/// [`connect_bus`] with explicit settings.
pub fn connect_bus_with(url: &str, settings: BusSettings) -> Result<Arc<dyn EventBus>, BusError> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some("inproc") => Ok(Arc::new(InProcBus::new(settings.inproc))),
        Some("redis" | "rediss") => Ok(Arc::new(RedisBus::new(url, settings.redis)?)),
        Some(other) => Err(BusError::UnsupportedUrl(other.to_owned())),
        None => Err(BusError::InvalidUrl("no scheme: use inproc:// or redis://…".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn url_scheme_picks_the_transport() {
        assert!(format!("{:?}", connect_bus("inproc://").unwrap()).contains("InProcBus"));
        assert!(format!("{:?}", connect_bus("redis://127.0.0.1:6379").unwrap()).contains("RedisBus"));
        let err = connect_bus("nats://localhost:4222").unwrap_err();
        assert!(matches!(&err, BusError::UnsupportedUrl(s) if s == "nats"), "{err}");
        assert!(err.to_string().contains("`nats`"));
        assert!(matches!(connect_bus("inproc:").unwrap_err(), BusError::InvalidUrl(_)));
        assert!(matches!(connect_bus("redis://:6379:x/").unwrap_err(), BusError::InvalidUrl(_)));
    }

    #[test]
    fn debug_output_hides_payloads() {
        let d = Delivery {
            transport_id: "1".into(),
            event_id: "e".into(),
            payload: Bytes::from_static(b"Jane Doe, passport X123"),
            attempt: 1,
        };
        let shown = format!("{d:?}");
        assert!(!shown.contains("Jane"), "{shown}");
        assert!(shown.contains("payload_len: 23"), "{shown}");
    }
}
