//! What a load phase measured: outcomes by gRPC code, acknowledgement latency in an HDR
//! histogram, and a per-second series, summarised into a [`PhaseReport`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::error::StormError;

/// Admission priority, as intake reports it on an answer or on a shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
    Safety,
    /// Not said: a shed by the host's queue, before intake saw the request, carries none.
    Unknown,
    /// Not shed for priority but for the source's rate limit (ErrorInfo reason RATE_LIMITED):
    /// kept apart so priority shedding is not blamed for it.
    RateLimited,
}

impl Priority {
    pub fn from_proto(value: i32) -> Self {
        use detour_proto::intake::v1::Priority as P;
        match P::try_from(value) {
            Ok(P::Low) => Self::Low,
            Ok(P::Normal) => Self::Normal,
            Ok(P::High) => Self::High,
            Ok(P::Safety) => Self::Safety,
            Ok(P::Unspecified) | Err(_) => Self::Unknown,
        }
    }

    /// Reads the `priority` of a shed's ErrorInfo: the enum name (`PRIORITY_LOW`), the short
    /// name in any case (`low`), or the number.
    pub fn parse(raw: &str) -> Self {
        let raw = raw.trim();
        if let Ok(n) = raw.parse::<i32>() {
            return Self::from_proto(n);
        }
        let upper = raw.to_ascii_uppercase();
        match upper.strip_prefix("PRIORITY_").unwrap_or(&upper) {
            "LOW" => Self::Low,
            "NORMAL" => Self::Normal,
            "HIGH" => Self::High,
            "SAFETY" => Self::Safety,
            _ => Self::Unknown,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Safety => "safety",
            Self::Unknown => "unknown",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// How a request ended, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Ok,
    /// Refused before any work so the caller may retry: `RESOURCE_EXHAUSTED` (intake's priority
    /// shedding) or `UNAVAILABLE` (the host's queue, or no connection).
    Shed,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub class: Class,
    /// The gRPC code's name (`OK`, `RESOURCE_EXHAUSTED`), or for the database ceiling
    /// `DB_ERROR`.
    pub code: &'static str,
    pub priority: Option<Priority>,
}

impl Outcome {
    pub fn ok(priority: Option<Priority>) -> Self {
        Self { class: Class::Ok, code: "OK", priority }
    }

    pub fn error(code: &'static str) -> Self {
        Self { class: Class::Error, code, priority: None }
    }

    pub fn from_status(status: &tonic::Status) -> Self {
        use tonic_types::StatusExt;
        let code = status.code();
        let class = match code {
            tonic::Code::Ok => Class::Ok,
            tonic::Code::ResourceExhausted | tonic::Code::Unavailable => Class::Shed,
            _ => Class::Error,
        };
        let priority = if class == Class::Shed {
            let info = status.get_details_error_info();
            Some(match info {
                Some(i) if i.reason == "RATE_LIMITED" => Priority::RateLimited,
                Some(i) => i.metadata.get("priority").map_or(Priority::Unknown, |p| Priority::parse(p)),
                None => Priority::Unknown,
            })
        } else {
            None
        };
        Self { class, code: code_name(code), priority }
    }
}

pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Percentiles of acknowledged (OK) calls, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// One second of a phase, by completion time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SecondSample {
    /// Seconds since the phase started.
    pub t: u64,
    pub ok: u64,
    pub shed: u64,
    pub errors: u64,
    /// Of the calls acknowledged in this second; absent when there were none.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// A phase's counts so far, for the progress line.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    pub completed: u64,
    pub ok: u64,
    pub shed: u64,
    pub errors: u64,
    pub p99_ms: f64,
}

fn histogram() -> Result<Histogram<u64>, StormError> {
    // Microseconds, 1 µs to 1 h, three significant digits (0.1 % error).
    Ok(Histogram::new_with_bounds(1, 3_600_000_000, 3)?)
}

/// Collects the outcomes of one phase.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    total: Histogram<u64>,
    second: Histogram<u64>,
    current_second: u64,
    series: Vec<SecondSample>,
    by_code: BTreeMap<&'static str, u64>,
    shed_by_priority: BTreeMap<Priority, u64>,
    ok_by_priority: BTreeMap<Priority, u64>,
    ok: u64,
    shed: u64,
    errors: u64,
    last_completion: Duration,
}

impl Recorder {
    pub fn new(start: Instant) -> Result<Self, StormError> {
        Ok(Self {
            start,
            total: histogram()?,
            second: histogram()?,
            current_second: 0,
            series: Vec::new(),
            by_code: BTreeMap::new(),
            shed_by_priority: BTreeMap::new(),
            ok_by_priority: BTreeMap::new(),
            ok: 0,
            shed: 0,
            errors: 0,
            last_completion: Duration::ZERO,
        })
    }

    /// One finished request: how long it took and when it finished.
    pub fn record(&mut self, latency: Duration, completed: Instant, outcome: &Outcome) {
        let since = completed.saturating_duration_since(self.start);
        self.last_completion = self.last_completion.max(since);
        let sec = since.as_secs();
        self.roll_to(sec);
        *self.by_code.entry(outcome.code).or_default() += 1;
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let in_current = sec == self.current_second;
        let sample = self.sample_mut(sec);
        match outcome.class {
            Class::Ok => {
                sample.ok += 1;
                self.ok += 1;
                self.total.saturating_record(us);
                // A completion from a second already closed (threads race at the boundary)
                // counts there but no longer moves that second's percentiles.
                if in_current {
                    self.second.saturating_record(us);
                }
                if let Some(p) = outcome.priority {
                    *self.ok_by_priority.entry(p).or_default() += 1;
                }
            }
            Class::Shed => {
                sample.shed += 1;
                self.shed += 1;
                *self.shed_by_priority.entry(outcome.priority.unwrap_or(Priority::Unknown)).or_default() += 1;
            }
            Class::Error => {
                sample.errors += 1;
                self.errors += 1;
            }
        }
    }

    fn sample_mut(&mut self, sec: u64) -> &mut SecondSample {
        let idx = sec as usize;
        while self.series.len() <= idx {
            let t = self.series.len() as u64;
            self.series.push(SecondSample { t, ..SecondSample::default() });
        }
        &mut self.series[idx]
    }

    fn roll_to(&mut self, sec: u64) {
        if sec <= self.current_second {
            return;
        }
        self.close_second();
        self.current_second = sec;
    }

    fn close_second(&mut self) {
        if self.second.is_empty() {
            return;
        }
        let p50 = self.second.value_at_quantile(0.5) as f64 / 1000.0;
        let p99 = self.second.value_at_quantile(0.99) as f64 / 1000.0;
        let sample = self.sample_mut(self.current_second);
        sample.p50_ms = Some(p50);
        sample.p99_ms = Some(p99);
        self.second.reset();
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            completed: self.ok + self.shed + self.errors,
            ok: self.ok,
            shed: self.shed,
            errors: self.errors,
            p99_ms: if self.total.is_empty() {
                0.0
            } else {
                self.total.value_at_quantile(0.99) as f64 / 1000.0
            },
        }
    }

    /// The phase's report; `ended` is when the phase stopped waiting for answers.
    pub fn finish(mut self, shape: PhaseShape, sent: u64, not_sent: u64, ended: Instant) -> PhaseReport {
        self.close_second();
        let elapsed = ended.saturating_duration_since(self.start).max(self.last_completion);
        let elapsed_secs = elapsed.as_secs_f64();
        let ok_per_sec = if elapsed_secs > 0.0 { self.ok as f64 / elapsed_secs } else { 0.0 };
        PhaseReport {
            name: shape.name,
            pacing: shape.pacing,
            concurrency: shape.concurrency,
            target_rate_per_sec: shape.target_rate_per_sec,
            elapsed_secs,
            sent,
            not_sent,
            completed: self.ok + self.shed + self.errors,
            ok: self.ok,
            shed: self.shed,
            errors: self.errors,
            by_code: self.by_code.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            shed_by_priority: self.shed_by_priority.iter().map(|(k, v)| (k.name().to_owned(), *v)).collect(),
            ok_by_priority: self.ok_by_priority.iter().map(|(k, v)| (k.name().to_owned(), *v)).collect(),
            ok_per_sec,
            sustained_ok_per_sec: sustained(&self.series).unwrap_or(ok_per_sec),
            latency_ms: LatencySummary::of(&self.total),
            series: self.series,
        }
    }
}

/// How a phase was driven, carried into its report.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseShape {
    pub name: String,
    pub pacing: &'static str,
    pub concurrency: usize,
    pub target_rate_per_sec: Option<f64>,
}

/// The median of the per-second acknowledgement counts, leaving out the first and the last
/// second (a ramp-up and a partial second); `None` for phases too short to have a middle.
pub fn sustained(series: &[SecondSample]) -> Option<f64> {
    if series.len() < 3 {
        return None;
    }
    let mut inner: Vec<u64> = series[1..series.len() - 1].iter().map(|s| s.ok).collect();
    inner.sort_unstable();
    let mid = inner.len() / 2;
    Some(if inner.len() % 2 == 1 { inner[mid] as f64 } else { (inner[mid - 1] + inner[mid]) as f64 / 2.0 })
}

/// One load phase, measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseReport {
    pub name: String,
    /// `closed` (fixed workers) or `open` (fixed arrival rate).
    pub pacing: &'static str,
    /// Workers (closed) or the most calls in flight (open).
    pub concurrency: usize,
    pub target_rate_per_sec: Option<f64>,
    /// From the first request to the last answer.
    pub elapsed_secs: f64,
    pub sent: u64,
    /// Open loop: arrivals the schedule called for that were never sent, because every slot
    /// was still busy when the phase ended (the target fell that far behind).
    pub not_sent: u64,
    pub completed: u64,
    pub ok: u64,
    pub shed: u64,
    pub errors: u64,
    pub by_code: BTreeMap<String, u64>,
    pub shed_by_priority: BTreeMap<String, u64>,
    pub ok_by_priority: BTreeMap<String, u64>,
    /// Acknowledged calls over the elapsed time.
    pub ok_per_sec: f64,
    /// Median acknowledged calls per whole second.
    pub sustained_ok_per_sec: f64,
    /// Of acknowledged calls. Open loop measures from when a call was due, not from when a
    /// free slot let it go, so a target that falls behind shows it (no coordinated omission).
    pub latency_ms: LatencySummary,
    pub series: Vec<SecondSample>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> PhaseShape {
        PhaseShape { name: "t".into(), pacing: "closed", concurrency: 1, target_rate_per_sec: None }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let start = Instant::now();
        let mut r = Recorder::new(start).unwrap();
        for ms in 1..=1000u64 {
            r.record(Duration::from_millis(ms), start, &Outcome::ok(Some(Priority::Normal)));
        }
        let report = r.finish(shape(), 1000, 0, start + Duration::from_secs(2));
        let l = &report.latency_ms;
        assert_eq!(l.count, 1000);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.002;
        assert!(close(l.p50_ms, 500.0), "{l:?}");
        assert!(close(l.p90_ms, 900.0), "{l:?}");
        assert!(close(l.p99_ms, 990.0), "{l:?}");
        assert!(close(l.p999_ms, 999.0), "{l:?}");
        assert!(close(l.max_ms, 1000.0), "{l:?}");
        assert!(close(l.mean_ms, 500.5), "{l:?}");
        assert_eq!(report.ok_per_sec, 500.0);
        assert_eq!(report.ok_by_priority.get("normal"), Some(&1000));
    }

    #[test]
    fn outcomes_are_counted_by_code_class_and_second() {
        let start = Instant::now();
        let mut r = Recorder::new(start).unwrap();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let shed = Outcome { class: Class::Shed, code: "RESOURCE_EXHAUSTED", priority: Some(Priority::Low) };
        r.record(Duration::from_millis(2), at(100), &Outcome::ok(None));
        r.record(Duration::from_millis(4), at(900), &Outcome::ok(None));
        r.record(Duration::from_millis(1), at(1500), &shed);
        r.record(Duration::from_millis(1), at(1600), &Outcome::error("INTERNAL"));
        // Late arrival for second 0 after second 1 opened: counted there.
        r.record(Duration::from_millis(3), at(999), &Outcome::ok(None));
        r.record(Duration::from_millis(8), at(3200), &Outcome::ok(None));
        assert_eq!(r.snapshot().completed, 6);
        let report = r.finish(shape(), 7, 1, at(3500));
        assert_eq!((report.ok, report.shed, report.errors, report.completed), (4, 1, 1, 6));
        assert_eq!((report.sent, report.not_sent), (7, 1));
        assert_eq!(report.by_code.get("OK"), Some(&4));
        assert_eq!(report.by_code.get("RESOURCE_EXHAUSTED"), Some(&1));
        assert_eq!(report.by_code.get("INTERNAL"), Some(&1));
        assert_eq!(report.shed_by_priority.get("low"), Some(&1));
        let oks: Vec<u64> = report.series.iter().map(|s| s.ok).collect();
        assert_eq!(oks, vec![3, 0, 0, 1]);
        assert_eq!(report.series[1].shed, 1);
        assert_eq!(report.series[1].errors, 1);
        assert!(report.series[0].p99_ms.unwrap() >= 3.99);
        assert_eq!(report.series[1].p99_ms, None);
        assert!((report.series[3].p50_ms.unwrap() - 8.0).abs() < 0.01);
        assert!((report.elapsed_secs - 3.5).abs() < 1e-9);
    }

    #[test]
    fn shed_status_carries_the_priority_from_error_info() {
        use tonic_types::{ErrorDetails, StatusExt};
        let details = ErrorDetails::with_error_info(
            "SHED",
            "detour.intake",
            [("priority".to_owned(), "PRIORITY_NORMAL".to_owned())],
        );
        let status = tonic::Status::with_error_details(tonic::Code::ResourceExhausted, "busy", details);
        let o = Outcome::from_status(&status);
        assert_eq!(
            (o.class, o.code, o.priority),
            (Class::Shed, "RESOURCE_EXHAUSTED", Some(Priority::Normal))
        );
        let o = Outcome::from_status(&tonic::Status::unavailable("queue full"));
        assert_eq!((o.class, o.priority), (Class::Shed, Some(Priority::Unknown)));
        let o = Outcome::from_status(&tonic::Status::not_found("no such traveler"));
        assert_eq!((o.class, o.code, o.priority), (Class::Error, "NOT_FOUND", None));
        let limited = tonic::Status::with_error_details(
            tonic::Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_error_info("RATE_LIMITED", "detour", std::collections::HashMap::new()),
        );
        assert_eq!(Outcome::from_status(&limited).priority, Some(Priority::RateLimited));
        assert_eq!(Priority::parse("safety"), Priority::Safety);
        assert_eq!(Priority::parse("3"), Priority::High);
        assert_eq!(Priority::parse("?"), Priority::Unknown);
    }

    #[test]
    fn sustained_rate_is_the_median_of_whole_seconds() {
        let s = |ok| SecondSample { ok, ..SecondSample::default() };
        assert_eq!(sustained(&[s(1), s(10), s(30), s(20), s(2)]), Some(20.0));
        assert_eq!(sustained(&[s(1), s(10), s(30), s(20), s(40), s(2)]), Some(25.0));
        assert_eq!(sustained(&[s(1), s(2)]), None);
    }
}
