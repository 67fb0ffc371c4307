//! The traveler and the booked segment a case is about.

use serde::{Deserialize, Serialize};

use detour_vault::Secret;

use crate::{Instant, Money, SegmentKind, TravelerId};

/// The person a case is about. What identifies them as a person is kept apart in
/// [`PersonalData`]: it is encrypted at rest, never travels in events, and is erased on request,
/// while the id and the language stay with the anonymised case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traveler {
    pub id: TravelerId,
    pub preferred_language: Option<String>,
    pub personal: PersonalData,
}

/// A traveler's name, contact details and document number. Every field is a [`Secret`], so the
/// struct is safe to `Debug`-print and cannot be serialised by accident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalData {
    pub full_name: Secret<String>,
    pub email: Option<Secret<String>>,
    pub phone: Option<Secret<String>>,
    /// Passport or national identity document number.
    pub document_number: Option<Secret<String>>,
}

/// The plain values, for the few places that must handle them (sealing, answering the desk).
impl PersonalData {
    pub fn full_name(&self) -> &str {
        self.full_name.expose()
    }

    pub fn email(&self) -> Option<&str> {
        self.email.as_ref().map(|s| s.expose().as_str())
    }

    pub fn phone(&self) -> Option<&str> {
        self.phone.as_ref().map(|s| s.expose().as_str())
    }

    pub fn document_number(&self) -> Option<&str> {
        self.document_number.as_ref().map(|s| s.expose().as_str())
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
