//! Prometheus metrics of the outbox relay and the consumers.
//!
//! Labels are stream, group and outcome only: never an event id, a case or anything about a
//! traveller, which would both leak personal data and explode cardinality.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StreamLabels {
    pub stream: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StreamOutcomeLabels {
    pub stream: String,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GroupLabels {
    pub stream: String,
    pub group: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GroupOutcomeLabels {
    pub stream: String,
    pub group: String,
    pub outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn handle_seconds_histogram() -> Histogram {
    // 1 ms to ~16 s: a handler is one database transaction, possibly a call to a supplier.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Handles to the event metrics; clones share the same series.
#[derive(Debug, Clone)]
pub struct EventMetrics {
    pub(crate) published: Family<StreamLabels, Counter>,
    pub(crate) publish_failures: Family<StreamOutcomeLabels, Counter>,
    pub(crate) outbox_backlog: Family<StreamLabels, Gauge>,
    pub(crate) consumed: Family<GroupOutcomeLabels, Counter>,
    pub(crate) dead_lettered: Family<GroupLabels, Counter>,
    pub(crate) handle_seconds: HistogramFamily<GroupLabels>,
    pub(crate) transport_errors: Family<GroupLabels, Counter>,
}

impl EventMetrics {
    /// Creates the metrics and registers them in `registry` (pass a sub-registry to prefix them).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        registry.register(
            "events_published",
            "Outbox events handed to the event bus",
            metrics.published.clone(),
        );
        registry.register(
            "events_publish_failures",
            "Attempts to publish an outbox event that failed, by outcome (no_subscribers, timeout, transport)",
            metrics.publish_failures.clone(),
        );
        registry.register(
            "events_outbox_backlog",
            "Outbox events not yet published",
            metrics.outbox_backlog.clone(),
        );
        registry.register(
            "events_consumed",
            "Deliveries handled by consumers, by outcome (ok, retry, dead_letter)",
            metrics.consumed.clone(),
        );
        registry.register(
            "events_dead_lettered",
            "Events moved to the dead-letter stream by a consumer group",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "events_handle_seconds",
            "Time spent in event handlers",
            metrics.handle_seconds.clone(),
        );
        registry.register(
            "events_consumer_transport_errors",
            "Event bus errors seen by consumers (each followed by a backoff)",
            metrics.transport_errors.clone(),
        );
        metrics
    }

    /// Metrics that count but are exported nowhere, for tools and tests that do not scrape.
    pub fn unregistered() -> Self {
        Self {
            published: Family::default(),
            publish_failures: Family::default(),
            outbox_backlog: Family::default(),
            consumed: Family::default(),
            dead_lettered: Family::default(),
            handle_seconds: HistogramFamily::new_with_constructor(handle_seconds_histogram),
            transport_errors: Family::default(),
        }
    }

    pub(crate) fn stream(stream: &str) -> StreamLabels {
        StreamLabels { stream: stream.to_owned() }
    }

    pub(crate) fn group(stream: &str, group: &str) -> GroupLabels {
        GroupLabels { stream: stream.to_owned(), group: group.to_owned() }
    }
}

impl Default for EventMetrics {
    fn default() -> Self {
        Self::unregistered()
    }
}
