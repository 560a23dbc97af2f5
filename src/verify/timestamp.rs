//! Signed timestamps: strict parsing and a symmetric tolerance window against replays.

use std::time::Duration;

use super::VerifyError;

/// The tolerance a timestamped scheme uses when the route sets none.
pub(crate) const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Unix seconds need 10 digits until the year 2286; 11 leave room and still refuse the
/// 13-digit millisecond values that some senders emit by mistake.
const MAX_DIGITS: usize = 11;

/// Parses Unix seconds: ASCII digits only, no sign, no fraction, at most [`MAX_DIGITS`].
pub(crate) fn parse(value: &str, label: &'static str) -> Result<u64, VerifyError> {
    let digits_only = value.bytes().all(|b| b.is_ascii_digit());
    if value.is_empty() || value.len() > MAX_DIGITS || !digits_only {
        return Err(VerifyError::Malformed(label));
    }
    value.parse().map_err(|_| VerifyError::Malformed(label))
}

/// Accepts `signed` when it lies within `tolerance` of `now`, either side; returns the skew
/// (`now - signed`, in seconds).
pub(crate) fn check(signed: u64, now: u64, tolerance: Duration) -> Result<i64, VerifyError> {
    let skew = i128::from(now) - i128::from(signed);
    if skew.unsigned_abs() > u128::from(tolerance.as_secs()) {
        return Err(VerifyError::Stale);
    }
    // Saturates only when a tolerance beyond any sane configuration lets an extreme through.
    Ok(i64::try_from(skew).unwrap_or(i64::MAX))
}

/// Validates a configured tolerance, in the user's words.
pub(crate) fn tolerance(configured: Option<Duration>) -> Result<Duration, String> {
    match configured {
        Some(t) if t.as_secs() == 0 => {
            Err("tolerance: must be at least one second (\"5m\" is usual)".into())
        }
        Some(t) => Ok(t),
        None => Ok(DEFAULT_TOLERANCE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;
    const FIVE_MINUTES: Duration = DEFAULT_TOLERANCE;

    #[test]
    fn unix_seconds_parse() {
        assert_eq!(parse("1700000000", "t"), Ok(1_700_000_000));
        assert_eq!(parse("0", "t"), Ok(0));
    }

    #[test]
    fn empty_signed_fractional_and_non_numeric_timestamps_are_malformed() {
        for bad in [
            "",
            " 1700000000",
            "+1700000000",
            "-5",
            "1700000000.5",
            "17e8",
            "now",
        ] {
            assert_eq!(parse(bad, "t"), Err(VerifyError::Malformed("t")), "{bad:?}");
        }
    }

    #[test]
    fn millisecond_and_overflowing_timestamps_are_malformed() {
        assert_eq!(
            parse("1700000000000", "t"),
            Err(VerifyError::Malformed("t"))
        );
        assert_eq!(
            parse("99999999999999999999999", "t"),
            Err(VerifyError::Malformed("t"))
        );
    }

    #[test]
    fn tolerance_is_symmetric_and_inclusive() {
        assert_eq!(check(NOW - 300, NOW, FIVE_MINUTES), Ok(300));
        assert_eq!(check(NOW + 300, NOW, FIVE_MINUTES), Ok(-300));
        assert_eq!(check(NOW - 301, NOW, FIVE_MINUTES), Err(VerifyError::Stale));
        assert_eq!(check(NOW + 301, NOW, FIVE_MINUTES), Err(VerifyError::Stale));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        assert_eq!(check(u64::MAX, 0, FIVE_MINUTES), Err(VerifyError::Stale));
        assert_eq!(check(0, u64::MAX, FIVE_MINUTES), Err(VerifyError::Stale));
        assert_eq!(
            check(99_999_999_999, NOW, Duration::MAX),
            Ok(NOW as i64 - 99_999_999_999)
        );
    }

    #[test]
    fn zero_tolerance_is_refused_and_absence_means_five_minutes() {
        assert!(tolerance(Some(Duration::ZERO)).is_err());
        assert_eq!(tolerance(None), Ok(FIVE_MINUTES));
    }
}
