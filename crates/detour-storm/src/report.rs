//! The run's report: every phase as measured, the checks, the ratios to the ceilings, and the
//! issue's targets with what was reached.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::contacts::ContactChecks;
use crate::scenario::{FanoutReport, ImportReport, Verification};
use crate::sink::SinkSnapshot;
use crate::stats::PhaseReport;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub os: &'static str,
    pub arch: &'static str,
}

impl Machine {
    pub fn this() -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Ceilings {
    /// Bytes of each echo request: the encoded OpenCase request of a generated contact.
    pub echo_payload_bytes: usize,
    pub echo: Option<PhaseReport>,
    pub postgres_connections: Option<u32>,
    pub postgres_insert: Option<PhaseReport>,
    /// Rows found in the scratch table afterwards (should equal its OK count).
    pub postgres_rows: Option<i64>,
    /// Why a ceiling was not measured.
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Ratios {
    /// Intake's saturated OpenCase acknowledgements per second over the echo ceiling's calls per
    /// second, same machine, same generator, same concurrency.
    pub intake_over_echo: Option<f64>,
    pub intake_over_postgres_insert: Option<f64>,
    /// The half-load phase's offered rate: 0.5 × 0.4 × the echo ceiling, unless given.
    pub half_load_rate_per_sec: Option<f64>,
    /// Half of what intake acknowledged per second saturated: the half-own-load phase's rate.
    pub half_own_load_rate_per_sec: Option<f64>,
}

/// The headline figures the issue asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Saturated OpenCase acknowledgements per second.
    pub accepted_cases_per_sec: Option<f64>,
    /// Acknowledgement latency while the fan-out ran.
    pub ack_p50_ms: Option<f64>,
    pub ack_p99_ms: Option<f64>,
    pub ack_p999_ms: Option<f64>,
    /// p99 acknowledgement at the half-load rate.
    pub half_load_p99_ms: Option<f64>,
    /// p99 acknowledgement at half of intake's own saturated rate.
    pub half_own_load_p99_ms: Option<f64>,
    /// ReportDisruption to the last affected traveler notified (the run's clock; the server's
    /// timestamps and the sink's are in `disruption`).
    pub time_to_last_notified_secs: Option<f64>,
    pub affected_travelers: Option<i64>,
    pub cases_lost: Option<u64>,
    pub duplicates_created: Option<u64>,
    /// Over every OpenCase phase.
    pub shed_by_priority: BTreeMap<String, u64>,
}

/// One target of the issue and what this run reached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetCheck {
    pub name: &'static str,
    pub target: &'static str,
    pub reached: String,
    /// None when the run did not measure it (or not at the target's size).
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub started_at: String,
    pub finished_at: String,
    /// The command line that produced this report.
    pub command: String,
    pub machine: Machine,
    pub config: serde_json::Value,
    pub summary: Summary,
    pub targets: Vec<TargetCheck>,
    pub ratios: Ratios,
    pub ceilings: Ceilings,
    pub import: Option<ImportReport>,
    pub disruption: Option<FanoutReport>,
    /// OpenCase at the configured rate while the fan-out ran.
    pub contacts: Option<PhaseReport>,
    /// OpenCase closed loop at the ceilings' concurrency: intake's throughput.
    pub saturation: Option<PhaseReport>,
    /// OpenCase open loop at the half-load rate.
    pub half_load: Option<PhaseReport>,
    /// OpenCase open loop at half the saturated phase's rate (informative).
    pub half_own_load: Option<PhaseReport>,
    pub contact_checks: Option<ContactChecks>,
    pub verification: Option<Verification>,
    pub sink: Option<SinkSnapshot>,
    /// What stopped part of the run; the phases before it are still reported.
    pub errors: Vec<String>,
}

fn fmt_opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "not measured".to_owned(), |v| format!("{v:.1}{unit}"))
}

impl Report {
    /// Fills `summary`, `ratios` and `targets` from the phases.
    pub fn conclude(&mut self, half_load_rate: Option<f64>) {
        let echo = self.ceilings.echo.as_ref().map(|p| p.ok_per_sec).filter(|r| *r > 0.0);
        let pg = self.ceilings.postgres_insert.as_ref().map(|p| p.ok_per_sec).filter(|r| *r > 0.0);
        let intake = self.saturation.as_ref().map(|p| p.ok_per_sec);
        self.ratios = Ratios {
            intake_over_echo: intake.zip(echo).map(|(i, e)| i / e),
            intake_over_postgres_insert: intake.zip(pg).map(|(i, p)| i / p),
            half_load_rate_per_sec: half_load_rate,
            half_own_load_rate_per_sec: self.half_own_load.as_ref().and_then(|p| p.target_rate_per_sec),
        };
        let mut shed = BTreeMap::new();
        for p in
            [&self.contacts, &self.saturation, &self.half_load, &self.half_own_load].into_iter().flatten()
        {
            for (k, v) in &p.shed_by_priority {
                *shed.entry(k.clone()).or_default() += v;
            }
        }
        let during = self.contacts.as_ref().filter(|p| p.ok > 0).map(|p| &p.latency_ms);
        let half = self.half_load.as_ref().filter(|p| p.ok > 0);
        self.summary = Summary {
            accepted_cases_per_sec: intake,
            ack_p50_ms: during.map(|l| l.p50_ms),
            ack_p99_ms: during.map(|l| l.p99_ms),
            ack_p999_ms: during.map(|l| l.p999_ms),
            half_load_p99_ms: half.map(|p| p.latency_ms.p99_ms),
            half_own_load_p99_ms: self
                .half_own_load
                .as_ref()
                .filter(|p| p.ok > 0)
                .map(|p| p.latency_ms.p99_ms),
            time_to_last_notified_secs: self.disruption.as_ref().and_then(|d| d.last_notified_secs),
            affected_travelers: self.disruption.as_ref().map(|d| d.last.affected_travelers),
            cases_lost: self.verification.as_ref().map(|v| v.lost),
            duplicates_created: self.verification.as_ref().map(|v| v.duplicates),
            shed_by_priority: shed,
        };
        self.targets = self.target_checks();
    }

    fn target_checks(&self) -> Vec<TargetCheck> {
        let mut t = Vec::new();
        let share = self.ratios.intake_over_echo;
        t.push(TargetCheck {
            name: "sustained acceptance",
            target: ">= 40 % of the echo ceiling",
            reached: share
                .map_or_else(|| "not measured".to_owned(), |s| format!("{:.1} % of echo", s * 100.0)),
            met: share.map(|s| s >= 0.4),
        });
        // The half-load p99 counts only if the phase was offered the half-load rate and kept up.
        let half = self.half_load.as_ref().filter(|p| p.ok > 0);
        let kept_up = half.is_some_and(|p| {
            p.target_rate_per_sec.is_some_and(|r| p.ok_per_sec >= 0.95 * r) && p.shed == 0 && p.not_sent == 0
        });
        t.push(TargetCheck {
            name: "acknowledgement p99 at half load",
            target: "<= 50 ms at 20 % of the echo ceiling",
            reached: half.map_or_else(
                || "not measured".to_owned(),
                |p| {
                    format!(
                        "{:.1} ms at {:.0}/s offered, {:.0}/s acknowledged",
                        p.latency_ms.p99_ms,
                        p.target_rate_per_sec.unwrap_or(0.0),
                        p.ok_per_sec
                    )
                },
            ),
            met: half.map(|p| kept_up && p.latency_ms.p99_ms <= 50.0),
        });
        let d = self.disruption.as_ref();
        let full_size = d.is_some_and(|d| d.expected_affected >= 100_000);
        t.push(TargetCheck {
            name: "fan-out of 100,000 travelers",
            target: "cases opened and notifications dispatched in <= 30 s",
            reached: d.map_or_else(
                || "not measured".to_owned(),
                |d| {
                    format!(
                        "{} for {} travelers{}",
                        fmt_opt(d.last_notified_secs, " s"),
                        d.expected_affected,
                        if d.timed_out { " (timed out)" } else { "" }
                    )
                },
            ),
            met: d.filter(|_| full_size).map(|d| d.last_notified_secs.is_some_and(|s| s <= 30.0)),
        });
        let v = self.verification.as_ref();
        t.push(TargetCheck {
            name: "cases lost",
            target: "0",
            reached: v.map_or_else(
                || "not measured".to_owned(),
                |v| {
                    format!("{} of {} checked{}", v.lost, v.checked, if v.sampled { " (sample)" } else { "" })
                },
            ),
            met: v.map(|v| v.lost == 0),
        });
        t.push(TargetCheck {
            name: "duplicates created",
            target: "0",
            reached: v.map_or_else(|| "not measured".to_owned(), |v| v.duplicates.to_string()),
            met: v.filter(|v| v.list_error.is_none()).map(|v| v.duplicates == 0),
        });
        let uncovered = v.and_then(|v| v.travelers_without_case);
        t.push(TargetCheck {
            name: "affected travelers without a case",
            target: "0",
            reached: uncovered.map_or_else(|| "not measured".to_owned(), |n| n.to_string()),
            met: uncovered.map(|n| n == 0),
        });
        let safety_shed = self.summary.shed_by_priority.get("safety").copied().unwrap_or(0)
            + self.contact_checks.as_ref().map_or(0, |c| c.safety_shed);
        t.push(TargetCheck {
            name: "safety contacts shed",
            target: "0",
            reached: if self.contact_checks.is_some() {
                safety_shed.to_string()
            } else {
                "not measured".into()
            },
            met: self.contact_checks.as_ref().map(|_| safety_shed == 0),
        });
        t
    }

    /// Checks that must hold for any size: nothing lost, nothing duplicated, no safety shed.
    pub fn broken_promises(&self) -> Vec<String> {
        self.targets
            .iter()
            .filter(|t| t.target == "0" && t.met == Some(false))
            .map(|t| format!("{}: {}", t.name, t.reached))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::LatencySummary;

    fn phase(ok_per_sec: f64, p99: f64) -> PhaseReport {
        PhaseReport {
            name: "p".into(),
            pacing: "closed",
            concurrency: 1,
            target_rate_per_sec: None,
            elapsed_secs: 1.0,
            sent: 1,
            not_sent: 0,
            completed: 1,
            ok: 1,
            shed: 0,
            errors: 0,
            by_code: BTreeMap::new(),
            shed_by_priority: BTreeMap::from([("low".to_owned(), 3)]),
            ok_by_priority: BTreeMap::new(),
            ok_per_sec,
            sustained_ok_per_sec: ok_per_sec,
            latency_ms: LatencySummary { p99_ms: p99, ..LatencySummary::default() },
            series: Vec::new(),
        }
    }

    #[test]
    fn ratios_and_targets_follow_the_phases() {
        let mut r = Report::default();
        r.ceilings.echo = Some(phase(10_000.0, 1.0));
        r.ceilings.postgres_insert = Some(phase(5_000.0, 2.0));
        r.saturation = Some(phase(4_500.0, 80.0));
        let mut half = phase(1_990.0, 30.0);
        half.pacing = "open";
        half.target_rate_per_sec = Some(2_000.0);
        r.half_load = Some(half);
        r.conclude(Some(2_000.0));
        assert_eq!(r.ratios.intake_over_echo, Some(0.45));
        assert_eq!(r.ratios.intake_over_postgres_insert, Some(0.9));
        assert_eq!(r.summary.shed_by_priority.get("low"), Some(&6));
        assert_eq!(r.targets[0].met, Some(true));
        assert_eq!(r.targets[1].met, Some(true));
        // Not measured: no verdict.
        assert_eq!(r.targets[2].met, None);
        assert_eq!(r.targets[3].met, None);
        assert!(r.broken_promises().is_empty());

        r.verification = Some(Verification { lost: 2, checked: 10, ..Verification::default() });
        r.conclude(Some(2_000.0));
        assert_eq!(r.broken_promises(), vec!["cases lost: 2 of 10 checked".to_owned()]);
    }
}
