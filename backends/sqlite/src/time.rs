//! Timestamps as stored: integer microseconds since the Unix epoch.

use chrono::{DateTime, Utc};

pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn now() -> i64 {
    micros(Utc::now())
}

pub fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}
