//! Rate limits in layers, all `governor`: per client before the body is read, then, once a
//! request has proved itself, per route and for the whole gateway. A refusal says how long
//! to wait.
//!
//! The per-client table is bounded: it holds at most [`MAX_TRACKED_CLIENTS`] keys, idle
//! ones are swept out, and while it is full every client not already in it shares one
//! overflow key. A flood from a million addresses therefore costs a fixed amount of memory
//! and slows only the newcomers, never the clients already known.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock, QuantaInstant};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{DefaultDirectRateLimiter, RateLimiter};

use crate::config::units::Rate;
use crate::route::Route;

/// Most clients the per-client limiter remembers at once.
pub(super) const MAX_TRACKED_CLIENTS: usize = 100_000;

/// What the per-client limiter counts under: an IPv4 address, an IPv6 /64 prefix (one
/// subscriber's network, which it can fill with addresses at will), or the shared key of
/// clients that arrived while the table was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum ClientKey {
    /// One IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
    /// Everyone not in the table while it is full.
    Overflow,
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(u32::from(v4)),
                None => ClientKey::V6(prefix64(v6)),
            },
        }
    }
}

fn prefix64(v6: Ipv6Addr) -> u64 {
    (u128::from(v6) >> 64) as u64
}

/// The per-client state: a map with a ceiling on its size.
#[derive(Debug)]
pub(super) struct ClientTable {
    states: DashMap<ClientKey, InMemoryState>,
    capacity: usize,
    /// Clients refused a slot of their own since the last sweep, for the log.
    overflowed: Arc<AtomicU64>,
}

impl ClientTable {
    fn with_capacity(capacity: usize, overflowed: Arc<AtomicU64>) -> ClientTable {
        ClientTable {
            states: DashMap::new(),
            capacity,
            overflowed,
        }
    }
}

impl StateStore for ClientTable {
    type Key = ClientKey;

    fn measure_and_replace<T, F, E>(&self, key: &ClientKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(state) = self.states.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        // One place stays for the overflow key itself.
        let key = if self.states.len() + 1 >= self.capacity {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            ClientKey::Overflow
        } else {
            *key
        };
        let state = self.states.entry(key).or_default();
        state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<ClientKey> for ClientTable {
    fn retain_recent(&self, drop_below: Nanos) {
        self.states.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        self.states.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.states.len()
    }

    fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

type ClientLimiter =
    RateLimiter<ClientKey, ClientTable, DefaultClock, NoOpMiddleware<QuantaInstant>>;

/// The limiters of one configuration.
#[derive(Debug)]
pub struct Limits {
    per_client: Option<ClientLimiter>,
    per_route: HashMap<String, DefaultDirectRateLimiter>,
    global: Option<DefaultDirectRateLimiter>,
    overflowed: Arc<AtomicU64>,
    clock: DefaultClock,
}

impl Limits {
    /// Limiters for `client_rate`, `global_rate` and each route's `rate`.
    pub fn new(
        client_rate: Option<Rate>,
        global_rate: Option<Rate>,
        routes: &[std::sync::Arc<Route>],
    ) -> Limits {
        Limits::with_client_capacity(client_rate, global_rate, routes, MAX_TRACKED_CLIENTS)
    }

    fn with_client_capacity(
        client_rate: Option<Rate>,
        global_rate: Option<Rate>,
        routes: &[std::sync::Arc<Route>],
        capacity: usize,
    ) -> Limits {
        let per_route = routes
            .iter()
            .filter_map(|r| Some((r.name.to_string(), RateLimiter::direct(r.rate?.quota()))))
            .collect();
        let clock = DefaultClock::default();
        let overflowed = Arc::new(AtomicU64::new(0));
        let table = || ClientTable::with_capacity(capacity, overflowed.clone());
        Limits {
            per_client: client_rate.map(|r| RateLimiter::new(r.quota(), table(), clock.clone())),
            per_route,
            global: global_rate.map(|r| RateLimiter::direct(r.quota())),
            overflowed: overflowed.clone(),
            clock,
        }
    }

    /// Takes one cell for `client`; `Err(seconds)` when it must wait.
    pub fn check_client(&self, client: IpAddr) -> Result<(), u64> {
        match &self.per_client {
            Some(limiter) => limiter
                .check_key(&ClientKey::from(client))
                .map_err(|n| self.secs(n)),
            None => Ok(()),
        }
    }

    /// Takes one cell for `route`, then one from the gateway-wide limit; `Err((which,
    /// seconds))` when it must wait.
    pub fn check_verified(&self, route: &str) -> Result<(), (&'static str, u64)> {
        if let Some(limiter) = self.per_route.get(route) {
            limiter.check().map_err(|n| ("route", self.secs(n)))?;
        }
        if let Some(limiter) = &self.global {
            limiter.check().map_err(|n| ("global", self.secs(n)))?;
        }
        Ok(())
    }

    /// Forgets clients whose limit has fully recovered, so memory follows active clients.
    /// Returns how many are still tracked.
    pub fn forget_idle_clients(&self) -> usize {
        let Some(limiter) = &self.per_client else {
            return 0;
        };
        limiter.retain_recent();
        limiter.shrink_to_fit();
        let overflowed = self.overflowed.swap(0, Ordering::Relaxed);
        if overflowed > 0 {
            tracing::warn!(
                overflowed,
                tracked = limiter.len(),
                "client table full: new clients shared one limit"
            );
        }
        limiter.len()
    }

    fn secs(&self, not_until: governor::NotUntil<<DefaultClock as Clock>::Instant>) -> u64 {
        let wait = not_until.wait_time_from(self.clock.now());
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;

    fn rate(text: &str) -> Option<Rate> {
        Some(Rate::parse(text).unwrap())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_flood_of_addresses_fills_the_table_only_to_its_ceiling() {
        let limits = Limits::with_client_capacity(rate("2/m"), None, &[], 1_000);
        let regular = ip("192.0.2.1");
        assert!(limits.check_client(regular).is_ok());

        for n in 0..50_000u32 {
            let _ = limits.check_client(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)));
        }
        let client = limits.per_client.as_ref().unwrap();
        assert!(client.len() <= 1_000, "{} keys tracked", client.len());

        // The client known before the flood keeps its own allowance: one request left.
        assert!(limits.check_client(regular).is_ok());
        assert!(limits.check_client(regular).is_err());
        // Newcomers share the overflow key, whose allowance the flood spent.
        assert!(limits.check_client(ip("198.51.100.7")).is_err());
    }

    #[test]
    fn sweeping_forgets_clients_whose_allowance_has_recovered() {
        let limits = Limits::with_client_capacity(rate("1000/s"), None, &[], 1_000);
        for n in 0..500u32 {
            limits
                .check_client(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)))
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(limits.forget_idle_clients(), 0);
    }

    #[test]
    fn one_ipv6_subscriber_network_is_one_client() {
        let limits = Limits::with_client_capacity(rate("2/m"), None, &[], 1_000);
        assert!(limits.check_client(ip("2001:db8:1:2::1")).is_ok());
        assert!(limits.check_client(ip("2001:db8:1:2:ffff::9")).is_ok());
        assert_eq!(limits.check_client(ip("2001:db8:1:2:abcd::5")), Err(30));
        // The next /64 is someone else.
        assert!(limits.check_client(ip("2001:db8:1:3::1")).is_ok());
        // An IPv4-mapped address counts as the IPv4 client.
        assert!(limits.check_client(ip("192.0.2.9")).is_ok());
        assert!(limits.check_client(ip("::ffff:192.0.2.9")).is_ok());
        assert!(limits.check_client(ip("192.0.2.9")).is_err());
    }

    #[test]
    fn the_global_limit_counts_every_route_together() {
        let limits = Limits::with_client_capacity(None, rate("3/m"), &[], 1_000);
        assert!(limits.check_verified("a").is_ok());
        assert!(limits.check_verified("b").is_ok());
        assert!(limits.check_verified("c").is_ok());
        assert_eq!(limits.check_verified("a"), Err(("global", 20)));
    }
}
