//! Fans stored events out to upstreams: one scheduler per upstream, each with its own
//! concurrency cap, outbound rate and retry policy, so a slow upstream delays nobody else.

mod breaker;
mod by_upstream;
mod client;
mod health;
mod lane;
mod pause;
mod retry;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

pub use breaker::BreakerPolicy;
pub use client::{Client, build_client, build_client_with};
pub use health::Health;
pub use pause::Pauses;
pub use retry::{Decision, Outcome, RetryPolicy, RetryStatuses, parse_retry_after};

use crate::config::units::Rate;
use governor::DefaultDirectRateLimiter;

use crate::store::{Committed, DueDelivery, Store};
use crate::telemetry::metrics::Metrics;
use crate::verify::OutboundSigner;
use by_upstream::ByUpstream;
use lane::Lane;

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

/// One upstream's scheduler: how to stop it, and its lane, which outlives a reload so the
/// next scheduler never sends a claimed delivery twice.
#[derive(Debug)]
struct Running {
    stop: watch::Sender<bool>,
    lane: Arc<Lane>,
    /// The outbound limiter, kept across a reload that leaves the rate as it was, so the
    /// old and new schedulers together never pass it.
    limiter: Option<(Rate, Arc<DefaultDirectRateLimiter>)>,
    /// The slots for attempts in flight, kept across a reload that leaves `concurrency` as
    /// it was, so attempts the old scheduler still has under way count against the new one.
    slots: (usize, Arc<Semaphore>),
}

/// Tells schedulers that new work is due, and hands them deliveries as their events are
/// committed; cheap to clone, and follows reloads.
#[derive(Debug, Clone, Default)]
pub struct Wakers(ByUpstream<Mailbox>);

/// The way in to one upstream's scheduler: the waker of the scheduler serving it now, and
/// the upstream's lane.
#[derive(Debug)]
struct Mailbox {
    notify: Notify,
    lane: Arc<Lane>,
}

impl Wakers {
    /// Tells `upstream`'s scheduler that deliveries may be due in the store.
    pub fn wake(&self, upstream: &str) {
        if let Some(mailbox) = self.0.get(upstream) {
            mailbox.lane.look_now();
            mailbox.notify.notify_one();
        }
    }

    /// Tells `upstream`'s scheduler that a slot came free.
    fn nudge(&self, upstream: &str) {
        if let Some(mailbox) = self.0.get(upstream) {
            mailbox.notify.notify_one();
        }
    }

    /// A fresh mailbox for a new scheduler of `upstream` on `lane`: a wake meant for it can
    /// then never be taken by the scheduler it replaces.
    fn renew(&self, upstream: &Arc<str>, lane: Arc<Lane>) -> Arc<Mailbox> {
        let mailbox = Mailbox {
            notify: Notify::new(),
            lane,
        };
        self.0.insert(upstream.clone(), mailbox)
    }

    fn forget(&self, upstream: &str) {
        self.0.remove(upstream);
    }
}

impl Committed for Wakers {
    fn pending(&self, upstream: &str, delivery: DueDelivery) {
        if let Some(mailbox) = self.0.get(upstream) {
            mailbox.lane.hand_over(delivery);
            mailbox.notify.notify_one();
        }
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
        let sink: Arc<dyn Committed> = Arc::new(dispatcher.wakers.clone());
        dispatcher.store.on_commit(sink);
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
                self.wakers.forget(name);
                self.pauses.forget(name);
            }
            kept
        });
        for upstream in upstreams {
            let (lane, limiter, slots) = match self.running.remove(&upstream.name) {
                Some(old) => {
                    let _ = old.stop.send(true);
                    let same_rate = old.limiter.filter(|(rate, _)| Some(*rate) == upstream.rate);
                    let same_slots = Some(old.slots).filter(|(n, _)| *n == upstream.concurrency);
                    (old.lane, same_rate, same_slots)
                }
                None => (Arc::default(), None, None),
            };
            let limiter = limiter.or_else(|| {
                let rate = upstream.rate?;
                Some((rate, Arc::new(governor::RateLimiter::direct(rate.quota()))))
            });
            let slots = slots.unwrap_or_else(|| {
                let n = upstream.concurrency;
                (n, Arc::new(Semaphore::new(n)))
            });
            self.spawn(upstream.clone(), lane, limiter, slots);
        }
    }

    fn spawn(
        &mut self,
        upstream: Arc<Upstream>,
        lane: Arc<Lane>,
        limiter: Option<(Rate, Arc<DefaultDirectRateLimiter>)>,
        slots: (usize, Arc<Semaphore>),
    ) {
        let (stop, stopped) = watch::channel(false);
        lane.start(upstream.concurrency);
        let scheduler = worker::Scheduler {
            mailbox: self.wakers.renew(&upstream.name, lane.clone()),
            wakers: self.wakers.clone(),
            beat: self.health.renew(&upstream.name),
            paused: self.pauses.flag(&upstream.name),
            store: self.store.clone(),
            client: self.client.clone(),
            stop: stopped,
            grace: self.grace,
            metrics: self.metrics.clone(),
            limiter: limiter.as_ref().map(|(_, l)| l.clone()),
            slots: slots.1.clone(),
            upstream: upstream.clone(),
        };
        self.tasks.spawn(scheduler.run());
        let running = Running {
            stop,
            lane,
            limiter,
            slots,
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
