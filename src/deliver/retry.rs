//! The retry policy: given what an attempt came to, deliver again later or give up.
//!
//! Pure and clock-free: the caller passes the attempt number, the event's age and a jitter
//! draw, so the whole schedule is testable without a network or a real clock.

use std::time::{Duration, SystemTime};

/// What an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with a status (and maybe a `Retry-After`).
    Status {
        /// The HTTP status.
        code: u16,
        /// The upstream's `Retry-After`, already turned into a delay.
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or reset, TLS failure, or timeout.
    NoAnswer,
}

/// What to do with the delivery next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Delivered.
    Done,
    /// Try again after this delay.
    Retry(Duration),
    /// Stop: the delivery becomes a dead letter.
    GiveUp(&'static str),
}

/// An upstream's `retry` table, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Upper bound of the first backoff.
    pub initial: Duration,
    /// Growth of the bound per attempt.
    pub multiplier: f64,
    /// Largest bound; also caps an upstream's `Retry-After`.
    pub max_delay: Duration,
    /// No attempt starts later than this after the event was accepted.
    pub max_age: Duration,
    /// Which answers are worth another attempt.
    pub statuses: RetryStatuses,
}

/// The answers an upstream may give that are tried again: codes and classes (`5xx`), minus
/// exceptions. `410 Gone` is never retried, whatever the list says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryStatuses {
    /// Single codes, such as `408`.
    pub codes: Vec<u16>,
    /// Classes by their first digit: `5` for `5xx`.
    pub classes: Vec<u16>,
    /// Codes left out of a class, such as `501`.
    pub except: Vec<u16>,
}

impl Default for RetryStatuses {
    /// `408`, `429` and every `5xx` but `501 Not Implemented`.
    fn default() -> Self {
        RetryStatuses {
            codes: vec![408, 429],
            classes: vec![5],
            except: vec![501],
        }
    }
}

impl RetryStatuses {
    /// Parses `[408, 429, "5xx"]` and `except = [501]`.
    pub fn parse(on: &[String], except: &[u16]) -> Result<RetryStatuses, String> {
        let mut statuses = RetryStatuses {
            codes: Vec::new(),
            classes: Vec::new(),
            except: except.to_vec(),
        };
        for item in on {
            let item = item.trim();
            if let Some(class) = item.strip_suffix("xx").and_then(|d| d.parse::<u16>().ok()) {
                if !(4..=5).contains(&class) {
                    return Err(format!("{item:?}: only 4xx and 5xx can be retried"));
                }
                statuses.classes.push(class);
            } else {
                match item.parse::<u16>() {
                    Ok(code) if (400..600).contains(&code) => statuses.codes.push(code),
                    _ => {
                        return Err(format!(
                            "{item:?}: write a status such as 503 or a class such as \"5xx\""
                        ));
                    }
                }
            }
        }
        Ok(statuses)
    }

    /// Whether an answer with `code` is tried again.
    pub fn retries(&self, code: u16) -> bool {
        if code == 410 || self.except.contains(&code) {
            return false;
        }
        self.codes.contains(&code) || self.classes.contains(&(code / 100))
    }
}

impl RetryPolicy {
    /// Decides after attempt number `attempt` (from 1) of an event now `age` old.
    /// `jitter` is a uniform draw from `[0, 1)`: full jitter picks the delay in
    /// `[0, bound)`, which spreads retries from many deliveries apart.
    pub fn decide(&self, outcome: Outcome, attempt: u32, age: Duration, jitter: f64) -> Decision {
        let retry_after = match outcome {
            Outcome::Status { code, .. } if (200..300).contains(&code) => return Decision::Done,
            Outcome::Status { code, retry_after } if self.statuses.retries(code) => retry_after,
            Outcome::Status { code: 410, .. } => return Decision::GiveUp("upstream answered gone"),
            Outcome::Status { .. } => return Decision::GiveUp("upstream refused the event"),
            Outcome::NoAnswer => None,
        };
        if attempt >= self.max_attempts {
            return Decision::GiveUp("attempts exhausted");
        }

        let mut delay = self.bound(attempt).mul_f64(jitter.clamp(0.0, 1.0));
        if let Some(asked) = retry_after {
            delay = delay.max(asked.min(self.max_delay));
        }
        if self.too_old(age.saturating_add(delay)) {
            return Decision::GiveUp("max_age reached");
        }
        Decision::Retry(delay)
    }

    /// Whether an event `age` old is past `max_age`: no attempt may start then.
    pub fn too_old(&self, age: Duration) -> bool {
        age > self.max_age
    }

    /// The backoff bound after attempt `attempt`: `initial * multiplier^(attempt-1)`, capped.
    pub fn bound(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        if !secs.is_finite() || secs >= self.max_delay.as_secs_f64() {
            return self.max_delay;
        }
        Duration::from_secs_f64(secs)
    }
}

/// Reads a `Retry-After` value, in seconds or as an HTTP date; nonsense is ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max_delay: Duration::from_secs(10),
            max_age: Duration::from_secs(3_600),
            statuses: RetryStatuses::default(),
        }
    }

    fn status(code: u16) -> Outcome {
        Outcome::Status {
            code,
            retry_after: None,
        }
    }

    #[test]
    fn success_is_done() {
        assert_eq!(
            policy().decide(status(204), 1, Duration::ZERO, 0.5),
            Decision::Done
        );
    }

    #[test]
    fn server_errors_timeouts_and_throttling_are_retried() {
        for outcome in [
            status(500),
            status(503),
            status(408),
            status(429),
            Outcome::NoAnswer,
        ] {
            let decision = policy().decide(outcome, 1, Duration::ZERO, 0.5);
            assert_eq!(
                decision,
                Decision::Retry(Duration::from_millis(500)),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn client_errors_gone_and_not_implemented_give_up_at_once() {
        for code in [400, 404, 410, 422, 501, 302] {
            let decision = policy().decide(status(code), 1, Duration::ZERO, 0.5);
            assert!(
                matches!(decision, Decision::GiveUp(_)),
                "{code}: {decision:?}"
            );
        }
    }

    #[test]
    fn retried_statuses_are_configurable_but_gone_always_stops() {
        let on = ["409".to_owned(), "5xx".to_owned()];
        let statuses = RetryStatuses::parse(&on, &[503]).unwrap();
        let p = RetryPolicy {
            statuses,
            ..policy()
        };
        assert!(matches!(
            p.decide(status(409), 1, Duration::ZERO, 0.5),
            Decision::Retry(_)
        ));
        assert!(matches!(
            p.decide(status(502), 1, Duration::ZERO, 0.5),
            Decision::Retry(_)
        ));
        assert!(matches!(
            p.decide(status(503), 1, Duration::ZERO, 0.5),
            Decision::GiveUp(_)
        ));
        assert!(matches!(
            p.decide(status(429), 1, Duration::ZERO, 0.5),
            Decision::GiveUp(_)
        ));
        assert!(matches!(
            p.decide(status(410), 1, Duration::ZERO, 0.5),
            Decision::GiveUp(_)
        ));
        assert!(RetryStatuses::parse(&["2xx".to_owned()], &[]).is_err());
        assert!(RetryStatuses::parse(&["abc".to_owned()], &[]).is_err());
    }

    #[test]
    fn the_default_schedule_spreads_attempts_over_about_a_day() {
        let config: crate::config::raw::RawRetry = toml::from_str("").unwrap();
        let p = RetryPolicy {
            max_attempts: config.max_attempts,
            initial: config.initial.0,
            multiplier: config.multiplier,
            max_delay: config.max_delay.0,
            max_age: config.max_age.0,
            statuses: RetryStatuses::default(),
        };
        // With the mean jitter draw, every retry is half its bound.
        let mut age = Duration::ZERO;
        let mut attempt = 1;
        while let Decision::Retry(delay) = p.decide(status(503), attempt, age, 0.5) {
            age += delay;
            attempt += 1;
        }
        assert_eq!(attempt, p.max_attempts);
        let hours = age.as_secs_f64() / 3_600.0;
        assert!((18.0..24.0).contains(&hours), "{hours} hours");
    }

    #[test]
    fn bound_grows_exponentially_and_is_capped() {
        let p = policy();
        let bounds: Vec<u64> = (1..=6).map(|a| p.bound(a).as_secs()).collect();
        assert_eq!(bounds, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn full_jitter_spans_zero_to_the_bound() {
        let p = policy();
        assert_eq!(
            p.decide(status(503), 3, Duration::ZERO, 0.0),
            Decision::Retry(Duration::ZERO)
        );
        let near_top = p.decide(status(503), 3, Duration::ZERO, 0.999);
        assert!(matches!(near_top, Decision::Retry(d) if d > Duration::from_millis(3_990)));
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let decision = policy().decide(status(503), 5, Duration::ZERO, 0.5);
        assert_eq!(decision, Decision::GiveUp("attempts exhausted"));
    }

    #[test]
    fn gives_up_when_the_next_try_would_pass_max_age() {
        let age = Duration::from_secs(3_599);
        let decision = policy().decide(status(503), 2, age, 0.9);
        assert_eq!(decision, Decision::GiveUp("max_age reached"));
    }

    #[test]
    fn retry_after_is_honoured_but_capped_at_max_delay() {
        let asked = |secs| Outcome::Status {
            code: 429,
            retry_after: Some(Duration::from_secs(secs)),
        };
        let p = policy();
        assert_eq!(
            p.decide(asked(7), 1, Duration::ZERO, 0.0),
            Decision::Retry(Duration::from_secs(7))
        );
        assert_eq!(
            p.decide(asked(900), 1, Duration::ZERO, 0.0),
            Decision::Retry(Duration::from_secs(10))
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_ignores_nonsense() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
