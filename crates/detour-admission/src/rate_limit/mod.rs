//! Per-source rate limits.
//!
//! Both limiters run the generic cell rate algorithm (GCRA): a token bucket that stores, per
//! source, only the instant at which its bucket would be full again. Their parameters are whole
//! microseconds, computed here once, so the in-process and the Redis limiter decide alike.

pub(crate) mod in_process;
pub(crate) mod in_redis;

use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::SettingsError;

/// How fast one source may go: `per_second` on average, up to `burst` at once after a quiet
/// spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// Token intervals are whole microseconds (what Redis `TIME` resolves), which caps the rate.
const MAX_PER_SECOND: u32 = 1_000_000;

impl RateLimit {
    /// Checks the limit for start-up. The limiters do not refuse a bad one: they treat a zero
    /// rate or burst as 1 and a rate above 1,000,000/s as 1,000,000/s, so configuration should
    /// call this first.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.per_second == 0 {
            return Err(SettingsError::new("per_second", "must be at least 1"));
        }
        if self.per_second > MAX_PER_SECOND {
            return Err(SettingsError::new("per_second", format!("must be at most {MAX_PER_SECOND}")));
        }
        if self.burst == 0 {
            return Err(SettingsError::new("burst", "must be at least 1"));
        }
        Ok(())
    }

    pub(crate) fn gcra(&self) -> Gcra {
        let per_second = u64::from(self.per_second.clamp(1, MAX_PER_SECOND));
        // Rounded up, so a rate that does not divide a second evenly errs on the strict side.
        Gcra { interval_us: 1_000_000_u64.div_ceil(per_second), burst: self.burst.max(1) }
    }
}

/// GCRA parameters: one token every `interval_us`, at most `burst` of them saved up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    pub interval_us: u64,
    pub burst: u32,
}

impl Gcra {
    /// What a request of `cost` is charged. A cost above the burst could never be paid, so it
    /// is charged the whole burst instead: it gets in once the bucket is full, and uses all of it.
    pub fn charge(&self, cost: u32) -> u32 {
        cost.min(self.burst)
    }

    pub fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_us)
    }
}

/// A request over its source's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited: retry in {} ms", .retry_after.as_millis())]
pub struct Limited {
    /// When the same request would be admitted, if nothing else is spent from the source's
    /// budget in the meantime.
    pub retry_after: Duration,
}

/// Caps how fast each source may send.
///
/// A source names an integration or a channel, such as `"partner:airline-ca"` or
/// `"channel:sms"`: never a traveler's e-mail, phone number, name or id. It ends up in Redis keys
/// and may end up in logs, which must not hold personal data; and one bucket per person would
/// not stop a flood anyway.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Spends `cost` (usually 1; e.g. the number of cases in a batch) from `source`'s budget, or
    /// refuses without spending anything and says when to retry. A cost of 0 always passes; a
    /// cost above the burst is charged as the whole burst.
    async fn check(&self, source: &str, cost: u32) -> Result<(), Limited>;
}

/// Why a shared limiter could not decide. [`RateLimiter::check`] never returns it: the limiter
/// then admits the request (see [`crate::RedisRateLimiter`]); `try_check` exposes it.
#[derive(Debug, thiserror::Error)]
pub enum RateLimiterError {
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply from the rate-limit script: {0}")]
    UnexpectedReply(String),
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// `rate_limit_decisions_total{outcome="allowed"|"limited"|"failed_open"}`. Deliberately not by
/// source: sources come from callers, and an unbounded label would swamp Prometheus.
#[derive(Debug, Default)]
pub(crate) struct RateLimitMetrics {
    decisions: Family<OutcomeLabels, Counter>,
}

impl RateLimitMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rate_limit_decisions",
            "Rate-limit checks by outcome; failed_open counts requests admitted unchecked because the shared store was unreachable",
            self.decisions.clone(),
        );
    }

    pub fn record(&self, decision: &Result<(), Limited>) {
        self.count(if decision.is_ok() { "allowed" } else { "limited" });
    }

    pub fn failed_open(&self) {
        self.count("failed_open");
    }

    fn count(&self, outcome: &'static str) {
        self.decisions.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_whole_microseconds_rounded_up() {
        let gcra = |per_second, burst| RateLimit { per_second, burst }.gcra();
        assert_eq!(gcra(1, 3), Gcra { interval_us: 1_000_000, burst: 3 });
        assert_eq!(gcra(3, 1).interval_us, 333_334);
        assert_eq!(gcra(2_000_000, 1).interval_us, 1);
        assert_eq!(gcra(0, 0), Gcra { interval_us: 1_000_000, burst: 1 });
    }

    #[test]
    fn validation_names_the_setting() {
        assert_eq!(RateLimit { per_second: 5, burst: 10 }.validate(), Ok(()));
        let setting = |per_second, burst| RateLimit { per_second, burst }.validate().err().map(|e| e.setting);
        assert_eq!(setting(0, 10), Some("per_second"));
        assert_eq!(setting(MAX_PER_SECOND + 1, 10), Some("per_second"));
        assert_eq!(setting(5, 0), Some("burst"));
    }
}
