//! Rate limits at the door: per client address before the body is read, per route after
//! verification. Both are `governor` limiters; a refusal says how long to wait.

use std::collections::HashMap;
use std::net::IpAddr;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, RateLimiter};

use crate::config::units::Rate;
use crate::route::Route;

/// The limiters of one configuration.
#[derive(Debug)]
pub struct Limits {
    per_client: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_route: HashMap<String, DefaultDirectRateLimiter>,
    clock: DefaultClock,
}

impl Limits {
    /// Limiters for `client_rate` and each route's `rate`.
    pub fn new(client_rate: Option<Rate>, routes: &[std::sync::Arc<Route>]) -> Limits {
        let per_route = routes
            .iter()
            .filter_map(|r| Some((r.name.to_string(), RateLimiter::direct(r.rate?.quota()))))
            .collect();
        Limits {
            per_client: client_rate.map(|r| RateLimiter::keyed(r.quota())),
            per_route,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one cell for `client`; `Err(seconds)` when it must wait.
    pub fn check_client(&self, client: IpAddr) -> Result<(), u64> {
        match &self.per_client {
            Some(limiter) => limiter.check_key(&client).map_err(|n| self.secs(n)),
            None => Ok(()),
        }
    }

    /// Takes one cell for `route`; `Err(seconds)` when it must wait.
    pub fn check_route(&self, route: &str) -> Result<(), u64> {
        match self.per_route.get(route) {
            Some(limiter) => limiter.check().map_err(|n| self.secs(n)),
            None => Ok(()),
        }
    }

    /// Forgets clients whose limit has fully recovered, so memory follows active clients.
    pub fn forget_idle_clients(&self) {
        if let Some(limiter) = &self.per_client {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    fn secs(&self, not_until: governor::NotUntil<<DefaultClock as Clock>::Instant>) -> u64 {
        let wait = not_until.wait_time_from(self.clock.now());
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    }
}
