//! The loop every consuming service runs: read deliveries, decode, handle, settle.
//!
//! Handlers must be idempotent, because delivery is at least once: the usual shape is one
//! database transaction that first calls [`crate::outbox::mark_processed_pg`] (returning early
//! when it says the event was already processed), then applies the event, then commits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use detour_proto::events::v1::Envelope;
use detour_storage::StorageError;
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::bus::{BusError, Delivery, EventBus, Subscription};
use crate::metrics::{EventMetrics, GroupLabels, GroupOutcomeLabels};
use crate::trace;

/// Applies one kind of event stream to a service's state.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Handles one event. `event_id` is the id the transport delivered it under (the envelope's
    /// own id); the envelope's `trace_context` has already become the parent of the current span.
    async fn handle(&self, event_id: &str, envelope: Envelope) -> Result<(), HandlerError>;
}

/// Why a handler failed, which decides what happens to the event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event can never be handled (bad payload, unknown case): dead-letter it at once.
    #[error("permanent failure: {0}")]
    Permanent(String),
    /// Something outside the event failed (database, supplier): try again later, and
    /// dead-letter it after [`ConsumerSettings::max_attempts`].
    #[error("transient failure: {0}")]
    Transient(String),
}

impl HandlerError {
    pub fn permanent(reason: impl std::fmt::Display) -> Self {
        Self::Permanent(reason.to_string())
    }

    pub fn transient(reason: impl std::fmt::Display) -> Self {
        Self::Transient(reason.to_string())
    }
}

/// A database failure is worth retrying: constraint violations caused by the event itself
/// settle after `max_attempts` in the dead-letter stream, where an operator sees them.
impl From<StorageError> for HandlerError {
    fn from(e: StorageError) -> Self {
        Self::Transient(e.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub stream: String,
    /// The consuming service (all its replicas share the group and split the work).
    pub group: String,
    /// This replica, unique within the group and stable across restarts where possible (a pod
    /// name), so that Redis keeps its pending list tidy.
    pub consumer_name: String,
    /// Deliveries of one event before a transient failure dead-letters it.
    pub max_attempts: u32,
    pub batch_size: usize,
    /// How long one read waits for new events.
    pub block: Duration,
}

impl ConsumerSettings {
    /// Defaults: 5 attempts, batches of 16, reads blocking 1 s.
    pub fn new(
        stream: impl Into<String>,
        group: impl Into<String>,
        consumer_name: impl Into<String>,
    ) -> Self {
        Self {
            stream: stream.into(),
            group: group.into(),
            consumer_name: consumer_name.into(),
            max_attempts: 5,
            batch_size: 16,
            block: Duration::from_secs(1),
        }
    }
}

/// First wait after a transport error, doubled up to [`MAX_BACKOFF`] while errors continue.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs a consumer until `shutdown` is cancelled. Transport errors are logged and retried with
/// backoff; the loop never ends on its own. On shutdown the delivery being handled is finished
/// and settled; the rest of its batch is left unsettled and is delivered again later.
pub fn spawn_consumer(
    bus: Arc<dyn EventBus>,
    settings: ConsumerSettings,
    handler: Arc<dyn EventHandler>,
    metrics: EventMetrics,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let consumer = Consumer {
        labels: EventMetrics::group(&settings.stream, &settings.group),
        settings,
        handler,
        metrics,
    };
    tokio::spawn(consumer.run(bus, shutdown))
}

struct Consumer {
    settings: ConsumerSettings,
    handler: Arc<dyn EventHandler>,
    metrics: EventMetrics,
    labels: GroupLabels,
}

enum Settle {
    Ack,
    Retry,
    DeadLetter(String),
}

impl Consumer {
    async fn run(self, bus: Arc<dyn EventBus>, shutdown: CancellationToken) {
        let s = &self.settings;
        let mut backoff = MIN_BACKOFF;
        let mut subscription: Option<Box<dyn Subscription>> = None;
        while !shutdown.is_cancelled() {
            let result = match subscription.as_mut() {
                Some(sub) => tokio::select! {
                    () = shutdown.cancelled() => break,
                    batch = sub.next_batch(s.batch_size, s.block) => batch.map(Some),
                },
                None => tokio::select! {
                    () = shutdown.cancelled() => break,
                    sub = bus.subscribe(&s.stream, &s.group, &s.consumer_name) => sub.map(|sub| {
                        subscription = Some(sub);
                        None
                    }),
                },
            };
            match result {
                Ok(Some(batch)) => {
                    backoff = MIN_BACKOFF;
                    if let Some(sub) = subscription.as_mut() {
                        for delivery in batch {
                            self.process(sub.as_mut(), delivery).await;
                            if shutdown.is_cancelled() {
                                break;
                            }
                        }
                    }
                }
                Ok(None) => backoff = MIN_BACKOFF,
                Err(e) => {
                    self.metrics.transport_errors.get_or_create(&self.labels).inc();
                    tracing::warn!(
                        stream = %s.stream, group = %s.group, error = %e, retry_in = ?backoff,
                        "event bus error in consumer"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                }
            }
        }
        tracing::debug!(stream = %s.stream, group = %s.group, "consumer stopped");
    }

    async fn process(&self, sub: &mut dyn Subscription, delivery: Delivery) {
        let s = &self.settings;
        let settle = match Envelope::decode(delivery.payload.clone()) {
            Err(e) => Settle::DeadLetter(format!("undecodable envelope: {e}")),
            Ok(envelope) => {
                let span = tracing::info_span!(
                    "handle event",
                    otel.kind = "consumer",
                    stream = %s.stream,
                    group = %s.group,
                    event_id = %delivery.event_id,
                    attempt = delivery.attempt,
                );
                // Fails only when no OpenTelemetry layer is installed; the span is then a plain
                // tracing span, which is fine.
                let _ = span.set_parent(trace::extract(&envelope.trace_context));
                let started = Instant::now();
                let outcome = self.run_handler(&delivery.event_id, envelope, span).await;
                self.metrics
                    .handle_seconds
                    .get_or_create(&self.labels)
                    .observe(started.elapsed().as_secs_f64());
                match outcome {
                    Ok(()) => Settle::Ack,
                    Err(HandlerError::Permanent(reason)) => Settle::DeadLetter(reason),
                    Err(HandlerError::Transient(reason)) if delivery.attempt >= s.max_attempts => {
                        Settle::DeadLetter(format!("gave up after {} attempts: {reason}", delivery.attempt))
                    }
                    Err(HandlerError::Transient(reason)) => {
                        tracing::info!(
                            stream = %s.stream, group = %s.group, event_id = %delivery.event_id,
                            attempt = delivery.attempt, %reason, "event handling failed; will retry"
                        );
                        Settle::Retry
                    }
                }
            }
        };
        let (outcome, settled) = match &settle {
            Settle::Ack => ("ok", sub.ack(&delivery).await),
            Settle::Retry => ("retry", sub.retry_later(&delivery).await),
            Settle::DeadLetter(reason) => {
                tracing::warn!(
                    stream = %s.stream, group = %s.group, event_id = %delivery.event_id,
                    attempt = delivery.attempt, %reason, "dead-lettering event"
                );
                ("dead_letter", sub.dead_letter(&delivery, reason).await)
            }
        };
        match settled {
            Ok(()) => {
                self.metrics
                    .consumed
                    .get_or_create(&GroupOutcomeLabels {
                        stream: s.stream.clone(),
                        group: s.group.clone(),
                        outcome,
                    })
                    .inc();
                if matches!(settle, Settle::DeadLetter(_)) {
                    self.metrics.dead_lettered.get_or_create(&self.labels).inc();
                }
            }
            // Unsettled deliveries come back, so nothing is lost; the handler must cope with
            // seeing the event again, as always.
            Err(e) => self.log_settle_error(&delivery, outcome, &e),
        }
    }

    /// Runs the handler in a task of its own so that a panic in it fails this delivery (retried
    /// like a transient error) instead of killing the consumer.
    async fn run_handler(
        &self,
        event_id: &str,
        envelope: Envelope,
        span: tracing::Span,
    ) -> Result<(), HandlerError> {
        let handler = self.handler.clone();
        let event_id = event_id.to_owned();
        let task = tokio::spawn(async move { handler.handle(&event_id, envelope).await }.instrument(span));
        match task.await {
            Ok(result) => result,
            Err(e) => Err(HandlerError::Transient(format!("handler task failed: {e}"))),
        }
    }

    fn log_settle_error(&self, delivery: &Delivery, outcome: &str, e: &BusError) {
        self.metrics.transport_errors.get_or_create(&self.labels).inc();
        tracing::warn!(
            stream = %self.settings.stream, group = %self.settings.group, event_id = %delivery.event_id,
            outcome, error = %e, "could not settle delivery; it will be delivered again"
        );
    }
}
