//! The gRPC boundary of the itinerary registry, disruptions and notifications: requests are
//! validated into [`crate::crisis`] values here, and answers built from them.

use chrono::NaiveDate;
use detour_audit::{Audit, Outcome, Target};
use detour_domain::wire;
use detour_domain::{
    Channel, IncidentId, Instant, NotificationId, PersonalData, SegmentKind, TravelerId, time,
};
use detour_errors::Violations;
use detour_proto::common::v1 as common;
use detour_proto::intake::v1 as pb;

use crate::crisis::{
    Affected, AffectedCursor, DisruptionKind, DisruptionReport, Incident, IncidentCounts, Notification,
    NotificationCursor, NotificationScope, RegisteredTraveler, Scope, StoredTrip, TripSegment, Window,
    normalise_reference, sendable,
};
use crate::error::IntakeError;
use crate::grpc::IntakeApi;
use crate::keys::{Handle, Owner};

/// Travelers and segments a trip may hold: a group booking, a long tour.
const MAX_TRAVELERS_PER_TRIP: usize = 50;
const MAX_SEGMENTS_PER_TRIP: usize = 50;
const MAX_REFERENCE_CHARS: usize = 64;
const MAX_REASON_CHARS: usize = 500;
const MAX_AREA_LOCATIONS: usize = 50;
/// A window longer than this is a mistake (a year-long airport closure), not a disruption.
const MAX_WINDOW_DAYS: i64 = 14;

/// A trip as validated, before its travelers' personal data is sealed.
pub(crate) struct TripIn {
    pub booking_reference: String,
    pub travelers: Vec<(detour_domain::Traveler, Vec<Channel>)>,
    pub segments: Vec<TripSegment>,
}

pub(crate) fn trip_from_proto(t: &pb::Trip) -> Result<TripIn, Violations> {
    let mut v = Violations::new();
    let booking_reference = reference(&mut v, "booking_reference", &t.booking_reference);
    if t.travelers.is_empty() {
        v.add("travelers", "at least one traveler is required");
    } else if t.travelers.len() > MAX_TRAVELERS_PER_TRIP {
        v.add("travelers", format!("at most {MAX_TRAVELERS_PER_TRIP} travelers per trip"));
    }
    if t.segments.is_empty() {
        v.add("segments", "at least one segment is required");
    } else if t.segments.len() > MAX_SEGMENTS_PER_TRIP {
        v.add("segments", format!("at most {MAX_SEGMENTS_PER_TRIP} segments per trip"));
    }
    let mut travelers = Vec::with_capacity(t.travelers.len());
    for (i, tt) in t.travelers.iter().enumerate().take(MAX_TRAVELERS_PER_TRIP) {
        let field = format!("travelers[{i}]");
        let traveler = wire::nested(
            &mut v,
            &format!("{field}.traveler"),
            tt.traveler.as_ref(),
            wire::traveler_from_proto,
        );
        if tt.traveler.as_ref().is_some_and(|p| p.id.as_ref().is_none_or(|id| id.value.trim().is_empty())) {
            v.add(format!("{field}.traveler.id"), "is required: the booking system's traveler id");
        }
        let mut channels = Vec::new();
        for (j, raw) in tt.contact_channels.iter().enumerate() {
            match Channel::from_proto(*raw) {
                Some(c) if sendable(c) => {
                    if !channels.contains(&c) {
                        channels.push(c);
                    }
                }
                _ => v.add(format!("{field}.contact_channels[{j}]"), "must be EMAIL, SMS, APP or WECHAT"),
            }
        }
        if let Some(traveler) = traveler {
            travelers.push((traveler, channels));
        }
    }
    let mut segments = Vec::with_capacity(t.segments.len());
    for (i, ts) in t.segments.iter().enumerate().take(MAX_SEGMENTS_PER_TRIP) {
        let field = format!("segments[{i}]");
        // A trip's segments belong to its booking; they may leave the reference out.
        let raw = ts.segment.as_ref().map(|s| {
            let mut s = s.clone();
            if s.booking_reference.trim().is_empty() {
                s.booking_reference = t.booking_reference.clone();
            }
            s
        });
        let segment =
            wire::nested(&mut v, &format!("{field}.segment"), raw.as_ref(), wire::segment_from_proto);
        if let (Some(s), Some(booking)) = (&segment, &booking_reference)
            && normalise_reference(&s.booking_reference) != *booking
        {
            v.add(format!("{field}.segment.booking_reference"), "differs from the trip's");
        }
        if segment
            .as_ref()
            .is_some_and(|s| s.kind == SegmentKind::Flight && s.service_reference.trim().is_empty())
        {
            v.add(format!("{field}.segment.service_reference"), "a flight needs its flight number");
        }
        let date = local_date(&mut v, &format!("{field}.local_date"), &ts.local_date);
        if let (Some(segment), Some(local_date)) = (segment, date) {
            segments.push(TripSegment { segment, local_date });
        }
    }
    match booking_reference {
        Some(booking_reference) if v.is_empty() => Ok(TripIn { booking_reference, travelers, segments }),
        _ => Err(v),
    }
}

fn reference(v: &mut Violations, field: &str, raw: &str) -> Option<String> {
    let r = normalise_reference(raw);
    if r.is_empty() {
        v.add(field, "is required");
        return None;
    }
    if r.len() > MAX_REFERENCE_CHARS || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        v.add(field, format!("must be 1 to {MAX_REFERENCE_CHARS} letters, digits or dashes"));
        return None;
    }
    Some(r)
}

fn local_date(v: &mut Violations, field: &str, raw: &str) -> Option<NaiveDate> {
    if raw.trim().is_empty() {
        v.add(field, "is required (YYYY-MM-DD, in the local time zone where the segment starts)");
        return None;
    }
    match NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            v.add(field, "is not a date (YYYY-MM-DD)");
            None
        }
    }
}

fn code(v: &mut Violations, field: &str, raw: &str) -> Option<String> {
    let c = raw.trim().to_ascii_uppercase();
    if c.is_empty() {
        v.add(field, "is required");
        None
    } else if c.len() > 16 || !c.chars().all(|ch| ch.is_ascii_alphanumeric()) {
        v.add(field, "must be 1 to 16 letters or digits");
        None
    } else {
        Some(c)
    }
}

fn window(
    v: &mut Violations,
    field: &str,
    from: Option<&prost_types::Timestamp>,
    until: Option<&prost_types::Timestamp>,
) -> Option<Window> {
    let from_field = format!("{field}.from");
    let until_field = format!("{field}.until");
    if from.is_none() {
        v.add(from_field.clone(), "is required");
    }
    if until.is_none() {
        v.add(until_field.clone(), "is required");
    }
    let from = wire::optional_instant(v, &from_field, from)?;
    let until = wire::optional_instant(v, &until_field, until)?;
    if until <= from {
        v.add(until_field, "must be after from");
        return None;
    }
    if until - from > chrono::Duration::days(MAX_WINDOW_DAYS) {
        v.add(until_field, format!("the window may span at most {MAX_WINDOW_DAYS} days"));
        return None;
    }
    Some(Window { from, until })
}

pub(crate) fn scope_from_proto(v: &mut Violations, field: &str, raw: Option<&pb::Scope>) -> Option<Scope> {
    use pb::scope::Scope as S;
    let Some(scope) = raw.and_then(|s| s.scope.as_ref()) else {
        v.add(field, "is required: flight, airport, property, operator or area");
        return None;
    };
    match scope {
        S::Flight(f) => {
            let number = reference(v, &format!("{field}.flight.flight_number"), &f.flight_number);
            let date = local_date(v, &format!("{field}.flight.local_date"), &f.local_date);
            Some(Scope::Flight { flight_number: number?, local_date: date? })
        }
        S::Airport(a) => {
            let airport = code(v, &format!("{field}.airport.airport"), &a.airport);
            let w = window(v, &format!("{field}.airport"), a.from.as_ref(), a.until.as_ref());
            Some(Scope::Airport { airport: airport?, window: w?, departures_only: a.departures_only })
        }
        S::Property(p) => {
            let code = code(v, &format!("{field}.property.property_code"), &p.property_code);
            let w = window(v, &format!("{field}.property"), p.from.as_ref(), p.until.as_ref());
            Some(Scope::Property { property_code: code?, window: w? })
        }
        S::Operator(o) => {
            let code = code(v, &format!("{field}.operator.operator_code"), &o.operator_code);
            let w = window(v, &format!("{field}.operator"), o.from.as_ref(), o.until.as_ref());
            Some(Scope::Operator { operator_code: code?, window: w? })
        }
        S::Area(a) => {
            if a.locations.is_empty() || a.locations.len() > MAX_AREA_LOCATIONS {
                v.add(
                    format!("{field}.area.locations"),
                    format!("1 to {MAX_AREA_LOCATIONS} airport or city codes"),
                );
            }
            let mut locations: Vec<String> = Vec::new();
            for (i, l) in a.locations.iter().enumerate().take(MAX_AREA_LOCATIONS) {
                if let Some(c) = code(v, &format!("{field}.area.locations[{i}]"), l) {
                    locations.push(c);
                }
            }
            locations.sort();
            locations.dedup();
            let w = window(v, &format!("{field}.area"), a.from.as_ref(), a.until.as_ref());
            (!locations.is_empty()).then_some(())?;
            Some(Scope::Area { locations, window: w? })
        }
    }
}

pub(crate) fn scope_to_proto(s: &Scope) -> pb::Scope {
    use pb::scope::Scope as S;
    let ts = time::to_proto;
    let scope = match s {
        Scope::Flight { flight_number, local_date } => S::Flight(pb::FlightScope {
            flight_number: flight_number.clone(),
            local_date: local_date.to_string(),
        }),
        Scope::Airport { airport, window, departures_only } => S::Airport(pb::AirportScope {
            airport: airport.clone(),
            from: Some(ts(window.from)),
            until: Some(ts(window.until)),
            departures_only: *departures_only,
        }),
        Scope::Property { property_code, window } => S::Property(pb::PropertyScope {
            property_code: property_code.clone(),
            from: Some(ts(window.from)),
            until: Some(ts(window.until)),
        }),
        Scope::Operator { operator_code, window } => S::Operator(pb::OperatorScope {
            operator_code: operator_code.clone(),
            from: Some(ts(window.from)),
            until: Some(ts(window.until)),
        }),
        Scope::Area { locations, window } => S::Area(pb::AreaScope {
            locations: locations.clone(),
            from: Some(ts(window.from)),
            until: Some(ts(window.until)),
        }),
    };
    pb::Scope { scope: Some(scope) }
}

pub(crate) fn report_from_proto(
    req: &pb::ReportDisruptionRequest,
    at: Instant,
) -> Result<DisruptionReport, IntakeError> {
    let mut v = Violations::new();
    let kind = DisruptionKind::from_proto(req.kind);
    if kind.is_none() {
        v.add("kind", "is required");
    }
    let scope = scope_from_proto(&mut v, "scope", req.scope.as_ref());
    if let (Some(kind), Some(scope)) = (kind, &scope)
        && !kind.fits(scope)
    {
        v.add("scope", format!("does not fit a {} disruption", kind.as_str()));
    }
    let reason = wire::text(&mut v, "reason", &req.reason, MAX_REASON_CHARS, true);
    if req.kind == pb::DisruptionKind::FlightDelayed as i32 && !(1..=7 * 24 * 60).contains(&req.delay_minutes)
    {
        v.add("delay_minutes", "a delay needs its expected minutes (1 to 10080)");
    } else if req.kind != pb::DisruptionKind::FlightDelayed as i32 && req.delay_minutes != 0 {
        v.add("delay_minutes", "only a delay has delay minutes");
    }
    let diverted_to = if req.kind == pb::DisruptionKind::FlightDiverted as i32 {
        code(&mut v, "diverted_to", &req.diverted_to)
    } else {
        if !req.diverted_to.trim().is_empty() {
            v.add("diverted_to", "only a diversion has a diversion airport");
        }
        None
    };
    match (kind, scope) {
        (Some(kind), Some(scope)) if v.is_empty() => {
            Ok(DisruptionReport { kind, scope, reason, delay_minutes: req.delay_minutes, diverted_to, at })
        }
        _ => Err(IntakeError::Invalid(v)),
    }
}

pub(crate) fn incident_to_proto(i: &Incident, c: &IncidentCounts) -> pb::Incident {
    pb::Incident {
        incident_id: Some(common::IncidentId { value: i.id.to_string() }),
        kind: i.kind.to_proto(),
        scope: Some(scope_to_proto(&i.scope)),
        reason: i.reason.clone(),
        delay_minutes: i.delay_minutes,
        diverted_to: i.diverted_to.clone().unwrap_or_default(),
        declared_at: Some(time::to_proto(i.declared_at)),
        updated_at: Some(time::to_proto(i.updated_at)),
        fanout: if i.fanout_done() { pb::FanoutState::Done } else { pb::FanoutState::Running } as i32,
        affected_travelers: c.affected_travelers,
        cases_opened: c.cases_opened,
        notifications_queued: c.queued,
        notifications_delivered: c.delivered,
        notifications_acknowledged: c.acknowledged,
        notifications_undeliverable: c.undeliverable,
        fanout_done_at: i.fanout_done_at.filter(|_| i.fanout_done()).map(time::to_proto),
        last_delivered_at: c.last_delivered_at.map(time::to_proto),
    }
}

pub(crate) fn notification_to_proto(n: &Notification) -> pb::Notification {
    pb::Notification {
        notification_id: Some(common::NotificationId { value: n.id.to_string() }),
        case_id: Some(common::CaseId { value: n.case_id.to_string() }),
        incident_id: n.incident_id.map(|i| common::IncidentId { value: i.to_string() }),
        traveler_id: Some(common::TravelerId { value: n.traveler_id.to_string() }),
        purpose: n.purpose.to_proto(),
        status: n.status.to_proto(),
        channel: n.channel().map_or(0, Channel::to_proto),
        language: n.language.clone(),
        created_at: Some(time::to_proto(n.created_at)),
        delivered_at: n.delivered_at.map(time::to_proto),
        acknowledged_at: n.acknowledged_at.map(time::to_proto),
        attempts: n
            .attempts
            .iter()
            .map(|a| pb::DeliveryAttempt {
                at: Some(time::to_proto(a.at)),
                channel: a.channel.to_proto(),
                accepted: a.accepted,
                detail: a.detail.clone(),
            })
            .collect(),
    }
}

fn affected_to_proto(a: &Affected) -> pb::AffectedTraveler {
    pb::AffectedTraveler {
        traveler_id: Some(common::TravelerId { value: a.traveler_id.to_string() }),
        booking_reference: a.booking_reference.clone(),
        segment: Some(wire::segment_to_proto(&a.segment)),
        local_date: a.local_date.to_string(),
    }
}

fn encode_affected_cursor(c: &AffectedCursor) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}|{}|{}", c.traveler_id, c.position, c.booking_reference))
}

fn decode_affected_cursor(token: &str) -> Option<AffectedCursor> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let mut parts = raw.splitn(3, '|');
    Some(AffectedCursor {
        traveler_id: parts.next()?.parse().ok()?,
        position: parts.next()?.parse().ok()?,
        booking_reference: parts.next()?.to_owned(),
    })
}

impl IntakeApi {
    /// Validates and seals trips; answers the sealed trips and, per input trip, its violations.
    pub(crate) async fn seal_trips(
        &self,
        trips: &[pb::Trip],
    ) -> Result<(Vec<StoredTrip>, Vec<(usize, String, Violations)>), IntakeError> {
        let at = time::now();
        let mut stored = Vec::with_capacity(trips.len());
        let mut refused = Vec::new();
        for (i, t) in trips.iter().enumerate() {
            match trip_from_proto(t) {
                Ok(trip) => stored.push(self.seal_trip(trip, at).await?),
                Err(v) => {
                    refused.push((i, t.booking_reference.chars().take(MAX_REFERENCE_CHARS).collect(), v))
                }
            }
        }
        Ok((stored, refused))
    }

    async fn seal_trip(&self, trip: TripIn, at: Instant) -> Result<StoredTrip, IntakeError> {
        let mut travelers = Vec::with_capacity(trip.travelers.len());
        for (t, channels) in trip.travelers {
            let p = &t.personal;
            let email_index = match p.email() {
                Some(e) => Some(self.keys.lookup_index(Handle::Email, e).await?),
                None => None,
            };
            let phone_index = match p.phone() {
                Some(ph) => Some(self.keys.lookup_index(Handle::Phone, ph).await?),
                None => None,
            };
            let channels = if channels.is_empty() {
                [(p.email().is_some(), Channel::Email), (p.phone().is_some(), Channel::Sms)]
                    .into_iter()
                    .filter_map(|(has, c)| has.then_some(c))
                    .collect()
            } else {
                channels
            };
            travelers.push(RegisteredTraveler {
                id: t.id,
                preferred_language: t.preferred_language.clone(),
                contact_channels: channels,
                sealed: Some(self.keys.seal_for(Owner::Traveler(t.id), &t.personal).await?),
                email_index,
                phone_index,
            });
        }
        Ok(StoredTrip { booking_reference: trip.booking_reference, travelers, segments: trip.segments, at })
    }

    pub(crate) async fn upsert_trip(
        &self,
        audit: &Audit,
        req: &pb::UpsertTripRequest,
    ) -> Result<pb::UpsertTripResponse, IntakeError> {
        let Some(trip) = &req.trip else {
            let mut v = Violations::new();
            v.add("trip", "is required");
            return Err(IntakeError::Invalid(v));
        };
        let (stored, refused) = self.seal_trips(std::slice::from_ref(trip)).await?;
        if let Some((_, _, v)) = refused.into_iter().next() {
            let mut prefixed = Violations::new();
            prefixed.extend_prefixed("trip", v);
            return Err(IntakeError::Invalid(prefixed));
        }
        let created = self.repo.upsert_trips(&stored, audit).await?;
        let trip = stored.first();
        Ok(pb::UpsertTripResponse {
            created: created.first().copied().unwrap_or(false),
            travelers: trip.map_or(0, |t| i32::try_from(t.travelers.len()).unwrap_or(i32::MAX)),
            segments: trip.map_or(0, |t| i32::try_from(t.segments.len()).unwrap_or(i32::MAX)),
        })
    }

    pub(crate) async fn find(
        &self,
        req: &pb::FindTravelersRequest,
    ) -> Result<pb::FindTravelersResponse, IntakeError> {
        let mut v = Violations::new();
        let scope = scope_from_proto(&mut v, "scope", req.scope.as_ref());
        let limit = wire::page_size(&mut v, "page_size", req.page_size, 100, 1000);
        let cursor = wire::page_token(&mut v, "page_token", &req.page_token, decode_affected_cursor);
        let Some(scope) = scope.filter(|_| v.is_empty()) else {
            return Err(IntakeError::Invalid(v));
        };
        let (found, next) = self.repo.find_travelers(&scope, cursor, limit).await?;
        Ok(pb::FindTravelersResponse {
            travelers: found.iter().map(affected_to_proto).collect(),
            next_page_token: next.as_ref().map(encode_affected_cursor).unwrap_or_default(),
        })
    }

    pub(crate) async fn report(
        &self,
        audit: &Audit,
        req: &pb::ReportDisruptionRequest,
    ) -> Result<pb::ReportDisruptionResponse, IntakeError> {
        let report = report_from_proto(req, time::now())?;
        let (incident, outcome) = self.repo.report_disruption(&report, audit).await?;
        tracing::info!(incident_id = %incident.id, kind = incident.kind.as_str(), outcome = ?outcome, "disruption reported");
        if let Some(fanout) = &self.fanout {
            fanout.notify_one();
        }
        let counts = self.repo.incident(incident.id).await?.map(|(_, c)| c).unwrap_or_default();
        Ok(pb::ReportDisruptionResponse {
            incident_id: Some(common::IncidentId { value: incident.id.to_string() }),
            created: outcome == crate::crisis::ReportOutcome::Created,
            updated: outcome == crate::crisis::ReportOutcome::Updated,
            incident: Some(incident_to_proto(&incident, &counts)),
        })
    }

    pub(crate) async fn get_incident_view(
        &self,
        req: &pb::GetIncidentRequest,
    ) -> Result<pb::GetIncidentResponse, IntakeError> {
        let id: IncidentId = wire::id_from_message("incident_id.value", req.incident_id.as_ref())
            .map_err(IntakeError::Invalid)?;
        let (incident, counts) = self.repo.incident(id).await?.ok_or(IntakeError::IncidentNotFound(id))?;
        Ok(pb::GetIncidentResponse { incident: Some(incident_to_proto(&incident, &counts)) })
    }

    pub(crate) async fn notifications(
        &self,
        req: &pb::ListNotificationsRequest,
    ) -> Result<pb::ListNotificationsResponse, IntakeError> {
        let mut v = Violations::new();
        let case = wire::optional_id(&mut v, "case_id.value", req.case_id.as_ref().map(|c| c.value.as_str()));
        let incident = wire::optional_id(
            &mut v,
            "incident_id.value",
            req.incident_id.as_ref().map(|c| c.value.as_str()),
        );
        let scope = match (case, incident) {
            (Some(c), None) => Some(NotificationScope::Case(c)),
            (None, Some(i)) => Some(NotificationScope::Incident(i)),
            _ => {
                v.add("case_id", "give exactly one of case_id and incident_id");
                None
            }
        };
        let limit = wire::page_size(&mut v, "page_size", req.page_size, 100, 500);
        let cursor = wire::page_token(&mut v, "page_token", &req.page_token, |t| {
            wire::decode_page_token(t)
                .map(|(created_at_micros, id)| NotificationCursor { created_at_micros, id })
        });
        let Some(scope) = scope.filter(|_| v.is_empty()) else {
            return Err(IntakeError::Invalid(v));
        };
        let (found, next) = self.repo.list_notifications(scope, cursor, limit).await?;
        Ok(pb::ListNotificationsResponse {
            notifications: found.iter().map(notification_to_proto).collect(),
            next_page_token: next
                .map(|c| wire::encode_page_token(c.created_at_micros, &c.id))
                .unwrap_or_default(),
        })
    }

    pub(crate) async fn acknowledge(
        &self,
        audit: &Audit,
        req: &pb::AcknowledgeNotificationRequest,
    ) -> Result<pb::AcknowledgeNotificationResponse, IntakeError> {
        let id: NotificationId = wire::id_from_message("notification_id.value", req.notification_id.as_ref())
            .map_err(IntakeError::Invalid)?;
        let n = self.repo.acknowledge_notification(id, time::now(), audit).await?;
        Ok(pb::AcknowledgeNotificationResponse { notification: Some(notification_to_proto(&n)) })
    }

    /// Finds the registered traveler a contact names by a handle instead of in full: the id,
    /// else the phone, else the e-mail, else a booking with exactly one traveler.
    pub(crate) async fn identify(
        &self,
        raw: &common::Traveler,
        booking_reference: &str,
    ) -> Result<(RegisteredTraveler, PersonalData), IntakeError> {
        let unknown = |handle: &'static str, field: &str, why: &str| {
            let mut v = Violations::new();
            v.add(field, why.to_owned());
            IntakeError::UnknownTraveler { handle, violations: v }
        };
        let mut v = Violations::new();
        let found = if let Some(id) = raw.id.as_ref().filter(|i| !i.value.trim().is_empty()) {
            let id: TravelerId = wire::required_id(&mut v, "traveler.id.value", Some(id.value.as_str()))
                .ok_or_else(|| IntakeError::Invalid(v.clone()))?;
            self.repo
                .registered_traveler(id)
                .await?
                .ok_or_else(|| unknown("traveler id", "traveler.id", "no registered traveler has this id"))?
        } else if !raw.phone.trim().is_empty() {
            let Some(phone) = wire::normalise_phone(&raw.phone) else {
                v.add("traveler.phone", "is not an international phone number (+ and 8 to 15 digits)");
                return Err(IntakeError::Invalid(v));
            };
            let index = self.keys.lookup_index(Handle::Phone, &phone).await?;
            one(self.repo.travelers_by_index(Handle::Phone, &index).await?)
                .map_err(|why| unknown("phone", "traveler.phone", why))?
        } else if !raw.email.trim().is_empty() {
            let email = raw.email.trim().to_ascii_lowercase();
            if !wire::is_email(&email) {
                v.add("traveler.email", "is not an e-mail address");
                return Err(IntakeError::Invalid(v));
            }
            let index = self.keys.lookup_index(Handle::Email, &email).await?;
            one(self.repo.travelers_by_index(Handle::Email, &index).await?)
                .map_err(|why| unknown("e-mail", "traveler.email", why))?
        } else if !booking_reference.trim().is_empty() {
            let booking = normalise_reference(booking_reference);
            one(self.repo.travelers_of_booking(&booking).await?)
                .map_err(|why| unknown("booking reference", "segment.booking_reference", why))?
        } else {
            v.add("traveler", "give the traveler in full (id, full_name, contact), or their id, phone, e-mail or booking reference");
            return Err(IntakeError::Invalid(v));
        };
        let Some(sealed) = &found.sealed else {
            return Err(unknown(
                "traveler id",
                "traveler",
                "the traveler's personal data was erased; send the traveler in full",
            ));
        };
        let personal = self.keys.open_for(Owner::Traveler(found.id), sealed).await?;
        Ok((found, personal))
    }

    /// The registered traveler whose phone (else e-mail) this is, when exactly one is.
    pub(crate) async fn known_by_contact(
        &self,
        personal: &PersonalData,
    ) -> Result<Option<RegisteredTraveler>, IntakeError> {
        for (handle, value) in [(Handle::Phone, personal.phone()), (Handle::Email, personal.email())] {
            let Some(value) = value else { continue };
            let index = self.keys.lookup_index(handle, value).await?;
            if let Ok(t) = one(self.repo.travelers_by_index(handle, &index).await?) {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// Answers an import: every refused trip with why, the rest stored in chunks.
    pub(crate) async fn import(
        &self,
        audit: &Audit,
        mut stream: tonic::Streaming<pb::ImportItinerariesRequest>,
    ) -> Result<pb::ImportItinerariesResponse, IntakeError> {
        let mut response = pb::ImportItinerariesResponse::default();
        let mut offset = 0usize;
        while let Some(message) = stream.message().await.map_err(IntakeError::Stream)? {
            let (stored, refused) = self.seal_trips(&message.trips).await?;
            for (i, booking, v) in refused {
                response.refused.push(pb::RefusedTrip {
                    index: i32::try_from(offset + i).unwrap_or(i32::MAX),
                    booking_reference: booking,
                    violations: v.as_slice().iter().map(ToString::to_string).collect(),
                });
            }
            let segments: usize = stored.iter().map(|t| t.segments.len()).sum();
            self.repo.upsert_trips(&stored, audit).await?;
            response.trips_stored += i32::try_from(stored.len()).unwrap_or(i32::MAX);
            response.segments_stored += i32::try_from(segments).unwrap_or(i32::MAX);
            offset += message.trips.len();
        }
        tracing::info!(
            trips = response.trips_stored,
            refused = response.refused.len(),
            "itineraries imported"
        );
        let record = audit.record(
            None,
            vec![Target::new("import", format!("{} trips", response.trips_stored))],
            Outcome::Ok,
        );
        self.audit.append(&record).await?;
        Ok(response)
    }
}

/// Exactly one traveler, or why not (no personal data in the reason).
fn one(found: Vec<RegisteredTraveler>) -> Result<RegisteredTraveler, &'static str> {
    let mut found = found.into_iter();
    match (found.next(), found.next()) {
        (Some(t), None) => Ok(t),
        (None, _) => Err("no registered traveler matches"),
        (Some(_), Some(_)) => {
            Err("several registered travelers match; give the traveler id or the full traveler")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affected_cursors_round_trip() {
        let c =
            AffectedCursor { traveler_id: TravelerId::new(), booking_reference: "PNR|1".into(), position: 3 };
        assert_eq!(decode_affected_cursor(&encode_affected_cursor(&c)), Some(c));
        assert_eq!(decode_affected_cursor("garbage"), None);
    }
}
