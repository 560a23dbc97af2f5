//! A map from upstream name to shared state, cheap to clone and shared by every holder, so
//! what the schedulers publish follows reloads.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

/// Upstream name → `Arc<T>`.
#[derive(Debug)]
pub(super) struct ByUpstream<T>(Arc<RwLock<HashMap<Arc<str>, Arc<T>>>>);

impl<T> Clone for ByUpstream<T> {
    fn clone(&self) -> Self {
        ByUpstream(self.0.clone())
    }
}

impl<T> Default for ByUpstream<T> {
    fn default() -> Self {
        ByUpstream(Arc::default())
    }
}

impl<T: Default> ByUpstream<T> {
    /// A fresh value for `upstream`, replacing any it had.
    pub(super) fn renew(&self, upstream: &Arc<str>) -> Arc<T> {
        let value = Arc::new(T::default());
        self.write().insert(upstream.clone(), value.clone());
        value
    }

    /// The value of `upstream`, created when it has none.
    pub(super) fn get_or_default(&self, upstream: &Arc<str>) -> Arc<T> {
        self.write().entry(upstream.clone()).or_default().clone()
    }
}

impl<T> ByUpstream<T> {
    /// The value of `upstream`, if it has one.
    pub(super) fn get(&self, upstream: &str) -> Option<Arc<T>> {
        self.read().get(upstream).cloned()
    }

    /// Sets the value of `upstream`, and returns it.
    pub(super) fn insert(&self, upstream: Arc<str>, value: T) -> Arc<T> {
        let value = Arc::new(value);
        self.write().insert(upstream, value.clone());
        value
    }

    /// Forgets `upstream`.
    pub(super) fn remove(&self, upstream: &str) {
        self.write().remove(upstream);
    }

    /// The map as it is now.
    pub(super) fn read(&self) -> RwLockReadGuard<'_, HashMap<Arc<str>, Arc<T>>> {
        // A plain map; no code panics while holding it.
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Arc<T>>> {
        self.0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
