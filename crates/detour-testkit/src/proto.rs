//! Proto values the suites keep building, and what a refusal says.

use detour_proto::common::v1 as common;

/// The suite's usual flight: CA981 from Beijing to New York, booked as PNR123, without a price.
/// A test changes what matters to it with `common::Segment { price, ..flight_segment() }`.
pub fn flight_segment() -> common::Segment {
    common::Segment {
        kind: common::SegmentKind::Flight as i32,
        supplier_code: "CA".into(),
        service_reference: "CA981".into(),
        origin: "PEK".into(),
        destination: "JFK".into(),
        starts_at: Some(prost_types::Timestamp { seconds: 1_796_000_000, nanos: 0 }),
        ends_at: None,
        booking_reference: "PNR123".into(),
        price: None,
    }
}

/// The fields an `INVALID_ARGUMENT`'s `BadRequest` details name, in order.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    detour_errors::field_violations_of(status).into_iter().map(|v| v.field).collect()
}
