//! Instants in UTC, stored as integer microseconds since the Unix epoch.
//!
//! Both backends store times as `BIGINT`, so ordering and comparison are plain integer
//! operations everywhere; text appears only at the edges (JSON, logs) as RFC 3339.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An instant in UTC with microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const MICROS_PER_SECOND: i64 = 1_000_000;
    pub const MICROS_PER_DAY: i64 = 86_400 * Self::MICROS_PER_SECOND;

    pub fn from_unix_seconds(seconds: i64) -> Self {
        Timestamp(seconds.saturating_mul(Self::MICROS_PER_SECOND))
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn plus_seconds(self, seconds: i64) -> Self {
        Timestamp(
            self.0
                .saturating_add(seconds.saturating_mul(Self::MICROS_PER_SECOND)),
        )
    }

    pub fn plus_days(self, days: i64) -> Self {
        Timestamp(
            self.0
                .saturating_add(days.saturating_mul(Self::MICROS_PER_DAY)),
        )
    }

    /// RFC 3339 in UTC, e.g. `2026-11-29T08:05:08.123456Z`.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos).map(|t| t.format(&Rfc3339)) {
            Ok(Ok(text)) => text,
            // Only reachable for instants outside year 1..9999, which parsing never produces.
            _ => format!("@{}us", self.0),
        }
    }

    /// Parses RFC 3339 with any offset and normalises it to UTC microseconds.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let parsed = OffsetDateTime::parse(text.trim(), &Rfc3339).ok()?;
        let micros = parsed.unix_timestamp_nanos() / 1000;
        i64::try_from(micros).ok().map(Timestamp)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Checks a calendar date written as `YYYY-MM-DD`.
pub fn is_valid_date(text: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    text.len() == 10 && time::Date::parse(text, &format).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_and_normalises_offsets() {
        let t = Timestamp::parse_rfc3339("2026-11-29T16:05:08.5+08:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-29T08:05:08.5Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn dates_are_checked_against_the_calendar() {
        assert!(is_valid_date("2026-02-28"));
        assert!(!is_valid_date("2026-02-30"));
        assert!(!is_valid_date("2026-2-3"));
        assert!(!is_valid_date("tomorrow"));
    }
}
