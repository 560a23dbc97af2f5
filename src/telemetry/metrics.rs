//! The gateway's Prometheus metrics. Labels stay low-cardinality: route, upstream, outcome,
//! reason, state; never an event id or a client address.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of per-route series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOutcome {
    /// The route's name, or `none` when no route matched.
    pub route: String,
    /// `accepted`, `duplicate`, or the error code of the answer.
    pub outcome: String,
}

/// Labels of verification failures.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteReason {
    /// The route's name.
    pub route: String,
    /// A fixed reason such as `mismatch` or `stale`.
    pub reason: String,
}

/// Labels of per-route series without an outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// The route's name.
    pub route: String,
}

/// Labels of per-upstream series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamOutcome {
    /// The upstream's name.
    pub upstream: String,
    /// `delivered`, `retry` or `dead`.
    pub outcome: String,
}

/// Labels of per-upstream series without an outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabel {
    /// The upstream's name.
    pub upstream: String,
}

/// Labels of the queue depth.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamState {
    /// The upstream's name.
    pub upstream: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every series the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    /// Requests by route and outcome.
    pub requests: Family<RouteOutcome, Counter>,
    /// Verification failures by route and reason.
    pub verify_failures: Family<RouteReason, Counter>,
    /// Duplicates answered `200`.
    pub duplicates: Family<RouteLabel, Counter>,
    /// Requests refused by a rate limit, by route and limiter (`client` or `route`).
    pub limited: Family<RouteOutcome, Counter>,
    /// JSON bodies without the dedup value, keyed on the body hash instead.
    pub dedup_fallbacks: Family<RouteLabel, Counter>,
    /// The gateway's clock minus the sender's signed timestamp, on accepted requests.
    pub clock_skew: HistogramFamily<RouteLabel>,
    /// Delivery attempts by upstream and outcome.
    pub attempts: Family<UpstreamOutcome, Counter>,
    /// Time of one attempt.
    pub attempt_seconds: HistogramFamily<UpstreamLabel>,
    /// Time from acceptance to delivery.
    pub delivery_seconds: HistogramFamily<UpstreamLabel>,
    /// Deliveries by upstream and state, refreshed at each scrape.
    pub queue: Family<UpstreamState, Gauge>,
    /// Time of one store commit: a group of requests, one sync to disk.
    pub commit_seconds: Histogram,
    /// Requests in one store commit.
    pub commit_requests: Histogram,
}

fn skew_histogram() -> Histogram {
    Histogram::new([-300.0, -60.0, -10.0, -1.0, 0.0, 1.0, 10.0, 60.0, 300.0])
}

fn attempt_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

fn commit_seconds_histogram() -> Histogram {
    Histogram::new([
        0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
    ])
}

fn commit_requests_histogram() -> Histogram {
    Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0])
}

fn delivery_histogram() -> Histogram {
    Histogram::new([
        0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3_600.0, 86_400.0,
    ])
}

impl Metrics {
    /// Creates the series and registers them under `hookgate_`.
    pub fn new(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            requests: Family::default(),
            verify_failures: Family::default(),
            duplicates: Family::default(),
            limited: Family::default(),
            dedup_fallbacks: Family::default(),
            clock_skew: Family::new_with_constructor(skew_histogram),
            attempts: Family::default(),
            attempt_seconds: Family::new_with_constructor(attempt_histogram),
            delivery_seconds: Family::new_with_constructor(delivery_histogram),
            queue: Family::default(),
            commit_seconds: commit_seconds_histogram(),
            commit_requests: commit_requests_histogram(),
        };
        let m = &metrics;
        let r = registry;
        r.register(
            "hookgate_requests",
            "Requests by route and outcome",
            m.requests.clone(),
        );
        r.register(
            "hookgate_verify_failures",
            "Verification failures by reason",
            m.verify_failures.clone(),
        );
        r.register(
            "hookgate_duplicates",
            "Duplicates answered 200",
            m.duplicates.clone(),
        );
        r.register(
            "hookgate_limited",
            "Requests refused by a rate limit",
            m.limited.clone(),
        );
        r.register(
            "hookgate_dedup_fallbacks",
            "JSON bodies keyed on their hash",
            m.dedup_fallbacks.clone(),
        );
        r.register(
            "hookgate_clock_skew_seconds",
            "Gateway clock minus signed timestamp",
            m.clock_skew.clone(),
        );
        r.register(
            "hookgate_delivery_attempts",
            "Delivery attempts by outcome",
            m.attempts.clone(),
        );
        r.register(
            "hookgate_attempt_seconds",
            "Duration of one delivery attempt",
            m.attempt_seconds.clone(),
        );
        r.register(
            "hookgate_delivery_seconds",
            "Time from acceptance to delivery",
            m.delivery_seconds.clone(),
        );
        r.register(
            "hookgate_queue_deliveries",
            "Deliveries by upstream and state",
            m.queue.clone(),
        );
        r.register(
            "hookgate_store_commit_seconds",
            "Duration of one store commit, its sync to disk included",
            m.commit_seconds.clone(),
        );
        r.register(
            "hookgate_store_commit_requests",
            "Requests committed together in one store commit",
            m.commit_requests.clone(),
        );
        metrics
    }

    /// Counts one store commit of `requests` that took `took`.
    pub fn commit(&self, requests: usize, took: std::time::Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
        self.commit_requests.observe(requests as f64);
    }

    /// Counts one answered request.
    pub fn request(&self, route: &str, outcome: &str) {
        let labels = RouteOutcome {
            route: route.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts one attempt and its duration.
    pub fn attempt(&self, upstream: &str, outcome: &str, seconds: f64) {
        let labels = UpstreamOutcome {
            upstream: upstream.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.attempts.get_or_create(&labels).inc();
        let upstream = UpstreamLabel {
            upstream: upstream.to_owned(),
        };
        self.attempt_seconds
            .get_or_create(&upstream)
            .observe(seconds);
    }
}
