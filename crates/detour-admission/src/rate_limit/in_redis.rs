//! Token buckets in Redis, so every replica of a service spends from the same budget.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus_client::registry::Registry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd};

use super::{Gcra, Limited, RateLimit, RateLimitMetrics, RateLimiter, RateLimiterError};

/// The GCRA step. The key holds, in microseconds of Redis time, when the source's bucket is full
/// again. Needs Redis 5 or later, where scripts replicate their writes rather than themselves,
/// so reading `TIME` before writing is allowed.
///
/// KEYS[1]: the source's key. ARGV: microseconds per token, burst, cost (1 to burst).
/// Returns {1, 0} when admitted, {0, microseconds until it would be} when not.
const SCRIPT: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local full_at = tonumber(redis.call('GET', KEYS[1]) or '') or 0
if full_at < now then full_at = now end
local new_full_at = full_at + cost * interval
local horizon = now + burst * interval
if new_full_at > horizon then
  return {0, new_full_at - horizon}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_full_at), 'PX', math.ceil((new_full_at - now) / 1000))
return {1, 0}
";

/// A rate-limit check is on the request path of every intake call: when Redis is slow it is
/// better to fail open quickly than to make travelers wait.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);

/// How often a Redis outage is logged; every request fails open meanwhile, and a line for each
/// would flood the logs at storm rates.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Per-source rate limits shared by every replica through Redis.
///
/// One Lua script reads and updates a source's bucket atomically, on Redis's clock (`TIME`):
/// replicas whose clocks disagree still agree on every decision. A bucket is the key
/// `{prefix}:rl:{source}` and lives only until the bucket is full again, which is the same as no
/// key, so idle sources cost nothing.
///
/// Failure policy: when Redis cannot answer (down, unreachable, slower than the timeout),
/// [`RateLimiter::check`] admits the request, counts it in
/// `rate_limit_decisions_total{outcome="failed_open"}` and logs a warning (at most every ten
/// seconds). Refusing every traveler during a Redis blip would be worse than a few seconds of
/// unenforced limits, and the per-replica [`crate::Admission`] limit still protects the service
/// meanwhile. Callers that prefer to fail closed use [`RedisRateLimiter::try_check`].
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    prefix: String,
    gcra: Gcra,
    timeout: Duration,
    /// The script's SHA-1 as Redis reported it when loading it; cached so each check sends the
    /// hash, not the script.
    script_sha: Mutex<Option<String>>,
    metrics: RateLimitMetrics,
    warnings: Mutex<WarnThrottle>,
}

#[derive(Default)]
struct WarnThrottle {
    last: Option<Instant>,
    suppressed: u64,
}

impl fmt::Debug for RedisRateLimiter {
    // The connection's URL may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .field("gcra", &self.gcra)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// Every source gets `limit` (see [`RateLimit::validate`]); buckets are the keys
    /// `{prefix}:rl:{source}`. Replicas that must share budgets use the same prefix and limit.
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>, limit: RateLimit) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            gcra: limit.gcra(),
            timeout: DEFAULT_TIMEOUT,
            script_sha: Mutex::new(None),
            metrics: RateLimitMetrics::default(),
            warnings: Mutex::new(WarnThrottle::default()),
        }
    }

    /// Like [`RedisRateLimiter::new`] with a connection to `url`. Checks the URL but does not
    /// wait for Redis (the first check connects), so a service can start during a Redis outage.
    /// Async only because the connection's background task needs the Tokio runtime.
    pub async fn connect(
        url: &str,
        prefix: impl Into<String>,
        limit: RateLimit,
    ) -> Result<Self, RateLimiterError> {
        let client = Client::open(url).map_err(|e| RateLimiterError::InvalidUrl(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(DEFAULT_TIMEOUT))
            // Each check is bounded by the limiter's timeout anyway, and the manager reconnects
            // on a later call; long retry loops would only keep checks waiting.
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self::new(conn, prefix, limit))
    }

    /// How long a check may wait for Redis before failing (open, for [`RateLimiter::check`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Registers `rate_limit_decisions_total{outcome}` in `registry`; give each limiter its own
    /// sub-registry when several share one.
    pub fn with_metrics(self, registry: &mut Registry) -> Self {
        self.metrics.register(registry);
        self
    }

    /// Like [`RateLimiter::check`], but reports a Redis failure instead of admitting, and
    /// records no metrics.
    pub async fn try_check(&self, source: &str, cost: u32) -> Result<Result<(), Limited>, RateLimiterError> {
        let charge = self.gcra.charge(cost);
        if charge == 0 {
            return Ok(Ok(()));
        }
        let key = format!("{}:rl:{}", self.prefix, source);
        let reply = tokio::time::timeout(self.timeout, self.run_script(&key, charge))
            .await
            .map_err(|_| RateLimiterError::Timeout(self.timeout))??;
        match reply.as_slice() {
            [1, _] => Ok(Ok(())),
            [0, micros] => {
                let micros = u64::try_from(*micros)
                    .map_err(|_| RateLimiterError::UnexpectedReply(format!("{reply:?}")))?;
                Ok(Err(Limited { retry_after: Duration::from_micros(micros) }))
            }
            _ => Err(RateLimiterError::UnexpectedReply(format!("{reply:?}"))),
        }
    }

    async fn run_script(&self, key: &str, charge: u32) -> Result<Vec<i64>, RateLimiterError> {
        let mut conn = self.conn.clone();
        let cached = self.script_sha.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let sha = match cached {
            Some(sha) => sha,
            None => {
                let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(SCRIPT).query_async(&mut conn).await?;
                *self.script_sha.lock().unwrap_or_else(PoisonError::into_inner) = Some(sha.clone());
                sha
            }
        };
        match self.invocation("EVALSHA", &sha, key, charge).query_async(&mut conn).await {
            // Redis forgot the script (restart, failover, SCRIPT FLUSH). EVAL sends it whole and
            // caches it again under the same hash, so later checks go back to EVALSHA.
            Err(e) if e.code() == Some("NOSCRIPT") => {
                Ok(self.invocation("EVAL", SCRIPT, key, charge).query_async(&mut conn).await?)
            }
            reply => Ok(reply?),
        }
    }

    fn invocation(&self, command: &str, script: &str, key: &str, charge: u32) -> Cmd {
        let mut cmd = redis::cmd(command);
        cmd.arg(script).arg(1).arg(key).arg(self.gcra.interval_us).arg(self.gcra.burst).arg(charge);
        cmd
    }

    fn warn_failed_open(&self, error: &RateLimiterError) {
        let mut warnings = self.warnings.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if warnings.last.is_some_and(|last| now.duration_since(last) < WARN_EVERY) {
            warnings.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut warnings.suppressed);
        warnings.last = Some(now);
        drop(warnings);
        tracing::warn!(
            %error,
            prefix = %self.prefix,
            suppressed,
            "rate limits not enforced: Redis did not answer, admitting requests unchecked"
        );
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, source: &str, cost: u32) -> Result<(), Limited> {
        match self.try_check(source, cost).await {
            Ok(decision) => {
                self.metrics.record(&decision);
                decision
            }
            Err(error) => {
                self.metrics.failed_open();
                self.warn_failed_open(&error);
                Ok(())
            }
        }
    }
}
