//! The human units of `gateway.toml`: durations (`"30s"`, `"1h30m"`), sizes (`"5MiB"`),
//! rates (`"200/s"`).

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The longest duration taken, in days: about a hundred years.
pub const MAX_DAYS: u64 = 36_500;

/// The longest duration taken. Every duration the gateway keeps fits in milliseconds as an
/// `i64` and added to today's date, so no window, retention or timeout can wrap around.
pub const MAX_DURATION: Duration = Duration::from_secs(MAX_DAYS * 86_400);

/// Parses a duration: one or more `<whole number><unit>` terms, units `ms`, `s`, `m`, `h`, `d`,
/// up to [`MAX_DURATION`].
///
/// `"300s"`, `"5m"` and `"1h30m"` are accepted; a bare number, a fraction, a sign, an unknown
/// unit or a duration past the longest is refused with a message that quotes the input.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err(format!(
            "{s:?} is not a duration: write it like \"30s\" or \"5m\""
        ));
    }

    let too_long = || format!("{s:?} is longer than the longest duration taken, {MAX_DAYS}d");
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let (term, after) = next_term(rest).ok_or_else(|| shape_error(s))?;
        let term = term.ok_or_else(too_long)?;
        total = total.checked_add(term).ok_or_else(too_long)?;
        rest = after;
    }
    if total > MAX_DURATION {
        return Err(too_long());
    }
    Ok(total)
}

/// Reads one `<number><unit>` term off the front of `text`; the term is `None` when it does
/// not fit in a `u64` of milliseconds.
fn next_term(text: &str) -> Option<(Option<Duration>, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (number, rest) = text.split_at(digits);
    let number: Option<u64> = number.parse().ok();

    let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
    let (unit, rest) = rest.split_at(unit_len);
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    let millis = number.and_then(|n| n.checked_mul(millis_per_unit));
    Some((millis.map(Duration::from_millis), rest))
}

fn shape_error(s: &str) -> String {
    format!(
        "{s:?} is not a duration: write a whole number and a unit (ms, s, m, h, d), like \"30s\""
    )
}

/// Deserializes an optional duration field written as text; use with
/// `#[serde(default, deserialize_with = "deserialize_opt_duration")]`.
pub fn deserialize_opt_duration<'de, D>(deserializer: D) -> Result<Option<Duration>, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Parses `"512"`, `"64KiB"`, `"5MiB"`, `"1GiB"`, or the decimal `"5MB"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("size {text:?} must start with a whole number"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "size {text:?}: unknown unit {other:?} (B, KiB, MiB, GiB)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// A rate such as `"200/s"`: so many events per period, with a burst of the same size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per period (and the burst).
    pub count: NonZeroU32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// Parses `"200/s"`, `"30/m"` or `"1000/h"`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (count, unit) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("rate {text:?} must look like \"200/s\""))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("rate {text:?} must start with a whole number"))?;
        let count =
            NonZeroU32::new(count).ok_or_else(|| format!("rate {text:?} must be above 0"))?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3_600),
            other => return Err(format!("rate {text:?}: unknown period {other:?} (s, m, h)")),
        };
        Ok(Rate { count, per })
    }

    /// The matching `governor` quota: `count` cells replenished evenly over `per`.
    pub fn quota(&self) -> governor::Quota {
        let interval = self.per / self.count.get();
        governor::Quota::with_period(interval.max(Duration::from_nanos(1)))
            .map(|q| q.allow_burst(self.count))
            .unwrap_or_else(|| governor::Quota::per_second(self.count))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// A duration written as text in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

/// A byte size written as text in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

macro_rules! deserialize_from_str {
    ($ty:ty, $parse:expr, $example:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = toml::Value::deserialize(deserializer)?;
                let text = value.as_str().ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "write {value} as text with its unit, such as \"{}\"",
                        $example
                    ))
                })?;
                $parse(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

deserialize_from_str!(Span, |t: &str| parse_duration(t).map(Span), "72h");
deserialize_from_str!(Size, |t: &str| parse_size(t).map(Size), "5MiB");
deserialize_from_str!(Rate, Rate::parse, "200/s");

/// A setting for which zero would leave the gateway unable to serve: no connection, no
/// attempt, no pending delivery, no byte of a body, no time to read a request.
pub trait AboveZero {
    /// What the error says when the value is zero.
    const AT_LEAST: &'static str;
    /// Whether the value is zero.
    fn is_zero(&self) -> bool;
}

macro_rules! above_zero_count {
    ($($ty:ty),*) => {$(
        impl AboveZero for $ty {
            const AT_LEAST: &'static str = "must be at least 1";
            fn is_zero(&self) -> bool {
                *self == 0
            }
        }
    )*};
}

above_zero_count!(u32, u64, usize);

impl AboveZero for Size {
    const AT_LEAST: &'static str = "must be at least 1 byte";
    fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

impl AboveZero for Span {
    const AT_LEAST: &'static str = "must be longer than 0, such as \"10s\"";
    fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

/// Deserializes a setting that zero would make useless, refusing zero; use with
/// `#[serde(deserialize_with = "above_zero")]`.
pub fn above_zero<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + AboveZero,
{
    let value = T::deserialize(deserializer)?;
    if value.is_zero() {
        return Err(serde::de::Error::custom(T::AT_LEAST));
    }
    Ok(value)
}

/// [`above_zero`] for an optional setting.
pub fn above_zero_opt<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + AboveZero,
{
    above_zero(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_each_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("72h"), Ok(Duration::from_secs(72 * 3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn durations_without_unit_or_number_are_refused() {
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.5s").is_err());
    }

    #[test]
    fn durations_past_the_longest_are_refused_with_the_limit() {
        assert_eq!(parse_duration("36500d"), Ok(MAX_DURATION));
        for text in [
            "36501d",
            "200000000000d",
            "99999999999999999999d",
            "36500d1ms",
        ] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains("36500d"), "{error}");
        }
        assert!(i64::try_from(MAX_DURATION.as_millis()).is_ok());
    }

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(parse_size("5MiB"), Ok(5 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("5MB"), Ok(5_000_000));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("5 furlongs").is_err());
    }

    #[test]
    fn rates_parse_and_print_back() {
        let rate = Rate::parse("200/s").unwrap();
        assert_eq!(rate.count.get(), 200);
        assert_eq!(rate.to_string(), "200/s");
        assert_eq!(Rate::parse("30/m").unwrap().per, Duration::from_secs(60));
        assert!(Rate::parse("0/s").is_err());
        assert!(Rate::parse("10/week").is_err());
    }
}
