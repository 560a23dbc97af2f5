//! Fans stored events out to upstreams: one scheduler per upstream, each with its own
//! concurrency cap, outbound rate and retry policy, so a slow upstream delays nobody else.

mod breaker;
mod by_upstream;
mod client;
mod health;
mod pause;
mod retry;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

pub use breaker::BreakerPolicy;
pub use client::{Client, build_client, build_client_with};
pub use health::Health;
pub use pause::Pauses;
pub use retry::{Decision, Outcome, RetryPolicy, RetryStatuses, parse_retry_after};

use crate::config::units::Rate;
use governor::DefaultDirectRateLimiter;

use crate::store::Store;
use crate::telemetry::metrics::Metrics;
use crate::verify::OutboundSigner;
use by_upstream::ByUpstream;

/// A validated `[upstreams.NAME]` table.
#[derive(Debug)]
pub struct Upstream {
    /// The upstream's name.
    pub name: Arc<str>,
    /// Where events are POSTed.
    pub url: http::Uri,
    /// Time allowed for one attempt.
    pub timeout: Duration,
    /// Outbound requests per period.
    pub rate: Option<Rate>,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// When to try again.
    pub retry: RetryPolicy,
    /// When to stop sending for a while.
    pub breaker: BreakerPolicy,
    /// Signs each delivery with Standard Webhooks headers, when configured.
    pub signer: Option<OutboundSigner>,
    /// Headers of the original request that each delivery carries too.
    pub forward_headers: Vec<http::HeaderName>,
}

/// The running schedulers, one per upstream; [`Dispatcher::reload`] swaps their settings.
#[derive(Debug)]
pub struct Dispatcher {
    wakers: Wakers,
    health: Health,
    pauses: Pauses,
    store: Arc<dyn Store>,
    client: Client,
    grace: Duration,
    metrics: Arc<Metrics>,
    running: HashMap<Arc<str>, Running>,
    tasks: JoinSet<()>,
}

/// One upstream's scheduler: how to stop it, and the ids it has attempts under way for,
/// which outlive a reload so the next scheduler never sends them twice.
#[derive(Debug)]
struct Running {
    stop: watch::Sender<bool>,
    in_flight: Arc<Mutex<HashSet<i64>>>,
    /// The outbound limiter, kept across a reload that leaves the rate as it was, so the
    /// old and new schedulers together never pass it.
    limiter: Option<(Rate, Arc<DefaultDirectRateLimiter>)>,
}

/// Tells schedulers that new work is due; cheap to clone, and follows reloads.
#[derive(Debug, Clone, Default)]
pub struct Wakers(ByUpstream<Notify>);

impl Wakers {
    /// Tells `upstream`'s scheduler that a delivery may be due.
    pub fn wake(&self, upstream: &str) {
        if let Some(wake) = self.0.get(upstream) {
            wake.notify_one();
        }
    }

    /// A fresh waker for a new scheduler of `upstream`: a wake meant for it can then never
    /// be taken by the scheduler it replaces.
    fn renew(&self, upstream: &Arc<str>) -> Arc<Notify> {
        self.0.renew(upstream)
    }
}

impl Dispatcher {
    /// Starts one scheduler per upstream, holding back those `pauses` marks. Attempts under
    /// way get `grace` to finish when a scheduler is stopped.
    pub fn start(
        upstreams: &[Arc<Upstream>],
        pauses: &Pauses,
        store: Arc<dyn Store>,
        client: Client,
        grace: Duration,
        metrics: Arc<Metrics>,
    ) -> Dispatcher {
        let mut dispatcher = Dispatcher {
            wakers: Wakers::default(),
            health: Health::default(),
            pauses: pauses.clone(),
            store,
            client,
            grace,
            metrics,
            running: HashMap::new(),
            tasks: JoinSet::new(),
        };
        dispatcher.reload(upstreams);
        dispatcher
    }

    /// Runs `upstreams` from now on: schedulers of upstreams no longer named stop, the others
    /// restart with their new settings, new ones start. Attempts under way finish.
    pub fn reload(&mut self, upstreams: &[Arc<Upstream>]) {
        let names: Vec<&Arc<str>> = upstreams.iter().map(|u| &u.name).collect();
        self.running.retain(|name, running| {
            let kept = names.contains(&name);
            if !kept {
                let _ = running.stop.send(true);
                self.health.forget(name);
            }
            kept
        });
        for upstream in upstreams {
            let (in_flight, limiter) = match self.running.remove(&upstream.name) {
                Some(old) => {
                    let _ = old.stop.send(true);
                    let same_rate = old.limiter.filter(|(rate, _)| Some(*rate) == upstream.rate);
                    (old.in_flight, same_rate)
                }
                None => (Arc::default(), None),
            };
            let limiter = limiter.or_else(|| {
                let rate = upstream.rate?;
                Some((rate, Arc::new(governor::RateLimiter::direct(rate.quota()))))
            });
            self.spawn(upstream.clone(), in_flight, limiter);
        }
    }

    fn spawn(
        &mut self,
        upstream: Arc<Upstream>,
        in_flight: Arc<Mutex<HashSet<i64>>>,
        limiter: Option<(Rate, Arc<DefaultDirectRateLimiter>)>,
    ) {
        let (stop, stopped) = watch::channel(false);
        let scheduler = worker::Scheduler {
            wake: self.wakers.renew(&upstream.name),
            wakers: self.wakers.clone(),
            beat: self.health.renew(&upstream.name),
            paused: self.pauses.flag(&upstream.name),
            store: self.store.clone(),
            client: self.client.clone(),
            stop: stopped,
            grace: self.grace,
            metrics: self.metrics.clone(),
            in_flight: in_flight.clone(),
            limiter: limiter.as_ref().map(|(_, l)| l.clone()),
            upstream: upstream.clone(),
        };
        self.tasks.spawn(scheduler.run());
        let running = Running {
            stop,
            in_flight,
            limiter,
        };
        self.running.insert(upstream.name.clone(), running);
        while self.tasks.try_join_next().is_some() {}
    }

    /// A handle to the schedulers' signs of life, for readiness.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// A handle to wake the schedulers.
    pub fn wakers(&self) -> Wakers {
        self.wakers.clone()
    }

    /// Stops every scheduler and waits for them, attempts under way included.
    pub async fn shutdown(mut self) {
        for running in self.running.values() {
            let _ = running.stop.send(true);
        }
        while self.tasks.join_next().await.is_some() {}
    }
}
