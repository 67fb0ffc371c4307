//! The load generator every phase shares, so the ceilings and intake are measured by the very
//! same loop: closed (a fixed number of workers, each sending its next request when the last
//! is answered) or open (requests due at a fixed rate, at most so many in flight), for a
//! duration or a number of requests.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use crate::error::StormError;
use crate::stats::{Outcome, PhaseReport, PhaseShape, Recorder};

/// What the generator calls; `seq` numbers the requests of a phase from 0.
pub trait Target: Send + Sync + 'static {
    fn call(&self, seq: u64) -> impl Future<Output = Outcome> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// `concurrency` workers, each with one request in flight.
    Closed { concurrency: usize },
    /// A request due every `1 / rate_per_sec` seconds; when `max_in_flight` are unanswered the
    /// next waits for a slot (and its latency still counts from when it was due).
    Open { rate_per_sec: f64, max_in_flight: usize },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// No request starts after this long; answers still in flight are awaited.
    After(Duration),
    Requests(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    pub name: String,
    pub pacing: Pacing,
    pub stop: Stop,
    /// A line per second on stderr.
    pub progress: bool,
}

impl LoadPlan {
    fn shape(&self) -> PhaseShape {
        let (pacing, concurrency, target_rate_per_sec) = match self.pacing {
            Pacing::Closed { concurrency } => ("closed", concurrency, None),
            Pacing::Open { rate_per_sec, max_in_flight } => ("open", max_in_flight, Some(rate_per_sec)),
        };
        PhaseShape { name: self.name.clone(), pacing, concurrency, target_rate_per_sec }
    }
}

/// A poisoned lock only means another task panicked mid-count; the counts are still the best
/// there is, so keep using them.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs one phase against `target` and reports it.
pub async fn drive<T: Target>(plan: &LoadPlan, target: Arc<T>) -> Result<PhaseReport, StormError> {
    match plan.pacing {
        Pacing::Closed { concurrency: 0 } => {
            return Err(StormError::Config(format!("{}: concurrency must be at least 1", plan.name)));
        }
        Pacing::Open { rate_per_sec, max_in_flight }
            if !rate_per_sec.is_finite() || rate_per_sec <= 0.0 || max_in_flight == 0 =>
        {
            return Err(StormError::Config(format!(
                "{}: an open loop needs a rate above 0 and at least 1 call in flight",
                plan.name
            )));
        }
        _ => {}
    }
    let start = Instant::now();
    let recorder = Arc::new(Mutex::new(Recorder::new(start)?));
    let sent = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = watch::channel(false);
    let progress = plan.progress.then(|| {
        tokio::spawn(report_progress(plan.name.clone(), start, recorder.clone(), sent.clone(), done_rx))
    });

    let not_sent = match plan.pacing {
        Pacing::Closed { concurrency } => {
            closed(concurrency, plan.stop, start, target, recorder.clone(), sent.clone()).await;
            0
        }
        Pacing::Open { rate_per_sec, max_in_flight } => {
            open(rate_per_sec, max_in_flight, plan.stop, start, target, recorder.clone(), sent.clone())
                .await?
        }
    };
    let ended = Instant::now();
    let _ = done_tx.send(true);
    if let Some(p) = progress {
        let _ = p.await;
    }
    let recorder = match Arc::try_unwrap(recorder) {
        Ok(m) => m.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner),
        // Every task holding a clone has finished; this arm only guards against that changing.
        Err(shared) => {
            let mut fresh = Recorder::new(start)?;
            std::mem::swap(&mut *lock(&shared), &mut fresh);
            fresh
        }
    };
    Ok(recorder.finish(plan.shape(), sent.load(Ordering::Relaxed), not_sent, ended))
}

async fn closed<T: Target>(
    concurrency: usize,
    stop: Stop,
    start: Instant,
    target: Arc<T>,
    recorder: Arc<Mutex<Recorder>>,
    sent: Arc<AtomicU64>,
) {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (next, target, recorder, sent) = (next.clone(), target.clone(), recorder.clone(), sent.clone());
        workers.spawn(async move {
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                match stop {
                    Stop::Requests(n) if seq >= n => break,
                    Stop::After(d) if start.elapsed() >= d => break,
                    _ => {}
                }
                sent.fetch_add(1, Ordering::Relaxed);
                let began = Instant::now();
                let outcome = target.call(seq).await;
                let now = Instant::now();
                lock(&recorder).record(now - began, now, &outcome);
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

async fn open<T: Target>(
    rate: f64,
    max_in_flight: usize,
    stop: Stop,
    start: Instant,
    target: Arc<T>,
    recorder: Arc<Mutex<Recorder>>,
    sent: Arc<AtomicU64>,
) -> Result<u64, StormError> {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let scheduled = match stop {
        Stop::Requests(n) => n,
        Stop::After(d) => (d.as_secs_f64() * rate).ceil() as u64,
    };
    let mut not_sent = 0;
    for seq in 0..scheduled {
        let due = start + Duration::from_secs_f64(seq as f64 / rate);
        // Behind schedule, send at once rather than round-trip through the timer.
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StormError::Scenario("load generator slots closed".into()))?;
        if let Stop::After(d) = stop
            && start.elapsed() >= d
        {
            not_sent = scheduled - seq;
            break;
        }
        sent.fetch_add(1, Ordering::Relaxed);
        let (target, recorder) = (target.clone(), recorder.clone());
        tokio::spawn(async move {
            let outcome = target.call(seq).await;
            let now = Instant::now();
            lock(&recorder).record(now.saturating_duration_since(due), now, &outcome);
            drop(slot);
        });
    }
    // Every slot back means every request answered.
    let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    let _all = slots
        .acquire_many(all)
        .await
        .map_err(|_| StormError::Scenario("load generator slots closed".into()))?;
    Ok(not_sent)
}

async fn report_progress(
    name: String,
    start: Instant,
    recorder: Arc<Mutex<Recorder>>,
    sent: Arc<AtomicU64>,
    mut done: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await;
    let mut last_completed = 0;
    let mut last_at = start;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.changed() => break,
        }
        let s = lock(&recorder).snapshot();
        let now = Instant::now();
        let window = now.saturating_duration_since(last_at).as_secs_f64().max(1e-3);
        let rate = (s.completed - last_completed) as f64 / window;
        (last_completed, last_at) = (s.completed, now);
        eprintln!(
            "[{name}] {:>6.1}s sent {} ok {} shed {} err {} rate {:.0}/s p99 {:.1} ms",
            start.elapsed().as_secs_f64(),
            sent.load(Ordering::Relaxed),
            s.ok,
            s.shed,
            s.errors,
            rate,
            s.p99_ms
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Class;

    /// Answers OK, except every fifth request is shed and every seventh fails.
    struct Scripted {
        delay: Duration,
    }

    impl Target for Scripted {
        fn call(&self, seq: u64) -> impl Future<Output = Outcome> + Send {
            let delay = self.delay;
            async move {
                tokio::time::sleep(delay).await;
                if seq % 5 == 4 {
                    Outcome { class: Class::Shed, code: "RESOURCE_EXHAUSTED", priority: None }
                } else if seq % 7 == 6 {
                    Outcome::error("INTERNAL")
                } else {
                    Outcome::ok(None)
                }
            }
        }
    }

    fn plan(pacing: Pacing, stop: Stop) -> LoadPlan {
        LoadPlan { name: "test".into(), pacing, stop, progress: false }
    }

    #[tokio::test]
    async fn closed_loop_sends_exactly_the_requested_count() {
        let target = Arc::new(Scripted { delay: Duration::from_millis(1) });
        let r = drive(&plan(Pacing::Closed { concurrency: 8 }, Stop::Requests(350)), target).await.unwrap();
        assert_eq!((r.sent, r.completed), (350, 350));
        assert_eq!(r.shed, 70);
        // Multiples of 7 ending in 6 that are not also sheds.
        let errors = (0..350u64).filter(|s| s % 5 != 4 && s % 7 == 6).count() as u64;
        assert_eq!(r.errors, errors);
        assert_eq!(r.ok + r.shed + r.errors, 350);
        assert_eq!(r.series.iter().map(|s| s.ok + s.shed + s.errors).sum::<u64>(), 350);
        assert_eq!(r.latency_ms.count, r.ok);
        assert!(r.latency_ms.p50_ms >= 1.0);
    }

    #[tokio::test]
    async fn open_loop_keeps_the_rate() {
        let target = Arc::new(Scripted { delay: Duration::ZERO });
        let pacing = Pacing::Open { rate_per_sec: 200.0, max_in_flight: 16 };
        let r = drive(&plan(pacing, Stop::After(Duration::from_millis(1000))), target).await.unwrap();
        assert_eq!(r.sent + r.not_sent, 200);
        assert_eq!(r.completed, r.sent);
        assert!(r.elapsed_secs >= 0.99 && r.elapsed_secs < 1.5, "{}", r.elapsed_secs);
    }

    #[tokio::test]
    async fn open_loop_counts_latency_from_when_a_call_was_due() {
        // One slot and 20 ms per call at 200/s: calls queue behind each other, and the
        // latency must show the queue, not only the 20 ms of service.
        let target = Arc::new(Scripted { delay: Duration::from_millis(20) });
        let pacing = Pacing::Open { rate_per_sec: 200.0, max_in_flight: 1 };
        let r = drive(&plan(pacing, Stop::Requests(20)), target).await.unwrap();
        assert_eq!(r.completed, 20);
        assert!(r.latency_ms.max_ms > 200.0, "{:?}", r.latency_ms);
    }

    #[tokio::test]
    async fn nonsense_plans_are_refused() {
        let target = Arc::new(Scripted { delay: Duration::ZERO });
        assert!(
            drive(&plan(Pacing::Closed { concurrency: 0 }, Stop::Requests(1)), target.clone()).await.is_err()
        );
        let open = Pacing::Open { rate_per_sec: 0.0, max_in_flight: 1 };
        assert!(drive(&plan(open, Stop::Requests(1)), target).await.is_err());
    }
}
