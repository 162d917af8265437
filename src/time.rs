//! Wall-clock time as plain numbers. The pure state machines take time as an
//! argument (`UnixMillis`); only the shells read the clock, through `now_ms`.
use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch.
pub type UnixMillis = u64;

pub fn now_ms() -> UnixMillis {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
}

/// RFC 3339 in UTC with a `Z`, millisecond precision.
pub fn rfc3339_ms(ms: UnixMillis) -> String {
    let dt = i64::try_from(ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .unwrap_or_default();
    dt.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// RFC 3339 with as many fraction digits as needed (Tetragon-style `Z` times).
pub fn rfc3339_from_parts(seconds: i64, nanos: i32) -> Option<String> {
    let nanos = u32::try_from(nanos).ok()?;
    let dt = DateTime::<Utc>::from_timestamp(seconds, nanos)?;
    Some(dt.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// Parses RFC 3339 into milliseconds since the epoch.
pub fn parse_rfc3339_ms(s: &str) -> Option<UnixMillis> {
    let dt = DateTime::parse_from_rfc3339(s).ok()?;
    u64::try_from(dt.timestamp_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_milliseconds() {
        let ms = 1_764_430_000_123;
        assert_eq!(parse_rfc3339_ms(&rfc3339_ms(ms)), Some(ms));
        assert!(rfc3339_ms(ms).ends_with('Z'));
    }

    #[test]
    fn formats_tetragon_nanoseconds() {
        assert_eq!(
            rfc3339_from_parts(0, 5).as_deref(),
            Some("1970-01-01T00:00:00.000000005Z")
        );
        assert_eq!(rfc3339_from_parts(0, -1), None);
    }
}
