//! What the gateway keeps in memory of one upstream's queue: the deliveries it has claimed,
//! fresh ones handed over as their event was committed, and when the stored queue must be
//! read next.
//!
//! The store stays the queue's truth; a fresh delivery is pending there too. The hand-over
//! only spares the scheduler a read of what the ingress has just written. Whatever does not
//! fit in memory, or is given back, is found by the next read of the stored queue. A lane
//! outlives a reload, so the scheduler that takes over sends nothing twice.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::store::DueDelivery;

/// Body bytes held by one lane's fresh deliveries at most; beyond that, deliveries are
/// left for a read of the stored queue.
const FRESH_BYTES: usize = 16 * 1024 * 1024;

/// Longest time between reads of the stored queue, whatever the lane was told: work that
/// reaches the store another way (an operator command on the database) is found by then.
pub(super) const IDLE_LOOK: Duration = Duration::from_secs(30);

/// One upstream's claimed and fresh deliveries.
#[derive(Debug, Default)]
pub(super) struct Lane(Mutex<State>);

#[derive(Debug)]
struct State {
    /// Deliveries that are this gateway's now: an attempt is under way, or they wait in
    /// `fresh`. A read of the stored queue leaves them out.
    claimed: HashSet<i64>,
    /// Handed over at commit, oldest first; all of them are claimed.
    fresh: VecDeque<DueDelivery>,
    fresh_bytes: usize,
    /// Fresh deliveries held at most: the upstream's concurrency.
    capacity: usize,
    /// When the stored queue may next hold a delivery that is due and not claimed
    /// (milliseconds since the Unix epoch); `None` when nothing is known to be there.
    look_at: Option<i64>,
    /// When the stored queue was last read.
    looked_at: i64,
}

impl Default for State {
    fn default() -> Self {
        State {
            claimed: HashSet::new(),
            fresh: VecDeque::new(),
            fresh_bytes: 0,
            capacity: 0,
            // Nothing is known of the stored queue yet: read it at once.
            look_at: Some(0),
            looked_at: 0,
        }
    }
}

impl Lane {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain state; no code panics while holding it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A scheduler starts on this lane, with room for `capacity` fresh deliveries; it reads
    /// the stored queue first, since it cannot know what the one before it left there.
    pub(super) fn start(&self, capacity: usize) {
        let mut state = self.lock();
        state.capacity = capacity;
        state.look_at = Some(0);
    }

    /// Takes a delivery just committed. One already claimed (a read of the stored queue
    /// got it first) is dropped; one that does not fit is left for the next read.
    pub(super) fn hand_over(&self, delivery: DueDelivery) {
        let mut state = self.lock();
        let size = delivery.body.len();
        let fits = state.fresh.len() < state.capacity && state.fresh_bytes + size <= FRESH_BYTES;
        if !fits {
            state.look_at = Some(0);
            return;
        }
        if state.claimed.insert(delivery.id) {
            state.fresh_bytes += size;
            state.fresh.push_back(delivery);
        }
    }

    /// Up to `most` fresh deliveries, oldest first; they stay claimed.
    pub(super) fn take_fresh(&self, most: usize) -> Vec<DueDelivery> {
        let mut state = self.lock();
        let n = most.min(state.fresh.len());
        let taken: Vec<DueDelivery> = state.fresh.drain(..n).collect();
        state.fresh_bytes -= taken.iter().map(|d| d.body.len()).sum::<usize>();
        taken
    }

    /// Whether the stored queue should be read now. When it should, the lane forgets why,
    /// so a reason that comes up during the read is kept for the next one.
    pub(super) fn take_look(&self, now: i64) -> bool {
        let mut state = self.lock();
        let due = state.look_at.is_some_and(|at| at <= now)
            || now - state.looked_at >= IDLE_LOOK.as_millis() as i64;
        if due {
            state.look_at = None;
            state.looked_at = now;
        }
        due
    }

    /// The stored queue may hold work due now.
    pub(super) fn look_now(&self) {
        self.look_by(0);
    }

    /// The stored queue will hold work due at `at`.
    pub(super) fn look_by(&self, at: i64) {
        let mut state = self.lock();
        state.look_at = Some(state.look_at.map_or(at, |t| t.min(at)));
    }

    /// How long the scheduler may sleep before it must read the stored queue.
    pub(super) fn wait(&self, now: i64) -> Duration {
        let state = self.lock();
        let idle = state.looked_at + IDLE_LOOK.as_millis() as i64;
        let at = state.look_at.map_or(idle, |at| at.min(idle));
        Duration::from_millis((at - now).max(0) as u64)
    }

    /// Claims deliveries read from the store; returns those no one had claimed yet.
    pub(super) fn claim(&self, read: Vec<DueDelivery>) -> Vec<DueDelivery> {
        let mut state = self.lock();
        read.into_iter()
            .filter(|d| state.claimed.insert(d.id))
            .collect()
    }

    /// Gives back claimed deliveries that were not started: they are pending in the
    /// store, for the next read.
    pub(super) fn give_back(&self, ids: impl IntoIterator<Item = i64>) {
        let mut state = self.lock();
        let mut any = false;
        for id in ids {
            any |= state.claimed.remove(&id);
        }
        if any {
            state.look_at = Some(0);
        }
    }

    /// An attempt's record is settled: the delivery is no longer claimed.
    pub(super) fn finish(&self, id: i64) {
        self.lock().claimed.remove(&id);
    }

    /// The ids a read of the stored queue must leave out.
    pub(super) fn claimed_ids(&self) -> Vec<i64> {
        self.lock().claimed.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn delivery(id: i64, body: usize) -> DueDelivery {
        DueDelivery {
            id,
            event_id: format!("e{id}"),
            route: "r".into(),
            attempts: 0,
            received_at: 0,
            body: Bytes::from(vec![b'x'; body]),
            content_type: None,
            client_ip: "127.0.0.1".into(),
            proto: "https".into(),
            headers: "{}".into(),
        }
    }

    fn ids(deliveries: &[DueDelivery]) -> Vec<i64> {
        deliveries.iter().map(|d| d.id).collect()
    }

    #[test]
    fn a_delivery_handed_over_is_claimed_and_taken_once() {
        let lane = Lane::default();
        lane.start(4);
        lane.hand_over(delivery(1, 10));
        assert_eq!(lane.claimed_ids(), vec![1]);
        assert!(
            lane.claim(vec![delivery(1, 10)]).is_empty(),
            "a read must not get it too"
        );
        assert_eq!(ids(&lane.take_fresh(8)), vec![1]);
        assert!(lane.take_fresh(8).is_empty());
    }

    #[test]
    fn a_delivery_read_from_the_store_first_is_not_handed_over_again() {
        let lane = Lane::default();
        lane.start(4);
        assert_eq!(ids(&lane.claim(vec![delivery(7, 1)])), vec![7]);
        lane.hand_over(delivery(7, 1));
        assert!(lane.take_fresh(8).is_empty());
    }

    #[test]
    fn what_does_not_fit_is_left_for_a_read_of_the_store() {
        let lane = Lane::default();
        lane.start(2);
        let now = 1_000_000;
        assert!(lane.take_look(now));
        assert!(!lane.take_look(now));
        for id in 1..=3 {
            lane.hand_over(delivery(id, 1));
        }
        assert_eq!(lane.claimed_ids().len(), 2);
        assert!(lane.take_look(now), "the third is only in the store");

        lane.hand_over(delivery(4, FRESH_BYTES));
        assert!(
            lane.take_look(now),
            "too many bytes are left in the store too"
        );
    }

    #[test]
    fn deliveries_given_back_are_unclaimed_and_call_for_a_read() {
        let lane = Lane::default();
        lane.start(4);
        let now = 1_000_000;
        assert!(lane.take_look(now));
        lane.hand_over(delivery(1, 1));
        let taken = lane.take_fresh(1);
        lane.give_back(ids(&taken));
        assert!(lane.claimed_ids().is_empty());
        assert!(lane.take_look(now));
    }

    #[test]
    fn a_retry_time_sets_the_next_read_and_the_idle_look_bounds_the_wait() {
        let lane = Lane::default();
        lane.start(4);
        let now = 1_000_000;
        assert!(lane.take_look(now));
        assert_eq!(lane.wait(now), IDLE_LOOK);
        lane.look_by(now + 500);
        lane.look_by(now + 900);
        assert_eq!(lane.wait(now), Duration::from_millis(500));
        assert!(!lane.take_look(now + 499));
        assert!(lane.take_look(now + 500));
        assert!(lane.take_look(now + IDLE_LOOK.as_millis() as i64 + 500));
    }
}
