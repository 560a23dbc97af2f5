//! The queue's high-water mark: past it, ingress answers `503` so senders retry later
//! instead of the backlog growing without bound.

use std::sync::atomic::{AtomicI64, Ordering};

/// Pending deliveries as last counted, plus those created since.
#[derive(Debug)]
pub struct Backlog {
    pending: AtomicI64,
    high_water: i64,
}

impl Backlog {
    /// A backlog that refuses new events at `high_water` pending deliveries.
    pub fn new(high_water: u64) -> Backlog {
        Backlog {
            pending: AtomicI64::new(0),
            high_water: i64::try_from(high_water).unwrap_or(i64::MAX),
        }
    }

    /// Whether the queue is at or past its high-water mark.
    pub fn is_full(&self) -> bool {
        self.pending.load(Ordering::Relaxed) >= self.high_water
    }

    /// Counts deliveries just created.
    pub fn add(&self, deliveries: usize) {
        self.pending.fetch_add(deliveries as i64, Ordering::Relaxed);
    }

    /// Replaces the estimate with a fresh count from the store.
    pub fn set(&self, pending: i64) {
        self.pending.store(pending, Ordering::Relaxed);
    }
}
