//! The notification dispatcher: claims due notifications, renders each in the traveler's
//! language for its current channel, sends it, and records what happened. A transient failure
//! is retried on the same channel with growing pauses; a permanent one (or a channel this
//! deployment cannot send on, or a channel out of retries) moves on at once, in the same
//! delivery, to the traveler's next channel; when none is left the
//! notification is undeliverable and an agent must call. Several replicas dispatch at once:
//! each claims its notifications with a lease, and a crashed replica's claims run out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use detour_domain::{Channel, time};
use detour_notify::{
    Affected, DisruptionFacts, Language, Notifiers, NotifyChannel, OutgoingMessage, SendError, TemplateVars,
};
use detour_vault::SecretString;
use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::crisis::{
    DeliveryAttempt, DisruptionKind, DueNotification, Incident, NextStep, Purpose, Scope, SendResult,
};
use crate::error::IntakeError;
use crate::keys::PersonalDataKeys;
use crate::repo::IntakeRepository;

#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Notifications claimed per round.
    pub batch: u32,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// How long a claim holds before another replica may send the notification.
    pub lease: Duration,
    /// Attempts on one channel before moving to the next.
    pub attempts_per_channel: i32,
    /// Pause before the first retry; doubled for each further one.
    pub first_retry: Duration,
    /// How often to look for due notifications when nothing wakes the dispatcher; also how
    /// often the claim runs while handed notifications keep it busy.
    pub poll: Duration,
    /// Notifications a writer may hand over in memory and not yet taken by the dispatcher;
    /// beyond that they are left to the claim. 0 turns the handoff off.
    pub handoff: usize,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            batch: 500,
            concurrency: 64,
            lease: Duration::from_secs(60),
            attempts_per_channel: 3,
            first_retry: Duration::from_secs(10),
            poll: Duration::from_millis(500),
            handoff: 2_000,
        }
    }
}

impl DispatchSettings {
    /// The claim's lease as a span of the domain's clock.
    fn lease_span(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(60))
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    /// `handoff` (from this process's own writer, in memory) or `claim` (read back from the table).
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SendLabels {
    channel: &'static str,
    /// `delivered`, `retry`, `next_channel` or `undeliverable`.
    outcome: &'static str,
}

/// What the dispatcher took and how its sends went, for the `/metrics` endpoint. Labels are
/// channel and outcome only, never a traveler or a case.
#[derive(Debug, Clone, Default)]
pub struct DispatchMetrics {
    taken: Family<SourceLabels, Counter>,
    sends: Family<SendLabels, Counter>,
}

impl DispatchMetrics {
    pub fn new(registry: Option<&mut Registry>) -> Self {
        let metrics = Self::default();
        if let Some(registry) = registry {
            registry.register(
                "notifications_taken",
                "Notifications the dispatcher took to send, by source (handoff: from its own writer in memory; claim: read back from the table)",
                metrics.taken.clone(),
            );
            registry.register(
                "notification_sends",
                "Send attempts by channel and outcome (delivered, retry, next_channel, undeliverable)",
                metrics.sends.clone(),
            );
        }
        metrics
    }

    fn took(&self, source: &'static str, n: usize) {
        if n > 0 {
            self.taken.get_or_create(&SourceLabels { source }).inc_by(u64::try_from(n).unwrap_or(u64::MAX));
        }
    }

    fn sent(&self, result: &SendResult) {
        let Some((last, given_up)) = result.attempts.split_last() else { return };
        for attempt in given_up {
            self.sends
                .get_or_create(&SendLabels { channel: attempt.channel.as_str(), outcome: "next_channel" })
                .inc();
        }
        let outcome = match result.next {
            NextStep::Delivered => "delivered",
            NextStep::Retry { .. } => "retry",
            NextStep::NextChannel => "next_channel",
            NextStep::Undeliverable => "undeliverable",
        };
        self.sends.get_or_create(&SendLabels { channel: last.channel.as_str(), outcome }).inc();
    }
}

/// Notifications handed from the process that wrote them to its own dispatcher, so that a
/// storm's notices go out without the claim's second write and read of every row. A writer
/// reserves room first and writes the notifications leased; should this process die before
/// sending them, their lease runs out and any replica's claim takes them.
#[derive(Clone)]
pub struct Handoff {
    queue: mpsc::UnboundedSender<DueNotification>,
    room: Arc<Semaphore>,
    lease: chrono::Duration,
    wake: Arc<Notify>,
}

/// Room for notifications about to be written leased; given back when dropped unused.
pub struct Reservation {
    permit: OwnedSemaphorePermit,
    /// The lease to write the notifications with.
    pub until: detour_domain::Instant,
}

/// The dispatcher's end of a [`Handoff`].
pub struct Handed {
    queue: Mutex<mpsc::UnboundedReceiver<DueNotification>>,
    room: Arc<Semaphore>,
}

impl Handoff {
    pub fn new(settings: &DispatchSettings, wake: Arc<Notify>) -> (Self, Handed) {
        let (queue, incoming) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(settings.handoff));
        (
            Self { queue, room: room.clone(), lease: settings.lease_span(), wake },
            Handed { queue: Mutex::new(incoming), room },
        )
    }

    /// Room for `n` notifications, or `None` when the dispatcher is that far behind (or the
    /// handoff is off): the writer then leaves them due for the claim.
    pub fn reserve(&self, n: usize) -> Option<Reservation> {
        let permits = u32::try_from(n).ok().filter(|n| *n > 0)?;
        let permit = self.room.clone().try_acquire_many_owned(permits).ok()?;
        Some(Reservation { permit, until: time::now() + self.lease })
    }

    /// Wakes the dispatcher for notifications left to the claim.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Hands over what was written under `reservation`: those of its notifications that were
    /// written leased (never more than it reserved); the rest of its room is given back.
    pub fn hand(&self, reservation: Reservation, due: Vec<DueNotification>) {
        debug_assert!(due.len() <= reservation.permit.num_permits(), "handed more than reserved");
        let Reservation { mut permit, .. } = reservation;
        let kept = permit.split(due.len().min(permit.num_permits()));
        drop(permit);
        if let Some(kept) = kept {
            // Room comes back as the dispatcher takes the notifications off the queue.
            kept.forget();
        }
        for d in due {
            if self.queue.send(d).is_err() {
                // The dispatcher has stopped; the lease hands the notification to the claim.
                self.room.add_permits(1);
            }
        }
        self.wake.notify_one();
    }
}

impl Handed {
    /// Up to `limit` handed notifications, without waiting.
    fn take(&self, limit: usize) -> Vec<DueNotification> {
        let mut taken = Vec::new();
        if let Ok(mut queue) = self.queue.lock() {
            while taken.len() < limit {
                match queue.try_recv() {
                    Ok(d) => taken.push(d),
                    Err(_) => break,
                }
            }
        }
        self.room.add_permits(taken.len());
        taken
    }
}

pub struct Dispatcher {
    repo: Arc<dyn IntakeRepository>,
    keys: Arc<PersonalDataKeys>,
    notifiers: Notifiers,
    settings: DispatchSettings,
    wake: Arc<Notify>,
    handed: Handed,
    metrics: DispatchMetrics,
    last_claim: Mutex<LastClaim>,
}

/// When the claim last ran, and whether it came back full. While handed notifications keep the
/// dispatcher busy the claim still runs every `poll`, for retries and what was
/// written past the handoff's room; and at once after a full claim, so that a backlog in the
/// table (a dead replica's leases run out, an overflow) drains at the dispatcher's pace rather
/// than a batch per poll.
#[derive(Debug, Clone, Copy)]
struct LastClaim {
    at: std::time::Instant,
    full: bool,
}

impl LastClaim {
    fn due(&self, handed: usize, poll: Duration) -> bool {
        handed == 0 || self.full || self.at.elapsed() >= poll
    }
}

impl Dispatcher {
    pub fn new(
        repo: Arc<dyn IntakeRepository>,
        keys: Arc<PersonalDataKeys>,
        notifiers: Notifiers,
        settings: DispatchSettings,
        wake: Arc<Notify>,
        handed: Handed,
        metrics: DispatchMetrics,
    ) -> Self {
        let last_claim = Mutex::new(LastClaim { at: std::time::Instant::now(), full: false });
        Self { repo, keys, notifiers, settings, wake, handed, metrics, last_claim }
    }

    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.run_once().await {
                    tracing::warn!(error = %e, "notification dispatch failed; retrying");
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(self.settings.poll) => {}
                }
            }
        })
    }

    /// Sends everything due now; answers how many notifications were handled.
    pub async fn run_once(&self) -> Result<usize, IntakeError> {
        let mut handled = 0;
        // A round's results are recorded while the next round is claimed and sent: in a storm
        // the providers would otherwise wait on the database and the database on the providers.
        // The claim's lease keeps a round not yet recorded from being claimed again.
        let mut sent: Vec<SendResult> = Vec::new();
        loop {
            let record = async {
                if sent.is_empty() {
                    return Ok(());
                }
                self.repo.record_sends(&sent, time::now()).await
            };
            let (recorded, next) = tokio::join!(record, self.claim_and_send());
            if let Err(e) = recorded {
                // What went out meanwhile is still recorded, so that it is not sent again when
                // its lease runs out.
                if let Ok(next) = &next
                    && let Err(also) = self.repo.record_sends(next, time::now()).await
                {
                    tracing::warn!(error = %also, "recording sent notifications failed");
                }
                return Err(e);
            }
            handled += sent.len();
            sent = next?;
            if sent.is_empty() {
                return Ok(handled);
            }
        }
    }

    /// Takes the handed notifications and claims the ones due now, and sends them; their
    /// results, not yet recorded.
    async fn claim_and_send(&self) -> Result<Vec<SendResult>, IntakeError> {
        let batch = usize::try_from(self.settings.batch).unwrap_or(usize::MAX);
        // Failing over stops once half the lease is gone, so no delivery outlasts its lease.
        let fail_over_until = std::time::Instant::now() + self.settings.lease / 2;
        let mut due = self.handed.take(batch);
        self.metrics.took("handoff", due.len());
        let claim_now =
            self.last_claim.lock().map(|last| last.due(due.len(), self.settings.poll)).unwrap_or(true);
        if claim_now && due.len() < batch {
            let started = std::time::Instant::now();
            let now = time::now();
            let limit = u32::try_from(batch - due.len()).unwrap_or(self.settings.batch);
            let claimed = self.repo.claim_notifications(now, now + self.settings.lease_span(), limit).await;
            // A failed claim waits for the next poll too.
            let full = claimed.as_ref().is_ok_and(|c| u32::try_from(c.len()).is_ok_and(|n| n >= limit));
            if let Ok(mut last) = self.last_claim.lock() {
                *last = LastClaim { at: started, full };
            }
            match claimed {
                Ok(claimed) => {
                    self.metrics.took("claim", claimed.len());
                    due.extend(claimed);
                }
                // What was handed goes out anyway; the claim is tried again at the next poll.
                Err(e) if !due.is_empty() => tracing::warn!(error = %e, "claiming notifications failed"),
                Err(e) => return Err(e),
            }
        }
        Ok(futures::stream::iter(due)
            .map(|d| self.deliver(d, fail_over_until))
            .buffer_unordered(self.settings.concurrency)
            .collect()
            .await)
    }

    /// Sends on the notification's channel; a channel that fails for good (or has used up its
    /// retries) gives way to the next one at once, in the same delivery, rather than after
    /// recording the failure and claiming the notification again: the traveler hears now, and
    /// the database is spared a claim. After `fail_over_until` the next channel is left to the
    /// claim instead: sends on several channels one after another (a provider timing out on
    /// each) must not outlast the lease, or another claim would send again.
    async fn deliver(&self, due: DueNotification, fail_over_until: std::time::Instant) -> SendResult {
        let n = &due.notification;
        let mut attempts = Vec::new();
        let mut moved: u32 = 0;
        let mut index = n.channel_index;
        let mut on_channel = n.attempts_on_channel;
        let next = loop {
            let channel = n.channels.get(index).copied().unwrap_or(Channel::Email);
            let at = time::now();
            let outcome = self.send(&due, channel).await;
            let (accepted, detail, transient) = match outcome {
                Ok(id) => (true, id, false),
                Err(Failure::Transient(why)) => (false, why, true),
                Err(Failure::Permanent(why)) => (false, why, false),
            };
            attempts.push(DeliveryAttempt { at, channel, accepted, detail });
            if accepted {
                break NextStep::Delivered;
            }
            let failed = Failed {
                transient,
                attempts_on_channel: on_channel + 1,
                attempts_per_channel: self.settings.attempts_per_channel,
                another_channel: index + 1 < n.channels.len(),
                time_left: std::time::Instant::now() < fail_over_until,
            };
            match failed.then() {
                AfterFailure::Retry => {
                    let pause = self.settings.first_retry
                        * 2u32.saturating_pow(u32::try_from(on_channel).unwrap_or(0));
                    let retry =
                        at + chrono::Duration::from_std(pause).unwrap_or(chrono::Duration::seconds(60));
                    break NextStep::Retry { at: retry };
                }
                AfterFailure::GiveUp => break NextStep::Undeliverable,
                step @ (AfterFailure::TryNextNow | AfterFailure::LeaveNextToTheClaim) => {
                    index += 1;
                    on_channel = 0;
                    moved += 1;
                    if step == AfterFailure::LeaveNextToTheClaim {
                        break NextStep::NextChannel;
                    }
                }
            }
        };
        let result = SendResult { id: n.id, attempts, moved, next };
        self.metrics.sent(&result);
        result
    }

    /// Sends on `channel`; the provider's message id, or why not (no personal data).
    async fn send(&self, due: &DueNotification, channel: Channel) -> Result<String, Failure> {
        let n = &due.notification;
        let Some(sealed) = &due.sealed else {
            return Err(Failure::Permanent("the traveler's personal data was erased".into()));
        };
        let personal = self
            .keys
            .open(n.case_id, sealed)
            .await
            .map_err(|e| Failure::Transient(format!("personal data could not be opened: {e}")))?;
        let (notify_channel, to) = match channel {
            Channel::Email => (NotifyChannel::Email, personal.email().map(str::to_owned)),
            Channel::Sms => (NotifyChannel::Sms, personal.phone().map(str::to_owned)),
            Channel::App => (NotifyChannel::Push, Some(n.traveler_id.to_string())),
            Channel::Wechat => (NotifyChannel::Wechat, Some(n.traveler_id.to_string())),
            other => return Err(Failure::Permanent(format!("nothing can be sent on {other}"))),
        };
        let Some(to) = to else {
            return Err(Failure::Permanent(format!("no {} address for the traveler", channel.as_str())));
        };
        let language = Language::from_tag(&n.language);
        let vars = TemplateVars {
            case_number: due.case_number.clone(),
            first_response_due: Some(due.first_response_due),
            traveler_name: Some(SecretString::new(personal.full_name().to_owned())),
            disruption: due.incident.as_ref().map(facts),
        };
        let purpose = match n.purpose {
            Purpose::Acknowledgement => detour_notify::Purpose::Acknowledgement,
            Purpose::Disruption => detour_notify::Purpose::Disruption,
            Purpose::DisruptionUpdate => detour_notify::Purpose::DisruptionUpdate,
        };
        let message = OutgoingMessage {
            notification_id: n.id.to_string(),
            channel: notify_channel,
            to: SecretString::new(to),
            language,
            rendered: detour_notify::render(purpose, language, notify_channel, &vars),
        };
        match self.notifiers.send(&message).await {
            Ok(receipt) => Ok(receipt.provider_message_id),
            Err(SendError::Transient { reason }) => Err(Failure::Transient(reason)),
            Err(SendError::Permanent { reason }) => Err(Failure::Permanent(reason)),
            Err(e @ SendError::NotConfigured { .. }) => Err(Failure::Permanent(e.to_string())),
        }
    }
}

enum Failure {
    Transient(String),
    Permanent(String),
}

/// A failed attempt, as far as what comes next is concerned.
#[derive(Debug, Clone, Copy)]
struct Failed {
    transient: bool,
    /// On the channel tried, this attempt included.
    attempts_on_channel: i32,
    attempts_per_channel: i32,
    another_channel: bool,
    /// Whether this delivery may still try another channel before its lease is half gone.
    time_left: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterFailure {
    /// The same channel, later.
    Retry,
    /// The next channel, in this delivery.
    TryNextNow,
    /// The next channel, due at once, through the claim.
    LeaveNextToTheClaim,
    /// No channel left.
    GiveUp,
}

impl Failed {
    fn then(self) -> AfterFailure {
        if self.transient && self.attempts_on_channel < self.attempts_per_channel {
            AfterFailure::Retry
        } else if !self.another_channel {
            AfterFailure::GiveUp
        } else if self.time_left {
            AfterFailure::TryNextNow
        } else {
            AfterFailure::LeaveNextToTheClaim
        }
    }
}

/// What the templates say about an incident.
fn facts(i: &Incident) -> DisruptionFacts {
    use detour_notify::DisruptionKind as K;
    let kind = match i.kind {
        DisruptionKind::FlightCancelled => K::Cancelled,
        DisruptionKind::FlightDelayed => K::Delayed,
        DisruptionKind::FlightDiverted => K::Diverted,
        DisruptionKind::AirportClosed => K::AirportClosed,
        DisruptionKind::HotelClosed => K::HotelClosed,
        DisruptionKind::OperatorFailure => K::OperatorFailure,
        DisruptionKind::Weather => K::Weather,
        DisruptionKind::Security => K::Security,
    };
    let affected = match &i.scope {
        Scope::Flight { flight_number, local_date } => {
            Affected::Flight { number: flight_number.clone(), local_date: local_date.to_string() }
        }
        Scope::Airport { airport, .. } => Affected::Airport { code: airport.clone() },
        Scope::Property { property_code, .. } => Affected::Property { name: property_code.clone() },
        Scope::Operator { operator_code, .. } => Affected::Operator { name: operator_code.clone() },
        Scope::Area { locations, .. } => Affected::Area { locations: locations.clone() },
    };
    DisruptionFacts {
        kind,
        affected,
        reason: (!i.reason.is_empty()).then(|| i.reason.clone()),
        delay_minutes: u32::try_from(i.delay_minutes).ok().filter(|m| *m > 0),
        diverted_to: i.diverted_to.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_retried_while_transient_then_the_next_channel_is_tried_while_the_lease_allows() {
        let failed = Failed {
            transient: true,
            attempts_on_channel: 1,
            attempts_per_channel: 3,
            another_channel: true,
            time_left: true,
        };
        assert_eq!(failed.then(), AfterFailure::Retry);
        assert_eq!(Failed { attempts_on_channel: 3, ..failed }.then(), AfterFailure::TryNextNow);
        assert_eq!(
            Failed { transient: false, ..failed }.then(),
            AfterFailure::TryNextNow,
            "a refusal is not retried"
        );
        assert_eq!(
            Failed { transient: false, time_left: false, ..failed }.then(),
            AfterFailure::LeaveNextToTheClaim
        );
        assert_eq!(
            Failed { transient: false, another_channel: false, ..failed }.then(),
            AfterFailure::GiveUp
        );
        assert_eq!(
            Failed { attempts_on_channel: 3, another_channel: false, ..failed }.then(),
            AfterFailure::GiveUp
        );
    }

    #[test]
    fn the_claim_runs_with_nothing_handed_after_a_full_claim_or_once_a_poll_has_passed() {
        let poll = Duration::from_millis(500);
        let just_now = LastClaim { at: std::time::Instant::now(), full: false };
        assert!(!just_now.due(3, poll), "handed notifications keep the claim waiting for the poll");
        assert!(just_now.due(0, poll), "with nothing handed the claim runs every round");
        assert!(LastClaim { full: true, ..just_now }.due(3, poll), "a full claim leaves more in the table");
        if let Some(earlier) = std::time::Instant::now().checked_sub(Duration::from_secs(1)) {
            assert!(LastClaim { at: earlier, full: false }.due(3, poll));
        }
    }
}
