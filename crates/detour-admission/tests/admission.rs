#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! The limiter under paused time: deadlines pass only when every task is waiting, so nothing
//! here depends on how fast the machine is. Futures are polled by hand (`poll!`) to put requests
//! in the queue in a known order.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use detour_admission::{Admission, AdmissionSettings, PerPriority, Permit, Priority, Shed};
use futures::poll;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use tonic_types::StatusExt;

type Pending<'a> = Pin<Box<dyn Future<Output = Result<Permit, Shed>> + 'a>>;

/// Sends a request in and sees what happens straight away.
async fn arrive(admission: &Admission, priority: Priority) -> Result<Result<Permit, Shed>, Pending<'_>> {
    let mut request: Pending<'_> = Box::pin(admission.admit(priority));
    match poll!(request.as_mut()) {
        Poll::Ready(outcome) => Ok(outcome),
        Poll::Pending => Err(request),
    }
}

async fn admitted(admission: &Admission, priority: Priority) -> Permit {
    match arrive(admission, priority).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(shed)) => panic!("{priority} shed: {shed}"),
        Err(_) => panic!("{priority} had to wait"),
    }
}

async fn queued(admission: &Admission, priority: Priority) -> Pending<'_> {
    match arrive(admission, priority).await {
        Err(pending) => pending,
        Ok(outcome) => panic!("{priority} did not queue: {outcome:?}"),
    }
}

async fn shed_at_once(admission: &Admission, priority: Priority) -> Shed {
    match arrive(admission, priority).await {
        Ok(Err(shed)) => shed,
        Ok(Ok(_)) => panic!("{priority} was admitted"),
        Err(_) => panic!("{priority} had to wait"),
    }
}

async fn fill(admission: &Admission, priority: Priority, n: usize) -> Vec<Permit> {
    let mut permits = Vec::new();
    for _ in 0..n {
        permits.push(admitted(admission, priority).await);
    }
    permits
}

fn shed(priority: Priority) -> Shed {
    Shed { priority, retry_after: Duration::from_secs(1) }
}

#[tokio::test(start_paused = true)]
async fn low_is_shed_first_while_high_still_gets_in() {
    let admission = Admission::new(AdmissionSettings::with_capacity(10), None);
    let mut held = fill(&admission, Priority::Low, 5).await;

    // Low may hold half the slots and does not wait.
    assert_eq!(shed_at_once(&admission, Priority::Low).await, shed(Priority::Low));

    held.extend(fill(&admission, Priority::Normal, 3).await);
    // Normal may hold 80% and waits 20 ms for a slot before it is shed.
    let started = Instant::now();
    assert_eq!(admission.admit(Priority::Normal).await.unwrap_err(), shed(Priority::Normal));
    assert_eq!(started.elapsed(), Duration::from_millis(20));

    held.extend(fill(&admission, Priority::High, 2).await);
    assert_eq!(admission.in_flight(), 10);

    // Full: High waits, and takes the next slot freed.
    let high = queued(&admission, Priority::High).await;
    drop(held.pop());
    assert_eq!(high.await.unwrap().priority(), Priority::High);
    assert_eq!(admission.in_flight(), 9, "the waiter's permit was dropped right away");
}

#[tokio::test(start_paused = true)]
async fn a_storm_of_mixed_requests_sheds_low_priority_first() {
    let admission = Admission::new(AdmissionSettings::with_capacity(10), None);
    let mut held = Vec::new();
    let mut shed_at_once = Vec::new();
    let mut waiting = Vec::new();
    for _ in 0..10 {
        for priority in [Priority::Low, Priority::Normal, Priority::High] {
            match arrive(&admission, priority).await {
                Ok(Ok(permit)) => held.push(permit),
                Ok(Err(shed)) => shed_at_once.push(shed.priority),
                Err(pending) => waiting.push((priority, pending)),
            }
        }
    }
    // Nobody finishes, so everyone still waiting runs out of time.
    let mut shed_after_waiting = Vec::new();
    for (priority, pending) in waiting {
        assert_eq!(pending.await.unwrap_err(), shed(priority));
        shed_after_waiting.push(priority);
    }

    let count = |list: &[Priority], p: Priority| list.iter().filter(|&&q| q == p).count();
    let admitted: Vec<_> = held.iter().map(Permit::priority).collect();
    // Shares cap how full the server may be when a priority enters. Arrivals interleave L, N, H:
    // Low stops once 5 are in flight (after two of its own), Normal at 8, High fills the rest.
    // Low never waits; Normal and High wait their time and are shed.
    assert_eq!([Priority::Low, Priority::Normal, Priority::High].map(|p| count(&admitted, p)), [2, 3, 5]);
    assert_eq!(shed_at_once, vec![Priority::Low; 8]);
    assert_eq!(count(&shed_after_waiting, Priority::Normal), 7);
    assert_eq!(count(&shed_after_waiting, Priority::High), 5);
    assert_eq!(admission.in_flight(), 10);
}

#[tokio::test(start_paused = true)]
async fn safety_is_admitted_even_when_every_slot_is_held() {
    let admission = Admission::new(AdmissionSettings::with_capacity(10), None);
    let held = fill(&admission, Priority::High, 10).await;

    let safety = fill(&admission, Priority::Safety, 3).await;
    assert_eq!(admission.in_flight(), 13);

    // Safety beyond capacity does not let anyone else in when it finishes...
    let high = queued(&admission, Priority::High).await;
    drop(safety);
    assert_eq!(admission.in_flight(), 10);
    // ...and while it holds slots, lower priorities stay out.
    assert_eq!(high.await.unwrap_err(), shed(Priority::High));
    drop(held);
    assert_eq!(admission.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_leaves_the_queue() {
    let admission = Admission::new(AdmissionSettings::with_capacity(10), None);
    let mut held = fill(&admission, Priority::High, 10).await;

    drop(queued(&admission, Priority::High).await);
    drop(held.pop());
    assert_eq!(admission.in_flight(), 9, "the freed slot was not handed to the cancelled waiter");
    held.push(admitted(&admission, Priority::High).await);
    assert_eq!(admission.in_flight(), 10);
}

#[tokio::test(start_paused = true)]
async fn a_slot_handed_to_a_cancelled_waiter_goes_to_the_next() {
    let admission = Admission::new(AdmissionSettings::with_capacity(10), None);
    let mut held = fill(&admission, Priority::High, 10).await;
    let first = queued(&admission, Priority::High).await;
    let second = queued(&admission, Priority::High).await;

    // The freed slot is handed to `first`, whose caller gives up before it looks.
    drop(held.pop());
    assert_eq!(admission.in_flight(), 10);
    drop(first);
    assert_eq!(admission.in_flight(), 10, "the slot went on to the second waiter");
    held.push(second.await.unwrap());
    assert_eq!(admission.in_flight(), 10);

    // And with nobody left to take it, the slot is simply free.
    let waiter = queued(&admission, Priority::High).await;
    drop(held.pop());
    drop(waiter);
    assert_eq!(admission.in_flight(), 9);
    held.push(admitted(&admission, Priority::High).await);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_highest_priority_first_then_in_arrival_order() {
    // Every priority may use every slot and wait, so only the queue order decides.
    let mut settings = AdmissionSettings::with_capacity(2);
    settings.shares = PerPriority { low: 1000, normal: 1000, high: 1000 };
    settings.max_wait = PerPriority {
        low: Duration::from_secs(1),
        normal: Duration::from_secs(1),
        high: Duration::from_secs(1),
    };
    let admission = Admission::new(settings, None);
    let mut held = fill(&admission, Priority::Normal, 2).await;

    let arrivals = [
        (Priority::Low, "low a"),
        (Priority::Normal, "normal a"),
        (Priority::High, "high a"),
        (Priority::Low, "low b"),
        (Priority::High, "high b"),
        (Priority::Normal, "normal b"),
    ];
    let mut waiting = Vec::new();
    for (priority, name) in arrivals {
        waiting.push((name, queued(&admission, priority).await));
    }

    let mut served = Vec::new();
    while !waiting.is_empty() {
        drop(held.pop());
        let mut ready = Vec::new();
        for (i, (name, pending)) in waiting.iter_mut().enumerate() {
            if let Poll::Ready(outcome) = poll!(pending.as_mut()) {
                held.push(outcome.unwrap());
                ready.push((i, *name));
            }
        }
        assert_eq!(ready.len(), 1, "one freed slot admits exactly one waiter: {ready:?}");
        // Already finished: its permit is in `held`.
        drop(waiting.remove(ready[0].0));
        served.push(ready[0].1);
    }
    assert_eq!(served, ["high a", "high b", "normal a", "normal b", "low a", "low b"]);
}

#[tokio::test(start_paused = true)]
async fn metrics_count_admitted_and_shed_by_priority() {
    let mut registry = Registry::default();
    let admission = Admission::new(AdmissionSettings::with_capacity(2), Some(&mut registry));
    let _low = admitted(&admission, Priority::Low).await;
    let _safety = admitted(&admission, Priority::Safety).await;
    assert!(admission.admit(Priority::Low).await.is_err());

    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    for line in [
        r#"admission_admitted_total{priority="low"} 1"#,
        r#"admission_admitted_total{priority="safety"} 1"#,
        r#"admission_shed_total{priority="low"} 1"#,
        "admission_in_flight 2",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
}

#[test]
fn a_shed_request_becomes_resource_exhausted_with_a_retry_hint() {
    let status =
        tonic::Status::from(Shed { priority: Priority::Low, retry_after: Duration::from_millis(1500) });
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(status.message(), "server overloaded: low-priority request shed, retry in 1500 ms");

    let retry = status.get_details_retry_info().expect("RetryInfo");
    assert_eq!(retry.retry_delay, Some(Duration::from_millis(1500)));
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "OVERLOADED");
    assert_eq!(info.domain, "detour");
    assert_eq!(info.metadata.get("priority").map(String::as_str), Some("low"));
}

#[test]
fn admission_works_inside_tonic_handlers() {
    // Handlers' futures must be Send, and a permit may move into a spawned task.
    fn send<T: Send + 'static>(_: &T) {}
    let admission = Admission::new(AdmissionSettings::with_capacity(1), None);
    let request = async move { admission.admit(Priority::Normal).await };
    send(&request);
}
