//! Domain types shared by the services.
//!
//! Requests arrive as prost types; handlers convert them here (`TryFrom`, collecting every field
//! problem) and nothing below a handler sees a proto type. The `wire` module holds those
//! conversions and the reverse ones used to answer.

pub mod actor;
pub mod events;
pub mod ids;
pub mod money;
pub mod sla;
pub mod taxonomy;
pub mod time;
pub mod travel;
pub mod wire;

pub use actor::{Actor, ActorKind};
pub use ids::{
    AuditId, CaseId, EventId, IncidentId, NotificationId, OfferId, SupplierRequestId, SurveyId, TravelerId,
};
pub use money::{Currency, Money};
pub use taxonomy::{
    CaseCategory, CaseStatus, Channel, RequestedOutcome, SegmentKind, Severity, SupplierOutcome,
};
pub use time::Instant;
pub use travel::{PersonalData, Segment, Traveler};
