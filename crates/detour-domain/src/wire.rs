//! Conversions between the wire (prost types) and the domain, used only by handlers.
//!
//! Validation collects every problem into [`Violations`] with the field's path in the request,
//! so a client fixes a bad request in one round trip.

use std::fmt::Display;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use detour_errors::Violations;
use detour_proto::common::v1 as pb;
use detour_vault::Secret;

use crate::{
    Channel, Currency, Instant, Money, PersonalData, RequestedOutcome, Segment, SegmentKind, Traveler,
    TravelerId, time,
};

/// Longest free text accepted in a description or comment.
pub const MAX_TEXT_CHARS: usize = 8_000;
const MAX_NAME_CHARS: usize = 200;
const MAX_REFERENCE_CHARS: usize = 64;

/// A typed id from its wrapper message; records a violation when missing or malformed.
pub fn required_id<T: FromStr>(v: &mut Violations, field: &str, raw: Option<&str>) -> Option<T>
where
    T::Err: std::fmt::Display,
{
    match raw.map(str::trim) {
        None | Some("") => {
            v.add(field, "is required");
            None
        }
        Some(s) => match s.parse() {
            Ok(id) => Some(id),
            Err(e) => {
                v.add(field, e.to_string());
                None
            }
        },
    }
}

/// The proto messages that wrap a typed id (`detour.common.v1.CaseId { value }` and its kin).
pub trait IdMessage {
    fn value(&self) -> &str;
}

macro_rules! id_messages {
    ($($message:ident),+) => {
        $(impl IdMessage for pb::$message {
            fn value(&self) -> &str {
                &self.value
            }
        })+
    };
}

id_messages!(CaseId, TravelerId, SupplierRequestId, OfferId, SurveyId, EventId, IncidentId, NotificationId);

/// The typed id of a request that carries nothing else to validate (`GetCase`, `ListOffers`):
/// the id, or the one violation when its wrapper message is missing, empty or malformed.
pub fn id_from_message<T: FromStr, M: IdMessage>(field: &str, message: Option<&M>) -> Result<T, Violations>
where
    T::Err: Display,
{
    let mut v = Violations::new();
    required_id(&mut v, field, message.map(IdMessage::value)).ok_or(v)
}

/// A typed id that may be absent (a filter); malformed is still a violation.
pub fn optional_id<T: FromStr>(v: &mut Violations, field: &str, raw: Option<&str>) -> Option<T>
where
    T::Err: std::fmt::Display,
{
    match raw.map(str::trim) {
        None | Some("") => None,
        Some(_) => required_id(v, field, raw),
    }
}

/// Free text: trimmed, required unless `optional`, at most `max` characters.
pub fn text(v: &mut Violations, field: &str, raw: &str, max: usize, optional: bool) -> String {
    let t = raw.trim();
    if t.is_empty() && !optional {
        v.add(field, "is required");
    } else if t.chars().count() > max {
        v.add(field, format!("is longer than {max} characters"));
    } else if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
        v.add(field, "contains control characters");
    }
    t.to_owned()
}

/// Page size: 0 means the default; otherwise 1..=max.
pub fn page_size(v: &mut Violations, field: &str, raw: i32, default: u32, max: u32) -> u32 {
    match raw {
        0 => default,
        n if n < 0 || n as u32 > max => {
            v.add(field, format!("must be between 1 and {max}"));
            default
        }
        n => n as u32,
    }
}

/// A timestamp that may be absent (a filter bound, an end); out of range is a violation.
pub fn optional_instant(
    v: &mut Violations,
    field: &str,
    ts: Option<&prost_types::Timestamp>,
) -> Option<Instant> {
    let t = time::from_proto(ts?);
    if t.is_none() {
        v.add(field, "is not a valid timestamp");
    }
    t
}

/// The opaque `page_token` of a keyset-paginated list: the position after the page's last item
/// as the instant (microseconds) and the id the list is ordered by.
pub fn encode_page_token(micros: i64, id: &impl Display) -> String {
    URL_SAFE_NO_PAD.encode(format!("{micros}|{id}"))
}

/// The position an [`encode_page_token`] token holds; `None` for anything else.
pub fn decode_page_token<T: FromStr>(token: &str) -> Option<(i64, T)> {
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (micros, id) = text.split_once('|')?;
    Some((micros.parse().ok()?, id.parse().ok()?))
}

/// A list request's page token read by `decode`: `None` when empty (the first page), and a
/// violation when it is not one this service issued.
pub fn page_token<C>(
    v: &mut Violations,
    field: &str,
    raw: &str,
    decode: impl FnOnce(&str) -> Option<C>,
) -> Option<C> {
    match raw.trim() {
        "" => None,
        token => {
            let cursor = decode(token);
            if cursor.is_none() {
                v.add(field, "is not a token this service issued");
            }
            cursor
        }
    }
}

pub fn money_from_proto(v: &mut Violations, field: &str, m: &pb::Money) -> Option<Money> {
    let currency = match Currency::from_str(m.currency.trim()) {
        Ok(c) => Some(c),
        Err(e) => {
            v.add(format!("{field}.currency"), e.to_string());
            None
        }
    };
    if m.amount_minor < 0 {
        v.add(format!("{field}.amount_minor"), "must not be negative");
        return None;
    }
    currency.map(|c| Money::new(m.amount_minor, c))
}

pub fn money_to_proto(m: &Money) -> pb::Money {
    pb::Money { amount_minor: m.amount_minor, currency: m.currency.code().to_owned() }
}

pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
        && s.len() <= 254
}

/// E.164: a plus sign and 8 to 15 digits; spaces, dashes and dots are tolerated and removed.
pub fn normalise_phone(s: &str) -> Option<String> {
    let compact: String = s.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')')).collect();
    let digits = compact.strip_prefix('+')?;
    (8..=15).contains(&digits.len()).then_some(())?;
    digits.chars().all(|c| c.is_ascii_digit()).then(|| compact.clone())
}

fn is_language_tag(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 35
        && s.split('-').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Validates a traveler; field paths are relative to the traveler (`email`, not `traveler.email`).
pub fn traveler_from_proto(p: &pb::Traveler) -> Result<Traveler, Violations> {
    let mut v = Violations::new();
    let id = match p.id.as_ref().map(|i| i.value.as_str()) {
        None | Some("") => Some(TravelerId::new()),
        raw => required_id(&mut v, "id.value", raw),
    };
    let full_name = text(&mut v, "full_name", &p.full_name, MAX_NAME_CHARS, false);
    let email = match p.email.trim() {
        "" => None,
        e if is_email(e) => Some(e.to_ascii_lowercase()),
        _ => {
            v.add("email", "is not an e-mail address");
            None
        }
    };
    let phone = match p.phone.trim() {
        "" => None,
        raw => match normalise_phone(raw) {
            Some(p) => Some(p),
            None => {
                v.add("phone", "is not an international phone number (+ and 8 to 15 digits)");
                None
            }
        },
    };
    if p.email.trim().is_empty() && p.phone.trim().is_empty() {
        v.add("email", "an e-mail address or a phone number is required to reach the traveler");
    }
    let document_number = match p.document_number.trim() {
        "" => None,
        d if is_document_number(d) => Some(d.to_ascii_uppercase()),
        _ => {
            v.add("document_number", format!("must be 5 to {MAX_DOCUMENT_CHARS} letters and digits"));
            None
        }
    };
    let preferred_language = match p.preferred_language.trim() {
        "" => None,
        l if is_language_tag(l) => Some(l.to_owned()),
        _ => {
            v.add("preferred_language", "is not a BCP 47 language tag");
            None
        }
    };
    let personal = PersonalData {
        full_name: Secret::new(full_name),
        email: email.map(Secret::new),
        phone: phone.map(Secret::new),
        document_number: document_number.map(Secret::new),
    };
    match id {
        Some(id) => v.finish(Traveler { id, preferred_language, personal }),
        None => Err(v),
    }
}

/// Passport and national identity numbers: letters and digits, as printed in the document.
const MAX_DOCUMENT_CHARS: usize = 20;

fn is_document_number(s: &str) -> bool {
    (5..=MAX_DOCUMENT_CHARS).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric())
}

pub fn traveler_to_proto(t: &Traveler) -> pb::Traveler {
    let p = &t.personal;
    pb::Traveler {
        id: Some(pb::TravelerId { value: t.id.to_string() }),
        full_name: p.full_name().to_owned(),
        email: p.email().unwrap_or_default().to_owned(),
        phone: p.phone().unwrap_or_default().to_owned(),
        preferred_language: t.preferred_language.clone().unwrap_or_default(),
        document_number: p.document_number().unwrap_or_default().to_owned(),
    }
}

fn code(
    v: &mut Violations,
    field: &str,
    raw: &str,
    len: std::ops::RangeInclusive<usize>,
    required: bool,
) -> Option<String> {
    let t = raw.trim().to_ascii_uppercase();
    if t.is_empty() {
        if required {
            v.add(field, "is required");
        }
        return None;
    }
    if !len.contains(&t.len()) || !t.chars().all(|c| c.is_ascii_alphanumeric()) {
        v.add(field, format!("must be {} to {} letters or digits", len.start(), len.end()));
        return None;
    }
    Some(t)
}

/// Validates a segment; field paths are relative to the segment.
pub fn segment_from_proto(p: &pb::Segment) -> Result<Segment, Violations> {
    let mut v = Violations::new();
    let kind = SegmentKind::from_proto(p.kind);
    if kind.is_none() {
        v.add("kind", "is required");
    }
    let transport = matches!(kind, Some(SegmentKind::Flight | SegmentKind::GroundTransport));
    let supplier_code = code(&mut v, "supplier_code", &p.supplier_code, 2..=16, true);
    let service_reference =
        text(&mut v, "service_reference", &p.service_reference, MAX_REFERENCE_CHARS, false);
    let origin = code(&mut v, "origin", &p.origin, 3..=5, transport);
    let destination = code(&mut v, "destination", &p.destination, 3..=5, transport);
    if p.starts_at.is_none() {
        v.add("starts_at", "is required");
    }
    let starts_at = optional_instant(&mut v, "starts_at", p.starts_at.as_ref());
    let ends_at = optional_instant(&mut v, "ends_at", p.ends_at.as_ref());
    if let (Some(s), Some(e)) = (starts_at, ends_at)
        && e < s
    {
        v.add("ends_at", "is before starts_at");
    }
    let booking_reference =
        text(&mut v, "booking_reference", &p.booking_reference, MAX_REFERENCE_CHARS, false);
    let price = p.price.as_ref().and_then(|m| money_from_proto(&mut v, "price", m));
    match (kind, supplier_code, starts_at) {
        (Some(kind), Some(supplier_code), Some(starts_at)) if v.is_empty() => Ok(Segment {
            kind,
            supplier_code,
            service_reference,
            origin,
            destination,
            starts_at,
            ends_at,
            booking_reference,
            price,
        }),
        _ => Err(v),
    }
}

pub fn segment_to_proto(s: &Segment) -> pb::Segment {
    pb::Segment {
        kind: s.kind.to_proto(),
        supplier_code: s.supplier_code.clone(),
        service_reference: s.service_reference.clone(),
        origin: s.origin.clone().unwrap_or_default(),
        destination: s.destination.clone().unwrap_or_default(),
        starts_at: Some(time::to_proto(s.starts_at)),
        ends_at: s.ends_at.map(time::to_proto),
        booking_reference: s.booking_reference.clone(),
        price: s.price.as_ref().map(money_to_proto),
    }
}

/// A required nested message, validated by `f` with its violations prefixed by `field`.
pub fn nested<P, T>(
    v: &mut Violations,
    field: &str,
    p: Option<&P>,
    f: impl FnOnce(&P) -> Result<T, Violations>,
) -> Option<T> {
    match p {
        None => {
            v.add(field, "is required");
            None
        }
        Some(p) => match f(p) {
            Ok(t) => Some(t),
            Err(inner) => {
                v.extend_prefixed(field, inner);
                None
            }
        },
    }
}

pub fn channel(v: &mut Violations, field: &str, raw: i32) -> Option<Channel> {
    let c = Channel::from_proto(raw);
    if c.is_none() {
        v.add(field, "is required");
    }
    c
}

/// Requested outcomes, deduplicated in the order given.
pub fn requested_outcomes(v: &mut Violations, field: &str, raw: &[i32]) -> Vec<RequestedOutcome> {
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        match RequestedOutcome::from_proto(*r) {
            Some(o) if !out.contains(&o) => out.push(o),
            Some(_) => {}
            None => v.add(format!("{field}[{i}]"), "is not a known outcome"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traveler() -> pb::Traveler {
        pb::Traveler {
            id: None,
            full_name: "Li Wei".into(),
            email: "Li.Wei@Example.com".into(),
            phone: "+86 138-0013-8000".into(),
            preferred_language: "zh-CN".into(),
            document_number: "e1234 5678".into(),
        }
    }

    fn flight() -> pb::Segment {
        pb::Segment {
            kind: pb::SegmentKind::Flight as i32,
            supplier_code: "ca".into(),
            service_reference: "CA981".into(),
            origin: "PEK".into(),
            destination: "JFK".into(),
            starts_at: Some(prost_types::Timestamp { seconds: 1_796_000_000, nanos: 0 }),
            ends_at: None,
            booking_reference: "PNR123".into(),
            price: Some(pb::Money { amount_minor: 520_000, currency: "CNY".into() }),
        }
    }

    #[test]
    fn a_valid_traveler_is_normalised() {
        let mut p = traveler();
        p.document_number = "e12345678".into();
        let t = traveler_from_proto(&p).unwrap();
        assert_eq!(t.personal.email(), Some("li.wei@example.com"));
        assert_eq!(t.personal.phone(), Some("+8613800138000"));
        assert_eq!(t.personal.document_number(), Some("E12345678"));
        let debug = format!("{t:?}");
        assert!(
            !debug.contains("li.wei") && !debug.contains("138001") && !debug.contains("Li Wei"),
            "{debug}"
        );
    }

    #[test]
    fn every_traveler_problem_is_reported_at_once() {
        let mut p = traveler();
        p.full_name = " ".into();
        p.email = "nope".into();
        p.phone = "12".into();
        let fields: Vec<String> =
            traveler_from_proto(&p).unwrap_err().as_slice().iter().map(|v| v.field.clone()).collect();
        assert_eq!(fields, ["full_name", "email", "phone", "document_number"]);
    }

    #[test]
    fn a_flight_needs_airports_and_a_known_currency() {
        assert!(segment_from_proto(&flight()).is_ok());
        let mut p = flight();
        p.origin.clear();
        p.price = Some(pb::Money { amount_minor: -1, currency: "XYZ".into() });
        let fields: Vec<String> =
            segment_from_proto(&p).unwrap_err().as_slice().iter().map(|v| v.field.clone()).collect();
        assert_eq!(fields, ["origin", "price.currency", "price.amount_minor"]);
    }

    #[test]
    fn nested_violations_carry_the_parent_path() {
        let mut v = Violations::new();
        let mut p = traveler();
        p.email = "bad".into();
        assert!(nested(&mut v, "traveler", Some(&p), traveler_from_proto).is_none());
        assert_eq!(v.as_slice()[0].field, "traveler.email");
    }
}
