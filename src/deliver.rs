//! Fans stored events out to upstreams: one scheduler per upstream, each with its own
//! concurrency cap, outbound rate and retry policy, so a slow upstream delays nobody else.

mod breaker;
mod client;
mod pause;
mod retry;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

pub use breaker::BreakerPolicy;
pub use client::{Client, build_client, build_client_with};
pub use pause::Pauses;
pub use retry::{Decision, Outcome, RetryPolicy, RetryStatuses, parse_retry_after};

use crate::config::units::Rate;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;
use crate::verify::OutboundSigner;

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
}

/// The running schedulers.
#[derive(Debug)]
pub struct Dispatcher {
    wakers: Wakers,
    tasks: JoinSet<()>,
}

/// Tells schedulers that new work is due; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Wakers(Arc<HashMap<Arc<str>, Arc<Notify>>>);

impl Wakers {
    /// Tells `upstream`'s scheduler that a delivery may be due.
    pub fn wake(&self, upstream: &str) {
        if let Some(wake) = self.0.get(upstream) {
            wake.notify_one();
        }
    }
}

impl Dispatcher {
    /// Starts one scheduler per upstream, holding back those `pauses` marks. They stop when
    /// `stop` turns true, letting attempts under way finish within `grace`.
    pub fn start(
        upstreams: &[Arc<Upstream>],
        pauses: &Pauses,
        store: Arc<dyn Store>,
        client: Client,
        stop: watch::Receiver<bool>,
        grace: Duration,
        metrics: Arc<Metrics>,
    ) -> Dispatcher {
        let mut wakers = HashMap::new();
        let mut tasks = JoinSet::new();
        for upstream in upstreams {
            let wake = Arc::new(Notify::new());
            wakers.insert(upstream.name.clone(), wake.clone());
            let scheduler = worker::Scheduler {
                upstream: upstream.clone(),
                store: store.clone(),
                client: client.clone(),
                wake,
                paused: pauses.flag(&upstream.name),
                stop: stop.clone(),
                grace,
                metrics: metrics.clone(),
            };
            tasks.spawn(scheduler.run());
        }
        Dispatcher {
            wakers: Wakers(Arc::new(wakers)),
            tasks,
        }
    }

    /// A handle to wake the schedulers.
    pub fn wakers(&self) -> Wakers {
        self.wakers.clone()
    }

    /// Waits for every scheduler to stop (after `stop` was signalled).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}
