//! A circuit breaker per upstream: after a run of failed attempts it stops sending for a
//! cool-down, then lets one probe through; the probe's outcome closes or reopens it.
//!
//! Pure: every call takes the current instant, so tests need no clock.

use std::time::Duration;

use tokio::time::Instant;

/// When to open, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failed attempts that open the breaker.
    pub failures: u32,
    /// The first cool-down; each failed probe doubles it.
    pub cooldown: Duration,
    /// The longest cool-down.
    pub max_cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failures: 5,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, cooldown: Duration },
    Probing { cooldown: Duration },
}

/// The breaker of one upstream.
#[derive(Debug, Clone)]
pub(super) struct Breaker {
    policy: BreakerPolicy,
    state: State,
}

/// Whether an attempt may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// Send.
    Pass,
    /// Send this one attempt as a probe; hold the rest until it ends.
    Probe,
    /// Hold every attempt until this instant.
    HoldUntil(Instant),
    /// Hold every attempt until the probe under way ends.
    HoldForProbe,
}

impl Breaker {
    /// A closed breaker.
    pub(super) fn new(policy: BreakerPolicy) -> Breaker {
        Breaker {
            policy,
            state: State::Closed { failures: 0 },
        }
    }

    /// Asks whether an attempt may start at `now`.
    pub(super) fn gate(&mut self, now: Instant) -> Gate {
        match self.state {
            State::Closed { .. } => Gate::Pass,
            State::Open { until, .. } if now < until => Gate::HoldUntil(until),
            State::Open { cooldown, .. } => {
                self.state = State::Probing { cooldown };
                Gate::Probe
            }
            State::Probing { .. } => Gate::HoldForProbe,
        }
    }

    /// Hands back a probe that [`Breaker::gate`] gave out but that was not made: the next
    /// attempt may probe at once.
    pub(super) fn unprobe(&mut self, now: Instant) {
        if let State::Probing { cooldown } = self.state {
            self.state = State::Open {
                until: now,
                cooldown,
            };
        }
    }

    /// What [`Breaker::gate`] would answer at `now`, without taking the probe.
    pub(super) fn peek(&self, now: Instant) -> Gate {
        match self.state {
            State::Closed { .. } => Gate::Pass,
            State::Open { until, .. } if now < until => Gate::HoldUntil(until),
            State::Open { .. } => Gate::Probe,
            State::Probing { .. } => Gate::HoldForProbe,
        }
    }

    /// Records an attempt's outcome: `true` when the upstream answered in a way that shows
    /// it is healthy (any answer but one that is retried), `false` otherwise.
    /// Returns the cool-down when this outcome opened the breaker.
    pub(super) fn record(&mut self, healthy: bool, now: Instant) -> Option<Duration> {
        let policy = self.policy;
        let (state, opened) = match (self.state, healthy) {
            (_, true) => (State::Closed { failures: 0 }, None),
            (State::Closed { failures }, false) if failures + 1 >= policy.failures => {
                let cooldown = policy.cooldown;
                (
                    State::Open {
                        until: now + cooldown,
                        cooldown,
                    },
                    Some(cooldown),
                )
            }
            (State::Closed { failures }, false) => (
                State::Closed {
                    failures: failures + 1,
                },
                None,
            ),
            (State::Probing { cooldown }, false) | (State::Open { cooldown, .. }, false) => {
                let cooldown = (cooldown * 2).min(policy.max_cooldown);
                (
                    State::Open {
                        until: now + cooldown,
                        cooldown,
                    },
                    Some(cooldown),
                )
            }
        };
        self.state = state;
        opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerPolicy {
            failures: 3,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(25),
        })
    }

    /// A breaker opened at `t` by the run of failures that trips it.
    fn opened(t: Instant) -> Breaker {
        let mut b = breaker();
        for _ in 0..3 {
            b.record(false, t);
        }
        b
    }

    #[test]
    fn opens_after_the_configured_run_of_failures() {
        let (mut b, t) = (breaker(), Instant::now());
        assert_eq!(b.record(false, t), None);
        assert_eq!(b.record(false, t), None);
        assert_eq!(b.gate(t), Gate::Pass);
        assert_eq!(b.record(false, t), Some(Duration::from_secs(10)));
        assert_eq!(
            b.gate(t + Duration::from_secs(9)),
            Gate::HoldUntil(t + Duration::from_secs(10))
        );
    }

    #[test]
    fn a_success_in_between_resets_the_count() {
        let (mut b, t) = (breaker(), Instant::now());
        b.record(false, t);
        b.record(false, t);
        b.record(true, t);
        b.record(false, t);
        assert_eq!(b.gate(t), Gate::Pass);
    }

    #[test]
    fn after_the_cooldown_one_probe_goes_and_the_rest_wait_for_it() {
        let t = Instant::now();
        let mut b = opened(t);
        let later = t + Duration::from_secs(10);
        assert_eq!(b.gate(later), Gate::Probe);
        assert_eq!(b.gate(later), Gate::HoldForProbe);
        b.record(true, later);
        assert_eq!(b.gate(later), Gate::Pass);
    }

    #[test]
    fn a_probe_handed_back_unmade_goes_to_the_next_attempt() {
        let t = Instant::now();
        let mut b = opened(t);
        let later = t + Duration::from_secs(10);
        assert_eq!(b.gate(later), Gate::Probe);
        assert_eq!(b.gate(later), Gate::HoldForProbe);
        b.unprobe(later);
        assert_eq!(
            b.gate(later),
            Gate::Probe,
            "not held for a probe that never ran"
        );
        b.unprobe(later);
        b.record(true, later);
        b.unprobe(later);
        assert_eq!(b.gate(later), Gate::Pass, "a closed breaker stays closed");
    }

    #[test]
    fn a_failed_probe_reopens_for_twice_as_long_up_to_the_cap() {
        let t = Instant::now();
        let mut b = opened(t);
        let t1 = t + Duration::from_secs(10);
        assert_eq!(b.gate(t1), Gate::Probe);
        assert_eq!(b.record(false, t1), Some(Duration::from_secs(20)));
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(b.gate(t2), Gate::Probe);
        assert_eq!(b.record(false, t2), Some(Duration::from_secs(25)));
    }
}
