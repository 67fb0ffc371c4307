//! Intake's crisis domain: the itinerary registry, disruptions and their incidents, and the
//! notifications that tell travelers what happens next.

use std::collections::HashMap;

use chrono::NaiveDate;
use detour_domain::{CaseId, Channel, IncidentId, Instant, NotificationId, Segment, TravelerId, time};
use serde::{Deserialize, Serialize};

use crate::model::SealedPersonal;

/// The registry's traveler as stored: id and preferences in the clear, the rest sealed, with
/// keyed indexes of e-mail and phone for finding them by a contact's handle.
#[derive(Debug, Clone)]
pub struct RegisteredTraveler {
    pub id: TravelerId,
    pub preferred_language: Option<String>,
    /// Most preferred first; only channels a message can be sent on.
    pub contact_channels: Vec<Channel>,
    /// `None` once the traveler's personal data was erased.
    pub sealed: Option<SealedPersonal>,
    pub email_index: Option<String>,
    pub phone_index: Option<String>,
}

/// A segment of a trip with the date it is known by where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TripSegment {
    pub segment: Segment,
    pub local_date: NaiveDate,
}

/// One booking, validated and sealed, ready to store.
#[derive(Debug, Clone)]
pub struct StoredTrip {
    pub booking_reference: String,
    pub travelers: Vec<RegisteredTraveler>,
    pub segments: Vec<TripSegment>,
    pub at: Instant,
}

/// A half-open window `[from, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from: Instant,
    pub until: Instant,
}

/// Which segments a disruption or a search covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Scope {
    Flight { flight_number: String, local_date: NaiveDate },
    Airport { airport: String, window: Window, departures_only: bool },
    Property { property_code: String, window: Window },
    Operator { operator_code: String, window: Window },
    Area { locations: Vec<String>, window: Window },
}

impl Scope {
    /// Identifies the disruption: the same scope reported again is the same incident, whatever
    /// its kind (a delay that becomes a cancellation is one incident).
    pub fn key(&self) -> String {
        let w = |w: &Window| format!("{}|{}", time::to_micros(w.from), time::to_micros(w.until));
        match self {
            Self::Flight { flight_number, local_date } => format!("flight|{flight_number}|{local_date}"),
            Self::Airport { airport, window, departures_only } => {
                format!("airport|{airport}|{}|{}", w(window), if *departures_only { "dep" } else { "all" })
            }
            Self::Property { property_code, window } => format!("property|{property_code}|{}", w(window)),
            Self::Operator { operator_code, window } => format!("operator|{operator_code}|{}", w(window)),
            Self::Area { locations, window } => format!("area|{}|{}", locations.join(","), w(window)),
        }
    }

    /// What travelers are told the disruption is about: "flight CA981 on 2026-12-03", "PEK".
    pub fn subject(&self) -> String {
        match self {
            Self::Flight { flight_number, local_date } => format!("flight {flight_number} on {local_date}"),
            Self::Airport { airport, .. } => airport.clone(),
            Self::Property { property_code, .. } => property_code.clone(),
            Self::Operator { operator_code, .. } => operator_code.clone(),
            Self::Area { locations, .. } => locations.join(", "),
        }
    }
}

/// Normalises a flight number or service reference for matching: upper case, no spaces.
pub fn normalise_reference(raw: &str) -> String {
    raw.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_uppercase).collect()
}

/// One traveler on one segment a scope covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affected {
    pub traveler_id: TravelerId,
    pub booking_reference: String,
    pub position: i32,
    pub segment: Segment,
    pub local_date: NaiveDate,
}

/// Position after the last traveler of a search page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffectedCursor {
    pub traveler_id: TravelerId,
    pub booking_reference: String,
    pub position: i32,
}

detour_domain::stored_names!(
    /// What happened; the incident keeps its latest kind (a delay may become a cancellation).
    DisruptionKind, "disruption kind", proto = detour_proto::intake::v1::DisruptionKind, {
    FlightCancelled => "flight_cancelled",
    FlightDelayed => "flight_delayed",
    FlightDiverted => "flight_diverted",
    AirportClosed => "airport_closed",
    HotelClosed => "hotel_closed",
    OperatorFailure => "operator_failure",
    Weather => "weather",
    Security => "security",
});

impl DisruptionKind {
    /// Whether a disruption of this kind can cover `scope`.
    pub fn fits(self, scope: &Scope) -> bool {
        match self {
            Self::FlightCancelled | Self::FlightDelayed | Self::FlightDiverted => {
                matches!(scope, Scope::Flight { .. })
            }
            Self::AirportClosed => matches!(scope, Scope::Airport { .. }),
            Self::HotelClosed => matches!(scope, Scope::Property { .. }),
            Self::OperatorFailure => matches!(scope, Scope::Operator { .. }),
            Self::Weather | Self::Security => matches!(scope, Scope::Area { .. } | Scope::Airport { .. }),
        }
    }
}

/// A validated `ReportDisruption`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisruptionReport {
    pub kind: DisruptionKind,
    pub scope: Scope,
    pub reason: String,
    pub delay_minutes: i32,
    pub diverted_to: Option<String>,
    pub at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub id: IncidentId,
    pub kind: DisruptionKind,
    pub scope: Scope,
    pub reason: String,
    pub delay_minutes: i32,
    pub diverted_to: Option<String>,
    pub declared_at: Instant,
    pub updated_at: Instant,
    /// Bumped by every report that changes what travelers must be told.
    pub revision: i32,
    /// The revision every affected traveler has been told about.
    pub fanout_revision: i32,
    pub fanout_done_at: Option<Instant>,
}

impl Incident {
    pub fn fanout_done(&self) -> bool {
        self.fanout_revision >= self.revision
    }
}

/// Counts for `GetIncident`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentCounts {
    pub affected_travelers: i64,
    pub cases_opened: i64,
    pub queued: i64,
    pub delivered: i64,
    pub acknowledged: i64,
    pub undeliverable: i64,
    pub last_delivered_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    Created,
    /// Reported before and changed now: travelers are told again.
    Updated,
    /// Reported before, nothing new.
    Unchanged,
}

/// One traveler the fan-out must reach: a new case to open, or an existing one to update.
#[derive(Debug, Clone)]
pub struct FanoutTarget {
    pub traveler: RegisteredTraveler,
    pub segment: Segment,
    pub local_date: NaiveDate,
    /// The case already opened for this incident, and the revision it was told about.
    pub existing: Option<(CaseId, i32)>,
}

detour_domain::stored_names!(
    /// Why a traveler is told something.
    Purpose, "notification purpose", proto = detour_proto::intake::v1::NotificationPurpose, {
    Acknowledgement => "acknowledgement",
    Disruption => "disruption",
    DisruptionUpdate => "disruption_update",
});

detour_domain::stored_names!(
    NotificationStatus, "notification status", proto = detour_proto::intake::v1::NotificationStatus, {
    Pending => "pending",
    Delivered => "delivered",
    Acknowledged => "acknowledged",
    Undeliverable => "undeliverable",
});

/// A notification to queue, in the transaction of the change it tells about.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub id: NotificationId,
    pub case_id: CaseId,
    pub incident_id: Option<IncidentId>,
    pub traveler_id: TravelerId,
    pub purpose: Purpose,
    /// The channels to try, in order; never empty.
    pub channels: Vec<Channel>,
    pub language: String,
    pub at: Instant,
    /// Set when the writer hands the notification to its own dispatcher in memory: it is
    /// written claimed until then, so no other dispatcher sends it, and becomes due for any
    /// of them at that instant should the writer's process die first.
    pub leased_until: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub at: Instant,
    pub channel: Channel,
    pub accepted: bool,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Notification {
    pub id: NotificationId,
    pub case_id: CaseId,
    pub incident_id: Option<IncidentId>,
    pub traveler_id: TravelerId,
    pub purpose: Purpose,
    pub status: NotificationStatus,
    pub channels: Vec<Channel>,
    pub channel_index: usize,
    pub attempts_on_channel: i32,
    pub language: String,
    pub created_at: Instant,
    pub delivered_at: Option<Instant>,
    pub acknowledged_at: Option<Instant>,
    pub attempts: Vec<DeliveryAttempt>,
}

impl Notification {
    /// The channel of the current (or last) attempt.
    pub fn channel(&self) -> Option<Channel> {
        self.channels.get(self.channel_index.min(self.channels.len().saturating_sub(1))).copied()
    }
}

/// A notification claimed by a dispatcher, with what its message needs.
#[derive(Debug, Clone)]
pub struct DueNotification {
    pub notification: Notification,
    pub case_number: String,
    pub first_response_due: Instant,
    pub sealed: Option<SealedPersonal>,
    pub incident: Option<Incident>,
}

impl DueNotification {
    /// A notification its writer just committed, as its own dispatcher sends it: what the
    /// claim would have read back, taken from what was written instead.
    pub fn written(
        n: NewNotification,
        case_number: String,
        first_response_due: Instant,
        sealed: Option<SealedPersonal>,
        incident: Option<Incident>,
    ) -> Self {
        Self {
            notification: Notification {
                id: n.id,
                case_id: n.case_id,
                incident_id: n.incident_id,
                traveler_id: n.traveler_id,
                purpose: n.purpose,
                status: NotificationStatus::Pending,
                channels: n.channels,
                channel_index: 0,
                attempts_on_channel: 0,
                language: n.language,
                created_at: n.at,
                delivered_at: None,
                acknowledged_at: None,
                attempts: Vec::new(),
            },
            case_number,
            first_response_due,
            sealed,
            incident,
        }
    }
}

/// What one delivery did to a notification: its attempts, oldest first (a channel given up on
/// is followed at once by the next one), and what comes next on the channel it ended on.
#[derive(Debug, Clone)]
pub struct SendResult {
    pub id: NotificationId,
    pub attempts: Vec<DeliveryAttempt>,
    /// Channels given up on in this delivery: `next` applies to the channel that many places
    /// after the one the notification was on.
    pub moved: u32,
    pub next: NextStep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    /// Try the same channel again at that time.
    Retry {
        at: Instant,
    },
    /// The channel moved to is due at once, not tried yet: the delivery ran out of time to try
    /// it (see the dispatcher's lease), so the claim takes it.
    NextChannel,
    /// Every channel failed.
    Undeliverable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationScope {
    Case(CaseId),
    Incident(IncidentId),
}

/// Position after the last notification of a page (oldest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationCursor {
    pub created_at_micros: i64,
    pub id: NotificationId,
}

/// Channels a message can be sent on, with a default order from the contact details.
pub fn sendable(channel: Channel) -> bool {
    matches!(channel, Channel::Email | Channel::Sms | Channel::App | Channel::Wechat)
}

/// One fan-out batch, written in one transaction.
#[derive(Debug, Clone)]
pub struct FanoutBatch {
    /// The incident revision the batch tells travelers about.
    pub revision: i32,
    /// Cases to open, each with its `CaseOpened` event and its notification.
    pub new_cases: Vec<FanoutCase>,
    /// Cases opened by an earlier revision whose travelers must hear of the change.
    pub updates: Vec<FanoutUpdate>,
    /// The last traveler the batch covers: the pass resumes after it.
    pub cursor: TravelerId,
}

/// What writing a fan-out batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanoutWritten {
    /// Cases opened (a traveler already holding one for the incident is not counted).
    pub opened: usize,
    /// The number of each case the batch opened itself; a traveler's notification that went
    /// to an existing case instead is not here.
    pub numbers: HashMap<CaseId, i64>,
}

#[derive(Debug, Clone)]
pub struct FanoutCase {
    pub case: crate::model::NewCase,
    pub opened: detour_proto::events::v1::Envelope,
    pub notification: NewNotification,
}

#[derive(Debug, Clone)]
pub struct FanoutUpdate {
    pub case_id: CaseId,
    pub traveler_id: TravelerId,
    pub notification: NewNotification,
    pub timeline: crate::model::TimelineEntry,
}

/// Identifies "the same problem" for merging contacts: the segment's kind, supplier, service
/// and UTC start date. A traveler's later contact about it, on any channel, lands in the case
/// already open for it.
pub fn segment_key(s: &Segment) -> String {
    format!(
        "{}|{}|{}|{}",
        s.kind.as_str(),
        s.supplier_code,
        normalise_reference(&s.service_reference),
        s.starts_at.date_naive()
    )
}
