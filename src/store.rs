//! Durable state: accepted events, dedup keys, and the delivery queue.
//!
//! [`Store`] is the whole interface the other stages see; [`sqlite`] is the embedded
//! implementation. Everything acknowledged to a sender has passed through
//! [`Store::accept`], which returns only once the event is on disk.

pub mod inspect;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use inspect::{
    DeliveryQuery, DeliveryView, EventDetail, EventQuery, EventSummary, RetriedAll, RetryFilter,
    RetryOne,
};

/// An event that passed verification, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The route it arrived on.
    pub route: Arc<str>,
    /// Its dedup key, unique per route inside `window`.
    pub dedup_key: String,
    /// How long the key is remembered.
    pub window: Duration,
    /// Milliseconds since the Unix epoch.
    pub received_at: i64,
    /// The request headers as a JSON object, credentials already redacted.
    pub headers: String,
    /// The request's `Content-Type`, forwarded as is.
    pub content_type: Option<String>,
    /// The body bytes exactly as received.
    pub body: Bytes,
    /// The client address the gateway believes.
    pub client_ip: String,
    /// `https` or `http`: how the request reached the gateway.
    pub proto: &'static str,
    /// The upstreams that get a delivery.
    pub upstreams: Vec<Arc<str>>,
}

/// The outcome of [`Store::accept`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The event's id; for a duplicate, the id of the event first accepted.
    pub id: String,
    /// Whether the dedup key was already taken inside the window.
    pub duplicate: bool,
    /// The new deliveries' ids, one per upstream in the event's order; none for a duplicate.
    pub deliveries: Vec<i64>,
}

/// A delivery whose time has come, with what is needed to send it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// The delivery's id.
    pub id: i64,
    /// The event it carries.
    pub event_id: String,
    /// The route the event arrived on.
    pub route: String,
    /// Attempts already made.
    pub attempts: u32,
    /// When the event was accepted, in milliseconds since the Unix epoch.
    pub received_at: i64,
    /// The body as received.
    pub body: Bytes,
    /// The original `Content-Type`.
    pub content_type: Option<String>,
    /// The client address, for `X-Forwarded-For`.
    pub client_ip: String,
    /// The original scheme, for `X-Forwarded-Proto`.
    pub proto: String,
    /// The request's headers as stored: a JSON object, credentials redacted.
    pub headers: String,
}

/// What one attempt came to, and what happens to the delivery next.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The delivery.
    pub delivery_id: i64,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// When it started, in milliseconds since the Unix epoch.
    pub at: i64,
    /// The upstream's status, if it answered.
    pub status: Option<u16>,
    /// How long the attempt took.
    pub latency_ms: i64,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The first bytes of the upstream's answer.
    pub response_head: Vec<u8>,
    /// The delivery's next state.
    pub next: Next,
}

/// A delivery's state after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The upstream acknowledged it.
    Delivered,
    /// Try again at this time (milliseconds since the Unix epoch).
    RetryAt(i64),
    /// No more attempts: a dead letter.
    Dead,
}

/// What one purge pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Expired dedup keys.
    pub dedup_keys: u64,
    /// Delivered events, with their deliveries and attempts.
    pub events: u64,
}

/// How many deliveries to one upstream are in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// The upstream.
    pub upstream: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// How many.
    pub count: i64,
}

/// A store failure. The caller answers `503`: nothing was half-stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("store: {0}")]
    Database(String),
    /// The store is shut down or its writer has stopped.
    #[error("store: unavailable")]
    Unavailable,
}

/// Told of each new delivery once its event is committed and before its sender is
/// answered, so the delivery stage can start on it without reading back what was just
/// written. The store stays the queue's truth: a delivery handed over is pending there too.
pub trait Committed: Send + Sync + std::fmt::Debug + 'static {
    /// `delivery`, to `upstream`, is now pending in the store.
    fn pending(&self, upstream: &str, delivery: DueDelivery);
}

/// The durable state behind the gateway.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// From now on, tells `sink` of every delivery an accepted event creates.
    fn on_commit(&self, sink: Arc<dyn Committed>);

    /// Claims the dedup key and stores the event with one pending delivery per upstream,
    /// in one durable transaction; returns once it is on disk.
    async fn accept(&self, event: NewEvent) -> Result<Accepted, StoreError>;

    /// Up to `limit` pending deliveries to `upstream` due by `now`, oldest first, leaving out
    /// the ids in `skip` (attempts already under way).
    async fn due(
        &self,
        upstream: &str,
        now: i64,
        limit: usize,
        skip: &[i64],
    ) -> Result<Vec<DueDelivery>, StoreError>;

    /// When the next pending delivery to `upstream`, other than those in `skip`, falls due.
    async fn next_due(&self, upstream: &str, skip: &[i64]) -> Result<Option<i64>, StoreError>;

    /// Records an attempt and moves its delivery to its next state.
    async fn record(&self, attempt: AttemptRecord) -> Result<(), StoreError>;

    /// Removes expired dedup keys and fully delivered events received before
    /// `delivered_before`, a bounded batch at a time.
    async fn purge(&self, delivered_before: i64) -> Result<Purged, StoreError>;

    /// Pending deliveries to these upstreams, all together.
    async fn pending(&self, upstreams: &[Arc<str>]) -> Result<i64, StoreError>;

    /// Deliveries counted by upstream and state.
    async fn queue_depth(&self) -> Result<Vec<QueueDepth>, StoreError>;

    /// Succeeds when the store can be read.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Recent events, newest first.
    async fn events(&self, query: EventQuery) -> Result<Vec<EventSummary>, StoreError>;

    /// One event with its headers and each delivery with its attempts.
    async fn event(&self, id: &str) -> Result<Option<EventDetail>, StoreError>;

    /// Deliveries matching `query`, newest first.
    async fn deliveries(&self, query: DeliveryQuery) -> Result<Vec<DeliveryView>, StoreError>;

    /// One delivery.
    async fn delivery(&self, id: i64) -> Result<Option<DeliveryView>, StoreError>;

    /// Makes one dead letter pending again, due now; its attempts are kept and its count
    /// goes on.
    async fn retry(&self, id: i64) -> Result<RetryOne, StoreError>;

    /// Makes every dead letter matching `filter` pending again, due now.
    async fn retry_all(&self, filter: RetryFilter) -> Result<RetriedAll, StoreError>;

    /// Pauses or resumes deliveries to `upstream`, durably.
    async fn set_paused(&self, upstream: &str, paused: bool) -> Result<(), StoreError>;

    /// The upstreams paused now.
    async fn paused(&self) -> Result<Vec<String>, StoreError>;
}

/// `duration` in milliseconds, as the store counts time; one too long for an `i64` (which
/// the configuration refuses) stays at the largest, rather than wrapping into the past.
pub fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
