//! How Detour's services tell each other what happened.
//!
//! A service never calls another to report a change. It writes a domain event
//! ([`detour_proto::events::v1::Envelope`]) to its own outbox table in the same transaction as the
//! change ([`outbox::enqueue_pg`], [`outbox::enqueue_sqlite`]); the [`outbox::Relay`] then hands
//! each committed event to an [`bus::EventBus`], and every consuming service runs a
//! [`consumer::spawn_consumer`] loop that applies the event exactly once per consumer by
//! recording it with [`outbox::mark_processed_pg`] / [`outbox::mark_processed_sqlite`] inside
//! the transaction that applies it.
//!
//! Delivery is at least once end to end: the relay may publish an event twice (crash between
//! publishing and marking the row), the bus may deliver it twice (crash before the ack), and the
//! idempotency record turns both into no-ops.
//!
//! Two transports implement [`bus::EventBus`], chosen by URL with [`bus::connect_bus`]:
//! - [`inproc::InProcBus`] (`inproc://`): every service in one process, no broker. Its publish
//!   waits until every consumer group has taken the event, so the outbox stays the durable copy.
//! - [`redis_streams::RedisBus`] (`redis://…`): Redis Streams with consumer groups, for services
//!   deployed separately and scaled to several replicas.

pub mod bus;
pub mod consumer;
pub mod inproc;
pub mod metrics;
pub mod outbox;
pub mod redis_streams;
pub mod repository;
mod trace;

/// For [`sql_repositories!`], which expands in service crates.
#[doc(hidden)]
pub mod __private {
    pub use detour_storage;
    pub use sqlx;
}

pub use bus::{BusError, DeadLetter, Delivery, EventBus, Subscription, connect_bus, connect_bus_with};
pub use consumer::{ConsumerSettings, EventHandler, HandlerError, spawn_consumer};
pub use inproc::{InProcBus, InProcSettings};
pub use metrics::EventMetrics;
pub use outbox::{Relay, RelayHandle, RelaySettings};
pub use redis_streams::{RedisBus, RedisSettings};
