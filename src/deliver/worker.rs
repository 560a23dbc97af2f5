//! One upstream's scheduler: takes fresh deliveries from its lane and due ones from the
//! store, sends them within the upstream's limits, and records each attempt with the retry
//! policy's decision.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use governor::DefaultDirectRateLimiter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::breaker::{Breaker, Gate};
use super::client::{Client, read_head, request};
use super::health::Beat;
use super::lane::{IDLE_LOOK, Lane};
use super::retry::{Decision, Outcome, parse_retry_after};
use super::{Mailbox, Upstream, Wakers};
use crate::store::{AttemptRecord, DueDelivery, Next, Store, now_ms};
use crate::telemetry::metrics::{Metrics, UpstreamLabel};

/// Pause after the store failed, before trying again.
const STORE_BACKOFF: Duration = Duration::from_secs(1);

pub(super) struct Scheduler {
    pub(super) upstream: Arc<Upstream>,
    pub(super) store: Arc<dyn Store>,
    pub(super) client: Client,
    pub(super) mailbox: Arc<Mailbox>,
    pub(super) wakers: Wakers,
    pub(super) paused: Arc<AtomicBool>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) grace: Duration,
    pub(super) metrics: Arc<Metrics>,
    pub(super) beat: Arc<Beat>,
    pub(super) limiter: Option<Arc<DefaultDirectRateLimiter>>,
    /// One permit per attempt in flight, shared with the scheduler this one replaced when
    /// `concurrency` did not change.
    pub(super) slots: Arc<Semaphore>,
}

struct UnexpectedEnd {
    beat: Arc<Beat>,
    asked: bool,
}

impl Drop for UnexpectedEnd {
    fn drop(&mut self) {
        if !self.asked {
            self.beat.finish();
        }
    }
}

/// What an attempt task shares with its scheduler.
struct Shared {
    upstream: Arc<Upstream>,
    store: Arc<dyn Store>,
    client: Client,
    /// Wakes whichever scheduler serves the upstream now, this one or its successor.
    wakers: Wakers,
    lane: Arc<Lane>,
    breaker: Mutex<Breaker>,
    metrics: Arc<Metrics>,
    /// Answered attempts waiting for their record to be committed, at most `concurrency`.
    recording: Arc<Semaphore>,
}

impl Scheduler {
    pub(super) async fn run(mut self) {
        // Marks the scheduler stopped for readiness if it ends any other way than asked.
        let mut unexpected_end = UnexpectedEnd {
            beat: self.beat.clone(),
            asked: false,
        };
        let shared = Arc::new(Shared {
            upstream: self.upstream.clone(),
            store: self.store.clone(),
            client: self.client.clone(),
            wakers: self.wakers.clone(),
            lane: self.mailbox.lane.clone(),
            breaker: Mutex::new(Breaker::new(self.upstream.breaker)),
            metrics: self.metrics.clone(),
            recording: Arc::new(Semaphore::new(self.upstream.concurrency)),
        });
        let slots = self.slots.clone();
        let limiter = self.limiter.clone();
        let mut attempts = JoinSet::new();

        while !*self.stop.borrow() {
            let wait = self
                .dispatch(&shared, &slots, limiter.as_deref(), &mut attempts)
                .await;
            while attempts.try_join_next().is_some() {}
            tokio::select! {
                _ = self.mailbox.notify.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.changed() => {}
            }
        }

        unexpected_end.asked = true;
        // Deliveries this scheduler claimed but did not start are free again: tell the
        // scheduler that replaced it, if any.
        self.wakers.wake(&self.upstream.name);
        let left = attempts.len();
        if tokio::time::timeout(self.grace, attempts.join_all())
            .await
            .is_err()
        {
            tracing::warn!(upstream = %self.upstream.name, left,
                "attempts cut off as the scheduler stopped (shutdown or reload); \
                 their deliveries will be sent again");
        }
    }

    /// Starts every due delivery there is room for, fresh ones from the lane first; returns
    /// how long to sleep at most.
    async fn dispatch(
        &self,
        shared: &Arc<Shared>,
        slots: &Arc<Semaphore>,
        limiter: Option<&DefaultDirectRateLimiter>,
        attempts: &mut JoinSet<()>,
    ) -> Duration {
        let lane = &shared.lane;
        loop {
            if super::pause::raised(&self.paused) {
                // Resuming wakes the scheduler.
                return IDLE_LOOK;
            }
            let free = slots.available_permits();
            if free == 0 {
                // A finishing attempt wakes the scheduler.
                return IDLE_LOOK;
            }
            if let Some(wait) = shared.held_by_breaker() {
                return wait;
            }
            let fresh = lane.take_fresh(free);
            let from_store = fresh.is_empty();
            let claimed = if from_store {
                let now = now_ms();
                if !lane.take_look(now) {
                    return lane.wait(now);
                }
                match self.read_due(shared, free).await {
                    Some(due) => due,
                    None => return STORE_BACKOFF,
                }
            } else {
                fresh
            };
            let full = claimed.len() == free;
            let mut queue = claimed.into_iter();
            let held = self
                .start_attempts(&mut queue, shared, slots, limiter, attempts)
                .await;
            lane.give_back(queue.map(|d| d.id));
            if let Some(wait) = held {
                return wait;
            }
            if from_store {
                if full {
                    // There may be more: read again once there is room.
                    lane.look_now();
                } else {
                    self.until_next_due(shared).await;
                }
            }
        }
    }

    /// Reads up to `most` due deliveries from the store and claims them; `None` when the
    /// store cannot be read.
    async fn read_due(&self, shared: &Shared, most: usize) -> Option<Vec<DueDelivery>> {
        let skip = shared.lane.claimed_ids();
        let name = &self.upstream.name;
        let busy = self.beat.busy();
        let due = self.store.due(name, now_ms(), most, &skip).await;
        drop(busy);
        match due {
            // Claimed at once, so a scheduler that replaces this one after a reload never
            // fetches them too; given back if not started.
            Ok(due) => Some(shared.lane.claim(due)),
            Err(error) => {
                tracing::warn!(upstream = %name, %error, "cannot read the delivery queue");
                shared.lane.look_now();
                None
            }
        }
    }

    /// Starts attempts for claimed deliveries in turn, within the breaker, the rate and the
    /// free slots; returns how long to hold off when it stops early.
    async fn start_attempts(
        &self,
        queue: &mut std::vec::IntoIter<DueDelivery>,
        shared: &Arc<Shared>,
        slots: &Arc<Semaphore>,
        limiter: Option<&DefaultDirectRateLimiter>,
        attempts: &mut JoinSet<()>,
    ) -> Option<Duration> {
        for delivery in queue.by_ref() {
            if let Some(limiter) = limiter {
                limiter.until_ready().await;
            }
            if *self.stop.borrow() || super::pause::raised(&self.paused) {
                shared.lane.give_back([delivery.id]);
                return Some(IDLE_LOOK);
            }
            // The breaker is asked last, once nothing else can hold the attempt back: a
            // probe it hands out must be made.
            let now = Instant::now();
            let gate = shared.lock_breaker().gate(now);
            let hold = match gate {
                Gate::Pass | Gate::Probe => None,
                Gate::HoldUntil(until) => Some(until - now),
                // The probe's outcome wakes the scheduler.
                Gate::HoldForProbe => Some(IDLE_LOOK),
            };
            if let Some(wait) = hold {
                shared.lane.give_back([delivery.id]);
                return Some(wait);
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                if gate == Gate::Probe {
                    shared.lock_breaker().unprobe(Instant::now());
                }
                shared.lane.give_back([delivery.id]);
                return None;
            };
            let probe = gate == Gate::Probe;
            attempts.spawn(attempt(shared.clone(), delivery, permit, probe));
            if probe {
                return Some(IDLE_LOOK);
            }
        }
        None
    }

    /// Tells the lane when the store's next pending delivery falls due.
    async fn until_next_due(&self, shared: &Shared) {
        let skip = shared.lane.claimed_ids();
        let busy = self.beat.busy();
        let next = self.store.next_due(&self.upstream.name, &skip).await;
        drop(busy);
        match next {
            Ok(Some(at)) => shared.lane.look_by(at),
            Ok(None) => {}
            Err(_) => shared
                .lane
                .look_by(now_ms() + STORE_BACKOFF.as_millis() as i64),
        }
    }
}

impl Shared {
    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // Plain state; no code panics while holding it.
        self.breaker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long to hold all attempts while the breaker is open, if it is.
    fn held_by_breaker(&self) -> Option<Duration> {
        let now = Instant::now();
        match self.lock_breaker().peek(now) {
            Gate::Pass | Gate::Probe => None,
            Gate::HoldUntil(until) => Some(until - now),
            Gate::HoldForProbe => Some(IDLE_LOOK),
        }
    }
}

/// A delivery claimed by an attempt task. Dropped before it is settled, as when a stopping
/// scheduler cuts off its attempts, it gives the delivery back, to be sent again.
struct Claim<'a> {
    shared: &'a Shared,
    id: i64,
    settled: bool,
}

impl Claim<'_> {
    /// The attempt's record is settled: the delivery is no longer claimed.
    fn settle(mut self) {
        self.settled = true;
        self.shared.lane.finish(self.id);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.lane.give_back([self.id]);
            self.shared.wakers.nudge(&self.shared.upstream.name);
        }
    }
}

/// What one attempt came to.
struct Tried {
    next: Next,
    status: Option<u16>,
    latency_ms: i64,
    error: Option<String>,
    head: Vec<u8>,
}

/// Sends one attempt, frees its slot, and records it. A `probe` is the one attempt an open
/// breaker lets through.
async fn attempt(
    shared: Arc<Shared>,
    delivery: DueDelivery,
    permit: OwnedSemaphorePermit,
    probe: bool,
) {
    let claim = Claim {
        shared: &shared,
        id: delivery.id,
        settled: false,
    };
    let upstream = &shared.upstream;
    let number = delivery.attempts + 1;
    let started_at = now_ms();
    let age = Duration::from_millis((started_at - delivery.received_at).max(0) as u64);
    let tried = if upstream.retry.too_old(age) {
        // Held past its age (an open breaker, a pause, a backlog): no attempt is made, and a
        // probe goes to the next delivery instead.
        if probe {
            shared.lock_breaker().unprobe(Instant::now());
        }
        let error = Some("not sent: max_age reached before this attempt".to_owned());
        let decision = Decision::GiveUp("max_age reached");
        let next = log_decision(upstream, &delivery, number, None, 0, &error, decision);
        Tried {
            next,
            status: None,
            latency_ms: 0,
            error,
            head: Vec::new(),
        }
    } else {
        send_and_decide(&shared, &delivery, number, age).await
    };
    count_attempt(
        &shared.metrics,
        upstream,
        &delivery,
        tried.latency_ms,
        tried.next,
    );

    // The upstream's slot is free once it has answered, so the next attempt need not wait
    // for this one's commit. The delivery stays claimed until its record is on disk, so it
    // is not fetched again meanwhile.
    let recording = shared.recording.clone().acquire_owned().await;
    drop(permit);
    shared.wakers.nudge(&shared.upstream.name);

    let next = tried.next;
    let record = AttemptRecord {
        delivery_id: delivery.id,
        attempt: number,
        at: started_at,
        status: tried.status,
        latency_ms: tried.latency_ms,
        error: tried.error,
        response_head: tried.head,
        next,
    };
    match shared.store.record(record).await {
        Ok(()) => {
            if let Next::RetryAt(at) = next {
                shared.lane.look_by(at);
            }
        }
        Err(error) => {
            // The delivery stays pending and is sent again: at least once, never lost.
            tracing::error!(upstream = %upstream.name, event_id = %delivery.event_id, %error,
                "cannot record a delivery attempt");
            tokio::time::sleep(STORE_BACKOFF).await;
            shared.lane.look_now();
        }
    }

    claim.settle();
    drop(recording);
    shared.wakers.nudge(&shared.upstream.name);
}

/// Sends the request, asks the retry policy what comes next, and tells the breaker.
async fn send_and_decide(
    shared: &Shared,
    delivery: &DueDelivery,
    number: u32,
    age: Duration,
) -> Tried {
    let upstream = &shared.upstream;
    let started = Instant::now();
    let (outcome, status, error, head) = send(shared, delivery, number).await;
    let latency_ms = started.elapsed().as_millis() as i64;
    let decision = upstream
        .retry
        .decide(outcome, number, age, rand::random::<f64>());
    let next = log_decision(
        upstream, delivery, number, status, latency_ms, &error, decision,
    );
    let healthy = match outcome {
        Outcome::NoAnswer => false,
        Outcome::Status { code, .. } => !upstream.retry.statuses.retries(code),
    };
    if let Some(cooldown) = shared.lock_breaker().record(healthy, Instant::now()) {
        let cooldown_ms = cooldown.as_millis() as u64;
        tracing::warn!(upstream = %upstream.name, cooldown_ms, "circuit open: attempts held");
    }
    Tried {
        next,
        status,
        latency_ms,
        error,
        head,
    }
}

type Sent = (Outcome, Option<u16>, Option<String>, Vec<u8>);

async fn send(shared: &Shared, delivery: &DueDelivery, number: u32) -> Sent {
    let upstream = &shared.upstream;
    let request = match request(upstream, delivery, number) {
        Ok(request) => request,
        Err(e) => {
            return (
                Outcome::NoAnswer,
                None,
                Some(format!("request: {e}")),
                Vec::new(),
            );
        }
    };
    let answer = tokio::time::timeout(upstream.timeout, async {
        let response = shared.client.request(request).await?;
        let (parts, body) = response.into_parts();
        Ok::<_, hyper_util::client::legacy::Error>((parts, read_head(body).await))
    })
    .await;
    match answer {
        Err(_) => (
            Outcome::NoAnswer,
            None,
            Some("timed out".into()),
            Vec::new(),
        ),
        Ok(Err(e)) => (Outcome::NoAnswer, None, Some(error_chain(&e)), Vec::new()),
        Ok(Ok((parts, head))) => {
            let retry_after = parts
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let code = parts.status.as_u16();
            let error = (!parts.status.is_success()).then(|| format!("status {code}"));
            (
                Outcome::Status { code, retry_after },
                Some(code),
                error,
                head,
            )
        }
    }
}

fn log_decision(
    upstream: &Upstream,
    delivery: &DueDelivery,
    attempt: u32,
    status: Option<u16>,
    latency_ms: i64,
    error: &Option<String>,
    decision: Decision,
) -> Next {
    let (name, event_id, route) = (&*upstream.name, &*delivery.event_id, &*delivery.route);
    let error = error.as_deref().unwrap_or("");
    match decision {
        Decision::Done => {
            tracing::info!(
                upstream = name,
                route,
                event_id,
                attempt,
                status,
                latency_ms,
                "delivered"
            );
            Next::Delivered
        }
        Decision::Retry(after) => {
            let retry_in_ms = after.as_millis() as u64;
            tracing::warn!(
                upstream = name,
                route,
                event_id,
                attempt,
                status,
                latency_ms,
                error,
                retry_in_ms,
                "delivery failed, retry scheduled"
            );
            Next::RetryAt(now_ms() + retry_in_ms as i64)
        }
        Decision::GiveUp(reason) => {
            tracing::error!(
                upstream = name,
                route,
                event_id,
                attempt,
                status,
                latency_ms,
                error,
                reason,
                "delivery dead"
            );
            Next::Dead
        }
    }
}

fn count_attempt(
    metrics: &Metrics,
    upstream: &Upstream,
    delivery: &DueDelivery,
    ms: i64,
    next: Next,
) {
    let outcome = match next {
        Next::Delivered => "delivered",
        Next::RetryAt(_) => "retry",
        Next::Dead => "dead",
    };
    metrics.attempt(&upstream.name, outcome, ms as f64 / 1_000.0);
    if next == Next::Delivered {
        let labels = UpstreamLabel {
            upstream: upstream.name.to_string(),
        };
        let waited = (now_ms() - delivery.received_at).max(0) as f64 / 1_000.0;
        metrics
            .delivery_seconds
            .get_or_create(&labels)
            .observe(waited);
    }
}

/// An error with its causes, `outer: inner: innermost`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
