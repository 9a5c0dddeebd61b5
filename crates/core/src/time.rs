//! Instants and durations: the only notion of time the core knows (no clock).

use std::fmt;

/// An instant, in nanoseconds since the Unix epoch (UTC).
///
/// Events are ordered by `(Timestamp, messageId)`; nanoseconds keep the full
/// precision of RFC 3339 inputs so that ordering never depends on rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// Nanoseconds in one second.
pub const NANOS_PER_SECOND: i64 = 1_000_000_000;
/// Seconds in one day, the unit of `days_since()`.
pub const SECONDS_PER_DAY: f64 = 86_400.0;

impl Timestamp {
    /// Parses an RFC 3339 timestamp with any offset (`Z`, `+02:00`, …).
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        let ts: jiff::Timestamp = text.parse().map_err(|e| {
            format!("expected an RFC 3339 timestamp with offset, found {text:?} ({e})")
        })?;
        i64::try_from(ts.as_nanosecond())
            .map(Timestamp)
            .map_err(|_| format!("timestamp {text:?} is outside the years 1678..2262"))
    }

    /// Seconds since the epoch as a float (for decay arithmetic).
    pub fn seconds_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SECOND as f64
    }

    /// Seconds elapsed from `earlier` to `self` (negative if `earlier` is later).
    pub fn seconds_since(self, earlier: Timestamp) -> f64 {
        match self.0.checked_sub(earlier.0) {
            Some(nanos) => nanos as f64 / NANOS_PER_SECOND as f64,
            None => (self.0 as i128 - earlier.0 as i128) as f64 / NANOS_PER_SECOND as f64,
        }
    }

    /// `self - duration`, saturating at the representable range.
    pub fn minus(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration.nanos()))
    }

    /// `self + duration`, saturating at the representable range.
    pub fn plus(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration.nanos()))
    }

    /// Builds a timestamp from whole seconds since the epoch.
    pub fn from_seconds(seconds: i64) -> Timestamp {
        Timestamp(seconds.saturating_mul(NANOS_PER_SECOND))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with as many fractional digits as needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_nanosecond(self.0 as i128) {
            Ok(ts) => write!(f, "{ts}"),
            Err(_) => write!(f, "@{}ns", self.0),
        }
    }
}

/// A length of time written `30s`, `15m`, `12h`, `7d` or `2w` in models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    seconds: i64,
}

impl Duration {
    /// A duration of whole seconds.
    pub fn from_seconds(seconds: i64) -> Duration {
        Duration { seconds }
    }

    /// Whole seconds.
    pub fn seconds(self) -> i64 {
        self.seconds
    }

    /// Nanoseconds (saturating).
    pub fn nanos(self) -> i64 {
        self.seconds.saturating_mul(NANOS_PER_SECOND)
    }

    /// Parses `<positive integer><unit>` with unit `s`, `m`, `h`, `d` or `w`.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let expected = || {
            format!(
                "expected a duration such as \"30s\", \"15m\", \"12h\", \"7d\" or \"2w\", found {text:?}"
            )
        };
        let unit_at = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(expected)?;
        let (digits, unit) = text.split_at(unit_at);
        let value: i64 = digits.parse().map_err(|_| expected())?;
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return Err(expected()),
        };
        if value == 0 {
            return Err(format!("a duration must be positive, found {text:?}"));
        }
        value
            .checked_mul(scale)
            .filter(|s| s.checked_mul(NANOS_PER_SECOND).is_some())
            .map(Duration::from_seconds)
            .ok_or_else(|| format!("duration {text:?} is too long"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.seconds;
        for (unit, scale) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
            if s % scale == 0 {
                return write!(f, "{}{unit}", s / scale);
            }
        }
        write!(f, "{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_to_the_same_instant() {
        let a = Timestamp::parse("2024-03-01T10:00:00+02:00").unwrap();
        let b = Timestamp::parse("2024-03-01T08:00:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2024-03-01T08:00:00Z");
    }

    #[test]
    fn keeps_nanoseconds() {
        let a = Timestamp::parse("2024-03-01T08:00:00.000000001Z").unwrap();
        let b = Timestamp::parse("2024-03-01T08:00:00Z").unwrap();
        assert_eq!(a.0 - b.0, 1);
    }

    #[test]
    fn rejects_timestamps_without_offset() {
        assert!(Timestamp::parse("2024-03-01T08:00:00").is_err());
        assert!(Timestamp::parse("yesterday").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("30s").unwrap().seconds(), 30);
        assert_eq!(Duration::parse("15m").unwrap().seconds(), 900);
        assert_eq!(Duration::parse("12h").unwrap().seconds(), 43_200);
        assert_eq!(Duration::parse("7d").unwrap().seconds(), 604_800);
        assert_eq!(Duration::parse("2w").unwrap().seconds(), 1_209_600);
        assert_eq!(Duration::parse("90d").unwrap().to_string(), "90d");
        for bad in ["", "7", "d", "7x", "-7d", "0d", "1.5d", " 7d"] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
    }
}
