//! The priority-aware concurrency limiter.
//!
//! One mutex guards the count of slots in use and one FIFO queue of waiters per priority. A slot
//! is handed over under that mutex: whoever frees it (a dropped [`Permit`], a waiter cancelled
//! after it was handed one) counts it as taken again on behalf of the best waiter and sends that
//! waiter a oneshot. So the count never includes a slot nobody holds, and a waiter that gives up
//! — its deadline passed or its caller went away — either finds itself still queued and leaves,
//! or finds the slot in its channel and gives it back.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

use crate::{Priority, SettingsError};

/// One value for each priority that admission control may refuse; [`Priority::Safety`] has no
/// entry because it is never limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PerPriority<T> {
    pub low: T,
    pub normal: T,
    pub high: T,
}

impl<T: Copy> PerPriority<T> {
    fn get(&self, tier: Tier) -> T {
        match tier {
            Tier::Low => self.low,
            Tier::Normal => self.normal,
            Tier::High => self.high,
        }
    }
}

/// How many requests run at once, and how each priority may use them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// In-flight slots shared by every priority (Safety may go beyond it).
    pub capacity: usize,
    /// The most of `capacity` each priority may hold, in per-mille (500 = half): low-priority
    /// work is refused while there is still room for more important work. Per-mille rather than
    /// a fraction because the workspace keeps float arithmetic out of request paths. A share's
    /// slots are rounded down; 0 sheds that priority entirely.
    pub shares: PerPriority<u32>,
    /// How long a request over its share waits for a slot before it is shed. Zero sheds at once.
    pub max_wait: PerPriority<Duration>,
    /// The retry hint sent with a shed request.
    pub retry_after: Duration,
}

impl AdmissionSettings {
    /// `capacity` slots with the storm defaults: low-priority work may hold half of them and is
    /// shed at once beyond that, normal work 80% with a 20 ms wait, high-priority work all of
    /// them with a 250 ms wait; shed callers are told to retry after a second.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            shares: PerPriority { low: 500, normal: 800, high: 1000 },
            max_wait: PerPriority {
                low: Duration::ZERO,
                normal: Duration::from_millis(20),
                high: Duration::from_millis(250),
            },
            retry_after: Duration::from_secs(1),
        }
    }

    /// Checks the settings for start-up. [`Admission::new`] does not refuse bad settings (it
    /// caps shares at 1000‰), so configuration should call this first.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.capacity == 0 {
            return Err(SettingsError::new("capacity", "must be at least 1"));
        }
        let shares = [
            ("shares.low", self.shares.low),
            ("shares.normal", self.shares.normal),
            ("shares.high", self.shares.high),
        ];
        for (setting, share) in shares {
            if share > 1000 {
                return Err(SettingsError::new(
                    setting,
                    format!("is {share}‰, at most 1000‰ (all of capacity)"),
                ));
            }
            if share > 0 && slots_for(self.capacity, share) == 0 {
                return Err(SettingsError::new(
                    setting,
                    format!("{share}‰ of capacity {} is less than one slot", self.capacity),
                ));
            }
        }
        // Otherwise a lower priority could get in where a higher one is refused.
        if self.shares.low > self.shares.normal {
            return Err(SettingsError::new("shares.low", "must not be larger than shares.normal"));
        }
        if self.shares.normal > self.shares.high {
            return Err(SettingsError::new("shares.normal", "must not be larger than shares.high"));
        }
        Ok(())
    }
}

fn slots_for(capacity: usize, share_per_mille: u32) -> usize {
    let share = u128::from(share_per_mille.min(1000));
    // Never more than `capacity`, so the conversion back cannot fail.
    usize::try_from(capacity as u128 * share / 1000).unwrap_or(capacity)
}

/// The priorities that can be refused, as indexes into per-priority state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    Low = 0,
    Normal = 1,
    High = 2,
}

impl Tier {
    const HIGHEST_FIRST: [Tier; 3] = [Tier::High, Tier::Normal, Tier::Low];

    fn of(priority: Priority) -> Option<Tier> {
        match priority {
            Priority::Low => Some(Tier::Low),
            Priority::Normal => Some(Tier::Normal),
            Priority::High => Some(Tier::High),
            Priority::Safety => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabels {
    priority: &'static str,
}

#[derive(Debug, Default)]
struct AdmissionMetrics {
    admitted: Family<PriorityLabels, Counter>,
    shed: Family<PriorityLabels, Counter>,
    in_flight: Gauge,
}

impl AdmissionMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register("admission_admitted", "Requests admitted, by priority", self.admitted.clone());
        registry.register(
            "admission_shed",
            "Requests refused because the server was over the priority's share of capacity",
            self.shed.clone(),
        );
        registry.register(
            "admission_in_flight",
            "Admitted requests not finished yet, safety contacts included",
            self.in_flight.clone(),
        );
    }

    fn set_in_flight(&self, in_flight: usize) {
        self.in_flight.set(i64::try_from(in_flight).unwrap_or(i64::MAX));
    }
}

struct State {
    in_flight: usize,
    next_waiter: u64,
    /// Per tier, waiters by arrival: the ids only grow, so the first entry has waited longest.
    waiting: [BTreeMap<u64, oneshot::Sender<()>>; 3],
}

struct Inner {
    slots: [usize; 3],
    max_wait: [Duration; 3],
    retry_after: Duration,
    state: Mutex<State>,
    metrics: AdmissionMetrics,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a count and queues, updated without anything that can panic half-way;
        // refusing every request because a thread once panicked elsewhere would be worse.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A newcomer may take a slot only under its share and when no one of its priority or
    /// higher is already waiting, so it cannot overtake them.
    fn can_enter(&self, state: &State, tier: Tier) -> bool {
        state.in_flight < self.slots[tier.index()]
            && state.waiting[tier.index()..].iter().all(BTreeMap::is_empty)
    }

    fn take_slot(&self, state: &mut State) {
        state.in_flight += 1;
        self.metrics.set_in_flight(state.in_flight);
    }

    fn release_slot(&self, state: &mut State) {
        state.in_flight = state.in_flight.saturating_sub(1);
        self.hand_over(state);
        self.metrics.set_in_flight(state.in_flight);
    }

    /// Gives free slots to waiters, highest priority first, longest waiting first within one.
    fn hand_over(&self, state: &mut State) {
        for tier in Tier::HIGHEST_FIRST {
            while state.in_flight < self.slots[tier.index()] {
                let Some((_, waiter)) = state.waiting[tier.index()].pop_first() else { break };
                // A waiter takes itself out of the queue before its receiver goes away, so this
                // only fails if that invariant is broken; the slot then simply stays free.
                if waiter.send(()).is_ok() {
                    state.in_flight += 1;
                }
            }
        }
    }
}

/// The priority-aware concurrency limiter. Clones share the same slots.
///
/// Every request asks [`Admission::admit`] before doing any work and holds the [`Permit`] until
/// it is done. [`Priority::Safety`] always gets in at once. Any other priority gets in while the
/// requests in flight are fewer than its share of the capacity; otherwise it queues for at most
/// its `max_wait`, and freed slots go to the highest priority waiting, first come first served
/// within a priority. A request still queued at its deadline is [`Shed`].
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("slots", &self.inner.slots)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// A limiter with `settings` (see [`AdmissionSettings::validate`]), registering its metrics
    /// in `metrics` when given: `admission_admitted_total{priority}`,
    /// `admission_shed_total{priority}` and `admission_in_flight`.
    pub fn new(settings: AdmissionSettings, metrics: Option<&mut Registry>) -> Self {
        let tiers = [Tier::Low, Tier::Normal, Tier::High];
        let inner = Inner {
            slots: tiers.map(|tier| slots_for(settings.capacity, settings.shares.get(tier))),
            max_wait: tiers.map(|tier| settings.max_wait.get(tier)),
            retry_after: settings.retry_after,
            state: Mutex::new(State { in_flight: 0, next_waiter: 0, waiting: Default::default() }),
            metrics: AdmissionMetrics::default(),
        };
        if let Some(registry) = metrics {
            inner.metrics.register(registry);
        }
        Self { inner: Arc::new(inner) }
    }

    /// Waits for a slot for a request of `priority`, or refuses it.
    ///
    /// Cancel-safe: if the returned future is dropped, the request leaves the queue, and a slot
    /// that was handed to it in the meantime goes to the next waiter.
    pub async fn admit(&self, priority: Priority) -> Result<Permit, Shed> {
        let inner = &*self.inner;
        let Some(tier) = Tier::of(priority) else {
            inner.take_slot(&mut inner.lock());
            return Ok(self.admitted(priority));
        };
        let max_wait = inner.max_wait[tier.index()];
        let (id, rx) = {
            let mut state = inner.lock();
            if inner.can_enter(&state, tier) {
                inner.take_slot(&mut state);
                drop(state);
                return Ok(self.admitted(priority));
            }
            if max_wait.is_zero() {
                drop(state);
                return Err(self.shed(priority));
            }
            let (tx, rx) = oneshot::channel();
            let id = state.next_waiter;
            state.next_waiter += 1;
            state.waiting[tier.index()].insert(id, tx);
            (id, rx)
        };

        let mut waiter = Waiter { inner, tier, id, rx, settled: false };
        let granted = match tokio::time::timeout(max_wait, &mut waiter.rx).await {
            Ok(Ok(())) => true,
            // The deadline passed (or the sender vanished, which hand-over never does): leave
            // the queue, unless a slot was handed over just before we got the lock.
            Ok(Err(_)) | Err(_) => waiter.withdraw(&mut inner.lock()),
        };
        waiter.settled = true;
        if granted { Ok(self.admitted(priority)) } else { Err(self.shed(priority)) }
    }

    /// Requests admitted and not finished yet, safety contacts included.
    pub fn in_flight(&self) -> usize {
        self.inner.lock().in_flight
    }

    fn admitted(&self, priority: Priority) -> Permit {
        self.inner.metrics.admitted.get_or_create(&PriorityLabels { priority: priority.as_str() }).inc();
        Permit { inner: Arc::clone(&self.inner), priority }
    }

    fn shed(&self, priority: Priority) -> Shed {
        self.inner.metrics.shed.get_or_create(&PriorityLabels { priority: priority.as_str() }).inc();
        Shed { priority, retry_after: self.inner.retry_after }
    }
}

/// A queued request, from joining the queue until it has a slot or has been refused.
struct Waiter<'a> {
    inner: &'a Inner,
    tier: Tier,
    id: u64,
    rx: oneshot::Receiver<()>,
    /// Set once `admit` has accounted for the outcome; until then dropping must clean up.
    settled: bool,
}

impl Waiter<'_> {
    /// Leaves the queue. True if a slot had already been handed over, which is then this
    /// waiter's to keep or to release.
    fn withdraw(&mut self, state: &mut State) -> bool {
        if state.waiting[self.tier.index()].remove(&self.id).is_some() {
            return false;
        }
        // Not queued any more, so hand-over took it out and sent the slot under this same lock.
        self.rx.try_recv().is_ok()
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let inner = self.inner;
        let mut state = inner.lock();
        if self.withdraw(&mut state) {
            inner.release_slot(&mut state);
        }
    }
}

/// One admitted request's slot, released when dropped.
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct Permit {
    inner: Arc<Inner>,
    priority: Priority,
}

impl Permit {
    pub fn priority(&self) -> Priority {
        self.priority
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").field("priority", &self.priority).finish_non_exhaustive()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.release_slot(&mut self.inner.lock());
    }
}

/// A request refused because the server is over the share of capacity its priority may use.
/// As a `tonic::Status` it is `RESOURCE_EXHAUSTED` with a `RetryInfo` carrying `retry_after` and
/// an `ErrorInfo` (reason `OVERLOADED`, domain `detour`, metadata `priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("server overloaded: {priority}-priority request shed, retry in {} ms", .retry_after.as_millis())]
pub struct Shed {
    pub priority: Priority,
    pub retry_after: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_down_and_never_exceed_capacity() {
        assert_eq!(slots_for(10, 500), 5);
        assert_eq!(slots_for(10, 799), 7);
        assert_eq!(slots_for(10, 1000), 10);
        assert_eq!(slots_for(10, 5000), 10);
        assert_eq!(slots_for(usize::MAX, 1000), usize::MAX);
    }

    #[test]
    fn validation_names_the_setting() {
        assert_eq!(AdmissionSettings::with_capacity(10).validate(), Ok(()));
        let err = |settings: AdmissionSettings| settings.validate().err().map(|e| e.setting);
        assert_eq!(err(AdmissionSettings::with_capacity(0)), Some("capacity"));
        let mut settings = AdmissionSettings::with_capacity(1);
        assert_eq!(err(settings.clone()), Some("shares.low"));
        settings.shares.low = 0;
        assert_eq!(err(settings.clone()), Some("shares.normal"));
        let mut settings = AdmissionSettings::with_capacity(10);
        settings.shares.high = 1001;
        assert_eq!(err(settings.clone()), Some("shares.high"));
        settings.shares = PerPriority { low: 900, normal: 800, high: 1000 };
        assert_eq!(err(settings), Some("shares.low"));
    }
}
