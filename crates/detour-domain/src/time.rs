//! Instants are UTC; the stored form is microseconds since the Unix epoch.

use chrono::{DateTime, TimeZone, Utc};

pub type Instant = DateTime<Utc>;

/// Now, at the precision every table keeps (microseconds), so an event and the row written with
/// it carry the same instant.
pub fn now() -> Instant {
    truncate(Utc::now())
}

/// `t` without its sub-microsecond part.
pub fn truncate(t: Instant) -> Instant {
    from_micros(to_micros(t)).unwrap_or(t)
}

pub fn to_micros(t: Instant) -> i64 {
    t.timestamp_micros()
}

/// `None` for values outside chrono's range (only corrupt rows hold such numbers).
pub fn from_micros(micros: i64) -> Option<Instant> {
    Utc.timestamp_micros(micros).single()
}

pub fn to_proto(t: Instant) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn from_proto(ts: &prost_types::Timestamp) -> Option<Instant> {
    let nanos = u32::try_from(ts.nanos).ok()?;
    Utc.timestamp_opt(ts.seconds, nanos).single().map(truncate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_and_proto_round_trip() {
        let t = from_micros(1_795_000_000_123_456).unwrap();
        assert_eq!(to_micros(t), 1_795_000_000_123_456);
        assert_eq!(from_proto(&to_proto(t)), Some(t));
        assert_eq!(from_proto(&prost_types::Timestamp { seconds: 0, nanos: -1 }), None);
        let nanos = from_proto(&prost_types::Timestamp { seconds: 1, nanos: 1_999 }).unwrap();
        assert_eq!(to_micros(nanos), 1_000_001);
        let t = now();
        assert_eq!(from_micros(to_micros(t)), Some(t));
    }
}
