//! Token buckets in this process: for one replica (`detour dev`, tests), where sharing through
//! Redis would add a dependency and nothing else.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use super::{Gcra, Limited, RateLimit, RateLimitMetrics, RateLimiter};

/// Below this many sources, idle ones are not worth sweeping out.
const MIN_SWEEP_AT: usize = 1024;

struct Buckets {
    /// Per source, when its bucket is full again. An instant in the past means a full bucket,
    /// the same as no entry, so such entries are swept out now and then.
    full_at: HashMap<String, Instant>,
    sweep_at: usize,
}

/// Per-source rate limits kept in process memory; each replica counts on its own.
///
/// Uses Tokio's clock, so tests can drive it with paused time.
pub struct LocalRateLimiter {
    gcra: Gcra,
    buckets: Mutex<Buckets>,
    metrics: RateLimitMetrics,
}

impl fmt::Debug for LocalRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRateLimiter").field("gcra", &self.gcra).finish_non_exhaustive()
    }
}

impl LocalRateLimiter {
    /// Every source gets `limit` (see [`RateLimit::validate`]).
    pub fn new(limit: RateLimit) -> Self {
        Self {
            gcra: limit.gcra(),
            buckets: Mutex::new(Buckets { full_at: HashMap::new(), sweep_at: MIN_SWEEP_AT }),
            metrics: RateLimitMetrics::default(),
        }
    }

    /// Registers `rate_limit_decisions_total{outcome}` in `registry`; give each limiter its own
    /// sub-registry when several share one.
    pub fn with_metrics(self, registry: &mut Registry) -> Self {
        self.metrics.register(registry);
        self
    }

    fn decide(&self, source: &str, cost: u32, now: Instant) -> Result<(), Limited> {
        let charge = self.gcra.charge(cost);
        if charge == 0 {
            return Ok(());
        }
        let interval = self.gcra.interval();
        // A bucket may be at most `burst` tokens ahead of now.
        let horizon = now + interval.saturating_mul(self.gcra.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let full_at = buckets.full_at.get(source).copied().filter(|at| *at > now).unwrap_or(now);
        let new_full_at = full_at + interval.saturating_mul(charge);
        if new_full_at > horizon {
            return Err(Limited { retry_after: new_full_at - horizon });
        }
        match buckets.full_at.get_mut(source) {
            Some(at) => *at = new_full_at,
            None => {
                buckets.full_at.insert(source.to_owned(), new_full_at);
            }
        }
        if buckets.full_at.len() >= buckets.sweep_at {
            buckets.full_at.retain(|_, at| *at > now);
            // Doubling keeps sweeping amortised O(1) per check however many sources are busy.
            buckets.sweep_at = MIN_SWEEP_AT.max(buckets.full_at.len() * 2);
        }
        Ok(())
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn check(&self, source: &str, cost: u32) -> Result<(), Limited> {
        let decision = self.decide(source, cost, Instant::now());
        self.metrics.record(&decision);
        decision
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn idle_sources_are_swept_out() {
        let limiter = LocalRateLimiter::new(RateLimit { per_second: 1, burst: 1 });
        let start = Instant::now();
        for n in 0..MIN_SWEEP_AT - 1 {
            assert_eq!(limiter.decide(&format!("partner:{n}"), 1, start), Ok(()));
        }
        // Every earlier bucket is full again two seconds later, so only the newest remains.
        let later = start + Duration::from_secs(2);
        assert_eq!(limiter.decide("partner:late", 1, later), Ok(()));
        let buckets = limiter.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(buckets.full_at.len(), 1);
        assert_eq!(buckets.sweep_at, MIN_SWEEP_AT);
    }
}
