//! Admission control for crisis spikes.
//!
//! In a storm, intake is flooded: tens of thousands of travelers, partner feeds and channels
//! open cases at once. This crate decides, before any work is done, which requests get in.
//!
//! - [`Admission`] is a priority-aware concurrency limiter for one replica. Each [`Priority`]
//!   below [`Priority::Safety`] may hold only its share of the in-flight slots (low-priority work
//!   is squeezed out first), waits at most its own short time for a slot, and is then shed with
//!   [`Shed`], which becomes `RESOURCE_EXHAUSTED` with a retry hint. Safety and medical contacts
//!   are never shed and never wait, even beyond capacity.
//! - [`RateLimiter`] caps how fast one *source* (a partner, a channel) may send, so one noisy
//!   integration cannot take every slot. [`LocalRateLimiter`] keeps its buckets in process (one
//!   replica, `detour dev`); [`RedisRateLimiter`] keeps them in Redis so every intake replica
//!   spends from the same budget. Both implement the same GCRA (a token bucket that stores one
//!   timestamp per source), so they agree on every decision.
//!
//! A rate-limit source names an integration, never a person: `"partner:airline-ca"`,
//! `"channel:sms"`. It becomes part of a Redis key and of log lines, so a traveler's e-mail,
//! phone number or id must never be used as one.

mod admission;
mod priority;
mod rate_limit;
mod status;

pub use admission::{Admission, AdmissionSettings, PerPriority, Permit, Shed};
pub use priority::Priority;
pub use rate_limit::in_process::LocalRateLimiter;
pub use rate_limit::in_redis::RedisRateLimiter;
pub use rate_limit::{Limited, RateLimit, RateLimiter, RateLimiterError};

/// A setting that cannot work, named by its field so start-up can report which one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct SettingsError {
    /// The field, e.g. `shares.low` or `per_second`.
    pub setting: &'static str,
    pub problem: String,
}

impl SettingsError {
    fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        Self { setting, problem: problem.into() }
    }
}
