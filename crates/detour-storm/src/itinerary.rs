//! The crisis's population: flights out of one airport on one day and the travelers booked on
//! them, each trip with a hotel stay at the destination, generated from a seed alone so that a
//! reported result can be reproduced traveler for traveler.

use chrono::{DateTime, Duration as Span, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use detour_proto::common::v1 as common;
use detour_proto::intake::v1 as pb;

use crate::error::StormError;
use crate::rng::Rng;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct CrisisSpec {
    pub seed: u64,
    /// IATA code of the airport the flights depart from.
    pub airport: String,
    /// The airport's local date of the departures.
    pub date: NaiveDate,
    /// The airport's offset from UTC, in hours (PEK: 8), for local dates and the window.
    pub utc_offset_hours: i32,
    pub flights: u32,
    pub travelers: u32,
}

/// One departing flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Flight {
    pub carrier: &'static str,
    /// Carrier included, as the suite knows flights ("CA1234").
    pub number: String,
    pub destination: &'static str,
    pub departs_at: DateTime<Utc>,
    pub arrives_at: DateTime<Utc>,
}

/// One traveler as the storm needs them later: to contact intake as them, and to check what
/// the suite did for them.
#[derive(Debug, Clone, PartialEq)]
pub struct StormTraveler {
    pub index: u32,
    pub id: String,
    pub full_name: String,
    pub email: String,
    pub phone: String,
    pub language: &'static str,
    pub booking_reference: String,
    /// Index into [`Crisis::flights`].
    pub flight: usize,
}

/// A generated crisis.
#[derive(Debug, Clone, PartialEq)]
pub struct Crisis {
    pub spec: CrisisSpec,
    pub flights: Vec<Flight>,
    pub travelers: Vec<StormTraveler>,
    pub trips: Vec<pb::Trip>,
}

impl Crisis {
    /// The departure day at the airport, in UTC: `[local midnight, next local midnight)`.
    pub fn window(&self) -> Result<(DateTime<Utc>, DateTime<Utc>), StormError> {
        let start = local_time(&self.spec, self.spec.date, NaiveTime::MIN)?;
        Ok((start, start + Span::days(1)))
    }

    /// The flight segment of a traveler's trip, as an OpenCase request names it.
    pub fn flight_segment(&self, traveler: &StormTraveler) -> Option<common::Segment> {
        let flight = self.flights.get(traveler.flight)?;
        Some(flight_segment(&self.spec, flight, &traveler.booking_reference, None))
    }

    /// The local departure date as the suite takes it (YYYY-MM-DD).
    pub fn local_date(&self) -> String {
        self.spec.date.format("%Y-%m-%d").to_string()
    }

    pub fn segment_count(&self) -> usize {
        self.trips.iter().map(|t| t.segments.len()).sum()
    }
}

// Where flights from the airport go: code, block time in minutes, the destination's UTC offset.
const DESTINATIONS: [(&str, i64, i64); 16] = [
    ("SHA", 135, 8),
    ("PVG", 140, 8),
    ("CAN", 200, 8),
    ("CTU", 190, 8),
    ("SZX", 205, 8),
    ("XIY", 130, 8),
    ("KMG", 230, 8),
    ("HKG", 235, 8),
    ("TPE", 215, 8),
    ("NRT", 230, 9),
    ("ICN", 130, 9),
    ("SIN", 400, 8),
    ("FRA", 640, 1),
    ("CDG", 660, 1),
    ("LHR", 670, 0),
    ("JFK", 820, -5),
];
const CARRIERS: [&str; 10] = ["CA", "CA", "CA", "MU", "CZ", "HU", "ZH", "3U", "LH", "AF"];

const ZH_SURNAMES: [&str; 20] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何",
    "林", "罗", "高",
];
const ZH_GIVEN: [&str; 24] = [
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超",
    "秀英", "霞", "平", "建华", "晓东", "子轩", "欣怡",
];
const EN_GIVEN: [&str; 20] = [
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "Wei",
    "Emma",
    "Oliver",
    "Sophie",
    "Lukas",
    "Anna",
    "Hiroshi",
    "Yuki",
    "Min-jun",
    "Chloé",
];
const EN_SURNAMES: [&str; 18] = [
    "Smith", "Johnson", "Brown", "Garcia", "Miller", "Davis", "Wilson", "Taylor", "Müller", "Schmidt",
    "Martin", "Bernard", "Tanaka", "Kim", "Nguyen", "Li", "Wang", "Chen",
];

// Streams of the seed, one per thing drawn, so adding a draw to one leaves the others alone.
const STREAM_FLIGHTS: u64 = 1;
const STREAM_BOOKINGS: u64 = 2;

/// Generates the crisis; the same spec always gives the same crisis.
pub fn generate(spec: &CrisisSpec) -> Result<Crisis, StormError> {
    if spec.flights == 0 {
        return Err(StormError::Config("--flights must be at least 1".into()));
    }
    let flights = (0..spec.flights).map(|i| flight(spec, i)).collect::<Result<Vec<_>, _>>()?;
    let mut travelers = Vec::with_capacity(spec.travelers as usize);
    let mut trips = Vec::new();
    let mut booking = 0u64;
    while (travelers.len() as u64) < u64::from(spec.travelers) {
        let mut rng = Rng::derive(spec.seed, STREAM_BOOKINGS, booking);
        let left = u64::from(spec.travelers) - travelers.len() as u64;
        let party = party_size(&mut rng).min(left);
        let flight_index = rng.below(flights.len() as u64) as usize;
        let Some(flight) = flights.get(flight_index) else { break };
        let booking_reference = format!("ST{booking:07}");
        let chinese = rng.chance(0.7);
        let surname_zh = *rng.pick(&ZH_SURNAMES);
        let surname_en = *rng.pick(&EN_SURNAMES);
        let mut party_members = Vec::new();
        for _ in 0..party {
            let index = travelers.len() as u32;
            let traveler =
                traveler(&mut rng, index, chinese, surname_zh, surname_en, &booking_reference, flight_index);
            party_members.push(trip_traveler(&mut rng, &traveler));
            travelers.push(traveler);
        }
        let price = rng.between(800, 9_000) as i64 * 100;
        let mut segments = vec![pb::TripSegment {
            segment: Some(flight_segment(spec, flight, &booking_reference, Some(price * party as i64))),
            local_date: spec.date.format("%Y-%m-%d").to_string(),
        }];
        segments.push(hotel_segment(&mut rng, flight, &booking_reference, party)?);
        trips.push(pb::Trip { booking_reference, travelers: party_members, segments });
        booking += 1;
    }
    Ok(Crisis { spec: spec.clone(), flights, travelers, trips })
}

fn party_size(rng: &mut Rng) -> u64 {
    match rng.below(100) {
        0..55 => 1,
        55..80 => 2,
        80..92 => 3,
        _ => 4,
    }
}

fn local_time(spec: &CrisisSpec, date: NaiveDate, time: NaiveTime) -> Result<DateTime<Utc>, StormError> {
    let offset = FixedOffset::east_opt(spec.utc_offset_hours * 3600).ok_or_else(|| {
        StormError::Config(format!("UTC offset {}h is out of range", spec.utc_offset_hours))
    })?;
    offset
        .from_local_datetime(&date.and_time(time))
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| StormError::Config(format!("{date} {time} is not a valid local time")))
}

fn flight(spec: &CrisisSpec, i: u32) -> Result<Flight, StormError> {
    let mut rng = Rng::derive(spec.seed, STREAM_FLIGHTS, u64::from(i));
    let carrier = *rng.pick(&CARRIERS);
    let &(destination, block_minutes, _) = rng.pick(&DESTINATIONS);
    // Departures every five minutes from 06:00 to 22:55 local.
    let slot = rng.below(204) as u32;
    let departs = NaiveTime::from_hms_opt(6 + slot / 12, (slot % 12) * 5, 0)
        .ok_or_else(|| StormError::Config("departure slot out of the day".into()))?;
    let departs_at = local_time(spec, spec.date, departs)?;
    Ok(Flight {
        carrier,
        // The index keeps every number unique however the carriers fall.
        number: format!("{carrier}{}", 1000 + i),
        destination,
        departs_at,
        arrives_at: departs_at + Span::minutes(block_minutes),
    })
}

fn traveler(
    rng: &mut Rng,
    index: u32,
    chinese: bool,
    surname_zh: &str,
    surname_en: &str,
    booking_reference: &str,
    flight: usize,
) -> StormTraveler {
    // Families mostly share a surname; a few travel with friends.
    let shared = rng.chance(0.8);
    let full_name = if chinese {
        let surname = if shared { surname_zh } else { *rng.pick(&ZH_SURNAMES) };
        format!("{surname}{}", rng.pick(&ZH_GIVEN))
    } else {
        let surname = if shared { surname_en } else { *rng.pick(&EN_SURNAMES) };
        format!("{} {surname}", rng.pick(&EN_GIVEN))
    };
    let language = if chinese { if rng.chance(0.9) { "zh-CN" } else { "en" } } else { "en" };
    StormTraveler {
        index,
        id: rng.uuid().to_string(),
        full_name,
        email: format!("t{index:07}@storm.invalid"),
        phone: format!("+86139{index:08}"),
        language,
        booking_reference: booking_reference.to_owned(),
        flight,
    }
}

fn trip_traveler(rng: &mut Rng, t: &StormTraveler) -> pb::TripTraveler {
    use common::Channel as C;
    // Every list reaches a channel the HTTP provider carries (SMS or push), and an empty one
    // falls back to SMS by the phone every traveler has: the benchmark's sink is that provider,
    // and a traveler left without a sender would measure the set-up, not the suite.
    let channels: &[C] = match rng.below(100) {
        0..40 => &[C::App, C::Sms],
        40..60 => &[C::Sms],
        60..85 => &[C::Email, C::Sms],
        85..95 => &[C::Email, C::App],
        _ => &[],
    };
    let document_number =
        if rng.chance(0.4) { format!("E{:08}", rng.below(100_000_000)) } else { String::new() };
    pb::TripTraveler {
        traveler: Some(common::Traveler {
            id: Some(common::TravelerId { value: t.id.clone() }),
            full_name: t.full_name.clone(),
            email: t.email.clone(),
            phone: t.phone.clone(),
            preferred_language: t.language.to_owned(),
            document_number,
        }),
        contact_channels: channels.iter().map(|c| *c as i32).collect(),
    }
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

fn flight_segment(
    spec: &CrisisSpec,
    flight: &Flight,
    booking_reference: &str,
    price_minor: Option<i64>,
) -> common::Segment {
    common::Segment {
        kind: common::SegmentKind::Flight as i32,
        supplier_code: flight.carrier.to_owned(),
        service_reference: flight.number.clone(),
        origin: spec.airport.clone(),
        destination: flight.destination.to_owned(),
        starts_at: Some(timestamp(flight.departs_at)),
        ends_at: Some(timestamp(flight.arrives_at)),
        booking_reference: booking_reference.to_owned(),
        price: price_minor.map(|amount_minor| common::Money { amount_minor, currency: "CNY".to_owned() }),
    }
}

fn hotel_segment(
    rng: &mut Rng,
    flight: &Flight,
    booking_reference: &str,
    party: u64,
) -> Result<pb::TripSegment, StormError> {
    let offset_hours = DESTINATIONS.iter().find(|d| d.0 == flight.destination).map_or(8, |d| d.2);
    let offset = FixedOffset::east_opt(offset_hours as i32 * 3600)
        .ok_or_else(|| StormError::Config("destination offset out of range".into()))?;
    // Check-in two hours after landing, for two to five nights.
    let check_in = flight.arrives_at + Span::hours(2);
    let nights = rng.between(2, 5) as i64;
    let property = format!("H{}{:03}", flight.destination, rng.below(40));
    let rooms = party.div_ceil(2) as i64;
    let price = rng.between(450, 2_400) as i64 * 100 * nights * rooms;
    Ok(pb::TripSegment {
        segment: Some(common::Segment {
            kind: common::SegmentKind::Hotel as i32,
            supplier_code: property,
            service_reference: format!("R{}", booking_reference.trim_start_matches("ST")),
            origin: String::new(),
            destination: flight.destination.to_owned(),
            starts_at: Some(timestamp(check_in)),
            ends_at: Some(timestamp(check_in + Span::days(nights))),
            booking_reference: booking_reference.to_owned(),
            price: Some(common::Money { amount_minor: price, currency: "CNY".to_owned() }),
        }),
        local_date: check_in.with_timezone(&offset).format("%Y-%m-%d").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use prost::Message;

    use super::*;

    fn spec(seed: u64) -> CrisisSpec {
        CrisisSpec {
            seed,
            airport: "PEK".into(),
            date: NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(),
            utc_offset_hours: 8,
            flights: 20,
            travelers: 500,
        }
    }

    fn encoded(c: &Crisis) -> Vec<Vec<u8>> {
        c.trips.iter().map(|t| t.encode_to_vec()).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_trips() {
        let a = generate(&spec(42)).unwrap();
        let b = generate(&spec(42)).unwrap();
        assert_eq!(encoded(&a), encoded(&b));
        assert_eq!(a, b);
        let c = generate(&spec(43)).unwrap();
        assert_ne!(encoded(&a), encoded(&c));
    }

    #[test]
    fn every_traveler_is_generated_once_on_a_departing_flight() {
        let c = generate(&spec(1)).unwrap();
        assert_eq!(c.travelers.len(), 500);
        let in_trips: usize = c.trips.iter().map(|t| t.travelers.len()).sum();
        assert_eq!(in_trips, 500);
        let ids: HashSet<_> = c.travelers.iter().map(|t| t.id.clone()).collect();
        assert_eq!(ids.len(), 500);
        let refs: HashSet<_> = c.trips.iter().map(|t| t.booking_reference.clone()).collect();
        assert_eq!(refs.len(), c.trips.len());
        let numbers: BTreeSet<_> = c.flights.iter().map(|f| f.number.clone()).collect();
        assert_eq!(numbers.len(), 20);
        let (from, until) = c.window().unwrap();
        assert_eq!(from.to_rfc3339(), "2026-12-02T16:00:00+00:00");
        for trip in &c.trips {
            assert!((1..=4).contains(&trip.travelers.len()));
            assert_eq!(trip.segments.len(), 2);
            let flight = trip.segments[0].segment.as_ref().unwrap();
            assert_eq!(flight.origin, "PEK");
            assert_eq!(trip.segments[0].local_date, "2026-12-03");
            let departs = flight.starts_at.as_ref().unwrap().seconds;
            assert!(departs >= from.timestamp() && departs < until.timestamp());
            let hotel = trip.segments[1].segment.as_ref().unwrap();
            assert_eq!(hotel.kind, common::SegmentKind::Hotel as i32);
            assert_eq!(hotel.destination, flight.destination);
        }
        // Parties of several travelers exist, as do both languages.
        assert!(c.trips.len() < 500);
        assert!(c.travelers.iter().any(|t| t.language == "en"));
        assert!(c.travelers.iter().any(|t| t.language == "zh-CN"));
    }

    #[test]
    fn contact_details_are_synthetic_and_well_formed() {
        let c = generate(&spec(5)).unwrap();
        let t = &c.travelers[123];
        assert_eq!(t.email, "t0000123@storm.invalid");
        assert_eq!(t.phone, "+8613900000123");
        assert!(uuid::Uuid::parse_str(&t.id).is_ok());
        let seg = c.flight_segment(t).unwrap();
        assert_eq!(seg.booking_reference, t.booking_reference);
    }
}
