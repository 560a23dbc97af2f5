//! Operator pauses: a paused upstream's scheduler starts no new attempts; attempts already
//! under way finish. The flags live in memory; the store keeps them across restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::by_upstream::ByUpstream;

/// One pause flag per configured upstream; cheap to clone, and follows reloads.
#[derive(Debug, Clone, Default)]
pub struct Pauses(ByUpstream<AtomicBool>);

impl Pauses {
    /// A flag for each upstream in `names`, raised for those named in `paused`.
    pub fn new(names: impl IntoIterator<Item = Arc<str>>, paused: &[String]) -> Pauses {
        let pauses = Pauses::default();
        for name in names {
            let raised = paused.iter().any(|p| **p == *name);
            pauses.0.insert(name, AtomicBool::new(raised));
        }
        pauses
    }

    /// The configured upstreams, by name.
    pub fn names(&self) -> Vec<String> {
        self.0.read().keys().map(|k| k.to_string()).collect()
    }

    /// Whether `upstream` is configured.
    pub fn knows(&self, upstream: &str) -> bool {
        self.0.get(upstream).is_some()
    }

    /// Pauses or resumes `upstream`; false when it is not configured.
    pub fn set(&self, upstream: &str, paused: bool) -> bool {
        match self.0.get(upstream) {
            Some(flag) => {
                flag.store(paused, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Whether `upstream` is paused now.
    pub fn is_paused(&self, upstream: &str) -> bool {
        self.0
            .get(upstream)
            .is_some_and(|flag| flag.load(Ordering::Acquire))
    }

    /// Forgets an upstream the configuration no longer names.
    pub(super) fn forget(&self, upstream: &str) {
        self.0.remove(upstream);
    }

    /// The flag a scheduler of `upstream` reads, created lowered when it has none.
    pub(super) fn flag(&self, upstream: &Arc<str>) -> Arc<AtomicBool> {
        self.0.get_or_default(upstream)
    }
}

/// Whether a scheduler's flag is raised.
pub(super) fn raised(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_start_from_the_stored_pauses_and_follow_changes() {
        let pauses = Pauses::new(["a".into(), "b".into()], &["b".into(), "gone".into()]);
        assert!(!pauses.is_paused("a") && pauses.is_paused("b"));
        assert!(!pauses.knows("gone"));

        let flag = pauses.flag(&"a".into());
        assert!(pauses.set("a", true));
        assert!(raised(&flag));
        assert!(pauses.set("b", false) && !pauses.is_paused("b"));
        assert!(!pauses.set("gone", true));
    }
}
