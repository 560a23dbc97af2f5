//! Warnings that a flood would repeat once per request or connection, logged at most once
//! a second each, with how many were left out since.

use std::sync::atomic::{AtomicU64, Ordering};

/// Logs a `warn` line through a [`Throttle`] of its own, one per place the macro is written,
/// adding `left_out`: `warn_throttled!(%peer, "connection limit reached")`.
#[macro_export]
macro_rules! warn_throttled {
    ($($line:tt)+) => {{
        static THROTTLE: $crate::telemetry::throttle::Throttle =
            $crate::telemetry::throttle::Throttle::new();
        if let Some(left_out) = THROTTLE.pass() {
            tracing::warn!(left_out, $($line)+);
        }
    }};
}

/// The gap between two lines of one throttled warning.
const EVERY_MS: u64 = 1_000;

/// One throttled warning; a `static` beside the line it guards.
#[derive(Debug)]
pub struct Throttle {
    next_ms: AtomicU64,
    left_out: AtomicU64,
}

impl Throttle {
    /// A warning not yet logged.
    pub const fn new() -> Throttle {
        Throttle {
            next_ms: AtomicU64::new(0),
            left_out: AtomicU64::new(0),
        }
    }

    /// Whether to log now; if so, how many were left out since the last line.
    pub fn pass(&self) -> Option<u64> {
        self.pass_at(crate::store::now_ms().max(0) as u64)
    }

    fn pass_at(&self, now: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(next, now + EVERY_MS, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.left_out.swap(0, Ordering::Relaxed));
        }
        self.left_out.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_counting_what_it_left_out() {
        let throttle = Throttle::new();
        assert_eq!(throttle.pass_at(10_000), Some(0));
        assert_eq!(throttle.pass_at(10_001), None);
        assert_eq!(throttle.pass_at(10_999), None);
        assert_eq!(throttle.pass_at(11_000), Some(2));
        assert_eq!(throttle.pass_at(11_500), None);
        assert_eq!(throttle.pass_at(30_000), Some(1));
    }
}
