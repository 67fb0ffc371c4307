//! The storm against a running suite: import the itineraries, report the disruption, follow
//! its fan-out to the last traveler notified, and afterwards check that no acknowledged case is
//! missing and no traveler has two cases for one flight.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use detour_proto::common::v1 as common;
use detour_proto::intake::v1 as pb;
use detour_proto::intake::v1::intake_service_client::IntakeServiceClient;
use futures::StreamExt;
use serde::Serialize;

use crate::client::Authed;
use crate::contacts::{Answer, ContactRecord};
use crate::error::StormError;
use crate::itinerary::Crisis;
use crate::rng::Rng;
use crate::sink::SinkWatcher;
use crate::stats::code_name;

pub type Intake = IntakeServiceClient<Authed>;

pub(crate) fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

fn instant_of(t: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let t = t?;
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

fn secs_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}

// --- Import ------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    pub trips_sent: u64,
    pub travelers: u64,
    pub segments_sent: u64,
    pub trips_stored: u64,
    pub segments_stored: u64,
    pub refused: u64,
    pub refused_examples: Vec<String>,
    /// ImportItineraries calls (each a stream of chunks).
    pub calls: u64,
    pub trips_per_message: usize,
    pub elapsed_secs: f64,
    pub trips_per_sec: f64,
    pub travelers_per_sec: f64,
}

/// Streams the trips in chunks of `chunk` per message, `messages_per_call` messages per call:
/// several calls rather than one keeps each under the suite's per-call deadline.
pub async fn import(
    client: &Intake,
    crisis: &Crisis,
    chunk: usize,
    messages_per_call: usize,
    progress: bool,
) -> Result<ImportReport, StormError> {
    let chunk = chunk.max(1);
    let per_call = chunk.saturating_mul(messages_per_call.max(1));
    let started = Instant::now();
    let mut report = ImportReport {
        trips_sent: crisis.trips.len() as u64,
        travelers: crisis.travelers.len() as u64,
        segments_sent: crisis.segment_count() as u64,
        trips_per_message: chunk,
        ..ImportReport::default()
    };
    for (call, trips) in crisis.trips.chunks(per_call).enumerate() {
        let messages: Vec<pb::ImportItinerariesRequest> =
            trips.chunks(chunk).map(|c| pb::ImportItinerariesRequest { trips: c.to_vec() }).collect();
        let answer = client
            .clone()
            .import_itineraries(tokio_stream::iter(messages))
            .await
            .map_err(|s| StormError::rpc("ImportItineraries", s))?
            .into_inner();
        report.calls += 1;
        report.trips_stored += u64::try_from(answer.trips_stored).unwrap_or(0);
        report.segments_stored += u64::try_from(answer.segments_stored).unwrap_or(0);
        report.refused += answer.refused.len() as u64;
        for r in answer.refused.iter().take(5usize.saturating_sub(report.refused_examples.len())) {
            let index = call * per_call + usize::try_from(r.index).unwrap_or(0);
            report.refused_examples.push(format!(
                "trip {index} ({}): {}",
                r.booking_reference,
                r.violations.join("; ")
            ));
        }
        if progress {
            eprintln!(
                "[import] {:>6.1}s {} of {} trips stored, {} refused",
                started.elapsed().as_secs_f64(),
                report.trips_stored,
                report.trips_sent,
                report.refused
            );
        }
    }
    report.elapsed_secs = started.elapsed().as_secs_f64();
    if report.elapsed_secs > 0.0 {
        report.trips_per_sec = report.trips_stored as f64 / report.elapsed_secs;
        report.travelers_per_sec = report.travelers as f64 / report.elapsed_secs;
    }
    Ok(report)
}

// --- Disruption --------------------------------------------------------------------------------

/// How the crisis is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One AIRPORT_CLOSED incident for the airport's departures over the day.
    Airport,
    /// One FLIGHT_CANCELLED incident per flight.
    Flights,
}

const REASON: &str = "heavy snow: runways closed";

/// The ReportDisruption requests of the crisis.
pub fn disruption_requests(
    crisis: &Crisis,
    mode: Mode,
) -> Result<Vec<pb::ReportDisruptionRequest>, StormError> {
    let reason = format!("{REASON} at {}", crisis.spec.airport);
    Ok(match mode {
        Mode::Airport => {
            let (from, until) = crisis.window()?;
            vec![pb::ReportDisruptionRequest {
                kind: pb::DisruptionKind::AirportClosed as i32,
                scope: Some(pb::Scope {
                    scope: Some(pb::scope::Scope::Airport(pb::AirportScope {
                        airport: crisis.spec.airport.clone(),
                        from: Some(timestamp(from)),
                        until: Some(timestamp(until)),
                        departures_only: true,
                    })),
                }),
                reason,
                delay_minutes: 0,
                diverted_to: String::new(),
            }]
        }
        Mode::Flights => crisis
            .flights
            .iter()
            .map(|f| pb::ReportDisruptionRequest {
                kind: pb::DisruptionKind::FlightCancelled as i32,
                scope: Some(pb::Scope {
                    scope: Some(pb::scope::Scope::Flight(pb::FlightScope {
                        flight_number: f.number.clone(),
                        local_date: crisis.local_date(),
                    })),
                }),
                reason: reason.clone(),
                delay_minutes: 0,
                diverted_to: String::new(),
            })
            .collect(),
    })
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RereportReport {
    pub sent: u64,
    /// Answered with the same incident and created=false.
    pub same_incident: u64,
    pub violations: u64,
    pub examples: Vec<String>,
}

/// The incidents declared, and when.
#[derive(Debug, Clone)]
pub struct Declared {
    pub incident_ids: Vec<String>,
    pub requests: Vec<pb::ReportDisruptionRequest>,
    pub reported: Instant,
    pub reported_at: DateTime<Utc>,
    pub created: u64,
}

const REPORT_CONCURRENCY: usize = 16;

/// Reports every disruption of the crisis.
pub async fn declare(client: &Intake, crisis: &Crisis, mode: Mode) -> Result<Declared, StormError> {
    let requests = disruption_requests(crisis, mode)?;
    let reported = Instant::now();
    let reported_at = Utc::now();
    let answers: Vec<Result<pb::ReportDisruptionResponse, tonic::Status>> =
        futures::stream::iter(requests.clone().into_iter().map(|r| {
            let mut c = client.clone();
            async move { c.report_disruption(r).await.map(tonic::Response::into_inner) }
        }))
        .buffered(REPORT_CONCURRENCY)
        .collect()
        .await;
    let mut incident_ids = Vec::with_capacity(answers.len());
    let mut created = 0;
    for a in answers {
        let a = a.map_err(|s| StormError::rpc("ReportDisruption", s))?;
        created += u64::from(a.created);
        incident_ids.push(a.incident_id.map(|i| i.value).unwrap_or_default());
    }
    Ok(Declared { incident_ids, requests, reported, reported_at, created })
}

/// Reports a sample of the disruptions again, as a flight-status feed would: each must answer
/// with the incident it opened the first time and open nothing.
pub async fn rereport(client: &Intake, declared: &Declared, fraction: f64, seed: u64) -> RereportReport {
    let n = declared.requests.len();
    let want =
        if n == 0 || fraction <= 0.0 { 0 } else { ((n as f64 * fraction).ceil() as usize).clamp(1, n) };
    let mut rng = Rng::derive(seed, 7, 0);
    let mut chosen = BTreeSet::new();
    while chosen.len() < want {
        chosen.insert(rng.below(n as u64) as usize);
    }
    let mut report = RereportReport::default();
    for i in chosen {
        let (Some(request), Some(first)) = (declared.requests.get(i), declared.incident_ids.get(i)) else {
            continue;
        };
        report.sent += 1;
        let problem = match client.clone().report_disruption(request.clone()).await {
            Ok(a) => {
                let a = a.into_inner();
                let id = a.incident_id.map(|i| i.value).unwrap_or_default();
                if !a.created && &id == first {
                    report.same_incident += 1;
                    None
                } else {
                    Some(format!("re-report {i}: incident {id} created={} (first: {first})", a.created))
                }
            }
            Err(s) => Some(format!("re-report {i}: {}: {}", code_name(s.code()), s.message())),
        };
        if let Some(p) = problem {
            report.violations += 1;
            if report.examples.len() < 5 {
                report.examples.push(p);
            }
        }
    }
    report
}

// --- Fan-out -----------------------------------------------------------------------------------

/// One look at the fan-out, summed over the incidents.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FanoutSample {
    /// Seconds since the disruption was reported.
    pub t: f64,
    pub affected_travelers: i64,
    pub cases_opened: i64,
    pub notifications_queued: i64,
    pub notifications_delivered: i64,
    pub notifications_acknowledged: i64,
    pub notifications_undeliverable: i64,
    pub incidents_done: u64,
    /// Messages the in-process sink had received, when the storm runs the sink.
    pub sink_messages: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FanoutReport {
    pub mode: Option<Mode>,
    pub incidents: u64,
    pub incidents_created: u64,
    /// Travelers the generator put on the disrupted flights.
    pub expected_affected: u64,
    pub reported_at: String,
    /// The last sample: what the suite said at the end.
    pub last: FanoutSample,
    /// Every incident reached FANOUT_STATE_DONE and every notification of it was delivered or
    /// given up as undeliverable, with none left queued.
    pub complete: bool,
    pub timed_out: bool,
    /// Seconds from ReportDisruption to the first poll (every 250 ms, at most 32 incidents a
    /// time, round robin) that saw every incident DONE, and that saw the last traveler
    /// notified: the run's own clock.
    pub fanout_done_secs: Option<f64>,
    pub last_notified_secs: Option<f64>,
    /// The same from the incidents' own timestamps: latest fanout_done_at and latest
    /// last_delivered_at, from the earliest declared_at.
    pub server_fanout_done_secs: Option<f64>,
    pub server_last_delivered_secs: Option<f64>,
    /// From ReportDisruption to the last message the sink received.
    pub sink_last_message_secs: Option<f64>,
    pub rereports: RereportReport,
    pub poll_errors: BTreeMap<String, u64>,
    /// Why following stopped early: an answer polling again would not change.
    pub gave_up: Option<String>,
    pub progress: Vec<FanoutSample>,
}

const POLL_EVERY: Duration = Duration::from_millis(250);
const POLL_CONCURRENCY: usize = 16;
/// Incidents looked at per tick, round robin: in flights mode there may be hundreds, and
/// polling them all four times a second would load the suite more than the storm does.
const POLL_PER_TICK: usize = 32;

/// Notifications no longer waiting: handed to a provider (and maybe seen since), or given up.
fn notified(i: &pb::Incident) -> i64 {
    i.notifications_delivered + i.notifications_acknowledged + i.notifications_undeliverable
}

fn complete(i: &pb::Incident) -> bool {
    i.fanout == pb::FanoutState::Done as i32
        && i.notifications_queued == 0
        && notified(i) >= i.affected_travelers
}

/// Answers that polling again will not change.
fn hopeless(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unimplemented
            | tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
            | tonic::Code::NotFound
            | tonic::Code::InvalidArgument
    )
}

/// Polls every incident until the fan-out is complete or `timeout` passes.
pub async fn follow(
    client: Intake,
    declared: Declared,
    expected_affected: u64,
    timeout: Duration,
    sink: Option<SinkWatcher>,
    progress: bool,
) -> FanoutReport {
    let mut report = FanoutReport {
        incidents: declared.incident_ids.len() as u64,
        incidents_created: declared.created,
        expected_affected,
        reported_at: declared.reported_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ..FanoutReport::default()
    };
    let mut latest: HashMap<String, pb::Incident> = HashMap::new();
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_print = Instant::now();
    let mut cursor = 0usize;
    loop {
        tick.tick().await;
        let pending: Vec<&String> =
            declared.incident_ids.iter().filter(|id| !latest.get(*id).is_some_and(complete)).collect();
        let take = pending.len().min(POLL_PER_TICK);
        let start = if pending.is_empty() { 0 } else { cursor % pending.len() };
        cursor = start + take;
        let pending: Vec<String> =
            pending.iter().cycle().skip(start).take(take).map(|id| (*id).clone()).collect();
        let answers: Vec<(String, Result<pb::GetIncidentResponse, tonic::Status>)> =
            futures::stream::iter(pending.into_iter().map(|id| {
                let mut c = client.clone();
                async move {
                    let request = pb::GetIncidentRequest {
                        incident_id: Some(common::IncidentId { value: id.clone() }),
                    };
                    (id, c.get_incident(request).await.map(tonic::Response::into_inner))
                }
            }))
            .buffer_unordered(POLL_CONCURRENCY)
            .collect()
            .await;
        let mut gave_up = None;
        for (id, answer) in answers {
            match answer {
                Ok(r) => {
                    if let Some(i) = r.incident {
                        latest.insert(id, i);
                    }
                }
                Err(s) => {
                    *report.poll_errors.entry(code_name(s.code()).to_owned()).or_default() += 1;
                    if hopeless(s.code()) {
                        gave_up = Some(format!("GetIncident {id}: {}: {}", code_name(s.code()), s.message()));
                    }
                }
            }
        }
        if let Some(why) = gave_up {
            report.gave_up = Some(why);
            break;
        }
        let elapsed = declared.reported.elapsed();
        let mut sample = FanoutSample { t: elapsed.as_secs_f64(), ..FanoutSample::default() };
        for i in latest.values() {
            sample.affected_travelers += i.affected_travelers;
            sample.cases_opened += i.cases_opened;
            sample.notifications_queued += i.notifications_queued;
            sample.notifications_delivered += i.notifications_delivered;
            sample.notifications_acknowledged += i.notifications_acknowledged;
            sample.notifications_undeliverable += i.notifications_undeliverable;
            sample.incidents_done += u64::from(i.fanout == pb::FanoutState::Done as i32);
        }
        sample.sink_messages = sink.as_ref().map(|s| s.snapshot().accepted);
        let all_seen = latest.len() == declared.incident_ids.len();
        if all_seen && report.fanout_done_secs.is_none() && sample.incidents_done == report.incidents {
            report.fanout_done_secs = Some(sample.t);
        }
        let done = all_seen && latest.values().all(complete);
        if progress && (done || last_print.elapsed() >= Duration::from_secs(1)) {
            last_print = Instant::now();
            eprintln!(
                "[fan-out] {:>6.1}s incidents done {}/{} cases {}/{} delivered {} undeliverable {} queued {}{}",
                sample.t,
                sample.incidents_done,
                report.incidents,
                sample.cases_opened,
                expected_affected,
                sample.notifications_delivered,
                sample.notifications_undeliverable,
                sample.notifications_queued,
                sample.sink_messages.map(|n| format!(" sink {n}")).unwrap_or_default()
            );
        }
        report.progress.push(sample.clone());
        report.last = sample;
        if done {
            report.complete = true;
            report.last_notified_secs = Some(report.last.t);
            break;
        }
        if elapsed >= timeout {
            report.timed_out = true;
            break;
        }
    }
    let declared_at = latest.values().filter_map(|i| instant_of(i.declared_at.as_ref())).min();
    let done_at = latest.values().filter_map(|i| instant_of(i.fanout_done_at.as_ref())).max();
    let delivered_at = latest.values().filter_map(|i| instant_of(i.last_delivered_at.as_ref())).max();
    if let Some(from) = declared_at {
        report.server_fanout_done_secs = done_at.map(|t| secs_between(from, t));
        report.server_last_delivered_secs = delivered_at.map(|t| secs_between(from, t));
    }
    if let Some(last) = sink.and_then(|s| s.snapshot().last_instant) {
        report.sink_last_message_secs = Some(last.saturating_duration_since(declared.reported).as_secs_f64());
    }
    report
}

// --- Verification ------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verification {
    /// Distinct case ids in OpenCase acknowledgements.
    pub acknowledged_cases: u64,
    /// How many of them were looked up with GetCase, and whether that was a sample.
    pub checked: u64,
    pub sampled: bool,
    /// Acknowledged cases GetCase does not find: must be 0.
    pub lost: u64,
    pub lost_examples: Vec<String>,
    /// GetCase answers other than found / not found (they prove nothing either way).
    pub check_errors: BTreeMap<String, u64>,
    /// Cases ListCases shows opened since the run started, by channel.
    pub listed_cases: u64,
    pub listed_by_channel: BTreeMap<String, u64>,
    /// Generated travelers with no case at all for their disrupted flight after the fan-out:
    /// a PROACTIVE one, or the one their own earlier contact opened, which the fan-out must use
    /// instead of opening a second. Must be 0.
    pub travelers_without_case: Option<u64>,
    /// (traveler, flight) pairs with more than one case, from the listing and the
    /// acknowledgements together: must be 0.
    pub duplicates: u64,
    pub duplicate_examples: Vec<String>,
    pub list_error: Option<String>,
}

const VERIFY_CONCURRENCY: usize = 32;

fn channel_name(raw: i32) -> String {
    common::Channel::try_from(raw).map_or_else(
        |_| format!("channel_{raw}"),
        |c| c.as_str_name().trim_start_matches("CHANNEL_").to_ascii_lowercase(),
    )
}

/// Looks up acknowledged cases (all of them, or an even sample of `max`), lists the run's
/// cases, and counts travelers with two cases for one flight.
pub async fn verify(
    client: &Intake,
    crisis: &Crisis,
    records: &[ContactRecord],
    since: DateTime<Utc>,
    max: usize,
    fanned_out: bool,
) -> Verification {
    let mut v = Verification::default();
    // (traveler id, flight number) → case ids.
    let mut cases_of: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut acknowledged = BTreeSet::new();
    for r in records {
        if let Answer::Acknowledged { case_id, .. } = &r.answer
            && !case_id.is_empty()
        {
            acknowledged.insert(case_id.clone());
            if let Some(t) = crisis.travelers.get(r.spec.traveler as usize)
                && let Some(f) = crisis.flights.get(t.flight)
            {
                cases_of.entry((t.id.clone(), f.number.clone())).or_default().insert(case_id.clone());
            }
        }
    }
    v.acknowledged_cases = acknowledged.len() as u64;
    let ids: Vec<String> = if max > 0 && acknowledged.len() > max {
        v.sampled = true;
        let stride = acknowledged.len().div_ceil(max);
        acknowledged.iter().step_by(stride).cloned().collect()
    } else {
        acknowledged.iter().cloned().collect()
    };
    v.checked = ids.len() as u64;
    let answers: Vec<(String, Result<(), tonic::Code>)> = futures::stream::iter(ids.into_iter().map(|id| {
        let mut c = client.clone();
        async move {
            let request = pb::GetCaseRequest { case_id: Some(common::CaseId { value: id.clone() }) };
            (id, c.get_case(request).await.map(|_| ()).map_err(|s| s.code()))
        }
    }))
    .buffer_unordered(VERIFY_CONCURRENCY)
    .collect()
    .await;
    for (id, answer) in answers {
        match answer {
            Ok(()) => {}
            Err(tonic::Code::NotFound) => {
                v.lost += 1;
                if v.lost_examples.len() < 10 {
                    v.lost_examples.push(id);
                }
            }
            Err(code) => *v.check_errors.entry(code_name(code).to_owned()).or_default() += 1,
        }
    }

    let mut listed: BTreeSet<(String, String)> = BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListCasesRequest {
            opened_after: Some(timestamp(since)),
            page_size: 500,
            page_token: page_token.clone(),
            ..pb::ListCasesRequest::default()
        };
        match client.clone().list_cases(request).await {
            Ok(page) => {
                let page = page.into_inner();
                for case in &page.cases {
                    v.listed_cases += 1;
                    *v.listed_by_channel.entry(channel_name(case.channel)).or_default() += 1;
                    let traveler =
                        case.traveler.as_ref().and_then(|t| t.id.as_ref()).map(|i| i.value.clone());
                    let flight = case.segment.as_ref().map(|s| s.service_reference.clone());
                    let id = case.case_id.as_ref().map(|i| i.value.clone());
                    if let (Some(traveler), Some(flight), Some(id)) = (traveler, flight, id) {
                        listed.insert((traveler.clone(), flight.clone()));
                        cases_of.entry((traveler, flight)).or_default().insert(id);
                    }
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            Err(s) => {
                v.list_error = Some(format!("ListCases: {}: {}", code_name(s.code()), s.message()));
                break;
            }
        }
    }
    if fanned_out && v.list_error.is_none() {
        let uncovered = crisis.travelers.iter().filter(|t| {
            crisis.flights.get(t.flight).is_none_or(|f| !listed.contains(&(t.id.clone(), f.number.clone())))
        });
        v.travelers_without_case = Some(uncovered.count() as u64);
    }
    for ((traveler, flight), ids) in &cases_of {
        if ids.len() > 1 {
            v.duplicates += 1;
            if v.duplicate_examples.len() < 10 {
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                v.duplicate_examples
                    .push(format!("traveler {traveler} on {flight}: cases {}", ids.join(", ")));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::itinerary::{CrisisSpec, generate};

    fn crisis() -> Crisis {
        generate(&CrisisSpec {
            seed: 3,
            airport: "PEK".into(),
            date: NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(),
            utc_offset_hours: 8,
            flights: 4,
            travelers: 30,
        })
        .unwrap()
    }

    #[test]
    fn airport_mode_declares_one_closure_over_the_local_day() {
        let c = crisis();
        let r = disruption_requests(&c, Mode::Airport).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].kind, pb::DisruptionKind::AirportClosed as i32);
        let Some(pb::scope::Scope::Airport(a)) = r[0].scope.as_ref().unwrap().scope.as_ref() else {
            panic!("not an airport scope: {:?}", r[0].scope)
        };
        assert_eq!(a.airport, "PEK");
        assert!(a.departures_only);
        assert_eq!(a.until.as_ref().unwrap().seconds - a.from.as_ref().unwrap().seconds, 86_400);
        assert_eq!(a.from.as_ref().unwrap().seconds, c.window().unwrap().0.timestamp());
    }

    #[test]
    fn flights_mode_cancels_each_flight_by_number_and_local_date() {
        let c = crisis();
        let r = disruption_requests(&c, Mode::Flights).unwrap();
        assert_eq!(r.len(), 4);
        for (req, f) in r.iter().zip(&c.flights) {
            assert_eq!(req.kind, pb::DisruptionKind::FlightCancelled as i32);
            let Some(pb::scope::Scope::Flight(s)) = req.scope.as_ref().unwrap().scope.as_ref() else {
                panic!("not a flight scope")
            };
            assert_eq!((s.flight_number.as_str(), s.local_date.as_str()), (f.number.as_str(), "2026-12-03"));
        }
    }

    #[test]
    fn an_incident_is_complete_only_when_done_and_every_traveler_was_notified() {
        let mut i = pb::Incident {
            fanout: pb::FanoutState::Done as i32,
            affected_travelers: 10,
            notifications_delivered: 9,
            notifications_undeliverable: 1,
            ..pb::Incident::default()
        };
        assert!(complete(&i));
        i.notifications_queued = 1;
        assert!(!complete(&i));
        i.notifications_queued = 0;
        i.fanout = pb::FanoutState::Running as i32;
        assert!(!complete(&i));
        i.fanout = pb::FanoutState::Done as i32;
        i.notifications_delivered = 8;
        assert!(!complete(&i));
        // Seen by the traveler counts as notified.
        i.notifications_acknowledged = 1;
        assert!(complete(&i));
    }

    #[test]
    fn channel_names_are_short() {
        assert_eq!(channel_name(common::Channel::Proactive as i32), "proactive");
        assert_eq!(channel_name(99), "channel_99");
    }
}
