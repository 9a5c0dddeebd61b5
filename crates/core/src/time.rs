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
        if let Some(ts) = parse_common(text.as_bytes()) {
            return Ok(ts);
        }
        let ts: jiff::Timestamp = text.parse().map_err(|e| {
            format!("expected an RFC 3339 timestamp with offset, found {text:?} ({e})")
        })?;
        i64::try_from(ts.as_nanosecond())
            .map(Timestamp)
            .map_err(|_| format!("timestamp {text:?} is outside the years 1678..2262"))
    }

    /// Parses a date (`YYYY-MM-DD`, midnight UTC) or an RFC 3339
    /// timestamp: how people give "as of" times on a command line or in a
    /// query string.
    pub fn parse_date_or_time(text: &str) -> Result<Timestamp, String> {
        if !text.contains('T') {
            if let Ok(date) = text.parse::<jiff::civil::Date>() {
                let outside = || format!("date {text:?} is outside the years 1678..2262");
                let ts = date
                    .to_zoned(jiff::tz::TimeZone::UTC)
                    .map_err(|_| outside())?
                    .timestamp();
                return i64::try_from(ts.as_nanosecond())
                    .map(Timestamp)
                    .map_err(|_| outside());
            }
        }
        Timestamp::parse(text).map_err(|e| format!("{e}; or a date, YYYY-MM-DD"))
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

/// The shape nearly every sender uses, `YYYY-MM-DDTHH:MM:SS[.fraction]`
/// then `Z` or `±hh:mm`, for years 1970–2199, without a general parser;
/// `None` for anything else (then jiff decides, and errors name the
/// problem). Same result as jiff for every string it accepts (tested).
fn parse_common(b: &[u8]) -> Option<Timestamp> {
    fn digits(b: &[u8]) -> Option<i64> {
        b.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    }
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if !(1970..=2199).contains(&year)
        || !(1..=12).contains(&month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day < 1 || day > month_days[month as usize - 1] {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0i64;
    if let [b'.', fraction @ ..] = rest {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        nanos = digits(&fraction[..n])? * 10i64.pow(9 - n as u32);
        rest = &fraction[n..];
    }
    let offset = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let seconds = h * 3_600 + m * 60;
            if *sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return None,
    };
    // Days from 1970-01-01 to the civil date (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset;
    Some(Timestamp(seconds * NANOS_PER_SECOND + nanos))
}

/// Serialised as its RFC 3339 text ([`fmt::Display`]).
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// RFC 3339 text in JSON Schemas (API descriptions).
impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 (UTC, nanoseconds when not whole)"
        })
    }
}

/// Read from RFC 3339 text with any offset ([`Timestamp::parse`]).
impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The civil date (year, month 1–12, day 1–31) of a count of days since
/// 1970-01-01 (H. Hinnant's algorithm), for any count.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// The RFC 3339 text of a time in the years 0000–9999 (`None` outside;
/// nanoseconds in an `i64` reach 1677–2262):
/// `YYYY-MM-DDTHH:MM:SS`, a fraction with as many digits as needed, `Z`.
/// The text jiff writes, without its formatting machinery: every stored
/// message's text holds one (the tests compare the two).
fn rfc3339(ts: Timestamp, out: &mut [u8; 30]) -> Option<usize> {
    let seconds = ts.0.div_euclid(NANOS_PER_SECOND);
    let nanos = ts.0.rem_euclid(NANOS_PER_SECOND);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    fn put(out: &mut [u8], value: i64) {
        let mut v = value;
        for digit in out.iter_mut().rev() {
            *digit = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    put(&mut out[0..4], year);
    put(&mut out[5..7], month);
    put(&mut out[8..10], day);
    put(&mut out[11..13], second_of_day / 3_600);
    put(&mut out[14..16], second_of_day / 60 % 60);
    put(&mut out[17..19], second_of_day % 60);
    for (at, sep) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        out[at] = sep;
    }
    let mut len = 19;
    if nanos != 0 {
        out[19] = b'.';
        put(&mut out[20..29], nanos);
        len = 29;
        while out[len - 1] == b'0' {
            len -= 1;
        }
    }
    out[len] = b'Z';
    Some(len + 1)
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with as many fractional digits as needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; 30];
        if let Some(len) = rfc3339(*self, &mut text) {
            // ASCII digits and separators only.
            return f.write_str(std::str::from_utf8(&text[..len]).map_err(|_| fmt::Error)?);
        }
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
    pub const fn from_seconds(seconds: i64) -> Duration {
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
    fn dates_and_times_as_people_give_them() {
        let midnight = Timestamp::parse("2025-03-01T00:00:00Z").unwrap();
        assert_eq!(Timestamp::parse_date_or_time("2025-03-01"), Ok(midnight));
        assert_eq!(
            Timestamp::parse_date_or_time("2025-03-01T01:00:00+01:00"),
            Ok(midnight)
        );
        for outside in ["2300-01-01", "1600-01-01", "9999-12-31"] {
            let err = Timestamp::parse_date_or_time(outside).unwrap_err();
            assert!(err.contains("outside the years"), "{outside}: {err}");
        }
        assert!(Timestamp::parse_date_or_time("soon")
            .unwrap_err()
            .contains("or a date"));
    }
    use proptest::prelude::*;

    fn by_jiff(text: &str) -> Option<i64> {
        text.parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_nanosecond() as i64)
    }

    proptest! {
        #[test]
        fn the_common_shape_parses_exactly_as_jiff_does(
            year in 1960i64..2210, month in 0i64..14, day in 0i64..33,
            hour in 0i64..25, minute in 0i64..61, second in 0i64..61,
            fraction in proptest::option::of("[0-9]{1,10}"),
            offset in prop_oneof![Just("Z".to_string()), "[+-][0-2][0-9]:[0-6][0-9]"],
        ) {
            let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
            let text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{offset}");
            if let Some(fast) = parse_common(text.as_bytes()) {
                prop_assert_eq!(Some(fast.0), by_jiff(&text), "{}", text);
            }
            // Whatever the path, the public parser agrees with jiff.
            prop_assert_eq!(Timestamp::parse(&text).ok().map(|t| t.0), by_jiff(&text), "{}", text);
        }
    }

    fn display_by_jiff(ts: Timestamp) -> String {
        match jiff::Timestamp::from_nanosecond(ts.0 as i128) {
            Ok(t) => t.to_string(),
            Err(_) => format!("@{}ns", ts.0),
        }
    }

    proptest! {
        #[test]
        fn the_text_is_the_one_jiff_writes(
            seconds in -9_223_372_036i64..9_223_372_036,
            nanos in prop_oneof![Just(0i64), (0i64..1000).prop_map(|n| n * 1_000_000),
                (0i64..1_000_000).prop_map(|n| n * 1000), 0i64..NANOS_PER_SECOND],
        ) {
            let ts = Timestamp(seconds.saturating_mul(NANOS_PER_SECOND).saturating_add(nanos));
            prop_assert_eq!(ts.to_string(), display_by_jiff(ts));
        }
    }

    #[test]
    fn the_text_at_the_edges_is_the_one_jiff_writes() {
        for text in [
            "1677-09-21T00:12:43.145224192Z",
            "1969-12-31T23:59:59.999999999Z",
            "1970-01-01T00:00:00Z",
            "2000-02-29T12:00:00.5Z",
            "2024-12-31T23:59:59.000000001Z",
            "2262-04-11T23:47:16.854775807Z",
        ] {
            let ts = Timestamp::parse(text).unwrap();
            assert_eq!(ts.to_string(), text);
            assert_eq!(ts.to_string(), display_by_jiff(ts));
            for near in [-1, 1, -NANOS_PER_SECOND, 86_400 * NANOS_PER_SECOND]
                .map(|d| ts.0.saturating_add(d))
            {
                assert_eq!(
                    Timestamp(near).to_string(),
                    display_by_jiff(Timestamp(near))
                );
            }
        }
        for extreme in [i64::MIN, i64::MAX, -1, 0] {
            assert_eq!(
                Timestamp(extreme).to_string(),
                display_by_jiff(Timestamp(extreme))
            );
        }
    }

    #[test]
    fn serde_round_trip_as_rfc3339_text() {
        let t = Timestamp::parse("2025-03-01T10:00:00.5+01:00").unwrap();
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(text, "\"2025-03-01T09:00:00.5Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&text).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    #[test]
    fn the_common_shape_takes_the_fast_path() {
        for text in [
            "2025-05-10T19:10:41.285Z",
            "2024-02-29T23:59:59+02:00",
            "1970-01-01T00:00:00Z",
            "2199-12-31T23:59:59.999999999-12:30",
        ] {
            assert_eq!(
                parse_common(text.as_bytes()).map(|t| t.0),
                by_jiff(text),
                "{text}"
            );
            assert!(parse_common(text.as_bytes()).is_some(), "{text}");
        }
        for other in [
            "2023-02-29T00:00:00Z",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01T00:00:00",
        ] {
            assert!(parse_common(other.as_bytes()).is_none(), "{other}");
        }
    }

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
