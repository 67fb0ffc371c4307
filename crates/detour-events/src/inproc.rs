//! The event bus for every service in one process: no broker, nothing on disk.
//!
//! Nothing here survives a crash, so the outbox must stay the durable copy until every consumer
//! group is done with an event: [`InProcBus::publish`] therefore waits until each group has acked
//! or dead-lettered the event, and fails (leaving the outbox row unpublished, to be retried)
//! when that takes too long or no group reads the stream yet.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::bus::{BusError, DeadLetter, Delivery, EventBus, Subscription};

#[derive(Debug, Clone)]
pub struct InProcSettings {
    /// How long [`InProcBus::publish`] waits for every group to ack or dead-letter the event.
    pub publish_timeout: Duration,
    /// How long a delivery put back with `retry_later` waits before it is delivered again.
    pub retry_delay: Duration,
    /// How many finished event ids each group remembers, so that a publish repeated after a
    /// timeout does not hand a group an event it already handled.
    pub remembered_per_group: usize,
}

impl Default for InProcSettings {
    fn default() -> Self {
        Self {
            publish_timeout: Duration::from_secs(10),
            retry_delay: Duration::from_millis(200),
            remembered_per_group: 10_000,
        }
    }
}

/// Consumer groups kept in memory for the bus's lifetime. Cloning shares the same bus.
#[derive(Clone)]
pub struct InProcBus {
    shared: Arc<Shared>,
}

struct Shared {
    settings: InProcSettings,
    state: Mutex<State>,
    next_seq: AtomicU64,
}

#[derive(Default)]
struct State {
    /// stream → group → group state.
    streams: HashMap<String, HashMap<String, Group>>,
    dead_letters: HashMap<String, Vec<DeadLetter>>,
}

struct Group {
    ready: VecDeque<Entry>,
    /// Put back by `retry_later`, each with the instant it becomes ready. Short, so scanned.
    delayed: Vec<(Instant, Entry)>,
    /// Handed to a consumer and not yet settled, by transport id, with the consumer's id.
    in_flight: HashMap<String, (u64, Entry)>,
    /// Events queued, delayed or in flight, each with the signal its publishers wait on.
    unsettled: HashMap<String, watch::Sender<bool>>,
    settled: RecentIds,
    /// Wakes the group's consumers blocked in `next_batch`.
    wake: Arc<Notify>,
}

#[derive(Clone)]
struct Entry {
    seq: u64,
    event_id: String,
    payload: Bytes,
    attempt: u32,
}

impl Entry {
    fn delivery(&self) -> Delivery {
        Delivery {
            transport_id: self.seq.to_string(),
            event_id: self.event_id.clone(),
            payload: self.payload.clone(),
            attempt: self.attempt,
        }
    }
}

/// A bounded set of the most recently settled event ids.
struct RecentIds {
    order: VecDeque<String>,
    ids: HashSet<String>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        Self { order: VecDeque::new(), ids: HashSet::new(), capacity }
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: String) {
        if self.capacity == 0 || !self.ids.insert(id.clone()) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }
}

impl Group {
    fn new(remembered: usize) -> Self {
        Self {
            ready: VecDeque::new(),
            delayed: Vec::new(),
            in_flight: HashMap::new(),
            unsettled: HashMap::new(),
            settled: RecentIds::new(remembered),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Moves delayed entries whose time has come to the ready queue, oldest first.
    fn promote_due(&mut self, now: Instant) {
        if self.delayed.iter().all(|(due, _)| *due > now) {
            return;
        }
        let (mut due, later): (Vec<_>, Vec<_>) = self.delayed.drain(..).partition(|(at, _)| *at <= now);
        self.delayed = later;
        due.sort_by_key(|(_, entry)| entry.seq);
        self.ready.extend(due.into_iter().map(|(_, entry)| entry));
    }

    /// Removes a delivery this consumer holds; None when it is not (or no longer) its to settle.
    fn take_in_flight(&mut self, consumer: u64, transport_id: &str) -> Option<Entry> {
        match self.in_flight.get(transport_id) {
            Some((owner, _)) if *owner == consumer => self.in_flight.remove(transport_id).map(|(_, e)| e),
            _ => None,
        }
    }

    /// The group is done with the event: release its publishers and remember it.
    fn settle(&mut self, event_id: &str) {
        if let Some(signal) = self.unsettled.remove(event_id) {
            // send_replace, unlike send, records the value even when no publisher waits any more.
            signal.send_replace(true);
        }
        self.settled.insert(event_id.to_owned());
    }
}

impl InProcBus {
    pub fn new(settings: InProcSettings) -> Self {
        Self {
            shared: Arc::new(Shared {
                settings,
                state: Mutex::new(State::default()),
                next_seq: AtomicU64::new(1),
            }),
        }
    }
}

impl Default for InProcBus {
    fn default() -> Self {
        Self::new(InProcSettings::default())
    }
}

impl fmt::Debug for InProcBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcBus").field("settings", &self.shared.settings).finish_non_exhaustive()
    }
}

impl Shared {
    /// The state is only touched in short, non-panicking sections, so a poisoned lock still
    /// holds consistent data: keep going rather than take the whole process down.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl EventBus for InProcBus {
    async fn publish(&self, stream: &str, event_id: &str, payload: Bytes) -> Result<(), BusError> {
        let waits: Vec<watch::Receiver<bool>> = {
            let mut state = self.shared.lock();
            let groups = match state.streams.get_mut(stream) {
                Some(groups) if !groups.is_empty() => groups,
                _ => return Err(BusError::NoSubscribers),
            };
            let mut waits = Vec::with_capacity(groups.len());
            for group in groups.values_mut() {
                if let Some(signal) = group.unsettled.get(event_id) {
                    // A publish repeated after a timeout: wait for the copy already queued.
                    waits.push(signal.subscribe());
                    continue;
                }
                if group.settled.contains(event_id) {
                    continue;
                }
                let (signal, wait) = watch::channel(false);
                group.unsettled.insert(event_id.to_owned(), signal);
                group.ready.push_back(Entry {
                    seq: self.shared.next_seq.fetch_add(1, Ordering::Relaxed),
                    event_id: event_id.to_owned(),
                    payload: payload.clone(),
                    attempt: 1,
                });
                group.wake.notify_waiters();
                waits.push(wait);
            }
            waits
        };
        let all_settled = async {
            for mut wait in waits {
                // Err means the group's signal was dropped unset, which only the bus going away
                // does: the event is not known to be handled.
                wait.wait_for(|settled| *settled).await.map_err(|_| BusError::Timeout)?;
            }
            Ok(())
        };
        tokio::time::timeout(self.shared.settings.publish_timeout, all_settled)
            .await
            .map_err(|_| BusError::Timeout)?
    }

    async fn subscribe(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let wake = {
            let mut state = self.shared.lock();
            let remembered = self.shared.settings.remembered_per_group;
            let group_state = state
                .streams
                .entry(stream.to_owned())
                .or_default()
                .entry(group.to_owned())
                .or_insert_with(|| Group::new(remembered));
            group_state.wake.clone()
        };
        Ok(Box::new(InProcSubscription {
            shared: self.shared.clone(),
            stream: stream.to_owned(),
            group: group.to_owned(),
            consumer_id: self.shared.next_seq.fetch_add(1, Ordering::Relaxed),
            consumer: consumer.to_owned(),
            wake,
        }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }

    async fn dead_letters(&self, stream: &str) -> Result<Vec<DeadLetter>, BusError> {
        Ok(self.shared.lock().dead_letters.get(stream).cloned().unwrap_or_default())
    }
}

struct InProcSubscription {
    shared: Arc<Shared>,
    stream: String,
    group: String,
    /// Unique per subscription, unlike the name: two replicas may share a name by mistake.
    consumer_id: u64,
    consumer: String,
    wake: Arc<Notify>,
}

impl InProcSubscription {
    /// Runs `f` on this subscription's group (and the bus's dead letters) under the lock.
    /// Groups are never removed, so the group is always there.
    fn with_group<T>(
        &self,
        f: impl FnOnce(&mut Group, &mut HashMap<String, Vec<DeadLetter>>) -> T,
    ) -> Option<T> {
        let mut state = self.shared.lock();
        let State { streams, dead_letters } = &mut *state;
        let group = streams.get_mut(&self.stream)?.get_mut(&self.group)?;
        Some(f(group, dead_letters))
    }
}

#[async_trait]
impl Subscription for InProcSubscription {
    async fn next_batch(&mut self, max: usize, block: Duration) -> Result<Vec<Delivery>, BusError> {
        let deadline = Instant::now() + block;
        let consumer_id = self.consumer_id;
        loop {
            // Registered before looking at the queue, so a publish landing in between still
            // wakes us.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();

            let now = Instant::now();
            let (batch, next_due) = self
                .with_group(|group, _| {
                    group.promote_due(now);
                    let take = max.min(group.ready.len());
                    let batch: Vec<Delivery> = group
                        .ready
                        .drain(..take)
                        .map(|entry| {
                            let delivery = entry.delivery();
                            group.in_flight.insert(delivery.transport_id.clone(), (consumer_id, entry));
                            delivery
                        })
                        .collect();
                    (batch, group.delayed.iter().map(|(due, _)| *due).min())
                })
                .unwrap_or_default();
            if !batch.is_empty() || max == 0 || now >= deadline {
                return Ok(batch);
            }
            let until = next_due.map_or(deadline, |due| due.min(deadline));
            tokio::select! {
                () = &mut woken => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        let consumer_id = self.consumer_id;
        self.with_group(|group, _| {
            if let Some(entry) = group.take_in_flight(consumer_id, &delivery.transport_id) {
                group.settle(&entry.event_id);
            }
        });
        Ok(())
    }

    async fn retry_later(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        let consumer_id = self.consumer_id;
        let due = Instant::now() + self.shared.settings.retry_delay;
        self.with_group(|group, _| {
            if let Some(mut entry) = group.take_in_flight(consumer_id, &delivery.transport_id) {
                entry.attempt = entry.attempt.saturating_add(1);
                group.delayed.push((due, entry));
                // Blocked consumers recompute how long to sleep.
                group.wake.notify_waiters();
            }
        });
        Ok(())
    }

    async fn dead_letter(&mut self, delivery: &Delivery, reason: &str) -> Result<(), BusError> {
        let consumer_id = self.consumer_id;
        let group_name = self.group.clone();
        let stream = self.stream.clone();
        self.with_group(|group, dead_letters| {
            if let Some(entry) = group.take_in_flight(consumer_id, &delivery.transport_id) {
                group.settle(&entry.event_id);
                dead_letters.entry(stream).or_default().push(DeadLetter {
                    event_id: entry.event_id,
                    group: group_name,
                    reason: reason.to_owned(),
                    payload: entry.payload,
                });
            }
        });
        Ok(())
    }
}

/// A consumer that goes away (shut down, or its task died) gives back what it had not settled,
/// as a crashed Redis consumer's pending entries are reclaimed by the rest of its group.
impl Drop for InProcSubscription {
    fn drop(&mut self) {
        let consumer_id = self.consumer_id;
        let returned = self.with_group(|group, _| {
            let mine: Vec<String> = group
                .in_flight
                .iter()
                .filter(|(_, (owner, _))| *owner == consumer_id)
                .map(|(id, _)| id.clone())
                .collect();
            let mut entries: Vec<Entry> =
                mine.iter().filter_map(|id| group.in_flight.remove(id)).map(|(_, entry)| entry).collect();
            entries.sort_by_key(|entry| entry.seq);
            let count = entries.len();
            for mut entry in entries.into_iter().rev() {
                entry.attempt = entry.attempt.saturating_add(1);
                group.ready.push_front(entry);
            }
            if count > 0 {
                group.wake.notify_waiters();
            }
            count
        });
        if let Some(count @ 1..) = returned {
            tracing::debug!(
                stream = %self.stream, group = %self.group, consumer = %self.consumer, count,
                "subscription dropped with unsettled deliveries; returned them to the group"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_forget_the_oldest() {
        let mut ids = RecentIds::new(2);
        ids.insert("a".into());
        ids.insert("b".into());
        ids.insert("a".into());
        ids.insert("c".into());
        assert!(!ids.contains("a"));
        assert!(ids.contains("b") && ids.contains("c"));
    }

    #[tokio::test]
    async fn dropped_subscription_returns_its_deliveries() {
        let bus =
            InProcBus::new(InProcSettings { publish_timeout: Duration::from_secs(5), ..Default::default() });
        let mut first = bus.subscribe("s", "g", "a").await.unwrap();
        let mut second = bus.subscribe("s", "g", "b").await.unwrap();
        let publisher = {
            let bus = bus.clone();
            tokio::spawn(async move { bus.publish("s", "e1", Bytes::from_static(b"x")).await })
        };
        let got = first.next_batch(10, Duration::from_secs(2)).await.unwrap();
        assert_eq!(got.len(), 1);
        drop(first);
        let again = second.next_batch(10, Duration::from_secs(2)).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].event_id, "e1");
        assert_eq!(again[0].attempt, 2);
        second.ack(&again[0]).await.unwrap();
        publisher.await.unwrap().unwrap();
    }
}
