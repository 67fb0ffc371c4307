//! `detour itinerary import FILE`: bookings from a CSV or JSON export of a booking system,
//! streamed to intake's `ImportItineraries` in chunks, with progress on stderr.
//!
//! CSV: one row per traveler and segment of a booking, with a header row:
//! `booking_reference,traveler_id,full_name,email,phone,preferred_language,contact_channels,`
//! `kind,supplier_code,service_reference,origin,destination,local_date,starts_at,ends_at`.
//! `contact_channels` is a `;`-separated list (`sms;email`); times are RFC 3339.
//!
//! JSON: an array of trips,
//! `[{"booking_reference": "…", "travelers": [{"id", "full_name", "email", "phone",
//! "preferred_language", "contact_channels": ["sms"]}], "segments": [{"kind", "supplier_code",
//! "service_reference", "origin", "destination", "local_date", "starts_at", "ends_at"}]}]`.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use detour_domain::{Channel, SegmentKind};
use detour_proto::common::v1 as common;
use detour_proto::intake::v1 as pb;
use serde::Deserialize;
use serde_json::json;

use crate::client::{Output, Target};

#[derive(Debug, Deserialize)]
struct JsonTrip {
    booking_reference: String,
    travelers: Vec<JsonTraveler>,
    segments: Vec<JsonSegment>,
}

#[derive(Debug, Deserialize)]
struct JsonTraveler {
    id: String,
    full_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    preferred_language: String,
    #[serde(default)]
    contact_channels: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct JsonSegment {
    kind: String,
    supplier_code: String,
    #[serde(default)]
    service_reference: String,
    #[serde(default)]
    origin: String,
    #[serde(default)]
    destination: String,
    local_date: String,
    starts_at: String,
    #[serde(default)]
    ends_at: String,
}

#[derive(Debug, Deserialize)]
struct CsvRow {
    booking_reference: String,
    traveler_id: String,
    full_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    preferred_language: String,
    #[serde(default)]
    contact_channels: String,
    kind: String,
    supplier_code: String,
    #[serde(default)]
    service_reference: String,
    #[serde(default)]
    origin: String,
    #[serde(default)]
    destination: String,
    local_date: String,
    starts_at: String,
    #[serde(default)]
    ends_at: String,
}

fn timestamp(what: &str, raw: &str) -> Result<Option<prost_types::Timestamp>, String> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let t = chrono::DateTime::parse_from_rfc3339(raw.trim()).map_err(|e| format!("{what} `{raw}`: {e}"))?;
    Ok(Some(detour_domain::time::to_proto(t.with_timezone(&chrono::Utc))))
}

fn named<T: FromStr>(what: &str, raw: &str) -> Result<T, String> {
    raw.trim().parse().map_err(|_| format!("unknown {what} `{raw}`"))
}

fn traveler(t: JsonTraveler) -> Result<pb::TripTraveler, String> {
    let channels = t
        .contact_channels
        .iter()
        .filter(|c| !c.trim().is_empty())
        .map(|c| named::<Channel>("channel", c).map(|c| c.to_proto()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(pb::TripTraveler {
        traveler: Some(common::Traveler {
            id: Some(common::TravelerId { value: t.id }),
            full_name: t.full_name,
            email: t.email,
            phone: t.phone,
            preferred_language: t.preferred_language,
            document_number: String::new(),
        }),
        contact_channels: channels,
    })
}

fn segment(s: JsonSegment) -> Result<pb::TripSegment, String> {
    let kind: SegmentKind = named("segment kind", &s.kind)?;
    Ok(pb::TripSegment {
        segment: Some(common::Segment {
            kind: kind.to_proto(),
            supplier_code: s.supplier_code,
            service_reference: s.service_reference,
            origin: s.origin,
            destination: s.destination,
            starts_at: timestamp("starts_at", &s.starts_at)?,
            ends_at: timestamp("ends_at", &s.ends_at)?,
            booking_reference: String::new(),
            price: None,
        }),
        local_date: s.local_date,
    })
}

/// Reads trips from `path`; `format` is `csv` or `json`, or taken from the file's extension.
pub fn read_trips(path: &Path, format: Option<&str>) -> Result<Vec<pb::Trip>, String> {
    let format = format
        .map(str::to_owned)
        .or_else(|| path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()))
        .unwrap_or_default();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match format.as_str() {
        "json" => parse_json(&text),
        "csv" => parse_csv(&text),
        other => Err(format!("unknown format `{other}`: use --format csv or --format json")),
    }
}

pub fn parse_json(text: &str) -> Result<Vec<pb::Trip>, String> {
    let trips: Vec<JsonTrip> = serde_json::from_str(text).map_err(|e| format!("JSON: {e}"))?;
    trips
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let at = |e: String| format!("trip {i} ({}): {e}", t.booking_reference);
            Ok(pb::Trip {
                booking_reference: t.booking_reference.clone(),
                travelers: t.travelers.into_iter().map(traveler).collect::<Result<_, _>>().map_err(at)?,
                segments: t.segments.into_iter().map(segment).collect::<Result<_, _>>().map_err(at)?,
            })
        })
        .collect()
}

pub fn parse_csv(text: &str) -> Result<Vec<pb::Trip>, String> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let mut order: Vec<String> = Vec::new();
    let mut trips: HashMap<String, (Vec<pb::TripTraveler>, Vec<pb::TripSegment>)> = HashMap::new();
    for (line, row) in reader.deserialize::<CsvRow>().enumerate() {
        // The header is line 1.
        let at = |e: String| format!("line {}: {e}", line + 2);
        let row = row.map_err(|e| at(e.to_string()))?;
        let t = traveler(JsonTraveler {
            id: row.traveler_id,
            full_name: row.full_name,
            email: row.email,
            phone: row.phone,
            preferred_language: row.preferred_language,
            contact_channels: row.contact_channels.split(';').map(str::to_owned).collect(),
        })
        .map_err(at)?;
        let s = segment(JsonSegment {
            kind: row.kind,
            supplier_code: row.supplier_code,
            service_reference: row.service_reference,
            origin: row.origin,
            destination: row.destination,
            local_date: row.local_date,
            starts_at: row.starts_at,
            ends_at: row.ends_at,
        })
        .map_err(at)?;
        let entry = trips.entry(row.booking_reference.clone()).or_insert_with(|| {
            order.push(row.booking_reference.clone());
            (Vec::new(), Vec::new())
        });
        // A booking's rows repeat each traveler per segment and each segment per traveler.
        if !entry.0.iter().any(|x| {
            x.traveler.as_ref().and_then(|x| x.id.as_ref()) == t.traveler.as_ref().and_then(|t| t.id.as_ref())
        }) {
            entry.0.push(t);
        }
        if !entry.1.contains(&s) {
            entry.1.push(s);
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|booking| {
            trips.remove(&booking).map(|(travelers, segments)| pb::Trip {
                booking_reference: booking,
                travelers,
                segments,
            })
        })
        .collect())
}

/// Streams `trips` in chunks of `chunk`, printing progress to stderr.
pub async fn import(
    target: &Target,
    trips: Vec<pb::Trip>,
    chunk: usize,
    output: Output,
) -> Result<String, String> {
    let mut client = crate::client::connect(target).await?;
    let total = trips.len();
    let chunks: Vec<pb::ImportItinerariesRequest> =
        trips.chunks(chunk.max(1)).map(|c| pb::ImportItinerariesRequest { trips: c.to_vec() }).collect();
    let mut sent = 0usize;
    let stream = futures::stream::iter(chunks.into_iter().inspect(move |c| {
        sent += c.trips.len();
        eprintln!("import: sent {sent}/{total} trips");
    }));
    let done = client.import_itineraries(stream).await.map_err(crate::client::describe)?.into_inner();
    Ok(match output {
        Output::Json => json!({
            "trips_stored": done.trips_stored,
            "segments_stored": done.segments_stored,
            "refused": done.refused.iter().map(|r| json!({
                "index": r.index, "booking_reference": r.booking_reference, "violations": r.violations,
            })).collect::<Vec<_>>(),
        })
        .to_string(),
        Output::Text => {
            let mut out = format!(
                "stored {} trips ({} segments); refused {}",
                done.trips_stored,
                done.segments_stored,
                done.refused.len()
            );
            for r in &done.refused {
                out.push_str(&format!(
                    "\n  trip {} ({}): {}",
                    r.index,
                    r.booking_reference,
                    r.violations.join("; ")
                ));
            }
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "booking_reference,traveler_id,full_name,email,phone,preferred_language,contact_channels,kind,supplier_code,service_reference,origin,destination,local_date,starts_at,ends_at
PNR1,00000000-0000-4000-8000-000000000001,Li Wei,li@example.com,+8613800138000,zh-CN,sms;email,flight,CA,CA981,PEK,JFK,2026-12-03,2026-12-03T01:00:00Z,2026-12-03T14:00:00Z
PNR1,00000000-0000-4000-8000-000000000002,Wang Fang,wang@example.com,,zh-CN,email,flight,CA,CA981,PEK,JFK,2026-12-03,2026-12-03T01:00:00Z,2026-12-03T14:00:00Z
PNR1,00000000-0000-4000-8000-000000000001,Li Wei,li@example.com,+8613800138000,zh-CN,sms;email,hotel,NYCHTL1,R1,,NYC,2026-12-03,2026-12-03T20:00:00Z,2026-12-05T12:00:00Z
PNR2,00000000-0000-4000-8000-000000000003,Ann Lee,ann@example.com,,en,,flight,CA,CA983,PEK,LAX,2026-12-03,2026-12-03T02:00:00Z,
";

    #[test]
    fn csv_rows_group_into_trips() {
        let trips = parse_csv(CSV).unwrap_or_default();
        assert_eq!(trips.len(), 2);
        assert_eq!(trips[0].booking_reference, "PNR1");
        assert_eq!(trips[0].travelers.len(), 2);
        assert_eq!(trips[0].segments.len(), 2);
        assert_eq!(
            trips[0].travelers[0].contact_channels,
            [Channel::Sms.to_proto(), Channel::Email.to_proto()]
        );
        assert_eq!(trips[1].segments[0].segment.as_ref().map(|s| s.ends_at.is_none()), Some(true));
    }

    #[test]
    fn bad_rows_name_their_line() {
        let bad = CSV.replace("2026-12-03T02:00:00Z", "tomorrow");
        assert!(parse_csv(&bad).unwrap_err().starts_with("line 5: starts_at"));
        let bad = CSV.replace("sms;email,flight", "fax,flight");
        assert!(parse_csv(&bad).unwrap_err().contains("unknown channel `fax`"));
    }

    #[test]
    fn json_trips_parse() {
        let text = r#"[{"booking_reference":"PNR9","travelers":[{"id":"00000000-0000-4000-8000-000000000009","full_name":"Zhang San","phone":"+8613900000009","contact_channels":["app"]}],
            "segments":[{"kind":"flight","supplier_code":"MU","service_reference":"MU587","origin":"PVG","destination":"LAX","local_date":"2026-12-03","starts_at":"2026-12-03T04:00:00Z"}]}]"#;
        let trips = parse_json(text).unwrap_or_default();
        assert_eq!(trips.len(), 1);
        assert_eq!(trips[0].travelers[0].contact_channels, [Channel::App.to_proto()]);
        assert!(parse_json("[{}]").unwrap_err().starts_with("JSON"));
    }
}
