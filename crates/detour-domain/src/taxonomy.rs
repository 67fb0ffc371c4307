//! The case taxonomy and the other closed vocabularies, each stored as a stable snake_case name
//! (never the proto number, which is the wire's business).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a known {kind}")]
pub struct UnknownName {
    pub kind: &'static str,
    pub value: String,
}

/// A closed vocabulary stored by stable names: the enum with `ALL`, `KIND`, `as_str`, `Display`
/// and `FromStr` (failing with [`UnknownName`]). With `proto = <enum>`, whose variants must carry
/// the same names, also `to_proto` and `from_proto`. Attributes before the name (docs, further
/// derives) go on the enum, and variants may carry their own.
///
/// Services use it for their own vocabularies too (`detour_domain::stored_names!`), so every
/// stored name is read back, and refused, the same way.
#[macro_export]
macro_rules! stored_names {
    (
        $(#[$attr:meta])* $name:ident, $kind:literal, proto = $proto:path,
        { $($(#[$vattr:meta])* $variant:ident => $text:literal),+ $(,)? }
    ) => {
        $crate::stored_names!($(#[$attr])* $name, $kind, { $($(#[$vattr])* $variant => $text),+ });

        impl $name {
            /// The wire value.
            pub fn to_proto(self) -> i32 {
                use $proto as P;
                match self {
                    $($name::$variant => P::$variant as i32),+
                }
            }

            /// `None` for UNSPECIFIED and for numbers this build does not know.
            pub fn from_proto(value: i32) -> Option<Self> {
                use $proto as P;
                match P::try_from(value).ok()? {
                    $(P::$variant => Some($name::$variant),)+
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }
    };
    (
        $(#[$attr:meta])* $name:ident, $kind:literal,
        { $($(#[$vattr:meta])* $variant:ident => $text:literal),+ $(,)? }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vattr])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const KIND: &'static str = $kind;

            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::taxonomy::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::taxonomy::UnknownName {
                        kind: $kind,
                        value: s.chars().take(64).collect(),
                    }),
                }
            }
        }
    };
}

/// A vocabulary shared by the contracts: stored names, a `detour.common`/`detour.events` enum,
/// and the same names in the JSON columns that hold travelers and segments.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident, $kind:literal, proto = $proto:path, { $($names:tt)+ }) => {
        crate::stored_names!(
            $(#[$doc])*
            #[derive(PartialOrd, Ord, Serialize, Deserialize)]
            #[serde(rename_all = "snake_case")]
            $name, $kind, proto = $proto, { $($names)+ }
        );
    };
}

vocabulary!(
    /// What a case is about (the taxonomy in docs/ARCHITECTURE.md).
    CaseCategory, "case category", proto = detour_proto::common::v1::CaseCategory, {
    FlightCancellation => "flight_cancellation",
    FlightDelay => "flight_delay",
    MissedConnection => "missed_connection",
    DeniedBoarding => "denied_boarding",
    Baggage => "baggage",
    HotelProblem => "hotel_problem",
    GroundTransport => "ground_transport",
    ItineraryChange => "itinerary_change",
    ForcedShopping => "forced_shopping",
    StaffService => "staff_service",
    FeeDispute => "fee_dispute",
    PaymentProblem => "payment_problem",
    BookingProblem => "booking_problem",
    SafetyMedical => "safety_medical",
    ForceMajeureEvent => "force_majeure_event",
    DocumentsVisa => "documents_visa",
    Other => "other",
});

vocabulary!(Severity, "severity", proto = detour_proto::common::v1::Severity, {
    Low => "low",
    Medium => "medium",
    High => "high",
    Critical => "critical",
});

vocabulary!(Channel, "channel", proto = detour_proto::common::v1::Channel, {
    Phone => "phone",
    Chat => "chat",
    Email => "email",
    App => "app",
    Web => "web",
    Sms => "sms",
    Wechat => "wechat",
    PartnerFeed => "partner_feed",
    Proactive => "proactive",
});

vocabulary!(RequestedOutcome, "requested outcome", proto = detour_proto::common::v1::RequestedOutcome, {
    Refund => "refund",
    Rebooking => "rebooking",
    Hotel => "hotel",
    Apology => "apology",
    Compensation => "compensation",
    Help => "help",
});

vocabulary!(SegmentKind, "segment kind", proto = detour_proto::common::v1::SegmentKind, {
    Flight => "flight",
    Hotel => "hotel",
    GroundTransport => "ground_transport",
    Tour => "tour",
});

vocabulary!(
    /// Where a case stands. Ordered: a case only moves forward (see [`CaseStatus::advance`]).
    CaseStatus, "case status", proto = detour_proto::common::v1::CaseStatus, {
    Open => "open",
    Triaged => "triaged",
    AwaitingSupplier => "awaiting_supplier",
    OfferProposed => "offer_proposed",
    Resolved => "resolved",
});

vocabulary!(
    /// What a supplier said about a case.
    SupplierOutcome, "supplier outcome", proto = detour_proto::events::v1::SupplierOutcome, {
    /// Another flight, another room.
    AlternativeOffered => "alternative_offered",
    FaultAccepted => "fault_accepted",
    /// The supplier disputes the traveler's account.
    Disputed => "disputed",
    /// Weather, strike, air traffic control: beyond the supplier's control.
    ExtraordinaryCircumstances => "extraordinary_circumstances",
});

impl CaseStatus {
    /// The status after an event that would move the case to `next`. Events from different
    /// services may arrive out of order; a late event never moves a case backwards.
    pub fn advance(self, next: CaseStatus) -> CaseStatus {
        self.max(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_through_text_and_wire() {
        for c in CaseCategory::ALL {
            assert_eq!(c.as_str().parse::<CaseCategory>().unwrap(), *c);
            assert_eq!(CaseCategory::from_proto(c.to_proto()), Some(*c));
        }
        assert_eq!(CaseCategory::ALL.len(), 17);
        assert_eq!(CaseCategory::from_proto(0), None);
        assert_eq!(Channel::from_proto(999), None);
    }

    #[test]
    fn status_never_moves_backwards() {
        assert_eq!(CaseStatus::Resolved.advance(CaseStatus::Triaged), CaseStatus::Resolved);
        assert_eq!(CaseStatus::Open.advance(CaseStatus::Triaged), CaseStatus::Triaged);
    }
}
