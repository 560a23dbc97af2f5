//! Operator pauses: a paused upstream's scheduler starts no new attempts; attempts already
//! under way finish. The flags live in memory; the store keeps them across restarts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// One pause flag per configured upstream; cheap to clone, and follows reloads.
#[derive(Debug, Clone, Default)]
pub struct Pauses(Arc<RwLock<HashMap<Arc<str>, Arc<AtomicBool>>>>);

impl Pauses {
    /// A flag for each upstream in `names`, raised for those named in `paused`.
    pub fn new(names: impl IntoIterator<Item = Arc<str>>, paused: &[String]) -> Pauses {
        let flags = names
            .into_iter()
            .map(|name| {
                let raised = paused.iter().any(|p| **p == *name);
                (name, Arc::new(AtomicBool::new(raised)))
            })
            .collect();
        Pauses(Arc::new(RwLock::new(flags)))
    }

    fn map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Arc<AtomicBool>>> {
        // A plain map; no code panics while holding it.
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Gives `upstream` a flag, lowered, unless it has one.
    pub(super) fn ensure(&self, upstream: &Arc<str>) {
        let mut map = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(upstream.clone()).or_default();
    }

    /// Whether `upstream` is configured.
    pub fn knows(&self, upstream: &str) -> bool {
        self.map().contains_key(upstream)
    }

    /// Pauses or resumes `upstream`; false when it is not configured.
    pub fn set(&self, upstream: &str, paused: bool) -> bool {
        match self.map().get(upstream) {
            Some(flag) => {
                flag.store(paused, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Whether `upstream` is paused now.
    pub fn is_paused(&self, upstream: &str) -> bool {
        self.map()
            .get(upstream)
            .is_some_and(|flag| flag.load(Ordering::Acquire))
    }

    /// The flag a scheduler reads; a fresh, lowered one for an unknown name.
    pub(super) fn flag(&self, upstream: &str) -> Arc<AtomicBool> {
        self.map().get(upstream).cloned().unwrap_or_default()
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

        let flag = pauses.flag("a");
        assert!(pauses.set("a", true));
        assert!(raised(&flag));
        assert!(pauses.set("b", false) && !pauses.is_paused("b"));
        assert!(!pauses.set("gone", true));
    }
}
