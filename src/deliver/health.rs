//! Whether the delivery schedulers are doing their work: each reports when it starts waiting
//! on the store and when it ends, so readiness can tell a stuck or stopped scheduler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use super::by_upstream::ByUpstream;
use crate::store::now_ms;

/// A store call outstanding this long means the scheduler is stuck.
const STUCK_AFTER: Duration = Duration::from_secs(30);

/// One scheduler's signs of life.
#[derive(Debug, Default)]
pub(super) struct Beat {
    /// When the store call under way began, in milliseconds; 0 when none is.
    busy_since: AtomicI64,
    /// Set when the scheduler's loop ended.
    finished: AtomicBool,
}

impl Beat {
    /// Marks a store call as under way until the returned guard is dropped.
    pub(super) fn busy(&self) -> Busy<'_> {
        self.busy_since.store(now_ms(), Ordering::Relaxed);
        Busy(self)
    }

    pub(super) fn finish(&self) {
        self.finished.store(true, Ordering::Relaxed);
    }
}

/// Ends a store call on drop.
pub(super) struct Busy<'a>(&'a Beat);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy_since.store(0, Ordering::Relaxed);
    }
}

/// The current scheduler of each upstream, for readiness; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health(ByUpstream<Beat>);

impl Health {
    /// A fresh beat for a new scheduler of `upstream`, replacing the one it takes over from.
    pub(super) fn renew(&self, upstream: &Arc<str>) -> Arc<Beat> {
        self.0.renew(upstream)
    }

    /// Forgets an upstream that is no longer configured.
    pub(super) fn forget(&self, upstream: &str) {
        self.0.remove(upstream);
    }

    /// What is wrong, if anything: a scheduler that stopped, or one stuck on the store.
    pub fn problems(&self) -> Vec<String> {
        let map = self.0.read();
        let now = now_ms();
        let mut problems = Vec::new();
        for (upstream, beat) in map.iter() {
            let since = beat.busy_since.load(Ordering::Relaxed);
            if beat.finished.load(Ordering::Relaxed) {
                problems.push(format!("the scheduler of {upstream} stopped"));
            } else if since > 0 && now - since > STUCK_AFTER.as_millis() as i64 {
                problems.push(format!("the scheduler of {upstream} waits on the store"));
            }
        }
        problems.sort();
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_or_stuck_scheduler_is_a_problem_and_a_busy_one_is_not() {
        let health = Health::default();
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        let _ = health.renew(&a);
        health.renew(&b).finish();
        let stuck = health.renew(&c);
        stuck.busy_since.store(now_ms() - 60_000, Ordering::Relaxed);
        assert_eq!(
            health.problems(),
            [
                "the scheduler of b stopped",
                "the scheduler of c waits on the store"
            ]
        );
        {
            let fresh = health.renew(&c);
            let _busy = fresh.busy();
            assert_eq!(health.problems().len(), 1, "a call just begun is fine");
        }
        health.forget("b");
        assert!(health.problems().is_empty());
    }
}
