//! The traveler and the booked segment a case is about.

use serde::{Deserialize, Serialize};

use crate::{Instant, Money, SegmentKind, TravelerId};

/// Contact details here are personal data: `Debug` is written by hand so they never reach logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traveler {
    pub id: TravelerId,
    pub full_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub preferred_language: Option<String>,
}

impl std::fmt::Debug for Traveler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traveler")
            .field("id", &self.id)
            .field("full_name", &"<redacted>")
            .field("email", &self.email.as_ref().map(|_| "<redacted>"))
            .field("phone", &self.phone.as_ref().map(|_| "<redacted>"))
            .field("preferred_language", &self.preferred_language)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub kind: SegmentKind,
    pub supplier_code: String,
    pub service_reference: String,
    pub origin: Option<String>,
    pub destination: Option<String>,
    pub starts_at: Instant,
    pub ends_at: Option<Instant>,
    pub booking_reference: String,
    pub price: Option<Money>,
}
